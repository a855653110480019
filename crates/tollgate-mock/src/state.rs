//! State shared by all connections: counters, the request recorder and the `fail_first` counters.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::RecordedRequest;

/// How many requests the recorder keeps.
pub const RECORD_CAPACITY: usize = 256;
/// The `fail_first` counter map is cleared when it grows past this.
const FAIL_MAP_CAPACITY: usize = 4096;

/// Everything the request handlers share.
pub(crate) struct Shared {
    pub(crate) api_key: Option<Box<str>>,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    recorder: Option<Mutex<VecDeque<RecordedRequest>>>,
    fail_counts: Mutex<HashMap<String, u64>>,
}

impl Shared {
    pub(crate) fn new(api_key: Option<String>, record: bool) -> Shared {
        Shared {
            api_key: api_key.map(String::into_boxed_str),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            recorder: record.then(|| Mutex::new(VecDeque::with_capacity(RECORD_CAPACITY))),
            fail_counts: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks one request as in flight until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        if let Some(rec) = &self.recorder {
            let mut rec = rec.lock().unwrap_or_else(PoisonError::into_inner);
            if rec.len() == RECORD_CAPACITY {
                rec.pop_front();
            }
            rec.push_back(req);
        }
    }

    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        match &self.recorder {
            Some(rec) => rec
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    pub(crate) fn clear_recorded(&self) {
        if let Some(rec) = &self.recorder {
            rec.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// Counts one more request under `key`; true while it is among the first `n`.
    pub(crate) fn should_fail(&self, key: String, n: u64) -> bool {
        let mut map = self
            .fail_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= FAIL_MAP_CAPACITY && !map.contains_key(&key) {
            map.clear();
        }
        let seen = map.entry(key).or_insert(0);
        *seen = seen.saturating_add(1);
        *seen <= n
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("requests", &self.request_count())
            .field("in_flight", &self.in_flight())
            .field("recording", &self.recording())
            .finish_non_exhaustive()
    }
}

/// Guard counting one in-flight request (see [`crate::MockServer::in_flight`]).
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Builds the recorded copy of a request.
pub(crate) fn recorded_request(parts: &http::request::Parts, body: &Bytes) -> RecordedRequest {
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    }
}
