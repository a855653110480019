//! The one gateway error type, its exhaustive mapping to HTTP status, and the OpenAI error body.

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;

/// Every failure a request can end in. `status()` and `error_type()` are exhaustive matches, so adding a
/// variant forces a decision about how clients see it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The request is well-formed JSON but not acceptable (missing field, wrong type, unsupported param).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<String>,
    },
    /// The body is not valid JSON (or not a JSON object).
    #[error("Invalid JSON in request body: {0}")]
    MalformedJson(String),
    /// No model given, or a model this caller cannot use; lists what the caller may use.
    #[error("{}", model_not_found_message(.requested, .available))]
    ModelNotFound {
        requested: Option<String>,
        available: Vec<String>,
    },
    /// Missing, malformed or unknown credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this HTTP method.
    #[error("Method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// The request body is larger than the configured limit.
    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A gateway-side rate limit or budget was hit.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A budget (key, user, team, organization, end user, or a per-model budget) is used up. LiteLLM's
    /// error: "Budget has been exceeded!", type `budget_exceeded`, 429 (budgets are reserved at admission,
    /// so this is a "not now", like a rate limit; `retry_after` is the time to the next reset, if any).
    #[error("{message}")]
    BudgetExceeded {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The upstream answered with an error status; 4xx statuses are passed through, 5xx become 502.
    #[error("{}", .0.message)]
    UpstreamStatus(Box<UpstreamFailure>),
    /// The upstream did not answer (or did not send the first chunk) in time.
    #[error("Upstream {deployment} timed out after {}s", .after.as_secs_f64())]
    UpstreamTimeout { deployment: String, after: Duration },
    /// The upstream could not be reached (connect refused, DNS, TLS, connection reset).
    #[error("Upstream {deployment} is unreachable: {cause}")]
    UpstreamUnreachable { deployment: String, cause: String },
    /// The upstream answered something that is not a valid response for the route.
    #[error("Upstream {deployment} sent an invalid response: {cause}")]
    UpstreamInvalid { deployment: String, cause: String },
    /// The deployment's provider does not support this route.
    #[error("{0}")]
    NotImplemented(String),
    /// The gateway cannot take the request now (shutting down, overloaded).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure inside the gateway. The message is logged; clients see a generic text.
    #[error("Internal error: {0}")]
    Internal(String),
    /// Every attempt (retries and fallbacks) failed: the last error's status, type and code, with every
    /// attempt's cause in the message.
    #[error("{last} {}", attempts_text(.attempts))]
    AllAttemptsFailed {
        last: Box<GatewayError>,
        attempts: Vec<String>,
    },
}

fn attempts_text(attempts: &[String]) -> String {
    let mut out = format!("({} attempts:", attempts.len());
    for (n, a) in attempts.iter().enumerate() {
        out.push_str(&format!(" {}. {a};", n + 1));
    }
    out.pop();
    out.push(')');
    out
}

/// An error status from an upstream, with what its body said (boxed in `GatewayError` to keep results small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub status: u16,
    pub message: String,
    pub error_type: Option<String>,
    pub param: Option<String>,
    pub code: Option<String>,
    pub retry_after: Option<String>,
}

fn model_not_found_message(requested: &Option<String>, available: &[String]) -> String {
    let listed = if available.is_empty() {
        "none".to_string()
    } else {
        available.join(", ")
    };
    match requested {
        None => format!("No model specified in the request. Available models: {listed}"),
        Some(m) => format!(
            "Invalid model name passed in model={m}. Call `/v1/models` to view available models for your key. Available models: {listed}"
        ),
    }
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
            code: None,
        }
    }

    /// The HTTP status clients see.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidRequest { .. } | MalformedJson(_) | ModelNotFound { .. } => {
                StatusCode::BAD_REQUEST
            }
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited { .. } | BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamStatus(f) => match StatusCode::from_u16(f.status) {
                Ok(s) if s.is_client_error() => s,
                _ => StatusCode::BAD_GATEWAY,
            },
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamUnreachable { .. } | UpstreamInvalid { .. } => StatusCode::BAD_GATEWAY,
            NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AllAttemptsFailed { last, .. } => last.status(),
        }
    }

    /// The OpenAI error `type` string.
    pub fn error_type(&self) -> &str {
        use GatewayError::*;
        match self {
            InvalidRequest { .. }
            | MalformedJson(_)
            | ModelNotFound { .. }
            | PayloadTooLarge { .. } => "invalid_request_error",
            MethodNotAllowed(_) => "invalid_request_error",
            Unauthorized(_) => "authentication_error",
            Forbidden(_) => "permission_error",
            NotFound(_) => "not_found_error",
            RateLimited { .. } => "rate_limit_error",
            BudgetExceeded { .. } => "budget_exceeded",
            UpstreamStatus(f) if f.status < 500 && f.error_type.is_some() => {
                f.error_type.as_deref().unwrap_or("api_error")
            }
            UpstreamStatus(f) => match f.status {
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            },
            UpstreamTimeout { .. } => "timeout_error",
            UpstreamUnreachable { .. } | UpstreamInvalid { .. } => "api_error",
            NotImplemented(_) => "not_implemented_error",
            Unavailable(_) => "service_unavailable_error",
            Internal(_) => "internal_server_error",
            AllAttemptsFailed { last, .. } => last.error_type(),
        }
    }

    /// The OpenAI error `code` string (machine-readable).
    pub fn code(&self) -> Option<&str> {
        use GatewayError::*;
        match self {
            InvalidRequest { code, .. } => code.as_deref(),
            MalformedJson(_) => Some("invalid_json"),
            ModelNotFound { .. } => Some("model_not_found"),
            Unauthorized(_) => Some("invalid_api_key"),
            Forbidden(_) => Some("forbidden"),
            NotFound(_) => Some("not_found"),
            MethodNotAllowed(_) => Some("method_not_allowed"),
            PayloadTooLarge { .. } => Some("request_too_large"),
            RateLimited { .. } => Some("rate_limit_exceeded"),
            BudgetExceeded { .. } => Some("budget_exceeded"),
            UpstreamStatus(f) => f.code.as_deref(),
            UpstreamTimeout { .. } => Some("upstream_timeout"),
            UpstreamUnreachable { .. } => Some("upstream_unreachable"),
            UpstreamInvalid { .. } => Some("upstream_invalid_response"),
            NotImplemented(_) => Some("not_implemented"),
            Unavailable(_) => Some("service_unavailable"),
            Internal(_) => Some("internal_error"),
            AllAttemptsFailed { last, .. } => last.code(),
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::UpstreamStatus(f) => f.param.as_deref(),
            GatewayError::ModelNotFound { .. } => Some("model"),
            GatewayError::AllAttemptsFailed { last, .. } => last.param(),
            _ => None,
        }
    }

    /// Seconds for a `Retry-After` header, when the error carries one.
    pub fn retry_after(&self) -> Option<String> {
        match self {
            GatewayError::RateLimited {
                retry_after: Some(d),
                ..
            }
            | GatewayError::BudgetExceeded {
                retry_after: Some(d),
                ..
            } => Some(d.as_secs_f64().ceil().max(1.0).to_string()),
            GatewayError::UpstreamStatus(f) => f.retry_after.clone(),
            GatewayError::AllAttemptsFailed { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    /// The message clients see. Internal errors are not detailed to clients (they are logged instead).
    pub fn public_message(&self) -> String {
        match self {
            GatewayError::Internal(_) => {
                "Internal error in the gateway; the request id identifies it in the gateway's logs"
                    .to_string()
            }
            GatewayError::UpstreamStatus(f) if f.status >= 500 => {
                format!("Upstream returned {}: {}", f.status, f.message)
            }
            GatewayError::AllAttemptsFailed { last, attempts } => {
                format!("{} {}", last.public_message(), attempts_text(attempts))
            }
            other => other.to_string(),
        }
    }

    /// The OpenAI-shaped body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                message: self.public_message(),
                r#type: self.error_type().to_string(),
                param: self.param().map(str::to_string),
                code: self.code().map(str::to_string),
            },
        }
    }

    /// The body serialized to JSON bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings cannot fail; fall back to a fixed body to avoid a panic path.
        serde_json::to_vec(&self.body()).unwrap_or_else(|_| {
            br#"{"error":{"message":"error","type":"api_error","param":null,"code":null}}"#.to_vec()
        })
    }
}

impl GatewayError {
    /// Anthropic's error type for this error's status (the Messages API's error vocabulary).
    pub fn anthropic_error_type(&self) -> &'static str {
        const ANTHROPIC_TYPES: &[&str] = &[
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "not_found_error",
            "request_too_large",
            "rate_limit_error",
            "api_error",
            "overloaded_error",
        ];
        // An Anthropic upstream's own type is kept (a 529 `overloaded_error` reaches clients as a 502).
        let upstream = match self {
            GatewayError::UpstreamStatus(f) => f.error_type.as_deref(),
            GatewayError::AllAttemptsFailed { last, .. } => match last.as_ref() {
                GatewayError::UpstreamStatus(f) => f.error_type.as_deref(),
                _ => None,
            },
            _ => None,
        };
        if let Some(t) = upstream.and_then(|t| ANTHROPIC_TYPES.iter().find(|a| **a == t)) {
            return t;
        }
        match self.status().as_u16() {
            400 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The Anthropic-shaped body: `{"type":"error","error":{"type","message"}}` (for `/v1/messages`).
    pub fn anthropic_body_bytes(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "type": "error",
            "error": {"type": self.anthropic_error_type(), "message": self.public_message()},
        });
        serde_json::to_vec(&v).unwrap_or_else(|_| {
            br#"{"type":"error","error":{"type":"api_error","message":"error"}}"#.to_vec()
        })
    }
}

/// The OpenAI error envelope.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ErrorObject {
    pub message: String,
    pub r#type: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let cases: Vec<(GatewayError, u16)> = vec![
            (GatewayError::MalformedJson("x".into()), 400),
            (
                GatewayError::ModelNotFound {
                    requested: Some("m".into()),
                    available: vec![],
                },
                400,
            ),
            (GatewayError::Unauthorized("bad".into()), 401),
            (GatewayError::PayloadTooLarge { limit: 1 }, 413),
            (
                GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
                    status: 429,
                    message: "slow down".into(),
                    error_type: None,
                    param: None,
                    code: None,
                    retry_after: Some("3".into()),
                })),
                429,
            ),
            (
                GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
                    status: 503,
                    message: "overloaded".into(),
                    error_type: Some("server_error".into()),
                    param: None,
                    code: None,
                    retry_after: None,
                })),
                502,
            ),
            (
                GatewayError::UpstreamTimeout {
                    deployment: "d".into(),
                    after: Duration::from_secs(1),
                },
                504,
            ),
            (
                GatewayError::UpstreamUnreachable {
                    deployment: "d".into(),
                    cause: "refused".into(),
                },
                502,
            ),
            (GatewayError::Internal("boom".into()), 500),
        ];
        for (e, s) in cases {
            assert_eq!(e.status().as_u16(), s, "{e:?}");
        }
    }

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<GatewayError>() <= 96,
            "{}",
            std::mem::size_of::<GatewayError>()
        );
    }

    #[test]
    fn body_is_openai_shaped_and_hides_internal_details() {
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::Internal("secret detail".into()).body_bytes())
                .unwrap();
        let err = v.get("error").unwrap();
        for k in ["message", "type", "param", "code"] {
            assert!(err.get(k).is_some(), "missing {k}");
        }
        assert!(!err["message"].as_str().unwrap().contains("secret detail"));
    }

    #[test]
    fn model_not_found_lists_available() {
        let e = GatewayError::ModelNotFound {
            requested: Some("gpt-5".into()),
            available: vec!["a".into(), "b".into()],
        };
        let m = e.public_message();
        assert!(m.contains("model=gpt-5") && m.contains("a, b"), "{m}");
        assert_eq!(e.param(), Some("model"));
    }

    #[test]
    fn rate_limit_retry_after_rounds_up() {
        let e = GatewayError::RateLimited {
            message: "x".into(),
            retry_after: Some(Duration::from_millis(1200)),
        };
        assert_eq!(e.retry_after().as_deref(), Some("2"));
    }
}
