//! The OpenAI-compatible family (groq, mistral, deepseek, together_ai, ...): each one's default `api_base`,
//! environment variables and quirks. They are all served by [`crate::openai::OpenAiProvider`].

/// One OpenAI-compatible provider.
#[derive(Debug)]
pub struct Family {
    /// The LiteLLM prefix.
    pub name: &'static str,
    /// The default `api_base` (ends in the version segment); `None`: `api_base` or an env var is required.
    pub default_base: Option<&'static str>,
    /// Environment variables giving the base URL, first found wins.
    pub base_env: &'static [&'static str],
    /// Environment variables giving the API key, first found wins.
    pub key_env: &'static [&'static str],
    /// OpenAI params this provider's API rejects: a 400 naming them, or dropped with `drop_params`.
    pub unsupported: &'static [&'static str],
    /// OpenAI params this provider names differently: `(openai, theirs)`.
    pub renamed: &'static [(&'static str, &'static str)],
    /// The provider serves `/rerank` (Cohere's shape).
    pub rerank: bool,
    /// A prefix the upstream model name must carry (added when missing), e.g. Fireworks'
    /// `accounts/fireworks/models/`.
    pub model_prefix: Option<&'static str>,
}

const NONE: &[&str] = &[];

/// The family, by prefix.
pub const FAMILY: &[Family] = &[
    Family {
        name: "groq",
        default_base: Some("https://api.groq.com/openai/v1"),
        base_env: &["GROQ_API_BASE"],
        key_env: &["GROQ_API_KEY"],
        unsupported: &["logprobs", "top_logprobs", "logit_bias"],
        renamed: &[],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "mistral",
        default_base: Some("https://api.mistral.ai/v1"),
        base_env: &["MISTRAL_API_BASE"],
        key_env: &["MISTRAL_API_KEY"],
        unsupported: &["logit_bias", "logprobs", "top_logprobs"],
        renamed: &[("max_completion_tokens", "max_tokens")],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "deepseek",
        default_base: Some("https://api.deepseek.com/v1"),
        base_env: &["DEEPSEEK_API_BASE"],
        key_env: &["DEEPSEEK_API_KEY"],
        unsupported: &["logit_bias", "n"],
        renamed: &[("max_completion_tokens", "max_tokens")],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "together_ai",
        default_base: Some("https://api.together.xyz/v1"),
        base_env: &["TOGETHERAI_API_BASE", "TOGETHER_AI_API_BASE"],
        key_env: &[
            "TOGETHERAI_API_KEY",
            "TOGETHER_AI_API_KEY",
            "TOGETHER_API_KEY",
        ],
        unsupported: NONE,
        renamed: &[("max_completion_tokens", "max_tokens")],
        rerank: true,
        model_prefix: None,
    },
    Family {
        name: "fireworks_ai",
        default_base: Some("https://api.fireworks.ai/inference/v1"),
        base_env: &["FIREWORKS_API_BASE", "FIREWORKS_AI_API_BASE"],
        key_env: &[
            "FIREWORKS_API_KEY",
            "FIREWORKS_AI_API_KEY",
            "FIREWORKSAI_API_KEY",
        ],
        unsupported: &["logit_bias"],
        renamed: &[("max_completion_tokens", "max_tokens")],
        rerank: false,
        model_prefix: Some("accounts/fireworks/models/"),
    },
    Family {
        name: "openrouter",
        default_base: Some("https://openrouter.ai/api/v1"),
        base_env: &["OPENROUTER_API_BASE"],
        key_env: &["OPENROUTER_API_KEY", "OR_API_KEY"],
        unsupported: NONE,
        renamed: &[],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "xai",
        default_base: Some("https://api.x.ai/v1"),
        base_env: &["XAI_API_BASE"],
        key_env: &["XAI_API_KEY"],
        unsupported: &["logit_bias"],
        renamed: &[],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "perplexity",
        default_base: Some("https://api.perplexity.ai"),
        base_env: &["PERPLEXITY_API_BASE"],
        key_env: &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        unsupported: &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "n",
            "seed",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
        ],
        renamed: &[("max_completion_tokens", "max_tokens")],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "cerebras",
        default_base: Some("https://api.cerebras.ai/v1"),
        base_env: &["CEREBRAS_API_BASE"],
        key_env: &["CEREBRAS_API_KEY"],
        unsupported: &["frequency_penalty", "presence_penalty", "logit_bias"],
        renamed: &[],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "hosted_vllm",
        default_base: None,
        base_env: &["HOSTED_VLLM_API_BASE"],
        key_env: &["HOSTED_VLLM_API_KEY"],
        unsupported: NONE,
        renamed: &[],
        rerank: true,
        model_prefix: None,
    },
    Family {
        name: "lm_studio",
        default_base: None,
        base_env: &["LM_STUDIO_API_BASE"],
        key_env: &["LM_STUDIO_API_KEY"],
        unsupported: NONE,
        renamed: &[],
        rerank: false,
        model_prefix: None,
    },
    Family {
        name: "nvidia_nim",
        default_base: Some("https://integrate.api.nvidia.com/v1"),
        base_env: &["NVIDIA_NIM_API_BASE"],
        key_env: &["NVIDIA_NIM_API_KEY"],
        unsupported: &["logit_bias"],
        renamed: &[("max_completion_tokens", "max_tokens")],
        rerank: false,
        model_prefix: None,
    },
];

/// The family member with this prefix.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILY.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_has_a_base_source_and_a_key_variable() {
        for f in FAMILY {
            assert!(
                f.default_base.is_some() || !f.base_env.is_empty(),
                "{}",
                f.name
            );
            assert!(!f.key_env.is_empty(), "{}", f.name);
            if let Some(b) = f.default_base {
                assert!(b.starts_with("https://") && !b.ends_with('/'), "{b}");
            }
        }
        assert!(family("groq").is_some() && family("openai").is_none());
    }
}
