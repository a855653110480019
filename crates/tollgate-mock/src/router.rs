//! Request entry point: body intake, recording, auth, routing, the `/mock/*` control endpoints and shared fault handling.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::body::MockBody;
use crate::knobs::Knobs;
use crate::state::{Shared, recorded_request};
use crate::{Endpoint, chat, completions, embeddings, models, respond, responses};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The terminating SSE event of chat and completion streams.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// `stream_options` of chat and completion requests.
#[derive(Deserialize, Clone, Copy)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

/// Serves one request (the hyper service function).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    if let Some(rest) = parts.uri.path().strip_prefix("/mock/") {
        return Ok(control(&shared, &parts.method, rest, body).await);
    }
    shared.count_request();
    let guard = shared.enter();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(respond::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large.",
                None,
                None,
            ));
        }
        Err(_) => return Ok(respond::bad_request("Could not read the request body.")),
    };
    if shared.recording() {
        shared.record(recorded_request(&parts, &body));
    }
    let resp = route(
        &shared,
        &Req {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            authority: parts.uri.authority().map(http::uri::Authority::as_str),
            headers: &parts.headers,
            body: &body,
        },
    )
    .await;
    Ok(resp.map(|b| b.with_in_flight(guard)))
}

/// One request, as the provider modules see it.
pub(crate) struct Req<'a> {
    pub(crate) method: &'a Method,
    /// The full path (with any `/v1` prefix).
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    /// The URI's authority (h2's `:authority`; HTTP/1.1 requests carry a `Host` header instead).
    pub(crate) authority: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a Bytes,
}

async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let (method, path, headers, body) = (req.method, req.path, req.headers, req.body);
    let p = without_v1(path);
    let endpoint = Endpoint::of(method, p);
    shared.count_endpoint(endpoint);
    // Bedrock authenticates with SigV4, checked by its module.
    if endpoint != Endpoint::Bedrock
        && let Some(key) = shared.api_key.as_deref()
        && let Some(resp) = check_auth(key, headers, req.query)
    {
        return resp;
    }
    let native = match endpoint {
        Endpoint::Messages => Some(crate::anthropic::route(shared, req).await),
        Endpoint::Gemini => Some(crate::gemini::route(shared, req).await),
        Endpoint::Bedrock => Some(crate::bedrock::route(shared, req).await),
        Endpoint::Ollama => Some(crate::ollama::route(shared, req).await),
        Endpoint::Azure => Some(crate::azure::route(shared, req).await),
        Endpoint::Cohere => Some(crate::cohere::route(shared, req).await),
        _ => None,
    };
    if let Some(resp) = native {
        return resp;
    }
    match (method, p) {
        (&Method::POST, "/chat/completions") => chat::handle(shared, headers, body).await,
        (&Method::POST, "/completions") => completions::handle(shared, headers, body).await,
        (&Method::POST, "/embeddings") => embeddings::handle(shared, headers, body).await,
        (&Method::POST, "/responses") => responses::handle(shared, headers, body).await,
        (&Method::GET, "/models") => models::list(shared, headers).await,
        (&Method::GET, p) if p.starts_with("/models/") && p.len() > "/models/".len() => {
            models::get(shared, headers, &p["/models/".len()..]).await
        }
        _ => respond::error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} {path})"),
            None,
            None,
        ),
    }
}

/// `None` when the request carries the key, else the 401 to send. The key may come as a Bearer token, in
/// `api-key` (Azure), `x-api-key` (Anthropic), `x-goog-api-key` or a `key=` query parameter (Gemini).
fn check_auth(key: &str, headers: &HeaderMap, query: Option<&str>) -> Option<Response<MockBody>> {
    let bearer = headers.get(AUTHORIZATION).map(|v| {
        let v = v.as_bytes();
        match v.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => v[7..].trim_ascii(),
            _ => v,
        }
    });
    let api_key = ["api-key", "x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|h| headers.get(*h))
        .map(|v| v.as_bytes().trim_ascii());
    let query_key = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .map(str::as_bytes)
    });
    if bearer == Some(key.as_bytes())
        || api_key == Some(key.as_bytes())
        || query_key == Some(key.as_bytes())
    {
        return None;
    }
    let message = if bearer.is_none() && api_key.is_none() && query_key.is_none() {
        "You didn't provide an API key. You need to provide your API key in an Authorization \
         header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    } else {
        "Incorrect API key provided."
    };
    Some(respond::error(
        StatusCode::UNAUTHORIZED,
        message,
        Some("invalid_api_key"),
        None,
    ))
}

/// Parses a JSON request body (see [`malformed`] for the error answer).
pub(crate) fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    serde_json::from_slice(body)
}

/// The 400 sent for a body that is not the JSON an endpoint expects.
pub(crate) fn malformed(e: &serde_json::Error) -> Response<MockBody> {
    respond::bad_request(&format!(
        "We could not parse the JSON body of your request. ({e})"
    ))
}

/// Applies `hang`, `latency_ms` and the failure knobs; `Some` is the
/// response to send instead of the normal answer. `prompt_tokens` is only
/// used in the `context_length_exceeded` message (0 when unknown).
pub(crate) async fn apply_faults(
    shared: &Shared,
    knobs: &Knobs,
    model: Option<&str>,
    prompt_tokens: u64,
) -> Option<Response<MockBody>> {
    let status = fault_status(shared, knobs, model).await?;
    if let Some(how) = knobs.echo_key {
        return Some(respond::echo_key_failure(
            status,
            how,
            knobs.presented_key.as_deref(),
        ));
    }
    Some(respond::knob_failure(
        status,
        knobs.retry_after,
        knobs.error_code.as_deref(),
        prompt_tokens,
    ))
}

/// Waits out `hang` and `latency_ms`, then applies the failure knobs: `Some` is the status this request fails
/// with. Each provider's mock turns it into its own error body.
pub(crate) async fn fault_status(
    shared: &Shared,
    knobs: &Knobs,
    model: Option<&str>,
) -> Option<u16> {
    if knobs.hang {
        // Never answers: the future is dropped when the client goes away
        // (or when the server shuts down).
        std::future::pending::<()>().await;
    }
    if let Some(latency) = knobs.latency.filter(|d| !d.is_zero()) {
        tokio::time::sleep(latency).await;
    }
    knobs.decide(
        |n| shared.should_fail(knobs.fail_key(model), n),
        fastrand::f64,
    )
}

/// `path` without a leading `/v1` (the mocks answer with and without it).
pub(crate) fn without_v1(path: &str) -> &str {
    path.strip_prefix("/v1")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path)
}

/// One `data: <json>\n\n` SSE event.
pub(crate) fn sse_data(json: &str) -> Bytes {
    let mut s = String::with_capacity(json.len() + 8);
    s.push_str("data: ");
    s.push_str(json);
    s.push_str("\n\n");
    Bytes::from(s)
}

#[derive(Serialize)]
struct RecordedView<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [(String, String)],
    body: std::borrow::Cow<'a, str>,
    body_json: Option<serde_json::Value>,
}

/// Largest `PUT /mock/faults` body accepted.
const MAX_CONTROL_BODY: usize = 1024 * 1024;

/// The `/mock/*` control endpoints (never recorded, counted or authenticated).
async fn control(
    shared: &Shared,
    method: &Method,
    rest: &str,
    body: Incoming,
) -> Response<MockBody> {
    match (method, rest) {
        (&Method::GET, "faults") => faults_view(shared),
        (&Method::PUT, "faults") => {
            let body = match Limited::new(body, MAX_CONTROL_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return respond::bad_request("Could not read the request body."),
            };
            let given: serde_json::Map<String, serde_json::Value> = match parse_body(&body) {
                Ok(v) => v,
                Err(e) => {
                    return respond::bad_request(&format!(
                        "PUT /mock/faults expects a JSON object of knob name -> value ({e})"
                    ));
                }
            };
            match shared.set_faults(given) {
                Ok(()) => faults_view(shared),
                Err(msg) => respond::bad_request(&msg),
            }
        }
        (&Method::DELETE, "faults") => {
            shared.clear_faults();
            no_content()
        }
        (&Method::GET, "requests") => {
            let recorded = shared.recorded();
            let views: Vec<RecordedView<'_>> = recorded
                .iter()
                .map(|r| RecordedView {
                    method: &r.method,
                    path: &r.path,
                    query: r.query.as_deref(),
                    headers: &r.headers,
                    body: String::from_utf8_lossy(&r.body),
                    body_json: serde_json::from_slice(&r.body).ok(),
                })
                .collect();
            match serde_json::to_vec(&views) {
                Ok(body) => respond::ok(body),
                Err(e) => respond::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("could not serialize recorded requests: {e}"),
                    None,
                    None,
                ),
            }
        }
        (&Method::DELETE, "requests") => {
            shared.clear_recorded();
            no_content()
        }
        (&Method::GET, "stats") => {
            let mut out = format!(
                "{{\"requests\":{},\"in_flight\":{},\"recording\":{},\"faults\":{},\"endpoints\":{{",
                shared.request_count(),
                shared.in_flight(),
                shared.recording(),
                shared.faults().is_some(),
            );
            for (i, e) in Endpoint::ALL.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::json::key(&mut out, e.name());
                crate::json::num(&mut out, shared.endpoint_count(*e));
            }
            out.push_str("}}");
            respond::ok(out)
        }
        _ => respond::error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} /mock/{rest})"),
            None,
            None,
        ),
    }
}

fn no_content() -> Response<MockBody> {
    let mut resp = Response::new(MockBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// `GET /mock/faults`: the server-wide knobs as given, `{}` when none.
fn faults_view(shared: &Shared) -> Response<MockBody> {
    let body = match shared.faults() {
        Some(f) => serde_json::Value::Object(f.given.clone()).to_string(),
        None => "{}".to_owned(),
    };
    respond::ok(body)
}
