//! Transport: HTTP/2 with prior knowledge (h2c), TLS with ALPN h2 and http/1.1 (a self-signed certificate made
//! for the test), and the keep-alive idle timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn mock_provider_config() -> String {
    format!(
        "model_list:\n  - model_name: local\n    litellm_params:\n      model: mock/local\n      mock_response: \"over the wire\"\ngeneral_settings:\n  master_key: {KEY}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let mock = mock().await;
    let gw = gateway()
        .config(config_for(&mock.base_url(), &[("up", "up-model")]))
        .start();

    let r = gw
        .post("/v1/chat/completions", &chat("up"))
        .client(h2c_client())
        .send()
        .await;
    r.expect_status(200);
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.json()["model"], "up");
    assert!(r.header("x-request-id").is_some());

    // Several requests multiplexed on one h2 connection.
    let client = h2c_client();
    let mut futs = Vec::new();
    for _ in 0..5 {
        futs.push(
            gw.post("/v1/chat/completions", &chat("up"))
                .client(client.clone())
                .send(),
        );
    }
    for r in futures_util::future::join_all(futs).await {
        r.expect_status(200);
        assert_eq!(r.version, Version::HTTP_2);
    }

    // HTTP/1.1 on the same port.
    let r = gw.post("/v1/chat/completions", &chat("up")).send().await;
    r.expect_status(200);
    assert_eq!(r.version, Version::HTTP_11);
}

/// A TLS client trusting only `cert`, offering exactly `alpn`.
fn tls_connector(cert: CertificateDer<'static>, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

fn chat_request(authority: &str, version: Version) -> Request<Full<Bytes>> {
    let body = serde_json::to_vec(&chat("local")).unwrap();
    let mut b = Request::post(format!("https://{authority}/v1/chat/completions"))
        .version(version)
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json");
    if version == Version::HTTP_11 {
        b = b.header("host", authority);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_alpn_h2_and_http1() {
    let b = gateway().config(mock_provider_config());
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_pem = ck.cert.pem();
    let cert_path = b.dir().join("cert.pem");
    let key_path = b.dir().join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let cert_der = CertificateDer::from(ck.cert.der().to_vec());

    let gw = b
        .args([
            "--ssl_certfile_path",
            cert_path.to_str().unwrap(),
            "--ssl_keyfile_path",
            key_path.to_str().unwrap(),
        ])
        .start();
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let authority = format!("localhost:{}", gw.addr.port());
    let name = ServerName::try_from("localhost").unwrap();

    // ALPN h2.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let tls = tls_connector(cert_der.clone(), b"h2")
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "server did not pick h2"
    );
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let work = async {
        let resp = sender
            .send_request(chat_request(&authority, Version::HTTP_2))
            .await
            .unwrap();
        let version = resp.version();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (version, status, body)
    };
    let (version, status, body) = tokio::select! {
        r = work => r,
        c = conn => panic!("h2 connection ended early: {c:?}"),
    };
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "over the wire");

    // ALPN http/1.1.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let tls = tls_connector(cert_der.clone(), b"http/1.1")
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let work = async {
        let resp = sender
            .send_request(chat_request(&authority, Version::HTTP_11))
            .await
            .unwrap();
        let version = resp.version();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (version, status, body)
    };
    let (version, status, body) = tokio::select! {
        r = work => r,
        c = conn => panic!("http/1.1 connection ended early: {c:?}"),
    };
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Plain HTTP to the TLS port does not get an answer.
    let r = Req::new(
        http::Method::GET,
        format!("http://{}/health/liveliness", gw.addr),
    )
    .try_send()
    .await;
    assert!(r.is_err(), "plain HTTP was answered on the TLS port: {r:?}");

    // A client that does not trust the certificate is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let r = tls_connector(CertificateDer::from(other.cert.der().to_vec()), b"h2")
        .connect(name, tcp)
        .await;
    assert!(r.is_err(), "an untrusted certificate was accepted");
}

/// Read one HTTP/1.1 response with a Content-Length body; returns the head.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            while buf.len() < end + 4 + len {
                let n = tokio::time::timeout(REQUEST_TIMEOUT, s.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "connection closed mid-response");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head;
        }
        let n = tokio::time::timeout(REQUEST_TIMEOUT, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let gw = gateway()
        .config(mock_provider_config())
        .args(["--keepalive_timeout", "1"])
        .start();

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two requests in a row on one connection: keep-alive works.
    for _ in 0..2 {
        s.write_all(req).await.unwrap();
        let head = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }
    // Then idle: the server closes the connection after about a second.
    let idle_start = Instant::now();
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await;
    let waited = idle_start.elapsed();
    match r {
        Err(_) => panic!("idle connection still open after 10 s with --keepalive_timeout 1"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("unexpected {n} bytes on an idle connection"),
    }
    assert!(
        waited >= Duration::from_millis(500),
        "closed too early ({waited:?}) for a 1 s idle timeout"
    );

    // A connection that keeps talking is not cut at the idle timeout.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1800) {
        s.write_all(req).await.unwrap();
        let head = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connection_is_closed_under_a_short_keep_alive() {
    let gw = gateway()
        .config(mock_provider_config())
        .args(["--keepalive_timeout", "1"])
        .start();
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let mut conn = Box::pin(conn);
    let req = Request::get(format!("http://{}/health/liveliness", gw.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::select! {
        r = sender.send_request(req) => r.unwrap(),
        c = &mut conn => panic!("h2 connection ended early: {c:?}"),
    };
    assert_eq!(resp.status(), 200);
    drop(resp);
    // Idle from here: the server ends the connection (GOAWAY and close) after about a second.
    let idle = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut conn).await;
    assert!(
        ended.is_ok(),
        "idle h2 connection still open after 10 s with --keepalive_timeout 1"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        idle.elapsed()
    );
}

/// A slow client dripping its request head one byte at a time (slowloris) is cut off when the head is not
/// complete within the header read timeout, although bytes keep arriving (which resets the idle timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_head_is_cut_at_the_header_read_timeout() {
    let config = format!(
        "{}  tollgate_header_read_timeout: 1\n",
        mock_provider_config()
    );
    let gw = gateway()
        .config(config)
        .args(["--keepalive_timeout", "1"])
        .start();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut closed_after = None;
    for b in head.iter() {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        // Anything the server says (a 408, or the end of the stream) means it gave up on the head.
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(n)) => {
                let said = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(n == 0 || said.starts_with("HTTP/1.1 408"), "{said}");
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(Err(_)) => {
                closed_after = Some(start.elapsed());
                break;
            }
        }
    }
    let waited = closed_after.expect("a head dripped for ~15 s was never cut off");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(6),
        "cut after {waited:?}, expected about 1 s"
    );
    // The gateway still serves others.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
