//! `GET /v1/models` and `GET /v1/models/{id}`: a small fixed model list.

use http::{HeaderMap, Response};

use crate::body::MockBody;
use crate::router::apply_faults;
use crate::state::Shared;
use crate::{json, respond};

/// Models listed by `GET /v1/models`.
pub(crate) const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "o3-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

/// `created` stamp of every listed model.
const CREATED: u64 = 1_700_000_000;

fn write_model(out: &mut String, id: &str) {
    out.push_str("{\"id\":");
    json::str(out, id);
    out.push_str(",\"object\":\"model\",\"created\":");
    json::num(out, CREATED);
    out.push_str(",\"owned_by\":\"tollgate-mock\"}");
}

async fn faults(shared: &Shared, headers: &HeaderMap) -> Option<Response<MockBody>> {
    match shared.knobs(headers, None) {
        Ok(knobs) => apply_faults(shared, &knobs, None, 0).await,
        Err(msg) => Some(respond::bad_request(&msg)),
    }
}

pub(crate) async fn list(shared: &Shared, headers: &HeaderMap) -> Response<MockBody> {
    if let Some(resp) = faults(shared, headers).await {
        return resp;
    }
    let mut out = String::with_capacity(128 * MODELS.len());
    out.push_str("{\"object\":\"list\",\"data\":[");
    for (i, id) in MODELS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_model(&mut out, id);
    }
    out.push_str("]}");
    respond::ok(out)
}

/// Any id is answered (mocks stand in for whatever model a test names).
pub(crate) async fn get(shared: &Shared, headers: &HeaderMap, id: &str) -> Response<MockBody> {
    if let Some(resp) = faults(shared, headers).await {
        return resp;
    }
    let mut out = String::with_capacity(128);
    write_model(&mut out, id);
    respond::ok(out)
}
