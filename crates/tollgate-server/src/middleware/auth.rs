//! Authentication for every route not on the explicit allowlist (`routes::UNAUTHENTICATED_ROUTES`): the master
//! key as `Authorization: Bearer`, `api-key` (Azure SDKs) or `x-litellm-api-key`, compared in constant time.

use axum::extract::Request;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;
use tollgate_core::GatewayError;

use crate::routes::is_unauthenticated;
use crate::state::AppState;

/// The credential a request presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        // `Bearer <key>` (any case), or a bare key. `Bearer` with nothing after it (trimmed away) is no key.
        let token = match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            None if v.eq_ignore_ascii_case("bearer") => "",
            _ => v,
        };
        if !token.is_empty() {
            return Some(token);
        }
    }
    ["api-key", "x-litellm-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Constant-time equality of two secrets (the length is not hidden, the content is).
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Check the request's credentials. `Ok` when the route is on the allowlist, no master key is configured,
/// or the presented key matches; otherwise the 401 to send.
pub fn check(state: &AppState, req: &Request) -> Result<(), GatewayError> {
    if is_unauthenticated(req.uri().path()) {
        return Ok(());
    }
    let rt = state.runtime();
    let Some(master) = rt.master_key.as_ref() else {
        return Ok(());
    };
    match presented_key(req.headers()) {
        Some(k) if secret_eq(k, master.expose()) => Ok(()),
        Some(_) => Err(GatewayError::Unauthorized(
            "Authentication Error: invalid API key. Pass a valid key as `Authorization: Bearer <key>`.".into(),
        )),
        None => Err(GatewayError::Unauthorized(
            "Authentication Error: no API key passed. Pass one as `Authorization: Bearer <key>`.".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keys_are_found_in_each_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("api-key", HeaderValue::from_static("sk-azure"));
        assert_eq!(presented_key(&h), Some("sk-azure"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-1"));
        assert_eq!(presented_key(&h), Some("sk-1"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer   "));
        assert_eq!(presented_key(&h), Some("sk-azure"));
    }

    #[test]
    fn secret_comparison() {
        assert!(secret_eq("sk-1234", "sk-1234"));
        assert!(!secret_eq("sk-1234", "sk-1235"));
        assert!(!secret_eq("sk-1234", "sk-12345"));
    }
}
