//! Azure OpenAI's URLs in front of the OpenAI endpoints: `/openai/deployments/{deployment}/...?api-version=`,
//! the v1 API's `/openai/v1/...` and the Responses API's `/openai/responses?api-version=`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/openai/deployments/{deployment}/chat/completions?api-version=V` | as `/v1/chat/completions`, with `model` = the deployment |
//! | POST | `/openai/deployments/{deployment}/completions?api-version=V` | as `/v1/completions` |
//! | POST | `/openai/deployments/{deployment}/embeddings?api-version=V` | as `/v1/embeddings` |
//! | POST | `/openai/responses?api-version=V` | as `/v1/responses` (`model` from the body) |
//! | POST | `/openai/v1/{chat/completions,completions,embeddings,responses}` | as the OpenAI endpoint (`model` from the body) |
//!
//! The deployment is taken from the path (percent-decoded; knobs may follow it after `@`) and replaces the body's
//! `model`, as Azure ignores it. Without `api-version` (deployments and Responses forms) or on any other path
//! Azure answers 404 `{"error":{"code":"404","message":"Resource not found"}}`. Errors otherwise are OpenAI's
//! shape, as Azure's are; `error_code=content_policy_violation` gives Azure's own safety error (the
//! `content_filter` one, with `innererror`), and `finish=content_filter` a choice with
//! `finish_reason: "content_filter"`. Authentication (`api-key` or Bearer) is checked by the router.

use std::borrow::Cow;

use http::{Method, Response, StatusCode};

use crate::body::MockBody;
use crate::router::Req;
use crate::state::Shared;
use crate::{chat, completions, embeddings, respond, responses};

/// Azure's answer to a path or API version it does not serve.
const RESOURCE_NOT_FOUND: &str = r#"{"error":{"code":"404","message":"Resource not found"}}"#;

#[derive(Clone, Copy)]
enum Action {
    Chat,
    Completions,
    Embeddings,
    Responses,
}

pub(crate) async fn route(shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    let not_found = || respond::json(StatusCode::NOT_FOUND, RESOURCE_NOT_FOUND);
    if req.method != Method::POST {
        return not_found();
    }
    let Some(rest) = req.path.strip_prefix("/openai/") else {
        return not_found();
    };
    let has_version = req.query.is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.strip_prefix("api-version=")
                .is_some_and(|v| !v.is_empty())
        })
    });
    let (deployment, action) = if let Some(r) = rest.strip_prefix("deployments/") {
        let Some((dep, action)) = r.split_once('/') else {
            return not_found();
        };
        if dep.is_empty() || !has_version {
            return not_found();
        }
        (Some(percent_decode(dep)), action)
    } else if let Some(action) = rest.strip_prefix("v1/") {
        (None, action)
    } else if rest == "responses" && has_version {
        (None, "responses")
    } else {
        return not_found();
    };
    let action = match action {
        "chat/completions" => Action::Chat,
        "completions" => Action::Completions,
        "embeddings" => Action::Embeddings,
        "responses" if deployment.is_none() => Action::Responses,
        _ => return not_found(),
    };
    let body: Cow<'_, [u8]> = match &deployment {
        Some(dep) => with_model(req.body, dep).map_or(Cow::Borrowed(&req.body[..]), Cow::Owned),
        None => Cow::Borrowed(&req.body[..]),
    };
    let resp = match action {
        Action::Chat => chat::handle(shared, req.headers, &body).await,
        Action::Completions => completions::handle(shared, req.headers, &body).await,
        Action::Embeddings => embeddings::handle(shared, req.headers, &body).await,
        Action::Responses => responses::handle(shared, req.headers, &body).await,
    };
    azure_safety_error(shared, req, &body, deployment.as_deref(), resp)
}

/// `body` with `model` set to `deployment` (`None` when it is not a JSON object: the handler reports that).
fn with_model(body: &[u8], deployment: &str) -> Option<Vec<u8>> {
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    m.insert(
        "model".into(),
        serde_json::Value::String(deployment.to_owned()),
    );
    serde_json::to_vec(&m).ok()
}

/// A failure the `error_code=content_policy_violation` knob caused, in Azure's words: its content-filter error.
fn azure_safety_error(
    shared: &Shared,
    req: &Req<'_>,
    body: &[u8],
    deployment: Option<&str>,
    resp: Response<MockBody>,
) -> Response<MockBody> {
    if resp.status().is_success() {
        return resp;
    }
    let model: Option<String> = match deployment {
        Some(d) => Some(d.to_owned()),
        None => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("model")?.as_str().map(str::to_owned)),
    };
    let Ok(knobs) = shared.knobs(req.headers, model.as_deref()) else {
        return resp;
    };
    if knobs.error_code.as_deref() == Some("content_policy_violation")
        && knobs.failure_status() == Some(resp.status().as_u16())
    {
        return respond::knob_failure(
            resp.status().as_u16(),
            knobs.retry_after,
            Some("content_filter"),
            0,
        );
    }
    resp
}

/// Percent-decodes a path segment (invalid escapes stay as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderMap;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;

    async fn post(path: &str, query: Option<&str>, body: Value) -> (StatusCode, Bytes) {
        let shared = Shared::new(None, None, false);
        let body = Bytes::from(body.to_string());
        let headers = HeaderMap::new();
        let resp = route(
            &shared,
            &Req {
                method: &Method::POST,
                path,
                query,
                authority: None,
                headers: &headers,
                body: &body,
            },
        )
        .await;
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    fn json_of(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    fn chat() -> Value {
        json!({"messages": [{"role": "user", "content": "hi"}]})
    }

    #[tokio::test]
    async fn deployment_path_sets_the_model() {
        let (s, b) = post(
            "/openai/deployments/my-gpt4o/chat/completions",
            Some("api-version=2024-10-21"),
            json!({"model": "ignored", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let v = json_of(&b);
        assert_eq!(v["model"], "my-gpt4o");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let (s, b) = post(
            "/openai/deployments/emb/embeddings",
            Some("api-version=2024-10-21"),
            json!({"input": "x"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json_of(&b)["data"][0]["object"], "embedding");
        let (s, b) = post(
            "/openai/deployments/d/completions",
            Some("api-version=2024-10-21"),
            json!({"prompt": "x"}),
        )
        .await;
        assert_eq!(
            (s, json_of(&b)["object"].as_str()),
            (StatusCode::OK, Some("text_completion"))
        );
    }

    #[tokio::test]
    async fn missing_api_version_or_unknown_path_is_resource_not_found() {
        for (path, query) in [
            ("/openai/deployments/d/chat/completions", None),
            (
                "/openai/deployments/d/chat/completions",
                Some("api-version="),
            ),
            (
                "/openai/deployments/d/images/generations",
                Some("api-version=2024-10-21"),
            ),
            ("/openai/responses", None),
            ("/openai/deployments/d", Some("api-version=1")),
        ] {
            let (s, b) = post(path, query, chat()).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                json_of(&b),
                json!({"error": {"code": "404", "message": "Resource not found"}})
            );
        }
    }

    #[tokio::test]
    async fn v1_paths_take_the_model_from_the_body() {
        let mut body = chat();
        body["model"] = json!("gpt-4o");
        let (s, b) = post("/openai/v1/chat/completions", None, body).await;
        assert_eq!(
            (s, json_of(&b)["model"].as_str()),
            (StatusCode::OK, Some("gpt-4o"))
        );
        let (s, _) = post("/openai/v1/chat/completions", None, chat()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "the v1 API needs a model");
        let (s, b) = post(
            "/openai/responses",
            Some("api-version=preview"),
            json!({"model": "gpt-4o", "input": "hi"}),
        )
        .await;
        assert_eq!(
            (s, json_of(&b)["object"].as_str()),
            (StatusCode::OK, Some("response"))
        );
    }

    #[tokio::test]
    async fn knobs_in_the_deployment_name() {
        let q = Some("api-version=2024-10-21");
        let (s, b) = post(
            "/openai/deployments/d%40finish%3Dcontent_filter/chat/completions",
            q,
            chat(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json_of(&b)["choices"][0]["finish_reason"], "content_filter");
        for code in ["content_filter", "content_policy_violation"] {
            let (s, b) = post(
                &format!("/openai/deployments/d@error_code={code}/chat/completions"),
                q,
                chat(),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST);
            let e = &json_of(&b)["error"];
            assert_eq!(e["code"], "content_filter", "{code}: {e}");
            assert_eq!(e["innererror"]["code"], "ResponsibleAIPolicyViolation");
        }
        let (s, b) = post(
            "/openai/deployments/d@error_code=context_length_exceeded/chat/completions",
            q,
            chat(),
        )
        .await;
        assert_eq!(
            (s, json_of(&b)["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("context_length_exceeded"))
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%40c%3d1"), "a b@c=1");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }
}
