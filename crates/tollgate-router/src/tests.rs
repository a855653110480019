//! Unit tests of name resolution and weighted choice, on configs parsed by the real config loader.

use std::collections::HashMap;
use std::path::Path;

use tollgate_config::{Env, Overrides, Strategy, load_str};

use super::*;

fn router(yaml: &str) -> Router<()> {
    let cfg = load_str(
        yaml,
        Path::new("test.yaml"),
        &Env::from_map([]),
        &Overrides::default(),
    )
    .unwrap();
    let entries = cfg
        .deployments
        .iter()
        .cloned()
        .map(|d| Entry::new(d, ()))
        .collect();
    Router::new(
        entries,
        cfg.model_group_alias.clone(),
        cfg.hidden_model_group_aliases.clone(),
    )
}

const CFG: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params: { model: openai/gpt-4o-2024-08-06, api_base: "http://a/v1", weight: 3 }
  - model_name: gpt-4o
    litellm_params: { model: openai/gpt-4o-2024-08-06, api_base: "http://b/v1", weight: 1 }
  - model_name: "openai/*"
    litellm_params: { model: "openai/*", api_base: "http://c/v1" }
  - model_name: "*"
    litellm_params: { model: "hosted_vllm/*", api_base: "http://d/v1" }
router_settings:
  model_group_alias: { "gpt4": "gpt-4o" }
"#;

#[test]
fn exact_alias_and_wildcards_resolve() {
    let r = router(CFG);
    let exact = r.route("gpt-4o").unwrap();
    assert_eq!(
        (exact.group, exact.upstream_model.as_ref()),
        ("gpt-4o", "gpt-4o-2024-08-06")
    );
    let alias = r.route("gpt4").unwrap();
    assert_eq!(alias.group, "gpt-4o");
    let w = r.route("openai/gpt-4.1").unwrap();
    assert_eq!(
        (w.group, w.upstream_model.as_ref()),
        ("openai/*", "gpt-4.1")
    );
    let any = r.route("llama-3").unwrap();
    assert_eq!((any.group, any.upstream_model.as_ref()), ("*", "llama-3"));
    assert_eq!(any.entry.deployment.provider, "hosted_vllm");
    assert_eq!(r.model_names(), vec!["*", "gpt-4o", "gpt4", "openai/*"]);
}

#[test]
fn nothing_routes_without_a_match() {
    let r = router(
        r#"
model_list:
  - model_name: a
    litellm_params: { model: openai/a, api_base: "http://a/v1" }
"#,
    );
    assert!(r.route("b").is_none());
    assert!(!r.knows("b"));
    assert!(r.knows("a"));
}

#[test]
fn weights_shape_the_distribution() {
    let r = router(CFG);
    let mut counts: HashMap<String, u32> = HashMap::new();
    let n = 20_000;
    for _ in 0..n {
        let route = r.route("gpt-4o").unwrap();
        *counts
            .entry(route.entry.deployment.api_base.clone().unwrap())
            .or_default() += 1;
    }
    let a = counts["http://a/v1"] as f64 / n as f64;
    // Expected 0.75; 20k draws give a standard deviation of about 0.003, so 0.03 is a ten-sigma bound.
    assert!((a - 0.75).abs() < 0.03, "share of weight-3 deployment: {a}");
}

#[test]
fn hidden_aliases_route_but_are_not_listed() {
    let r = router(
        r#"
model_list:
  - model_name: a
    litellm_params: { model: openai/a, api_base: "http://a/v1" }
router_settings:
  model_group_alias:
    secret-alias: { model: a, hidden: true }
"#,
    );
    assert!(r.route("secret-alias").is_some());
    assert_eq!(r.model_names(), vec!["a"]);
}

#[test]
fn wildcard_capture_respects_prefix_and_suffix() {
    let w = Wildcard::parse("openai/*-mini").unwrap();
    assert_eq!(w.capture("openai/gpt-4o-mini"), Some("gpt-4o"));
    assert_eq!(w.capture("openai/gpt-4o"), None);
    assert_eq!(w.capture("openai/-mini"), Some(""));
    assert_eq!(upstream_model("x/*", Some("y")), "x/y");
    assert_eq!(upstream_model("fixed", Some("y")), "fixed");
}

#[test]
fn pick_skips_refused_deployments() {
    let r = router(CFG);
    let c = r.candidates("gpt-4o").unwrap();
    let o = PickOptions::default();
    for _ in 0..50 {
        let route = r
            .pick(c, &o, |e| {
                e.deployment.api_base.as_deref() == Some("http://b/v1")
            })
            .unwrap();
        assert_eq!(
            route.entry.deployment.api_base.as_deref(),
            Some("http://b/v1")
        );
        assert_eq!(route.group, "gpt-4o");
    }
    assert_eq!(r.pick(c, &o, |_| false).err(), Some(Unavailable::Refused));
    assert!(r.pick(c, &o, |_| true).is_ok());
}

/// `n` deployments of group `g` (api bases http://0/v1 ...), with the given strategy line.
fn group(n: usize, extra: &str) -> Router<()> {
    let mut yaml = String::from("model_list:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{ model: openai/m, api_base: \"http://{i}/v1\"{extra} }}\n"
        ));
    }
    router(&yaml)
}

fn base(r: &Router<()>, route: &Route<'_, ()>) -> usize {
    let _ = r;
    route.entry.deployment.api_base.as_deref().unwrap()[7..]
        .trim_end_matches("/v1")
        .parse()
        .unwrap()
}

#[test]
fn cooling_and_unhealthy_deployments_are_skipped() {
    let r = group(3, "");
    let c = r.candidates("g").unwrap();
    let now = 1_000_000;
    r.entries()[0].state.cool_down_until(now + 5_000);
    r.entries()[1]
        .state
        .set_health(Health::Unhealthy, Some("down".into()), now);
    let o = PickOptions {
        now_ms: now,
        ..PickOptions::default()
    };
    for _ in 0..100 {
        assert_eq!(base(&r, &r.pick(c, &o, |_| true).unwrap()), 2);
    }
    // Only the unhealthy one is left: it is used rather than refusing.
    r.entries()[2].state.cool_down_until(now + 2_000);
    assert_eq!(base(&r, &r.pick(c, &o, |_| true).unwrap()), 1);
    // Everything cooling: the wait until the first is back.
    r.entries()[1].state.cool_down_until(now + 9_000);
    assert_eq!(
        r.pick(c, &o, |_| true).err(),
        Some(Unavailable::CoolingDown {
            retry_after: std::time::Duration::from_millis(2_000)
        })
    );
    // After the cooldown ends, the deployment is back.
    let later = PickOptions {
        now_ms: now + 2_000,
        ..o
    };
    assert_eq!(base(&r, &r.pick(c, &later, |_| true).unwrap()), 2);
}

#[test]
fn tried_deployments_are_avoided_until_none_is_left() {
    let r = group(2, "");
    let c = r.candidates("g").unwrap();
    let avoid = [0usize];
    let o = PickOptions {
        avoid: &avoid,
        ..PickOptions::default()
    };
    for _ in 0..50 {
        assert_eq!(base(&r, &r.pick(c, &o, |_| true).unwrap()), 1);
    }
    let both = [0usize, 1];
    let o = PickOptions {
        avoid: &both,
        ..PickOptions::default()
    };
    assert!(r.pick(c, &o, |_| true).is_ok());
}

fn share(r: &Router<()>, o: &PickOptions<'_>, n: usize, k: usize) -> Vec<f64> {
    let c = r.candidates("g").unwrap();
    let mut counts = vec![0usize; k];
    for _ in 0..n {
        counts[base(r, &r.pick(c, o, |_| true).unwrap())] += 1;
    }
    counts.iter().map(|&x| x as f64 / n as f64).collect()
}

#[test]
fn least_busy_prefers_the_fewest_in_flight() {
    let r = group(3, "");
    for _ in 0..5 {
        r.entries()[0].state.start(0);
    }
    r.entries()[1].state.start(0);
    let o = PickOptions {
        strategy: Strategy::LeastBusy,
        ..PickOptions::default()
    };
    assert_eq!(share(&r, &o, 200, 3), vec![0.0, 0.0, 1.0]);
    // Ties are broken at random: with equal load each gets about a third.
    r.entries()[2].state.start(0);
    r.entries()[2].state.start(0);
    r.entries()[1].state.start(0);
    let s = share(&r, &o, 3_000, 3);
    assert!(s[0] == 0.0 && (s[1] - 0.5).abs() < 0.06, "{s:?}");
}

#[test]
fn latency_based_prefers_the_fastest_within_the_buffer() {
    let r = group(3, "");
    let now = 10_000_000;
    r.entries()[0].state.record_success(100.0, 0, now);
    r.entries()[1].state.record_success(105.0, 0, now);
    r.entries()[2].state.record_success(300.0, 0, now);
    let strict = PickOptions {
        strategy: Strategy::LatencyBased {
            ttl: std::time::Duration::from_secs(3600),
            lowest_latency_buffer: 0.0,
        },
        now_ms: now,
        avoid: &[],
    };
    assert_eq!(share(&r, &strict, 100, 3), vec![1.0, 0.0, 0.0]);
    let buffered = PickOptions {
        strategy: Strategy::LatencyBased {
            ttl: std::time::Duration::from_secs(3600),
            lowest_latency_buffer: 0.1,
        },
        ..strict
    };
    // 100 and 105 are within 10% of each other: about half each; 300 never.
    let s = share(&r, &buffered, 4_000, 3);
    assert!((s[0] - 0.5).abs() < 0.05 && s[2] == 0.0, "{s:?}");
    // Samples older than the ttl are forgotten: every deployment counts as untried (0 ms).
    let stale = PickOptions {
        now_ms: now + 3_600_001,
        ..strict
    };
    let s = share(&r, &stale, 3_000, 3);
    assert!(s.iter().all(|x| (x - 1.0 / 3.0).abs() < 0.06), "{s:?}");
}

#[test]
fn usage_based_prefers_the_least_used_this_minute() {
    let r = group(3, "");
    let now = 120_000;
    r.entries()[0].state.add_tokens(1_000, now);
    r.entries()[1].state.add_tokens(10, now);
    r.entries()[2].state.add_tokens(500, now);
    let o = PickOptions {
        strategy: Strategy::UsageBased,
        now_ms: now,
        avoid: &[],
    };
    assert_eq!(share(&r, &o, 100, 3), vec![0.0, 1.0, 0.0]);
    // The next minute starts from zero for everyone.
    let next = PickOptions {
        now_ms: now + 60_000,
        ..o
    };
    let s = share(&r, &next, 3_000, 3);
    assert!(s.iter().all(|x| (x - 1.0 / 3.0).abs() < 0.06), "{s:?}");
}

#[test]
fn cost_based_prefers_the_cheapest() {
    let cfg = load_str(
        r#"
model_list:
  - model_name: g
    litellm_params: { model: openai/m, api_base: "http://0/v1" }
  - model_name: g
    litellm_params: { model: openai/m, api_base: "http://1/v1" }
  - model_name: g
    litellm_params: { model: openai/m, api_base: "http://2/v1" }
"#,
        Path::new("t.yaml"),
        &Env::from_map([]),
        &Overrides::default(),
    )
    .unwrap();
    let costs = [Some(3e-6), Some(1e-6), None];
    let entries = cfg
        .deployments
        .iter()
        .zip(costs)
        .map(|(d, c)| Entry {
            cost_per_token: c,
            ..Entry::new(d.clone(), ())
        })
        .collect();
    let r = Router::new(entries, Default::default(), Default::default());
    let o = PickOptions {
        strategy: Strategy::CostBased,
        ..PickOptions::default()
    };
    assert_eq!(share(&r, &o, 100, 3), vec![0.0, 1.0, 0.0]);
}

#[test]
fn large_groups_pick_without_scanning_and_still_find_the_few_available() {
    let r = group(1_000, "");
    let c = r.candidates("g").unwrap();
    let now = 1_000;
    // All but three cooling: the fallback scan finds them.
    for (i, e) in r.entries().iter().enumerate() {
        if ![10, 500, 999].contains(&i) {
            e.state.cool_down_until(now + 60_000);
        }
    }
    for strategy in [
        Strategy::SimpleShuffle,
        Strategy::LeastBusy,
        Strategy::UsageBased,
    ] {
        let o = PickOptions {
            strategy,
            now_ms: now,
            avoid: &[],
        };
        for _ in 0..20 {
            let got = base(&r, &r.pick(c, &o, |_| true).unwrap());
            assert!([10, 500, 999].contains(&got), "{strategy:?}: {got}");
        }
    }
}

#[test]
fn weighted_shuffle_over_a_large_group_follows_the_weights() {
    let mut yaml = String::from("model_list:\n");
    for i in 0..100 {
        let w = if i == 0 { 99 } else { 1 };
        yaml.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{ model: openai/m, api_base: \"http://{i}/v1\", weight: {w} }}\n"
        ));
    }
    let r = router(&yaml);
    let s = share(&r, &PickOptions::default(), 20_000, 100);
    // Expected: 99/198 = 0.5 for the first; sd ~0.0035 at 20k draws.
    assert!((s[0] - 0.5).abs() < 0.03, "{}", s[0]);
}
