//! Ollama's native API: `ollama_chat/` chat goes to `POST /api/chat`; `ollama/` chat goes to `POST /api/generate`
//! with the messages flattened into one prompt (as LiteLLM does); completions to `/api/generate`, embeddings to
//! `/api/embed`. Answers (JSON, or NDJSON streams) come back in the OpenAI format.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tollgate_config::Deployment;
use tollgate_core::url::public_url;
use tollgate_core::wire::JsonObject;
use tollgate_core::{GatewayError, UpstreamFailure, Usage};

use crate::chat::{
    ChatRequest, ChatResponse, ChunkWriter, Content, FinishReason, FunctionCall, Message, Part,
    ResponseFormat, Stop, ToolCall, ToolChoice, push_data, unix_now, usage_json,
};
use crate::stream::StreamOutcome;
use crate::translate::{self, ParamPolicy, Sent, StreamTranslator, invalid_response};
use crate::{
    BoxFuture, BuildContext, BuildError, Call, Endpoint, HttpClient, Provider, Reply, upstream,
};

/// Where Ollama listens when neither `api_base` nor `OLLAMA_API_BASE` says otherwise.
pub const DEFAULT_API_BASE: &str = "http://localhost:11434";

/// Longest NDJSON stream line taken (the bytes between two newlines), whether it arrives in one read or in
/// many: as large as a complete answer may be, like an SSE event ([`crate::sse::MAX_SSE_EVENT`]).
const MAX_LINE: usize = translate::MAX_UPSTREAM_BODY;

/// The given params plus `keep_alive` and Ollama's own `options` names (Modelfile parameters), which a
/// request may carry (LiteLLM passes provider-specific params through) and which go into `options`.
macro_rules! with_ollama_options {
    ($($p:literal),* $(,)?) => {
        &[$($p,)* "keep_alive", "num_ctx", "num_keep", "num_batch", "num_gpu", "main_gpu", "num_thread",
          "numa", "use_mmap", "num_gqa", "repeat_penalty", "repeat_last_n", "min_p", "typical_p", "tfs_z",
          "mirostat", "mirostat_eta", "mirostat_tau", "penalize_newline"]
    };
}

/// Ollama `options` names that are not OpenAI params: read from the request body as they are.
const NATIVE_OPTIONS: &[&str] = &[
    "num_ctx",
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "numa",
    "use_mmap",
    "num_gqa",
    "repeat_penalty",
    "repeat_last_n",
    "min_p",
    "typical_p",
    "tfs_z",
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "penalize_newline",
];

/// Ollama `options` a deployment may set in `litellm_params` (LiteLLM's `OllamaConfig` fields and the rest of
/// Ollama's); a request's own values win.
const DEPLOYMENT_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "num_predict",
    "presence_penalty",
    "frequency_penalty",
];

/// OpenAI chat params `/api/chat` takes (`ollama_chat/`).
const CHAT_PARAMS: &[&str] = with_ollama_options!(
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "reasoning_effort",
    "thinking",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
);

/// OpenAI chat params `/api/generate` takes (`ollama/`): no tools (LiteLLM's `ollama/` does not take them
/// either).
const GENERATE_CHAT_PARAMS: &[&str] = with_ollama_options!(
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "reasoning_effort",
    "thinking",
);

/// OpenAI completions params `/api/generate` takes.
const COMPLETION_PARAMS: &[&str] = with_ollama_options!(
    "prompt",
    "suffix",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
);

/// OpenAI embeddings params `/api/embed` takes (`truncate` is Ollama's own).
const EMBED_PARAMS: &[&str] =
    with_ollama_options!("input", "dimensions", "encoding_format", "truncate");

/// An adapter for one Ollama deployment.
pub struct OllamaProvider {
    inner: Arc<Inner>,
}

struct Inner {
    /// `ollama` or `ollama_chat`.
    name: &'static str,
    /// `ollama_chat/`: chat goes to `/api/chat` (else to `/api/generate` as one prompt).
    chat_api: bool,
    deployment: String,
    public_base: String,
    chat_uri: Uri,
    generate_uri: Uri,
    embed_uri: Uri,
    headers: HeaderMap,
    client: HttpClient,
    policy: ParamPolicy,
    /// `options` from the deployment's `litellm_params`.
    options: Map<String, Value>,
    /// `litellm_params.keep_alive`.
    keep_alive: Option<Value>,
}

impl OllamaProvider {
    pub fn new(d: &Deployment, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::invalid(d, message);
        let from_env = |var: &str| ctx.env.get(var).filter(|v| !v.is_empty());
        let base = d
            .api_base
            .clone()
            .or_else(|| from_env("OLLAMA_API_BASE"))
            .unwrap_or_else(|| DEFAULT_API_BASE.to_string());
        let mut base = base.trim_end_matches('/');
        // LiteLLM accepts an api_base that already names the endpoint.
        for suffix in [
            "/api/chat",
            "/api/generate",
            "/api/embeddings",
            "/api/embed",
            "/api",
        ] {
            if let Some(b) = base.strip_suffix(suffix) {
                base = b.trim_end_matches('/');
                break;
            }
        }
        upstream::require_http(base).map_err(invalid)?;
        let public_base = public_url(base);
        let uri = |path: &str| {
            format!("{base}{path}")
                .parse::<Uri>()
                .map_err(|e| invalid(format!("api_base `{public_base}` is not a valid URL: {e}")))
        };
        let (chat_uri, generate_uri, embed_uri) =
            (uri("/api/chat")?, uri("/api/generate")?, uri("/api/embed")?);

        let mut headers = upstream::default_headers();
        // Ollama itself takes no key; a key is for ollama.com (turbo) or an authenticating proxy.
        let key = match &d.api_key {
            Some(k) => Some(k.expose().to_string()),
            None => from_env("OLLAMA_API_KEY"),
        };
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            let v = upstream::sensitive(&format!("Bearer {key}"), "api_key").map_err(invalid)?;
            headers.insert(AUTHORIZATION, v);
        }
        upstream::insert_extra_headers(&mut headers, &d.extra_headers).map_err(invalid)?;
        let options = d
            .extra_params
            .iter()
            .filter(|(k, v)| {
                !v.is_null()
                    && (NATIVE_OPTIONS.contains(&k.as_str())
                        || DEPLOYMENT_OPTIONS.contains(&k.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let chat_api = d.provider == "ollama_chat";
        Ok(OllamaProvider {
            inner: Arc::new(Inner {
                name: if chat_api { "ollama_chat" } else { "ollama" },
                chat_api,
                deployment: d.model_name.clone(),
                public_base,
                chat_uri,
                generate_uri,
                embed_uri,
                headers,
                client: ctx.client.clone(),
                policy: ParamPolicy::for_deployment(d, ctx.drop_params),
                options,
                keep_alive: d
                    .extra_params
                    .get("keep_alive")
                    .filter(|v| !v.is_null())
                    .cloned(),
            }),
        })
    }
}

impl Provider for OllamaProvider {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn api_base(&self) -> &str {
        &self.inner.public_base
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings
        )
    }

    fn call(&self, call: Call) -> BoxFuture<Result<Reply, GatewayError>> {
        let inner = self.inner.clone();
        match inner.prepare(&call) {
            Ok(prepared) => Box::pin(async move { inner.send(call, prepared).await }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// What the upstream answer is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A `chat.completion` (from `/api/chat` or `/api/generate`).
    Chat,
    /// A `text_completion` (from `/api/generate`).
    Text,
    /// An embeddings list; `base64` when the client asked for `encoding_format: "base64"`.
    Embeddings { base64: bool },
}

/// The upstream request, built before the call's future runs.
struct Prepared {
    uri: Uri,
    body: Vec<u8>,
    answer: Answer,
}

impl Inner {
    fn prepare(&self, call: &Call) -> Result<Prepared, GatewayError> {
        let (uri, answer, body) = match call.endpoint {
            Endpoint::ChatCompletions if self.chat_api => {
                let body = self.policy.apply(&call.body, CHAT_PARAMS, self.name)?;
                let extras = Extras::read(&body)?;
                let req = ChatRequest::parse(&body)?;
                let native = chat_body(
                    &req,
                    call,
                    self.request_options(&req, extras.options),
                    self.keep_alive(extras.keep_alive),
                )?;
                (self.chat_uri.clone(), Answer::Chat, to_vec(&native)?)
            }
            Endpoint::ChatCompletions => {
                let body = self
                    .policy
                    .apply(&call.body, GENERATE_CHAT_PARAMS, self.name)?;
                let extras = Extras::read(&body)?;
                let req = ChatRequest::parse(&body)?;
                let native = generate_chat_body(
                    &req,
                    call,
                    self.request_options(&req, extras.options),
                    self.keep_alive(extras.keep_alive),
                )?;
                (self.generate_uri.clone(), Answer::Chat, to_vec(&native)?)
            }
            Endpoint::Completions => {
                let body = self
                    .policy
                    .apply(&call.body, COMPLETION_PARAMS, self.name)?;
                let extras = Extras::read(&body)?;
                let req: CompletionRequest<'_> = serde_json::from_slice(&body).map_err(|e| {
                    GatewayError::invalid(format!(
                        "the request body is not a valid completions request: {e}"
                    ))
                })?;
                let mut options = self.options.clone();
                options.extend(extras.options);
                let stop = req.stop.as_ref().map(stop_list).unwrap_or_default();
                sampling(
                    &mut options,
                    Sampling {
                        temperature: req.temperature,
                        top_p: req.top_p,
                        top_k: req.top_k,
                        max_tokens: req.max_tokens,
                        stop,
                        seed: req.seed,
                        presence_penalty: req.presence_penalty,
                        frequency_penalty: req.frequency_penalty,
                    },
                );
                let native =
                    completion_body(&req, call, options, self.keep_alive(extras.keep_alive))?;
                (self.generate_uri.clone(), Answer::Text, to_vec(&native)?)
            }
            Endpoint::Embeddings => {
                let body = self.policy.apply(&call.body, EMBED_PARAMS, self.name)?;
                let extras = Extras::read(&body)?;
                let mut options = self.options.clone();
                options.extend(extras.options);
                let (native, base64) =
                    embed_body(&body, call, options, self.keep_alive(extras.keep_alive))?;
                (
                    self.embed_uri.clone(),
                    Answer::Embeddings { base64 },
                    native,
                )
            }
            other => return Err(upstream::not_served(self.name, other)),
        };
        Ok(Prepared { uri, body, answer })
    }

    /// The deployment's `options`, then the request's own Ollama options, then its OpenAI sampling params.
    fn request_options(&self, req: &ChatRequest, extras: Map<String, Value>) -> Map<String, Value> {
        let mut options = self.options.clone();
        options.extend(extras);
        sampling(
            &mut options,
            Sampling {
                temperature: req.temperature,
                top_p: req.top_p,
                top_k: req.top_k,
                max_tokens: req.max_output_tokens(),
                stop: req.stop_sequences(),
                seed: req.seed,
                presence_penalty: req.presence_penalty,
                frequency_penalty: req.frequency_penalty,
            },
        );
        options
    }

    /// The request's `keep_alive`, else the deployment's.
    fn keep_alive(&self, from_request: Option<Value>) -> Option<Value> {
        from_request.or_else(|| self.keep_alive.clone())
    }

    async fn send(&self, call: Call, p: Prepared) -> Result<Reply, GatewayError> {
        let req = upstream::post(
            p.uri,
            p.body,
            &self.headers,
            &call.request_id,
            call.traceparent.as_ref(),
        )?;
        let stream = call.stream && !matches!(p.answer, Answer::Embeddings { .. });
        let sent = translate::send(
            &self.client,
            req,
            &self.deployment,
            call.timeout,
            stream,
            upstream_error,
        )
        .await?;
        match sent {
            Sent::Stream(resp, credentials) => {
                let t = NdjsonTranslator::new(p.answer, &call, &self.deployment);
                Ok(Reply::Stream(translate::translated_stream(
                    resp.into_body(),
                    t,
                    call.timeout,
                    self.deployment.clone(),
                    credentials,
                )))
            }
            Sent::Body(bytes) => match p.answer {
                Answer::Chat => chat_reply(&bytes, &call.requested_model, &self.deployment),
                Answer::Text => text_reply(&bytes, &call.requested_model, &self.deployment),
                Answer::Embeddings { base64 } => {
                    embed_reply(&bytes, &call.requested_model, base64, &self.deployment)
                }
            },
        }
    }
}

fn to_vec<T: Serialize>(v: &T) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v)
        .map_err(|e| GatewayError::Internal(format!("serializing the Ollama request: {e}")))
}

// ---------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------

/// `keep_alive` and Ollama's own options, as a request body may carry them.
struct Extras {
    options: Map<String, Value>,
    keep_alive: Option<Value>,
}

impl Extras {
    fn read(body: &[u8]) -> Result<Extras, GatewayError> {
        let obj =
            JsonObject::parse(body).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
        let mut extras = Extras {
            options: Map::new(),
            keep_alive: None,
        };
        for key in obj.keys() {
            let native = NATIVE_OPTIONS.contains(&key);
            if !native && key != "keep_alive" {
                continue;
            }
            let Some(raw) = obj.get(key).filter(|r| r.get() != "null") else {
                continue;
            };
            let value: Value = serde_json::from_str(raw.get())
                .map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
            if native {
                extras.options.insert(key.to_string(), value);
            } else {
                extras.keep_alive = Some(value);
            }
        }
        Ok(extras)
    }
}

/// The OpenAI sampling params of a request, in Ollama's `options` words.
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
    max_tokens: Option<u64>,
    stop: Vec<String>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
}

/// Set `options.{temperature, top_p, top_k, num_predict, stop, seed, presence_penalty, frequency_penalty}`.
fn sampling(options: &mut Map<String, Value>, s: Sampling) {
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            options.insert(k.to_string(), v);
        }
    };
    set("temperature", s.temperature.map(Value::from));
    set("top_p", s.top_p.map(Value::from));
    set("top_k", s.top_k.map(Value::from));
    set("num_predict", s.max_tokens.map(Value::from));
    set("seed", s.seed.map(Value::from));
    set("presence_penalty", s.presence_penalty.map(Value::from));
    set("frequency_penalty", s.frequency_penalty.map(Value::from));
    if !s.stop.is_empty() {
        set("stop", Some(Value::from(s.stop)));
    }
}

fn stop_list(s: &Stop) -> Vec<String> {
    match s {
        Stop::One(s) => vec![s.clone()],
        Stop::Many(v) => v.clone(),
    }
}

/// `think`: `true`/`false`, or a level for `gpt-oss` models (which take `"low" | "medium" | "high"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum Think {
    On(bool),
    Level(&'static str),
}

/// `think` from `thinking` (Anthropic style) or `reasoning_effort`; `None` leaves the model's default.
fn think(req: &ChatRequest, model: &str) -> Option<Think> {
    let gpt_oss = model.starts_with("gpt-oss");
    if let Some(t) = &req.thinking {
        if t.get("type").and_then(Value::as_str) == Some("disabled") {
            return Some(Think::On(false));
        }
        if gpt_oss {
            return Some(Think::Level(match req.thinking_budget().unwrap_or(2048) {
                0..=1024 => "low",
                1025..=2048 => "medium",
                _ => "high",
            }));
        }
        return Some(Think::On(true));
    }
    let effort = req.reasoning_effort.as_deref()?;
    if effort == "none" {
        return Some(Think::On(false));
    }
    if gpt_oss {
        return Some(Think::Level(match effort {
            "minimal" | "low" => "low",
            "high" => "high",
            _ => "medium",
        }));
    }
    Some(Think::On(true))
}

/// `format`: `"json"` (JSON mode) or a JSON schema (structured outputs).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Format<'a> {
    Json(&'static str),
    Schema(&'a Value),
}

fn format(rf: Option<&ResponseFormat>) -> Option<Format<'_>> {
    match rf? {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(Format::Json("json")),
        ResponseFormat::JsonSchema { json_schema } => Some(
            json_schema
                .schema
                .as_ref()
                .map_or(Format::Json("json"), Format::Schema),
        ),
    }
}

/// `POST /api/chat`.
#[derive(Debug, Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<OMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Format<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<Think>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
}

/// One `/api/chat` message.
#[derive(Debug, Serialize)]
struct OMessage<'a> {
    role: &'static str,
    content: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    /// Base64 image data, without a `data:` prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
}

/// A tool call of an earlier assistant turn: `arguments` is a JSON object, not JSON text.
#[derive(Debug, Serialize)]
struct OToolCall<'a> {
    function: OCallFunction<'a>,
}

#[derive(Debug, Serialize)]
struct OCallFunction<'a> {
    name: &'a str,
    arguments: &'a RawValue,
}

/// A tool, in the OpenAI function-tool shape Ollama takes.
#[derive(Debug, Serialize)]
struct OTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OFunctionDef<'a>,
}

#[derive(Debug, Serialize)]
struct OFunctionDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: Cow<'a, Value>,
}

fn check_n(n: Option<u32>) -> Result<(), GatewayError> {
    if n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_param(
            "n",
            "ollama answers with one choice: `n` must be 1",
        ));
    }
    Ok(())
}

/// The base64 data of an image data URL (Ollama takes base64 only; it does not fetch URLs).
fn image_data(url: &str) -> Result<&str, GatewayError> {
    if let Some(rest) = url.strip_prefix("data:") {
        return match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => Ok(data),
            _ => Err(GatewayError::invalid_param(
                "messages",
                "an image data URL must be base64 (`data:image/png;base64,...`)",
            )),
        };
    }
    let message = if url.starts_with("http://") || url.starts_with("https://") {
        "ollama takes images as base64 data URLs (`data:image/png;base64,...`), not http(s) URLs"
    } else {
        "`image_url.url` must be a base64 data URL (`data:image/png;base64,...`)"
    };
    Err(GatewayError::invalid_param("messages", message))
}

/// A message's text (text parts joined with newlines) and its images (appended to `images`).
fn text_and_images<'a>(
    m: &'a Message,
    images: &mut Vec<&'a str>,
) -> Result<Cow<'a, str>, GatewayError> {
    let parts = match &m.content {
        None => return Ok(Cow::Borrowed("")),
        Some(Content::Text(s)) => return Ok(Cow::Borrowed(s)),
        Some(Content::Parts(parts)) => parts,
    };
    let mut text: Cow<'a, str> = Cow::Borrowed("");
    for p in parts {
        match p {
            Part::Text { text: t, .. } => {
                if text.is_empty() {
                    text = Cow::Borrowed(t);
                } else {
                    let s = text.to_mut();
                    s.push('\n');
                    s.push_str(t);
                }
            }
            Part::ImageUrl { image_url } => images.push(image_data(image_url.url())?),
            Part::InputAudio { .. } | Part::File { .. } => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "ollama takes text and image content only (no audio or file parts)",
                ));
            }
        }
    }
    Ok(text)
}

/// An OpenAI tool call's `arguments` text as the JSON object Ollama takes.
fn arguments_object(text: &str) -> Result<&RawValue, GatewayError> {
    let bad = || {
        GatewayError::invalid_param(
            "messages",
            "a tool call's `function.arguments` must be the JSON text of an object",
        )
    };
    if text.trim().is_empty() {
        return serde_json::from_str("{}").map_err(|_| bad());
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(|_| bad())?;
    if !raw.get().starts_with('{') {
        return Err(bad());
    }
    Ok(raw)
}

/// The OpenAI messages as `/api/chat` messages.
fn chat_messages(req: &ChatRequest) -> Result<Vec<OMessage<'_>>, GatewayError> {
    let mut out = Vec::with_capacity(req.messages.len());
    // Tool names by call id, so tool results can say which tool they answer (`tool_name`).
    let mut names: Vec<(&str, &str)> = Vec::new();
    for m in &req.messages {
        let mut images = Vec::new();
        let content = text_and_images(m, &mut images)?;
        let mut msg = OMessage {
            role: "user",
            content,
            thinking: None,
            images,
            tool_calls: Vec::new(),
            tool_name: None,
        };
        match m.role.as_str() {
            "system" | "developer" => msg.role = "system",
            "user" => {}
            "assistant" => {
                msg.role = "assistant";
                msg.thinking = m.reasoning_content.as_deref().filter(|t| !t.is_empty());
                for c in m.tool_calls.iter().flatten() {
                    names.push((&c.id, &c.function.name));
                    msg.tool_calls.push(OToolCall {
                        function: OCallFunction {
                            name: &c.function.name,
                            arguments: arguments_object(&c.function.arguments)?,
                        },
                    });
                }
            }
            "tool" | "function" => {
                msg.role = "tool";
                msg.tool_name = m.name.as_deref().or_else(|| {
                    let id = m.tool_call_id.as_deref()?;
                    names.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
                });
            }
            other => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("unknown message role `{other}`"),
                ));
            }
        }
        out.push(msg);
    }
    Ok(out)
}

/// `tools` as Ollama takes them, after `tool_choice`: `none` sends no tools, a named function sends only
/// that tool (Ollama has no way to force a call, so `required` sends them all).
fn chat_tools(req: &ChatRequest) -> Result<Vec<OTool<'_>>, GatewayError> {
    let Some(tools) = req.tools.as_deref() else {
        return Ok(Vec::new());
    };
    let choice = req
        .tool_choice
        .as_ref()
        .map(ToolChoice::parse)
        .transpose()?;
    let only = match &choice {
        Some(ToolChoice::None) => return Ok(Vec::new()),
        Some(ToolChoice::Function(name)) => {
            if !tools.iter().any(|t| &t.function.name == name) {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    format!("`tool_choice` names `{name}`, which is not in `tools`"),
                ));
            }
            Some(name.as_str())
        }
        _ => None,
    };
    Ok(tools
        .iter()
        .filter(|t| only.is_none_or(|n| t.function.name == n))
        .map(|t| OTool {
            kind: "function",
            function: OFunctionDef {
                name: &t.function.name,
                description: t.function.description.as_deref(),
                parameters: match &t.function.parameters {
                    Some(p) => Cow::Borrowed(p),
                    None => Cow::Owned(t.function.schema()),
                },
            },
        })
        .collect())
}

fn chat_body<'a>(
    req: &'a ChatRequest,
    call: &'a Call,
    options: Map<String, Value>,
    keep_alive: Option<Value>,
) -> Result<ChatBody<'a>, GatewayError> {
    check_n(req.n)?;
    Ok(ChatBody {
        model: &call.upstream_model,
        messages: chat_messages(req)?,
        stream: call.stream,
        tools: chat_tools(req)?,
        format: format(req.response_format.as_ref()),
        think: think(req, &call.upstream_model),
        options,
        keep_alive,
    })
}

/// `POST /api/generate`.
#[derive(Debug, Serialize)]
struct GenerateBody<'a> {
    model: &'a str,
    prompt: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suffix: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Format<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<Think>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
}

/// The messages as one prompt, as LiteLLM's `ollama/` builds it: runs of user (and tool) messages under
/// `### User:`, system messages under `### System:`, assistant messages (with their tool calls as JSON)
/// under `### Assistant:`, each block ending with a blank line. Images of all messages are collected.
fn flatten_prompt<'a>(
    messages: &'a [Message],
    images: &mut Vec<&'a str>,
) -> Result<String, GatewayError> {
    let mut prompt = String::new();
    let mut open: Option<&'static str> = None;
    for m in messages {
        let label = match m.role.as_str() {
            "user" | "tool" | "function" => "User",
            "system" | "developer" => "System",
            "assistant" => "Assistant",
            other => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    format!("unknown message role `{other}`"),
                ));
            }
        };
        let mut text = text_and_images(m, images)?;
        if let Some(calls) = m.tool_calls.as_deref().filter(|c| !c.is_empty()) {
            #[derive(Serialize)]
            struct Listed<'a> {
                id: &'a str,
                #[serde(rename = "type")]
                kind: &'static str,
                function: OCallFunction<'a>,
            }
            let listed = calls
                .iter()
                .map(|c| {
                    Ok(Listed {
                        id: &c.id,
                        kind: "function",
                        function: OCallFunction {
                            name: &c.function.name,
                            arguments: arguments_object(&c.function.arguments)?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, GatewayError>>()?;
            let s = text.to_mut();
            s.push_str("Tool Calls: ");
            s.push_str(&String::from_utf8_lossy(&to_vec(&listed)?));
        }
        if text.is_empty() {
            continue;
        }
        if open == Some(label) {
            prompt.push('\n');
        } else {
            if open.is_some() {
                prompt.push_str("\n\n");
            }
            prompt.push_str("### ");
            prompt.push_str(label);
            prompt.push_str(":\n");
            open = Some(label);
        }
        prompt.push_str(&text);
    }
    if open.is_some() {
        prompt.push_str("\n\n");
    }
    Ok(prompt)
}

fn generate_chat_body<'a>(
    req: &'a ChatRequest,
    call: &'a Call,
    options: Map<String, Value>,
    keep_alive: Option<Value>,
) -> Result<GenerateBody<'a>, GatewayError> {
    check_n(req.n)?;
    let mut images = Vec::new();
    let prompt = flatten_prompt(&req.messages, &mut images)?;
    Ok(GenerateBody {
        model: &call.upstream_model,
        prompt: Cow::Owned(prompt),
        suffix: None,
        images,
        stream: call.stream,
        format: format(req.response_format.as_ref()),
        think: think(req, &call.upstream_model),
        options,
        keep_alive,
    })
}

/// A client's `/completions` body, as far as Ollama takes it.
#[derive(Debug, Deserialize)]
struct CompletionRequest<'a> {
    #[serde(borrow, default)]
    prompt: Option<Prompt<'a>>,
    #[serde(borrow, default)]
    suffix: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
}

/// `prompt`: a string or a list of strings (Ollama takes one text prompt).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

fn completion_body<'a>(
    req: &'a CompletionRequest<'a>,
    call: &'a Call,
    options: Map<String, Value>,
    keep_alive: Option<Value>,
) -> Result<GenerateBody<'a>, GatewayError> {
    check_n(req.n)?;
    let prompt: &str = match &req.prompt {
        None => "",
        Some(Prompt::One(p)) => p,
        Some(Prompt::Many(v)) if v.len() <= 1 => v.first().map_or("", |p| p),
        Some(Prompt::Many(_)) => {
            return Err(GatewayError::invalid_param(
                "prompt",
                "ollama completes one prompt per request: send one string",
            ));
        }
    };
    Ok(GenerateBody {
        model: &call.upstream_model,
        prompt: Cow::Borrowed(prompt),
        suffix: req.suffix.as_deref(),
        images: Vec::new(),
        stream: call.stream,
        format: None,
        think: None,
        options,
        keep_alive,
    })
}

/// A client's `/embeddings` body, as far as Ollama takes it.
#[derive(Debug, Deserialize)]
struct EmbeddingRequest<'a> {
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    #[serde(default)]
    truncate: Option<bool>,
}

/// `POST /api/embed`.
#[derive(Debug, Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    /// The client's `input` as it came (checked to be a string or a list of strings).
    input: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
}

/// The `/api/embed` body, and whether the answer is to be base64.
fn embed_body(
    body: &[u8],
    call: &Call,
    options: Map<String, Value>,
    keep_alive: Option<Value>,
) -> Result<(Vec<u8>, bool), GatewayError> {
    let req: EmbeddingRequest<'_> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(format!(
            "the request body is not a valid embeddings request: {e}"
        ))
    })?;
    let input = req
        .input
        .filter(|r| r.get() != "null")
        .ok_or_else(|| GatewayError::invalid_param("input", "`input` is required"))?;
    let text = input.get();
    let count = if text.starts_with('[') {
        serde_json::from_str::<Vec<Cow<'_, str>>>(text).map(|v| v.len())
    } else {
        serde_json::from_str::<Cow<'_, str>>(text).map(|_| 1)
    };
    match count {
        Ok(0) => {
            return Err(GatewayError::invalid_param(
                "input",
                "`input` must not be empty",
            ));
        }
        Ok(_) => {}
        Err(_) => {
            return Err(GatewayError::invalid_param(
                "input",
                "ollama embeds text: `input` must be a string or a list of strings (not tokens)",
            ));
        }
    }
    let base64 = translate::wants_base64(req.encoding_format.as_deref())?;
    let native = EmbedBody {
        model: &call.upstream_model,
        input,
        dimensions: req.dimensions,
        truncate: req.truncate,
        options,
        keep_alive,
    };
    Ok((to_vec(&native)?, base64))
}

// ---------------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------------

/// One Ollama answer object: a whole `/api/chat` or `/api/generate` answer, or one NDJSON line of a stream.
#[derive(Debug, Deserialize)]
struct Answered<'a> {
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    /// `/api/chat`.
    #[serde(borrow, default)]
    message: Option<AnsweredMessage<'a>>,
    /// `/api/generate`.
    #[serde(borrow, default)]
    response: Option<Cow<'a, str>>,
    /// `/api/generate` with `think`.
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default)]
    done: bool,
    #[serde(borrow, default)]
    done_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct AnsweredMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<AnsweredToolCall<'a>>>,
}

#[derive(Debug, Deserialize)]
struct AnsweredToolCall<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: AnsweredFunction<'a>,
}

#[derive(Debug, Deserialize)]
struct AnsweredFunction<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    /// A JSON object (kept as its text).
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

impl AnsweredToolCall<'_> {
    /// The upstream's id, else a new `call_...`.
    fn id(&self) -> String {
        match self.id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => new_call_id(),
        }
    }

    /// `arguments` as OpenAI's JSON text.
    fn arguments(&self) -> Cow<'_, str> {
        match self.function.arguments.map(RawValue::get) {
            None | Some("null") => Cow::Borrowed("{}"),
            // Some servers send the JSON text itself as a string.
            Some(s) if s.starts_with('"') => {
                serde_json::from_str::<String>(s).map_or(Cow::Borrowed(s), Cow::Owned)
            }
            Some(s) => Cow::Borrowed(s),
        }
    }
}

impl Answered<'_> {
    fn content(&self) -> &str {
        self.message
            .as_ref()
            .and_then(|m| m.content.as_deref())
            .or(self.response.as_deref())
            .unwrap_or("")
    }

    fn thinking(&self) -> &str {
        self.message
            .as_ref()
            .and_then(|m| m.thinking.as_deref())
            .or(self.thinking.as_deref())
            .unwrap_or("")
    }

    fn tool_calls(&self) -> &[AnsweredToolCall<'_>] {
        self.message
            .as_ref()
            .and_then(|m| m.tool_calls.as_deref())
            .unwrap_or(&[])
    }

    /// `prompt_eval_count` (absent when the whole prompt came from Ollama's cache) and `eval_count`.
    fn usage(&self) -> Usage {
        let prompt = self.prompt_eval_count.unwrap_or(0);
        let completion = self.eval_count.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Usage::default()
        }
    }
}

/// `call_` and 24 random alphanumerics.
fn new_call_id() -> String {
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

/// Ollama's `done_reason` in OpenAI's words: `length` stays `length`; `stop` (and anything else) is `stop`,
/// or `tool_calls` when the model called tools. `content_filter` is not an Ollama reason, but a server in
/// front of Ollama may say it.
fn finish_reason(done_reason: Option<&str>, tool_calls: bool) -> FinishReason {
    match done_reason {
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        _ if tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn parse_answer<'a>(bytes: &'a [u8], deployment: &str) -> Result<Answered<'a>, GatewayError> {
    let a: Answered<'a> = serde_json::from_slice(bytes)
        .map_err(|e| invalid_response(deployment, format!("not an Ollama answer object: {e}")))?;
    if let Some(message) = &a.error {
        return Err(in_band_error(message));
    }
    Ok(a)
}

fn chat_reply(
    bytes: &[u8],
    requested_model: &str,
    deployment: &str,
) -> Result<Reply, GatewayError> {
    let a = parse_answer(bytes, deployment)?;
    let tool_calls: Vec<ToolCall> = a
        .tool_calls()
        .iter()
        .map(|c| ToolCall {
            id: c.id(),
            kind: Some("function".into()),
            function: FunctionCall {
                name: c.function.name.to_string(),
                arguments: c.arguments().into_owned(),
            },
        })
        .collect();
    let content = a.content();
    let thinking = a.thinking();
    let usage = a.usage();
    let resp = ChatResponse {
        model: requested_model.to_string(),
        content: (!content.is_empty() || tool_calls.is_empty()).then(|| content.to_string()),
        reasoning: (!thinking.is_empty()).then(|| thinking.to_string()),
        finish_reason: Some(finish_reason(
            a.done_reason.as_deref(),
            !tool_calls.is_empty(),
        )),
        tool_calls,
        usage,
        ..ChatResponse::default()
    };
    Ok(Reply::Complete {
        body: Bytes::from(resp.to_json()),
        usage: Some(usage),
    })
}

/// `cmpl-<uuid v7 simple>`.
fn new_text_completion_id() -> String {
    format!(
        "cmpl-{}",
        tollgate_core::ids::new_request_id().replace('-', "")
    )
}

fn text_reply(
    bytes: &[u8],
    requested_model: &str,
    deployment: &str,
) -> Result<Reply, GatewayError> {
    let a = parse_answer(bytes, deployment)?;
    let usage = a.usage();
    let body = serde_json::json!({
        "id": new_text_completion_id(),
        "object": "text_completion",
        "created": unix_now(),
        "model": requested_model,
        "choices": [{
            "text": a.content(),
            "index": 0,
            "logprobs": null,
            "finish_reason": finish_reason(a.done_reason.as_deref(), false).as_str(),
        }],
        "usage": usage_json(&usage),
    });
    Ok(Reply::Complete {
        body: Bytes::from(to_vec(&body)?),
        usage: Some(usage),
    })
}

/// `/api/embed` answer: `{"model", "embeddings": [[...], ...], "prompt_eval_count"}`.
#[derive(Debug, Deserialize)]
struct EmbedAnswer<'a> {
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    embeddings: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
}

/// The OpenAI embeddings list; vectors are copied as Ollama wrote them (or as base64 little-endian f32).
fn embed_reply(
    bytes: &[u8],
    requested_model: &str,
    base64: bool,
    deployment: &str,
) -> Result<Reply, GatewayError> {
    let a: EmbedAnswer<'_> = serde_json::from_slice(bytes)
        .map_err(|e| invalid_response(deployment, format!("not an Ollama embed answer: {e}")))?;
    if let Some(message) = &a.error {
        return Err(in_band_error(message));
    }
    let vectors = a.embeddings.ok_or_else(|| {
        invalid_response(deployment, "the Ollama embed answer has no `embeddings`")
    })?;
    let tokens = a.prompt_eval_count.unwrap_or(0);
    let out = translate::embeddings_list(&vectors, base64, requested_model, tokens).map_err(
        |(_, e)| {
            invalid_response(
                deployment,
                format!("an Ollama embedding is not a list of numbers: {e}"),
            )
        },
    )?;
    let usage = Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Usage::default()
    };
    Ok(Reply::Complete {
        body: Bytes::from(out),
        usage: Some(usage),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/// Words of Ollama's "prompt too long" errors ("the input length exceeds the context length", "prompt too
/// long; exceeded max context length by N tokens").
const CONTEXT_MARKERS: &[&str] = &[
    "context length",
    "context window",
    "context size",
    "prompt too long",
    "too many tokens",
];
/// Words of content-policy refusals (Ollama itself has none; a server in front of it may).
const CONTENT_MARKERS: &[&str] = &["content policy", "content_policy", "safety"];

/// An Ollama error message with its status: the message is kept; `code` says what routing needs to know.
fn failure(status: u16, message: String, retry_after: Option<String>) -> GatewayError {
    let lower = message.to_ascii_lowercase();
    let code = if CONTEXT_MARKERS.iter().any(|m| lower.contains(m)) {
        Some("context_length_exceeded")
    } else if CONTENT_MARKERS.iter().any(|m| lower.contains(m)) {
        Some("content_policy_violation")
    } else if status == 404 && lower.contains("not found") {
        Some("model_not_found")
    } else {
        None
    };
    GatewayError::UpstreamStatus(Box::new(UpstreamFailure {
        status,
        message,
        error_type: None,
        param: None,
        code: code.map(str::to_string),
        retry_after,
    }))
}

/// An `{"error": "..."}` in a 200 answer or a stream line: a 400 when it is about the request (prompt too
/// long, content policy), else a server failure.
fn in_band_error(message: &str) -> GatewayError {
    let lower = message.to_ascii_lowercase();
    let about_request = CONTEXT_MARKERS
        .iter()
        .chain(CONTENT_MARKERS)
        .any(|m| lower.contains(m));
    failure(
        if about_request { 400 } else { 500 },
        message.to_string(),
        None,
    )
}

/// Turn an Ollama error response (`{"error": "..."}` with a status) into the gateway error, keeping the
/// status and message (`404` "model \"x\" not found, try pulling it first" stays a 404).
pub fn upstream_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        error: Cow<'a, str>,
    }
    let retry_after = translate::retry_after(headers);
    let message = match serde_json::from_slice::<Body<'_>>(body) {
        Ok(b) if !b.error.is_empty() => b.error.into_owned(),
        _ => translate::error_text(body, "upstream", status),
    };
    failure(status.as_u16(), message, retry_after)
}

// ---------------------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------------------

/// Writes an OpenAI `text_completion` SSE stream.
#[derive(Debug)]
struct TextWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

impl TextWriter {
    fn chunk(&self, text: &str, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let v = serde_json::json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": null,
                "finish_reason": finish.map(FinishReason::as_str),
            }],
        });
        push_data(&v, out);
    }

    fn usage(&self, usage: &Usage, out: &mut Vec<u8>) {
        if !self.include_usage {
            return;
        }
        let v = serde_json::json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(usage),
        });
        push_data(&v, out);
    }
}

#[derive(Debug)]
enum Writer {
    Chat(ChunkWriter),
    Text(TextWriter),
}

/// Ollama's NDJSON stream (one JSON object a line, the last with `done: true`, its `done_reason` and the
/// token counts) as the client's OpenAI SSE stream.
#[derive(Debug)]
struct NdjsonTranslator {
    /// An incomplete line waiting for its newline.
    buf: Vec<u8>,
    /// [`MAX_LINE`] (smaller in tests).
    max_line: usize,
    writer: Writer,
    done: bool,
    deployment: String,
}

impl NdjsonTranslator {
    fn too_long(&self) -> GatewayError {
        invalid_response(
            &self.deployment,
            format!(
                "an Ollama stream line is longer than {} bytes",
                self.max_line
            ),
        )
    }

    fn new(answer: Answer, call: &Call, deployment: &str) -> NdjsonTranslator {
        let writer = match answer {
            Answer::Text => Writer::Text(TextWriter {
                id: new_text_completion_id(),
                model: call.requested_model.clone(),
                created: unix_now(),
                include_usage: call.client_wants_usage,
            }),
            Answer::Chat | Answer::Embeddings { .. } => Writer::Chat(ChunkWriter::new(
                &call.requested_model,
                call.client_wants_usage,
            )),
        };
        NdjsonTranslator {
            buf: Vec::new(),
            max_line: MAX_LINE,
            writer,
            done: false,
            deployment: deployment.to_string(),
        }
    }

    fn line(
        &mut self,
        line: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        let line = line.trim_ascii();
        if line.is_empty() || self.done {
            return Ok(());
        }
        let a: Answered<'_> = serde_json::from_slice(line).map_err(|e| {
            invalid_response(
                &self.deployment,
                format!("an Ollama stream line is not an answer object: {e}"),
            )
        })?;
        if let Some(message) = &a.error {
            return Err(in_band_error(message));
        }
        match &mut self.writer {
            Writer::Chat(w) => {
                w.start(out);
                w.reasoning(a.thinking(), out);
                w.text(a.content(), out);
                for c in a.tool_calls() {
                    let index = w.tool_call_start(&c.id(), &c.function.name, out);
                    w.tool_call_args(index, &c.arguments(), out);
                }
                if a.done {
                    let usage = a.usage();
                    outcome.set_usage(usage);
                    let reason = finish_reason(a.done_reason.as_deref(), w.saw_tool_calls());
                    w.finish(reason, out);
                    w.usage(&usage, out);
                    w.done(out);
                }
            }
            Writer::Text(w) => {
                let text = a.content();
                if !text.is_empty() {
                    w.chunk(text, None, out);
                }
                if a.done {
                    let usage = a.usage();
                    outcome.set_usage(usage);
                    w.chunk(
                        "",
                        Some(finish_reason(a.done_reason.as_deref(), false)),
                        out,
                    );
                    w.usage(&usage, out);
                    out.extend_from_slice(b"data: [DONE]\n\n");
                }
            }
        }
        self.done = a.done;
        Ok(())
    }
}

impl StreamTranslator for NdjsonTranslator {
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        outcome: &StreamOutcome,
    ) -> Result<(), GatewayError> {
        // Every line is held to `max_line`, complete or not, so the same bytes fail however they are split.
        let mut rest = bytes;
        if !self.buf.is_empty() {
            let Some(i) = memchr::memchr(b'\n', rest) else {
                if self.buf.len() + rest.len() > self.max_line {
                    return Err(self.too_long());
                }
                self.buf.extend_from_slice(rest);
                return Ok(());
            };
            if self.buf.len() + i > self.max_line {
                return Err(self.too_long());
            }
            let mut line = std::mem::take(&mut self.buf);
            line.extend_from_slice(&rest[..i]);
            self.line(&line, out, outcome)?;
            line.clear();
            self.buf = line;
            rest = &rest[i + 1..];
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if i > self.max_line {
                return Err(self.too_long());
            }
            self.line(&rest[..i], out, outcome)?;
            rest = &rest[i + 1..];
        }
        if rest.len() > self.max_line {
            return Err(self.too_long());
        }
        self.buf.extend_from_slice(rest);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>, outcome: &StreamOutcome) -> Result<(), GatewayError> {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.line(&line, out, outcome)?;
        }
        if !self.done {
            return Err(invalid_response(
                &self.deployment,
                "the Ollama stream ended before its final `done: true` object",
            ));
        }
        Ok(())
    }
}

/// Entry points for the fuzz targets (feature `fuzzing`): the same functions the adapter runs, without I/O.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    use super::*;

    /// The upstream body `p` builds for `call` ([`Inner::prepare`], which runs before anything is sent).
    pub(crate) fn prepared_body(p: &OllamaProvider, call: &Call) -> Result<Vec<u8>, GatewayError> {
        p.inner.prepare(call).map(|prepared| prepared.body)
    }

    /// The NDJSON stream translator for a chat answer (`chat`) or a text completion.
    pub(crate) fn ndjson_stream(chat: bool, call: &Call) -> impl StreamTranslator {
        let answer = if chat { Answer::Chat } else { Answer::Text };
        NdjsonTranslator::new(answer, call, "fuzz")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use base64::Engine as _;
    use futures_util::StreamExt;
    use http::header::HeaderValue;
    use serde_json::json;
    use tollgate_config::{Env, Overrides, load_str};
    use tollgate_mock::{MockOptions, MockServer};

    use super::*;
    use crate::sse::SseDecoder;

    fn deployment(params: &str) -> Deployment {
        let yaml = format!("model_list:\n  - model_name: llama\n    litellm_params: {params}\n");
        let cfg = load_str(
            &yaml,
            Path::new("t.yaml"),
            &Env::from_map([]),
            &Overrides::default(),
        )
        .unwrap();
        cfg.deployments.into_iter().next().unwrap()
    }

    fn build_with(
        params: &str,
        env: &[(&str, &str)],
        drop_params: bool,
    ) -> Result<OllamaProvider, BuildError> {
        let env = Env::from_map(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let client = crate::http_client();
        let ctx = BuildContext {
            env: &env,
            client: &client,
            drop_params,
        };
        OllamaProvider::new(&deployment(params), &ctx)
    }

    fn build(params: &str) -> OllamaProvider {
        build_with(params, &[], false).unwrap()
    }

    fn call(endpoint: Endpoint, body: Value, stream: bool) -> Call {
        Call {
            endpoint,
            body: Bytes::from(body.to_string()),
            requested_model: "llama".into(),
            upstream_model: body["model"].as_str().unwrap_or("llama3.2").to_string(),
            stream,
            client_wants_usage: true,
            request_id: "req-1".into(),
            traceparent: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// The native request a provider builds for `body`, as JSON, with the URL path it goes to.
    fn native(
        p: &OllamaProvider,
        endpoint: Endpoint,
        body: Value,
        stream: bool,
    ) -> (String, Value) {
        let prepared = p.inner.prepare(&call(endpoint, body, stream)).unwrap();
        (
            prepared.uri.path().to_string(),
            serde_json::from_slice(&prepared.body).unwrap(),
        )
    }

    fn refused(p: &OllamaProvider, endpoint: Endpoint, body: Value) -> GatewayError {
        match p.inner.prepare(&call(endpoint, body, false)) {
            Ok(_) => panic!("expected a refusal"),
            Err(e) => e,
        }
    }

    fn rich_chat() -> Value {
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": null, "reasoning_content": "look it up",
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "lookup", "arguments": "{\"q\": \"png\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a tiny image"},
                {"role": "developer", "content": "answer in French"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "search",
                       "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
                      {"type": "function", "function": {"name": "other"}}],
            "tool_choice": "auto",
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
            "reasoning_effort": "low",
            "max_tokens": 50,
            "stop": "END",
            "temperature": 0.2,
            "seed": 7,
            "num_ctx": 8192,
            "keep_alive": "10m"
        })
    }

    #[test]
    fn chat_request_to_api_chat() {
        let p = build("{model: ollama_chat/llama3.2, top_k: 20, mirostat: 1}");
        let (path, body) = native(&p, Endpoint::ChatCompletions, rich_chat(), true);
        assert_eq!(path, "/api/chat");
        insta::assert_json_snapshot!("ollama_chat_request", body);
        // `tool_choice` names one tool: only it is sent; `none`: none are.
        let mut req = rich_chat();
        req["tool_choice"] = json!({"type": "function", "function": {"name": "other"}});
        let (_, body) = native(&p, Endpoint::ChatCompletions, req.clone(), false);
        assert_eq!(body["tools"].as_array().unwrap().len(), 1);
        assert_eq!(body["tools"][0]["function"]["name"], "other");
        assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
        assert_eq!(body["stream"], false);
        req["tool_choice"] = json!("none");
        let (_, body) = native(&p, Endpoint::ChatCompletions, req, false);
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn thinking_maps_to_think() {
        let req = |extra: Value, model: &str| {
            let mut r = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            ChatRequest::parse(r.to_string().as_bytes()).unwrap()
        };
        assert_eq!(think(&req(json!({}), "llama3"), "llama3"), None);
        assert_eq!(
            think(&req(json!({"reasoning_effort": "high"}), "qwen3"), "qwen3"),
            Some(Think::On(true))
        );
        assert_eq!(
            think(&req(json!({"reasoning_effort": "none"}), "qwen3"), "qwen3"),
            Some(Think::On(false))
        );
        assert_eq!(
            think(
                &req(json!({"reasoning_effort": "high"}), "gpt-oss:20b"),
                "gpt-oss:20b"
            ),
            Some(Think::Level("high"))
        );
        assert_eq!(
            think(
                &req(
                    json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
                    "gpt-oss"
                ),
                "gpt-oss"
            ),
            Some(Think::Level("low"))
        );
        assert_eq!(
            think(
                &req(json!({"thinking": {"type": "disabled"}}), "qwen3"),
                "qwen3"
            ),
            Some(Think::On(false))
        );
    }

    #[test]
    fn ollama_chat_goes_to_generate_as_one_prompt() {
        let p = build("{model: ollama/llava}");
        let mut req = rich_chat();
        let obj = req.as_object_mut().unwrap();
        obj.remove("tools");
        obj.remove("tool_choice");
        let (path, body) = native(&p, Endpoint::ChatCompletions, req, false);
        assert_eq!(path, "/api/generate");
        insta::assert_json_snapshot!("ollama_generate_chat_request", body);
        // No tools on /api/generate: refused unless dropped.
        let e = refused(&p, Endpoint::ChatCompletions, rich_chat());
        assert!(e.param().is_some_and(|p| p.starts_with("tool")), "{e}");
        assert_eq!(e.status().as_u16(), 400);
        let dropping = build_with("{model: ollama/llava}", &[], true).unwrap();
        let (_, body) = native(&dropping, Endpoint::ChatCompletions, rich_chat(), false);
        assert!(body.get("tools").is_none() && body["prompt"].is_string());
    }

    #[test]
    fn refusals() {
        let p = build("{model: ollama_chat/llama3.2}");
        let msgs = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        let e = refused(
            &p,
            Endpoint::ChatCompletions,
            msgs(json!([{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}])),
        );
        assert!(e.to_string().contains("base64"), "{e}");
        assert_eq!(e.status().as_u16(), 400);
        let mut n2 = msgs(json!("hi"));
        n2["n"] = json!(2);
        assert_eq!(
            refused(&p, Endpoint::ChatCompletions, n2).param(),
            Some("n")
        );
        let mut lb = msgs(json!("hi"));
        lb["logit_bias"] = json!({"1": 2});
        let e = refused(&p, Endpoint::ChatCompletions, lb);
        assert!(
            e.to_string()
                .contains("ollama_chat does not support parameters: ['logit_bias']")
        );
        let bad_args = json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]});
        assert_eq!(
            refused(&p, Endpoint::ChatCompletions, bad_args).param(),
            Some("messages")
        );
        let tokens = json!({"model": "m", "input": [[1, 2, 3]]});
        assert_eq!(
            refused(&p, Endpoint::Embeddings, tokens).param(),
            Some("input")
        );
        let many = json!({"model": "m", "prompt": ["a", "b"]});
        assert_eq!(
            refused(&p, Endpoint::Completions, many).param(),
            Some("prompt")
        );
        assert!(!p.supports(Endpoint::Responses) && !p.supports(Endpoint::Messages));
    }

    #[test]
    fn completions_and_embeddings_requests() {
        let p = build("{model: ollama/codellama, keep_alive: 5m}");
        let (path, body) = native(
            &p,
            Endpoint::Completions,
            json!({"model": "codellama", "prompt": ["def f(x):"], "suffix": "return y", "max_tokens": 9, "stop": ["\n\n"]}),
            true,
        );
        assert_eq!(path, "/api/generate");
        assert_eq!(
            body,
            json!({"model": "codellama", "prompt": "def f(x):", "suffix": "return y", "stream": true,
                   "options": {"num_predict": 9, "stop": ["\n\n"]}, "keep_alive": "5m"})
        );
        let (path, body) = native(
            &p,
            Endpoint::Embeddings,
            json!({"model": "nomic", "input": ["a", "b"], "dimensions": 4, "truncate": false, "keep_alive": 0}),
            false,
        );
        assert_eq!(path, "/api/embed");
        assert_eq!(
            body,
            json!({"model": "nomic", "input": ["a", "b"], "dimensions": 4, "truncate": false, "keep_alive": 0})
        );
    }

    #[test]
    fn base_url_and_key() {
        let p = build_with("{model: ollama/m}", &[], false).unwrap();
        assert_eq!(p.api_base(), DEFAULT_API_BASE);
        assert_eq!(
            p.inner.chat_uri.to_string(),
            "http://localhost:11434/api/chat"
        );
        assert!(p.inner.headers.get(AUTHORIZATION).is_none());
        let p = build_with(
            "{model: ollama/m}",
            &[
                ("OLLAMA_API_BASE", "http://gpu:11434/"),
                ("OLLAMA_API_KEY", "k1"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(p.inner.embed_uri.to_string(), "http://gpu:11434/api/embed");
        assert_eq!(p.inner.headers[AUTHORIZATION], "Bearer k1");
        assert_eq!(p.name(), "ollama");
        let p =
            build("{model: ollama_chat/m, api_base: 'https://ollama.com/api/chat', api_key: k2}");
        assert_eq!(
            p.inner.generate_uri.to_string(),
            "https://ollama.com/api/generate"
        );
        assert_eq!(p.inner.headers[AUTHORIZATION], "Bearer k2");
        assert_eq!(p.name(), "ollama_chat");
        assert!(
            build_with(
                "{model: ollama/m}",
                &[("OLLAMA_API_BASE", "ftp://x")],
                false
            )
            .is_err()
        );
    }

    fn complete(r: Result<Reply, GatewayError>) -> (Value, Option<Usage>) {
        match r.unwrap() {
            Reply::Complete { body, usage } => (serde_json::from_slice(&body).unwrap(), usage),
            Reply::Stream(_) => panic!("expected a complete reply"),
        }
    }

    #[test]
    fn chat_answers_to_openai() {
        let body = br#"{"model":"llama3.2","created_at":"2025-07-07T20:32:53.844124Z",
            "message":{"role":"assistant","content":"","thinking":"hmm",
              "tool_calls":[{"function":{"name":"get_weather","arguments":{"city": "Tokyo"}}}]},
            "done_reason":"stop","done":true,"prompt_eval_count":169,"eval_count":18}"#;
        let (v, usage) = complete(chat_reply(body, "llama", "d"));
        let m = &v["choices"][0]["message"];
        assert_eq!(v["model"], "llama");
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            r#"{"city": "Tokyo"}"#
        );
        assert!(
            m["tool_calls"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("call_")
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 169);
        assert_eq!(usage.unwrap().total_tokens, 187);
        // `/api/generate` answers, a length stop, a cached prompt (no prompt_eval_count).
        let body = br#"{"model":"m","response":"The sky","done":true,"done_reason":"length","eval_count":2}"#;
        let (v, usage) = complete(chat_reply(body, "llama", "d"));
        assert_eq!(v["choices"][0]["message"]["content"], "The sky");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(usage.unwrap().prompt_tokens, 0);
        let (v, _) = complete(text_reply(body, "llama", "d"));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "The sky");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert!(matches!(
            chat_reply(b"not json", "llama", "d"),
            Err(GatewayError::UpstreamInvalid { .. })
        ));
        let e = chat_reply(
            br#"{"error":"llama runner process has terminated"}"#,
            "l",
            "d",
        )
        .unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
    }

    #[test]
    fn embeddings_answers_to_openai() {
        let body = br#"{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862],[0.5,1]],
            "total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
        let (v, usage) = complete(embed_reply(body, "emb", false, "d"));
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "emb");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(
            v["data"][0]["embedding"],
            json!([0.010071029, -0.0017594862])
        );
        assert_eq!(v["usage"], json!({"prompt_tokens": 8, "total_tokens": 8}));
        assert_eq!(usage.unwrap().prompt_tokens, 8);
        let (v, _) = complete(embed_reply(body, "emb", true, "d"));
        let b64 = v["data"][1]["embedding"].as_str().unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, [0.5f32.to_le_bytes(), 1f32.to_le_bytes()].concat());
    }

    #[test]
    fn errors_keep_status_and_message() {
        let e = upstream_error(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            br#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.status().as_u16(), 404);
        assert_eq!(
            e.public_message(),
            "model \"llama9\" not found, try pulling it first"
        );
        assert_eq!(e.code(), Some("model_not_found"));
        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"error":"the input length exceeds the context length"}"#,
        );
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (400, Some("context_length_exceeded"))
        );
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        let e = upstream_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":"slow down"}"#,
        );
        assert_eq!(
            (e.status().as_u16(), e.retry_after().as_deref()),
            (429, Some("3"))
        );
        let e = upstream_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            b"bad gateway\n",
        );
        assert_eq!(e.status().as_u16(), 502);
        assert!(e.public_message().contains("503: bad gateway"));
        let e = in_band_error("prompt too long; exceeded max context length by 10 tokens");
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (400, Some("context_length_exceeded"))
        );
    }

    /// What an OpenAI chunk stream says, summed up.
    #[derive(Debug, Default, PartialEq)]
    struct Summary {
        roles: usize,
        text: String,
        reasoning: String,
        tools: Vec<(String, String)>,
        finish: Vec<String>,
        usage: Option<Value>,
        done: bool,
        errors: Vec<String>,
    }

    fn summarize(sse: &[u8]) -> Summary {
        let mut events = Vec::new();
        let mut d = SseDecoder::new();
        d.push(sse, &mut events).unwrap();
        d.finish(&mut events).unwrap();
        let mut s = Summary::default();
        for ev in events {
            if ev.data == "[DONE]" {
                s.done = true;
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            if let Some(e) = v.get("error") {
                s.errors
                    .push(e["message"].as_str().unwrap_or("").to_string());
                continue;
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                s.usage = Some(u.clone());
            }
            for c in v["choices"].as_array().unwrap() {
                let delta = c.get("delta").unwrap_or(c);
                if delta.get("role").is_some() {
                    s.roles += 1;
                }
                if let Some(t) = delta.get("content").and_then(Value::as_str) {
                    s.text.push_str(t);
                }
                if let Some(t) = c.get("text").and_then(Value::as_str) {
                    s.text.push_str(t);
                }
                if let Some(t) = delta.get("reasoning_content").and_then(Value::as_str) {
                    s.reasoning.push_str(t);
                }
                for tc in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = &tc["function"];
                    if let Some(name) = f.get("name").and_then(Value::as_str) {
                        s.tools.push((name.to_string(), String::new()));
                    }
                    if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                        s.tools.last_mut().unwrap().1.push_str(a);
                    }
                }
                if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                    s.finish.push(f.to_string());
                }
            }
        }
        s
    }

    const CHAT_STREAM: &str = concat!(
        "{\"model\":\"qwen3\",\"created_at\":\"2025-07-07T20:22:19.18Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Let me \"},\"done\":false}\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-07-07T20:22:19.18Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"see.\"},\"done\":false}\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-07-07T20:22:19.18Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Caf\u{e9} \"},\"done\":false}\r\n",
        "\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-07-07T20:22:19.18Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Tokyo\"}}}]},\"done\":false}\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-07-07T20:22:19.19Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"total_duration\":182242375,\"load_duration\":41295167,\"prompt_eval_count\":169,\"prompt_eval_duration\":24573166,\"eval_count\":15,\"eval_duration\":115959084}\n",
    );

    fn run(
        t: &mut NdjsonTranslator,
        pieces: &[&[u8]],
    ) -> (Vec<u8>, Result<(), GatewayError>, StreamOutcome) {
        let outcome = StreamOutcome::default();
        let mut out = Vec::new();
        for p in pieces {
            if let Err(e) = t.feed(p, &mut out, &outcome) {
                return (out, Err(e), outcome);
            }
        }
        let r = t.finish(&mut out, &outcome);
        (out, r, outcome)
    }

    fn chat_translator() -> NdjsonTranslator {
        NdjsonTranslator::new(
            Answer::Chat,
            &call(Endpoint::ChatCompletions, json!({}), true),
            "d",
        )
    }

    #[test]
    fn stream_translation_survives_any_split() {
        let bytes = CHAT_STREAM.as_bytes();
        let (whole, r, outcome) = run(&mut chat_translator(), &[bytes]);
        r.unwrap();
        let expected = summarize(&whole);
        assert_eq!(
            expected,
            Summary {
                roles: 1,
                text: "Caf\u{e9} ".into(),
                reasoning: "Let me see.".into(),
                tools: vec![("get_weather".into(), r#"{"city":"Tokyo"}"#.into())],
                finish: vec!["tool_calls".into()],
                usage: expected.usage.clone(),
                done: true,
                errors: vec![],
            }
        );
        assert_eq!(expected.usage.as_ref().unwrap()["total_tokens"], 184);
        assert_eq!(outcome.usage().unwrap().prompt_tokens, 169);
        for at in 1..bytes.len() {
            let (a, b) = bytes.split_at(at);
            let (out, r, _) = run(&mut chat_translator(), &[a, b]);
            r.unwrap();
            assert_eq!(summarize(&out), expected, "split at {at}");
        }
        // Byte by byte.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        let (out, r, _) = run(&mut chat_translator(), &singles);
        r.unwrap();
        assert_eq!(summarize(&out), expected);
    }

    #[test]
    fn stream_without_done_or_with_error_fails() {
        let cut = &CHAT_STREAM.as_bytes()[..CHAT_STREAM.rfind("{\"model").unwrap()];
        let (_, r, _) = run(&mut chat_translator(), &[cut]);
        assert!(matches!(r, Err(GatewayError::UpstreamInvalid { .. })));
        // The last line may come without its newline.
        let (_, r, _) = run(&mut chat_translator(), &[CHAT_STREAM.trim_end().as_bytes()]);
        r.unwrap();
        let (out, r, _) = run(
            &mut chat_translator(),
            &[b"{\"model\":\"m\",\"message\":{\"content\":\"a\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n"],
        );
        let e = r.unwrap_err();
        assert!(e.public_message().contains("unexpected EOF"));
        assert_eq!(summarize(&out).text, "a");
        let (_, r, _) = run(&mut chat_translator(), &[b"not json\n"]);
        assert!(matches!(r, Err(GatewayError::UpstreamInvalid { .. })));
    }

    /// A line over the limit is refused whether it arrives in one read or across many, with its newline or
    /// as the unterminated last line; a line at the limit is taken both ways.
    #[test]
    fn the_line_limit_does_not_depend_on_the_chunking() {
        let line = |content: &str, done: bool| {
            format!("{{\"message\":{{\"content\":\"{content}\"}},\"done\":{done}}}\n")
        };
        let first = line("a", false);
        let last = line("", true);
        let limit = first.len() - 1; // the bytes before the newline
        let translator = || {
            let mut t = chat_translator();
            t.max_line = limit;
            t
        };
        let runs = |wire: &[u8]| {
            let mut results = vec![run(&mut translator(), &[wire]).1.map_err(|e| e.to_string())];
            let singles: Vec<&[u8]> = wire.chunks(1).collect();
            results.push(
                run(&mut translator(), &singles)
                    .1
                    .map_err(|e| e.to_string()),
            );
            for at in 1..wire.len() {
                let (a, b) = wire.split_at(at);
                results.push(run(&mut translator(), &[a, b]).1.map_err(|e| e.to_string()));
            }
            results
        };
        // At the limit (the final line is shorter).
        assert!(
            runs(format!("{first}{last}").as_bytes())
                .iter()
                .all(Result::is_ok)
        );
        // One byte over it: a complete line, or the unterminated end of the stream.
        let long = line("ab", false);
        let refused = format!("an Ollama stream line is longer than {limit} bytes");
        for wire in [
            format!("{first}{long}{last}"),
            format!("{first}{}", long.trim_end()),
        ] {
            for r in runs(wire.as_bytes()) {
                let e = r.unwrap_err();
                assert!(e.contains(&refused), "{e}");
            }
        }
    }

    /// An `{"error": ..}` line repeating the key: masked in the error event.
    #[tokio::test]
    async fn stream_errors_do_not_repeat_the_key() {
        let key = "ollama-0123456789abcdef";
        crate::translate::stream_tests::key_is_masked(
            chat_translator(),
            vec![
                b"{\"model\":\"m\",\"message\":{\"content\":\"a\"},\"done\":false}\n".to_vec(),
                format!("{{\"error\":\"unauthorized: {key}\"}}\n").into_bytes(),
            ],
            "authorization",
            &format!("Bearer {key}"),
            key,
        )
        .await;
    }

    #[test]
    fn generate_stream_becomes_text_completion_chunks() {
        let lines = concat!(
            "{\"model\":\"m\",\"created_at\":\"x\",\"response\":\"The\",\"done\":false}\n",
            "{\"model\":\"m\",\"created_at\":\"x\",\"response\":\" sky\",\"done\":false}\n",
            "{\"model\":\"m\",\"created_at\":\"x\",\"response\":\"\",\"done\":true,\"done_reason\":\"length\",\"context\":[1,2],\"prompt_eval_count\":4,\"eval_count\":2}\n",
        );
        let mut t = NdjsonTranslator::new(
            Answer::Text,
            &call(Endpoint::Completions, json!({}), true),
            "d",
        );
        let (out, r, _) = run(&mut t, &[lines.as_bytes()]);
        r.unwrap();
        let s = summarize(&out);
        assert_eq!(
            (s.text.as_str(), s.finish.clone(), s.done),
            ("The sky", vec!["length".to_string()], true)
        );
        assert_eq!(s.usage.unwrap()["total_tokens"], 6);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\"object\":\"text_completion\"")
        );
        // `/api/generate` answering a chat request: chat chunks with the thinking as reasoning.
        let mut t = chat_translator();
        let (out, r, _) = run(
            &mut t,
            &[b"{\"response\":\"\",\"thinking\":\"Need\",\"done\":false}\n{\"response\":\"Hi\",\"done\":false}\n{\"response\":\"\",\"done\":true,\"done_reason\":\"stop\"}\n"],
        );
        r.unwrap();
        let s = summarize(&out);
        assert_eq!((s.reasoning.as_str(), s.text.as_str()), ("Need", "Hi"));
        assert_eq!(s.finish, vec!["stop".to_string()]);
    }

    // -----------------------------------------------------------------------------------------------------
    // Against the mock server
    // -----------------------------------------------------------------------------------------------------

    async fn mock() -> MockServer {
        MockServer::start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
            .await
            .unwrap()
    }

    fn against(mock: &MockServer, provider: &str) -> OllamaProvider {
        build(&format!(
            "{{model: '{provider}/llama3.2', api_base: 'http://{}'}}",
            mock.addr()
        ))
    }

    fn user(text: &str) -> Value {
        json!([{"role": "user", "content": text}])
    }

    async fn collect_stream(r: Result<Reply, GatewayError>) -> (Vec<u8>, Arc<StreamOutcome>) {
        match r.unwrap() {
            Reply::Stream(s) => {
                let parts: Vec<Bytes> = s.body.collect().await;
                (parts.concat(), s.outcome)
            }
            Reply::Complete { .. } => panic!("expected a stream"),
        }
    }

    #[tokio::test]
    async fn chat_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, "ollama_chat");
        let (v, usage) = complete(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "llama3.2@echo", "messages": user("say hello world"), "max_tokens": 2}),
                false,
            ))
            .await,
        );
        assert_eq!(v["choices"][0]["message"]["content"], "say hello");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        let usage = usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (4, 2));
        // Thinking, JSON mode.
        let (v, usage) = complete(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "qwen3@reasoning_tokens=5,content=ok", "messages": user("hi"),
                       "reasoning_effort": "low", "response_format": {"type": "json_object"}}),
                false,
            ))
            .await,
        );
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], r#"{"text":"ok"}"#);
        assert!(!m["reasoning_content"].as_str().unwrap().is_empty());
        assert_eq!(usage.unwrap().completion_tokens, 6);
        // Tool call.
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        let (v, _) = complete(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "llama3.2@tool_call,content={\"city\": \"Paris\"}", "messages": user("weather?"), "tools": tools}),
                false,
            ))
            .await,
        );
        let tc = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(tc["function"]["name"], "get_weather");
        assert_eq!(tc["function"]["arguments"], r#"{"city": "Paris"}"#);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        // Streams: text and tool call.
        let (out, outcome) = collect_stream(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "llama3.2@chunks=4", "messages": user("hi"), "stream": true}),
                true,
            ))
            .await,
        )
        .await;
        let s = summarize(&out);
        assert_eq!(s.text, "This is a mock response from tollgate.");
        assert_eq!(
            (s.finish.clone(), s.done, s.roles),
            (vec!["stop".to_string()], true, 1)
        );
        assert!(outcome.completed());
        assert_eq!(outcome.usage().unwrap().completion_tokens, 7);
        let (out, _) = collect_stream(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "llama3.2@tool_call", "messages": user("weather?"), "tools": tools, "stream": true}),
                true,
            ))
            .await,
        )
        .await;
        let s = summarize(&out);
        assert_eq!(s.tools, vec![("get_weather".to_string(), "{}".to_string())]);
        assert_eq!(s.finish, vec!["tool_calls".to_string()]);
        // A stream cut off before its `done` object ends with an error event.
        let (out, outcome) = collect_stream(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "llama3.2@reset_after_chunks=2", "messages": user("hi"), "stream": true}),
                true,
            ))
            .await,
        )
        .await;
        assert_eq!(summarize(&out).errors.len(), 1);
        assert!(!outcome.completed() && outcome.failure().is_some());
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn errors_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, "ollama_chat");
        let chat = |model: &str| {
            call(
                Endpoint::ChatCompletions,
                json!({"model": model, "messages": user("hi")}),
                false,
            )
        };
        let e = p.call(chat("llama9@status=404")).await.unwrap_err();
        assert_eq!(e.status().as_u16(), 404);
        assert!(
            e.public_message()
                .starts_with("model \"llama9\" not found, try pulling it first")
        );
        let e = p
            .call(chat("m@error_code=context_length_exceeded"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (400, Some("context_length_exceeded"))
        );
        let e = p
            .call(chat("m@error_code=content_policy_violation"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("content_policy_violation"));
        let e = p.call(chat("m@retry_after=2")).await.unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.retry_after().as_deref()),
            (429, Some("2"))
        );
        let e = p.call(chat("m@status=503")).await.unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
        assert!(e.public_message().contains("server busy"));
        // Errors before a stream's head are errors, not streams.
        let mut c = chat("m@status=500");
        c.stream = true;
        assert!(p.call(c).await.is_err());
        let (v, _) = complete(p.call(chat("m@finish=content_filter")).await);
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn generate_completions_and_embeddings_against_the_mock() {
        let mock = mock().await;
        let p = against(&mock, "ollama");
        let (v, _) = complete(
            p.call(call(
                Endpoint::ChatCompletions,
                json!({"model": "llama3.2@echo", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}),
                false,
            ))
            .await,
        );
        // `echo` repeats the prompt, which is the flattened conversation.
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "### System:\ns\n\n### User:\nhi\n\n"
        );
        let (out, outcome) = collect_stream(
            p.call(call(
                Endpoint::Completions,
                json!({"model": "codellama", "prompt": "def f():", "stream": true}),
                true,
            ))
            .await,
        )
        .await;
        let s = summarize(&out);
        assert_eq!(s.text, "This is a mock response from tollgate.");
        assert_eq!(s.finish, vec!["stop".to_string()]);
        assert!(s.usage.is_some() && outcome.completed());
        let (v, usage) = complete(
            p.call(call(
                Endpoint::Completions,
                json!({"model": "codellama", "prompt": "one two three four", "stop": "three"}),
                false,
            ))
            .await,
        );
        assert_eq!(
            v["choices"][0]["text"],
            "This is a mock response from tollgate."
        );
        assert_eq!(usage.unwrap().prompt_tokens, 5);
        let (v, usage) = complete(
            p.call(call(
                Endpoint::Embeddings,
                json!({"model": "nomic-embed-text", "input": ["a", "bb"], "dimensions": 4}),
                false,
            ))
            .await,
        );
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
        assert_eq!(usage.unwrap().prompt_tokens, 2);
        let (v, _) = complete(
            p.call(call(
                Endpoint::Embeddings,
                json!({"model": "nomic-embed-text", "input": "a", "encoding_format": "base64"}),
                false,
            ))
            .await,
        );
        assert!(v["data"][0]["embedding"].is_string());
        mock.shutdown().await;
    }

    #[tokio::test]
    async fn sends_the_key_to_an_authenticating_server() {
        let mock = crate::test_support::recording_mock("turbo-key").await;
        let base = format!("http://{}", mock.addr());
        let with_key = build(&format!(
            "{{model: ollama_chat/gpt-oss:120b, api_base: '{base}', api_key: turbo-key}}"
        ));
        let c = call(
            Endpoint::ChatCompletions,
            json!({"model": "gpt-oss:120b", "messages": user("hi"), "reasoning_effort": "high"}),
            false,
        );
        complete(with_key.call(c.clone()).await);
        let sent = mock.recorded().last().cloned().unwrap();
        assert_eq!(sent.path, "/api/chat");
        assert_eq!(sent.json().unwrap()["think"], "high");
        let without = build(&format!(
            "{{model: ollama_chat/gpt-oss:120b, api_base: '{base}'}}"
        ));
        assert_eq!(without.call(c).await.unwrap_err().status().as_u16(), 401);
        mock.shutdown().await;
    }
}
