//! Cold start: time from spawning a server command to its first HTTP 200, repeated N times.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::ColdstartArgs;

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Median of a non-empty list (mean of the two middle values for an even count).
fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((m * 1e3).round() / 1e3)
}

fn distribution(values: &[f64]) -> Value {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match median(values) {
        Some(med) => json!({ "median": med, "min": min, "max": max, "samples": values }),
        None => Value::Null,
    }
}

/// Kills the child's whole process group when dropped (TERM, then KILL after a grace period).
struct Reaper(Child);

impl Reaper {
    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.0.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                // The leader is gone; make sure no stray children are left either.
                self.signal_group("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.signal_group("-KILL");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Extracts `host:port` from the first `http://host:port` in a line.
fn authority_in(line: &str) -> Option<String> {
    let rest = &line[line.find("http://")? + "http://".len()..];
    let end = rest
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    let auth = rest[..end].trim_end_matches(['.', ',', ')']);
    (!auth.is_empty()).then(|| auth.to_string())
}

/// One `GET path` on a fresh connection; returns the status code.
fn probe(authority: &str, path: &str) -> anyhow::Result<u16> {
    let addr = authority
        .to_socket_addrs()?
        .next()
        .context("address did not resolve")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let text = std::str::from_utf8(&head)?;
    if !text.starts_with("HTTP/1.") {
        bail!("not an HTTP response: {text:?}");
    }
    Ok(text[9..12].parse()?)
}

struct RunResult {
    first_200: Duration,
    listening: Option<Duration>,
}

fn one_run(args: &ColdstartArgs) -> anyhow::Result<RunResult> {
    let (program, rest) = args.command.split_first().context("no command given")?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let mut child = Reaper(child);
    let deadline = start + args.timeout;

    // Drain both pipes on threads so the child never blocks on a full pipe.
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.0.stdout.take().context("no stdout pipe")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send((Instant::now(), line));
        }
    });
    let stderr_tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let stderr = child.0.stderr.take().context("no stderr pipe")?;
    let tail = Arc::clone(&stderr_tail);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut t) = tail.lock() {
                if t.len() >= 20 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
    let fail = |why: String| -> anyhow::Error {
        let tail = stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        anyhow::anyhow!("{why}; child stderr tail:\n{tail}")
    };

    let (authority, listening) = match &args.url {
        Some(url) => (
            authority_in(url).with_context(|| format!("--url {url:?} is not http://host:port"))?,
            None,
        ),
        None => loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, line)) => {
                    if let Some(auth) = authority_in(&line) {
                        break (auth, Some(at.saturating_duration_since(start)));
                    }
                }
                Err(_) => {
                    return Err(fail(
                        "no stdout line with http://host:port before the timeout or exit".into(),
                    ));
                }
            }
        },
    };

    loop {
        let last_err = match probe(&authority, &args.health_path) {
            Ok(200) => break,
            Ok(code) => format!("HTTP {code}"),
            Err(e) => format!("{e:#}"),
        };
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(fail(format!(
                "server exited with {status} (last poll: {last_err})"
            )));
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "no 200 from {authority}{} within {:?} (last: {last_err})",
                args.health_path, args.timeout
            )));
        }
        std::thread::sleep(args.poll_interval);
    }
    let first_200 = start.elapsed();
    drop(child);
    Ok(RunResult {
        first_200,
        listening,
    })
}

/// Entry point of `tollgate-bench coldstart`.
pub fn run(args: &ColdstartArgs) -> anyhow::Result<()> {
    let mut first_200 = Vec::new();
    let mut listening = Vec::new();
    for i in 0..args.runs.max(1) {
        let r = one_run(args).with_context(|| format!("cold start run {}", i + 1))?;
        eprintln!(
            "coldstart run {}: first 200 after {:.3} ms{}",
            i + 1,
            ms(r.first_200),
            r.listening
                .map(|l| format!(" (listening line after {:.3} ms)", ms(l)))
                .unwrap_or_default()
        );
        first_200.push(ms(r.first_200));
        if let Some(l) = r.listening {
            listening.push(ms(l));
        }
    }
    let report = json!({
        "label": args.label,
        "command": args.command,
        "health_path": args.health_path,
        "runs": first_200.len(),
        "first_200_ms": distribution(&first_200),
        "listening_line_ms": distribution(&listening),
    });
    if let Some(m) = median(&first_200) {
        eprintln!(
            "{}cold start: median {m:.3} ms over {} runs",
            if args.label.is_empty() {
                String::new()
            } else {
                format!("{}: ", args.label)
            },
            first_200.len()
        );
    }
    crate::emit_json(&report, args.out.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_authority() {
        assert_eq!(
            authority_in("tollgate listening on http://127.0.0.1:4000").as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(
            authority_in("Serving on http://0.0.0.0:8000/ (x)").as_deref(),
            Some("0.0.0.0:8000")
        );
        assert_eq!(authority_in("no url here"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
