//! JWT authentication end to end: the real binary, a local JWKS server the test controls (key rotation
//! included), the mock upstream and SQLite. Tokens are signed with the test keys of `tollgate_auth::testing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};
use tollgate_auth::Alg;
use tollgate_auth::testing::{TestKey, hs256, jwks, unsigned};

const AUDIENCE: &str = "tollgate-it";
const ISSUER: &str = "https://idp.test";

/// A JWKS endpoint whose document the test swaps, counting fetches.
struct Jwks {
    url: String,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    _tasks: tokio::task::JoinSet<()>,
}

impl Jwks {
    async fn start(doc: Value) -> Jwks {
        let doc = Arc::new(Mutex::new(doc));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let (base, tasks) = test_server(move |_req| {
            f.fetch_add(1, Ordering::SeqCst);
            let body = d.lock().unwrap().to_string();
            http::Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        })
        .await;
        let url = format!("{base}/jwks");
        Jwks {
            url,
            doc,
            fetches,
            _tasks: tasks,
        }
    }

    fn set(&self, doc: Value) {
        *self.doc.lock().unwrap() = doc;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims valid for the gateway's audience and issuer, plus `extra`.
fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn config(base: &str, jwtauth: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}
      api_key: {UPSTREAM_KEY}
    model_info:
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: {UPSTREAM_KEY}
general_settings:
  master_key: {KEY}
  proxy_batch_write_at: 0.2
  enable_jwt_auth: true
  litellm_jwtauth:
{jwtauth}"
    )
}

const JWTAUTH: &str = "    user_id_jwt_field: sub
    team_ids_jwt_field: groups
    end_user_id_jwt_field: customer
    org_id_jwt_field: org
    user_id_upsert: true
    user_roles_jwt_field: resource_access.tollgate.roles
    user_allowed_roles: [basic_user, admin_user]
    tollgate_jwks_refresh_interval: 0.3
";

fn start_gateway(mock: &tollgate_mock::MockServer, jwks: &Jwks, jwtauth: &str) -> Gateway {
    gateway()
        .config(config(&mock.base_url(), jwtauth))
        .env("JWT_PUBLIC_KEY_URL", &jwks.url)
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("JWT_ISSUER", ISSUER)
        .start()
}

async fn chat_with(gw: &Gateway, token: &str, model: &str) -> Resp {
    gw.post(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .bearer(token)
    .send()
    .await
}

async fn new_team(gw: &Gateway, body: Value) {
    gw.post("/team/new", &body).send().await.expect_status(200);
}

fn member(groups: &[&str]) -> Value {
    json!({"sub": "alice", "groups": groups, "resource_access": {"tollgate": {"roles": ["basic_user"]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_and_maps_onto_teams_users_and_limits() {
    let rsa = TestKey::rsa(Alg::RS256, 0);
    let keys: Vec<(&str, TestKey)> = vec![
        ("rs256", rsa),
        ("rs384", TestKey::rsa(Alg::RS384, 0)),
        ("rs512", TestKey::rsa(Alg::RS512, 0)),
        ("ps256", TestKey::rsa(Alg::PS256, 1)),
        ("es256", TestKey::ec256()),
        ("es384", TestKey::ec384()),
        ("eddsa", TestKey::ed25519()),
    ];
    let set = jwks(&keys.iter().map(|(k, t)| t.jwk(k)).collect::<Vec<_>>());
    let jwks = Jwks::start(set).await;
    let mock = mock().await;
    let gw = start_gateway(&mock, &jwks, JWTAUTH);
    new_team(&gw, json!({"team_id": "eng", "models": ["gpt-4o"]})).await;
    new_team(&gw, json!({"team_id": "ml", "models": ["gpt-4o-mini"]})).await;
    new_team(&gw, json!({"team_id": "limited", "rpm_limit": 1})).await;
    new_team(&gw, json!({"team_id": "frozen", "blocked": true})).await;

    // Every algorithm, each key found by its kid.
    for (kid, key) in &keys {
        let t = key.sign(Some(kid), &claims(member(&["eng"])));
        let r = chat_with(&gw, &t, "gpt-4o").await;
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
    }
    let (kid, key) = &keys[0];
    let sign = |extra: Value| key.sign(Some(kid), &claims(extra));

    // The team's model list applies; with several teams the first that may use the model is booked.
    let eng = sign(member(&["eng"]));
    chat_with(&gw, &eng, "gpt-4o-mini").await.expect_error(401);
    let both = sign(
        json!({"sub": "alice", "groups": ["eng", "ml"], "customer": "cust-1",
        "resource_access": {"tollgate": {"roles": ["basic_user"]}}}),
    );
    chat_with(&gw, &both, "gpt-4o-mini")
        .await
        .expect_status(200);
    chat_with(&gw, &both, "gpt-4o").await.expect_status(200);
    // /v1/models lists what the token's teams may use.
    let models = gw.get("/v1/models").bearer(&eng).send().await;
    models.expect_status(200);
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["gpt-4o"]);

    // The spend rows name the team that answered, the user and the end user from the claims.
    let logs = gw.get("/spend/logs").send().await;
    logs.expect_status(200);
    let rows = logs.json();
    let rows = rows.as_array().unwrap();
    let mini: Vec<&Value> = rows
        .iter()
        .filter(|r| r["model_group"] == "gpt-4o-mini")
        .collect();
    assert_eq!(mini.len(), 1, "{rows:?}");
    assert_eq!(mini[0]["team_id"], "ml");
    assert_eq!(mini[0]["user"], "alice");
    assert_eq!(mini[0]["end_user"], "cust-1");
    assert!(
        rows.iter()
            .filter(|r| r["model_group"] == "gpt-4o")
            .all(|r| r["team_id"] == "eng"),
        "{rows:?}"
    );

    // user_id_upsert created the user.
    let u = gw.get("/user/info?user_id=alice").send().await;
    u.expect_status(200);

    // The team's limits apply to JWT callers as to its keys.
    let lim = sign(member(&["limited"]));
    chat_with(&gw, &lim, "gpt-4o").await.expect_status(200);
    let e = chat_with(&gw, &lim, "gpt-4o").await.expect_error(429);
    assert!(
        e["message"].as_str().unwrap().contains("team=limited"),
        "{e}"
    );

    // The organization claim names an organization that must exist; its limits and the spend row follow.
    gw.post(
        "/organization/new",
        &json!({"organization_id": "acme", "organization_alias": "Acme", "rpm_limit": 1}),
    )
    .send()
    .await
    .expect_status(200);
    let org = sign(json!({"sub": "erin", "groups": ["eng"], "org": "acme",
        "resource_access": {"tollgate": {"roles": ["basic_user"]}}}));
    chat_with(&gw, &org, "gpt-4o").await.expect_status(200);
    let e = chat_with(&gw, &org, "gpt-4o").await.expect_error(429);
    assert!(
        e["message"].as_str().unwrap().contains("organization=acme"),
        "{e}"
    );
    let rows = gw.get("/spend/logs?user_id=erin").send().await.json();
    assert_eq!(rows[0]["organization_id"], "acme", "{rows}");
    let e = chat_with(
        &gw,
        &sign(json!({"sub": "erin", "groups": ["eng"], "org": "nope",
            "resource_access": {"tollgate": {"roles": ["basic_user"]}}})),
        "gpt-4o",
    )
    .await
    .expect_error(403);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Organization doesn't exist"),
        "{e}"
    );

    // Teams: unknown, blocked, and routes outside team_allowed_routes.
    let e = chat_with(&gw, &sign(member(&["nope"])), "gpt-4o")
        .await
        .expect_error(403);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Team doesn't exist")
    );
    chat_with(&gw, &sign(member(&["frozen"])), "gpt-4o")
        .await
        .expect_error(401);
    let r = gw
        .post("/key/generate", &json!({}))
        .bearer(&eng)
        .send()
        .await;
    let e = r.expect_error(403);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Team not allowed to access this route")
    );

    // Roles.
    let guest = sign(json!({"sub": "bob", "groups": ["eng"],
        "resource_access": {"tollgate": {"roles": ["guest"]}}}));
    chat_with(&gw, &guest, "gpt-4o").await.expect_error(403);

    // The admin scope: management routes yes, inference routes not by default (LiteLLM's admin_allowed_routes).
    let admin = sign(json!({"sub": "root", "scope": "openid litellm_proxy_admin"}));
    let r = gw
        .post("/key/generate", &json!({"models": ["gpt-4o"]}))
        .bearer(&admin)
        .send()
        .await;
    r.expect_status(200);
    let vkey = r.json()["key"].as_str().unwrap().to_owned();
    chat_with(&gw, &admin, "gpt-4o").await.expect_error(403);

    // Virtual keys and the master key keep working beside JWTs.
    chat_with(&gw, &vkey, "gpt-4o").await.expect_status(200);
    chat_with(&gw, KEY, "gpt-4o-mini").await.expect_status(200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let key = TestKey::rsa(Alg::RS256, 0);
    let ec = TestKey::ec256();
    let jwk = key.jwk("k1");
    let jwks = Jwks::start(jwks(&[jwk.clone(), ec.jwk("e1")])).await;
    let mock = mock().await;
    let gw = start_gateway(
        &mock,
        &jwks,
        "    user_id_jwt_field: sub\n    user_id_upsert: true\n",
    );
    let good = |c: Value| key.sign(Some("k1"), &c);
    let ok = claims(json!({"sub": "carol"}));
    chat_with(&gw, &good(ok.clone()), "gpt-4o")
        .await
        .expect_status(200);
    let before = mock.requests();

    let mut refused = vec![
        (
            "alg none",
            unsigned(&json!({"alg": "none", "kid": "k1"}), &ok),
        ),
        (
            "alg NONE",
            unsigned(&json!({"alg": "NONE", "kid": "k1"}), &ok),
        ),
        (
            // Algorithm confusion: HMAC "signed" with the public key as the secret.
            "hs256 with the public key",
            hs256(
                jwk.to_string().as_bytes(),
                &json!({"alg": "HS256", "kid": "k1"}),
                &ok,
            ),
        ),
        ("unknown kid", key.sign(Some("k9"), &ok)),
        ("rsa token naming an ec key", key.sign(Some("e1"), &ok)),
        (
            "expired",
            good(claims(json!({"sub": "carol", "exp": now() - 120}))),
        ),
        (
            "not yet valid",
            good(claims(json!({"sub": "carol", "nbf": now() + 120}))),
        ),
        (
            "wrong audience",
            good(claims(json!({"sub": "carol", "aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            good(claims(json!({"sub": "carol", "iss": "https://evil.test"}))),
        ),
        ("no exp", {
            let mut c = ok.clone();
            c.as_object_mut().unwrap().remove("exp");
            good(c)
        }),
    ];
    // A valid signature with a flipped payload byte.
    let t = good(ok.clone());
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let forged = claims(json!({"sub": "mallory"}));
    parts[1] = base64url(forged.to_string().as_bytes());
    refused.push(("tampered payload", parts.join(".")));
    for (what, token) in &refused {
        let r = chat_with(&gw, token, "gpt-4o").await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let e = r.json()["error"].clone();
        assert_eq!(e["type"], "authentication_error", "{what}: {e}");
    }
    assert_eq!(
        mock.requests(),
        before,
        "a refused token reached the upstream"
    );

    // Within the leeway (30 s by default) an expired token still passes; a just-issued one with nbf a few
    // seconds ahead too.
    chat_with(
        &gw,
        &good(claims(json!({"sub": "carol", "exp": now() - 5}))),
        "gpt-4o",
    )
    .await
    .expect_status(200);
    chat_with(
        &gw,
        &good(claims(json!({"sub": "carol", "nbf": now() + 5}))),
        "gpt-4o",
    )
    .await
    .expect_status(200);
    // A token naming no one the config maps.
    let e = chat_with(&gw, &good(claims(json!({"email": "x@y"}))), "gpt-4o")
        .await
        .expect_error(401);
    assert!(
        e["message"].as_str().unwrap().contains("names no user"),
        "{e}"
    );
    let log = gw.stop().await;
    assert!(!log.contains(&t), "a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_picked_up_on_an_unknown_kid_with_one_fetch() {
    let old = TestKey::rsa(Alg::RS256, 0);
    let new = TestKey::rsa(Alg::RS256, 1);
    let jwks = Jwks::start(jwks(&[old.jwk("old")])).await;
    let mock = mock().await;
    let gw = start_gateway(
        &mock,
        &jwks,
        "    user_id_jwt_field: sub\n    user_id_upsert: true\n    tollgate_jwks_refresh_interval: 0.5\n",
    );
    let c = claims(json!({"sub": "dave"}));
    let old_token = old.sign(Some("old"), &c);
    let new_token = new.sign(Some("new"), &c);
    chat_with(&gw, &old_token, "gpt-4o")
        .await
        .expect_status(200);
    assert_eq!(jwks.fetches(), 1);
    // The new key is not published yet: refused, after (at most) one refresh.
    chat_with(&gw, &new_token, "gpt-4o").await.expect_error(401);
    let after_first = jwks.fetches();
    assert!(after_first <= 2, "{after_first} fetches");

    // The identity provider rotates: new key in, old key out.
    jwks.set(jwks_doc(&[new.jwk("new")]));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Many requests with the unknown kid at once cause one fetch.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = gw.url.clone();
        let token = new_token.clone();
        tasks.spawn(async move {
            Req::new(Method::POST, format!("{url}/v1/chat/completions"))
                .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
                .bearer(&token)
                .send()
                .await
                .status
        });
    }
    while let Some(s) = tasks.join_next().await {
        assert_eq!(s.unwrap(), 200);
    }
    assert_eq!(
        jwks.fetches(),
        after_first + 1,
        "one refresh for 20 requests"
    );
    // The old key is gone from the refreshed set.
    chat_with(&gw, &old_token, "gpt-4o").await.expect_error(401);
    gw.stop().await;
}

fn jwks_doc(keys: &[Value]) -> Value {
    jwks(keys)
}

fn base64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &x| (acc << 8) | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
