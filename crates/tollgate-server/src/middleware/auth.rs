//! Authentication for every route not on the explicit allowlist (`routes::UNAUTHENTICATED_ROUTES`): the master
//! key (compared in constant time) or a virtual key (looked up in memory, the database on a miss), presented
//! as `Authorization: Bearer`, `api-key` (Azure SDKs), `x-api-key` (Anthropic SDKs) or `x-litellm-api-key`,
//! or, with `enable_jwt_auth`, a JWT (verified by `crate::jwt`).
//! Authorization (roles, model access) is decided where the action is: handlers and `admission`.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;
use tollgate_core::GatewayError;

use tollgate_accounts::Principal;

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
    ["api-key", "x-api-key", "x-litellm-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Constant-time equality of two secrets (the length is not hidden, the content is).
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Who the request is from. `Ok(Principal::Open)` when the route is on the allowlist or no master key is
/// configured and no virtual key is presented; otherwise the master key, a valid virtual key, or the 401.
pub async fn check(
    state: &AppState,
    path: &str,
    headers: &HeaderMap,
) -> Result<Principal, GatewayError> {
    if is_unauthenticated(path) {
        return Ok(Principal::Open);
    }
    let rt = state.runtime();
    // LiteLLM serves /metrics without auth unless `require_auth_for_metrics_endpoint` is set.
    if (path == "/metrics" || path == "/metrics/")
        && !rt.config.observability.require_auth_for_metrics
    {
        return Ok(Principal::Open);
    }
    let presented = presented_key(headers);
    let master = rt.master_key.as_ref().map(|m| m.expose().to_owned());
    let jwt = rt.jwt.clone();
    drop(rt);
    // A JWT (when JWT auth is on) is verified, never looked up as a virtual key; the master key still works.
    if let (Some(k), Some(jwt)) = (presented, jwt)
        && !master.as_deref().is_some_and(|m| secret_eq(k, m))
        && tollgate_auth::looks_like_jwt(k)
    {
        return jwt.authenticate(state.accounts(), k, path).await;
    }
    match (presented, master) {
        (Some(k), Some(m)) if secret_eq(k, &m) => Ok(Principal::Master),
        (Some(k), master) => match state.accounts().authenticate(k).await {
            Ok(entry) => Ok(Principal::Key(entry)),
            // Without a master key everything is open; a key that is not a virtual key (or that cannot be
            // checked right now) is ignored.
            Err(_) if master.is_none() => Ok(Principal::Open),
            Err(e) => Err(e),
        },
        (None, None) => Ok(Principal::Open),
        (None, Some(_)) => Err(GatewayError::Unauthorized(
            "Authentication Error: no API key passed. Pass one as `Authorization: Bearer <key>`."
                .into(),
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
