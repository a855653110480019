//! The `tollgate-mock` binary: runs a [`tollgate_mock::MockServer`] until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use clap::Parser;
use tollgate_mock::{MockOptions, MockServer};

/// A mock OpenAI-compatible LLM upstream with per-request fault knobs.
#[derive(Debug, Parser)]
#[command(name = "tollgate-mock", version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "TOLLGATE_MOCK_HOST")]
    host: IpAddr,
    /// Port to bind (0 picks a free one; the chosen port is printed).
    #[arg(long, default_value_t = 0, env = "TOLLGATE_MOCK_PORT")]
    port: u16,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1, env = "TOLLGATE_MOCK_WORKERS")]
    workers: usize,
    /// Require this API key (`Authorization: Bearer KEY` or `api-key: KEY`).
    #[arg(long, env = "TOLLGATE_MOCK_API_KEY")]
    api_key: Option<String>,
    /// With `--api-key` as the access key id, verify Bedrock SigV4 signatures with this secret access key
    /// (a mismatch gets a 403 `InvalidSignatureException`).
    #[arg(long, env = "TOLLGATE_MOCK_AWS_SECRET_ACCESS_KEY")]
    aws_secret_access_key: Option<String>,
    /// Keep the last 256 requests, listed by `GET /mock/requests`.
    #[arg(long)]
    record: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = if args.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()
    }
    .context("building the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let opts = MockOptions {
        api_key: args.api_key,
        aws_secret_access_key: args.aws_secret_access_key,
        record: args.record,
    };
    let server = MockServer::start(SocketAddr::new(args.host, args.port), opts).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "tollgate-mock listening on http://{}", server.addr())?;
        out.flush()?;
    }
    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
