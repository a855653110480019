//! The connection layer: accept loop, optional TLS (rustls, ALPN h2/http1.1), HTTP/1.1 and HTTP/2 (h2c with
//! prior knowledge) on one port, header-read and keep-alive idle timeouts, and graceful shutdown.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How connections are served.
#[derive(Clone)]
pub struct ListenerOptions {
    /// Close a connection after this long without any bytes in either direction (in-flight responses finish).
    pub keepalive_timeout: Duration,
    /// Time allowed to receive a request's headers (and the TLS handshake).
    pub header_read_timeout: Duration,
    /// The largest request head: HTTP/1.1 requests beyond it get a 431 (hyper's read buffer limit, at
    /// least 8 KiB), HTTP/2 header lists beyond it are refused (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_bytes: usize,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// hyper's smallest HTTP/1 buffer limit (it panics below this).
const MIN_HTTP1_BUF: usize = 8192;

/// TLS set-up failures, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate file {path}: {cause}")]
    Cert { path: String, cause: String },
    #[error("cannot read TLS key file {path}: {cause}")]
    Key { path: String, cause: String },
    #[error("TLS certificate and key do not work together: {0}")]
    Config(String),
}

/// Load a PEM certificate chain and private key into a rustls config that offers h2 and http/1.1.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            cause: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            cause: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        cause: e.to_string(),
    })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Config(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Bind a listening socket on `addr` (`host:port`; every resolved address is tried in order, like
/// `TcpListener::bind`) with `SO_REUSEADDR` and, on unix, `SO_REUSEPORT` set before `bind`: a second gateway
/// can bind the same port while the first one drains (rolling restart), and the kernel spreads new
/// connections over every socket bound to it.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn bind_one(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // The backlog tokio's `TcpListener::bind` uses.
    socket.listen(1024)
}

pin_project! {
    /// An IO stream that remembers when bytes last moved, for the keep-alive idle timeout.
    struct IdleIo<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
    }
}

struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Serve `app` on `listener` until `shutdown` is cancelled. Connection tasks go on `tracker`; on shutdown
/// each connection is told to finish its in-flight requests and close. Waiting for them is the caller's job
/// (`tracker.wait()` with the grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ListenerOptions,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header-read timer also runs while a keep-alive connection waits for its next request,
    // so it is the keep-alive idle bound too: give it the longer of the two, and let `drive` close
    // connections idle for `keepalive_timeout`. HTTP/2 gets no server PINGs: they would count as activity
    // and keep idle connections open forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout.max(opts.keepalive_timeout))
        .keep_alive(true)
        // Request heads larger than this get a 431 from hyper (it also bounds the read buffer).
        .max_buf_size(opts.max_header_bytes.max(MIN_HTTP1_BUF))
        // No `pipeline_flush`: with it hyper skips flushing while its read buffer holds bytes, so the
        // 431 (or 400) it writes for a bad or oversized head is never sent before the connection closes.
        // Responses still go out in one `writev` (head and body queued together).
        .pipeline_flush(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let acceptor = opts.tls.clone().map(TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        let opts = opts.clone();
        tracker.spawn(async move {
            let activity = Arc::new(Activity::new());
            match acceptor {
                None => {
                    let io = IdleIo {
                        inner: stream,
                        activity: activity.clone(),
                    };
                    drive(&builder, io, svc, activity, &opts, &shutdown).await;
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(
                        opts.header_read_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let io = IdleIo {
                        inner: tls,
                        activity: activity.clone(),
                    };
                    drive(&builder, io, svc, activity, &opts, &shutdown).await;
                }
            }
        });
    }
}

async fn drive<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    svc: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    opts: &ListenerOptions,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    activity.touch();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_deadline = activity.last() + opts.keepalive_timeout;
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(idle_deadline), if !closing => {
                if activity.last() + opts.keepalive_timeout <= Instant::now() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
