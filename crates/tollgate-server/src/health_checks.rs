//! Deployment health probes and LiteLLM's background health checks.
//!
//! A probe is one cheap request in the deployment's mode (chat, embedding, completion) with the
//! deployment's `health_check_timeout`. Its result goes into the deployment's live state
//! ([`tollgate_router::DeploymentState::set_health`]): the router skips unhealthy deployments (and uses
//! them only when nothing else is left). Cooldowns are left alone. [`run`] is the background job
//! (`general_settings.background_health_checks`): every deployment every `health_check_interval`, at most
//! `health_check_concurrency` probes at once; `GET /health` then answers from the recorded states.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tollgate_config::{Deployment, Mode};
use tollgate_providers::{Call, Endpoint};
use tollgate_router::{Entry, Health};

use crate::state::{AppState, Upstream};

/// A probe's time limit when the deployment sets no `health_check_timeout` (and no shorter `timeout`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// While background checks are off, how often the job looks whether a config reload turned them on.
const DISABLED_RECHECK: Duration = Duration::from_secs(5);

/// Whether a deployment can be probed: wildcard deployments (`openai/*`) name no model to send.
pub fn probeable(e: &Entry<Upstream>) -> bool {
    !e.deployment.model.contains('*') && !e.deployment.model_name.contains('*')
}

/// A probe's time limit: `health_check_timeout`, else the deployment's `timeout` up to [`PROBE_TIMEOUT`].
pub fn probe_timeout(d: &Deployment) -> Duration {
    d.health_check_timeout
        .unwrap_or_else(|| d.timeout.map_or(PROBE_TIMEOUT, |t| t.min(PROBE_TIMEOUT)))
}

/// The probe request for a deployment's mode (or, when its provider does not serve that endpoint, the first
/// endpoint it does serve: a `cohere/` embedding model without `mode` is probed with an embedding).
fn probe_call(
    d: &Deployment,
    upstream_model: &str,
    provider: &dyn tollgate_providers::Provider,
) -> Call {
    let wanted = match d.model_info.mode {
        Some(Mode::Embedding) => Endpoint::Embeddings,
        Some(Mode::Completion) => Endpoint::Completions,
        Some(Mode::Rerank) => Endpoint::Rerank,
        _ => Endpoint::ChatCompletions,
    };
    let endpoint = if provider.supports(wanted) {
        wanted
    } else {
        [
            Endpoint::ChatCompletions,
            Endpoint::Embeddings,
            Endpoint::Rerank,
            Endpoint::Completions,
        ]
        .into_iter()
        .find(|e| provider.supports(*e))
        .unwrap_or(wanted)
    };
    let body = match endpoint {
        Endpoint::Embeddings => json!({"model": upstream_model, "input": "ping"}),
        Endpoint::Completions => {
            json!({"model": upstream_model, "prompt": "ping", "max_tokens": 1})
        }
        Endpoint::Rerank => {
            json!({"model": upstream_model, "query": "ping", "documents": ["ping"], "top_n": 1})
        }
        _ => {
            json!({"model": upstream_model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})
        }
    };
    Call {
        endpoint,
        body: Bytes::from(body.to_string()),
        requested_model: d.model_name.clone(),
        upstream_model: upstream_model.to_string(),
        stream: false,
        client_wants_usage: false,
        request_id: tollgate_core::ids::new_request_id(),
        traceparent: None,
        timeout: probe_timeout(d),
    }
}

/// One probe's result: `Err` holds the public error message (never a key or a credential).
pub type Outcome = Result<(), String>;

/// Probe one deployment (does not record the result).
pub async fn probe(e: &Entry<Upstream>) -> Outcome {
    let d = &e.deployment;
    let limit = probe_timeout(d);
    let call = probe_call(d, &d.model, e.target.provider.as_ref());
    match tokio::time::timeout(limit, e.target.provider.call(call)).await {
        // A stream (not asked for) is dropped unread: the deployment answered.
        Ok(Ok(_reply)) => Ok(()),
        Ok(Err(err)) => Err(err.public_message()),
        Err(_) => Err(format!(
            "health check timed out after {}s",
            limit.as_secs_f64()
        )),
    }
}

/// Record a probe's result in the deployment's state; one log line when it turns unhealthy (warn) or
/// recovers (info).
pub fn record(e: &Entry<Upstream>, outcome: &Outcome, now_ms: i64) {
    let d = &e.deployment;
    match outcome {
        Ok(()) => {
            let before = e.state.set_health(Health::Healthy, None, now_ms);
            if before == Health::Unhealthy {
                tracing::info!(
                    model_name = %d.model_name, model_id = %d.id, api_base = %e.target.provider.api_base(),
                    "deployment passed its health check again; routing uses it again"
                );
            }
        }
        Err(error) => {
            let before = e
                .state
                .set_health(Health::Unhealthy, Some(error.clone()), now_ms);
            if before != Health::Unhealthy {
                tracing::warn!(
                    model_name = %d.model_name, model_id = %d.id, api_base = %e.target.provider.api_base(),
                    error = %error,
                    "deployment failed its health check; routing avoids it while others are available"
                );
            }
        }
    }
}

/// Probe `entries`, at most `concurrency` at once, recording each result as it comes. Returns the
/// outcomes with the time each was recorded (Unix ms), in the order of `entries`.
pub async fn check(
    entries: Vec<&Entry<Upstream>>,
    concurrency: usize,
) -> Vec<(&Entry<Upstream>, Outcome, i64)> {
    // The futures are collected first: a lazy `map` over borrowed entries trips the compiler's
    // higher-ranked `Send` check in handlers.
    let probes: Vec<_> = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| probe_and_record(i, e))
        .collect();
    let mut done: Vec<_> = stream::iter(probes)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    done.sort_by_key(|(i, ..)| *i);
    done.into_iter().map(|(_, e, o, t)| (e, o, t)).collect()
}

async fn probe_and_record(
    i: usize,
    e: &Entry<Upstream>,
) -> (usize, &Entry<Upstream>, Outcome, i64) {
    let outcome = probe(e).await;
    let now = tollgate_store::now_ms();
    record(e, &outcome, now);
    (i, e, outcome, now)
}

/// The background job: while `background_health_checks` is on, probe every deployment at once and then
/// every `health_check_interval` (measured from the start of a round). The routing table and settings are
/// read again each round, so a config reload applies from the next round. Ends when `stop` is cancelled
/// (a round in progress is abandoned).
pub async fn run(state: AppState, stop: CancellationToken) {
    let mut was_on: Option<bool> = None;
    loop {
        let started = tokio::time::Instant::now();
        let rt = state.shared().runtime.load_full();
        let settings = &rt.config.routing;
        let (on, interval) = (
            settings.background_health_checks,
            settings.health_check_interval,
        );
        if was_on != Some(on) {
            if on {
                tracing::info!(
                    interval_s = interval.as_secs_f64(),
                    concurrency = settings.health_check_concurrency,
                    "background health checks on"
                );
            } else if was_on.is_some() {
                tracing::info!("background health checks off");
            }
            was_on = Some(on);
        }
        if on {
            let entries: Vec<_> = rt
                .router
                .entries()
                .iter()
                .filter(|e| probeable(e))
                .collect();
            let n = entries.len();
            let round = check(entries, settings.health_check_concurrency);
            tokio::select! {
                _ = stop.cancelled() => return,
                results = round => {
                    let unhealthy = results.iter().filter(|(_, o, _)| o.is_err()).count();
                    tracing::debug!(deployments = n, unhealthy, "health check round done");
                }
            }
        }
        drop(rt);
        let wait = if on {
            interval
        } else {
            DISABLED_RECHECK.min(interval)
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(started + wait) => {}
        }
    }
}
