//! Token usage of one response, as reported by the upstream (OpenAI `usage` object and its details).

use serde::{Deserialize, Serialize};

/// Token usage of one request. Missing fields count as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (`prompt_tokens_details.cached_tokens`).
    pub cached_tokens: u64,
    /// Reasoning tokens included in `completion_tokens` (`completion_tokens_details.reasoning_tokens`).
    pub reasoning_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache, included in `prompt_tokens` (Anthropic's
    /// `cache_creation_input_tokens`, as LiteLLM reports it beside the OpenAI fields).
    #[serde(default)]
    pub cache_creation_tokens: u64,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Parse an OpenAI `usage` object (chat/completions/embeddings, or the Responses API's
    /// `input_tokens`/`output_tokens` form). Returns `None` for `null` or a value that is not a usage object.
    pub fn from_json(raw: &str) -> Option<Usage> {
        if !raw.trim_start().starts_with('{') {
            return None;
        }
        let r: Option<RawUsage> = serde_json::from_str(raw).ok()?;
        let r = r?;
        let prompt = r.prompt_tokens.unwrap_or(0);
        let completion = r.completion_tokens.unwrap_or(0);
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: r.total_tokens.unwrap_or(prompt + completion),
            cached_tokens: r
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning_tokens: r
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            cache_creation_tokens: r.cache_creation_input_tokens.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chat_usage_with_details() {
        let u = Usage::from_json(
            r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
                "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}"#,
        )
        .unwrap();
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                cached_tokens: 4,
                reasoning_tokens: 2,
                cache_creation_tokens: 0,
            }
        );
    }

    #[test]
    fn parses_embedding_and_responses_usage() {
        let u = Usage::from_json(r#"{"prompt_tokens":3,"total_tokens":3}"#).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 0, 3)
        );
        let r =
            Usage::from_json(r#"{"input_tokens":7,"output_tokens":2,"total_tokens":9}"#).unwrap();
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens, r.total_tokens),
            (7, 2, 9)
        );
    }

    #[test]
    fn null_or_garbage_is_none() {
        assert_eq!(Usage::from_json("null"), None);
        assert_eq!(Usage::from_json("[1]"), None);
    }
}
