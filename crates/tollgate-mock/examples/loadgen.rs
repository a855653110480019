//! Throwaway load generator used to check the mock's throughput (not part of the crate's API).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: String = args.next().unwrap();
    let conns: usize = args.next().map_or(64, |s| s.parse().unwrap());
    let secs: u64 = args.next().map_or(5, |s| s.parse().unwrap());
    let threads: usize = args.next().map_or(1, |s| s.parse().unwrap());
    let depth: usize = args.next().map_or(0, |s| s.parse().unwrap());
    if depth > 0 {
        return pipelined(addr, conns, secs, threads, depth);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    rt.block_on(async move {
        let body = Bytes::from_static(br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}"#);
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let tracker = TaskTracker::new();
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        for _ in 0..conns {
            let (addr, body, done, errors) = (addr.clone(), body.clone(), done.clone(), errors.clone());
            tracker.spawn(async move {
                let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                let work = async {
                    while Instant::now() < end {
                        let req = http::Request::post("/v1/chat/completions")
                            .header("host", "mock")
                            .header("content-type", "application/json")
                            .body(Full::new(body.clone()))
                            .unwrap();
                        tx.ready().await.unwrap();
                        match tx.send_request(req).await {
                            Ok(resp) => {
                                let ok = resp.status().is_success();
                                let _ = resp.into_body().collect().await.unwrap();
                                if ok { done.fetch_add(1, Ordering::Relaxed); } else { errors.fetch_add(1, Ordering::Relaxed); }
                            }
                            Err(_) => { errors.fetch_add(1, Ordering::Relaxed); }
                        }
                    }
                };
                tokio::select! { _ = conn => {}, () = work => {} }
            });
        }
        tracker.close();
        tracker.wait().await;
        let el = start.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!("{n} ok, {} errors in {el:.2}s = {:.0} req/s", errors.load(Ordering::Relaxed), n as f64 / el);
    });
}

/// Raw HTTP/1.1 pipelining: each connection writes `depth` requests at once,
/// then reads `depth` responses, so the client costs little per request.
fn pipelined(addr: String, conns: usize, secs: u64, threads: usize, depth: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    rt.block_on(async move {
        let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}"#;
        let one = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let batch = Bytes::from(one.repeat(depth));
        let done = Arc::new(AtomicU64::new(0));
        let tracker = TaskTracker::new();
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        for _ in 0..conns {
            let (addr, batch, done) = (addr.clone(), batch.clone(), done.clone());
            tracker.spawn(async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(1 << 20);
                let mut chunk = vec![0u8; 1 << 16];
                while Instant::now() < end {
                    s.write_all(&batch).await.unwrap();
                    let mut got = 0;
                    while got < depth {
                        // Consume complete responses from `buf`.
                        loop {
                            let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { break };
                            let head = std::str::from_utf8(&buf[..h]).unwrap();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .unwrap()
                                .parse()
                                .unwrap();
                            if buf.len() < h + 4 + len { break; }
                            assert!(head.starts_with("HTTP/1.1 200"));
                            buf.drain(..h + 4 + len);
                            got += 1;
                        }
                        if got < depth {
                            let n = s.read(&mut chunk).await.unwrap();
                            assert!(n > 0);
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                    done.fetch_add(depth as u64, Ordering::Relaxed);
                }
            });
        }
        tracker.close();
        tracker.wait().await;
        let el = start.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!("{n} ok (pipelined x{depth}) in {el:.2}s = {:.0} req/s", n as f64 / el);
    });
}
