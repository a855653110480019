//! State shared by all connections: counters, the request recorder, the `fail_first` counters and the server-wide fault knobs.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use http::HeaderMap;

use crate::knobs::Knobs;
use crate::{Endpoint, RecordedRequest};

/// How many requests the recorder keeps.
pub const RECORD_CAPACITY: usize = 256;
/// The `fail_first` counter map is cleared when it grows past this.
const FAIL_MAP_CAPACITY: usize = 4096;

/// Everything the request handlers share.
pub(crate) struct Shared {
    pub(crate) api_key: Option<Box<str>>,
    /// The AWS secret access key Bedrock SigV4 signatures are verified with ([`crate::MockOptions::aws_secret_access_key`]).
    pub(crate) aws_secret: Option<Box<str>>,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    recorder: Option<Mutex<VecDeque<RecordedRequest>>>,
    fail_counts: Mutex<HashMap<String, u64>>,
    /// Requests per [`Endpoint`] (indexed by `Endpoint as usize`).
    endpoints: [AtomicU64; Endpoint::COUNT],
    /// Fast path: false while no server-wide faults are set, so requests
    /// never touch the lock then.
    has_faults: AtomicBool,
    faults: RwLock<Option<Arc<Faults>>>,
}

/// The server-wide fault knobs (`PUT /mock/faults`, [`crate::MockServer::set_faults`]).
pub(crate) struct Faults {
    /// The parsed knobs, the base every request's knobs are applied on.
    pub(crate) knobs: Knobs,
    /// The knobs as given (names normalised), for `GET /mock/faults`.
    pub(crate) given: serde_json::Map<String, serde_json::Value>,
}

impl Shared {
    pub(crate) fn new(api_key: Option<String>, aws_secret: Option<String>, record: bool) -> Shared {
        Shared {
            api_key: api_key.map(String::into_boxed_str),
            aws_secret: aws_secret.map(String::into_boxed_str),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            recorder: record.then(|| Mutex::new(VecDeque::with_capacity(RECORD_CAPACITY))),
            fail_counts: Mutex::new(HashMap::new()),
            endpoints: Default::default(),
            has_faults: AtomicBool::new(false),
            faults: RwLock::new(None),
        }
    }

    pub(crate) fn count_endpoint(&self, endpoint: Endpoint) {
        self.endpoints[endpoint as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn endpoint_count(&self, endpoint: Endpoint) -> u64 {
        self.endpoints[endpoint as usize].load(Ordering::Relaxed)
    }

    /// The knobs of one request: the server-wide faults (if any), then the
    /// model suffix, then the `x-mock-*` headers.
    pub(crate) fn knobs(&self, headers: &HeaderMap, model: Option<&str>) -> Result<Knobs, String> {
        if !self.has_faults.load(Ordering::Acquire) {
            return Knobs::collect(None, headers, model);
        }
        let faults = self.faults();
        Knobs::collect(faults.as_deref().map(|f| &f.knobs), headers, model)
    }

    /// The current server-wide faults.
    pub(crate) fn faults(&self) -> Option<Arc<Faults>> {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the server-wide faults with `given` (knob name -> string,
    /// number or bool); an empty object clears them. On error nothing changes.
    pub(crate) fn set_faults(
        &self,
        given: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        if given.is_empty() {
            self.clear_faults();
            return Ok(());
        }
        let mut normalised = serde_json::Map::new();
        let mut pairs = Vec::with_capacity(given.len());
        for (name, value) in given {
            let text = match &value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
                other => {
                    return Err(format!(
                        "invalid value {other} for mock knob `{name}`: expected a string, number or bool"
                    ));
                }
            };
            let name = name.trim().replace('-', "_");
            pairs.push((name.clone(), text));
            normalised.insert(name, value);
        }
        let knobs = Knobs::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let faults = Arc::new(Faults {
            knobs,
            given: normalised,
        });
        let mut slot = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        *slot = Some(faults);
        self.has_faults.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn clear_faults(&self) {
        let mut faults = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        self.has_faults.store(false, Ordering::Release);
        *faults = None;
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
            .field("faults", &self.has_faults.load(Ordering::Relaxed))
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
