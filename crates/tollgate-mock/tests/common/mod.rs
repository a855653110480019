//! Shared helpers for the integration tests: starting mocks and talking to them over real HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tollgate_mock::{MockOptions, MockServer};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub async fn start() -> MockServer {
    start_with(MockOptions::default()).await
}

pub async fn start_with(opts: MockOptions) -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    /// `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        sse_data(&self.text())
    }
}

pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

pub fn url(server: &MockServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

pub fn request(
    method: Method,
    url: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(v).unwrap())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body)).unwrap()
}

pub async fn send_with(client: &HttpClient, req: Request<Full<Bytes>>) -> Reply {
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

pub async fn post(
    server: &MockServer,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Reply {
    send_with(
        &client(),
        request(Method::POST, &url(server, path), Some(body), headers),
    )
    .await
}

pub async fn post_raw(server: &MockServer, path: &str, body: &'static str) -> Reply {
    let req = Request::post(url(server, path))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    send_with(&client(), req).await
}

pub async fn get(server: &MockServer, path: &str, headers: &[(&str, &str)]) -> Reply {
    send_with(
        &client(),
        request(Method::GET, &url(server, path), None, headers),
    )
    .await
}

/// Sends a request and returns the head plus the still-unread body.
pub async fn open(
    server: &MockServer,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> http::Response<Incoming> {
    client()
        .request(request(
            Method::POST,
            &url(server, path),
            Some(body),
            headers,
        ))
        .await
        .unwrap()
}

/// Reads body frames with their arrival times; the error, if the body failed.
pub async fn frames(body: &mut Incoming) -> (Vec<(Instant, Bytes)>, Option<hyper::Error>) {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    out.push((Instant::now(), data));
                }
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

pub fn chat(model: &str) -> Value {
    serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway."}
        ]
    })
}

pub fn chat_stream(model: &str, include_usage: bool) -> Value {
    let mut v = chat(model);
    v["stream"] = Value::Bool(true);
    if include_usage {
        v["stream_options"] = serde_json::json!({"include_usage": true});
    }
    v
}

/// Polls `f` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}
