//! CORS for browser clients, off unless `general_settings.allowed_origins` (or `TOLLGATE_ALLOWED_ORIGINS`) is set: preflights from allowed origins are answered (204) before authentication, responses to allowed origins carry `Access-Control-Allow-Origin` and the exposed gateway headers, other origins get no `Access-Control-*` header (a disallowed preflight gets a 403). Requests without `Origin` cost one header lookup.

use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tollgate_config::SecuritySettings;
use tollgate_core::GatewayError;

use crate::error::ApiError;

const ALLOW_METHODS: HeaderValue =
    HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS");
/// Headers a preflight allows when it names none.
const DEFAULT_ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "authorization, content-type, api-key, x-api-key, x-litellm-api-key, anthropic-version, x-request-id",
);
/// The gateway's own response headers, readable by browser code.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "x-request-id, x-litellm-call-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-litellm-model-id, x-litellm-model-api-base, x-litellm-response-cost, x-litellm-attempted-retries, x-litellm-attempted-fallbacks, x-litellm-overhead-duration-ms, x-litellm-response-duration-ms",
);
const MAX_AGE: HeaderValue = HeaderValue::from_static("600");
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
/// The most header names a preflight's `Access-Control-Request-Headers` may list (more are refused).
const MAX_REQUEST_HEADERS: usize = 64;

/// A cross-origin request, when CORS is on and the request has an `Origin`.
#[derive(Debug)]
pub struct CorsRequest {
    origin: HeaderValue,
    allowed: bool,
    any: bool,
}

/// `Some` when CORS is configured and the request carries `Origin`.
pub fn inspect(settings: &SecuritySettings, headers: &HeaderMap) -> Option<CorsRequest> {
    if !settings.cors_enabled() {
        return None;
    }
    let origin = headers.get(ORIGIN)?;
    let allowed = origin.to_str().is_ok_and(|o| settings.allows_origin(o));
    Some(CorsRequest {
        origin: origin.clone(),
        allowed,
        any: settings.any_origin(),
    })
}

impl CorsRequest {
    /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`); `None` for any other
    /// request.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if method != Method::OPTIONS || !headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let requested = match requested_headers(headers) {
            Some(h) if self.allowed => h,
            _ => {
                let mut resp = ApiError(GatewayError::Forbidden(
                    "CORS: this origin is not allowed (general_settings.allowed_origins)".into(),
                ))
                .into_response();
                resp.headers_mut().append(VARY, PREFLIGHT_VARY);
                return Some(resp);
            }
        };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        self.allow_origin(h);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            requested.unwrap_or(DEFAULT_ALLOW_HEADERS),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
        h.append(VARY, PREFLIGHT_VARY);
        Some(resp)
    }

    /// Add the CORS headers to a response (`Vary: Origin` in any case, the rest for allowed origins).
    pub fn decorate(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        h.append(VARY, HeaderValue::from_static("Origin"));
        if !self.allowed {
            return;
        }
        self.allow_origin(h);
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    }

    fn allow_origin(&self, h: &mut HeaderMap) {
        if self.any {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origin.clone());
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// The preflight's requested header names, lowercased, as one value: `Some(None)` when it names none,
/// `None` when the list is not a list of header names (or too long).
fn requested_headers(headers: &HeaderMap) -> Option<Option<HeaderValue>> {
    let mut names: Vec<String> = Vec::new();
    for v in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let v = v.to_str().ok()?;
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            http::HeaderName::from_bytes(name.as_bytes()).ok()?;
            names.push(name.to_ascii_lowercase());
        }
    }
    if names.len() > MAX_REQUEST_HEADERS {
        return None;
    }
    if names.is_empty() {
        return Some(None);
    }
    HeaderValue::from_str(&names.join(", ")).ok().map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> SecuritySettings {
        SecuritySettings {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..SecuritySettings::default()
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn off_without_origins_or_origin_header() {
        let h = headers(&[("origin", "https://app.test")]);
        assert!(inspect(&settings(&[]), &h).is_none());
        assert!(inspect(&settings(&["https://app.test"]), &HeaderMap::new()).is_none());
    }

    #[test]
    fn preflight_from_an_allowed_origin() {
        let h = headers(&[
            ("origin", "https://App.test"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "Authorization, Content-Type",
            ),
        ]);
        let c = inspect(&settings(&["https://app.test"]), &h).unwrap();
        assert!(c.preflight(&Method::POST, &h).is_none());
        let r = c.preflight(&Method::OPTIONS, &h).unwrap();
        assert_eq!(r.status(), 204);
        let rh = r.headers();
        assert_eq!(rh[ACCESS_CONTROL_ALLOW_ORIGIN], "https://App.test");
        assert_eq!(rh[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(
            rh[ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type"
        );
        assert_eq!(rh[ACCESS_CONTROL_MAX_AGE], "600");
        assert!(
            rh[ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert!(rh[VARY].to_str().unwrap().contains("Origin"));
        // Without requested headers, the default set.
        let h = headers(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "GET"),
        ]);
        let r = inspect(&settings(&["https://app.test"]), &h)
            .unwrap()
            .preflight(&Method::OPTIONS, &h)
            .unwrap();
        assert!(
            r.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
    }

    #[test]
    fn disallowed_origins_get_no_cors_headers() {
        let h = headers(&[
            ("origin", "https://evil.test"),
            ("access-control-request-method", "POST"),
        ]);
        let c = inspect(&settings(&["https://app.test"]), &h).unwrap();
        let r = c.preflight(&Method::OPTIONS, &h).unwrap();
        assert_eq!(r.status(), 403);
        assert!(
            r.headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-"))
        );
        let mut resp = StatusCode::OK.into_response();
        c.decorate(&mut resp);
        assert!(
            resp.headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-"))
        );
        assert_eq!(resp.headers()[VARY], "Origin");
        // Malformed requested headers are refused too.
        let h = headers(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "bad header(name)"),
        ]);
        let r = inspect(&settings(&["https://app.test"]), &h)
            .unwrap()
            .preflight(&Method::OPTIONS, &h)
            .unwrap();
        assert_eq!(r.status(), 403);
    }

    #[test]
    fn wildcard_sends_star_without_credentials() {
        let h = headers(&[("origin", "https://any.test")]);
        let c = inspect(&settings(&["*"]), &h).unwrap();
        let mut resp = StatusCode::OK.into_response();
        c.decorate(&mut resp);
        let rh = resp.headers();
        assert_eq!(rh[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(rh.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(
            rh[ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("x-request-id")
        );
    }
}
