//! What the HTTP adapters build alike: env fallbacks, headers, the POST with `x-request-id`, "does not serve".

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use tollgate_config::Env;
use tollgate_core::GatewayError;
use tollgate_core::url::public_url;

use crate::Endpoint;

/// The first of `vars` that is set and not empty.
pub fn first_env(env: &Env, vars: &[&str]) -> Option<String> {
    vars.iter()
        .find_map(|v| env.get(v).filter(|s| !s.is_empty()))
}

/// The first of `vars` that is set and not only white space.
pub fn first_env_nonblank(env: &Env, vars: &[&str]) -> Option<String> {
    vars.iter()
        .find_map(|v| env.get(v).filter(|s| !s.trim().is_empty()))
}

/// `content-type: application/json` and `user-agent: tollgate/<version>`.
pub fn default_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
    );
    headers
}

/// `value` as a header value marked sensitive; `what` names it in the error (e.g. `api_key`).
pub fn sensitive(value: &str, what: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| format!("{what} contains characters not allowed in a header"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Insert the deployment's `extra_headers` (in file order, replacing what is there).
pub fn insert_extra_headers(
    headers: &mut HeaderMap,
    extra: &[(String, String)],
) -> Result<(), String> {
    for (k, v) in extra {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("extra_headers: `{k}` is not a valid header name"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("extra_headers: value of `{k}` is not a valid header value"))?;
        headers.insert(name, value);
    }
    Ok(())
}

/// An error unless `base` starts with `http://` or `https://` (the message shows the base without credentials).
pub fn require_http(base: &str) -> Result<(), String> {
    if base.starts_with("http://") || base.starts_with("https://") {
        Ok(())
    } else {
        Err(format!(
            "api_base `{}` must start with http:// or https://",
            public_url(base)
        ))
    }
}

/// A POST of `body` to `uri` with `headers`, the call's `x-request-id` (left out if not a valid value)
/// and its `traceparent`, if traced.
pub fn post(
    uri: Uri,
    body: Vec<u8>,
    headers: &HeaderMap,
    request_id: &str,
    traceparent: Option<&HeaderValue>,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| GatewayError::Internal(format!("building upstream request: {e}")))?;
    *req.headers_mut() = headers.clone();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        req.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(tp) = traceparent {
        req.headers_mut()
            .insert(HeaderName::from_static("traceparent"), tp.clone());
    }
    Ok(req)
}

/// The error for an endpoint `provider` does not serve: `<provider> does not serve <path>`.
pub fn not_served(provider: &str, endpoint: Endpoint) -> GatewayError {
    GatewayError::invalid(format!("{provider} does not serve {}", endpoint.path()))
}
