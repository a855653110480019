//! Log set-up: human-readable or JSON lines on stderr; level from --debug/--detailed_debug, or RUST_LOG.
//! Lines are written by a dedicated writer thread so request handling never blocks on stderr.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `json` from `litellm_settings.json_logs` or `JSON_LOGS`.
/// Keep the returned guard alive until exit: dropping it flushes the remaining lines.
pub fn init(debug: bool, detailed: bool, json: bool, env_filter: Option<String>) -> WorkerGuard {
    let default = if detailed {
        "debug,tollgate=trace,tollgate_server=trace,tollgate_providers=trace,tollgate_router=trace,tollgate_config=trace,tollgate_store=trace"
    } else if debug {
        "warn,tollgate=debug,tollgate_server=debug,tollgate_providers=debug,tollgate_router=debug,tollgate_config=debug,tollgate_store=debug,tollgate::request=debug"
    } else {
        "warn,tollgate=info,tollgate_server=info,tollgate_providers=info,tollgate_router=info,tollgate_store=info,tollgate::request=info"
    };
    let filter = env_filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // Lossless: when the queue is full, logging waits rather than dropping lines.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("tollgate-log")
        // Buffered: when lines queue up, the writer thread sends them in one write (it flushes whenever
        // the queue is empty, so a quiet gateway's lines still appear at once).
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    if let Err(e) = result {
        eprintln!("tollgate: could not install the logger: {e}");
    }
    guard
}
