//! Router settings: routing strategy and its args, retries and retry policies, allowed fails and cooldowns, fallbacks in every LiteLLM form, `litellm_settings` vs `router_settings` precedence, health-check settings, per-deployment `num_retries`/`health_check_timeout`, and the warnings for fallbacks naming unknown groups.

use std::path::Path;
use std::time::Duration;

use tollgate_config::{
    ClassPolicy, Config, ConfigError, Env, ErrorClass, Overrides, RoutingSettings, Strategy,
    load_str,
};

fn load_text(text: &str) -> Result<Config, ConfigError> {
    load_str(
        text,
        Path::new("config.yaml"),
        &Env::from_map(std::iter::empty()),
        &Overrides::default(),
    )
}

fn error_text(text: &str) -> String {
    match load_text(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Two model groups, `gpt-4o` and `claude`, then `rest`.
fn with_models(rest: &str) -> String {
    format!(
        "\
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o}}
  - model_name: claude
    litellm_params: {{model: anthropic/claude-3-5-sonnet}}
{rest}"
    )
}

fn routing(rest: &str) -> RoutingSettings {
    match load_text(&with_models(rest)) {
        Ok(config) => config.routing,
        Err(e) => panic!("expected to load:\n{e}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn policy(pairs: &[(ErrorClass, u32)]) -> ClassPolicy {
    ClassPolicy {
        counts: pairs.iter().copied().collect(),
    }
}

#[test]
fn defaults_when_absent() {
    let c = load_text(&with_models("")).expect("loads");
    let r = &c.routing;
    assert_eq!(*r, RoutingSettings::default());
    assert_eq!(r.strategy, Strategy::SimpleShuffle);
    assert_eq!(r.num_retries, 2);
    assert_eq!(r.retry_after, Duration::ZERO);
    assert!(r.retry_policy.counts.is_empty());
    assert!(r.model_group_retry_policy.is_empty());
    assert_eq!(r.allowed_fails, 3);
    assert!(r.allowed_fails_policy.counts.is_empty());
    assert_eq!(r.cooldown_time, Duration::from_secs(5));
    assert!(!r.disable_cooldowns);
    assert!(r.fallbacks.is_empty());
    assert!(r.context_window_fallbacks.is_empty());
    assert!(r.content_policy_fallbacks.is_empty());
    assert!(r.default_fallbacks.is_empty());
    assert_eq!(r.max_fallbacks, 5);
    assert!(!r.enable_pre_call_checks);
    assert_eq!(r.stream_timeout, None);
    assert!(!r.background_health_checks);
    assert_eq!(r.health_check_interval, Duration::from_secs(300));
    assert_eq!(r.health_check_concurrency, 8);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let d = &c.deployments[0];
    assert_eq!((d.num_retries, d.health_check_timeout), (None, None));
}

#[test]
fn every_strategy_name() {
    let cases = [
        ("simple-shuffle", Strategy::SimpleShuffle),
        ("least-busy", Strategy::LeastBusy),
        (
            "latency-based-routing",
            Strategy::LatencyBased {
                ttl: Duration::from_secs(3600),
                lowest_latency_buffer: 0.0,
            },
        ),
        ("usage-based-routing", Strategy::UsageBased),
        ("usage-based-routing-v2", Strategy::UsageBased),
        ("cost-based-routing", Strategy::CostBased),
    ];
    for (name, expected) in cases {
        let r = routing(&format!("router_settings:\n  routing_strategy: {name}\n"));
        assert_eq!(r.strategy, expected, "{name}");
    }
}

#[test]
fn unknown_strategy_lists_the_accepted_ones() {
    assert_eq!(
        error_text(&with_models(
            "router_settings:\n  routing_strategy: latency-based\n"
        )),
        "config.yaml:7:21: router_settings.routing_strategy: unknown routing strategy the string \"latency-based\"; expected one of: simple-shuffle, least-busy, latency-based-routing, usage-based-routing, usage-based-routing-v2, cost-based-routing"
    );
    assert_eq!(
        error_text(&with_models(
            "router_settings:\n  routing_strategy: least-bussy\n"
        )),
        "config.yaml:7:21: router_settings.routing_strategy: unknown routing strategy the string \"least-bussy\"; did you mean `least-busy`? expected one of: simple-shuffle, least-busy, latency-based-routing, usage-based-routing, usage-based-routing-v2, cost-based-routing"
    );
}

#[test]
fn latency_args() {
    // Args may come before the strategy.
    let c = load_text(&with_models(
        "\
router_settings:
  routing_strategy_args:
    ttl: 60
    lowest_latency_buffer: 0.5
    max_latency_list_size: 10
  routing_strategy: latency-based-routing
",
    ))
    .expect("loads");
    assert_eq!(
        c.routing.strategy,
        Strategy::LatencyBased {
            ttl: Duration::from_secs(60),
            lowest_latency_buffer: 0.5
        }
    );
    assert_eq!(
        c.warnings,
        [
            "config.yaml:10:5: router_settings.routing_strategy_args.max_latency_list_size: not used by tollgate (latency-based-routing reads `ttl` and `lowest_latency_buffer`); ignored"
        ]
    );

    let c = load_text(&with_models(
        "\
router_settings:
  routing_strategy: usage-based-routing-v2
  routing_strategy_args: {ttl: 60, other: 1}
",
    ))
    .expect("loads");
    assert_eq!(c.routing.strategy, Strategy::UsageBased);
    assert_eq!(
        c.warnings,
        [
            "config.yaml:8:27: router_settings.routing_strategy_args.ttl: only used by latency-based-routing, not usage-based-routing-v2; ignored",
            "config.yaml:8:36: router_settings.routing_strategy_args.other: not used by tollgate with usage-based-routing-v2; ignored",
        ]
    );

    assert_eq!(
        error_text(&with_models(
            "\
router_settings:
  routing_strategy: latency-based-routing
  routing_strategy_args:
    ttl: soon
    lowest_latency_buffer: -1
"
        )),
        "\
config.yaml:9:10: router_settings.routing_strategy_args.ttl: expected a number of seconds, found the string \"soon\"
config.yaml:10:28: router_settings.routing_strategy_args.lowest_latency_buffer: must not be negative, found the number -1"
    );
    assert_eq!(
        error_text(&with_models(
            "router_settings:\n  routing_strategy_args: [1]\n"
        )),
        "config.yaml:7:26: router_settings.routing_strategy_args: expected a mapping of arguments, found a list"
    );
}

#[test]
fn retries_cooldowns_and_switches() {
    let r = routing(
        "\
router_settings:
  num_retries: 4
  retry_after: 1.5
  allowed_fails: 1
  cooldown_time: 30
  disable_cooldowns: true
  enable_pre_call_check: true
  stream_timeout: 12
  max_fallbacks: 2
general_settings:
  background_health_checks: true
  health_check_interval: 60
  health_check_concurrency: 2
",
    );
    assert_eq!(r.num_retries, 4);
    assert_eq!(r.retry_after, Duration::from_millis(1500));
    assert_eq!(r.allowed_fails, 1);
    assert_eq!(r.cooldown_time, Duration::from_secs(30));
    assert!(r.disable_cooldowns);
    assert!(r.enable_pre_call_checks);
    assert_eq!(r.stream_timeout, Some(Duration::from_secs(12)));
    assert_eq!(r.max_fallbacks, 2);
    assert!(r.background_health_checks);
    assert_eq!(r.health_check_interval, Duration::from_secs(60));
    assert_eq!(r.health_check_concurrency, 2);

    // The documented name wins over the alias.
    let r = routing(
        "router_settings:\n  enable_pre_call_checks: false\n  enable_pre_call_check: true\n",
    );
    assert!(!r.enable_pre_call_checks);
    let r = routing("router_settings:\n  num_retries: 0\n  allowed_fails: 0\n");
    assert_eq!((r.num_retries, r.allowed_fails), (0, 0));
}

#[test]
fn these_keys_are_implemented() {
    let c = load_text(&with_models(
        "\
router_settings:
  routing_strategy: least-busy
  routing_strategy_args: {}
  num_retries: 1
  retry_after: 0
  retry_policy: {}
  model_group_retry_policy: {}
  allowed_fails: 1
  allowed_fails_policy: {}
  cooldown_time: 1
  disable_cooldowns: false
  fallbacks: []
  context_window_fallbacks: []
  content_policy_fallbacks: []
  default_fallbacks: []
  max_fallbacks: 1
  enable_pre_call_checks: true
  enable_pre_call_check: true
  stream_timeout: 1
litellm_settings:
  num_retries: 1
  allowed_fails: 1
  fallbacks: []
  context_window_fallbacks: []
  content_policy_fallbacks: []
  default_fallbacks: []
  max_fallbacks: 1
general_settings:
  background_health_checks: true
  health_check_interval: 1
  health_check_concurrency: 1
",
    ))
    .expect("loads");
    assert!(c.unimplemented.is_empty(), "{:?}", c.unimplemented);
}

#[test]
fn router_settings_win_over_litellm_settings() {
    let both = "\
litellm_settings:
  num_retries: 5
  allowed_fails: 7
  max_fallbacks: 9
  fallbacks: [{gpt-4o: claude}]
  context_window_fallbacks: [{gpt-4o: claude}]
  content_policy_fallbacks: [{gpt-4o: claude}]
  default_fallbacks: [claude]
router_settings:
  num_retries: 1
  allowed_fails: 2
  max_fallbacks: 3
  fallbacks: [{claude: gpt-4o}]
  context_window_fallbacks: [{claude: gpt-4o}]
  content_policy_fallbacks: []
  default_fallbacks: [gpt-4o]
";
    let r = routing(both);
    assert_eq!((r.num_retries, r.allowed_fails, r.max_fallbacks), (1, 2, 3));
    let claude_to_gpt = vec![("claude".to_owned(), strings(&["gpt-4o"]))];
    let gpt_to_claude = vec![("gpt-4o".to_owned(), strings(&["claude"]))];
    assert_eq!(r.fallbacks, claude_to_gpt);
    assert_eq!(r.context_window_fallbacks, claude_to_gpt);
    // An empty router_settings list counts as unset (LiteLLM: `router value or litellm value`).
    assert_eq!(r.content_policy_fallbacks, gpt_to_claude);
    assert_eq!(r.default_fallbacks, ["gpt-4o"]);

    // litellm_settings alone.
    let only_litellm = both.split("router_settings:").next().unwrap_or_default();
    let r = routing(only_litellm);
    assert_eq!((r.num_retries, r.allowed_fails, r.max_fallbacks), (5, 7, 9));
    assert_eq!(r.fallbacks, gpt_to_claude);
    assert_eq!(r.context_window_fallbacks, gpt_to_claude);
    assert_eq!(r.content_policy_fallbacks, gpt_to_claude);
    assert_eq!(r.default_fallbacks, ["claude"]);
}

#[test]
fn fallback_forms() {
    let c = load_text(&with_models(
        "\
router_settings:
  fallbacks:
    - {\"gpt-4o\": [\"claude\", \"gpt-4o\"]}
    - claude: gpt-4o
    - \"*\": [claude]
    - gpt-4o: null
  context_window_fallbacks:
    - gpt-4o:
        - claude
  content_policy_fallbacks: [{claude: []}]
  default_fallbacks: claude
",
    ))
    .expect("loads");
    let r = &c.routing;
    assert_eq!(
        r.fallbacks,
        [
            ("gpt-4o".to_owned(), strings(&["claude", "gpt-4o"])),
            ("claude".to_owned(), strings(&["gpt-4o"])),
            ("*".to_owned(), strings(&["claude"])),
            ("gpt-4o".to_owned(), Vec::new()),
        ]
    );
    assert_eq!(
        r.context_window_fallbacks,
        [("gpt-4o".to_owned(), strings(&["claude"]))]
    );
    assert_eq!(
        r.content_policy_fallbacks,
        [("claude".to_owned(), Vec::new())]
    );
    assert_eq!(r.default_fallbacks, ["claude"]);
    // The repeated group is kept but noted: LiteLLM only looks at the first.
    assert_eq!(
        c.warnings,
        [
            "config.yaml:11:7: router_settings.fallbacks[3].gpt-4o: `gpt-4o` already has fallbacks at router_settings.fallbacks[0]; LiteLLM uses the first"
        ]
    );
}

#[test]
fn wrong_fallback_shapes_name_the_path_and_line() {
    assert_eq!(
        error_text(&with_models(
            "\
router_settings:
  fallbacks: {gpt-4o: [claude]}
  context_window_fallbacks:
    - gpt-4o
    - {gpt-4o: [claude], claude: [gpt-4o]}
    - gpt-4o: {model: claude}
    - gpt-4o: [[claude]]
litellm_settings:
  default_fallbacks: {a: b}
  content_policy_fallbacks: claude
"
        )),
        "\
config.yaml:7:14: router_settings.fallbacks: expected a list of single-key mappings (`- model-group: [fallback-group, ...]`), found a mapping
config.yaml:9:7: router_settings.context_window_fallbacks[0]: expected a mapping of one model group to its fallbacks (`- model-group: [fallback-group, ...]`), found the string \"gpt-4o\"
config.yaml:10:7: router_settings.context_window_fallbacks[1]: expected exactly one model group per item (`- model-group: [fallback-group, ...]`), found 2 keys
config.yaml:11:15: router_settings.context_window_fallbacks[2].gpt-4o: expected a list of model groups, found a mapping
config.yaml:12:16: router_settings.context_window_fallbacks[3].gpt-4o[0]: expected a string, found a list
config.yaml:14:22: litellm_settings.default_fallbacks: expected a list of model groups, found a mapping
config.yaml:15:29: litellm_settings.content_policy_fallbacks: expected a list of single-key mappings (`- model-group: [fallback-group, ...]`), found the string \"claude\""
    );
    assert_eq!(
        error_text(&with_models(
            "router_settings:\n  fallbacks: [{gpt-4o: [\"\"]}]\n"
        )),
        "config.yaml:7:25: router_settings.fallbacks[0].gpt-4o[0]: the model group must not be empty"
    );
}

#[test]
fn retry_and_allowed_fails_policies() {
    let r = routing(
        "\
router_settings:
  retry_policy:
    BadRequestErrorRetries: 0
    AuthenticationErrorRetries: 1
    TimeoutErrorRetries: 2
    RateLimitErrorRetries: 3
    ContentPolicyViolationErrorRetries: 4
    InternalServerErrorRetries: \"5\"
  allowed_fails_policy:
    BadRequestErrorAllowedFails: 10
    AuthenticationErrorAllowedFails: 11
    TimeoutErrorAllowedFails: 12
    RateLimitErrorAllowedFails: 13
    ContentPolicyViolationErrorAllowedFails: 14
    InternalServerErrorAllowedFails: 15
  model_group_retry_policy:
    claude: {RateLimitErrorRetries: 9}
    gpt-4o: {}
",
    );
    use ErrorClass::{
        Authentication, BadRequest, ContentPolicyViolation, InternalServer, RateLimit, Timeout,
    };
    assert_eq!(
        r.retry_policy,
        policy(&[
            (BadRequest, 0),
            (Authentication, 1),
            (Timeout, 2),
            (RateLimit, 3),
            (ContentPolicyViolation, 4),
            (InternalServer, 5),
        ])
    );
    assert_eq!(r.retry_policy.get(Timeout), Some(2));
    assert_eq!(
        r.allowed_fails_policy,
        policy(&[
            (BadRequest, 10),
            (Authentication, 11),
            (Timeout, 12),
            (RateLimit, 13),
            (ContentPolicyViolation, 14),
            (InternalServer, 15),
        ])
    );
    assert_eq!(r.model_group_retry_policy.len(), 2);
    assert_eq!(
        r.model_group_retry_policy["claude"],
        policy(&[(RateLimit, 9)])
    );
    assert_eq!(r.model_group_retry_policy["claude"].get(Timeout), None);
    assert_eq!(r.model_group_retry_policy["gpt-4o"], ClassPolicy::default());
}

#[test]
fn unknown_policy_keys_and_wrong_types() {
    assert_eq!(
        error_text(&with_models(
            "\
router_settings:
  retry_policy:
    RateLimitErrorRetry: 3
    TimeoutErrorRetries: many
    Whatever: 1
  allowed_fails_policy:
    RateLimitErrorRetries: 2
  model_group_retry_policy:
    claude: {InternalServerErorRetries: 1}
    gpt-4o: 3
"
        )),
        "\
config.yaml:8:5: router_settings.retry_policy.RateLimitErrorRetry: unknown error class; did you mean `RateLimitErrorRetries`?
config.yaml:9:26: router_settings.retry_policy.TimeoutErrorRetries: expected a whole number, found the string \"many\"
config.yaml:10:5: router_settings.retry_policy.Whatever: unknown error class; expected one of: BadRequestErrorRetries, AuthenticationErrorRetries, TimeoutErrorRetries, RateLimitErrorRetries, ContentPolicyViolationErrorRetries, InternalServerErrorRetries
config.yaml:12:5: router_settings.allowed_fails_policy.RateLimitErrorRetries: unknown error class; expected one of: BadRequestErrorAllowedFails, AuthenticationErrorAllowedFails, TimeoutErrorAllowedFails, RateLimitErrorAllowedFails, ContentPolicyViolationErrorAllowedFails, InternalServerErrorAllowedFails
config.yaml:14:14: router_settings.model_group_retry_policy.claude.InternalServerErorRetries: unknown error class; did you mean `InternalServerErrorRetries`?
config.yaml:15:13: router_settings.model_group_retry_policy.gpt-4o: expected a mapping of error class to count (`RateLimitErrorRetries: 3`), found the number 3"
    );
    assert_eq!(
        error_text(&with_models("router_settings:\n  retry_policy: [1]\n")),
        "config.yaml:7:17: router_settings.retry_policy: expected a mapping of error class to count (`RateLimitErrorRetries: 3`), found a list"
    );
}

#[test]
fn type_errors_report_file_line_and_key_path() {
    assert_eq!(
        error_text(&with_models(
            "\
router_settings:
  num_retries: -1
  retry_after: later
  allowed_fails: 1.5
  cooldown_time: -2
  disable_cooldowns: sometimes
  enable_pre_call_checks: 2
  stream_timeout: 0
  max_fallbacks: lots
litellm_settings:
  num_retries: three
general_settings:
  background_health_checks: maybe
  health_check_interval: 0
  health_check_concurrency: 0
"
        )),
        "\
config.yaml:7:16: router_settings.num_retries: must not be negative, found the number -1
config.yaml:8:16: router_settings.retry_after: expected a number of seconds, found the string \"later\"
config.yaml:9:18: router_settings.allowed_fails: expected a whole number, found the number 1.5
config.yaml:10:18: router_settings.cooldown_time: must not be negative, found the number -2
config.yaml:11:22: router_settings.disable_cooldowns: expected true or false, found the string \"sometimes\"
config.yaml:12:27: router_settings.enable_pre_call_checks: expected true or false, found the number 2
config.yaml:13:19: router_settings.stream_timeout: must be greater than 0, found the number 0
config.yaml:14:18: router_settings.max_fallbacks: expected a whole number, found the string \"lots\"
config.yaml:16:16: litellm_settings.num_retries: expected a whole number, found the string \"three\"
config.yaml:18:29: general_settings.background_health_checks: expected true or false, found the string \"maybe\"
config.yaml:19:26: general_settings.health_check_interval: must be greater than 0, found the number 0
config.yaml:20:29: general_settings.health_check_concurrency: must be at least 1, found the number 0"
    );
}

#[test]
fn deployment_num_retries_and_health_check_timeout() {
    let c = load_text(
        "\
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      num_retries: 4
      health_check_timeout: 3
      temperature: 0.1
  - model_name: b
    litellm_params:
      model: openai/b
      health_check_timeout: 3
    model_info:
      health_check_timeout: 7.5
  - model_name: c
    litellm_params: {model: openai/c}
    model_info: {health_check_timeout: 2}
",
    )
    .expect("loads");
    let d = &c.deployments;
    assert_eq!(d[0].num_retries, Some(4));
    assert_eq!(d[0].health_check_timeout, Some(Duration::from_secs(3)));
    // Typed fields are not kept as extra (upstream) params.
    assert_eq!(
        d[0].extra_params.keys().collect::<Vec<_>>(),
        ["temperature"]
    );
    // model_info wins.
    assert_eq!(d[1].health_check_timeout, Some(Duration::from_millis(7500)));
    assert_eq!(d[1].num_retries, None);
    assert!(d[1].extra_params.is_empty());
    assert_eq!(d[2].health_check_timeout, Some(Duration::from_secs(2)));

    assert_eq!(
        error_text(
            "\
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      num_retries: 1.5
      health_check_timeout: 0
    model_info:
      health_check_timeout: soon
"
        ),
        "\
config.yaml:5:20: model_list[0].litellm_params.num_retries: expected a whole number, found the number 1.5
config.yaml:6:29: model_list[0].litellm_params.health_check_timeout: must be greater than 0, found the number 0
config.yaml:8:29: model_list[0].model_info.health_check_timeout: expected a number of seconds, found the string \"soon\""
    );
}

#[test]
fn fallbacks_to_unknown_groups_are_warnings() {
    let c = load_text(
        "\
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o}
  - model_name: openai/*
    litellm_params: {model: openai/*}
router_settings:
  model_group_alias: {gpt-4: gpt-4o}
  fallbacks:
    - gpt-4o: [gpt-4o-mni, openai/gpt-4.1, gpt-4]
    - \"*\": [gpt-4o]
    - gpt4o: [zzzzzzzzzzzz]
  context_window_fallbacks: [{gpt-4o: [claude-long]}]
  content_policy_fallbacks: [{gpt-4o: [gpt-4o-safe]}]
  default_fallbacks: [gpt-4oo]
",
    )
    .expect("loads: LiteLLM accepts unknown groups");
    assert_eq!(
        c.warnings,
        [
            "config.yaml:9:16: router_settings.fallbacks[0].gpt-4o[0]: `gpt-4o-mni` is not a model_name in model_list or a model_group_alias",
            "config.yaml:11:7: router_settings.fallbacks[2].gpt4o: `gpt4o` is not a model_name in model_list or a model_group_alias; did you mean `gpt-4o`?",
            "config.yaml:11:15: router_settings.fallbacks[2].gpt4o[0]: `zzzzzzzzzzzz` is not a model_name in model_list or a model_group_alias",
            "config.yaml:12:40: router_settings.context_window_fallbacks[0].gpt-4o[0]: `claude-long` is not a model_name in model_list or a model_group_alias",
            "config.yaml:13:40: router_settings.content_policy_fallbacks[0].gpt-4o[0]: `gpt-4o-safe` is not a model_name in model_list or a model_group_alias",
            "config.yaml:14:23: router_settings.default_fallbacks[0]: `gpt-4oo` is not a model_name in model_list or a model_group_alias; did you mean `gpt-4o`?",
        ]
    );
    // The "*" key and the groups are kept as given.
    assert_eq!(
        c.routing.fallbacks[1],
        ("*".to_owned(), strings(&["gpt-4o"]))
    );

    // Only the settings in effect are checked: litellm_settings.fallbacks is overridden here.
    let c = load_text(&with_models(
        "\
litellm_settings:
  fallbacks: [{nope: [nada]}]
router_settings:
  fallbacks: [{gpt-4o: [claude]}]
",
    ))
    .expect("loads");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn debug_output_includes_routing() {
    let c = load_text(&with_models(
        "router_settings:\n  routing_strategy: cost-based-routing\n",
    ))
    .expect("loads");
    let debug = format!("{c:?}");
    assert!(debug.contains("routing: RoutingSettings"), "{debug}");
    assert!(debug.contains("CostBased"), "{debug}");
}
