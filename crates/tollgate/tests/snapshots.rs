//! Snapshots of what clients see (insta, ids and timestamps redacted): an error body, a chat response through
//! the mock upstream, and the chunks of a streamed chat response.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

/// Pretty JSON with the given top-level fields replaced by a placeholder. (insta's own JSON redactions do not
/// work here: with serde_json's `arbitrary_precision`, numbers would show as internal maps.)
fn redacted(mut v: Value, fields: &[&str]) -> String {
    fn apply(v: &mut Value, fields: &[&str]) {
        if let Some(o) = v.as_object_mut() {
            for f in fields {
                if let Some(x) = o.get_mut(*f) {
                    *x = Value::String(format!("[{f}]"));
                }
            }
        }
    }
    match &mut v {
        Value::Array(items) => items.iter_mut().for_each(|i| apply(i, fields)),
        other => apply(other, fields),
    }
    serde_json::to_string_pretty(&v).unwrap()
}

fn snap_config(base: &str) -> String {
    format!(
        r#"model_list:
  - model_name: snap-chat
    litellm_params:
      model: "openai/snap-up@content=Snapshots keep the wire format honest,chunks=3"
      api_base: {base}
      api_key: {UPSTREAM_KEY}
  - model_name: snap-other
    litellm_params:
      model: mock/other
general_settings:
  master_key: {KEY}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_body_snapshot() {
    let gw = gateway()
        .config(snap_config("http://127.0.0.1:9/v1"))
        .start();
    let r = gw
        .post("/v1/chat/completions", &chat("not-a-model"))
        .send()
        .await;
    r.expect_error(400);
    insta::assert_snapshot!("unknown_model_error", redacted(r.json(), &[]));

    let r = gw
        .post("/v1/chat/completions", &chat("snap-chat"))
        .bearer("sk-wrong")
        .send()
        .await;
    r.expect_error(401);
    insta::assert_snapshot!("bad_key_error", redacted(r.json(), &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_response_snapshot() {
    let mock = mock().await;
    let gw = gateway().config(snap_config(&mock.base_url())).start();
    let r = gw
        .post("/v1/chat/completions", &chat("snap-chat"))
        .send()
        .await;
    r.expect_status(200);
    insta::assert_snapshot!("chat_response", redacted(r.json(), &["id", "created"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_snapshot() {
    let mock = mock().await;
    let gw = gateway().config(snap_config(&mock.base_url())).start();
    let mut body = chat_stream("snap-chat", true);
    body["temperature"] = json!(0);
    let resp = gw.post("/v1/chat/completions", &body).open().await;
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    let events: Vec<Value> = sse.json_events();
    insta::assert_snapshot!(
        "streamed_chunks",
        redacted(Value::Array(events), &["id", "created"])
    );
}
