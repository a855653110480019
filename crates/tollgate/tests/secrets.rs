//! Secrets never leak: with the most verbose logs (text and JSON), no master key, provider key, AWS secret,
//! database or Redis password, virtual key or presented credential appears in the process's output, any
//! response (bodies and headers), the `--validate_config` / `--health` / `--help` output or a start-up error;
//! keys are hashed at rest; upstream errors that echo the provider key are masked; and every failed
//! authentication with an unknown credential gets the same answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tollgate_mock::{MockOptions, MockServer};

const MASTER: &str = "sk-secrets-master-Q7w2e9R4t6Y1u";
/// The key mock A accepts, written literally in the config (also Bedrock's access key id).
const PROVIDER_A: &str = "sk-prov-literal-Zx81Lq0Pw3Nd";
/// The key mock B accepts, given to the gateway as `os.environ/` [`ENV_VAR`].
const PROVIDER_B: &str = "sk-prov-environ-Mn27Vb4Kc9Fe";
/// A configured provider key mock A rejects.
const PROVIDER_BAD: &str = "sk-prov-rejected-Hh55Jj66Kk7";
const AWS_SECRET: &str = "aws-secret-Ui88Op99As00Df11";
const DB_PASSWORD: &str = "DbPw-s3cr3t-8812xq";
const REDIS_PASSWORD: &str = "RedisPw-s3cr3t-4471zz";
const ENV_VAR: &str = "TOLLGATE_IT_SECRETS_PROVIDER_KEY";
/// Credentials a client presents that are not keys (they must not be echoed either).
const NEVER_ISSUED: &str = "sk-never-issued-Rt5Yu6Io7Pa8Sd";
const NOT_A_KEY: &str = "not-a-key-Gh3Jk4Lm5";

// ---------------------------------------------------------------------------------------------------------
// Databases

/// Everything a test gateway's database stores: the bytes of the SQLite files (main file, WAL, shared memory)
/// or a `pg_dump`.
fn db_contents(db: &Db) -> Vec<u8> {
    match db {
        Db::Sqlite(dir) => {
            let mut all = Vec::new();
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let p = e.unwrap().path();
                if p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("tollgate.db"))
                {
                    all.extend(std::fs::read(&p).unwrap());
                }
            }
            all
        }
        Db::Postgres { name, .. } => {
            let out = Command::new("pg_dump")
                .args(["-h", "127.0.0.1", "-U", "postgres", "--data-only", name])
                .output()
                .expect("running pg_dump");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------------------------
// Set-up

async fn mocks() -> (MockServer, MockServer) {
    let a = mock_with(MockOptions {
        api_key: Some(PROVIDER_A.into()),
        aws_secret_access_key: Some(AWS_SECRET.into()),
        record: true,
    })
    .await;
    let b = mock_with(MockOptions {
        api_key: Some(PROVIDER_B.into()),
        aws_secret_access_key: None,
        record: true,
    })
    .await;
    (a, b)
}

fn root(m: &MockServer) -> String {
    format!("http://{}", m.addr())
}

fn secrets_config(a: &MockServer, b: &MockServer, db: &Db, json_logs: bool) -> String {
    let (a_root, b_root) = (root(a), root(b));
    let dep = |name: &str, params: &str| {
        let mut s = format!("  - model_name: {name}\n    litellm_params:\n");
        for l in params.lines() {
            s += &format!("      {l}\n");
        }
        s
    };
    let mut s = String::from("model_list:\n");
    s += &dep(
        "chat",
        &format!("model: openai/chat-up\napi_base: {a_root}/v1\napi_key: {PROVIDER_A}"),
    );
    s += &dep(
        "chat-env",
        &format!("model: openai/chat-env\napi_base: {b_root}/v1\napi_key: os.environ/{ENV_VAR}"),
    );
    s += &dep(
        "claude",
        &format!(
            "model: anthropic/claude-3-5-sonnet-20241022\napi_base: {b_root}\napi_key: os.environ/{ENV_VAR}"
        ),
    );
    s += &dep(
        "embed",
        &format!("model: openai/embed-up\napi_base: {a_root}/v1\napi_key: {PROVIDER_A}"),
    );
    s += &dep(
        "bedrock",
        &format!(
            "model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0\napi_base: {a_root}\naws_access_key_id: {PROVIDER_A}\naws_secret_access_key: {AWS_SECRET}\naws_region_name: us-east-1"
        ),
    );
    s += &dep(
        "rejected",
        &format!("model: openai/rej\napi_base: {a_root}/v1\napi_key: {PROVIDER_BAD}"),
    );
    s += &dep(
        "failing",
        &format!("model: \"openai/f@status=500\"\napi_base: {a_root}/v1\napi_key: {PROVIDER_A}"),
    );
    s += &dep(
        "echo-json",
        &format!("model: \"openai/e@echo_key\"\napi_base: {a_root}/v1\napi_key: {PROVIDER_A}"),
    );
    s += &dep(
        "echo-text",
        &format!(
            "model: \"openai/e@echo_key=text,status=500\"\napi_base: {a_root}/v1\napi_key: {PROVIDER_A}"
        ),
    );
    s += &format!(
        "general_settings:\n  master_key: {MASTER}\n  proxy_batch_write_at: 0.2\n{}",
        db.settings()
    );
    // A Redis password the local Redis does not take: the gateway goes on without shared limits and logs
    // why, which must not show the password.
    s += &format!(
        "router_settings:\n  num_retries: 0\n  redis_host: 127.0.0.1\n  redis_port: 6379\n  redis_password: {REDIS_PASSWORD}\n"
    );
    if json_logs {
        s += "litellm_settings:\n  json_logs: true\n";
    }
    s
}

/// Every response seen (status, headers, body), to be scanned for secrets.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: &str, r: &Resp) -> Resp {
        self.add_headers(what, r);
        self.0.push((format!("{what} body"), r.text()));
        r.clone()
    }

    /// Only the head (the `/key/generate` body is the one place a new key is shown).
    fn add_headers(&mut self, what: &str, r: &Resp) {
        let mut head = format!("{}\n", r.status);
        for (k, v) in &r.headers {
            head += &format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes()));
        }
        self.0.push((format!("{what} head"), head));
    }

    fn text(&mut self, what: &str, text: String) {
        self.0.push((what.to_string(), text));
    }

    #[track_caller]
    fn assert_clean(&self, secrets: &[&str]) {
        for (what, text) in &self.0 {
            for s in secrets {
                if let Some(line) = text.lines().find(|l| l.contains(s)) {
                    panic!("secret {s:?} in {what}: {line}");
                }
            }
        }
    }
}

async fn generate(gw: &Gateway, seen: &mut Seen) -> String {
    let r = gw
        .post("/key/generate", &json!({"models": []}))
        .bearer(MASTER)
        .send()
        .await;
    r.expect_status(200);
    seen.add_headers("/key/generate", &r);
    let key = r.json()["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk-"), "{key}");
    key
}

/// SIGTERM, wait for the exit, return stdout + stderr.
async fn stop_all(mut gw: Gateway) -> String {
    gw.sigterm();
    let st = gw.wait_exit_async(Duration::from_secs(20)).await;
    assert!(
        st.is_some_and(|s| s.success()),
        "gateway did not exit cleanly: {st:?}\n{}",
        gw.stderr()
    );
    format!("{}\n{}", gw.stdout(), gw.stderr())
}

// ---------------------------------------------------------------------------------------------------------
// 1. Nothing secret in any output

async fn no_secret_anywhere(db: Db, json_logs: bool) {
    let (a, b) = mocks().await;
    let config = secrets_config(&a, &b, &db, json_logs);
    let gw = gateway()
        .config(config.clone())
        .env(ENV_VAR, PROVIDER_B)
        .arg("--detailed_debug")
        .start();
    let mut seen = Seen::default();

    // Good requests with the master key, presented in each header a client may use.
    for (header, model) in [
        ("authorization", "chat"),
        ("x-api-key", "chat-env"),
        ("api-key", "claude"),
        ("x-litellm-api-key", "bedrock"),
    ] {
        let value = if header == "authorization" {
            format!("Bearer {MASTER}")
        } else {
            MASTER.to_string()
        };
        let r = gw
            .post("/v1/chat/completions", &chat(model))
            .no_auth()
            .header(header, &value)
            .send()
            .await;
        seen.add(&format!("chat {model} ({header})"), &r)
            .expect_status(200);
    }
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("chat", true))
        .bearer(MASTER)
        .open()
        .await;
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    seen.text("stream body", sse.raw());
    let r = gw
        .post("/v1/embeddings", &json!({"model": "embed", "input": "abc"}))
        .bearer(MASTER)
        .send()
        .await;
    seen.add("embeddings", &r).expect_status(200);

    // A virtual key, used the same ways.
    let vk = generate(&gw, &mut seen).await;
    let r = gw
        .post("/v1/chat/completions", &chat("chat-env"))
        .bearer(&vk)
        .send()
        .await;
    seen.add("chat with virtual key", &r).expect_status(200);
    let resp = gw
        .post("/v1/chat/completions", &chat_stream("chat", false))
        .no_auth()
        .header("x-api-key", &vk)
        .open()
        .await;
    let sse = read_sse(resp.into_body()).await;
    assert!(sse.ends_with_done(), "{}", sse.raw());
    seen.text("stream body (virtual key)", sse.raw());
    let r = gw
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["x", "y"]}),
        )
        .no_auth()
        .header("api-key", &vk)
        .send()
        .await;
    seen.add("embeddings with virtual key", &r)
        .expect_status(200);

    // Bad credentials in each header.
    let wrong_master = format!("{}X", &MASTER[..MASTER.len() - 1]);
    for (i, key) in [NEVER_ISSUED, NOT_A_KEY, wrong_master.as_str()]
        .iter()
        .enumerate()
    {
        for header in ["authorization", "x-api-key", "api-key"] {
            let value = if header == "authorization" {
                format!("Bearer {key}")
            } else {
                key.to_string()
            };
            let r = gw
                .post("/v1/chat/completions", &chat("chat"))
                .no_auth()
                .header(header, &value)
                .send()
                .await;
            seen.add(&format!("bad key {i} in {header}"), &r)
                .expect_error(401);
        }
    }

    // Upstreams that fail: a rejected key, a 500, and errors that echo the key presented upstream.
    let r = gw
        .post("/v1/chat/completions", &chat("rejected"))
        .bearer(MASTER)
        .send()
        .await;
    seen.add("rejected upstream", &r).expect_error(401);
    let r = gw
        .post("/v1/chat/completions", &chat("failing"))
        .bearer(MASTER)
        .send()
        .await;
    seen.add("failing upstream", &r).expect_error(502);
    let masked_a = format!(
        "Incorrect API key provided: {}...{}",
        &PROVIDER_A[..3],
        &PROVIDER_A[PROVIDER_A.len() - 4..]
    );
    let r = gw
        .post("/v1/chat/completions", &chat("echo-json"))
        .bearer(&vk)
        .send()
        .await;
    let e = seen.add("echo-json upstream", &r).expect_error(401);
    assert!(
        e["message"].as_str().unwrap().contains(&masked_a),
        "the upstream's message is relayed with the key masked: {e}"
    );
    let r = gw
        .post("/v1/chat/completions", &chat("echo-text"))
        .bearer(MASTER)
        .send()
        .await;
    let e = seen.add("echo-text upstream", &r).expect_error(502);
    assert!(
        e["message"].as_str().unwrap().contains(&masked_a),
        "the upstream's text is relayed with the key masked: {e}"
    );

    // Read-only routes that describe deployments, health and keys.
    for path in [
        "/health",
        "/health/readiness",
        "/health/liveliness",
        "/model/info",
        "/v1/model/info",
        "/model_group/info",
        "/v1/models",
        "/key/list",
        "/key/list?return_full_object=true",
    ] {
        let r = gw.get(path).bearer(MASTER).send().await;
        seen.add(path, &r).expect_status(200);
    }
    let r = gw.get("/key/info").bearer(&vk).send().await;
    seen.add("/key/info (own key)", &r).expect_status(200);
    let r = gw
        .get(&format!("/key/info?key={vk}"))
        .bearer(MASTER)
        .send()
        .await;
    seen.add("/key/info?key=", &r).expect_status(200);
    // `/model/info` describes every deployment, without the secrets.
    let info = gw.get("/model/info").bearer(MASTER).send().await.json();
    let data = info["data"].as_array().unwrap();
    assert_eq!(data.len(), 9, "{info}");
    let bedrock = data.iter().find(|d| d["model_name"] == "bedrock").unwrap();
    assert_eq!(
        bedrock["litellm_params"]["aws_region_name"], "us-east-1",
        "{bedrock}"
    );
    // `/health` reached the upstreams (and relayed their errors, masked).
    let health = gw.get("/health").bearer(MASTER).send().await;
    let health_text = health.text();
    assert!(
        health.json()["healthy_count"].as_u64().unwrap() >= 4,
        "{health_text}"
    );
    assert!(health_text.contains(&masked_a), "{health_text}");

    // `--health` of the client prints `/health`.
    let out = gateway()
        .config(config.clone())
        .env(ENV_VAR, PROVIDER_B)
        .no_default_port()
        .args([
            "--health",
            "--host",
            "127.0.0.1",
            "--port",
            &gw.addr.port().to_string(),
        ])
        .run_async()
        .await;
    assert!(out.stdout.contains("healthy_endpoints"), "{out:?}");
    seen.text("--health", format!("{}\n{}", out.stdout, out.stderr));
    // `--validate_config` prints a summary of the config.
    let out = gateway()
        .config(config.clone())
        .env(ENV_VAR, PROVIDER_B)
        .arg("--validate_config")
        .run();
    assert_eq!(out.code(), Some(0), "{out:?}");
    seen.text(
        "--validate_config",
        format!("{}\n{}", out.stdout, out.stderr),
    );

    // Hot reload: of the same config, then of one with a mistake next to secrets.
    let r = gw
        .post("/config/reload", &json!({}))
        .bearer(MASTER)
        .send()
        .await;
    seen.add("/config/reload", &r).expect_status(200);
    let broken = config.replace(
        "  proxy_batch_write_at: 0.2\n",
        &format!("  proxy_batch_write_at: 0.2\n  mastr_key: {MASTER}-typo\n"),
    );
    std::fs::write(gw.dir().join("config.yaml"), broken).unwrap();
    let r = gw
        .post("/config/reload", &json!({}))
        .bearer(MASTER)
        .send()
        .await;
    let e = seen.add("/config/reload (broken)", &r).expect_error(400);
    assert!(e["message"].as_str().unwrap().contains("mastr_key"), "{e}");

    // A deleted key is refused like any unknown key, and leaks nowhere either.
    let deleted = generate(&gw, &mut seen).await;
    let r = gw
        .post("/key/delete", &json!({"keys": [deleted]}))
        .bearer(MASTER)
        .send()
        .await;
    seen.add("/key/delete", &r).expect_status(200);
    let r = gw
        .post("/v1/chat/completions", &chat("chat"))
        .bearer(&deleted)
        .send()
        .await;
    seen.add("deleted key", &r).expect_error(401);

    // The upstreams saw the provider secrets, so their absence elsewhere means something.
    let rec_a = a.recorded();
    let rec_b = b.recorded();
    assert!(
        rec_a
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {PROVIDER_A}"))),
        "mock A never saw its key"
    );
    assert!(
        rec_a
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {PROVIDER_BAD}"))),
        "mock A never saw the rejected key"
    );
    assert!(
        rec_a.iter().any(|r| r.path.starts_with("/model/")
            && r.header("authorization")
                .is_some_and(|h| h.starts_with("AWS4-HMAC-SHA256") && h.contains(PROVIDER_A))),
        "no SigV4-signed Bedrock request (signed with the AWS secret) reached mock A"
    );
    assert!(
        rec_b
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {PROVIDER_B}"))),
        "mock B never saw the key from the environment as a Bearer token"
    );
    assert!(
        rec_b
            .iter()
            .any(|r| r.header("x-api-key") == Some(PROVIDER_B)),
        "mock B never saw the key from the environment as x-api-key (Anthropic)"
    );

    // Let the spend rows and the last log lines be written, then stop and collect the output.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let output = stop_all(gw).await;

    // The scan sees the most verbose logs: debug lines, including the failed attempts with the upstream's
    // (masked) message, and the Redis failure.
    let debug_line = |l: &&&str| {
        if json_logs {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["level"] == "DEBUG")
        } else {
            l.contains("DEBUG")
        }
    };
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines.iter().filter(debug_line).count() > 20,
        "debug logs expected:\n{output}"
    );
    assert!(
        lines
            .iter()
            .filter(debug_line)
            .any(|l| l.contains("attempt failed") && l.contains(&masked_a)),
        "no debug line of the failed attempt with the masked upstream message:\n{output}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Redis")),
        "the Redis failure is logged:\n{output}"
    );
    if json_logs {
        for l in lines.iter().filter(|l| l.starts_with('{')) {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        }
    }
    seen.text("process output", output);

    let mut secrets = vec![
        MASTER,
        PROVIDER_A,
        PROVIDER_B,
        PROVIDER_BAD,
        AWS_SECRET,
        DB_PASSWORD,
        REDIS_PASSWORD,
        NEVER_ISSUED,
        NOT_A_KEY,
        wrong_master.as_str(),
        vk.as_str(),
        deleted.as_str(),
    ];
    seen.assert_clean(&secrets);

    // Keys are hashed at rest: the rows hold the hash, never the key.
    let stored = db_contents(&db);
    for k in [&vk, &deleted] {
        let hash = tollgate_accounts::secret::hash_secret(k);
        assert!(contains(&stored, &hash), "the key's row is not stored");
        assert!(!contains(&stored, k), "a raw virtual key is stored");
    }
    secrets.retain(|s| *s != DB_PASSWORD);
    for s in secrets {
        assert!(
            !contains(&stored, s),
            "secret {s:?} is stored in the database"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_anywhere_postgres_text_logs() {
    let Some(db) = Db::postgres_as(&format!("postgres:{DB_PASSWORD}")) else {
        return;
    };
    no_secret_anywhere(db, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_anywhere_sqlite_json_logs() {
    no_secret_anywhere(Db::sqlite(), true).await;
}

// ---------------------------------------------------------------------------------------------------------
// Start-up errors and the commands that print without serving

/// What goes wrong, the config, extra environment, the expected exit code.
type StartupCase = (&'static str, String, Vec<(&'static str, String)>, i32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_and_help_show_no_secret() {
    let base = |extra_general: &str| {
        format!(
            "model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/x\n      api_base: http://127.0.0.1:9/v1\n      api_key: {PROVIDER_A}\ngeneral_settings:\n  master_key: {MASTER}\n{extra_general}"
        )
    };
    let cases: Vec<StartupCase> = vec![
        (
            "a typo next to the master key",
            base(&format!("  mastr_key: {MASTER}\n")),
            vec![],
            64,
        ),
        (
            "a provider key that is not a header value",
            base("").replace(
                &format!("api_key: {PROVIDER_A}"),
                &format!("api_key: \"{PROVIDER_A}\\u0001\""),
            ),
            vec![],
            64,
        ),
        (
            "a key from the environment that is not a header value",
            base("").replace(
                &format!("api_key: {PROVIDER_A}"),
                &format!("api_key: os.environ/{ENV_VAR}"),
            ),
            vec![(ENV_VAR, format!("{PROVIDER_B}\u{1}"))],
            64,
        ),
        (
            "a wrong-typed field next to the key",
            base("").replace("model: openai/x", "model: [openai/x]"),
            vec![],
            64,
        ),
        (
            "an unsupported database scheme",
            base(&format!(
                "  database_url: mysql://root:{DB_PASSWORD}@127.0.0.1:1/x\n"
            )),
            vec![],
            64,
        ),
        (
            "a database URL that does not parse",
            base(&format!(
                "  database_url: \"postgresql://u:{DB_PASSWORD}@127.0.0.1:port/x\"\n"
            )),
            vec![],
            64,
        ),
        (
            "an unreachable database",
            base(&format!(
                "  database_url: postgresql://u:{DB_PASSWORD}@127.0.0.1:1/x\n  database_connection_timeout: 1\n"
            )),
            vec![],
            69,
        ),
        (
            "a Redis URL that does not parse",
            format!(
                "{}router_settings:\n  redis_url: \"redis://:{REDIS_PASSWORD}@127.0.0.1:port\"\n",
                base("")
            ),
            vec![],
            64,
        ),
    ];
    for (what, yaml, env, code) in cases {
        let mut b = gateway().config(yaml);
        for (k, v) in env {
            b = b.env(k, v);
        }
        let out = b.run_async().await;
        assert_eq!(out.code(), Some(code), "{what}: {out:?}");
        assert!(
            out.stderr.contains("tollgate:"),
            "{what}: no error report: {out:?}"
        );
        let all = format!("{}\n{}", out.stdout, out.stderr);
        for s in [MASTER, PROVIDER_A, PROVIDER_B, DB_PASSWORD, REDIS_PASSWORD] {
            assert!(!all.contains(s), "{what}: secret {s:?} printed:\n{all}");
        }
    }

    // `--help` and `--version` with secrets in the environment the CLI reads.
    for arg in ["--help", "--version"] {
        let out = gateway()
            .no_default_port()
            .arg(arg)
            .env("LITELLM_MASTER_KEY", MASTER)
            .env(
                "DATABASE_URL",
                format!("postgresql://u:{DB_PASSWORD}@127.0.0.1/x"),
            )
            .env("OPENAI_API_KEY", PROVIDER_A)
            .run_async()
            .await;
        assert_eq!(out.code(), Some(0), "{arg}: {out:?}");
        assert!(!out.stdout.is_empty(), "{arg}: {out:?}");
        let all = format!("{}\n{}", out.stdout, out.stderr);
        for s in [MASTER, PROVIDER_A, DB_PASSWORD] {
            assert!(!all.contains(s), "{arg}: secret {s:?} printed:\n{all}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 3. Failed authentication is uniform

/// What a refusal looks like to the client: status, headers (but the per-request ones) and body bytes.
fn refusal(r: &Resp) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "x-litellm-call-id" | "date"))
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    (r.status.as_u16(), headers, r.body.to_vec())
}

async fn uniform_refusals(db: Db) {
    let (a, b) = mocks().await;
    let gw = gateway()
        .config(secrets_config(&a, &b, &db, false))
        .env(ENV_VAR, PROVIDER_B)
        .start();
    let mut seen = Seen::default();
    let real = generate(&gw, &mut seen).await;
    let deleted = generate(&gw, &mut seen).await;
    // Both keys work first (so the deleted one was in memory and in the database).
    for k in [&real, &deleted] {
        gw.post("/v1/chat/completions", &chat("chat"))
            .bearer(k)
            .send()
            .await
            .expect_status(200);
    }
    gw.post("/key/delete", &json!({"keys": [deleted]}))
        .bearer(MASTER)
        .send()
        .await
        .expect_status(200);
    let mut last_changed = real.clone();
    let last = last_changed.pop().unwrap();
    last_changed.push(if last == 'a' { 'b' } else { 'a' });
    let mut master_changed = MASTER.to_string();
    master_changed.replace_range(5..6, "X");
    let candidates = [
        (
            "never issued",
            "sk-AbCdEfGhIjKlMnOpQrStUvWxYz012345".to_string(),
        ),
        ("deleted", deleted.clone()),
        ("real key, last character changed", last_changed),
        ("different length", format!("{real}0")),
        ("short", "sk-1".to_string()),
        ("master key, one character changed", master_changed),
    ];
    let mut answers = Vec::new();
    // Twice: the first lookup goes to the database, the second meets the negative cache.
    for round in 0..2 {
        for (what, key) in &candidates {
            for header in ["authorization", "x-api-key"] {
                let value = if header == "authorization" {
                    format!("Bearer {key}")
                } else {
                    key.clone()
                };
                let r = gw
                    .post("/v1/chat/completions", &chat("chat"))
                    .no_auth()
                    .header(header, &value)
                    .send()
                    .await;
                r.expect_error(401);
                answers.push((format!("{what} via {header}, round {round}"), refusal(&r)));
            }
            // The management routes refuse the same way.
            let r = gw.get("/key/list").bearer(key).send().await;
            answers.push((format!("{what} on /key/list, round {round}"), refusal(&r)));
        }
    }
    let chat_answers: Vec<_> = answers
        .iter()
        .filter(|(w, _)| !w.contains("/key/list"))
        .collect();
    let (first_what, first) = chat_answers[0];
    for (what, ans) in &chat_answers {
        assert_eq!(
            ans,
            first,
            "`{what}` is refused differently from `{first_what}`:\n{}\nvs\n{}",
            String::from_utf8_lossy(&ans.2),
            String::from_utf8_lossy(&first.2)
        );
    }
    let list_answers: Vec<_> = answers
        .iter()
        .filter(|(w, _)| w.contains("/key/list"))
        .collect();
    for (what, ans) in &list_answers {
        assert_eq!(ans, &list_answers[0].1, "`{what}`");
        assert_eq!(ans.0, 401, "`{what}`");
    }
    // The real key still works (nothing above blocked or cached it).
    gw.post("/v1/chat/completions", &chat("chat"))
        .bearer(&real)
        .send()
        .await
        .expect_status(200);
    // A blocked key may say so: only its holder can see that.
    gw.post("/key/block", &json!({"key": real}))
        .bearer(MASTER)
        .send()
        .await
        .expect_status(200);
    let r = gw
        .post("/v1/chat/completions", &chat("chat"))
        .bearer(&real)
        .send()
        .await;
    let e = r.expect_error(401);
    assert!(e["message"].as_str().unwrap().contains("blocked"), "{e}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_auth_is_uniform_sqlite() {
    uniform_refusals(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_auth_is_uniform_postgres() {
    let Some(db) = Db::postgres_as(&format!("postgres:{DB_PASSWORD}")) else {
        return;
    };
    uniform_refusals(db).await;
}
