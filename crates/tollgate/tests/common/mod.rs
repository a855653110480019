//! Shared harness for the integration tests: start the real `tollgate` binary (config in a temp dir, extra
//! args and env vars), read its bound URL from stdout, capture stderr (printed when a test fails), stop it
//! with SIGTERM; the in-process mock upstream; an HTTP helper; an SSE reader that timestamps every chunk.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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

/// The master key most tests use.
pub const KEY: &str = "sk-it-master-4d1c";
/// The upstream key the mock expects.
pub const UPSTREAM_KEY: &str = "sk-it-upstream-9b7e";
/// The AWS secret access key [`mock`] verifies Bedrock SigV4 signatures with (`UPSTREAM_KEY` is the
/// access key id).
pub const UPSTREAM_AWS_SECRET: &str = "it-aws-secret-5f3a";

/// How long a gateway may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for any single HTTP exchange in a test (a hang fails the test instead of the suite).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings read from the environment that must not leak from the developer's shell into a test gateway.
const SCRUBBED_ENV: &[&str] = &[
    "HOST",
    "PORT",
    "NUM_WORKERS",
    "LITELLM_MASTER_KEY",
    "DATABASE_URL",
    "CONFIG_FILE_PATH",
    "KEEPALIVE_TIMEOUT",
    "SSL_KEYFILE_PATH",
    "SSL_CERTFILE_PATH",
    "MAX_REQUESTS_BEFORE_RESTART",
    "LIMIT_CONCURRENCY",
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "OPENAI_BASE_URL",
    "HOSTED_VLLM_API_BASE",
    "HOSTED_VLLM_API_KEY",
    "RUST_LOG",
    "LITELLM_LOG",
    "JWT_PUBLIC_KEY_URL",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JSON_LOGS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

// ---------------------------------------------------------------------------------------------------------
// Databases

/// Run one SQL statement with `psql` on the local PostgreSQL (as `postgres`, database `postgres`).
pub fn psql(sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("running psql")
}

/// The database a test gateway uses: an SQLite file in a temp dir, or a fresh PostgreSQL database (dropped
/// on drop).
pub enum Db {
    Sqlite(TempDir),
    Postgres { name: String, url: String },
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(TempDir::new())
    }

    /// A new PostgreSQL database, or `None` (skipped with a message) when PostgreSQL is not there.
    pub fn postgres() -> Option<Db> {
        Db::postgres_as("postgres")
    }

    /// As [`Db::postgres`], with `userinfo` (e.g. `postgres:<password>`, which trust auth ignores) in the URL.
    pub fn postgres_as(userinfo: &str) -> Option<Db> {
        if !postgres_available() {
            return None;
        }
        let name = format!("tg_it_{}", uuid::Uuid::now_v7().simple());
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Db::Postgres {
            url: format!("postgres://{userinfo}@127.0.0.1:5432/{name}"),
            name,
        })
    }

    /// `general_settings` lines selecting this database (and where the journal goes).
    pub fn settings(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!(
                "  tollgate_database_path: {}\n  tollgate_spend_journal_path: {}\n",
                dir.path().join("tollgate.db").display(),
                dir.path().join("spend.journal").display()
            ),
            Db::Postgres { url, .. } => format!("  database_url: {url}\n"),
        }
    }

    pub fn url(&self) -> Option<&str> {
        match self {
            Db::Postgres { url, .. } => Some(url),
            Db::Sqlite(_) => None,
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { name, .. } = self {
            let _ = psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Temp dirs

/// A unique directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "tollgate-it-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ports and services

/// A port that was free a moment ago (bound and released). Good enough for precedence tests.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback URL on which nothing listens (a port bound and released).
pub fn closed_base_url() -> String {
    format!("http://127.0.0.1:{}/v1", free_port())
}

/// True when tests that need PostgreSQL/Python must fail instead of skipping.
pub fn services_required() -> bool {
    std::env::var("TOLLGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// Skip (return false, with a message) or fail (panic) when a service is missing.
pub fn service_available(name: &str, available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    if services_required() {
        panic!("{name} is required (TOLLGATE_REQUIRE_SERVICES=1) but unavailable: {why}");
    }
    eprintln!(
        "SKIPPED: {name} is unavailable ({why}); set TOLLGATE_REQUIRE_SERVICES=1 to make this a failure"
    );
    false
}

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// PostgreSQL on 127.0.0.1:5432 accepts TCP connections (skip or fail otherwise).
pub fn postgres_available() -> bool {
    let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    service_available(
        "PostgreSQL",
        ok,
        "nothing accepts connections on 127.0.0.1:5432",
    )
}

// ---------------------------------------------------------------------------------------------------------
// The mock upstream

pub async fn mock() -> MockServer {
    mock_with(MockOptions {
        api_key: Some(UPSTREAM_KEY.into()),
        aws_secret_access_key: Some(UPSTREAM_AWS_SECRET.into()),
        record: true,
    })
    .await
}

pub async fn mock_with(opts: MockOptions) -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

/// A config with one OpenAI deployment per `(model_name, upstream model)` pointing at `base` with the
/// upstream key, and the master key.
pub fn config_for(base: &str, models: &[(&str, &str)]) -> String {
    let mut s = String::from("model_list:\n");
    for (name, model) in models {
        s.push_str(&format!(
            "  - model_name: \"{name}\"\n    litellm_params:\n      model: \"openai/{model}\"\n      api_base: {base}\n      api_key: {UPSTREAM_KEY}\n"
        ));
    }
    s.push_str(&format!("general_settings:\n  master_key: {KEY}\n"));
    s
}

// ---------------------------------------------------------------------------------------------------------
// The gateway process

/// How to start a gateway.
pub struct GatewayBuilder {
    config: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    host_port: bool,
    dir: TempDir,
}

pub fn gateway() -> GatewayBuilder {
    GatewayBuilder {
        config: None,
        args: Vec::new(),
        env: Vec::new(),
        host_port: true,
        dir: TempDir::new(),
    }
}

/// Output of a gateway run to completion.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl GatewayBuilder {
    /// The config file contents (written to `config.yaml` in the temp dir and passed with `--config`).
    pub fn config(mut self, yaml: impl Into<String>) -> Self {
        self.config = Some(yaml.into());
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Do not add `--host 127.0.0.1 --port 0` (precedence tests choose their own).
    pub fn no_default_port(mut self) -> Self {
        self.host_port = false;
        self
    }

    /// The temp dir (for extra files such as TLS certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("TOLLGATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(self.dir.path());
        if let Some(c) = &self.config {
            let p = self.dir.write("config.yaml", c);
            cmd.arg("--config").arg(p);
        }
        if self.host_port {
            cmd.args(["--host", "127.0.0.1", "--port", "0"]);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Start and wait for the listening line; panics (with stderr) if the process exits first.
    pub fn start(self) -> Gateway {
        match self.try_start() {
            Ok(g) => g,
            Err(f) => panic!(
                "gateway did not start: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
                f.status, f.stdout, f.stderr
            ),
        }
    }

    /// Start; `Err` with the output when the process exits before printing the listening line.
    pub fn try_start(self) -> Result<Gateway, Finished> {
        let mut child = self
            .command()
            .spawn()
            .expect("spawning the tollgate binary");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_thread = {
            let mut pipe = child.stderr.take().unwrap();
            let buf = stderr.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&chunk[..n])),
                    }
                }
            })
        };
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let out_thread = {
            let pipe = child.stdout.take().unwrap();
            let buf = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    buf.lock().unwrap().push_str(&line);
                    buf.lock().unwrap().push('\n');
                    let _ = tx.send(line);
                }
            })
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("tollgate listening on ") {
                        let url = url.trim().to_string();
                        let addr: SocketAddr = url.rsplit("://").next().unwrap().parse().unwrap();
                        return Ok(Gateway {
                            child: Some(child),
                            url,
                            addr,
                            stderr,
                            stdout,
                            threads: vec![err_thread, out_thread],
                            dir: self.dir,
                            exit: None,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout)
                | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        let _ = out_thread.join();
                        let _ = err_thread.join();
                        return Err(Finished {
                            status,
                            stdout: stdout.lock().unwrap().clone(),
                            stderr: stderr.lock().unwrap().clone(),
                        });
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let status = child.wait().unwrap();
                        let _ = err_thread.join();
                        panic!(
                            "gateway printed no listening line within {START_TIMEOUT:?} (killed: {status})\n--- stdout\n{}\n--- stderr\n{}",
                            stdout.lock().unwrap(),
                            stderr.lock().unwrap()
                        );
                    }
                }
            }
        }
    }

    /// Run a command that is expected to end by itself (start-up failures, `--validate_config`, `--version`).
    /// Fails the test if it prints the listening line or does not end within 30 s.
    pub fn run(self) -> Finished {
        let child = self
            .command()
            .spawn()
            .expect("spawning the tollgate binary");
        wait_output(child, Duration::from_secs(30))
    }

    /// [`GatewayBuilder::run`] off the async runtime's threads (for commands that talk to an in-process mock
    /// or gateway).
    pub async fn run_async(self) -> Finished {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .unwrap()
    }
}

/// Wait for a child with a deadline, collecting its output; kill and panic on timeout. A process that prints
/// the listening line is killed at once (the caller expected it to end by itself; its assertions will fail).
pub fn wait_output(mut child: Child, limit: Duration) -> Finished {
    let out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let out_t = {
        let stdout = stdout.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out_pipe);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                stdout
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        })
    };
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stdout.lock().unwrap().contains("tollgate listening on") {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = out_t.join();
            let stderr = err_t.join().unwrap();
            panic!(
                "process did not exit within {limit:?}\n--- stdout\n{}\n--- stderr\n{stderr}",
                stdout.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = out_t.join();
    let stdout = stdout.lock().unwrap().clone();
    Finished {
        status,
        stdout,
        stderr: err_t.join().unwrap(),
    }
}

/// A running gateway. Dropping it kills the process; if the test is failing, its stderr is printed.
pub struct Gateway {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (or https).
    pub url: String,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    dir: TempDir,
    exit: Option<ExitStatus>,
}

impl Gateway {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Send SIGTERM.
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(st.success(), "kill -TERM failed");
    }

    /// Wait up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.exit = Some(s);
                // Let the reader threads drain the pipes.
                for t in self.threads.drain(..) {
                    let _ = t.join();
                }
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Async-friendly wait (polls without blocking the runtime).
    pub async fn wait_exit_async(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.wait_exit(Duration::ZERO) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait for a clean exit (status 0); returns the stderr.
    pub async fn stop(mut self) -> String {
        self.sigterm();
        let st = self.wait_exit_async(Duration::from_secs(20)).await;
        let st = st.unwrap_or_else(|| {
            panic!(
                "gateway did not exit after SIGTERM\n--- stderr\n{}",
                self.stderr()
            )
        });
        assert!(
            st.success(),
            "gateway exited with {st} after SIGTERM\n--- stderr\n{}",
            self.stderr()
        );
        self.stderr()
    }

    pub fn http(&self) -> Http {
        Http {
            base: self.url.clone(),
            client: http1_client(),
        }
    }

    /// A request to this gateway with the master key.
    pub fn req(&self, method: Method, path: &str) -> Req {
        Req::new(method, format!("{}{}", self.url, path)).bearer(KEY)
    }

    pub fn post(&self, path: &str, body: &Value) -> Req {
        self.req(Method::POST, path).json(body)
    }

    pub fn get(&self, path: &str) -> Req {
        self.req(Method::GET, path)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> Req {
        Req::new(method, format!("{}{}", self.url, path))
    }

    /// The `request completed` log lines so far.
    pub fn request_log(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("request completed"))
            .map(str::to_string)
            .collect()
    }

    /// Wait until at least `n` `request completed` lines are logged (records can trail the response).
    pub async fn wait_request_log(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.request_log();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take()
            && self.exit.is_none()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== tollgate {} stderr =====\n{}\n===== end of stderr =====",
                self.url,
                self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub struct Http {
    pub base: String,
    pub client: HttpClient,
}

/// A request being built.
pub struct Req {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    client: Option<HttpClient>,
}

impl Req {
    pub fn new(method: Method, url: String) -> Req {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: Bytes::new(),
            client: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn bearer(self, key: &str) -> Req {
        let mut r = self.no_auth();
        r.headers
            .push(("authorization".into(), format!("Bearer {key}")));
        r
    }

    pub fn no_auth(mut self) -> Req {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        self
    }

    pub fn json(mut self, v: &Value) -> Req {
        self.body = Bytes::from(serde_json::to_vec(v).unwrap());
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    pub fn body(mut self, b: impl Into<Bytes>) -> Req {
        self.body = b.into();
        if !self.headers.iter().any(|(k, _)| k == "content-type") {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        self
    }

    pub fn client(mut self, c: HttpClient) -> Req {
        self.client = Some(c);
        self
    }

    fn build(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(self.body.clone())).unwrap()
    }

    /// Send and read the whole response.
    pub async fn send(self) -> Resp {
        let url = self.url.clone();
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.open_inner())
            .await
            .unwrap_or_else(|_| panic!("no response head from {url} within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
            .await
            .unwrap_or_else(|_| panic!("body from {url} not complete within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("reading the body from {url} failed: {e:?}"))
            .to_bytes();
        Resp {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    /// Send; the transport error if there is one (connection refused, reset).
    pub async fn try_send(self) -> Result<Resp, String> {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.open_inner())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
            .await
            .map_err(|_| "body timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok(Resp {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    /// Send and return the head with the unread body (for streams).
    pub async fn open(self) -> http::Response<Incoming> {
        let url = self.url.clone();
        tokio::time::timeout(REQUEST_TIMEOUT, self.open_inner())
            .await
            .unwrap_or_else(|_| panic!("no response head from {url} within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"))
    }

    async fn open_inner(
        self,
    ) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
        let client = self.client.clone().unwrap_or_else(http1_client);
        client.request(self.build()).await
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response ({}) is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert the status, showing the body when it differs.
    #[track_caller]
    pub fn expect_status(&self, s: u16) -> &Resp {
        assert_eq!(
            self.status.as_u16(),
            s,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Assert an OpenAI-shaped error body with this status; returns `error`.
    #[track_caller]
    pub fn expect_error(&self, s: u16) -> Value {
        self.expect_status(s);
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "error content-type: {:?}",
            self.header("content-type")
        );
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "error body has only `error`: {v}");
        let e = v["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no `error` object: {v}"));
        for k in ["message", "type", "param", "code"] {
            assert!(e.contains_key(k), "error body lacks `{k}`: {v}");
        }
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "empty message: {v}"
        );
        assert!(
            e["type"].as_str().is_some_and(|m| !m.is_empty()),
            "empty type: {v}"
        );
        assert!(e["param"].is_null() || e["param"].is_string(), "param: {v}");
        assert!(e["code"].is_null() || e["code"].is_string(), "code: {v}");
        v["error"].clone()
    }
}

// ---------------------------------------------------------------------------------------------------------
// SSE

/// One SSE event with the time the chunk completing it arrived.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub at: Instant,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", self.data))
    }
}

/// A whole SSE body as it arrived.
#[derive(Debug)]
pub struct Sse {
    pub start: Instant,
    /// Each body frame with its arrival time.
    pub frames: Vec<(Instant, Bytes)>,
    pub events: Vec<SseEvent>,
    /// The body ended with a transport error (instead of a clean end).
    pub error: Option<String>,
    /// Bytes after the last complete event (should be empty).
    pub trailing: String,
}

impl Sse {
    pub fn raw(&self) -> String {
        self.frames
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b))
            .collect()
    }

    /// `data` payloads in order.
    pub fn data(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.data.as_str()).collect()
    }

    /// The JSON events (everything but `[DONE]`).
    pub fn json_events(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(SseEvent::json)
            .collect()
    }

    /// The concatenated `choices[0].delta.content` (chat) or `choices[0].text` (completions).
    pub fn text(&self) -> String {
        self.json_events()
            .iter()
            .filter_map(|v| {
                let c = &v["choices"][0];
                c["delta"]["content"]
                    .as_str()
                    .or_else(|| c["text"].as_str())
                    .map(str::to_string)
            })
            .collect()
    }

    pub fn ends_with_done(&self) -> bool {
        self.events.last().is_some_and(|e| e.data == "[DONE]")
    }
}

/// Read an SSE body to its end (or `limit`), timestamping each frame and event.
pub async fn read_sse(body: Incoming) -> Sse {
    read_sse_limit(body, REQUEST_TIMEOUT).await
}

pub async fn read_sse_limit(mut body: Incoming, limit: Duration) -> Sse {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut sse = Sse {
        start,
        frames: Vec::new(),
        events: Vec::new(),
        error: None,
        trailing: String::new(),
    };
    let mut buf = String::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => panic!(
                "SSE body did not end within {limit:?}; so far:\n{}",
                sse.raw()
            ),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                sse.error = Some(format!("{e:?}"));
                break;
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let at = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&data));
        sse.frames.push((at, data));
        let normalized = buf.replace("\r\n", "\n");
        buf = normalized;
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf[..end].to_string();
            buf.drain(..end + 2);
            let mut event = None;
            let mut data_lines = Vec::new();
            for line in block.lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    data_lines.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                } else if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                }
            }
            if !data_lines.is_empty() {
                sse.events.push(SseEvent {
                    at,
                    event,
                    data: data_lines.join("\n"),
                });
            }
        }
    }
    sse.trailing = buf;
    sse
}

// ---------------------------------------------------------------------------------------------------------
// Request bodies

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

/// Poll `f` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Read the whole of a non-streaming `(status, headers, body)` after the fact for a recorded request's JSON.
pub fn body_json(b: &[u8]) -> Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

// ---------------------------------------------------------------------------------------------------------
// Small HTTP servers the tests control (a JWKS endpoint, an OTLP collector, webhook receivers)

/// A request as a test server sees it: the head and the whole body.
pub type TestRequest = http::Request<Bytes>;

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with `handle`. Returns its base URL and the
/// tasks serving it (dropping them stops the server).
pub async fn test_server(
    handle: impl Fn(TestRequest) -> http::Response<Full<Bytes>> + Send + Sync + 'static,
) -> (String, tokio::task::JoinSet<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = Arc::new(handle);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handle = handle.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(handle(Request::from_parts(parts, body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, tasks)
}
