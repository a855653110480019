//! Model prices: the embedded LiteLLM price table, its lookup rules and the cost of one request's [`Usage`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::money::Nanos;
use crate::usage::Usage;

/// LiteLLM's `model_prices_and_context_window.json` (see `data/NOTICE.md`).
const EMBEDDED_JSON: &str = include_str!("../data/model_prices_and_context_window.json");

/// Table keys that document the format rather than price a model.
const NON_MODEL_KEYS: &[&str] = &["sample_spec", "fallback_generalizations"];

/// How many `alias_of` hops are followed before an alias is dropped as a cycle.
const MAX_ALIAS_HOPS: usize = 8;

/// Prices of one model, in USD per token, plus the context window facts the table gives.
///
/// A price the table does not give for input or output is zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_cost_per_token: Decimal,
    pub output_cost_per_token: Decimal,
    /// Price of a prompt token served from the provider's cache; `None` bills cached tokens at the input price.
    pub cache_read_input_token_cost: Option<Decimal>,
    /// Price of a prompt token written to the cache (Anthropic); `None` bills cache writes at the input price.
    pub cache_creation_input_token_cost: Option<Decimal>,
    /// Price of a reasoning token; `None` bills reasoning tokens at the output price.
    pub output_cost_per_reasoning_token: Option<Decimal>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    /// `chat`, `embedding`, `completion`, `image_generation`, ...
    pub mode: Option<String>,
    pub litellm_provider: Option<String>,
}

impl ModelPrice {
    /// A price from config (`model_info.input_cost_per_token` / `output_cost_per_token`) for a deployment the
    /// table does not know.
    pub fn from_prices(
        input_cost_per_token: Decimal,
        output_cost_per_token: Decimal,
    ) -> ModelPrice {
        ModelPrice {
            input_cost_per_token,
            output_cost_per_token,
            ..ModelPrice::default()
        }
    }

    /// This price with the config's per-token prices, where given, in place of the table's. Cache and
    /// reasoning prices and the context window stay as they are.
    pub fn with_overrides(&self, input: Option<Decimal>, output: Option<Decimal>) -> ModelPrice {
        ModelPrice {
            input_cost_per_token: input.unwrap_or(self.input_cost_per_token),
            output_cost_per_token: output.unwrap_or(self.output_cost_per_token),
            ..self.clone()
        }
    }

    /// The cost of one request.
    ///
    /// `cached_tokens` are part of `prompt_tokens` and are billed at the cache-read price (the input price when
    /// there is none); `cache_creation_tokens` are part of `prompt_tokens` too, billed at the cache-write price; `reasoning_tokens` are part of `completion_tokens` and are billed at the reasoning price
    /// when there is one, otherwise at the output price. Computed exactly in decimal, rounded half-to-even to the
    /// nano-dollar once; saturates rather than overflows.
    pub fn cost(&self, usage: &Usage) -> Nanos {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let written = usage
            .cache_creation_tokens
            .min(usage.prompt_tokens - cached);
        let uncached = usage.prompt_tokens - cached - written;
        let cache_price = self
            .cache_read_input_token_cost
            .unwrap_or(self.input_cost_per_token);
        let write_price = self
            .cache_creation_input_token_cost
            .unwrap_or(self.input_cost_per_token);

        let mut total = times(uncached, self.input_cost_per_token);
        total = plus(total, times(cached, cache_price));
        total = plus(total, times(written, write_price));
        match self.output_cost_per_reasoning_token {
            Some(reasoning_price) => {
                let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
                let visible = usage.completion_tokens - reasoning;
                total = plus(total, times(visible, self.output_cost_per_token));
                total = plus(total, times(reasoning, reasoning_price));
            }
            None => {
                total = plus(
                    total,
                    times(usage.completion_tokens, self.output_cost_per_token),
                )
            }
        }
        Nanos::from_usd_decimal(total)
    }
}

fn times(tokens: u64, price: Decimal) -> Decimal {
    if tokens == 0 {
        return Decimal::ZERO;
    }
    Decimal::from(tokens)
        .checked_mul(price)
        .unwrap_or(if price.is_sign_negative() {
            Decimal::MIN
        } else {
            Decimal::MAX
        })
}

fn plus(a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or(if b.is_sign_negative() {
        Decimal::MIN
    } else {
        Decimal::MAX
    })
}

/// Model prices by LiteLLM model key (`gpt-4o-mini`, `vertex_ai/claude-3-5-haiku`, ...).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    entries: HashMap<Box<str>, ModelPrice>,
}

impl PriceTable {
    /// The table compiled into the binary, parsed on first use and kept for the life of the process.
    pub fn embedded() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        // The embedded file is a JSON object (checked by the tests), so this never falls back in practice.
        TABLE.get_or_init(|| PriceTable::parse(EMBEDDED_JSON).unwrap_or_default())
    }

    /// Parse a table in the format of LiteLLM's `model_prices_and_context_window.json`.
    ///
    /// Fails only when `json` is not a JSON object. Entries that are not objects or carry a price that is not a
    /// non-negative number (or numeric string) are skipped, as are `sample_spec` and other entries with none of
    /// the fields this crate reads. `alias_of` entries take the price of the entry they name. Unknown fields are
    /// ignored; a context-window field that is not a whole number is treated as absent.
    pub fn parse(json: &str) -> Result<PriceTable, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        let raw = de.deserialize_map(TableVisitor)?;
        de.end()?;

        let mut entries = HashMap::with_capacity(raw.prices.len() + raw.aliases.len());
        entries.extend(raw.prices);
        for (alias, target) in &raw.aliases {
            let mut target: &str = target;
            for _ in 0..MAX_ALIAS_HOPS {
                if let Some(price) = entries.get(target) {
                    let price = price.clone();
                    entries.insert(alias.clone(), price);
                    break;
                }
                match raw.aliases.get(target) {
                    Some(next) => target = next,
                    None => break,
                }
            }
        }
        Ok(PriceTable { entries })
    }

    /// The entry stored under exactly `key`.
    pub fn get(&self, key: &str) -> Option<&ModelPrice> {
        self.entries.get(key)
    }

    /// Find the price of `model` served by `provider`, in LiteLLM's order; the first key present wins:
    ///
    /// 1. `{provider}/{model}`
    /// 2. `{model}`
    /// 3. if `model` contains `/`, its part after the last `/` (`{tail}`),
    /// 4. then `{provider}/{tail}`.
    ///
    /// Keys are matched exactly (case-sensitive; no date-suffix or other fuzzy matching). An empty `provider`
    /// skips the provider-prefixed tries. E.g. provider `hosted_vllm`, model `meta-llama/Llama-3-8b` tries
    /// `hosted_vllm/meta-llama/Llama-3-8b`, `meta-llama/Llama-3-8b`, `Llama-3-8b`, `hosted_vllm/Llama-3-8b`.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        let with_provider = |name: &str| {
            if provider.is_empty() {
                None
            } else {
                self.entries.get(format!("{provider}/{name}").as_str())
            }
        };
        with_provider(model)
            .or_else(|| self.entries.get(model))
            .or_else(|| {
                let (_, tail) = model.rsplit_once('/')?;
                self.entries.get(tail).or_else(|| with_provider(tail))
            })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing. One pass over the document: each entry's known fields are captured as borrowed raw JSON text (so prices
// are read from their exact decimal text, never through f64), everything else is skipped without allocating.

struct RawTable {
    prices: Vec<(Box<str>, ModelPrice)>,
    aliases: HashMap<Box<str>, Box<str>>,
}

/// A map key, borrowed from the input unless it contains escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = RawTable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of model entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTable, A::Error> {
        let mut table = RawTable {
            prices: Vec::with_capacity(map.size_hint().unwrap_or(4096)),
            aliases: HashMap::new(),
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let entry = map.next_value::<RawEntry<'de>>()?;
            if NON_MODEL_KEYS.contains(&&*key) {
                continue;
            }
            if !entry.any_field {
                // Only an `alias_of` (or nothing this crate reads): remember the alias, resolve it later.
                if let Some(target) = entry.alias_of.and_then(raw_string) {
                    table.aliases.insert(key.into(), target.into());
                }
                continue;
            }
            if let Some(price) = entry.to_price() {
                table.prices.push((key.into(), price));
            }
        }
        Ok(table)
    }
}

/// The fields of one entry this crate reads, as raw JSON text borrowed from the input.
#[derive(Default)]
struct RawEntry<'de> {
    is_object: bool,
    /// Whether any price, context-window, mode or provider field is present.
    any_field: bool,
    input_cost_per_token: Option<&'de RawValue>,
    output_cost_per_token: Option<&'de RawValue>,
    cache_read_input_token_cost: Option<&'de RawValue>,
    cache_creation_input_token_cost: Option<&'de RawValue>,
    output_cost_per_reasoning_token: Option<&'de RawValue>,
    max_input_tokens: Option<&'de RawValue>,
    max_output_tokens: Option<&'de RawValue>,
    max_tokens: Option<&'de RawValue>,
    mode: Option<&'de RawValue>,
    litellm_provider: Option<&'de RawValue>,
    alias_of: Option<&'de RawValue>,
}

impl RawEntry<'_> {
    /// `None` when the entry is not an object or a price is malformed.
    fn to_price(&self) -> Option<ModelPrice> {
        if !self.is_object {
            return None;
        }
        Some(ModelPrice {
            input_cost_per_token: price(self.input_cost_per_token)?.unwrap_or_default(),
            output_cost_per_token: price(self.output_cost_per_token)?.unwrap_or_default(),
            cache_read_input_token_cost: price(self.cache_read_input_token_cost)?,
            cache_creation_input_token_cost: price(self.cache_creation_input_token_cost)?,
            output_cost_per_reasoning_token: price(self.output_cost_per_reasoning_token)?,
            max_input_tokens: self.max_input_tokens.and_then(whole_number),
            max_output_tokens: self.max_output_tokens.and_then(whole_number),
            max_tokens: self.max_tokens.and_then(whole_number),
            mode: self.mode.and_then(raw_string).map(str::to_owned),
            litellm_provider: self
                .litellm_provider
                .and_then(raw_string)
                .map(str::to_owned),
        })
    }
}

impl<'de> Deserialize<'de> for RawEntry<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = RawEntry<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a model entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry<'de>, A::Error> {
        let mut e = RawEntry {
            is_object: true,
            ..RawEntry::default()
        };
        while let Some(Key(field)) = map.next_key::<Key<'de>>()? {
            let slot = match &*field {
                "input_cost_per_token" => &mut e.input_cost_per_token,
                "output_cost_per_token" => &mut e.output_cost_per_token,
                "cache_read_input_token_cost" => &mut e.cache_read_input_token_cost,
                "cache_creation_input_token_cost" => &mut e.cache_creation_input_token_cost,
                "output_cost_per_reasoning_token" => &mut e.output_cost_per_reasoning_token,
                "max_input_tokens" => &mut e.max_input_tokens,
                "max_output_tokens" => &mut e.max_output_tokens,
                "max_tokens" => &mut e.max_tokens,
                "mode" => &mut e.mode,
                "litellm_provider" => &mut e.litellm_provider,
                "alias_of" => {
                    e.alias_of = Some(map.next_value()?);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
            e.any_field = true;
        }
        Ok(e)
    }

    // Anything but an object is an entry to skip, not an error.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawEntry<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawEntry::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawEntry<'de>, E> {
        Ok(RawEntry::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawEntry<'de>, E> {
        Ok(RawEntry::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawEntry<'de>, E> {
        Ok(RawEntry::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawEntry<'de>, E> {
        Ok(RawEntry::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawEntry<'de>, E> {
        Ok(RawEntry::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawEntry<'de>, E> {
        Ok(RawEntry::default())
    }
}

/// A price field: `Some(None)` when absent or `null`, `Some(Some(d))` for a non-negative number or numeric
/// string, `None` (bad entry) for anything else.
fn price(raw: Option<&RawValue>) -> Option<Option<Decimal>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let text = raw.get();
    if text == "null" {
        return Some(None);
    }
    let text = match raw_string(raw) {
        Some(s) => s.trim(),
        None if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) => text,
        None => return None,
    };
    let d = parse_decimal(text)?;
    (!d.is_sign_negative() || d.is_zero()).then_some(Some(d))
}

/// A decimal from its exact text, with or without an exponent (`1.5e-07`).
fn parse_decimal(text: &str) -> Option<Decimal> {
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
            .or_else(|_| Decimal::from_scientific_lossy(text))
            .ok()
    } else {
        Decimal::from_str(text).ok()
    }
}

/// A token count: a non-negative whole JSON number (`8192`, `8192.0`) or such a number in a string.
fn whole_number(raw: &RawValue) -> Option<u64> {
    let text = match raw_string(raw) {
        Some(s) => s.trim(),
        None => raw.get(),
    };
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let d = parse_decimal(text)?;
    if d.is_sign_negative() || !d.fract().is_zero() {
        return None;
    }
    u64::try_from(d.trunc()).ok()
}

/// The contents of a JSON string without escapes; `None` for other values (and for the rare escaped string).
fn raw_string(raw: &RawValue) -> Option<&str> {
    let inner = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            cached_tokens: cached,
            reasoning_tokens: reasoning,
            cache_creation_tokens: 0,
        }
    }

    #[test]
    fn embedded_table_parses_and_times() {
        let start = std::time::Instant::now();
        let table = PriceTable::parse(EMBEDDED_JSON).unwrap();
        let first = start.elapsed();
        let best = (0..4)
            .map(|_| {
                let start = std::time::Instant::now();
                let t = PriceTable::parse(EMBEDDED_JSON).unwrap();
                let elapsed = start.elapsed();
                drop(t);
                elapsed
            })
            .min()
            .unwrap();
        println!(
            "price table: {} entries from {} bytes parsed in {first:?} (best of 4 more: {best:?})",
            table.len(),
            EMBEDDED_JSON.len(),
        );
        assert!(table.len() > 4000, "{}", table.len());
        assert!(table.get("sample_spec").is_none());
        assert!(table.get("fallback_generalizations").is_none());
        assert!(std::ptr::eq(PriceTable::embedded(), PriceTable::embedded()));
        assert_eq!(PriceTable::embedded().len(), table.len());
    }

    #[test]
    fn gpt_4o_mini_exact_prices_and_cost() {
        let p = PriceTable::embedded()
            .lookup("openai", "gpt-4o-mini")
            .unwrap();
        assert_eq!(p.input_cost_per_token, dec("0.00000015"));
        assert_eq!(p.output_cost_per_token, dec("0.0000006"));
        assert_eq!(p.cache_read_input_token_cost, Some(dec("0.000000075")));
        assert_eq!(p.max_input_tokens, Some(128_000));
        assert_eq!(p.max_output_tokens, Some(16_384));
        assert_eq!(p.mode.as_deref(), Some("chat"));
        assert_eq!(p.litellm_provider.as_deref(), Some("openai"));

        // 1000 * 0.15e-6 + 500 * 0.6e-6 = 0.00015 + 0.0003
        assert_eq!(p.cost(&usage(1000, 500, 0, 0)), Nanos(450_000));
        // 600 * 0.15e-6 + 400 * 0.075e-6 + 500 * 0.6e-6 = 0.00009 + 0.00003 + 0.0003
        assert_eq!(p.cost(&usage(1000, 500, 400, 0)), Nanos(420_000));
        // No reasoning price: reasoning tokens are plain output tokens.
        assert_eq!(p.cost(&usage(1000, 500, 400, 300)), Nanos(420_000));
        assert_eq!(p.cost(&usage(1, 0, 0, 0)), Nanos(150));
        assert_eq!(p.cost(&Usage::default()), Nanos::ZERO);
    }

    #[test]
    fn cached_and_reasoning_prices_from_the_table() {
        let t = PriceTable::embedded();
        // dashscope/qwen-turbo: input 5e-08, output 2e-07, reasoning 5e-07.
        let q = t.lookup("dashscope", "qwen-turbo").unwrap();
        assert_eq!(q.output_cost_per_reasoning_token, Some(dec("0.0000005")));
        // 1000 * 5e-8 + (800 - 300) * 2e-7 + 300 * 5e-7 = 0.00005 + 0.0001 + 0.00015
        assert_eq!(q.cost(&usage(1000, 800, 0, 300)), Nanos(300_000));
        // Reasoning above completion is capped at completion.
        assert_eq!(q.cost(&usage(0, 10, 0, 99)), Nanos(5_000));

        // claude-sonnet-4-5: input 3e-06, output 1.5e-05, cache read 3e-07, cache write 3.75e-06.
        let c = t.lookup("anthropic", "claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(c.cache_creation_input_token_cost, Some(dec("0.00000375")));
        // 200 * 3e-6 + 800 * 3e-7 + 100 * 1.5e-5 = 0.0006 + 0.00024 + 0.0015
        assert_eq!(c.cost(&usage(1000, 100, 800, 0)), Nanos(2_340_000));
        // Cached above prompt is capped at prompt.
        assert_eq!(c.cost(&usage(10, 0, 50, 0)), Nanos(3_000));
    }

    #[test]
    fn constructed_price_rounds_once_half_even() {
        let p = ModelPrice {
            cache_read_input_token_cost: Some(dec("0.00000000025")),
            output_cost_per_reasoning_token: Some(dec("0.0000000035")),
            ..ModelPrice::from_prices(dec("0.0000000015"), dec("0.0000000025"))
        };
        // 1 input at 1.5 nanos is 2 nanos on its own, but sums are rounded once: 1.5 + 1 * 2.5 = 4.
        assert_eq!(p.cost(&usage(1, 1, 0, 0)), Nanos(4));
        // 2 uncached * 1.5 + 2 cached * 0.25 + 1 * 2.5 + 1 * 3.5 = 3 + 0.5 + 2.5 + 3.5 = 9.5 -> 10
        assert_eq!(p.cost(&usage(4, 2, 2, 1)), Nanos(10));
        // 0.5 -> 0 (half-even)
        assert_eq!(p.cost(&usage(2, 0, 2, 0)), Nanos(0));
    }

    #[test]
    fn cost_saturates() {
        let p = ModelPrice::from_prices(dec("1000"), dec("1000"));
        assert_eq!(p.cost(&usage(u64::MAX, u64::MAX, 0, 0)), Nanos::MAX);
    }

    #[test]
    fn lookup_order() {
        let json = r#"{
            "gpt-4o-mini": {"input_cost_per_token": 1, "litellm_provider": "openai"},
            "openai/gpt-4o-mini": {"input_cost_per_token": 2},
            "claude-x": {"input_cost_per_token": 3},
            "meta-llama/Llama-3-8b": {"input_cost_per_token": 4},
            "Llama-3-8b": {"input_cost_per_token": 5},
            "hosted_vllm/Llama-3-8b": {"input_cost_per_token": 6},
            "hosted_vllm/meta-llama/Llama-3-8b": {"input_cost_per_token": 7},
            "vllm/Mistral-7b": {"input_cost_per_token": 8}
        }"#;
        let t = PriceTable::parse(json).unwrap();
        let input = |provider: &str, model: &str| {
            t.lookup(provider, model)
                .map(|p| p.input_cost_per_token.to_string())
        };
        assert_eq!(input("openai", "gpt-4o-mini").as_deref(), Some("2"));
        assert_eq!(input("azure", "gpt-4o-mini").as_deref(), Some("1"));
        assert_eq!(input("", "gpt-4o-mini").as_deref(), Some("1"));
        assert_eq!(input("anthropic", "claude-x").as_deref(), Some("3"));
        assert_eq!(
            input("hosted_vllm", "meta-llama/Llama-3-8b").as_deref(),
            Some("7")
        );
        assert_eq!(
            input("other", "meta-llama/Llama-3-8b").as_deref(),
            Some("4")
        );
        assert_eq!(input("other", "org/Llama-3-8b").as_deref(), Some("5"));
        assert_eq!(input("vllm", "org/Mistral-7b").as_deref(), Some("8"));
        assert_eq!(input("vllm", "Mistral-7b").as_deref(), Some("8"));
        assert_eq!(input("other", "org/Mistral-7b"), None);
        assert_eq!(input("openai", "gpt-4o-mini-2024-07-18"), None);
        assert_eq!(input("openai", "GPT-4O-MINI"), None);
    }

    #[test]
    fn lookup_in_embedded_table() {
        let t = PriceTable::embedded();
        assert!(t.lookup("openai", "gpt-4o-mini").is_some());
        assert!(t.lookup("openai", "gpt-4o").is_some());
        let c = t.lookup("anthropic", "claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(c.litellm_provider.as_deref(), Some("anthropic"));
        // Vertex keys carry the provider prefix.
        assert!(t.lookup("vertex_ai", "claude-3-5-haiku").is_some());
        assert!(t.lookup("openai", "no-such-model-anywhere").is_none());
    }

    #[test]
    fn aliases_take_their_targets_price() {
        let t = PriceTable::embedded();
        let alias = t.get("claude-sonnet-latest").unwrap();
        assert_eq!(alias, t.get("claude-sonnet-5-5").unwrap());

        let json = r#"{
            "a": {"alias_of": "b"}, "b": {"alias_of": "c"}, "c": {"input_cost_per_token": 1e-6},
            "loop1": {"alias_of": "loop2"}, "loop2": {"alias_of": "loop1"},
            "dangling": {"alias_of": "nowhere"}
        }"#;
        let t = PriceTable::parse(json).unwrap();
        assert_eq!(t.get("a").unwrap().input_cost_per_token, dec("0.000001"));
        assert_eq!(t.get("b").unwrap().input_cost_per_token, dec("0.000001"));
        assert!(t.get("loop1").is_none());
        assert!(t.get("loop2").is_none());
        assert!(t.get("dangling").is_none());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn bad_entries_are_skipped_not_fatal() {
        let json = r#"{
            "sample_spec": {"input_cost_per_token": 0.0, "max_input_tokens": "max input tokens, if any"},
            "good": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": "6e-07", "extra": {"x": [1, 2]},
                     "max_input_tokens": 8192.0, "max_output_tokens": "4096", "max_tokens": null,
                     "mode": "chat", "litellm_provider": "openai", "supports_vision": true},
            "bad_price_string": {"input_cost_per_token": "free"},
            "bad_price_type": {"input_cost_per_token": {"tiers": []}},
            "negative": {"output_cost_per_token": -1e-6},
            "not_an_object": "hello",
            "a_list": [1, {"input_cost_per_token": 1}],
            "a_number": 3,
            "a_null": null,
            "no_known_fields": {"foo": 1},
            "odd_context": {"input_cost_per_token": 0, "max_input_tokens": "lots", "max_output_tokens": -5,
                            "mode": 7, "litellm_provider": null},
            "precise": {"input_cost_per_token": 1.0000000000000001e-07, "cache_read_input_token_cost": 2E-8,
                        "output_cost_per_reasoning_token": null},
            "esc\u0061ped": {"input_cost_per_token": 1}
        }"#;
        let t = PriceTable::parse(json).unwrap();
        let mut keys: Vec<&str> = t.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["escaped", "good", "odd_context", "precise"]);

        let g = t.get("good").unwrap();
        assert_eq!(g.input_cost_per_token, dec("0.00000015"));
        assert_eq!(g.output_cost_per_token, dec("0.0000006"));
        assert_eq!(g.max_input_tokens, Some(8192));
        assert_eq!(g.max_output_tokens, Some(4096));
        assert_eq!(g.max_tokens, None);
        assert_eq!(g.mode.as_deref(), Some("chat"));
        assert_eq!(g.litellm_provider.as_deref(), Some("openai"));

        let o = t.get("odd_context").unwrap();
        assert_eq!(o.input_cost_per_token, Decimal::ZERO);
        assert_eq!(o.output_cost_per_token, Decimal::ZERO);
        assert_eq!((o.max_input_tokens, o.max_output_tokens), (None, None));
        assert_eq!(
            (o.mode.as_deref(), o.litellm_provider.as_deref()),
            (None, None)
        );

        let p = t.get("precise").unwrap();
        assert_eq!(p.input_cost_per_token, dec("0.00000010000000000000001"));
        assert_eq!(p.cache_read_input_token_cost, Some(dec("0.00000002")));
        assert_eq!(p.output_cost_per_reasoning_token, None);

        assert!(PriceTable::parse("[1, 2]").is_err());
        assert!(PriceTable::parse("{\"a\": ").is_err());
        assert!(PriceTable::parse("{} trailing").is_err());
    }

    #[test]
    fn overrides() {
        let t = PriceTable::embedded();
        let base = t.lookup("openai", "gpt-4o-mini").unwrap();
        let o = base.with_overrides(Some(dec("0.000001")), None);
        assert_eq!(o.input_cost_per_token, dec("0.000001"));
        assert_eq!(o.output_cost_per_token, base.output_cost_per_token);
        assert_eq!(
            o.cache_read_input_token_cost,
            base.cache_read_input_token_cost
        );
        assert_eq!(o.max_input_tokens, base.max_input_tokens);
        // 1000 * 1e-6 + 100 * 6e-7
        assert_eq!(o.cost(&usage(1000, 100, 0, 0)), Nanos(1_060_000));
        assert_eq!(base.with_overrides(None, None), *base);

        let custom = ModelPrice::from_prices(dec("0.000002"), dec("0.000004"));
        assert_eq!(custom.cache_read_input_token_cost, None);
        assert_eq!(custom.mode, None);
        // Cached tokens fall back to the input price.
        assert_eq!(custom.cost(&usage(100, 50, 40, 10)), Nanos(400_000));
        let none = ModelPrice::default();
        assert_eq!(none.cost(&usage(100, 50, 40, 10)), Nanos::ZERO);
    }
}
