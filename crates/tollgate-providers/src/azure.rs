//! Azure OpenAI (`azure/<deployment>`): the OpenAI wire format at Azure's URLs — `/openai/deployments/{name}/...
//! ?api-version=` or the v1 API's `/openai/v1/...` — with an `api-key` or an Entra ID (Azure AD) bearer token.
//!
//! URLs (`base` = `api_base`, else `AZURE_API_BASE` / `AZURE_OPENAI_ENDPOINT`, without a trailing `/openai`):
//! - dated `api_version` (else `AZURE_API_VERSION`, else [`DEFAULT_API_VERSION`]):
//!   `{base}/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version={v}`;
//! - `api_version: v1 | latest | preview` (Azure's v1 API; the deployment goes in the body's `model`):
//!   `{base}/openai/v1/{...}` (`?api-version=` only for `preview` / `latest`);
//! - an `api_base` that already contains `/openai/deployments/` is used as given, with the endpoint path appended;
//! - Responses API: `{base}/openai/responses?api-version={v}` (dated) or `{base}/openai/v1/responses` (v1); with no
//!   `api_version` configured it uses LiteLLM's Responses default `preview`.
//!
//! Auth as LiteLLM: a key (`api_key`, else `AZURE_OPENAI_API_KEY`, else `AZURE_API_KEY`) is sent as `api-key`;
//! without one, `azure_ad_token` (else `AZURE_AD_TOKEN`) as `Authorization: Bearer`.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, StatusCode, Uri};
use tollgate_config::Deployment;
use tollgate_core::url::public_url;
use tollgate_core::wire::JsonObject;
use tollgate_core::{GatewayError, UpstreamFailure};

use crate::openai::{exchange, rewrite_request, upstream_error};
use crate::translate::{ParamPolicy, param_str};
use crate::{
    BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply, upstream,
};

/// LiteLLM's `AZURE_DEFAULT_API_VERSION`, used when neither `api_version` nor `AZURE_API_VERSION` is set.
pub const DEFAULT_API_VERSION: &str = "2025-02-01-preview";
/// LiteLLM's `AZURE_DEFAULT_RESPONSES_API_VERSION`: the Responses API's version when none is configured.
pub const DEFAULT_RESPONSES_API_VERSION: &str = "preview";
/// The first dated API version that takes `stream_options` (Azure added it in 2024-09-01-preview).
const FIRST_STREAM_OPTIONS_VERSION: &str = "2024-09-01";

/// An adapter for one Azure OpenAI deployment.
pub struct AzureProvider {
    inner: Arc<Inner>,
}

struct Inner {
    /// The deployment's `model_name` (for errors).
    name: String,
    /// The Azure deployment the cached URLs address (`model` after `azure/`).
    deployment: String,
    base: String,
    api_version: String,
    responses_version: String,
    uris: Uris,
    public_base: String,
    headers: HeaderMap,
    client: HttpClient,
    policy: ParamPolicy,
    /// The API version takes `stream_options`, so streams can be asked for their usage.
    stream_usage: bool,
}

/// The parsed URL of each endpoint for the configured deployment.
struct Uris {
    chat: Uri,
    completions: Uri,
    embeddings: Uri,
    responses: Option<Uri>,
}

impl Uris {
    fn new(
        base: &str,
        deployment: &str,
        version: &str,
        responses_version: &str,
    ) -> Result<Uris, String> {
        let parse = |e: Endpoint, v: &str| -> Result<Option<Uri>, String> {
            endpoint_url(base, deployment, v, e)
                .map(|u| {
                    u.parse::<Uri>()
                        .map_err(|err| format!("{}: {err}", public_url(&u)))
                })
                .transpose()
        };
        let required =
            |e: Endpoint| parse(e, version)?.ok_or_else(|| format!("no URL for {}", e.path()));
        Ok(Uris {
            chat: required(Endpoint::ChatCompletions)?,
            completions: required(Endpoint::Completions)?,
            embeddings: required(Endpoint::Embeddings)?,
            responses: parse(Endpoint::Responses, responses_version)?,
        })
    }

    fn get(&self, e: Endpoint) -> Option<Uri> {
        match e {
            Endpoint::ChatCompletions => Some(self.chat.clone()),
            Endpoint::Completions => Some(self.completions.clone()),
            Endpoint::Embeddings => Some(self.embeddings.clone()),
            Endpoint::Responses => self.responses.clone(),
            Endpoint::Messages | Endpoint::CountTokens | Endpoint::Rerank => None,
        }
    }
}

/// Whether `api_version` selects Azure's v1 API (`/openai/v1/...`), as LiteLLM decides it.
pub fn is_v1_api_version(api_version: &str) -> bool {
    ["v1", "latest", "preview"]
        .iter()
        .any(|v| api_version.eq_ignore_ascii_case(v))
}

/// Whether a (dated or v1) API version accepts `stream_options`.
fn takes_stream_options(api_version: &str) -> bool {
    is_v1_api_version(api_version)
        || api_version
            .get(..10)
            .is_some_and(|date| date >= FIRST_STREAM_OPTIONS_VERSION)
}

/// The URL of `endpoint` for `deployment` (see the module doc), `None` where Azure has none (the Responses API
/// under an `api_base` that names a deployment, and the non-OpenAI endpoints).
pub fn endpoint_url(
    base: &str,
    deployment: &str,
    api_version: &str,
    endpoint: Endpoint,
) -> Option<String> {
    let (path_part, query) = match base.split_once('?') {
        Some((p, q)) => (p.trim_end_matches('/'), q),
        None => (base.trim_end_matches('/'), ""),
    };
    let v1 = is_v1_api_version(api_version);
    let names_deployment = path_part.contains("/openai/deployments/");
    let root = path_part
        .strip_suffix("/openai/v1")
        .or_else(|| path_part.strip_suffix("/openai"))
        .unwrap_or(path_part);
    let mut url = match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            if names_deployment {
                format!("{path_part}{}", endpoint.path())
            } else if v1 {
                format!("{root}/openai/v1{}", endpoint.path())
            } else {
                format!(
                    "{root}/openai/deployments/{}{}",
                    encode_segment(deployment),
                    endpoint.path()
                )
            }
        }
        Endpoint::Responses if !names_deployment => {
            if v1 {
                format!("{root}/openai/v1/responses")
            } else {
                format!("{root}/openai/responses")
            }
        }
        _ => return None,
    };
    let mut query = query.to_string();
    let has_version = query.split('&').any(|kv| kv.starts_with("api-version="));
    // The v1 API takes no dated version; `preview` / `latest` still travel as `api-version`.
    if !has_version && !api_version.eq_ignore_ascii_case("v1") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("api-version=");
        query.push_str(&encode_segment(api_version));
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    Some(url)
}

/// `s` percent-encoded for a URL path segment or query value (RFC 3986 unreserved characters stay).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AzureProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let env = ctx.env;
        let invalid = |message: String| BuildError::invalid(d, message);
        let from_env = |vars: &[&str]| upstream::first_env(env, vars);
        let base = d
            .api_base
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| from_env(&["AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"]))
            .ok_or_else(|| {
                invalid(
                    "provider `azure` needs `api_base` (or AZURE_API_BASE), e.g. https://my-resource.openai.azure.com"
                        .into(),
                )
            })?;
        let base = base.trim_end_matches('/').to_string();
        upstream::require_http(&base).map_err(invalid)?;
        let configured_version = d
            .api_version
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| from_env(&["AZURE_API_VERSION"]));
        let responses_version = configured_version
            .clone()
            .unwrap_or_else(|| DEFAULT_RESPONSES_API_VERSION.to_string());
        let api_version = configured_version.unwrap_or_else(|| DEFAULT_API_VERSION.to_string());

        let mut headers = upstream::default_headers();
        let key = d
            .api_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .filter(|k| !k.is_empty())
            .or_else(|| from_env(&["AZURE_OPENAI_API_KEY", "AZURE_API_KEY"]));
        let ad_token = param_str(d, "azure_ad_token")
            .map(str::to_string)
            .or_else(|| from_env(&["AZURE_AD_TOKEN"]));
        let sensitive = |v: String, what: &str| upstream::sensitive(&v, what).map_err(invalid);
        match (key, ad_token) {
            (Some(key), _) => {
                headers.insert(
                    HeaderName::from_static("api-key"),
                    sensitive(key, "api_key")?,
                );
            }
            (None, Some(token)) if token.starts_with("oidc/") => {
                return Err(invalid(
                    "azure_ad_token `oidc/...` (an OIDC token to exchange) is not supported; give the Entra ID access token itself or an api_key".into(),
                ));
            }
            (None, Some(token)) => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(format!("Bearer {token}"), "azure_ad_token")?,
                );
            }
            (None, None) => {
                let entra: Vec<&str> =
                    ["tenant_id", "client_id", "client_secret", "azure_username"]
                        .into_iter()
                        .filter(|k| param_str(d, k).is_some())
                        .collect();
                if !entra.is_empty() {
                    return Err(invalid(format!(
                        "Entra ID sign-in ({}) is not supported; set `api_key` or `azure_ad_token`",
                        entra.join(", ")
                    )));
                }
            }
        }
        upstream::insert_extra_headers(&mut headers, &d.extra_headers).map_err(invalid)?;
        let uris = Uris::new(&base, &d.model, &api_version, &responses_version)
            .map_err(|e| invalid(format!("api_base does not make a valid URL: {e}")))?;
        Ok(AzureProvider {
            inner: Arc::new(Inner {
                name: d.model_name.clone(),
                deployment: d.model.clone(),
                public_base: public_url(&base),
                stream_usage: takes_stream_options(&api_version),
                base,
                api_version,
                responses_version,
                uris,
                headers,
                client: ctx.client.clone(),
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
            }),
        })
    }
}

impl Provider for AzureProvider {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn api_base(&self) -> &str {
        &self.inner.public_base
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => true,
            Endpoint::Responses => self.inner.uris.responses.is_some(),
            Endpoint::Messages | Endpoint::CountTokens | Endpoint::Rerank => false,
        }
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(call).await })
    }
}

impl Inner {
    /// The URL for this call: the cached one, or (for a wildcard deployment) one built for the model asked for.
    fn uri(&self, call: &Call) -> Result<Uri, GatewayError> {
        let unsupported = || upstream::not_served("azure", call.endpoint);
        if call.upstream_model == self.deployment {
            return self.uris.get(call.endpoint).ok_or_else(unsupported);
        }
        let version = if call.endpoint == Endpoint::Responses {
            &self.responses_version
        } else {
            &self.api_version
        };
        let url = endpoint_url(&self.base, &call.upstream_model, version, call.endpoint)
            .ok_or_else(unsupported)?;
        url.parse::<Uri>().map_err(|e| {
            GatewayError::invalid_param(
                "model",
                format!("`{}` makes no valid Azure URL: {e}", call.upstream_model),
            )
        })
    }

    async fn call(self: Arc<Self>, mut call: Call) -> Result<Reply, GatewayError> {
        let uri = self.uri(&call)?;
        call.body = self.policy.apply_blocklist(&call.body, &[], &[], "azure")?;
        let body = if self.stream_usage || !call.stream {
            rewrite_request(&call)?
        } else {
            // An API version before 2024-09-01 refuses `stream_options`: only the model is rewritten.
            let obj = JsonObject::parse(&call.body)
                .map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
            tollgate_core::wire::replace_model(&obj, &call.upstream_model)
        };
        let req = upstream::post(
            uri,
            body,
            &self.headers,
            &call.request_id,
            call.traceparent.as_ref(),
        )?;
        exchange(&self.client, req, &self.name, call, azure_error).await
    }
}

/// Azure's errors are OpenAI's shape; a content-filter refusal (`code: "content_filter"`, or an `innererror` of
/// `ResponsibleAIPolicyViolation`) becomes `content_policy_violation`, which the router treats as a content-policy
/// failure (`content_policy_fallbacks`). The message is Azure's.
pub fn azure_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        innererror: Option<InnerError>,
    }
    #[derive(serde::Deserialize)]
    struct InnerError {
        #[serde(default)]
        code: Option<String>,
    }
    let mut err = upstream_error(status, headers, body);
    if let GatewayError::UpstreamStatus(f) = &mut err {
        let UpstreamFailure { code, .. } = f.as_mut();
        let responsible_ai = || {
            serde_json::from_slice::<Envelope>(body).is_ok_and(|e| {
                e.error
                    .innererror
                    .and_then(|i| i.code)
                    .is_some_and(|c| c == "ResponsibleAIPolicyViolation")
            })
        };
        if code.as_deref() == Some("content_filter") || responsible_ai() {
            *code = Some("content_policy_violation".into());
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use tollgate_config::{Env, Overrides, load_str};
    use tollgate_mock::MockServer;

    use super::*;

    const KEY: &str = "azure-test-key";

    fn deployment(params: &str) -> Deployment {
        let yaml = format!("model_list:\n  - model_name: az\n    litellm_params: {params}\n");
        let cfg = load_str(
            &yaml,
            Path::new("t.yaml"),
            &Env::from_map([]),
            &Overrides::default(),
        )
        .unwrap();
        cfg.deployments.into_iter().next().unwrap()
    }

    fn build(params: &str, env: &[(&str, &str)]) -> Result<AzureProvider, BuildError> {
        let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let client = crate::http_client();
        let ctx = BuildContext {
            env: &env,
            client: &client,
            drop_params: false,
        };
        AzureProvider::new(&deployment(params), &ctx)
    }

    fn call(endpoint: Endpoint, body: serde_json::Value, stream: bool) -> Call {
        Call {
            endpoint,
            body: Bytes::from(body.to_string()),
            requested_model: "az".into(),
            upstream_model: "my-gpt4o".into(),
            stream,
            client_wants_usage: false,
            request_id: "req-1".into(),
            traceparent: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn deployment_urls_carry_the_api_version() {
        let b = "https://res.openai.azure.com";
        assert_eq!(
            endpoint_url(b, "gpt4o", "2024-10-21", Endpoint::ChatCompletions).unwrap(),
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            endpoint_url(
                &format!("{b}/openai/"),
                "gpt4o",
                "2024-10-21",
                Endpoint::Embeddings
            )
            .unwrap(),
            "https://res.openai.azure.com/openai/deployments/gpt4o/embeddings?api-version=2024-10-21"
        );
        assert_eq!(
            endpoint_url(b, "a b@c", "2024-10-21", Endpoint::Completions).unwrap(),
            "https://res.openai.azure.com/openai/deployments/a%20b%40c/completions?api-version=2024-10-21"
        );
        // An api_base naming the deployment is used as given; a version in its query is kept.
        assert_eq!(
            endpoint_url(
                &format!("{b}/openai/deployments/other"),
                "x",
                "2024-10-21",
                Endpoint::ChatCompletions
            )
            .unwrap(),
            "https://res.openai.azure.com/openai/deployments/other/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            endpoint_url(
                &format!("{b}/openai/deployments/other?api-version=2024-06-01"),
                "x",
                "2024-10-21",
                Endpoint::ChatCompletions
            )
            .unwrap(),
            "https://res.openai.azure.com/openai/deployments/other/chat/completions?api-version=2024-06-01"
        );
        assert_eq!(
            endpoint_url(
                &format!("{b}/openai/deployments/other"),
                "x",
                "2024-10-21",
                Endpoint::Responses
            ),
            None
        );
        assert_eq!(endpoint_url(b, "x", "2024-10-21", Endpoint::Rerank), None);
    }

    #[test]
    fn v1_urls_and_responses() {
        let b = "https://res.openai.azure.com";
        assert_eq!(
            endpoint_url(b, "gpt4o", "v1", Endpoint::ChatCompletions).unwrap(),
            "https://res.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url(
                &format!("{b}/openai/v1"),
                "gpt4o",
                "preview",
                Endpoint::Embeddings
            )
            .unwrap(),
            "https://res.openai.azure.com/openai/v1/embeddings?api-version=preview"
        );
        assert_eq!(
            endpoint_url(b, "gpt4o", "latest", Endpoint::Responses).unwrap(),
            "https://res.openai.azure.com/openai/v1/responses?api-version=latest"
        );
        assert_eq!(
            endpoint_url(b, "gpt4o", "2025-03-01-preview", Endpoint::Responses).unwrap(),
            "https://res.openai.azure.com/openai/responses?api-version=2025-03-01-preview"
        );
        assert!(is_v1_api_version("V1") && !is_v1_api_version("2024-10-21"));
        assert!(takes_stream_options("2024-10-21") && takes_stream_options("v1"));
        assert!(!takes_stream_options("2024-06-01") && !takes_stream_options("garbage"));
    }

    #[test]
    fn build_reads_base_version_and_key_from_the_environment() {
        let p = build(
            "{ model: azure/my-gpt4o }",
            &[
                ("AZURE_API_BASE", "https://env.openai.azure.com/"),
                ("AZURE_API_KEY", "k2"),
                ("AZURE_OPENAI_API_KEY", "k1"),
            ],
        )
        .unwrap();
        assert_eq!(p.api_base(), "https://env.openai.azure.com");
        assert_eq!(p.inner.api_version, DEFAULT_API_VERSION);
        assert_eq!(p.inner.headers["api-key"], "k1");
        assert!(p.inner.headers["api-key"].is_sensitive());
        assert_eq!(
            p.inner.uris.chat.to_string(),
            format!(
                "https://env.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version={DEFAULT_API_VERSION}"
            )
        );
        // No api_version configured: the Responses API uses `preview` on the v1 path.
        assert_eq!(
            p.inner.uris.responses.as_ref().unwrap().to_string(),
            "https://env.openai.azure.com/openai/v1/responses?api-version=preview"
        );
        let p = build(
            "{ model: azure/d, api_base: \"https://x.openai.azure.com\" }",
            &[("AZURE_API_VERSION", "2024-06-01")],
        )
        .unwrap();
        assert_eq!(p.inner.api_version, "2024-06-01");
        assert!(!p.inner.stream_usage);
        assert!(
            p.inner.headers.get("api-key").is_none()
                && p.inner.headers.get(AUTHORIZATION).is_none()
        );

        let Err(BuildError::Invalid { message, .. }) = build("{ model: azure/d }", &[]) else {
            panic!("a missing api_base must be refused");
        };
        assert!(message.contains("AZURE_API_BASE"), "{message}");
    }

    #[test]
    fn api_key_wins_over_an_ad_token() {
        let base = "api_base: \"https://x.openai.azure.com\"";
        let p = build(
            &format!("{{ model: azure/d, {base}, azure_ad_token: tok }}"),
            &[],
        )
        .unwrap();
        assert_eq!(p.inner.headers[AUTHORIZATION], "Bearer tok");
        assert!(p.inner.headers[AUTHORIZATION].is_sensitive());
        assert!(p.inner.headers.get("api-key").is_none());
        let p = build(
            &format!("{{ model: azure/d, {base} }}"),
            &[("AZURE_AD_TOKEN", "envtok")],
        )
        .unwrap();
        assert_eq!(p.inner.headers[AUTHORIZATION], "Bearer envtok");
        let p = build(
            &format!("{{ model: azure/d, {base}, api_key: k, azure_ad_token: tok }}"),
            &[],
        )
        .unwrap();
        assert_eq!(p.inner.headers["api-key"], "k");
        assert!(p.inner.headers.get(AUTHORIZATION).is_none());
        assert!(
            build(
                &format!("{{ model: azure/d, {base}, azure_ad_token: oidc/x }}"),
                &[]
            )
            .is_err()
        );
        let Err(BuildError::Invalid { message, .. }) = build(
            &format!("{{ model: azure/d, {base}, tenant_id: t, client_id: c, client_secret: s }}"),
            &[],
        ) else {
            panic!("Entra client credentials are not supported");
        };
        assert!(
            message.contains("tenant_id") && !message.contains(" s "),
            "{message}"
        );
    }

    #[test]
    fn content_filter_errors_are_content_policy_violations() {
        let body = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"violence":{"filtered":true,"severity":"medium"}}}}}"#;
        let e = azure_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (f.status, f.code.as_deref()),
            (400, Some("content_policy_violation"))
        );
        assert!(f.message.contains("content management policy"));
        let inner_only = br#"{"error":{"message":"filtered","code":"400","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        let GatewayError::UpstreamStatus(f) =
            azure_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), inner_only)
        else {
            panic!()
        };
        assert_eq!(f.code.as_deref(), Some("content_policy_violation"));
        let ctx = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let GatewayError::UpstreamStatus(f) =
            azure_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), ctx)
        else {
            panic!()
        };
        assert_eq!(f.code.as_deref(), Some("context_length_exceeded"));
        let missing = br#"{"error":{"code":"404","message":"Resource not found"}}"#;
        let e = azure_error(StatusCode::NOT_FOUND, &HeaderMap::new(), missing);
        assert_eq!(
            (e.status().as_u16(), e.public_message()),
            (404, "Resource not found".to_string())
        );
    }

    #[test]
    fn old_api_versions_get_no_stream_options() {
        // The body the provider sends for a stream, per API version.
        let body = serde_json::json!({"model": "az", "messages": [{"role": "user", "content": "hi"}], "stream": true});
        let c = call(Endpoint::ChatCompletions, body, true);
        let new = rewrite_request(&c).unwrap();
        assert!(
            String::from_utf8(new)
                .unwrap()
                .contains("\"stream_options\":{\"include_usage\":true}")
        );
        let obj = JsonObject::parse(&c.body).unwrap();
        let old = tollgate_core::wire::replace_model(&obj, &c.upstream_model);
        let old = String::from_utf8(old).unwrap();
        assert!(
            old.contains("\"model\":\"my-gpt4o\"") && !old.contains("stream_options"),
            "{old}"
        );
    }

    async fn mock() -> MockServer {
        crate::test_support::recording_mock(KEY).await
    }

    fn against(mock: &MockServer, extra: &str) -> AzureProvider {
        build(
            &format!(
                "{{ model: azure/my-gpt4o, api_base: \"http://{}\", api_version: \"2024-10-21\", api_key: {KEY}{extra} }}",
                mock.addr()
            ),
            &[],
        )
        .unwrap()
    }

    async fn complete(
        p: &AzureProvider,
        c: Call,
    ) -> (serde_json::Value, Option<tollgate_core::Usage>) {
        match p.call(c).await.unwrap() {
            Reply::Complete { body, usage } => (serde_json::from_slice(&body).unwrap(), usage),
            Reply::Stream(_) => panic!("expected a complete answer"),
        }
    }

    fn chat_body() -> serde_json::Value {
        serde_json::json!({"model": "az", "messages": [{"role": "user", "content": "Say hello"}]})
    }

    #[tokio::test]
    async fn chat_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, "");
        let (v, usage) = complete(&p, call(Endpoint::ChatCompletions, chat_body(), false)).await;
        assert_eq!(v["model"], "az");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("mock")
        );
        assert_eq!(usage.unwrap().completion_tokens, 7);
        let r = mock.recorded().pop().unwrap();
        assert_eq!(r.path, "/openai/deployments/my-gpt4o/chat/completions");
        assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(r.header("api-key"), Some(KEY));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.json().unwrap()["model"], "my-gpt4o");
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn stream_against_the_mock_reports_usage() {
        let mock = mock().await;
        let p = against(&mock, "");
        let mut body = chat_body();
        body["stream"] = serde_json::json!(true);
        let Reply::Stream(s) = p
            .call(call(Endpoint::ChatCompletions, body, true))
            .await
            .unwrap()
        else {
            panic!("expected a stream");
        };
        let chunks: Vec<Bytes> = s.body.collect().await;
        let text: String = chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(
            text.contains("\"model\":\"az\"") && !text.contains("my-gpt4o"),
            "{text}"
        );
        // The gateway asked for usage: it is recorded, and the usage-only chunk is not forwarded.
        assert!(!text.contains("\"usage\":{"), "{text}");
        assert_eq!(s.outcome.usage().unwrap().completion_tokens, 7);
        assert!(s.outcome.completed());
        let sent = mock.recorded().pop().unwrap().json().unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn embeddings_and_tool_calls_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, ", additional_drop_params: [seed]");
        let (v, usage) = complete(
            &p,
            call(
                Endpoint::Embeddings,
                serde_json::json!({"model": "az", "input": ["a", "b"], "seed": 1}),
                false,
            ),
        )
        .await;
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["model"], "az");
        assert_eq!(usage.unwrap().prompt_tokens, 2);
        let r = mock.recorded().pop().unwrap();
        assert_eq!(r.path, "/openai/deployments/my-gpt4o/embeddings");
        assert!(
            r.json().unwrap().get("seed").is_none(),
            "additional_drop_params strip `seed`"
        );

        let mut body = chat_body();
        body["tools"] = serde_json::json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        let mut c = call(Endpoint::ChatCompletions, body, false);
        c.upstream_model = "my-gpt4o@tool_call=1,content={}".into();
        let (v, _) = complete(&p, c).await;
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        // A wildcard-style upstream model gets its own URL (percent-encoded).
        assert!(
            mock.recorded()
                .pop()
                .unwrap()
                .path
                .starts_with("/openai/deployments/my-gpt4o%40tool_call")
        );
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn content_filter_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, "");
        let mut c = call(Endpoint::ChatCompletions, chat_body(), false);
        c.upstream_model = "my-gpt4o@error_code=content_filter".into();
        let e = p.call(c).await.unwrap_err();
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (f.status, f.code.as_deref()),
            (400, Some("content_policy_violation"))
        );
        assert!(
            f.message.contains("content management policy"),
            "{}",
            f.message
        );
        // A completion the filter stopped passes through with its finish reason.
        let mut c = call(Endpoint::ChatCompletions, chat_body(), false);
        c.upstream_model = "my-gpt4o@finish=content_filter".into();
        let (v, _) = complete(&p, c).await;
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        // Status errors keep their status and Retry-After.
        let mut c = call(Endpoint::ChatCompletions, chat_body(), false);
        c.upstream_model = "my-gpt4o@status=429,retry_after=3".into();
        let e = p.call(c).await.unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.retry_after().as_deref()),
            (429, Some("3"))
        );
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn ad_token_reaches_the_mock_as_bearer() {
        let mock = mock().await;
        let p = build(
            &format!(
                "{{ model: azure/my-gpt4o, api_base: \"http://{}\", api_version: \"2024-10-21\", azure_ad_token: {KEY} }}",
                mock.addr()
            ),
            &[],
        )
        .unwrap();
        let (v, _) = complete(&p, call(Endpoint::ChatCompletions, chat_body(), false)).await;
        assert_eq!(v["model"], "az");
        let r = mock.recorded().pop().unwrap();
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(r.header("api-key"), None);
        mock.shutdown().await;
    }
}
