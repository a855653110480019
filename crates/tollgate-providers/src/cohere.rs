//! Cohere embeddings and rerank (`cohere/`): OpenAI `/embeddings` translated to Cohere's `POST /v2/embed`, and
//! the Cohere-shaped `/rerank` sent to `POST /v2/rerank`. Cohere chat is not served (no chat completions).
//!
//! - Base URL: `api_base`, else `COHERE_API_BASE`, else `https://api.cohere.com` (a trailing `/v1`, `/v2`,
//!   `/v2/embed` or `/v2/rerank` is dropped); key `api_key`, else `COHERE_API_KEY`, else `CO_API_KEY`, as Bearer.
//! - Embeddings: `{model, texts, input_type, embedding_types: ["float"], output_dimension?}`; `input_type` is the
//!   request's `input_type`, else the deployment's `litellm_params.input_type`, else `search_document` (LiteLLM's
//!   default); `dimensions` becomes `output_dimension`; `encoding_format: "base64"` is produced here from the
//!   floats (float32 little-endian, as OpenAI's). Usage is `meta.billed_units.input_tokens`.
//! - Rerank: the client's `{query, documents, top_n, return_documents, max_tokens_per_doc}`; documents given as
//!   `{"text": ..}` objects are sent as their text (other objects as their JSON), as v2 takes strings. The
//!   answer keeps Cohere's shape `{"id","results":[{"index","relevance_score","document"}],"meta"}`;
//!   `document` (`{"text"}`) is added here unless `return_documents: false` (LiteLLM's default is true), since v2
//!   does not return documents. Usage is `None`: the gateway's `Usage` has no search units.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tollgate_config::Deployment;
use tollgate_core::url::public_url;
use tollgate_core::wire::json_string;
use tollgate_core::{GatewayError, UpstreamFailure, Usage};

use crate::translate::{self, ParamPolicy, Sent, param_str};
use crate::upstream;
use crate::{BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply};

/// Cohere's API when neither `api_base` nor `COHERE_API_BASE` is set.
pub const DEFAULT_API_BASE: &str = "https://api.cohere.com";
/// LiteLLM's `COHERE_DEFAULT_EMBEDDING_INPUT_TYPE`.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// OpenAI embeddings params Cohere takes (`input_type` is Cohere's own, accepted as LiteLLM does).
const EMBED_PARAMS: &[&str] = &["input", "encoding_format", "dimensions", "input_type"];
/// Rerank params of Cohere's v2 API (`return_documents` is answered here).
const RERANK_PARAMS: &[&str] = &[
    "query",
    "documents",
    "top_n",
    "return_documents",
    "max_tokens_per_doc",
];

/// An adapter for one Cohere deployment.
pub struct CohereProvider {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    embed_uri: Uri,
    rerank_uri: Uri,
    public_base: String,
    headers: HeaderMap,
    client: HttpClient,
    policy: ParamPolicy,
    /// `litellm_params.input_type`.
    input_type: Option<String>,
}

/// `base` without a trailing `/`, API version or endpoint path.
fn api_root(base: &str) -> &str {
    let mut b = base.trim_end_matches('/');
    for suffix in ["/embed", "/rerank"] {
        b = b.strip_suffix(suffix).unwrap_or(b);
    }
    for suffix in ["/v1", "/v2"] {
        b = b.strip_suffix(suffix).unwrap_or(b);
    }
    b
}

impl CohereProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let env = ctx.env;
        let invalid = |message: String| BuildError::invalid(d, message);
        let from_env = |vars: &[&str]| upstream::first_env(env, vars);
        let base = d
            .api_base
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| from_env(&["COHERE_API_BASE"]))
            .unwrap_or_else(|| DEFAULT_API_BASE.to_string());
        let root = api_root(&base).to_string();
        upstream::require_http(&root).map_err(invalid)?;
        let uri = |path: &str| {
            format!("{root}{path}").parse::<Uri>().map_err(|e| {
                invalid(format!(
                    "api_base `{}` is not a valid URL: {e}",
                    public_url(&root)
                ))
            })
        };
        let mut headers = upstream::default_headers();
        let key = d
            .api_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .filter(|k| !k.is_empty())
            .or_else(|| from_env(&["COHERE_API_KEY", "CO_API_KEY"]));
        if let Some(key) = key {
            let v = upstream::sensitive(&format!("Bearer {key}"), "api_key").map_err(invalid)?;
            headers.insert(AUTHORIZATION, v);
        }
        upstream::insert_extra_headers(&mut headers, &d.extra_headers).map_err(invalid)?;
        Ok(CohereProvider {
            inner: Arc::new(Inner {
                name: d.model_name.clone(),
                embed_uri: uri("/v2/embed")?,
                rerank_uri: uri("/v2/rerank")?,
                public_base: public_url(&root),
                headers,
                client: ctx.client.clone(),
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
                input_type: param_str(d, "input_type").map(str::to_string),
            }),
        })
    }
}

impl Provider for CohereProvider {
    fn name(&self) -> &'static str {
        "cohere"
    }

    fn api_base(&self) -> &str {
        &self.inner.public_base
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(endpoint, Endpoint::Embeddings | Endpoint::Rerank)
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            match call.endpoint {
                Endpoint::Embeddings => inner.embed(call).await,
                Endpoint::Rerank => inner.rerank(call).await,
                e => Err(upstream::not_served("cohere", e)),
            }
        })
    }
}

impl Inner {
    async fn send(&self, uri: &Uri, body: Vec<u8>, call: &Call) -> Result<Bytes, GatewayError> {
        let req = upstream::post(
            uri.clone(),
            body,
            &self.headers,
            &call.request_id,
            call.traceparent.as_ref(),
        )?;
        match translate::send(
            &self.client,
            req,
            &self.name,
            call.timeout,
            false,
            cohere_error,
        )
        .await?
        {
            Sent::Body(b) => Ok(b),
            Sent::Stream(..) => Err(GatewayError::Internal("unexpected stream".into())),
        }
    }

    async fn embed(&self, call: Call) -> Result<Reply, GatewayError> {
        let body = self.policy.apply(&call.body, EMBED_PARAMS, "cohere")?;
        let req = EmbeddingsRequest::parse(&body)?;
        let upstream = EmbedBody {
            model: &call.upstream_model,
            texts: &req.input,
            input_type: req
                .input_type
                .as_deref()
                .or(self.input_type.as_deref())
                .unwrap_or(DEFAULT_INPUT_TYPE),
            embedding_types: ["float"],
            output_dimension: req.dimensions,
        };
        let bytes =
            serde_json::to_vec(&upstream).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let answer = self.send(&self.embed_uri, bytes, &call).await?;
        let (body, usage) = embeddings_response(&answer, &req, &call.requested_model)
            .map_err(|cause| translate::invalid_response(&self.name, cause))?;
        Ok(Reply::Complete {
            body,
            usage: Some(usage),
        })
    }

    async fn rerank(&self, call: Call) -> Result<Reply, GatewayError> {
        let body = self.policy.apply(&call.body, RERANK_PARAMS, "cohere")?;
        let req: RerankRequest = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::invalid(format!(
                "the request body is not a valid rerank request: {e}"
            ))
        })?;
        let documents = req.document_texts()?;
        let upstream = RerankBody {
            model: &call.upstream_model,
            query: &req.query,
            documents: &documents,
            top_n: req.top_n,
            max_tokens_per_doc: req.max_tokens_per_doc,
        };
        let bytes =
            serde_json::to_vec(&upstream).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let answer = self.send(&self.rerank_uri, bytes, &call).await?;
        let body = rerank_response(
            &answer,
            &documents,
            req.return_documents.unwrap_or(true),
            &call.request_id,
        )
        .map_err(|cause| translate::invalid_response(&self.name, cause))?;
        Ok(Reply::Complete { body, usage: None })
    }
}

/// The client's `/embeddings` body, as far as Cohere takes it.
struct EmbeddingsRequest {
    input: Vec<String>,
    base64: bool,
    dimensions: Option<u32>,
    input_type: Option<String>,
}

impl EmbeddingsRequest {
    fn parse(body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            input: Option<Value>,
            #[serde(default)]
            encoding_format: Option<String>,
            #[serde(default)]
            dimensions: Option<u32>,
            #[serde(default)]
            input_type: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid(format!(
                "the request body is not a valid embeddings request: {e}"
            ))
        })?;
        let text_only = || {
            GatewayError::invalid_param(
                "input",
                "cohere embeddings take text: `input` must be a string or a non-empty list of strings",
            )
        };
        let input = match raw.input {
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(text_only()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(text_only()),
        };
        let base64 = match raw.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(GatewayError::invalid_param(
                    "encoding_format",
                    format!("encoding_format must be \"float\" or \"base64\", not {other:?}"),
                ));
            }
        };
        Ok(EmbeddingsRequest {
            input,
            base64,
            dimensions: raw.dimensions,
            input_type: raw.input_type.filter(|t| !t.is_empty()),
        })
    }
}

/// `POST /v2/embed`.
#[derive(Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    texts: &'a [String],
    input_type: &'a str,
    embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<u32>,
}

/// Cohere's embed answer as the OpenAI list: `(body, usage)`.
fn embeddings_response(
    bytes: &[u8],
    req: &EmbeddingsRequest,
    requested_model: &str,
) -> Result<(Bytes, Usage), String> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        embeddings: &'a RawValue,
        #[serde(default)]
        meta: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        billed_units: Option<Billed>,
    }
    #[derive(Deserialize)]
    struct Billed {
        #[serde(default)]
        input_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct ByType<'a> {
        #[serde(borrow, default)]
        float: Option<Vec<&'a RawValue>>,
    }
    let answer: Answer<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("embed answer: {e}"))?;
    let raw = answer.embeddings.get().trim_start();
    // v2 answers by type (`{"float": [..]}`); a v1-style server answers the float lists directly.
    let vectors: Vec<&RawValue> = if raw.starts_with('{') {
        let by_type: ByType<'_> =
            serde_json::from_str(raw).map_err(|e| format!("embeddings: {e}"))?;
        by_type.float.ok_or("the answer has no float embeddings")?
    } else {
        serde_json::from_str(raw).map_err(|e| format!("embeddings: {e}"))?
    };
    if vectors.len() != req.input.len() {
        return Err(format!(
            "{} embeddings for {} inputs",
            vectors.len(),
            req.input.len()
        ));
    }
    let tokens = answer
        .meta
        .and_then(|m| m.billed_units)
        .and_then(|b| b.input_tokens)
        // Cohere always bills; if a compatible server does not say, estimate (4 characters a token).
        .unwrap_or_else(|| {
            req.input
                .iter()
                .map(|t| t.chars().count().div_ceil(4) as u64)
                .sum()
        });
    let out = translate::embeddings_list(&vectors, req.base64, requested_model, tokens)
        .map_err(|(i, e)| format!("embedding {i}: {e}"))?;
    let usage = Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Usage::default()
    };
    Ok((Bytes::from(out), usage))
}

/// The client's rerank body (Cohere's shape).
#[derive(Deserialize)]
struct RerankRequest {
    query: String,
    documents: Vec<Value>,
    #[serde(default)]
    top_n: Option<u32>,
    #[serde(default)]
    return_documents: Option<bool>,
    #[serde(default)]
    max_tokens_per_doc: Option<u32>,
}

impl RerankRequest {
    /// Each document as the string v2 takes: a string as is, `{"text": ..}` as its text, another object as JSON.
    fn document_texts(&self) -> Result<Vec<Cow<'_, str>>, GatewayError> {
        self.documents
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Value::String(s) => Ok(Cow::Borrowed(s.as_str())),
                Value::Object(o) => Ok(match o.get("text") {
                    Some(Value::String(t)) => Cow::Borrowed(t.as_str()),
                    _ => Cow::Owned(d.to_string()),
                }),
                _ => Err(GatewayError::invalid_param(
                    "documents",
                    format!("documents[{i}] must be a string or an object"),
                )),
            })
            .collect()
    }
}

/// `POST /v2/rerank`.
#[derive(Serialize)]
struct RerankBody<'a> {
    model: &'a str,
    query: &'a str,
    documents: &'a [Cow<'a, str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens_per_doc: Option<u32>,
}

/// Cohere's rerank answer for the client: its results (with `document` when asked for) and `meta`.
fn rerank_response(
    bytes: &[u8],
    documents: &[Cow<'_, str>],
    return_documents: bool,
    request_id: &str,
) -> Result<Bytes, String> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(default)]
        id: Option<String>,
        #[serde(borrow)]
        results: Vec<Ranked<'a>>,
        #[serde(borrow, default)]
        meta: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Ranked<'a> {
        index: usize,
        #[serde(borrow)]
        relevance_score: &'a RawValue,
        #[serde(borrow, default)]
        document: Option<&'a RawValue>,
    }
    let answer: Answer<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("rerank answer: {e}"))?;
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(&json_string(answer.id.as_deref().unwrap_or(request_id)));
    out.extend_from_slice(b",\"results\":[");
    for (k, r) in answer.results.iter().enumerate() {
        let text = documents
            .get(r.index)
            .ok_or_else(|| format!("result index {} of {} documents", r.index, documents.len()))?;
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(r.index.to_string().as_bytes());
        out.extend_from_slice(b",\"relevance_score\":");
        out.extend_from_slice(r.relevance_score.get().as_bytes());
        if return_documents {
            out.extend_from_slice(b",\"document\":");
            match r.document {
                Some(d) if d.get() != "null" => out.extend_from_slice(d.get().as_bytes()),
                _ => {
                    out.extend_from_slice(b"{\"text\":");
                    out.extend_from_slice(&json_string(text));
                    out.push(b'}');
                }
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]");
    if let Some(meta) = answer.meta {
        out.extend_from_slice(b",\"meta\":");
        out.extend_from_slice(meta.get().as_bytes());
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// Cohere's error `{"message": "..."}` as the gateway's error. Status 498 (Cohere's "invalid token") becomes 401;
/// "too many tokens: ..." is `context_length_exceeded`; a content-policy refusal `content_policy_violation`.
pub fn cohere_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| translate::error_text(body, "upstream", status));
    let lower = message.to_ascii_lowercase();
    let code = if lower.starts_with("too many tokens") && !lower.contains("max tokens must") {
        Some("context_length_exceeded".to_string())
    } else if lower.contains("content policy") || lower.contains("safety") {
        Some("content_policy_violation".to_string())
    } else {
        None
    };
    let status = match status.as_u16() {
        498 => 401,
        s => s,
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status,
        message,
        error_type: None,
        param: None,
        code,
        retry_after: translate::retry_after(headers),
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use base64::Engine as _;
    use http::header::HeaderValue;
    use serde_json::json;
    use tollgate_config::{Env, Overrides, load_str};
    use tollgate_mock::MockServer;

    use super::*;

    const KEY: &str = "cohere-test-key";

    fn build(params: &str, env: &[(&str, &str)]) -> Result<CohereProvider, BuildError> {
        let yaml = format!("model_list:\n  - model_name: co\n    litellm_params: {params}\n");
        let cfg = load_str(
            &yaml,
            Path::new("t.yaml"),
            &Env::from_map([]),
            &Overrides::default(),
        )
        .unwrap();
        let d = cfg.deployments.into_iter().next().unwrap();
        let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let client = crate::http_client();
        CohereProvider::new(
            &d,
            &BuildContext {
                env: &env,
                client: &client,
                drop_params: false,
            },
        )
    }

    fn call(endpoint: Endpoint, model: &str, body: Value) -> Call {
        Call {
            endpoint,
            body: Bytes::from(body.to_string()),
            requested_model: "co".into(),
            upstream_model: model.into(),
            stream: false,
            client_wants_usage: false,
            request_id: "req-1".into(),
            traceparent: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn base_and_key_defaults() {
        let p = build(
            "{ model: cohere/embed-english-v3.0 }",
            &[("CO_API_KEY", "k")],
        )
        .unwrap();
        assert_eq!(p.api_base(), DEFAULT_API_BASE);
        assert_eq!(
            p.inner.embed_uri.to_string(),
            "https://api.cohere.com/v2/embed"
        );
        assert_eq!(p.inner.headers[AUTHORIZATION], "Bearer k");
        assert!(p.inner.headers[AUTHORIZATION].is_sensitive());
        let p = build(
            "{ model: cohere/rerank-v3.5, api_base: \"https://proxy.example/v1/\" }",
            &[("COHERE_API_KEY", "k1"), ("CO_API_KEY", "k2")],
        )
        .unwrap();
        assert_eq!(
            p.inner.rerank_uri.to_string(),
            "https://proxy.example/v2/rerank"
        );
        assert_eq!(p.inner.headers[AUTHORIZATION], "Bearer k1");
        assert_eq!(api_root("https://x/v2/embed"), "https://x");
        assert!(p.supports(Endpoint::Rerank) && p.supports(Endpoint::Embeddings));
        assert!(!p.supports(Endpoint::ChatCompletions) && !p.supports(Endpoint::Completions));
        assert!(build("{ model: cohere/x }", &[("COHERE_API_BASE", "ftp://x")]).is_err());
    }

    #[test]
    fn embed_request_translation() {
        let req = EmbeddingsRequest::parse(
            br#"{"model":"co","input":["a","b"],"dimensions":256,"encoding_format":"base64"}"#,
        )
        .unwrap();
        assert!(req.base64);
        let body = EmbedBody {
            model: "embed-v4.0",
            texts: &req.input,
            input_type: DEFAULT_INPUT_TYPE,
            embedding_types: ["float"],
            output_dimension: req.dimensions,
        };
        insta::assert_snapshot!(serde_json::to_string(&body).unwrap(), @r#"{"model":"embed-v4.0","texts":["a","b"],"input_type":"search_document","embedding_types":["float"],"output_dimension":256}"#);
        assert_eq!(
            EmbeddingsRequest::parse(br#"{"input":"one"}"#)
                .unwrap()
                .input,
            ["one"]
        );
        for bad in [
            r#"{"input":[1,2]}"#,
            r#"{"input":[]}"#,
            r#"{}"#,
            r#"{"input":[[1]]}"#,
        ] {
            let e = EmbeddingsRequest::parse(bad.as_bytes()).err().unwrap();
            assert_eq!(e.param(), Some("input"), "{bad}");
        }
        let e = EmbeddingsRequest::parse(br#"{"input":"x","encoding_format":"int8"}"#)
            .err()
            .unwrap();
        assert_eq!(e.param(), Some("encoding_format"));
    }

    #[test]
    fn embed_response_translation() {
        let req = EmbeddingsRequest::parse(br#"{"input":["a","b"]}"#).unwrap();
        let answer = br#"{"id":"x","embeddings":{"float":[[0.5,-0.25],[1e-3,0]]},"texts":["a","b"],"meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":3}},"response_type":"embeddings_by_type"}"#;
        let (body, usage) = embeddings_response(answer, &req, "co").unwrap();
        insta::assert_snapshot!(String::from_utf8(body.to_vec()).unwrap(), @r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]},{"object":"embedding","index":1,"embedding":[1e-3,0]}],"model":"co","usage":{"prompt_tokens":3,"total_tokens":3}}"#);
        assert_eq!((usage.prompt_tokens, usage.total_tokens), (3, 3));
        let b64 =
            EmbeddingsRequest::parse(br#"{"input":["a","b"],"encoding_format":"base64"}"#).unwrap();
        let (body, _) = embeddings_response(answer, &b64, "co").unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            raw,
            [0.5f32.to_le_bytes(), (-0.25f32).to_le_bytes()].concat()
        );
        // A v1-style answer, without billed units: estimated.
        let (_, usage) = embeddings_response(br#"{"embeddings":[[1],[2]]}"#, &req, "co").unwrap();
        assert_eq!(usage.prompt_tokens, 2);
        assert!(embeddings_response(br#"{"embeddings":{"float":[[1]]}}"#, &req, "co").is_err());
    }

    #[test]
    fn rerank_translation() {
        let req: RerankRequest = serde_json::from_value(json!({
            "query": "q", "documents": ["a", {"text": "b"}, {"title": "t"}], "top_n": 2
        }))
        .unwrap();
        let docs = req.document_texts().unwrap();
        let body = RerankBody {
            model: "rerank-v3.5",
            query: &req.query,
            documents: &docs,
            top_n: req.top_n,
            max_tokens_per_doc: None,
        };
        insta::assert_snapshot!(serde_json::to_string(&body).unwrap(), @r#"{"model":"rerank-v3.5","query":"q","documents":["a","b","{\"title\":\"t\"}"],"top_n":2}"#);
        let answer = br#"{"results":[{"index":1,"relevance_score":0.9},{"index":0,"relevance_score":0.1}],"id":"abc","meta":{"api_version":{"version":"2"},"billed_units":{"search_units":1}}}"#;
        let out = rerank_response(answer, &docs, true, "r").unwrap();
        insta::assert_snapshot!(String::from_utf8(out.to_vec()).unwrap(), @r#"{"id":"abc","results":[{"index":1,"relevance_score":0.9,"document":{"text":"b"}},{"index":0,"relevance_score":0.1,"document":{"text":"a"}}],"meta":{"api_version":{"version":"2"},"billed_units":{"search_units":1}}}"#);
        let out: Value =
            serde_json::from_slice(&rerank_response(answer, &docs, false, "r").unwrap()).unwrap();
        assert!(out["results"][0].get("document").is_none());
        assert!(
            rerank_response(
                br#"{"results":[{"index":9,"relevance_score":1}]}"#,
                &docs,
                true,
                "r"
            )
            .is_err()
        );
        let bad: RerankRequest =
            serde_json::from_value(json!({"query": "q", "documents": [1]})).unwrap();
        assert_eq!(
            bad.document_texts().err().unwrap().param(),
            Some("documents")
        );
    }

    #[test]
    fn error_mapping() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("9"));
        let e = cohere_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"message":"You are using a Trial key"}"#,
        );
        assert_eq!(
            (e.status().as_u16(), e.retry_after().as_deref()),
            (429, Some("9"))
        );
        assert_eq!(e.public_message(), "You are using a Trial key");
        let e = cohere_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"message":"too many tokens: size limit exceeded by 11326 tokens."}"#,
        );
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!()
        };
        assert_eq!(f.code.as_deref(), Some("context_length_exceeded"));
        let e = cohere_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"message":"too many tokens: max tokens must be less than or equal to 4096"}"#,
        );
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!()
        };
        assert_eq!(f.code, None);
        let e = cohere_error(
            StatusCode::from_u16(498).unwrap(),
            &HeaderMap::new(),
            br#"{"message":"invalid api token"}"#,
        );
        assert_eq!(e.status().as_u16(), 401);
        let e = cohere_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        );
        assert!(e.public_message().contains("bad gateway"));
    }

    #[test]
    fn unsupported_params_are_refused() {
        let p = build("{ model: cohere/embed-v4.0 }", &[]).unwrap();
        let body = Bytes::from_static(br#"{"model":"co","input":"x","logit_bias":{}}"#);
        let e = p
            .inner
            .policy
            .apply(&body, EMBED_PARAMS, "cohere")
            .unwrap_err();
        assert_eq!(e.param(), Some("logit_bias"));
        let body = Bytes::from_static(
            br#"{"model":"co","query":"q","documents":["a"],"rank_fields":["x"]}"#,
        );
        let e = p
            .inner
            .policy
            .apply(&body, RERANK_PARAMS, "cohere")
            .unwrap_err();
        assert_eq!(e.param(), Some("rank_fields"));
    }

    async fn mock() -> MockServer {
        crate::test_support::recording_mock(KEY).await
    }

    fn against(mock: &MockServer, extra: &str) -> CohereProvider {
        build(
            &format!(
                "{{ model: cohere/embed-v4.0, api_base: \"http://{}\", api_key: {KEY}{extra} }}",
                mock.addr()
            ),
            &[],
        )
        .unwrap()
    }

    async fn complete(p: &CohereProvider, c: Call) -> (Value, Option<Usage>) {
        match p.call(c).await.unwrap() {
            Reply::Complete { body, usage } => (serde_json::from_slice(&body).unwrap(), usage),
            Reply::Stream(_) => panic!("no streams here"),
        }
    }

    #[tokio::test]
    async fn embeddings_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, ", input_type: search_query");
        let (v, usage) = complete(
            &p,
            call(
                Endpoint::Embeddings,
                "embed-v4.0",
                json!({"model": "co", "input": ["hello", "world!"], "dimensions": 4}),
            ),
        )
        .await;
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "co");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
        assert_eq!(usage.unwrap().prompt_tokens, 4);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        let r = mock.recorded().pop().unwrap();
        assert_eq!(r.path, "/v2/embed");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        let sent = r.json().unwrap();
        assert_eq!(
            sent,
            json!({"model": "embed-v4.0", "texts": ["hello", "world!"], "input_type": "search_query",
                   "embedding_types": ["float"], "output_dimension": 4})
        );
        // The request's own input_type wins; base64 is made from the floats.
        let (v, _) = complete(
            &p,
            call(
                Endpoint::Embeddings,
                "embed-v4.0",
                json!({"input": "x", "input_type": "clustering", "encoding_format": "base64"}),
            ),
        )
        .await;
        assert!(v["data"][0]["embedding"].is_string());
        assert_eq!(
            mock.recorded().pop().unwrap().json().unwrap()["input_type"],
            "clustering"
        );
        // Errors keep Cohere's message and status.
        let e = p
            .call(call(
                Endpoint::Embeddings,
                "embed-v4.0@error_code=context_length_exceeded",
                json!({"input": "x"}),
            ))
            .await
            .unwrap_err();
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (f.status, f.code.as_deref()),
            (400, Some("context_length_exceeded"))
        );
        assert!(f.message.starts_with("too many tokens"));
        let e = p
            .call(call(
                Endpoint::Embeddings,
                "embed-v4.0@status=503",
                json!({"input": "x"}),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
        let e = p
            .call(call(
                Endpoint::Embeddings,
                "embed-v4.0@error_code=content_policy_violation",
                json!({"input": "x"}),
            ))
            .await
            .unwrap_err();
        let GatewayError::UpstreamStatus(f) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(f.code.as_deref(), Some("content_policy_violation"));
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn rerank_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, "");
        let body = json!({
            "model": "co", "query": "capital of France", "top_n": 2,
            "documents": ["Bananas are yellow.", {"text": "Paris is the capital of France."}, "The capital of Nevada is Carson City."]
        });
        let (v, usage) = complete(&p, call(Endpoint::Rerank, "rerank-v3.5", body.clone())).await;
        assert!(usage.is_none());
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["index"], 1);
        assert_eq!(
            results[0]["document"]["text"],
            "Paris is the capital of France."
        );
        assert_eq!(results[1]["index"], 2);
        assert!(
            results[0]["relevance_score"].as_f64().unwrap()
                > results[1]["relevance_score"].as_f64().unwrap()
        );
        assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
        assert!(v["id"].is_string());
        let r = mock.recorded().pop().unwrap();
        assert_eq!(r.path, "/v2/rerank");
        assert_eq!(
            r.json().unwrap(),
            json!({"model": "rerank-v3.5", "query": "capital of France", "top_n": 2,
                   "documents": ["Bananas are yellow.", "Paris is the capital of France.", "The capital of Nevada is Carson City."]})
        );
        let mut body = body;
        body["return_documents"] = json!(false);
        let (v, _) = complete(&p, call(Endpoint::Rerank, "rerank-v3.5", body)).await;
        assert!(v["results"][0].get("document").is_none());
        let e = p
            .call(call(
                Endpoint::Rerank,
                "rerank-v3.5@status=429,retry_after=2",
                json!({"query": "q", "documents": ["a"]}),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.retry_after().as_deref()),
            (429, Some("2"))
        );
        assert!(
            p.call(call(Endpoint::ChatCompletions, "x", json!({})))
                .await
                .is_err()
        );
        mock.shutdown().await;
    }
}
