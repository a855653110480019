//! Unit tests of name resolution and weighted choice, on configs parsed by the real config loader.

use std::collections::HashMap;
use std::path::Path;

use tollgate_config::{Env, Overrides, load_str};

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
        .map(|d| Entry {
            deployment: d,
            target: (),
        })
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
fn pick_where_skips_refused_deployments() {
    let r = router(CFG);
    let c = r.candidates("gpt-4o").unwrap();
    for _ in 0..50 {
        let route = r
            .pick_where(c, |e| {
                e.deployment.api_base.as_deref() == Some("http://b/v1")
            })
            .unwrap();
        assert_eq!(
            route.entry.deployment.api_base.as_deref(),
            Some("http://b/v1")
        );
        assert_eq!(route.group, "gpt-4o");
    }
    assert!(r.pick_where(c, |_| false).is_none());
    assert!(r.pick_where(c, |_| true).is_some());
}
