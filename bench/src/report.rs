//! Markdown report from the JSON files one `bench/run.sh` (and `bench/litellm.sh`) run wrote.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::ReportArgs;

/// Targets from bench/README.md.
const ADDED_P50_MS: f64 = 0.2;
const ADDED_P99_MS: f64 = 1.0;
const MIN_SATURATION_RPS: f64 = 20_000.0;
const MIN_LITELLM_RATIO: f64 = 10.0;
const MAX_IDLE_RSS_MB: f64 = 30.0;
const MAX_COLDSTART_MS: f64 = 100.0;

/// The results of one run, by file stem (`direct-rate`, `gateway-sat`, ...).
struct Results {
    files: std::collections::BTreeMap<String, Value>,
}

impl Results {
    fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut files = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path)?;
            // A scenario that crashed may leave an empty or partial file: show it as missing.
            if let Ok(value) = serde_json::from_str::<Value>(text.trim()) {
                files.insert(stem.to_string(), value);
            }
        }
        Ok(Self { files })
    }

    fn has(&self, file: &str) -> bool {
        self.files.contains_key(file)
    }

    /// A value by file stem and `/`-separated pointer, e.g. `("gateway-sat", "latency_ms/p50")`.
    fn num(&self, file: &str, pointer: &str) -> Option<f64> {
        self.files
            .get(file)?
            .pointer(&format!("/{pointer}"))?
            .as_f64()
    }

    fn text(&self, file: &str, pointer: &str) -> Option<String> {
        let v = self.files.get(file)?.pointer(&format!("/{pointer}"))?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

fn f3(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

fn f1(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.1}"))
}

fn f0(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.0}"))
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    let (n, d) = (num?, den?);
    (d > 0.0).then(|| n / d)
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:+.3}"))
}

struct Table {
    out: String,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        let mut out = format!("| {} |\n", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        Self { out }
    }

    fn row(&mut self, cells: &[String]) {
        let _ = writeln!(self.out, "| {} |", cells.join(" | "));
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

/// Builds the whole Markdown document.
fn render(r: &Results) -> String {
    let mut md = String::from("# tollgate benchmark\n\n");
    if let Some(meta) = r.files.get("meta") {
        let get = |k: &str| {
            meta.get(k)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let _ = writeln!(
            md,
            "{} · commit `{}` · {} · gateway on core 0 (`--num_workers 1`), mock + load generator on core 1\n",
            get("date"),
            get("commit"),
            get("cpu"),
        );
    }

    let ours = r
        .files
        .keys()
        .any(|k| k.starts_with("direct-") || k.starts_with("gateway-"));
    if !ours {
        // A `bench/litellm.sh`-only directory.
        md.push_str(&render_litellm(r));
        return md;
    }

    let mut t = Table::new(&[
        "Scenario",
        "Metric",
        "Direct to mock",
        "Through tollgate",
        "Added / ratio",
        "Target",
        "Met",
    ]);

    // (a) fixed rate
    let rate = r
        .num("direct-rate", "target_rate")
        .or_else(|| r.num("gateway-rate", "target_rate"));
    let dur = r
        .num("direct-rate", "duration_s")
        .or_else(|| r.num("gateway-rate", "duration_s"));
    let a = format!("(a) fixed rate {} req/s, {} s", f0(rate), f0(dur));
    for (metric, key, target) in [
        ("p50 ms", "latency_ms/p50", Some(ADDED_P50_MS)),
        ("p90 ms", "latency_ms/p90", None),
        ("p99 ms", "latency_ms/p99", Some(ADDED_P99_MS)),
        ("max ms", "latency_ms/max", None),
    ] {
        let d = r.num("direct-rate", key);
        let g = r.num("gateway-rate", key);
        let added = diff(d, g);
        t.row(&[
            if metric == "p50 ms" { a.clone() } else { s("") },
            s(metric),
            f3(d),
            f3(g),
            signed(added),
            target.map_or_else(String::new, |x| format!("added < {x} ms")),
            if target.is_some() {
                s(met(added.zip(target).map(|(v, x)| v < x)))
            } else {
                s("")
            },
        ]);
    }
    t.row(&[
        s(""),
        s("achieved req/s / errors"),
        format!(
            "{} / {}",
            f1(r.num("direct-rate", "rps")),
            f0(r.num("direct-rate", "errors/total"))
        ),
        format!(
            "{} / {}",
            f1(r.num("gateway-rate", "rps")),
            f0(r.num("gateway-rate", "errors/total"))
        ),
        s(""),
        s("0 errors"),
        s(met(r.num("gateway-rate", "errors/total").map(|e| e == 0.0))),
    ]);

    // (b) saturation
    let conns = r
        .num("direct-sat", "connections")
        .or_else(|| r.num("gateway-sat", "connections"));
    let d_rps = r.num("direct-sat", "rps");
    let g_rps = r.num("gateway-sat", "rps");
    let l_rps = r.num("litellm-sat", "rps");
    t.row(&[
        format!("(b) saturation, {} connections", f0(conns)),
        s("req/s"),
        f0(d_rps),
        f0(g_rps),
        ratio(g_rps, d_rps).map_or_else(|| "—".into(), |x| format!("{x:.2}x of direct")),
        format!("≥ {MIN_SATURATION_RPS:.0}"),
        s(met(g_rps.map(|v| v >= MIN_SATURATION_RPS))),
    ]);
    if r.has("litellm-sat") {
        let x = ratio(g_rps, l_rps);
        t.row(&[
            s(""),
            s("vs LiteLLM (same core)"),
            s(""),
            format!("LiteLLM {} req/s", f1(l_rps)),
            x.map_or_else(|| "—".into(), |x| format!("{x:.0}x LiteLLM")),
            format!("≥ {MIN_LITELLM_RATIO:.0}x"),
            s(met(x.map(|v| v >= MIN_LITELLM_RATIO))),
        ]);
    }
    for (metric, key) in [("p50 ms", "latency_ms/p50"), ("p99 ms", "latency_ms/p99")] {
        let d = r.num("direct-sat", key);
        let g = r.num("gateway-sat", key);
        t.row(&[
            s(""),
            s(metric),
            f3(d),
            f3(g),
            signed(diff(d, g)),
            s(""),
            s(""),
        ]);
    }
    t.row(&[
        s(""),
        s("errors"),
        f0(r.num("direct-sat", "errors/total")),
        f0(r.num("gateway-sat", "errors/total")),
        s(""),
        s("0"),
        s(met(r.num("gateway-sat", "errors/total").map(|e| e == 0.0))),
    ]);

    // (c) streaming
    let srate = r
        .num("direct-stream", "target_rate")
        .or_else(|| r.num("gateway-stream", "target_rate"));
    let chunks = r
        .num("direct-stream", "chunks_per_response")
        .or_else(|| r.num("gateway-stream", "chunks_per_response"));
    let c = format!(
        "(c) streaming at {} req/s ({} `data:` lines/response)",
        f0(srate),
        f1(chunks)
    );
    for (i, (metric, key)) in [
        ("TTFT p50 ms", "ttft_ms/p50"),
        ("TTFT p99 ms", "ttft_ms/p99"),
        ("total p50 ms", "latency_ms/p50"),
        ("total p99 ms", "latency_ms/p99"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = r.num("direct-stream", key);
        let g = r.num("gateway-stream", key);
        t.row(&[
            if i == 0 { c.clone() } else { s("") },
            s(metric),
            f3(d),
            f3(g),
            signed(diff(d, g)),
            s(""),
            s(""),
        ]);
    }
    t.row(&[
        s(""),
        s("errors / chunks per response"),
        format!(
            "{} / {}",
            f0(r.num("direct-stream", "errors/total")),
            f1(r.num("direct-stream", "chunks_per_response"))
        ),
        format!(
            "{} / {}",
            f0(r.num("gateway-stream", "errors/total")),
            f1(r.num("gateway-stream", "chunks_per_response"))
        ),
        s(""),
        s("0 errors, same chunks"),
        s(met(r
            .num("gateway-stream", "errors/total")
            .zip(r.num("gateway-stream", "chunks_per_response"))
            .zip(r.num("direct-stream", "chunks_per_response"))
            .map(|((e, g), d)| e == 0.0 && (g - d).abs() < 0.01))),
    ]);

    // (d) memory
    let idle = r.num("gateway-rss-idle", "vm_rss_mb");
    t.row(&[
        s("(d) tollgate memory"),
        s("idle RSS MB (after start)"),
        s(""),
        f1(idle),
        s(""),
        format!("< {MAX_IDLE_RSS_MB:.0} MB"),
        s(met(idle.map(|v| v < MAX_IDLE_RSS_MB))),
    ]);
    t.row(&[
        s(""),
        s("peak RSS MB (VmHWM after all load)"),
        s(""),
        f1(r.num("gateway-rss-peak", "vm_hwm_mb")),
        s(""),
        s(""),
        s(""),
    ]);

    // (e) cold start
    let cold = r.num("gateway-coldstart", "first_200_ms/median");
    t.row(&[
        format!(
            "(e) cold start, {} runs",
            f0(r.num("gateway-coldstart", "runs"))
        ),
        s("spawn → first 200, median ms"),
        s(""),
        format!(
            "{} (min {}, max {})",
            f1(cold),
            f1(r.num("gateway-coldstart", "first_200_ms/min")),
            f1(r.num("gateway-coldstart", "first_200_ms/max"))
        ),
        s(""),
        format!("< {MAX_COLDSTART_MS:.0} ms"),
        s(met(cold.map(|v| v < MAX_COLDSTART_MS))),
    ]);
    md.push_str(&t.out);

    if r.files.keys().any(|k| k.starts_with("litellm-")) {
        md.push_str(&render_litellm(r));
    }

    let mut notes = String::new();
    for (file, value) in &r.files {
        if let Some(err) = value.get("first_error").and_then(Value::as_str) {
            let _ = writeln!(notes, "- `{file}`: first error: {}", err.replace('\n', " "));
        }
    }
    for (file, what) in [
        ("direct-rate", "(a) direct"),
        ("gateway-rate", "(a) tollgate"),
        ("direct-sat", "(b) direct"),
        ("gateway-sat", "(b) tollgate"),
        ("direct-stream", "(c) direct"),
        ("gateway-stream", "(c) tollgate"),
        ("gateway-rss-idle", "(d) idle RSS"),
        ("gateway-coldstart", "(e) cold start"),
    ] {
        if !r.has(file) {
            let _ = writeln!(notes, "- {what}: not measured (no `{file}.json`)");
        }
    }
    if !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        md.push_str(&notes);
    }
    md
}

fn render_litellm(r: &Results) -> String {
    let mut md = String::from("\n## LiteLLM proxy on the same core, same mock\n\n");
    if let Some(v) = r.text("litellm-meta", "version") {
        let _ = writeln!(
            md,
            "litellm {v}, measured {} by `bench/litellm.sh` (`--num_workers 1`, same core as tollgate)\n",
            r.text("litellm-meta", "date").unwrap_or_default()
        );
    }
    let mut t = Table::new(&["Metric", "LiteLLM", "tollgate", "tollgate / LiteLLM"]);
    let conns = r.num("litellm-sat", "connections");
    let (l, g) = (r.num("litellm-sat", "rps"), r.num("gateway-sat", "rps"));
    t.row(&[
        format!("saturation req/s ({} connections)", f0(conns)),
        f1(l),
        f0(g),
        ratio(g, l).map_or_else(|| "—".into(), |x| format!("{x:.0}x")),
    ]);
    for (metric, key) in [
        ("saturation p50 ms", "latency_ms/p50"),
        ("saturation p99 ms", "latency_ms/p99"),
    ] {
        t.row(&[
            s(metric),
            f3(r.num("litellm-sat", key)),
            f3(r.num("gateway-sat", key)),
            s(""),
        ]);
    }
    let lrate = r.num("litellm-rate", "target_rate");
    for (metric, key) in [("p50 ms", "latency_ms/p50"), ("p99 ms", "latency_ms/p99")] {
        t.row(&[
            format!("fixed rate {} req/s {metric}", f0(lrate)),
            f3(r.num("litellm-rate", key)),
            s("(see (a))"),
            s(""),
        ]);
    }
    t.row(&[
        format!(
            "streaming at {} req/s, TTFT p50 ms",
            f0(r.num("litellm-stream", "target_rate"))
        ),
        f3(r.num("litellm-stream", "ttft_ms/p50")),
        s("(see (c))"),
        s(""),
    ]);
    t.row(&[
        s("errors (sat / rate / stream)"),
        format!(
            "{} / {} / {}",
            f0(r.num("litellm-sat", "errors/total")),
            f0(r.num("litellm-rate", "errors/total")),
            f0(r.num("litellm-stream", "errors/total"))
        ),
        s(""),
        s(""),
    ]);
    let (li, gi) = (
        r.num("litellm-rss-idle", "vm_rss_mb"),
        r.num("gateway-rss-idle", "vm_rss_mb"),
    );
    t.row(&[s("idle RSS MB"), f1(li), f1(gi), s("")]);
    t.row(&[
        s("peak RSS MB"),
        f1(r.num("litellm-rss-peak", "vm_hwm_mb")),
        f1(r.num("gateway-rss-peak", "vm_hwm_mb")),
        s(""),
    ]);
    t.row(&[
        format!(
            "cold start median ms ({} runs)",
            f0(r.num("litellm-coldstart", "runs"))
        ),
        f0(r.num("litellm-coldstart", "first_200_ms/median")),
        f1(r.num("gateway-coldstart", "first_200_ms/median")),
        s(""),
    ]);
    md.push_str(&t.out);
    md
}

/// Entry point of `tollgate-bench report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let results = Results::load(&args.dir)?;
    let md = render(&results);
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_partial_results() {
        let mut files = std::collections::BTreeMap::new();
        files.insert(
            "direct-rate".to_string(),
            json!({"target_rate": 1000.0, "duration_s": 10.0, "rps": 1000.0,
                   "errors": {"total": 0}, "latency_ms": {"p50": 0.1, "p90": 0.12, "p99": 0.2, "max": 1.0}}),
        );
        files.insert(
            "gateway-rate".to_string(),
            json!({"target_rate": 1000.0, "duration_s": 10.0, "rps": 1000.0,
                   "errors": {"total": 0}, "latency_ms": {"p50": 0.25, "p90": 0.3, "p99": 0.9, "max": 2.0}}),
        );
        let md = render(&Results { files });
        assert!(md.contains("(a) fixed rate 1000 req/s, 10 s"), "{md}");
        assert!(md.contains("| +0.150 | added < 0.2 ms | yes |"), "{md}");
        assert!(md.contains("| +0.700 | added < 1 ms | yes |"), "{md}");
        assert!(md.contains("(e) cold start: not measured"), "{md}");
        assert!(!md.contains("LiteLLM proxy"), "{md}");
    }
}
