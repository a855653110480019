//! `tollgate-bench`: load generator, cold-start timer, RSS probe and report writer for tollgate.

mod coldstart;
mod load;
mod report;
mod rss;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tollgate-bench",
    about = "Benchmark tools for tollgate",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send chat-completion load to a URL and report throughput and latency (JSON on stdout).
    Load(Box<LoadArgs>),
    /// Spawn a server command repeatedly and time spawn -> first HTTP 200 (JSON on stdout).
    Coldstart(ColdstartArgs),
    /// Print VmRSS / VmHWM of a running process as JSON.
    Rss(RssArgs),
    /// Build the Markdown table from the JSON files a `run.sh` run left in a directory.
    Report(ReportArgs),
}

/// Options for the `load` subcommand.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Full URL of the chat-completions endpoint (http only).
    #[arg(long)]
    pub url: String,
    /// Open-loop fixed rate in requests/s. Without it the run is closed-loop saturation.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Number of keep-alive HTTP/1.1 connections (= concurrency in saturation mode).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measured duration, e.g. `10`, `10s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the measured window (same load, results discarded).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Per-request timeout (counted as a transport error).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Open loop: how long after the schedule ends queued slots may still be sent.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Open loop: the pacer thread busy-waits this long before each slot instead of sleeping
    /// (sleep overshoots by the kernel timer slack, ~50-100 us). Capped at a tenth of the slot
    /// interval; `0` = never spin.
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    pub pacer_spin: Duration,
    /// Send `"stream": true` and measure time to the first `data:` chunk too.
    #[arg(long)]
    pub stream: bool,
    /// Model name put in the request body.
    #[arg(long, default_value = "bench-model")]
    pub model: String,
    /// Bearer token for the Authorization header.
    #[arg(long, env = "TOLLGATE_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Extra request header `name: value` (repeatable), e.g. `x-mock-chunks: 5`.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// `max_tokens` in the request body.
    #[arg(long, default_value_t = 16)]
    pub max_tokens: u32,
    /// User message content.
    #[arg(long, default_value = "Say hello in one short sentence.")]
    pub prompt: String,
    /// Send this file as the request body instead of the generated one.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Label copied into the output.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Tokio worker threads (1 = current-thread runtime, the least overhead on a pinned core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Also write the JSON object to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not print the human-readable summary line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Options for the `coldstart` subcommand.
#[derive(clap::Args, Debug)]
pub struct ColdstartArgs {
    /// How many times to start the command.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Path polled until it answers 200.
    #[arg(long, default_value = "/health/liveliness")]
    pub health_path: String,
    /// Base URL to poll (e.g. `http://127.0.0.1:4000`). Without it the URL is taken from the
    /// first stdout line of the child that contains `http://`.
    #[arg(long)]
    pub url: Option<String>,
    /// Give up on one run after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Pause between failed polls.
    #[arg(long, default_value = "200us", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Label copied into the output.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Also write the JSON object to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The server command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Options for the `rss` subcommand.
#[derive(clap::Args, Debug)]
pub struct RssArgs {
    /// Process id to read `/proc/PID/status` from.
    #[arg(long)]
    pub pid: u32,
    /// Label copied into the output.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Also write the JSON object to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Options for the `report` subcommand.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Directory holding the `*.json` results of one run.
    #[arg(long)]
    pub dir: PathBuf,
    /// Also write the Markdown to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Parses `10`, `2.5`, `10s`, `250ms`, `100us`, `1m` into a duration (bare numbers are seconds).
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        other => bail!("bad duration unit {other:?} in {s:?} (use s, ms, us or m)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("bad duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints a JSON object on stdout and optionally writes it to a file.
pub fn emit_json(value: &serde_json::Value, out: Option<&PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string(value)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Load(args) => load::run(&args),
        Command::Coldstart(args) => coldstart::run(&args),
        Command::Rss(args) => rss::run(&args),
        Command::Report(args) => report::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("200us").unwrap(), Duration::from_micros(200));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
