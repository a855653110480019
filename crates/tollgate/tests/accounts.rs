//! Virtual keys, roles, model access, budgets, limits and spend, end to end: the real binary against the
//! mock upstream, on the embedded SQLite file and on PostgreSQL (a fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{Value, json};

/// Cost of one `chat()` against a priced model: the mock counts 1 prompt token for "hi" and 7 completion
/// tokens; prices are 0.001 and 0.002 USD per token.
const C: f64 = 0.015;

// ---------------------------------------------------------------------------------------------------------
// Databases

/// Run a scenario on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Db::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = Db::postgres() {
                    super::$name(db).await
                }
            }
        }
    )*};
}

// ---------------------------------------------------------------------------------------------------------
// Gateway and requests

fn config(db: &Db, base: &str, extra_general: &str) -> String {
    let prices =
        "    model_info:\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n";
    let dep = |name: &str, model: &str, extra: &str, info: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: \"openai/{model}\"\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\n{extra}{info}"
        )
    };
    let mut s = String::from("model_list:\n");
    s += &dep("priced", "gpt-4o-priced", "", prices);
    s += &dep("slow", "gpt-4o-slow@latency_ms=400", "", prices);
    s += &dep(
        "other",
        "other-model",
        "",
        "    model_info:\n      access_groups: [\"beta\"]\n",
    );
    s += &dep("limited", "limited-model", "      rpm: 2\n", prices);
    s += &dep(
        "drip",
        "gpt-4o-drip@chunks=20,chunk_interval_ms=100",
        "",
        prices,
    );
    s += &dep("openai/*", "*", "", "");
    s += &format!(
        "general_settings:\n  master_key: {KEY}\n  proxy_batch_write_at: 0.2\n  tollgate_accounts_refresh_interval: 0.5\n{}{extra_general}",
        db.settings()
    );
    s
}

async fn start(db: &Db, mock: &tollgate_mock::MockServer, extra: &str) -> Gateway {
    gateway()
        .config(config(db, &mock.base_url(), extra))
        .start()
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn chat(gw: &Gateway, key: &str, model: &str) -> Resp {
    gw.post("/v1/chat/completions", &chat_body(model))
        .bearer(key)
        .send()
        .await
}

async fn generate(gw: &Gateway, body: Value) -> (String, Value) {
    let r = gw.post("/key/generate", &body).send().await;
    r.expect_status(200);
    let v = r.json();
    (v["key"].as_str().unwrap().to_string(), v)
}

/// The key's spend as `/key/info` reports it (USD).
async fn key_spend(gw: &Gateway, key: &str) -> f64 {
    let r = gw.get(&format!("/key/info?key={key}")).send().await;
    r.expect_status(200);
    r.json()["info"]["spend"].as_f64().unwrap()
}

/// Spend log rows as `/spend/logs` returns them (it writes what is buffered first).
async fn spend_logs(gw: &Gateway, query: &str) -> Vec<Value> {
    let r = gw.get(&format!("/spend/logs?{query}")).send().await;
    r.expect_status(200);
    r.json().as_array().unwrap().clone()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

on_both!(
    management_routes,
    streams_are_booked,
    key_lifecycle,
    roles_are_enforced,
    model_access,
    expiry,
    budgets_are_enforced,
    budget_reset,
    rate_limits,
    concurrent_requests_do_not_overshoot_the_budget,
    restart_keeps_keys_and_spend,
    sigterm_loses_no_spend_row,
);

/// The routes the other scenarios do not drive, each with what it answers.
async fn management_routes(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let ok = |r: Resp| {
        r.expect_status(200);
        r.json()
    };
    // Budgets.
    ok(gw
        .post(
            "/budget/new",
            &json!({"budget_id": "free", "max_budget": 2.0 * C, "rpm_limit": 100}),
        )
        .send()
        .await);
    gw.post("/budget/new", &json!({"budget_id": "free"}))
        .send()
        .await
        .expect_error(400);
    let info = ok(gw
        .post("/budget/info", &json!({"budgets": ["free"]}))
        .send()
        .await);
    assert_eq!(info[0]["rpm_limit"], 100, "{info}");
    let upd = ok(gw
        .post(
            "/budget/update",
            &json!({"budget_id": "free", "rpm_limit": 10}),
        )
        .send()
        .await);
    assert_eq!(upd["rpm_limit"], 10, "{upd}");
    assert_eq!(
        ok(gw.get("/budget/list").send().await)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Customers (and the /end_user aliases) with that budget.
    ok(gw
        .post(
            "/customer/new",
            &json!({"user_id": "c1", "budget_id": "free", "alias": "Cust"}),
        )
        .send()
        .await);
    let c = ok(gw.get("/end_user/info?end_user_id=c1").send().await);
    assert_eq!(c["alias"], "Cust", "{c}");
    gw.post("/budget/delete", &json!({"id": "free"}))
        .send()
        .await
        .expect_error(400);
    let mut body = chat_body("priced");
    body["user"] = json!("c1");
    for _ in 0..2 {
        gw.post("/v1/chat/completions", &body)
            .send()
            .await
            .expect_status(200);
    }
    // The budget's max_budget (2 C) applies to the customer.
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(429);
    ok(gw
        .post(
            "/customer/update",
            &json!({"user_id": "c1", "alias": "C-1"}),
        )
        .send()
        .await);
    let list = ok(gw.get("/customer/list").send().await);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["user_id"] == "c1" && c["alias"] == "C-1"),
        "{list}"
    );
    ok(gw
        .post("/customer/block", &json!({"user_ids": ["c1"]}))
        .send()
        .await);
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(403);
    ok(gw
        .post("/customer/unblock", &json!({"user_ids": ["c1"]}))
        .send()
        .await);
    ok(gw
        .post("/customer/delete", &json!({"user_ids": ["c1"]}))
        .send()
        .await);
    gw.get("/customer/info?end_user_id=c1")
        .send()
        .await
        .expect_error(404);
    ok(gw
        .post("/budget/delete", &json!({"id": "free"}))
        .send()
        .await);

    // Organizations, teams, users.
    let org = ok(gw
        .post("/organization/new", &json!({"organization_alias": "acme"}))
        .send()
        .await);
    let org_id = org["organization_id"].as_str().unwrap().to_string();
    let team = ok(gw
        .post(
            "/team/new",
            &json!({"team_alias": "core", "organization_id": org_id}),
        )
        .send()
        .await);
    let team_id = team["team_id"].as_str().unwrap().to_string();
    let oi = ok(gw
        .get(&format!("/organization/info?organization_id={org_id}"))
        .send()
        .await);
    assert_eq!(oi["teams"][0]["team_id"], team_id.as_str(), "{oi}");
    let ou = ok(gw
        .req(Method::PATCH, "/organization/update")
        .json(&json!({"organization_id": org_id, "organization_alias": "acme2"}))
        .send()
        .await);
    assert_eq!(ou["organization_alias"], "acme2");
    assert_eq!(
        ok(gw.get("/organization/list").send().await)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    gw.post(
        "/organization/delete",
        &json!({"organization_ids": [org_id]}),
    )
    .send()
    .await
    .expect_error(400);

    ok(gw
        .post(
            "/user/new",
            &json!({"user_id": "u", "user_email": "u@example.com", "auto_create_key": false}),
        )
        .send()
        .await);
    let uu = ok(gw
        .post("/user/update", &json!({"user_id": "u", "max_budget": 5.0}))
        .send()
        .await);
    assert_eq!(uu["max_budget"], 5.0, "{uu}");
    let users = ok(gw.get("/user/list").send().await);
    assert_eq!(users["total"], 1, "{users}");
    ok(gw.post("/team/member_add", &json!({"team_id": team_id, "member": {"user_email": "u@example.com", "role": "admin"}})).send().await);
    let ui = ok(gw.get("/user/info?user_id=u").send().await);
    assert_eq!(ui["teams"][0]["team_id"], team_id.as_str(), "{ui}");
    let tu = ok(gw
        .post(
            "/team/update",
            &json!({"team_id": team_id, "max_budget": 1.0}),
        )
        .send()
        .await);
    assert_eq!(tu["max_budget"], 1.0);
    assert_eq!(
        ok(gw.get("/team/list").send().await)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (tk, _) = generate(&gw, json!({"team_id": team_id})).await;
    ok(gw
        .post("/team/block", &json!({"team_id": team_id}))
        .send()
        .await);
    let e = chat(&gw, &tk, "priced").await.expect_error(401);
    assert!(e["message"].as_str().unwrap().contains("blocked"), "{e}");
    ok(gw
        .post("/team/unblock", &json!({"team_id": team_id}))
        .send()
        .await);
    chat(&gw, &tk, "priced").await.expect_status(200);
    let md = ok(gw
        .post(
            "/team/member_delete",
            &json!({"team_id": team_id, "user_id": "u"}),
        )
        .send()
        .await);
    assert_eq!(
        md["members_with_roles"].as_array().unwrap().len(),
        0,
        "{md}"
    );
    let td = ok(gw
        .post("/team/delete", &json!({"team_ids": [team_id]}))
        .send()
        .await);
    assert_eq!(td["deleted_keys"], 1, "{td}");
    chat(&gw, &tk, "priced").await.expect_error(401);
    ok(gw
        .post(
            "/organization/delete",
            &json!({"organization_ids": [org_id]}),
        )
        .send()
        .await);
    ok(gw
        .post("/user/delete", &json!({"user_ids": ["u"]}))
        .send()
        .await);
    gw.get("/user/info?user_id=u")
        .send()
        .await
        .expect_error(404);

    // Global spend reports: 3 priced requests so far (2 by c1 and 1 by the team key).
    let (k, _) = generate(&gw, json!({"key_alias": "reporter"})).await;
    chat(&gw, &k, "priced").await.expect_status(200);
    let top = ok(gw.get("/global/spend/keys").send().await);
    assert!(
        top.as_array()
            .unwrap()
            .iter()
            .any(|r| r["key_alias"] == "reporter"),
        "{top}"
    );
    let models = ok(gw.get("/global/spend/models").send().await);
    assert_eq!(models[0]["model"], "priced", "{models}");
    assert!(
        close(models[0]["total_spend"].as_f64().unwrap(), 4.0 * C),
        "{models}"
    );
    let report = ok(gw.get("/global/spend/report?group_by=api_key").send().await);
    assert!(report.as_array().is_some_and(|a| !a.is_empty()), "{report}");
    ok(gw.get("/global/spend/teams").send().await);
    gw.get("/global/spend/report?group_by=planet")
        .send()
        .await
        .expect_error(400);
    gw.stop().await;
}

async fn streams_are_booked(db: Db) {
    use http_body_util::BodyExt;
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let (key, _) = generate(&gw, json!({})).await;
    // A whole stream (the client did not ask for usage; the gateway asks the upstream for it).
    let mut body = chat_body("priced");
    body["stream"] = json!(true);
    let resp = gw
        .post("/v1/chat/completions", &body)
        .bearer(&key)
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    assert!(read_sse(resp.into_body()).await.ends_with_done());
    // A stream the client leaves after its first frame.
    let mut body = chat_body("drip");
    body["stream"] = json!(true);
    let resp = gw
        .post("/v1/chat/completions", &body)
        .bearer(&key)
        .open()
        .await;
    assert_eq!(resp.status(), 200);
    let mut incoming = resp.into_body();
    assert!(incoming.frame().await.is_some());
    drop(incoming);
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = spend_logs(&gw, &format!("api_key={key}")).await;
        if rows.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    let full = rows.iter().find(|r| r["model_group"] == "priced").unwrap();
    assert_eq!(full["stream"], true);
    assert_eq!(full["total_tokens"], 8);
    assert!(close(full["spend"].as_f64().unwrap(), C), "{full}");
    let left = rows.iter().find(|r| r["model_group"] == "drip").unwrap();
    assert_eq!(left["stream"], true, "{left}");
    assert_eq!(left["status_code"], 499, "{left}");
    assert_eq!(full["status_code"], 200, "{full}");
    gw.stop().await;
}

async fn key_lifecycle(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let (key, v) = generate(
        &gw,
        json!({"key_alias": "ci", "models": ["priced"], "metadata": {"team": "x"}, "tags": ["t1"]}),
    )
    .await;
    assert!(
        key.starts_with("sk-") && v["token"].as_str().unwrap().len() == 64,
        "{v}"
    );
    assert_eq!(v["key_alias"], "ci");

    let r = chat(&gw, &key, "priced").await;
    r.expect_status(200);
    assert_eq!(r.header("x-litellm-response-cost"), Some("0.015"));

    // info by secret and by hash; list shows it.
    let token = v["token"].as_str().unwrap().to_string();
    for k in [&key, &token] {
        let info = gw.get(&format!("/key/info?key={k}")).send().await;
        info.expect_status(200);
        assert_eq!(info.json()["info"]["key_alias"], "ci");
    }
    let list = gw.get("/key/list").send().await.json();
    assert!(
        list["keys"].as_array().unwrap().contains(&json!(token)),
        "{list}"
    );
    // A key reads its own info without naming itself.
    let own = gw.get("/key/info").bearer(&key).send().await;
    own.expect_status(200);
    assert!(
        close(own.json()["info"]["spend"].as_f64().unwrap(), C)
            || own.json()["info"]["spend"].as_f64().unwrap() <= C
    );

    // update: models changes take effect at once.
    gw.post("/key/update", &json!({"key": key, "models": ["other"]}))
        .send()
        .await
        .expect_status(200);
    chat(&gw, &key, "priced").await.expect_error(401);
    chat(&gw, &key, "other").await.expect_status(200);
    // Unknown field and wrong type: clear 400s.
    let e = gw
        .post("/key/update", &json!({"key": key, "max_budgett": 1}))
        .send()
        .await
        .expect_error(400);
    assert!(
        e["message"].as_str().unwrap().contains("max_budgett"),
        "{e}"
    );
    let e = gw
        .post("/key/update", &json!({"key": key, "rpm_limit": "ten"}))
        .send()
        .await
        .expect_error(400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Invalid field value"),
        "{e}"
    );

    // block / unblock
    gw.post("/key/block", &json!({"key": key}))
        .send()
        .await
        .expect_status(200);
    let e = chat(&gw, &key, "other").await.expect_error(401);
    assert!(e["message"].as_str().unwrap().contains("blocked"), "{e}");
    gw.post("/key/unblock", &json!({"key": key}))
        .send()
        .await
        .expect_status(200);
    chat(&gw, &key, "other").await.expect_status(200);

    // regenerate: the old secret stops, the new one works, spend is kept.
    let r = gw
        .post("/key/regenerate", &json!({"key": key}))
        .send()
        .await;
    r.expect_status(200);
    let new_key = r.json()["key"].as_str().unwrap().to_string();
    assert_ne!(new_key, key);
    chat(&gw, &key, "other").await.expect_error(401);
    chat(&gw, &new_key, "other").await.expect_status(200);
    assert!(key_spend(&gw, &new_key).await >= C - 1e-9);

    // delete: stops at once.
    let d = gw
        .post("/key/delete", &json!({"keys": [new_key]}))
        .send()
        .await;
    d.expect_status(200);
    assert_eq!(d.json()["deleted_keys"].as_array().unwrap().len(), 1);
    chat(&gw, &new_key, "other").await.expect_error(401);
    gw.get(&format!("/key/info?key={new_key}"))
        .send()
        .await
        .expect_error(404);
    // A key that never existed.
    chat(&gw, "sk-not-a-key", "other").await.expect_error(401);
    gw.stop().await;
}

async fn roles_are_enforced(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let new_user = |id: &str, role: &str| json!({"user_id": id, "user_role": role});
    let r = gw
        .post("/user/new", &new_user("alice", "internal_user"))
        .send()
        .await;
    r.expect_status(200);
    let alice = r.json()["key"].as_str().unwrap().to_string();
    let bob = gw
        .post("/user/new", &new_user("bob", "internal_user"))
        .send()
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let viewer = gw
        .post("/user/new", &new_user("vera", "internal_user_viewer"))
        .send()
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_viewer = gw
        .post("/user/new", &new_user("adam", "proxy_admin_viewer"))
        .send()
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = gw
        .post("/user/new", &new_user("root", "proxy_admin"))
        .send()
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_string();
    gw.post(
        "/user/new",
        &json!({"user_id": "x", "user_role": "superuser"}),
    )
    .send()
    .await
    .expect_error(400);

    // An internal user makes keys for themself only.
    let own = gw
        .post("/key/generate", &json!({}))
        .bearer(&alice)
        .send()
        .await;
    own.expect_status(200);
    assert_eq!(own.json()["user_id"], "alice");
    let e = gw
        .post("/key/generate", &json!({"user_id": "bob"}))
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    assert_eq!(e["type"], "permission_error");
    gw.post("/key/generate", &json!({}))
        .bearer(&viewer)
        .send()
        .await
        .expect_error(403);
    gw.post("/key/generate", &json!({}))
        .bearer(&admin_viewer)
        .send()
        .await
        .expect_error(403);
    gw.post("/key/generate", &json!({"user_id": "bob"}))
        .bearer(&admin)
        .send()
        .await
        .expect_status(200);

    // Reading others.
    gw.get("/user/info?user_id=bob")
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    gw.get("/user/info?user_id=alice")
        .bearer(&alice)
        .send()
        .await
        .expect_status(200);
    gw.get("/user/info?user_id=bob")
        .bearer(&admin_viewer)
        .send()
        .await
        .expect_status(200);
    gw.get("/user/list")
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    gw.get("/user/list")
        .bearer(&admin_viewer)
        .send()
        .await
        .expect_status(200);
    let bob_hash = tollgate_hash(&bob);
    gw.get(&format!("/key/info?key={bob}"))
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    gw.post("/key/delete", &json!({"keys": [bob_hash]}))
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    let alice_keys = gw.get("/key/list").bearer(&alice).send().await.json();
    assert_eq!(alice_keys["total_count"], 2, "{alice_keys}");
    gw.get("/key/list?user_id=bob")
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);

    // Admin routes.
    gw.post("/team/new", &json!({"team_alias": "t"}))
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    gw.post("/user/new", &json!({"user_id": "eve"}))
        .bearer(&admin_viewer)
        .send()
        .await
        .expect_error(403);
    gw.post("/key/block", &json!({"key": bob}))
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    gw.post("/team/new", &json!({"team_alias": "t"}))
        .bearer(&admin)
        .send()
        .await
        .expect_status(200);

    // Spend: an internal user sees only their own rows.
    chat(&gw, &alice, "priced").await.expect_status(200);
    chat(&gw, &bob, "priced").await.expect_status(200);
    let mine = gw.get("/spend/logs").bearer(&alice).send().await;
    mine.expect_status(200);
    let rows = mine.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["user"], "alice");
    gw.get("/spend/logs?user_id=bob")
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);
    assert_eq!(spend_logs(&gw, "").await.len(), 2);
    gw.get("/global/spend/keys")
        .bearer(&alice)
        .send()
        .await
        .expect_error(403);

    // Team admins manage their team's members and keys.
    let team = gw
        .post("/team/new", &json!({"team_alias": "core", "members_with_roles": [{"user_id": "alice", "role": "admin"}]}))
        .send()
        .await
        .json();
    let team_id = team["team_id"].as_str().unwrap().to_string();
    gw.post(
        "/team/member_add",
        &json!({"team_id": team_id, "member": {"user_id": "bob", "role": "user"}}),
    )
    .bearer(&alice)
    .send()
    .await
    .expect_status(200);
    gw.post(
        "/team/member_add",
        &json!({"team_id": team_id, "member": {"user_id": "vera"}}),
    )
    .bearer(&bob)
    .send()
    .await
    .expect_error(403);
    let info = gw
        .get(&format!("/team/info?team_id={team_id}"))
        .bearer(&bob)
        .send()
        .await;
    info.expect_status(200);
    assert_eq!(
        info.json()["team_info"]["members_with_roles"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    gw.get(&format!("/team/info?team_id={team_id}"))
        .bearer(&viewer)
        .send()
        .await
        .expect_error(403);
    // Keys in a team only for its members: bob may; vera and eve (not members) may not.
    let team_key = json!({"team_id": team_id});
    gw.post("/key/generate", &team_key)
        .bearer(&bob)
        .send()
        .await
        .expect_status(200);
    gw.post("/key/generate", &team_key)
        .bearer(&viewer)
        .send()
        .await
        .expect_error(403);
    gw.post(
        "/user/new",
        &json!({"user_id": "eve", "user_role": "internal_user"}),
    )
    .send()
    .await
    .expect_status(200);
    let (eve, _) = generate(&gw, json!({"user_id": "eve"})).await;
    let e = gw
        .post("/key/generate", &team_key)
        .bearer(&eve)
        .send()
        .await
        .expect_error(403);
    assert!(
        e["message"].as_str().unwrap().contains("not a member"),
        "{e}"
    );
    gw.stop().await;
}

fn tollgate_hash(secret: &str) -> String {
    tollgate_accounts::secret::hash_secret(secret)
}

async fn model_access(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let (only_priced, _) = generate(&gw, json!({"models": ["priced"]})).await;
    let e = chat(&gw, &only_priced, "other").await.expect_error(401);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("key not allowed to access model"),
        "{e}"
    );
    let models: Vec<String> = gw
        .get("/v1/models")
        .bearer(&only_priced)
        .send()
        .await
        .json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(models, vec!["priced".to_string()]);
    gw.get("/v1/models/other")
        .bearer(&only_priced)
        .send()
        .await
        .expect_error(404);

    // Access group, wildcard, aliases.
    let (beta, _) = generate(&gw, json!({"models": ["beta"]})).await;
    chat(&gw, &beta, "other").await.expect_status(200);
    chat(&gw, &beta, "priced").await.expect_error(401);
    let (wild, _) = generate(&gw, json!({"models": ["openai/*"]})).await;
    chat(&gw, &wild, "openai/gpt-4o-mini")
        .await
        .expect_status(200);
    chat(&gw, &wild, "priced").await.expect_error(401);
    let (aliased, _) = generate(
        &gw,
        json!({"models": ["priced"], "aliases": {"my-model": "priced"}}),
    )
    .await;
    chat(&gw, &aliased, "my-model").await.expect_status(200);

    // Team models bound keys without their own list.
    let team = gw
        .post("/team/new", &json!({"models": ["other"]}))
        .send()
        .await
        .json();
    let (team_key, _) = generate(&gw, json!({"team_id": team["team_id"]})).await;
    chat(&gw, &team_key, "other").await.expect_status(200);
    chat(&gw, &team_key, "priced").await.expect_error(401);
    // The master key may use everything.
    chat(&gw, KEY, "other").await.expect_status(200);
    gw.stop().await;
}

async fn expiry(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let (key, v) = generate(&gw, json!({"duration": "1s"})).await;
    assert!(v["expires"].is_string(), "{v}");
    chat(&gw, &key, "priced").await.expect_status(200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let e = chat(&gw, &key, "priced").await.expect_error(401);
    assert!(e["message"].as_str().unwrap().contains("Expired"), "{e}");
    gw.post("/key/generate", &json!({"duration": "soon"}))
        .send()
        .await
        .expect_error(400);
    gw.stop().await;
}

/// Send `priced` requests until one is refused; returns (successes, the refusal's error body).
async fn until_refused(gw: &Gateway, key: &str, body: Value, max: usize) -> (usize, Value) {
    for i in 0..max {
        let r = gw
            .post("/v1/chat/completions", &body)
            .bearer(key)
            .send()
            .await;
        if r.status.as_u16() != 200 {
            return (i, r.expect_error(429));
        }
    }
    panic!("no refusal within {max} requests");
}

async fn budgets_are_enforced(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    // Key budget: 2.5 requests' worth -> 3 succeed (admitted while spend < budget), the 4th is refused.
    let (key, _) = generate(&gw, json!({"max_budget": 2.5 * C})).await;
    let (n, e) = until_refused(&gw, &key, chat_body("priced"), 10).await;
    assert_eq!(n, 3);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Budget has been exceeded!"),
        "{e}"
    );
    assert_eq!(e["type"], "budget_exceeded");
    assert!(close(key_spend(&gw, &key).await, 3.0 * C));

    // User budget (across the user's keys).
    gw.post(
        "/user/new",
        &json!({"user_id": "u1", "max_budget": 1.5 * C}),
    )
    .send()
    .await
    .expect_status(200);
    let (k1, _) = generate(&gw, json!({"user_id": "u1"})).await;
    let (k2, _) = generate(&gw, json!({"user_id": "u1"})).await;
    chat(&gw, &k1, "priced").await.expect_status(200);
    chat(&gw, &k2, "priced").await.expect_status(200);
    chat(&gw, &k1, "priced").await.expect_error(429);
    chat(&gw, &k2, "priced").await.expect_error(429);

    // Team budget.
    let team = gw
        .post("/team/new", &json!({"max_budget": 0.5 * C}))
        .send()
        .await
        .json();
    let (tk, _) = generate(&gw, json!({"team_id": team["team_id"]})).await;
    chat(&gw, &tk, "priced").await.expect_status(200);
    let e = chat(&gw, &tk, "priced").await.expect_error(429);
    assert!(e["message"].as_str().unwrap().contains("team"), "{e}");

    // Organization budget, through a team.
    let org = gw
        .post(
            "/organization/new",
            &json!({"organization_alias": "o", "max_budget": 0.5 * C}),
        )
        .send()
        .await;
    org.expect_status(200);
    let org_id = org.json()["organization_id"].as_str().unwrap().to_string();
    let team = gw
        .post("/team/new", &json!({"organization_id": org_id}))
        .send()
        .await
        .json();
    let (ok, _) = generate(&gw, json!({"team_id": team["team_id"]})).await;
    chat(&gw, &ok, "priced").await.expect_status(200);
    chat(&gw, &ok, "priced").await.expect_error(429);

    // End-user (customer) budget, from the request's `user` field, even with the master key.
    gw.post(
        "/customer/new",
        &json!({"user_id": "cust-1", "max_budget": 0.5 * C}),
    )
    .send()
    .await
    .expect_status(200);
    let mut body = chat_body("priced");
    body["user"] = json!("cust-1");
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_status(200);
    let e = gw
        .post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(429);
    assert!(e["message"].as_str().unwrap().contains("cust-1"), "{e}");
    // Blocked customers are refused.
    body["user"] = json!("cust-2");
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_status(200);
    gw.post("/customer/block", &json!({"user_ids": ["cust-2"]}))
        .send()
        .await
        .expect_status(200);
    gw.post("/v1/chat/completions", &body)
        .send()
        .await
        .expect_error(403);

    // Per-model budget of a key.
    let (mk, _) = generate(
        &gw,
        json!({"model_max_budget": {"priced": {"budget_limit": 0.5 * C, "time_period": "1d"}}}),
    )
    .await;
    chat(&gw, &mk, "priced").await.expect_status(200);
    chat(&gw, &mk, "priced").await.expect_error(429);
    chat(&gw, &mk, "other").await.expect_status(200);
    gw.stop().await;
}

async fn budget_reset(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let (key, v) = generate(&gw, json!({"max_budget": 0.5 * C, "budget_duration": "2s"})).await;
    assert!(v["budget_reset_at"].is_string(), "{v}");
    chat(&gw, &key, "priced").await.expect_status(200);
    chat(&gw, &key, "priced").await.expect_error(429);
    // The reset job runs every second; the budget period is 2 s.
    let mut reset = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if chat(&gw, &key, "priced").await.status.as_u16() == 200 {
            reset = true;
            break;
        }
    }
    assert!(reset, "the budget was not reset");
    let info = gw.get(&format!("/key/info?key={key}")).send().await.json();
    let next = info["info"]["budget_reset_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        next.as_str() > v["budget_reset_at"].as_str().unwrap(),
        "{info}"
    );
    gw.stop().await;
}

/// Minute windows: wait out the last seconds of a minute so a test's requests fall in one window.
async fn avoid_minute_edge(need_secs: u64) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if secs + need_secs >= 60 {
        tokio::time::sleep(Duration::from_secs(61 - secs)).await;
    }
}

async fn rate_limits(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    avoid_minute_edge(15).await;
    // rpm
    let (key, _) = generate(&gw, json!({"rpm_limit": 2})).await;
    let r = chat(&gw, &key, "priced").await;
    r.expect_status(200);
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("1"));
    chat(&gw, &key, "priced").await.expect_status(200);
    let r = chat(&gw, &key, "priced").await;
    let e = r.expect_error(429);
    assert_eq!(e["type"], "rate_limit_error");
    assert!(
        e["message"].as_str().unwrap().contains("rpm_limit=2"),
        "{e}"
    );
    let ra: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&ra), "{ra}");

    // tpm: one request uses 8 tokens; a limit of 8 allows one per minute.
    let (tk, _) = generate(&gw, json!({"tpm_limit": 8})).await;
    let r = chat(&gw, &tk, "priced").await;
    r.expect_status(200);
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("8"));
    let e = chat(&gw, &tk, "priced").await.expect_error(429);
    assert!(
        e["message"].as_str().unwrap().contains("tpm_limit=8"),
        "{e}"
    );

    // max_parallel_requests: a second concurrent request is refused while the first is in flight.
    let (pk, _) = generate(&gw, json!({"max_parallel_requests": 1})).await;
    let first = gw
        .post("/v1/chat/completions", &chat_body("slow"))
        .bearer(&pk)
        .send();
    let second = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        chat(&gw, &pk, "slow").await
    };
    let (first, second) = tokio::join!(first, second);
    let e = second.expect_error(429);
    assert!(e["message"].as_str().unwrap().contains("parallel"), "{e}");
    first.expect_status(200);
    chat(&gw, &pk, "priced").await.expect_status(200);

    // User-level rpm applies across the user's keys.
    gw.post(
        "/user/new",
        &json!({"user_id": "r1", "rpm_limit": 1, "auto_create_key": false}),
    )
    .send()
    .await
    .expect_status(200);
    let (a, _) = generate(&gw, json!({"user_id": "r1"})).await;
    let (b, _) = generate(&gw, json!({"user_id": "r1"})).await;
    chat(&gw, &a, "priced").await.expect_status(200);
    let e = chat(&gw, &b, "priced").await.expect_error(429);
    assert!(e["message"].as_str().unwrap().contains("user=r1"), "{e}");

    // Deployment rpm (litellm_params.rpm: 2).
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(chat(&gw, KEY, "limited").await.status.as_u16());
    }
    assert_eq!(codes, vec![200, 200, 429]);
    gw.stop().await;
}

async fn concurrent_requests_do_not_overshoot_the_budget(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    // Budget for 10.5 requests. One request first (the gateway learns what a request of this deployment
    // costs), then 200 arrive at once, each reserving that while the slow upstream works.
    let (key, _) = generate(&gw, json!({"max_budget": 10.5 * C})).await;
    let body = chat_body("slow");
    chat(&gw, &key, "slow").await.expect_status(200);
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let req = gw.post("/v1/chat/completions", &body).bearer(&key);
        let (ok, refused) = (ok.clone(), refused.clone());
        tasks.spawn(async move {
            match req.send().await.status.as_u16() {
                200 => ok.fetch_add(1, Ordering::Relaxed),
                429 => refused.fetch_add(1, Ordering::Relaxed),
                other => panic!("unexpected status {other}"),
            };
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let ok = ok.load(Ordering::Relaxed);
    assert_eq!(ok + refused.load(Ordering::Relaxed), 200);
    // Reservations admit while spent + reserved < budget: 1 C spent, so 10 more at most (the last one
    // crosses the budget by less than its own cost).
    assert!((9..=10).contains(&ok), "{ok} requests succeeded");
    let spend = key_spend(&gw, &key).await;
    assert!(spend <= 10.5 * C + C + 1e-9, "spend {spend}");
    assert!(
        close(spend, (ok + 1) as f64 * C),
        "spend {spend} for {} requests",
        ok + 1
    );
    gw.stop().await;
}

async fn restart_keeps_keys_and_spend(db: Db) {
    let mock = mock().await;
    let gw = start(&db, &mock, "").await;
    let (key, _) = generate(&gw, json!({"max_budget": 100.0})).await;
    for _ in 0..3 {
        chat(&gw, &key, "priced").await.expect_status(200);
    }
    gw.stop().await;
    let gw = start(&db, &mock, "").await;
    chat(&gw, &key, "priced").await.expect_status(200);
    assert!(close(key_spend(&gw, &key).await, 4.0 * C));
    assert_eq!(spend_logs(&gw, &format!("api_key={key}")).await.len(), 4);
    gw.stop().await;
}

async fn sigterm_loses_no_spend_row(db: Db) {
    let mock = mock().await;
    // A long batch interval: the rows are still buffered when SIGTERM comes.
    let gw = gateway()
        .config(
            config(&db, &mock.base_url(), "")
                .replace("proxy_batch_write_at: 0.2", "proxy_batch_write_at: 60"),
        )
        .start();
    let (key, _) = generate(&gw, json!({})).await;
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let req = gw
            .post("/v1/chat/completions", &chat_body("slow"))
            .bearer(&key);
        let answered = answered.clone();
        tasks.spawn(async move {
            if let Ok(r) = req.try_send().await
                && r.status.as_u16() == 200
            {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut gw = gw;
    gw.sigterm();
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let st = gw
        .wait_exit_async(Duration::from_secs(30))
        .await
        .expect("exit after SIGTERM");
    assert!(st.success(), "exit {st}");
    let answered = answered.load(Ordering::Relaxed);
    assert_eq!(answered, 40, "in-flight requests finish during the drain");
    drop(gw);
    let gw = start(&db, &mock, "").await;
    assert_eq!(
        spend_logs(&gw, &format!("api_key={key}")).await.len() as u64,
        answered
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// The database cut off mid-run (PostgreSQL through a TCP relay the test breaks and restores)

/// A TCP relay to PostgreSQL that can be cut: while cut, live connections are closed and new ones refused.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    /// The accept loop (and, inside it, the connections); aborted on drop.
    _tasks: tokio::task::JoinSet<()>,
}

impl Relay {
    async fn start(target: &'static str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, rx) = tokio::sync::watch::channel(0u64);
        let c = cut.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                // Only a cut after this connection was made closes it.
                rx.borrow_and_update();
                conns.spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Relay {
            port,
            cut,
            generation,
            _tasks: tasks,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_off_mid_run_loses_nothing() {
    let Some(db) = Db::postgres() else { return };
    let relay = Relay::start("127.0.0.1:5432").await;
    let url = db
        .url()
        .unwrap()
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port));
    let mock = mock().await;
    let side = Db::sqlite();
    let cfg = config(
        &side,
        &mock.base_url(),
        &format!("  database_url: {url}\n  database_connection_timeout: 2\n"),
    )
    .lines()
    .filter(|l| !l.contains("tollgate_database_path"))
    .collect::<Vec<_>>()
    .join("\n");
    let gw = gateway().config(cfg).start();
    let (key, _) = generate(&gw, json!({"max_budget": 1000.0})).await;
    for _ in 0..5 {
        chat(&gw, &key, "priced").await.expect_status(200);
    }
    relay.cut();
    // The database is gone: the cached key keeps working, rows stay in memory.
    for _ in 0..20 {
        chat(&gw, &key, "priced").await.expect_status(200);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = gw.anon(Method::GET, "/health/readiness").send().await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text());
    relay.restore();
    // Every row arrives once the database is back.
    let mut n = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = gw.get(&format!("/spend/logs?api_key={key}")).send().await;
        if r.status.as_u16() == 200 {
            n = r.json().as_array().unwrap().len();
            if n == 25 {
                break;
            }
        }
    }
    assert_eq!(n, 25, "rows written after the database came back");
    assert!(close(key_spend(&gw, &key).await, 25.0 * C));
    assert!(
        gw.stderr().contains("cannot write spend rows"),
        "the outage is logged"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_command_and_skip_migrations() {
    let db = Db::sqlite();
    let mock = mock().await;
    let cfg = config(&db, &mock.base_url(), "");
    // Skipping migrations on a fresh database: a clear error before any port is bound.
    let f = gateway().config(cfg.clone()).arg("--skip-migrations").run();
    assert_eq!(f.code(), Some(65), "{}", f.stderr);
    assert!(
        f.stderr.contains("schema") && f.stderr.contains("tollgate migrate"),
        "{}",
        f.stderr
    );
    // `tollgate migrate` alone, then start without migrating.
    let f = gateway()
        .config(cfg.clone())
        .no_default_port()
        .arg("migrate")
        .run();
    assert_eq!(f.code(), Some(0), "{}", f.stderr);
    assert!(
        f.stdout.contains("migrated to schema version"),
        "{}",
        f.stdout
    );
    let gw = gateway().config(cfg).arg("--skip-migrations").start();
    chat(&gw, KEY, "priced").await.expect_status(200);
    gw.stop().await;
    // An unreachable database: exit 69 before binding.
    let f = gateway()
        .config(format!(
            "{}\n  database_url: postgres://postgres@127.0.0.1:1/x\n",
            config_for(&mock.base_url(), &[("m", "m")])
        ))
        .run();
    assert_eq!(f.code(), Some(69), "{}", f.stderr);
}

// ---------------------------------------------------------------------------------------------------------
// Limits shared through Redis

fn redis_available() -> bool {
    let addr: std::net::SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let ok = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    service_available("Redis", ok, "nothing accepts connections on 127.0.0.1:6379")
}

/// A unique key prefix, and its keys deleted on drop.
struct RedisPrefix(String);

impl RedisPrefix {
    fn new() -> RedisPrefix {
        RedisPrefix(format!("tgtest-{}:", uuid::Uuid::now_v7().simple()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "--scan",
                "--pattern",
                &format!("{}*", self.0),
            ])
            .output();
        if let Ok(out) = keys {
            for k in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
            {
                let _ = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "DEL", k])
                    .output();
            }
        }
    }
}

/// Two instances on one PostgreSQL and one Redis: a key's rpm limit holds across both (LiteLLM without
/// shared limits allows the limit on each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_limit_is_shared_by_two_instances_through_redis() {
    let Some(db) = Db::postgres() else { return };
    if !redis_available() {
        return;
    }
    let prefix = RedisPrefix::new();
    let mock = mock().await;
    let extra = format!(
        "router_settings:\n  redis_host: 127.0.0.1\n  redis_port: 6379\n  tollgate_redis_prefix: \"{}\"\n",
        prefix.0
    );
    let cfg = format!("{}{extra}", config(&db, &mock.base_url(), ""));
    let a = gateway().config(cfg.clone()).start();
    let b = gateway().config(cfg).start();
    assert!(
        a.stderr().contains("shared through Redis"),
        "{}",
        a.stderr()
    );
    let (key, _) = generate(&a, json!({"rpm_limit": 60, "max_parallel_requests": 100})).await;
    // Round robin over both; the minute must not turn over in between, so start at the top of a minute
    // when we are close to its end.
    avoid_minute_edge(20).await;
    let mut ok = 0;
    for i in 0..80 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = chat(gw, &key, "priced").await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                let e = r.expect_error(429);
                assert!(
                    e["message"].as_str().unwrap().contains("rpm_limit=60"),
                    "{e}"
                );
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(ok, 60, "60 successes across both instances, not 60 on each");
    // Spend from both lands in one ledger (b writes within its batch interval).
    let mut rows = 0;
    for _ in 0..50 {
        rows = spend_logs(&a, &format!("api_key={key}")).await.len();
        if rows == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 60);
    // Instance a sees b's spend after its next refresh (0.5 s here).
    let mut spend = 0.0;
    for _ in 0..50 {
        spend = key_spend(&a, &key).await;
        if close(spend, 60.0 * C) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(close(spend, 60.0 * C), "spend seen by a: {spend}");
    a.stop().await;
    b.stop().await;
}

/// Two instances on one PostgreSQL and one Redis share router state: a deployment cooled down by one is
/// skipped by the other, and a deployment's rpm use on one counts on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldowns_and_deployment_usage_are_shared_by_two_instances() {
    let Some(db) = Db::postgres() else { return };
    if !redis_available() {
        return;
    }
    let prefix = RedisPrefix::new();
    let bad = mock().await;
    let good = mock().await;
    let capped = mock().await;
    bad.set_faults(&[("status", "503")]).unwrap();
    let dep = |group: &str, id: &str, base: &str, extra: &str| {
        format!(
            "  - model_name: {group}\n    litellm_params:\n      model: openai/m\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\n{extra}    model_info:\n      id: {id}\n"
        )
    };
    let cfg = format!(
        "model_list:\n{}{}{}{}general_settings:\n  master_key: {KEY}\n  proxy_batch_write_at: 0.2\n{}router_settings:\n  redis_host: 127.0.0.1\n  redis_port: 6379\n  tollgate_redis_prefix: \"{}\"\n  allowed_fails: 0\n  cooldown_time: 60\n  num_retries: 1\n",
        dep("g", "dep-bad", &bad.base_url(), ""),
        dep("g", "dep-good", &good.base_url(), ""),
        dep("capped", "dep-capped", &capped.base_url(), "      rpm: 5\n"),
        dep("capped", "dep-spare", &good.base_url(), ""),
        db.settings(),
        prefix.0
    );
    let a = gateway().config(cfg.clone()).start();
    let b = gateway().config(cfg).start();
    // Instance a meets the bad deployment and cools it down.
    for _ in 0..50 {
        let r = chat(&a, KEY, "g").await;
        r.expect_status(200);
        if bad.requests() > 0 {
            break;
        }
    }
    assert_eq!(bad.requests(), 1);
    // Instance b learns of the cooldown within a few sync ticks and never calls it.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for _ in 0..30 {
        let r = chat(&b, KEY, "g").await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-good"));
    }
    assert_eq!(
        bad.requests(),
        1,
        "instance b called the deployment a cooled down"
    );
    // The capped deployment's rpm (5) used on a counts on b.
    avoid_minute_edge(10).await;
    let mut on_a = 0;
    while capped.requests() < 5 && on_a < 200 {
        chat(&a, KEY, "capped").await.expect_status(200);
        on_a += 1;
    }
    assert_eq!(capped.requests(), 5);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for _ in 0..20 {
        let r = chat(&b, KEY, "capped").await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-spare"));
    }
    assert_eq!(capped.requests(), 5, "b went over the deployment's rpm");
    a.stop().await;
    b.stop().await;
}

/// `least-busy` counts the requests other instances have in flight (shared through Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_sees_the_other_instances_requests_in_flight() {
    if !redis_available() {
        return;
    }
    let prefix = RedisPrefix::new();
    let (dba, dbb) = (Db::sqlite(), Db::sqlite());
    let slow = mock().await;
    let fast = mock().await;
    slow.set_faults(&[("latency_ms", "4000")]).unwrap();
    let cfg = |db: &Db| {
        format!(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/m\n      api_base: {}\n      api_key: {UPSTREAM_KEY}\n    model_info:\n      id: dep-slow\n  - model_name: g\n    litellm_params:\n      model: openai/m\n      api_base: {}\n      api_key: {UPSTREAM_KEY}\n    model_info:\n      id: dep-fast\ngeneral_settings:\n  master_key: {KEY}\n{}router_settings:\n  routing_strategy: least-busy\n  redis_host: 127.0.0.1\n  redis_port: 6379\n  tollgate_redis_prefix: \"{}\"\n",
            slow.base_url(),
            fast.base_url(),
            db.settings(),
            prefix.0
        )
    };
    let a = gateway().config(cfg(&dba)).start();
    let b = gateway().config(cfg(&dbb)).start();
    // Through instance a, send until one request is held by the slow deployment (least-busy then keeps
    // a's other requests on the fast one).
    let mut held = tokio::task::JoinSet::new();
    let url = format!("{}/v1/chat/completions", a.http().base);
    for _ in 0..40 {
        let url = url.clone();
        held.spawn(async move {
            Req::new(Method::POST, url)
                .bearer(KEY)
                .json(&chat_body("g"))
                .send()
                .await
        });
        if eventually(Duration::from_millis(150), || slow.in_flight() >= 1).await {
            break;
        }
    }
    assert_eq!(slow.in_flight(), 1);
    // Instance b learns of them within a few ticks and sends everything to the idle deployment.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..12 {
        let r = chat(&b, KEY, "g").await;
        r.expect_status(200);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-fast"));
    }
    while let Some(r) = held.join_next().await {
        r.unwrap().expect_status(200);
    }
    a.stop().await;
    b.stop().await;
}

/// Redis configured but down: requests go on with this instance's limits, and the outage is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_local_limits() {
    let db = Db::sqlite();
    let mock = mock().await;
    let extra = format!(
        "router_settings:\n  redis_url: redis://127.0.0.1:{}\n",
        free_port()
    );
    let gw = gateway()
        .config(format!("{}{extra}", config(&db, &mock.base_url(), "")))
        .start();
    let (key, _) = generate(&gw, json!({"rpm_limit": 2})).await;
    avoid_minute_edge(5).await;
    let codes = [
        chat(&gw, &key, "priced").await.status.as_u16(),
        chat(&gw, &key, "priced").await.status.as_u16(),
        chat(&gw, &key, "priced").await.status.as_u16(),
    ];
    assert_eq!(codes, [200, 200, 429]);
    assert!(gw.stderr().contains("Redis unreachable"), "{}", gw.stderr());
    // The router's state exchange says so too, once, and routing goes on.
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("are no longer shared"))
        .await,
        "{}",
        gw.stderr()
    );
    assert_eq!(
        gw.stderr().matches("are no longer shared").count(),
        1,
        "{}",
        gw.stderr()
    );
    gw.stop().await;
}
