//! End-to-end loading tests: realistic LiteLLM configs, environment resolution, includes, anchors, precedence, and exact error messages.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use tollgate_config::{Config, ConfigError, Env, Mode, Overrides, load, load_str};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

fn docs_env() -> Env {
    env(&[
        ("AZURE_API_KEY_CA", "sk-azure-ca-secret"),
        ("OPENAI_API_KEY", "sk-openai-secret"),
        ("ANTHROPIC_API_KEY", "sk-ant-secret"),
        ("AWS_ACCESS_KEY_ID", "AKIA-access-id"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-value"),
    ])
}

/// Loads text named `config.yaml` with the given environment.
fn load_text(text: &str, env: &Env) -> Result<Config, ConfigError> {
    load_str(text, Path::new("config.yaml"), env, &Overrides::default())
}

fn error_text(text: &str, env: &Env) -> String {
    match load_text(text, env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn litellm_docs_config_parses_with_typed_values() {
    let config = load(
        Some(&fixture("litellm_docs.yaml")),
        &docs_env(),
        &Overrides::default(),
    )
    .expect("loads");

    assert_eq!(config.deployments.len(), 8);
    let d = &config.deployments;
    let names: Vec<&str> = d.iter().map(|d| d.model_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gpt-4o",
            "gpt-4o",
            "gpt-4o-mini",
            "vllm-models",
            "llama3",
            "text-embedding-3-small",
            "claude-3-5-sonnet",
            "bedrock-claude"
        ]
    );

    // Azure EU: key from environment_variables.
    assert_eq!(d[0].provider, "azure");
    assert_eq!(d[0].model, "gpt-4o-eu");
    assert_eq!(
        d[0].api_base.as_deref(),
        Some("https://my-endpoint-europe-berri-992.openai.azure.com/")
    );
    assert_eq!(
        d[0].api_key.as_ref().map(|k| k.expose()),
        Some("sk-azure-eu-secret")
    );
    assert_eq!(d[0].api_version.as_deref(), Some("2024-08-01-preview"));
    assert_eq!(d[0].rpm, Some(6));
    assert_eq!(d[0].model_info.mode, Some(Mode::Chat));
    assert_eq!(d[0].model_info.base_model.as_deref(), Some("azure/gpt-4o"));

    // Azure CA: key from the process environment, numeric string rpm, float timeout.
    assert_eq!(
        d[1].api_key.as_ref().map(|k| k.expose()),
        Some("sk-azure-ca-secret")
    );
    assert_eq!(d[1].rpm, Some(6));
    assert_eq!(d[1].timeout, Some(Duration::from_millis(30_500)));
    assert_eq!(d[1].stream_timeout, Some(Duration::from_secs(60)));
    assert_ne!(d[0].id, d[1].id);
    assert_eq!(d[0].id.len(), 64);

    // OpenAI with explicit id, prices as exact decimals, extra params kept.
    let mini = &d[2];
    assert_eq!(
        (mini.provider.as_str(), mini.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(mini.id, "openai-mini-1");
    assert_eq!(mini.organization.as_deref(), Some("org-123"));
    assert_eq!(mini.max_retries, Some(3));
    assert_eq!(
        mini.extra_params.get("temperature"),
        Some(&serde_json::json!(0.2))
    );
    assert_eq!(
        mini.model_info.input_cost_per_token,
        Decimal::from_str("0.00000015").ok()
    );
    assert_eq!(
        mini.model_info.output_cost_per_token,
        Decimal::from_str("0.0000006").ok()
    );
    assert_eq!(mini.model_info.max_input_tokens, Some(128_000));
    assert_eq!(mini.model_info.access_groups, ["beta-models"]);
    assert_eq!(
        mini.model_info.extra.get("supports_vision"),
        Some(&serde_json::json!(true))
    );

    // openai/<org>/<model>: provider split at the first slash.
    assert_eq!(d[3].provider, "openai");
    assert_eq!(d[3].model, "facebook/opt-125m");
    assert_eq!(d[3].rpm, Some(1440));
    assert_eq!(
        d[3].model_info.extra.get("version"),
        Some(&serde_json::json!(2))
    );
    assert_eq!(
        (d[4].provider.as_str(), d[4].model.as_str()),
        ("ollama", "llama3")
    );
    // No prefix: openai.
    assert_eq!(d[5].provider, "openai");
    assert_eq!(d[5].model, "text-embedding-3-small");
    assert_eq!(d[5].tpm, Some(1_000_000));
    assert_eq!(d[5].model_info.mode, Some(Mode::Embedding));
    assert_eq!(d[6].provider, "anthropic");
    assert_eq!(d[6].weight, Some(2.0));
    assert_eq!(d[7].provider, "bedrock");
    assert_eq!(d[7].model, "anthropic.claude-3-sonnet-20240229-v1:0");
    assert_eq!(
        d[7].extra_params.get("aws_secret_access_key"),
        Some(&serde_json::json!("aws-secret-value"))
    );

    // Settings.
    assert!(config.drop_params);
    assert!(config.json_logs);
    assert_eq!(config.request_timeout, Some(Duration::from_secs(30)));
    assert_eq!(
        config.model_group_alias.get("gpt-4").map(String::as_str),
        Some("gpt-4o")
    );
    assert_eq!(
        config.master_key.as_ref().map(|k| k.expose()),
        Some("sk-1234")
    );
    assert_eq!(
        config.database_url.as_ref().map(|k| k.expose()),
        Some("postgresql://llmproxy:dbpassword9090@db:5432/litellm")
    );
    assert_eq!(config.server.max_request_body_bytes, 10 * 1024 * 1024);
    assert_eq!(config.server.port, 4000);
    assert_eq!(config.server.host, "0.0.0.0");
    assert_eq!(
        config.source.as_deref(),
        Some(fixture("litellm_docs.yaml").as_path())
    );

    assert_eq!(
        config.unimplemented,
        ["litellm_settings.cache", "litellm_settings.cache_params",]
    );
    // Callbacks and alerting channels tollgate does not have are reported, not failed.
    assert_eq!(
        config.observability.unsupported_callbacks,
        ["litellm_settings.success_callback: langfuse"]
    );
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("alerting channel \"slack\" is not supported")),
        "{:?}",
        config.warnings
    );
    assert!(config.observability.alerting.is_none());
    // Router settings: router_settings.num_retries (2) wins over litellm_settings.num_retries (3).
    let r = &config.routing;
    assert_eq!(r.strategy, tollgate_config::Strategy::UsageBased);
    assert_eq!(r.num_retries, 2);
    assert_eq!(r.allowed_fails, 3);
    assert_eq!(
        r.fallbacks,
        [("gpt-4o".to_owned(), vec!["claude-3-5-sonnet".to_owned()])]
    );
    // set_verbose is deprecated; REDIS_PASSWORD is unset but only feeds an unimplemented setting; the slack
    // alerting channel is not supported.
    assert_eq!(config.warnings.len(), 3, "{:#?}", config.warnings);
    assert!(config.warnings[0].contains("litellm_settings.set_verbose: deprecated in LiteLLM"));
    assert!(config.warnings[1].ends_with(
        "litellm_settings.cache_params.password: environment variable `REDIS_PASSWORD` is not set (from `os.environ/REDIS_PASSWORD`); ignored because tollgate does not implement this setting"
    ));

    // raw: merged and env-resolved.
    assert_eq!(
        config.raw["router_settings"]["redis_host"],
        serde_json::json!("redis.internal")
    );
    assert_eq!(
        config.raw["model_list"][1]["litellm_params"]["api_key"],
        serde_json::json!("sk-azure-ca-secret")
    );
}

#[test]
fn wildcards_mock_and_custom_providers() {
    let config = load(
        Some(&fixture("wildcards.yaml")),
        &env(&[("OPENAI_API_KEY", "sk-openai-secret")]),
        &Overrides::default(),
    )
    .expect("loads");
    let d = &config.deployments;
    assert_eq!(
        (
            d[0].model_name.as_str(),
            d[0].provider.as_str(),
            d[0].model.as_str()
        ),
        ("*", "openai", "*")
    );
    assert_eq!(
        (
            d[1].model_name.as_str(),
            d[1].provider.as_str(),
            d[1].model.as_str()
        ),
        ("openai/*", "openai", "*")
    );
    assert_eq!(d[2].mock_response.as_deref(), Some("Hello from the mock!"));
    assert_eq!(d[3].provider, "hosted_vllm");
    assert_eq!(d[3].model, "meta-llama/Llama-3.1-8B-Instruct");
    assert_eq!(
        d[3].extra_headers,
        [
            ("X-Team".to_owned(), "search".to_owned()),
            (
                "Authorization".to_owned(),
                "Bearer sk-vllm-secret".to_owned()
            )
        ]
    );
    assert_eq!(
        (d[4].provider.as_str(), d[4].model.as_str()),
        ("openai_compatible", "my-model")
    );
    assert!(!d[4].extra_params.contains_key("custom_llm_provider"));
    assert_eq!(
        (d[5].provider.as_str(), d[5].model.as_str()),
        ("mock", "echo")
    );
    assert_eq!(
        config.model_group_alias.get("claude").map(String::as_str),
        Some("fake-gpt")
    );
    assert_eq!(
        config.model_group_alias.get("GPT-4o").map(String::as_str),
        Some("fake-gpt")
    );
    assert!(config.hidden_model_group_aliases.contains("claude"));
    assert!(!config.hidden_model_group_aliases.contains("GPT-4o"));
    assert!(config.unimplemented.is_empty());
    assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
}

#[test]
fn anchors_and_merge_keys() {
    let config = load(
        Some(&fixture("anchors.yaml")),
        &env(&[("AZURE_API_KEY", "sk-az")]),
        &Overrides::default(),
    )
    .expect("loads");
    let d = &config.deployments;
    assert_eq!(d.len(), 3);
    assert_eq!(
        d[0].api_base.as_deref(),
        Some("https://eu.example.openai.azure.com/")
    );
    assert_eq!(
        d[1].api_base.as_deref(),
        Some("https://us.example.openai.azure.com/")
    );
    assert_eq!(d[1].model, "gpt-4o");
    assert_eq!(d[1].api_version.as_deref(), Some("2024-06-01"));
    assert_eq!(d[1].timeout, Some(Duration::from_secs(60)));
    assert_eq!(d[1].api_key.as_ref().map(|k| k.expose()), Some("sk-az"));
    assert_eq!(d[1].model_info.mode, Some(Mode::Chat));
    assert_eq!(d[2].model, "gpt-4o-mini");
    assert_eq!(d[2].rpm, Some(100));
    assert_eq!(
        d[2].api_base.as_deref(),
        Some("https://eu.example.openai.azure.com/")
    );
    assert_eq!(d[2].model_info.mode, Some(Mode::Completion));
    assert_eq!(d[2].model_info.access_groups, ["default"]);
    let ids: std::collections::HashSet<&str> = d.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn os_environ_through_environment_variables_overlay() {
    let text = "\
environment_variables:
  MY_KEY: sk-from-overlay
  ALIAS_OF_PROCESS: os.environ/PROCESS_VAR
  NUMBER: 42
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      api_key: os.environ/MY_KEY
      api_version: os.environ/ALIAS_OF_PROCESS
      rpm: os.environ/NUMBER
";
    let process = env(&[
        ("MY_KEY", "sk-process-loses"),
        ("PROCESS_VAR", "from-process"),
    ]);
    let config = load_text(text, &process).expect("loads");
    let d = &config.deployments[0];
    assert_eq!(
        d.api_key.as_ref().map(|k| k.expose()),
        Some("sk-from-overlay")
    );
    assert_eq!(d.api_version.as_deref(), Some("from-process"));
    assert_eq!(d.rpm, Some(42));
    assert_eq!(
        config.raw["environment_variables"]["ALIAS_OF_PROCESS"],
        serde_json::json!("from-process")
    );
    // The same overlay, for whoever reads the environment later (providers' default keys).
    let layered = config.layered_env(&process);
    assert_eq!(layered.get("MY_KEY").as_deref(), Some("sk-from-overlay"));
    assert_eq!(layered.get("NUMBER").as_deref(), Some("42"));
    assert_eq!(layered.get("PROCESS_VAR").as_deref(), Some("from-process"));
}

#[test]
fn generated_id_does_not_depend_on_the_secret_value() {
    let text = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/K\n";
    let one = load_text(text, &env(&[("K", "sk-one")])).expect("loads");
    let two = load_text(text, &env(&[("K", "sk-two")])).expect("loads");
    assert_eq!(one.deployments[0].id, two.deployments[0].id);
    let other = load_text(
        &text.replace("model_name: a", "model_name: b"),
        &env(&[("K", "x")]),
    )
    .expect("loads");
    assert_ne!(one.deployments[0].id, other.deployments[0].id);
}

#[test]
fn missing_env_var_names_file_line_key_path_and_variable() {
    let text = "\
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
  - model_name: b
    litellm_params:
      model: openai/b
      api_key: os.environ/OPENAI_API_KEY
";
    assert_eq!(
        error_text(text, &env(&[])),
        "config.yaml:8:16: model_list[1].litellm_params.api_key: environment variable `OPENAI_API_KEY` is not set (from `os.environ/OPENAI_API_KEY`)"
    );
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let text = "model_list:\n  - model_name: a\n    litellm_params: model: openai/a\n";
    insta::assert_snapshot!(
        error_text(text, &env(&[])),
        @"config.yaml:3:26: invalid YAML: mapping values are not allowed in this context"
    );
    let text = "model_list:\n  - model_name: a\n   litellm_params:\n";
    let e = load_text(text, &env(&[])).expect_err("bad indentation");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert_eq!(e.exit_code(), 64);
}

#[test]
fn wrong_types_name_the_key_path() {
    let text = "\
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      rpm: \"lots\"
";
    assert_eq!(
        error_text(text, &env(&[])),
        "config.yaml:5:12: model_list[0].litellm_params.rpm: expected a whole number, found the string \"lots\""
    );
    assert_eq!(
        error_text("model_list: {}\n", &env(&[])),
        "config.yaml:1:13: model_list: expected a list of deployments (`- model_name: ...`), found a mapping"
    );
    assert_eq!(
        error_text("litellm_settings:\n  drop_params: maybe\n", &env(&[])),
        "config.yaml:2:16: litellm_settings.drop_params: expected true or false, found the string \"maybe\""
    );
}

#[test]
fn missing_required_fields() {
    let text = "\
model_list:
  - litellm_params:
      model: openai/a
  - model_name: b
    litellm_param:
      model: openai/b
  - model_name: c
    litellm_params:
      api_base: http://localhost:1234
";
    assert_eq!(
        error_text(text, &env(&[])),
        "\
config.yaml:2:5: model_list[0]: missing required key `model_name`
config.yaml:4:5: model_list[1]: missing required key `litellm_params` (found `litellm_param`; a typo?)
config.yaml:9:7: model_list[2].litellm_params: missing required key `model`"
    );
}

#[test]
fn typos_get_suggestions() {
    assert_eq!(
        error_text("general_settings:\n  master_kye: sk-1\n", &env(&[])),
        "config.yaml:2:3: general_settings.master_kye: not a known LiteLLM general_settings key; did you mean `master_key`?"
    );
    assert_eq!(
        error_text("model_lsit:\n  - model_name: a\n", &env(&[])),
        "config.yaml:1:1: model_lsit: not a known LiteLLM config section; did you mean `model_list`?"
    );
    assert_eq!(
        error_text("general_settings:\n  drop_params: true\n", &env(&[])),
        "config.yaml:2:3: general_settings.drop_params: not a known LiteLLM general_settings key; `drop_params` belongs under `litellm_settings`"
    );
    assert_eq!(
        error_text("router_settings:\n  totally_unknown_thing: 1\n", &env(&[])),
        "config.yaml:2:3: router_settings.totally_unknown_thing: not a known LiteLLM router_settings key"
    );
}

#[test]
fn several_problems_are_reported_together() {
    let text = "\
general_settings:
  master_kye: x
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      rpm: -1
      weight: -0.5
";
    let e = load_text(text, &env(&[])).expect_err("invalid");
    assert_eq!(e.problems().len(), 3, "{e}");
    assert_eq!(
        e.to_string(),
        "\
config.yaml:2:3: general_settings.master_kye: not a known LiteLLM general_settings key; did you mean `master_key`?
config.yaml:7:12: model_list[0].litellm_params.rpm: must not be negative, found the number -1
config.yaml:8:15: model_list[0].litellm_params.weight: must not be negative, found the number -0.5"
    );
    assert_eq!(e.location().map(|l| l.line), Some(2));
    assert_eq!(e.key_path(), Some("general_settings.master_kye"));
}

#[test]
fn problems_from_different_checks_come_in_document_order() {
    let text = "\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o
      api_key: os.environ/AZURE_API_KEY
      rpm: lots
general_settings:
  master_kye: sk-1
";
    assert_eq!(
        error_text(text, &env(&[("PORT", "x")])),
        "\
config.yaml:5:16: model_list[0].litellm_params.api_key: environment variable `AZURE_API_KEY` is not set (from `os.environ/AZURE_API_KEY`)
config.yaml:6:12: model_list[0].litellm_params.rpm: expected a whole number, found the string \"lots\"
config.yaml:8:3: general_settings.master_kye: not a known LiteLLM general_settings key; did you mean `master_key`?
environment variable PORT: invalid value \"x\": expected a port number from 0 to 65535"
    );
}

#[test]
fn validation_errors() {
    let dup = "\
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
    model_info: {id: same}
  - model_name: b
    litellm_params: {model: openai/b}
    model_info: {id: same}
";
    assert_eq!(
        error_text(dup, &env(&[])),
        "config.yaml:7:22: model_list[1].model_info.id: duplicate deployment id `same` (also used by model_list[0])"
    );
    let url = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_base: localhost:8000\n";
    assert_eq!(
        error_text(url, &env(&[])),
        "config.yaml:5:17: model_list[0].litellm_params.api_base: expected an http:// or https:// URL, found the string \"localhost:8000\""
    );
    let empty = "model_list:\n  - model_name: \"\"\n    litellm_params: {model: openai/a}\n";
    assert_eq!(
        error_text(empty, &env(&[])),
        "config.yaml:2:17: model_list[0].model_name: must not be empty"
    );
}

#[test]
fn identical_deployments_get_distinct_ids() {
    let text = "\
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
  - model_name: a
    litellm_params: {model: openai/a}
";
    let config = load_text(text, &env(&[])).expect("loads");
    assert_eq!(
        config.deployments[1].id,
        format!("{}-2", config.deployments[0].id)
    );
    assert_eq!(
        config.warnings,
        ["config.yaml:4:5: model_list[1]: same model_name and litellm_params as model_list[0]"]
    );
}

#[test]
fn includes_are_merged_like_litellm() {
    let config = load(
        Some(&fixture("include/parent.yaml")),
        &env(&[]),
        &Overrides::default(),
    )
    .expect("loads");
    let names: Vec<&str> = config
        .deployments
        .iter()
        .map(|d| d.model_name.as_str())
        .collect();
    assert_eq!(names, ["parent-model", "included-model", "nested-model"]);
    assert!(config.drop_params);
    assert_eq!(
        config.master_key.as_ref().map(|k| k.expose()),
        Some("sk-parent")
    );
    assert!(config.raw.get("include").is_none());
}

#[test]
fn included_sections_replace_whole_sections_like_litellm() {
    let config = load(
        Some(&fixture("include/replace_parent.yaml")),
        &env(&[]),
        &Overrides::default(),
    )
    .expect("loads");
    assert_eq!(
        config.master_key.as_ref().map(|k| k.expose()),
        Some("sk-included")
    );
    // LiteLLM replaces the whole section, so the parent's max_request_size_mb is gone.
    assert_eq!(
        config.server.max_request_body_bytes,
        tollgate_config::DEFAULT_MAX_REQUEST_BODY_BYTES
    );
    assert_eq!(
        config.warnings,
        [format!(
            "{}:1:1: `general_settings` from the included file replaces the whole `general_settings` of {} (LiteLLM replaces top-level sections from included files; it does not merge them)",
            fixture("include/general.yaml").display(),
            fixture("include/replace_parent.yaml").display()
        )]
    );
}

#[test]
fn include_problems() {
    let e = load(
        Some(&fixture("include/cycle_a.yaml")),
        &env(&[]),
        &Overrides::default(),
    )
    .expect_err("cycle");
    let a = fixture("include/cycle_a.yaml");
    let b = fixture("include/cycle_b.yaml");
    assert_eq!(
        e.to_string(),
        format!(
            "{b}:2:5: include[0]: include cycle: {a} -> {b} -> {a}",
            a = a.display(),
            b = b.display()
        )
    );
    let e = load(
        Some(&fixture("include/missing.yaml")),
        &env(&[]),
        &Overrides::default(),
    )
    .expect_err("missing include");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:2:5: include[0]: cannot read included file `{}`",
            fixture("include/missing.yaml").display(),
            fixture("include/does-not-exist.yaml").display()
        )),
        "{shown}"
    );
}

#[test]
fn precedence_cli_over_tollgate_env_over_env_over_file() {
    let text = "\
general_settings:
  master_key: sk-file
  database_url: postgres://file
  tollgate_keepalive_timeout: 5
";
    let file_only = load_text(text, &env(&[])).expect("loads");
    assert_eq!(
        file_only.master_key.as_ref().map(|k| k.expose()),
        Some("sk-file")
    );
    assert_eq!(file_only.server.port, 4000);
    assert_eq!(file_only.server.keepalive_timeout, Duration::from_secs(5));

    let plain = env(&[
        ("LITELLM_MASTER_KEY", "sk-env"),
        ("DATABASE_URL", "postgres://env"),
        ("PORT", "5000"),
        ("HOST", "127.0.0.1"),
        ("KEEPALIVE_TIMEOUT", "7.5"),
        ("NUM_WORKERS", "3"),
        ("MAX_REQUESTS_BEFORE_RESTART", "1000"),
    ]);
    let c = load_text(text, &plain).expect("loads");
    assert_eq!(c.master_key.as_ref().map(|k| k.expose()), Some("sk-env"));
    assert_eq!(
        c.database_url.as_ref().map(|k| k.expose()),
        Some("postgres://env")
    );
    assert_eq!(c.server.port, 5000);
    assert_eq!(c.server.host, "127.0.0.1");
    assert_eq!(c.server.keepalive_timeout, Duration::from_millis(7500));
    assert_eq!(c.server.num_workers, Some(3));
    assert_eq!(c.server.max_requests_before_restart, Some(1000));

    let prefixed = env(&[
        ("LITELLM_MASTER_KEY", "sk-env"),
        ("TOLLGATE_MASTER_KEY", "sk-tollgate"),
        ("DATABASE_URL", "postgres://env"),
        ("TOLLGATE_DATABASE_URL", "postgres://tollgate"),
        ("PORT", "5000"),
        ("TOLLGATE_PORT", "6000"),
        ("NUM_WORKERS", "3"),
        ("TOLLGATE_NUM_WORKERS", "4"),
    ]);
    let c = load_text(text, &prefixed).expect("loads");
    assert_eq!(
        c.master_key.as_ref().map(|k| k.expose()),
        Some("sk-tollgate")
    );
    assert_eq!(
        c.database_url.as_ref().map(|k| k.expose()),
        Some("postgres://tollgate")
    );
    assert_eq!(c.server.port, 6000);
    assert_eq!(c.server.num_workers, Some(4));

    let cli = Overrides {
        master_key: Some("sk-cli".into()),
        database_url: Some("postgres://cli".into()),
        port: Some(7000),
        host: Some("::".into()),
        num_workers: Some(8),
        keepalive_timeout: Some(Duration::from_secs(1)),
        ..Overrides::default()
    };
    let c = load_str(text, Path::new("config.yaml"), &prefixed, &cli).expect("loads");
    assert_eq!(c.master_key.as_ref().map(|k| k.expose()), Some("sk-cli"));
    assert_eq!(
        c.database_url.as_ref().map(|k| k.expose()),
        Some("postgres://cli")
    );
    assert_eq!(c.server.port, 7000);
    assert_eq!(c.server.host, "::");
    assert_eq!(c.server.num_workers, Some(8));
    assert_eq!(c.server.keepalive_timeout, Duration::from_secs(1));
}

#[test]
fn environment_variables_section_counts_as_environment() {
    let text = "environment_variables:\n  PORT: 7100\n  LITELLM_MASTER_KEY: sk-overlay\n";
    let c = load_text(text, &env(&[("PORT", "5000")])).expect("loads");
    assert_eq!(c.server.port, 7100);
    assert_eq!(
        c.master_key.as_ref().map(|k| k.expose()),
        Some("sk-overlay")
    );
    // TOLLGATE_PORT still wins over the plain name.
    let c = load_text(text, &env(&[("TOLLGATE_PORT", "6000")])).expect("loads");
    assert_eq!(c.server.port, 6000);
}

#[test]
fn bad_environment_values_name_the_variable() {
    assert_eq!(
        error_text("{}\n", &env(&[("PORT", "abc")])),
        "environment variable PORT: invalid value \"abc\": expected a port number from 0 to 65535"
    );
    assert_eq!(
        error_text("{}\n", &env(&[("TOLLGATE_PORT", "70000")])),
        "environment variable TOLLGATE_PORT: invalid value \"70000\": expected a port number from 0 to 65535"
    );
    assert_eq!(
        error_text("{}\n", &env(&[("NUM_WORKERS", "0")])),
        "environment variable NUM_WORKERS: invalid value \"0\": expected a whole number of at least 1"
    );
    // Empty means unset.
    let c = load_text("{}\n", &env(&[("PORT", "")])).expect("loads");
    assert_eq!(c.server.port, 4000);
}

#[test]
fn tls_needs_both_files() {
    assert_eq!(
        error_text("{}\n", &env(&[("SSL_CERTFILE_PATH", "/tmp/cert.pem")])),
        "environment variable SSL_CERTFILE_PATH: TLS needs a private key too (--ssl_keyfile_path or SSL_KEYFILE_PATH); set both or neither"
    );
    let cli = Overrides {
        ssl_keyfile_path: Some(PathBuf::from("/tmp/key.pem")),
        ..Overrides::default()
    };
    let e = load_str("{}\n", Path::new("config.yaml"), &env(&[]), &cli).expect_err("half TLS");
    assert_eq!(
        e.to_string(),
        "--ssl_keyfile_path: TLS needs a certificate too (--ssl_certfile_path or SSL_CERTFILE_PATH); set both or neither"
    );
    // Both, existing files: accepted.
    let dir = std::env::temp_dir().join(format!("tollgate-config-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, "cert").expect("write cert");
    std::fs::write(&key, "key").expect("write key");
    let e = env(&[
        ("SSL_CERTFILE_PATH", cert.to_str().expect("utf-8")),
        ("TOLLGATE_SSL_KEYFILE_PATH", key.to_str().expect("utf-8")),
    ]);
    let c = load_text("{}\n", &e).expect("loads");
    let tls = c.server.tls.expect("tls");
    assert_eq!((tls.cert, tls.key), (cert, key));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_config_file() {
    let c = load(None, &env(&[]), &Overrides::default()).expect("loads");
    assert!(c.deployments.is_empty());
    assert_eq!(c.source, None);
    assert_eq!(c.server, tollgate_config::ServerSettings::default());

    let cli = Overrides {
        model: Some("hosted_vllm/meta-llama/Llama-3-8B".into()),
        api_base: Some("http://localhost:8000/v1".into()),
        ..Overrides::default()
    };
    let c = load(None, &env(&[]), &cli).expect("loads");
    assert_eq!(c.deployments.len(), 1);
    let d = &c.deployments[0];
    assert_eq!(d.model_name, "hosted_vllm/meta-llama/Llama-3-8B");
    assert_eq!(
        (d.provider.as_str(), d.model.as_str()),
        ("hosted_vllm", "meta-llama/Llama-3-8B")
    );
    assert_eq!(d.api_base.as_deref(), Some("http://localhost:8000/v1"));

    // With a file too, --model is added after the file's deployments.
    let text = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n";
    let cli = Overrides {
        model: Some("gpt-4o".into()),
        ..Overrides::default()
    };
    let c = load_str(text, Path::new("config.yaml"), &env(&[]), &cli).expect("loads");
    let names: Vec<&str> = c
        .deployments
        .iter()
        .map(|d| d.model_name.as_str())
        .collect();
    assert_eq!(names, ["a", "gpt-4o"]);
    assert_eq!(c.deployments[1].provider, "openai");

    let bad = Overrides {
        model: Some("gpt-4o".into()),
        api_base: Some("not a url".into()),
        ..Overrides::default()
    };
    let e = load(None, &env(&[]), &bad).expect_err("bad api_base");
    assert_eq!(
        e.to_string(),
        "--api_base: expected an http:// or https:// URL, found \"not a url\""
    );
}

#[test]
fn config_path_resolution() {
    let e = env(&[("CONFIG_FILE_PATH", "/etc/litellm.yaml")]);
    assert_eq!(
        tollgate_config::resolve_config_path(None, &e),
        Some(PathBuf::from("/etc/litellm.yaml"))
    );
    let e = env(&[
        ("CONFIG_FILE_PATH", "/etc/litellm.yaml"),
        ("TOLLGATE_CONFIG_FILE_PATH", "/etc/tollgate.yaml"),
    ]);
    assert_eq!(
        tollgate_config::resolve_config_path(None, &e),
        Some(PathBuf::from("/etc/tollgate.yaml"))
    );
    assert_eq!(
        tollgate_config::resolve_config_path(Some(Path::new("cli.yaml")), &e),
        Some(PathBuf::from("cli.yaml"))
    );
    assert_eq!(tollgate_config::resolve_config_path(None, &env(&[])), None);
    let e = load(
        Some(Path::new("/nonexistent/tollgate.yaml")),
        &env(&[]),
        &Overrides::default(),
    )
    .expect_err("missing file");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/tollgate.yaml: cannot read config file:"),
        "{e}"
    );
}

#[test]
fn unimplemented_keys_are_listed_sorted_and_deduped() {
    let text = "\
guardrails:
  - guardrail_name: g
general_settings:
  store_model_in_db: true
litellm_settings:
  callbacks: [prometheus]
  drop_params: true
router_settings:
  cache_responses: true
";
    let c = load_text(text, &env(&[])).expect("loads");
    assert_eq!(
        c.unimplemented,
        [
            "general_settings.store_model_in_db",
            "guardrails",
            "router_settings.cache_responses"
        ]
    );
    assert!(c.observability.prometheus_requested);
}

#[test]
fn debug_and_summary_never_show_secrets() {
    let mut configs = vec![
        load(
            Some(&fixture("litellm_docs.yaml")),
            &docs_env(),
            &Overrides::default(),
        )
        .expect("loads"),
        load(
            Some(&fixture("wildcards.yaml")),
            &env(&[("OPENAI_API_KEY", "sk-openai-secret")]),
            &Overrides::default(),
        )
        .expect("loads"),
    ];
    configs[1].database_url = Some("postgres://user:dbpassword9090@db/x".into());
    let secrets = [
        "sk-1234",
        "dbpassword9090",
        "sk-azure-eu-secret",
        "sk-azure-ca-secret",
        "sk-openai-secret",
        "sk-ant-secret",
        "aws-secret-value",
        "AKIA-access-id",
        "sk-vllm-secret",
    ];
    for config in &configs {
        for shown in [
            format!("{config:?}"),
            format!("{config:#?}"),
            config.summary(),
        ] {
            for secret in secrets {
                assert!(!shown.contains(secret), "`{secret}` leaked in:\n{shown}");
            }
        }
    }
    // Non-secret details stay visible.
    let debug = format!("{:?}", configs[0]);
    assert!(
        debug.contains("us-east-1") && debug.contains("gpt-4o-eu"),
        "{debug}"
    );
}

#[test]
fn summary_lists_models_settings_and_unimplemented() {
    let text = "\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: sk-summary-secret
      rpm: 10
    model_info: {id: gpt4o-1, mode: chat}
litellm_settings:
  drop_params: true
  cache: true
router_settings:
  model_group_alias: {gpt-4: gpt-4o}
";
    let c = load_text(text, &env(&[])).expect("loads");
    insta::assert_snapshot!(c.summary(), @r"
    config file: config.yaml
    server: 0.0.0.0:4000 (workers: one per core; tls: off)
      keepalive 90s, header read timeout 10s, graceful shutdown 30s, max request body 33554432 bytes, restart after requests: never
    master key: not set; database url: not set
    settings: drop_params=true, request_timeout=default, json_logs=false
    models: 1 deployment(s) in 1 group(s); providers: openai
      gpt-4o -> openai/gpt-4o api_key=set rpm=10 mode=chat [id gpt4o-1]
    model group aliases:
      gpt-4 -> gpt-4o
    not implemented by tollgate (accepted, ignored):
      litellm_settings.cache
    ");
}

#[test]
fn yaml_1_1_booleans_numeric_strings_and_empty_files() {
    let text = "\
litellm_settings:
  drop_params: \"true\"
  json_logs: yes
  request_timeout: \"45\"
general_settings:
  max_request_size_mb: 0.5
";
    let c = load_text(text, &env(&[])).expect("loads");
    assert!(c.drop_params && c.json_logs);
    assert_eq!(c.request_timeout, Some(Duration::from_secs(45)));
    assert_eq!(c.server.max_request_body_bytes, 512 * 1024);

    let c = load_text("", &env(&[])).expect("empty file loads");
    assert!(c.deployments.is_empty());
    assert_eq!(c.warnings, ["config.yaml: the config file is empty"]);

    assert_eq!(
        error_text("- a\n- b\n", &env(&[])),
        "config.yaml:1:1: the top level of a config file must be a mapping (model_list:, general_settings:, ...), found a list"
    );
}

#[test]
fn unknown_provider_prefix_is_a_warning() {
    let text = "model_list:\n  - model_name: a\n    litellm_params:\n      model: opnai/gpt-4o\n";
    let c = load_text(text, &env(&[])).expect("loads");
    assert_eq!(c.deployments[0].provider, "opnai");
    assert_eq!(
        c.warnings,
        [
            "config.yaml:4:14: model_list[0].litellm_params.model: `opnai` is not a provider LiteLLM knows; did you mean `openai`?"
        ]
    );
}

#[test]
fn kubernetes_service_link_in_tollgate_port_is_ignored() {
    let c = load_text(
        "model_list: []\n",
        &env(&[("TOLLGATE_PORT", "tcp://10.0.0.1:4000"), ("PORT", "8123")]),
    )
    .unwrap();
    assert_eq!(c.server.port, 8123);
    assert!(
        c.warnings.iter().any(|w| w.contains("service link")),
        "{:?}",
        c.warnings
    );
    let c = load_text(
        "model_list: []\n",
        &env(&[("TOLLGATE_PORT", "9001"), ("PORT", "8123")]),
    )
    .unwrap();
    assert_eq!(c.server.port, 9001);
}

#[test]
fn top_level_anchor_holders_are_accepted() {
    let c = load_text(
        "x-defaults: &d\n  api_base: http://h/v1\nmodel_list:\n  - model_name: a\n    litellm_params:\n      <<: *d\n      model: openai/a\n",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(c.deployments[0].api_base.as_deref(), Some("http://h/v1"));
    assert!(error_text("modle_list: []\n", &env(&[])).contains("modle_list"));
}

#[test]
fn observability_settings_from_file_and_environment() {
    let text = "\
general_settings:
  alerting: [webhook]
  alert_types: [budget_alerts]
  require_auth_for_metrics_endpoint: true
  tollgate_metrics_max_series: 500
  tollgate_log_payloads: true
  tollgate_log_payload_max_bytes: 100
litellm_settings:
  callbacks: [prometheus, otel]
  success_callback: [generic_api, datadog]
  turn_off_message_logging: true
";
    let c = load_text(
        text,
        &env(&[
            ("WEBHOOK_URL", "https://hooks.example/alert"),
            ("GENERIC_LOGGER_ENDPOINT", "https://logs.example/in"),
            (
                "GENERIC_LOGGER_HEADERS",
                "Authorization=Bearer s3cret=x, X-Team=obs",
            ),
            ("GENERIC_LOGGER_BATCH_SIZE", "7"),
            ("PROMETHEUS_METRICS_PORT", "9091"),
        ]),
    )
    .expect("loads");
    let o = &c.observability;
    assert!(o.prometheus_requested && o.otel && o.require_auth_for_metrics);
    assert_eq!(
        (o.max_series, o.log_payloads, o.payload_max_bytes),
        (500, true, 100)
    );
    assert!(o.turn_off_message_logging);
    assert_eq!(o.metrics_port, Some(9091));
    let w = o.webhook.as_ref().expect("webhook logger");
    assert!(w.on_success && !w.on_failure);
    assert_eq!(w.endpoint.expose(), "https://logs.example/in");
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        headers,
        [("Authorization", "Bearer s3cret=x"), ("X-Team", "obs")]
    );
    assert_eq!(w.batch_size, 7);
    assert_eq!(w.flush_interval, std::time::Duration::from_secs(5));
    let a = o.alerting.as_ref().expect("alerting");
    assert_eq!(a.webhook_url.expose(), "https://hooks.example/alert");
    assert!(a.budget_alerts());
    assert_eq!(
        o.unsupported_callbacks,
        ["litellm_settings.success_callback: datadog"]
    );
    // Secrets in the webhook settings stay out of Debug.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("hooks.example"),
        "{debug}"
    );
}

#[test]
fn observability_settings_errors_name_what_is_missing() {
    let e = error_text("general_settings:\n  alerting: [webhook]\n", &env(&[]));
    assert!(
        e.contains("config.yaml:2:") && e.contains("WEBHOOK_URL"),
        "{e}"
    );
    let e = error_text(
        "litellm_settings:\n  failure_callback: [generic_api]\n",
        &env(&[]),
    );
    assert!(e.contains("GENERIC_LOGGER_ENDPOINT"), "{e}");
    let e = error_text(
        "litellm_settings:\n  callbacks: [generic_api]\n",
        &env(&[
            ("GENERIC_LOGGER_ENDPOINT", "http://x"),
            ("GENERIC_LOGGER_HEADERS", "no-equals-sign"),
        ]),
    );
    assert!(
        e.contains("GENERIC_LOGGER_HEADERS") && e.contains("pair 1"),
        "{e}"
    );
    assert!(
        !e.contains("no-equals-sign"),
        "header values are not echoed: {e}"
    );
    let e = error_text(
        "general_settings:\n  tollgate_metrics_max_series: 0\n",
        &env(&[]),
    );
    assert!(
        e.contains("tollgate_metrics_max_series") && e.contains("at least 1"),
        "{e}"
    );
    let e = error_text("{}\n", &env(&[("PROMETHEUS_METRICS_PORT", "http")]));
    assert!(e.contains("PROMETHEUS_METRICS_PORT"), "{e}");
}

#[test]
fn generic_api_logger_from_callback_settings() {
    let text = "\
litellm_settings:
  callbacks: [my_api]
callback_settings:
  my_api:
    callback_type: generic_api
    endpoint: https://logs.example/v1/in
    headers: {Authorization: Bearer file-secret, X-Source: tollgate}
    event_types: [llm_api_failure]
    log_format: json_array
";
    let c = load_text(
        text,
        &env(&[("GENERIC_LOGGER_HEADERS", "X-Source=env,X-Extra=1")]),
    )
    .expect("loads");
    let w = c.observability.webhook.as_ref().expect("logger");
    assert_eq!(w.endpoint.expose(), "https://logs.example/v1/in");
    assert!(
        !w.on_success && w.on_failure,
        "event_types narrows it to failures"
    );
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        headers,
        [
            ("Authorization", "Bearer file-secret"),
            ("X-Source", "tollgate"),
            ("X-Extra", "1")
        ],
        "the file's headers win over GENERIC_LOGGER_HEADERS"
    );
    assert!(c.observability.unsupported_callbacks.is_empty());
    assert!(
        !c.unimplemented
            .iter()
            .any(|u| u.starts_with("callback_settings"))
    );

    let e = error_text(
        "callback_settings:\n  generic_api:\n    endpoit: https://x\n",
        &env(&[]),
    );
    assert!(e.contains("config.yaml:3:") && e.contains("endpoit"), "{e}");
    let e = error_text(
        "callback_settings:\n  generic_api:\n    endpoint: ftp://x\n",
        &env(&[]),
    );
    assert!(e.contains("callback_settings.generic_api.endpoint"), "{e}");
}
