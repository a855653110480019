//! The known LiteLLM config keys (top level, `general_settings`, `litellm_settings`, `router_settings`), which of them tollgate implements, LiteLLM's provider names, and "did you mean" suggestions.
//!
//! Sources: LiteLLM's "All settings" docs page (`docs/proxy/config_settings`), `ConfigGeneralSettings`
//! and `ConfigYAML` in `litellm/proxy/_types.py`, `ProxyConfig.load_config` in
//! `litellm/proxy/proxy_server.py` (top-level sections and `litellm_settings` branches) and
//! `Router.__init__` (every `router_settings` key is a `Router` argument).
//!
//! To mark a key implemented, change its `U` to `I` (one line per key).

/// Whether tollgate acts on a known key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Support {
    /// Read and honoured by tollgate.
    Implemented,
    /// A real LiteLLM setting that tollgate accepts but does not act on yet.
    Unimplemented,
}

use Support::{Implemented as I, Unimplemented as U};

/// Top-level keys of `config.yaml`.
pub(crate) const TOP_LEVEL: &[(&str, Support)] = &[
    ("model_list", I),
    ("include", I),
    ("environment_variables", I),
    ("general_settings", I),
    ("litellm_settings", I),
    ("router_settings", I),
    ("callback_settings", I),
    ("guardrails", U),
    ("policies", U),
    ("policy_attachments", U),
    ("prompts", U),
    ("credential_list", U),
    ("mcp_servers", U),
    ("mcp_tools", U),
    ("agent_list", U),
    ("search_tools", U),
    ("vector_store_registry", U),
    ("assistant_settings", U),
    ("finetune_settings", U),
    ("files_settings", U),
    ("default_vertex_config", U),
    ("worker_registry", U),
];

/// `general_settings` keys.
pub(crate) const GENERAL_SETTINGS: &[(&str, Support)] = &[
    ("master_key", I),
    ("database_url", I),
    ("max_request_size_mb", I),
    // tollgate extensions (LiteLLM ignores unknown general_settings keys, so these stay portable).
    ("tollgate_header_read_timeout", I),
    ("tollgate_graceful_shutdown_timeout", I),
    ("tollgate_keepalive_timeout", I),
    ("tollgate_database_path", I),
    ("tollgate_spend_journal_path", I),
    ("tollgate_spend_batch_size", I),
    ("tollgate_accounts_refresh_interval", I),
    ("tollgate_max_json_depth", I),
    ("tollgate_max_messages", I),
    ("tollgate_max_header_bytes", I),
    ("allowed_origins", I),
    ("tollgate_metrics_max_series", I),
    ("tollgate_log_payloads", I),
    ("tollgate_log_payload_max_bytes", I),
    ("require_auth_for_metrics_endpoint", I),
    // LiteLLM settings not implemented yet.
    ("completion_model", U),
    ("plugins", U),
    ("key_management_system", U),
    ("key_management_settings", U),
    ("use_google_kms", U),
    ("use_azure_key_vault", U),
    ("coordination_redis", U),
    ("control_plane_url", U),
    ("allow_cli_sso_verification_uri_complete", U),
    ("database_connection_pool_limit", I),
    ("database_connection_timeout", I),
    ("database_connect_timeout", U),
    ("database_socket_timeout", U),
    ("database_extra_connection_params", U),
    ("database_disable_prepared_statements", U),
    ("database_type", U),
    ("database_args", U),
    ("allow_requests_on_db_unavailable", I),
    ("otel", U),
    ("custom_auth", U),
    ("custom_auth_settings", U),
    ("custom_key_generate", U),
    ("custom_sso", U),
    ("custom_ui_sso_sign_in_handler", U),
    ("max_parallel_requests", U),
    ("global_max_parallel_requests", U),
    ("max_batch_file_size_mb", U),
    ("max_response_size_mb", U),
    ("proxy_config_reload_interval_seconds", U),
    ("cancel_on_disconnect", U),
    ("infer_model_from_keys", U),
    ("background_health_checks", I),
    ("health_check_interval", I),
    ("health_check_concurrency", I),
    ("health_check_details", U),
    ("health_check_skip_disabled_background_models", U),
    ("background_health_check_model_groups", U),
    ("use_shared_health_check", U),
    ("model_list_healthy_only", U),
    ("alerting", I),
    ("alert_types", I),
    ("alert_to_webhook_url", U),
    ("alerting_args", U),
    ("alerting_threshold", U),
    ("spend_report_frequency", U),
    ("ui_access_mode", U),
    ("allowed_routes", U),
    ("public_routes", U),
    ("admin_only_routes", U),
    ("allowed_ips", U),
    ("reject_clientside_metadata_tags", U),
    ("enable_public_model_hub", U),
    ("pass_through_request_timeout", U),
    ("pass_through_endpoints", U),
    ("use_client_credentials_pass_through_routes", U),
    ("user_header_name", U),
    ("user_header_mappings", U),
    ("supported_db_objects", U),
    ("store_model_in_db", U),
    ("store_prompts_in_spend_logs", U),
    ("user_mcp_management_mode", U),
    ("mcp_internal_ip_ranges", U),
    ("mcp_trusted_proxy_ranges", U),
    ("mcp_xff_num_trusted_hops", U),
    ("mcp_required_fields", U),
    ("trusted_proxy_ranges", U),
    ("disable_auto_add_proxy_admin_to_teams", U),
    ("scheduled_job_stagger", U),
    ("maximum_spend_logs_retention_period", U),
    ("maximum_spend_logs_retention_interval", U),
    ("maximum_autorouter_session_retention_period", U),
    ("maximum_health_check_retention_period", U),
    ("maximum_spend_logs_cleanup_batch_size", U),
    ("maximum_spend_logs_cleanup_max_batches", U),
    ("maximum_spend_logs_cleanup_run_budget", U),
    ("maximum_spend_logs_cleanup_batch_timeout", U),
    ("use_spend_logs_partitioning", U),
    ("forward_client_headers_to_llm_api", U),
    ("forward_openai_org_id", U),
    ("disable_budget_reservation", U),
    ("apply_user_budget_to_team_keys", U),
    ("user_url_validation", U),
    ("user_url_allowed_hosts", U),
    ("provider_url_destination_allowed_hosts", U),
    ("disable_spend_logs", U),
    ("disable_spend_updates", U),
    ("disable_master_key_return", U),
    ("disable_retry_on_max_parallel_request_limit_error", U),
    ("disable_reset_budget", I),
    ("disable_adding_master_key_hash_to_db", U),
    ("disable_responses_id_security", U),
    ("disable_prisma_schema_update", I),
    ("enable_jwt_auth", I),
    ("litellm_jwtauth", I),
    ("enable_oauth2_auth", U),
    ("enable_oauth2_proxy_auth", U),
    ("oauth2_config_mappings", U),
    ("enforce_user_param", U),
    ("enforced_params", U),
    ("use_x_forwarded_for", U),
    ("service_account_settings", U),
    ("image_generation_model", U),
    ("embedding_model", U),
    ("moderation_model", U),
    ("proxy_budget_rescheduler_min_time", U),
    ("proxy_budget_rescheduler_max_time", U),
    ("proxy_batch_write_at", I),
    ("proxy_batch_polling_interval", U),
    ("default_team_disabled", U),
    ("allow_user_auth", U),
    ("user_api_key_cache_ttl", U),
    ("litellm_key_header_name", U),
    ("allow_client_side_credentials", I),
    ("litellm_license", U),
    ("role_permissions", U),
];

/// `litellm_settings` keys (LiteLLM sets each as an attribute of the `litellm` module).
pub(crate) const LITELLM_SETTINGS: &[(&str, Support)] = &[
    ("drop_params", I),
    ("request_timeout", I),
    ("json_logs", I),
    ("set_verbose", I), // accepted and ignored (deprecated in LiteLLM too)
    ("success_callback", I),
    ("failure_callback", I),
    ("callbacks", I),
    ("input_callback", U),
    ("service_callback", U),
    ("service_callbacks", U),
    ("pre_call_rules", U),
    ("post_call_rules", U),
    ("turn_off_message_logging", I),
    ("redact_messages_in_exceptions", U),
    ("redact_user_api_key_info", U),
    ("log_raw_request_response", U),
    ("store_audit_logs", U),
    ("langfuse_default_tags", U),
    ("modify_params", U),
    ("enable_preview_features", U),
    ("force_ipv4", U),
    ("ssl_verify", U),
    ("ssl_certificate", U),
    ("num_retries", I),
    ("max_fallbacks", I),
    ("allowed_fails", I),
    ("fallbacks", I),
    ("default_fallbacks", I),
    ("content_policy_fallbacks", I),
    ("context_window_fallbacks", I),
    ("model_fallbacks", U),
    ("mcp_aliases", U),
    ("cache", U),
    ("cache_params", U),
    ("enable_caching_on_provider_specific_optimized_params", U),
    ("disable_end_user_cost_tracking", U),
    ("disable_end_user_cost_tracking_prometheus_only", U),
    ("enable_end_user_cost_tracking_prometheus_only", I),
    ("key_generation_settings", U),
    ("disable_add_transform_inline_image_block", U),
    ("use_chat_completions_url_for_anthropic_messages", U),
    ("disable_hf_tokenizer_download", U),
    ("enable_json_schema_validation", U),
    ("enable_key_alias_format_validation", U),
    ("disable_copilot_system_to_assistant", U),
    ("LITELLM_DISABLE_STOP_SEQUENCE_LIMIT", U),
    ("max_budget", U),
    ("budget_duration", U),
    ("max_end_user_budget", U),
    ("max_user_budget", U),
    ("max_internal_user_budget", U),
    ("default_max_internal_user_budget", U),
    ("internal_user_budget_duration", U),
    ("default_internal_user_params", U),
    ("default_team_settings", U),
    ("default_team_params", U),
    ("default_key_generate_params", U),
    ("upperbound_key_generate_params", U),
    ("guardrails", U),
    ("global_prompt_directory", U),
    ("global_bitbucket_config", U),
    ("global_gitlab_config", U),
    ("priority_reservation_settings", U),
    ("model_group_settings", U),
    ("custom_provider_map", U),
    ("responses", U),
    ("api_base", U),
    ("api_key", U),
    ("api_version", U),
    ("organization", U),
    ("headers", U),
    ("model_alias_map", U),
    ("add_function_to_prompt", U),
    ("telemetry", U),
    ("max_tokens", U),
    ("suppress_debug_info", U),
    ("retry", U),
    ("public_model_groups", U),
    ("public_model_groups_links", U),
    ("public_agent_groups", U),
    ("prometheus_initialize_budget_metrics", U),
    ("prometheus_metrics_config", U),
    ("s3_callback_params", U),
    ("datadog_params", U),
    ("disable_streaming_logging", U),
    ("return_response_headers", U),
    ("enable_azure_ad_token_refresh", U),
    ("tag_budget_config", U),
    ("disable_token_counter", U),
    ("disable_aiohttp_transport", U),
    ("check_provider_endpoint", U),
    ("default_redis_batch_cache_expiry", U),
    ("default_redis_ttl", U),
    ("default_in_memory_ttl", U),
    ("enable_loadbalancing_on_batch_endpoints", U),
    ("langsmith_batch_size", U),
    ("use_litellm_proxy", U),
    ("vertex_project", U),
    ("vertex_location", U),
];

/// `router_settings` keys (each is an argument of LiteLLM's `Router`).
pub(crate) const ROUTER_SETTINGS: &[(&str, Support)] = &[
    ("model_group_alias", I),
    ("timeout", I),
    // tollgate extension: the prefix of every Redis key (instances sharing limits use the same one).
    ("tollgate_redis_prefix", I),
    ("routing_strategy", I),
    ("routing_strategy_args", I),
    ("routing_groups", U),
    ("redis_url", I),
    ("redis_host", I),
    ("redis_port", I),
    ("redis_password", I),
    ("redis_db", I),
    ("cache_responses", U),
    ("cache_kwargs", U),
    ("caching_groups", U),
    ("client_ttl", U),
    ("polling_interval", U),
    ("default_priority", U),
    ("num_retries", I),
    ("max_retries", U),
    ("max_fallbacks", I),
    ("stream_timeout", I),
    ("default_litellm_params", U),
    ("default_max_parallel_requests", U),
    ("set_verbose", U),
    ("debug_level", U),
    ("default_fallbacks", I),
    ("fallbacks", I),
    ("context_window_fallbacks", I),
    ("content_policy_fallbacks", I),
    ("enable_pre_call_checks", I),
    ("enable_pre_call_check", I),
    ("enable_tag_filtering", U),
    ("tag_filtering_match_any", U),
    ("plugins", U),
    ("retry_after", I),
    ("retry_policy", I),
    ("model_group_retry_policy", I),
    ("allowed_fails", I),
    ("allowed_fails_policy", I),
    ("cooldown_time", I),
    ("disable_cooldowns", I),
    ("optional_pre_call_checks", U),
    ("provider_budget_config", U),
    ("alerting_config", U),
    ("router_general_settings", U),
    ("deployment_affinity_ttl_seconds", U),
    ("model_group_affinity_config", U),
    ("ignore_invalid_deployments", U),
    ("enable_health_check_routing", U),
    ("health_check_staleness_threshold", U),
    ("health_check_ignore_transient_errors", U),
    ("enable_weighted_failover", U),
    ("assistants_config", U),
    ("search_tools", U),
    ("guardrail_list", U),
];

/// Keys LiteLLM itself marks deprecated, with what to say about them.
pub(crate) const DEPRECATED: &[(&str, &str)] = &[
    (
        "litellm_settings.set_verbose",
        "deprecated in LiteLLM; use --debug/--detailed_debug or LITELLM_LOG; ignored",
    ),
    (
        "router_settings.set_verbose",
        "deprecated in LiteLLM; use --debug/--detailed_debug or LITELLM_LOG",
    ),
    (
        "litellm_settings.model_fallbacks",
        "deprecated in LiteLLM; use litellm_settings.fallbacks",
    ),
    (
        "litellm_settings.disable_copilot_system_to_assistant",
        "deprecated in LiteLLM (GitHub Copilot accepts system prompts)",
    ),
    (
        "general_settings.allow_user_auth",
        "deprecated in LiteLLM (old user authentication)",
    ),
    (
        "general_settings.use_google_kms",
        "deprecated in LiteLLM; use key_management_system",
    ),
    (
        "general_settings.use_azure_key_vault",
        "deprecated in LiteLLM; use key_management_system",
    ),
    (
        "general_settings.user_header_name",
        "deprecated in LiteLLM; use user_header_mappings",
    ),
];

/// LiteLLM provider names (the `provider/` prefix of `litellm_params.model`), plus tollgate's own.
pub(crate) const PROVIDERS: &[&str] = &[
    // tollgate's own
    "mock",
    "openai_compatible",
    // LiteLLM
    "openai",
    "custom_openai",
    "text-completion-openai",
    "openai_like",
    "azure",
    "azure_text",
    "azure_ai",
    "anthropic",
    "anthropic_text",
    "bedrock",
    "sagemaker",
    "sagemaker_chat",
    "vertex_ai",
    "vertex_ai_beta",
    "gemini",
    "palm",
    "cohere",
    "cohere_chat",
    "mistral",
    "codestral",
    "text-completion-codestral",
    "groq",
    "cerebras",
    "sambanova",
    "deepseek",
    "xai",
    "perplexity",
    "fireworks_ai",
    "friendliai",
    "together_ai",
    "togetherai",
    "openrouter",
    "deepinfra",
    "anyscale",
    "huggingface",
    "replicate",
    "ollama",
    "ollama_chat",
    "vllm",
    "hosted_vllm",
    "llamafile",
    "lm_studio",
    "xinference",
    "triton",
    "predibase",
    "databricks",
    "watsonx",
    "watsonx_text",
    "nvidia_nim",
    "cloudflare",
    "ai21",
    "ai21_chat",
    "nlp_cloud",
    "aleph_alpha",
    "baseten",
    "petals",
    "oobabooga",
    "maritalk",
    "clarifai",
    "voyage",
    "jina_ai",
    "infinity",
    "deepgram",
    "elevenlabs",
    "assemblyai",
    "github",
    "github_copilot",
    "litellm_proxy",
    "custom",
    "volcengine",
    "dashscope",
    "moonshot",
    "v0",
    "morph",
    "lambda_ai",
    "nebius",
    "novita",
    "galadriel",
    "empower",
    "topaz",
    "snowflake",
    "meta_llama",
    "featherless_ai",
    "nscale",
    "hyperbolic",
    "recraft",
    "fal_ai",
    "stability",
    "bytez",
    "heroku",
    "oci",
    "ovhcloud",
    "wandb",
    "gradient_ai",
    "vercel_ai_gateway",
    "aiml",
    "cometapi",
    "datarobot",
    "compactifai",
    "lemonade",
    "docker_model_runner",
    "aiohttp_openai",
    "amazon_nova",
];

/// A section of the document whose keys are checked against a known list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Top,
    General,
    Litellm,
    Router,
}

impl Section {
    pub(crate) const NESTED: [Section; 3] = [Section::General, Section::Litellm, Section::Router];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Section::Top => "",
            Section::General => "general_settings",
            Section::Litellm => "litellm_settings",
            Section::Router => "router_settings",
        }
    }

    pub(crate) fn keys(self) -> &'static [(&'static str, Support)] {
        match self {
            Section::Top => TOP_LEVEL,
            Section::General => GENERAL_SETTINGS,
            Section::Litellm => LITELLM_SETTINGS,
            Section::Router => ROUTER_SETTINGS,
        }
    }

    pub(crate) fn lookup(self, key: &str) -> Option<Support> {
        self.keys()
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, support)| *support)
    }
}

/// What to tell the user about a key that is not known in `section`.
pub(crate) fn unknown_key_message(section: Section, key: &str) -> String {
    let what = match section {
        Section::Top => "not a known LiteLLM config section".to_owned(),
        other => format!("not a known LiteLLM {} key", other.name()),
    };
    if let Some(close) = did_you_mean(key, section.keys().iter().map(|(k, _)| *k)) {
        return format!("{what}; did you mean `{close}`?");
    }
    // A key written in the wrong section.
    let home = Section::NESTED
        .into_iter()
        .find(|s| *s != section && s.lookup(key).is_some());
    if let Some(home) = home {
        return format!("{what}; `{key}` belongs under `{}`", home.name());
    }
    what
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let limit = match word.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Whether `name` is a provider prefix LiteLLM (or tollgate) knows.
pub(crate) fn is_known_provider(name: &str) -> bool {
    PROVIDERS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_duplicates_in_tables() {
        for section in std::iter::once(Section::Top).chain(Section::NESTED) {
            let mut seen = HashSet::new();
            for (key, _) in section.keys() {
                assert!(seen.insert(*key), "duplicate {key} in {section:?}");
            }
        }
        let mut seen = HashSet::new();
        for p in PROVIDERS {
            assert!(seen.insert(*p), "duplicate provider {p}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("master_kye", GENERAL_SETTINGS.iter().map(|(k, _)| *k)),
            Some("master_key")
        );
        assert_eq!(
            did_you_mean("model_lsit", TOP_LEVEL.iter().map(|(k, _)| *k)),
            Some("model_list")
        );
        assert_eq!(
            did_you_mean("zzzzzzzz", TOP_LEVEL.iter().map(|(k, _)| *k)),
            None
        );
        assert_eq!(
            unknown_key_message(Section::General, "drop_params"),
            "not a known LiteLLM general_settings key; `drop_params` belongs under `litellm_settings`"
        );
        assert_eq!(
            unknown_key_message(Section::Top, "master_key"),
            "not a known LiteLLM config section; `master_key` belongs under `general_settings`"
        );
    }

    #[test]
    fn deprecated_keys_are_known() {
        for (path, _) in DEPRECATED {
            let (section, key) = path.split_once('.').expect("dotted");
            let section = Section::NESTED
                .into_iter()
                .find(|s| s.name() == section)
                .expect("section");
            assert!(section.lookup(key).is_some(), "{path}");
        }
    }
}
