//! What to do after a failed attempt: the error's class, whether and when to retry, whether the deployment cools down, and which fallback groups come next.

use std::time::Duration;

use tollgate_config::{ErrorClass, FallbackMap, RoutingSettings};
use tollgate_core::GatewayError;

use crate::state::DeploymentState;

/// What kind of failure an attempt ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The prompt does not fit the model's context window: `context_window_fallbacks`.
    ContextWindow,
    /// The upstream refused the content: `content_policy_fallbacks`.
    ContentPolicy,
    /// The request itself is wrong (another deployment would say the same): no retry, no fallback.
    BadRequest,
    /// The deployment's credentials were refused (401/403).
    Authentication,
    RateLimit,
    Timeout,
    /// 5xx, connection failures, invalid responses.
    Server,
}

/// A classified failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub class: ErrorClass,
    /// The upstream's `Retry-After` (seconds form), if it sent one.
    pub retry_after: Option<Duration>,
}

/// Longest upstream `Retry-After` the router waits for before a retry (longer ones move on to fallbacks).
pub const MAX_RETRY_AFTER_WAIT: Duration = Duration::from_secs(30);
/// Exponential backoff: first step and cap (full jitter over the upper half of the step).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(8);

const CONTEXT_MARKERS: &[&str] = &[
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "too many tokens",
];
const CONTENT_MARKERS: &[&str] = &[
    "content_policy_violation",
    "content_filter",
    "safety system",
    "content management policy",
    "content policy",
];

fn mentions(markers: &[&str], texts: &[Option<&str>]) -> bool {
    texts.iter().flatten().any(|t| {
        let t = t.to_ascii_lowercase();
        markers.iter().any(|m| t.contains(m))
    })
}

/// Classify an attempt's error.
pub fn classify(e: &GatewayError) -> Failure {
    let (kind, retry_after) = match e {
        GatewayError::UpstreamStatus(f) => {
            let texts = [f.code.as_deref(), Some(f.message.as_str())];
            let retry_after = f
                .retry_after
                .as_deref()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let kind = match f.status {
                429 => Kind::RateLimit,
                401 | 403 => Kind::Authentication,
                408 => Kind::Timeout,
                _ if mentions(CONTEXT_MARKERS, &texts) => Kind::ContextWindow,
                _ if mentions(CONTENT_MARKERS, &texts) => Kind::ContentPolicy,
                400..=499 => Kind::BadRequest,
                _ => Kind::Server,
            };
            (kind, retry_after)
        }
        GatewayError::InvalidRequest { code, message, .. }
            if mentions(CONTEXT_MARKERS, &[code.as_deref(), Some(message)]) =>
        {
            (Kind::ContextWindow, None)
        }
        GatewayError::UpstreamTimeout { .. } => (Kind::Timeout, None),
        GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamInvalid { .. } => {
            (Kind::Server, None)
        }
        GatewayError::AllAttemptsFailed { last, .. } => return classify(last),
        _ => (Kind::BadRequest, None),
    };
    let class = match kind {
        Kind::ContextWindow | Kind::BadRequest => ErrorClass::BadRequest,
        Kind::ContentPolicy => ErrorClass::ContentPolicyViolation,
        Kind::Authentication => ErrorClass::Authentication,
        Kind::RateLimit => ErrorClass::RateLimit,
        Kind::Timeout => ErrorClass::Timeout,
        Kind::Server => ErrorClass::InternalServer,
    };
    Failure {
        kind,
        class,
        retry_after,
    }
}

/// How many retries a failure of `class` gets in `group`: `model_group_retry_policy`, else `retry_policy`,
/// else `num_retries` for transient errors (rate limit, timeout, server), and for a refused credential when
/// the group has another deployment to try (its key may be good, as LiteLLM does); none for the others.
pub fn retries_for(
    s: &RoutingSettings,
    group: &str,
    class: ErrorClass,
    num_retries: u32,
    others_left: bool,
) -> u32 {
    s.model_group_retry_policy
        .get(group)
        .and_then(|p| p.get(class))
        .or_else(|| s.retry_policy.get(class))
        .unwrap_or(match class {
            ErrorClass::RateLimit | ErrorClass::Timeout | ErrorClass::InternalServer => num_retries,
            ErrorClass::Authentication if others_left => num_retries,
            ErrorClass::BadRequest
            | ErrorClass::Authentication
            | ErrorClass::ContentPolicyViolation => 0,
        })
}

/// How long to wait before retry number `attempt` (1-based). A retry on the same deployment backs off
/// exponentially with jitter and honours the upstream's `Retry-After`; a retry on another deployment only
/// waits `router_settings.retry_after`.
pub fn backoff(s: &RoutingSettings, attempt: u32, f: &Failure, same_deployment: bool) -> Duration {
    let mut wait = s.retry_after;
    if same_deployment {
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(BACKOFF_CAP);
        let half = step / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        wait = wait.max(jittered);
        if let Some(ra) = f.retry_after {
            wait = wait.max(ra);
        }
    }
    wait
}

/// After a failed attempt on a deployment of a group of `group_size`: count it and, when the deployment
/// has failed more than its allowed fails this minute (or the upstream rate-limited it with a
/// `Retry-After`), cool it down. Returns the cooldown's end (Unix ms) if one started. Groups with one
/// deployment never cool down (as in LiteLLM: it would only turn errors into "no deployment" errors),
/// nor do failures that are the request's fault.
pub fn after_failure(
    s: &RoutingSettings,
    state: &DeploymentState,
    f: &Failure,
    group_size: usize,
    now_ms: i64,
) -> Option<i64> {
    if s.disable_cooldowns || group_size <= 1 {
        return None;
    }
    let allowed = s.allowed_fails_policy.get(f.class).or(match f.kind {
        Kind::BadRequest | Kind::ContextWindow | Kind::ContentPolicy => None,
        _ => Some(s.allowed_fails),
    })?;
    let fails = state.record_failure(now_ms);
    let cooldown_ms = s.cooldown_time.as_millis() as i64;
    let until = match (f.kind, f.retry_after) {
        (Kind::RateLimit, Some(ra)) => now_ms + cooldown_ms.max(ra.as_millis() as i64),
        _ if fails > allowed => now_ms + cooldown_ms,
        _ => return None,
    };
    state.cool_down_until(until);
    Some(until)
}

fn lookup<'a>(map: &'a FallbackMap, group: &str) -> Option<&'a [String]> {
    map.iter()
        .find(|(g, _)| g == group)
        .or_else(|| map.iter().find(|(g, _)| g == "*"))
        .map(|(_, v)| v.as_slice())
}

/// The fallback groups to try after `group` failed with `kind`, in order, at most `max_fallbacks`:
/// the request's own `fallbacks` if it gave any; else `context_window_fallbacks` /
/// `content_policy_fallbacks` for those errors; else `fallbacks` (the group's entry, else a `*` entry);
/// else `default_fallbacks`. A request that is itself wrong gets none.
pub fn fallbacks_for(
    s: &RoutingSettings,
    group: &str,
    kind: Kind,
    per_request: Option<&[String]>,
) -> Vec<String> {
    if kind == Kind::BadRequest {
        return Vec::new();
    }
    let specific = match kind {
        Kind::ContextWindow => lookup(&s.context_window_fallbacks, group),
        Kind::ContentPolicy => lookup(&s.content_policy_fallbacks, group),
        _ => None,
    };
    let list: &[String] = per_request
        .or(specific)
        .or_else(|| lookup(&s.fallbacks, group))
        .unwrap_or(&s.default_fallbacks);
    let mut out: Vec<String> = Vec::new();
    for g in list {
        if g != group && !out.contains(g) {
            out.push(g.clone());
        }
    }
    out.truncate(s.max_fallbacks as usize);
    out
}

#[cfg(test)]
mod tests {
    use tollgate_core::error::UpstreamFailure;

    use super::*;

    fn upstream(status: u16, code: Option<&str>, msg: &str, ra: Option<&str>) -> GatewayError {
        GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
            status,
            message: msg.into(),
            error_type: None,
            param: None,
            code: code.map(Into::into),
            retry_after: ra.map(Into::into),
        }))
    }

    #[test]
    fn errors_are_classified() {
        let f = classify(&upstream(429, None, "slow down", Some("2")));
        assert_eq!(
            (f.kind, f.retry_after),
            (Kind::RateLimit, Some(Duration::from_secs(2)))
        );
        assert_eq!(
            classify(&upstream(400, Some("context_length_exceeded"), "x", None)).kind,
            Kind::ContextWindow
        );
        assert_eq!(
            classify(&upstream(
                400,
                None,
                "Your request was rejected as a result of our safety system.",
                None
            ))
            .kind,
            Kind::ContentPolicy
        );
        assert_eq!(
            classify(&upstream(400, None, "bad", None)).kind,
            Kind::BadRequest
        );
        assert_eq!(
            classify(&upstream(401, None, "key", None)).kind,
            Kind::Authentication
        );
        assert_eq!(classify(&upstream(503, None, "x", None)).kind, Kind::Server);
        let t = GatewayError::UpstreamTimeout {
            deployment: "d".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(classify(&t).class, ErrorClass::Timeout);
        assert_eq!(
            classify(&GatewayError::invalid("nope")).kind,
            Kind::BadRequest
        );
    }

    #[test]
    fn retries_follow_the_policies() {
        let mut s = RoutingSettings::default();
        assert_eq!(
            retries_for(&s, "g", ErrorClass::InternalServer, 2, false),
            2
        );
        assert_eq!(retries_for(&s, "g", ErrorClass::BadRequest, 2, true), 0);
        assert_eq!(
            retries_for(&s, "g", ErrorClass::Authentication, 2, false),
            0
        );
        assert_eq!(retries_for(&s, "g", ErrorClass::Authentication, 2, true), 2);
        s.retry_policy.counts.insert(ErrorClass::Authentication, 1);
        s.retry_policy.counts.insert(ErrorClass::RateLimit, 5);
        let mut per_group = tollgate_config::ClassPolicy::default();
        per_group.counts.insert(ErrorClass::RateLimit, 0);
        s.model_group_retry_policy.insert("g".into(), per_group);
        assert_eq!(retries_for(&s, "g", ErrorClass::Authentication, 2, true), 1);
        assert_eq!(retries_for(&s, "g", ErrorClass::RateLimit, 2, true), 0);
        assert_eq!(retries_for(&s, "other", ErrorClass::RateLimit, 2, true), 5);
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let s = RoutingSettings::default();
        let f = classify(&upstream(503, None, "x", None));
        for attempt in 1..6u32 {
            let step = BACKOFF_BASE * (1 << (attempt - 1));
            let w = backoff(&s, attempt, &f, true);
            assert!(w >= step / 2 && w <= step, "attempt {attempt}: {w:?}");
        }
        assert!(backoff(&s, 30, &f, true) <= BACKOFF_CAP);
        assert_eq!(backoff(&s, 1, &f, false), Duration::ZERO);
        let ra = classify(&upstream(429, None, "x", Some("3")));
        assert_eq!(backoff(&s, 1, &ra, true), Duration::from_secs(3));
        assert_eq!(backoff(&s, 1, &ra, false), Duration::ZERO);
    }

    #[test]
    fn cooldown_after_allowed_fails_and_on_rate_limit() {
        let s = RoutingSettings {
            allowed_fails: 1,
            ..RoutingSettings::default()
        };
        let st = DeploymentState::default();
        let f = classify(&upstream(500, None, "x", None));
        assert_eq!(after_failure(&s, &st, &f, 2, 1_000), None);
        assert_eq!(after_failure(&s, &st, &f, 2, 1_001), Some(6_001));
        assert_eq!(st.cooling_until(2_000), Some(6_001));
        // A single deployment never cools down; bad requests never count.
        let lone = DeploymentState::default();
        for t in 0..10 {
            assert_eq!(after_failure(&s, &lone, &f, 1, t), None);
        }
        let bad = classify(&upstream(400, None, "x", None));
        for t in 0..10 {
            assert_eq!(after_failure(&s, &lone, &bad, 3, t), None);
        }
        let rl = classify(&upstream(429, None, "x", Some("20")));
        let st = DeploymentState::default();
        assert_eq!(after_failure(&s, &st, &rl, 2, 0), Some(20_000));
        let off = RoutingSettings {
            disable_cooldowns: true,
            ..s
        };
        assert_eq!(
            after_failure(&off, &DeploymentState::default(), &rl, 2, 0),
            None
        );
    }

    #[test]
    fn allowed_fails_policy_sets_the_threshold_per_class() {
        let mut s = RoutingSettings {
            allowed_fails: 5,
            ..RoutingSettings::default()
        };
        s.allowed_fails_policy.counts.insert(ErrorClass::Timeout, 0);
        s.allowed_fails_policy
            .counts
            .insert(ErrorClass::BadRequest, 1);
        let timeout = classify(&GatewayError::UpstreamTimeout {
            deployment: "d".into(),
            after: Duration::from_secs(1),
        });
        let st = DeploymentState::default();
        assert!(after_failure(&s, &st, &timeout, 2, 0).is_some());
        // Bad requests count only because the policy names their class.
        let bad = classify(&upstream(400, None, "x", None));
        let st = DeploymentState::default();
        assert_eq!(after_failure(&s, &st, &bad, 2, 0), None);
        assert!(after_failure(&s, &st, &bad, 2, 1).is_some());
        // Other classes use allowed_fails.
        let server = classify(&upstream(500, None, "x", None));
        let st = DeploymentState::default();
        for t in 0..5 {
            assert_eq!(after_failure(&s, &st, &server, 2, t), None);
        }
        assert!(after_failure(&s, &st, &server, 2, 5).is_some());
    }

    #[test]
    fn fallback_lists_by_error_kind() {
        let s = RoutingSettings {
            fallbacks: vec![
                ("a".into(), vec!["b".into(), "c".into(), "a".into()]),
                ("*".into(), vec!["z".into()]),
            ],
            context_window_fallbacks: vec![("a".into(), vec!["big".into()])],
            content_policy_fallbacks: vec![("a".into(), vec!["lenient".into()])],
            default_fallbacks: vec!["d".into()],
            max_fallbacks: 1,
            ..RoutingSettings::default()
        };
        assert_eq!(fallbacks_for(&s, "a", Kind::Server, None), vec!["b"]);
        assert_eq!(
            fallbacks_for(&s, "a", Kind::ContextWindow, None),
            vec!["big"]
        );
        assert_eq!(
            fallbacks_for(&s, "a", Kind::ContentPolicy, None),
            vec!["lenient"]
        );
        assert_eq!(fallbacks_for(&s, "q", Kind::Timeout, None), vec!["z"]);
        assert!(fallbacks_for(&s, "a", Kind::BadRequest, None).is_empty());
        let own = vec!["x".to_string()];
        assert_eq!(fallbacks_for(&s, "a", Kind::Server, Some(&own)), vec!["x"]);
        let no_star = RoutingSettings {
            fallbacks: vec![],
            ..s.clone()
        };
        assert_eq!(fallbacks_for(&no_star, "q", Kind::Server, None), vec!["d"]);
    }
}
