//! Resident memory of a process from `/proc/PID/status` (VmRSS now, VmHWM = peak).

use anyhow::Context;
use serde_json::json;

use crate::RssArgs;

/// Reads a `kB` field such as `VmRSS:     1234 kB` from a status file's text.
fn field_kb(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn mb(kb: Option<u64>) -> Option<f64> {
    kb.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0)
}

/// Entry point of `tollgate-bench rss`.
pub fn run(args: &RssArgs) -> anyhow::Result<()> {
    let path = format!("/proc/{}/status", args.pid);
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let rss = field_kb(&status, "VmRSS");
    let hwm = field_kb(&status, "VmHWM");
    let report = json!({
        "label": args.label,
        "pid": args.pid,
        "vm_rss_kb": rss,
        "vm_hwm_kb": hwm,
        "vm_rss_mb": mb(rss),
        "vm_hwm_mb": mb(hwm),
    });
    crate::emit_json(&report, args.out.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\ttollgate\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(field_kb(text, "VmRSS"), Some(10240));
        assert_eq!(field_kb(text, "VmHWM"), Some(20480));
        assert_eq!(field_kb(text, "VmSwap"), None);
        assert_eq!(mb(Some(10240)), Some(10.0));
    }
}
