//! Reading `RoutingSettings`: `router_settings` (which wins over the `litellm_settings` globals it shares keys with, as LiteLLM's `Router` arguments do), the `general_settings` health-check keys, and the check that fallbacks name model groups that exist.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::convert::{self, Diag, found};
use crate::error::KeyPath;
use crate::keys;
use crate::routing::{ClassPolicy, ErrorClass, RoutingSettings, Strategy};
use crate::types::Deployment;
use crate::yaml::{Entry, Loc, Node, Value};

/// LiteLLM's `routing_strategy` names.
const STRATEGIES: &[&str] = &[
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
    "cost-based-routing",
];

/// `routing_strategy_args` keys read for `latency-based-routing`.
const LATENCY_ARGS: &[&str] = &["ttl", "lowest_latency_buffer"];

/// The error classes with LiteLLM's names; `retry_policy` keys add `Retries`,
/// `allowed_fails_policy` keys `AllowedFails`.
const CLASSES: [(ErrorClass, &str); 6] = [
    (ErrorClass::BadRequest, "BadRequestError"),
    (ErrorClass::Authentication, "AuthenticationError"),
    (ErrorClass::Timeout, "TimeoutError"),
    (ErrorClass::RateLimit, "RateLimitError"),
    (
        ErrorClass::ContentPolicyViolation,
        "ContentPolicyViolationError",
    ),
    (ErrorClass::InternalServer, "InternalServerError"),
];

/// A model group named by a fallback setting, with where it is written.
pub(crate) struct GroupRef {
    name: String,
    loc: Loc,
    path: KeyPath,
}

/// The settings, and the model groups the fallbacks in effect name (checked once `model_list` is
/// known, by [`check_groups`]).
pub(crate) struct Routing {
    pub(crate) settings: RoutingSettings,
    pub(crate) groups: Vec<GroupRef>,
}

/// A list value with the groups it names.
struct Named<T> {
    value: Vec<T>,
    groups: Vec<GroupRef>,
}

/// The keys `router_settings` and `litellm_settings` share.
#[derive(Default)]
struct Shared {
    num_retries: Option<u32>,
    allowed_fails: Option<u32>,
    max_fallbacks: Option<u32>,
    fallbacks: Option<Named<(String, Vec<String>)>>,
    context_window_fallbacks: Option<Named<(String, Vec<String>)>>,
    content_policy_fallbacks: Option<Named<(String, Vec<String>)>>,
    default_fallbacks: Option<Named<String>>,
}

impl Shared {
    /// Reads `key` if it is a shared key; `false` otherwise.
    fn read(&mut self, key: &str, v: &Node, path: &KeyPath, diag: &mut Diag) -> bool {
        match key {
            "num_retries" => self.num_retries = convert::whole_u32(v, path, diag),
            "allowed_fails" => self.allowed_fails = convert::whole_u32(v, path, diag),
            "max_fallbacks" => self.max_fallbacks = convert::whole_u32(v, path, diag),
            "fallbacks" => self.fallbacks = fallbacks(v, path, diag),
            "context_window_fallbacks" => self.context_window_fallbacks = fallbacks(v, path, diag),
            "content_policy_fallbacks" => self.content_policy_fallbacks = fallbacks(v, path, diag),
            "default_fallbacks" => self.default_fallbacks = group_list(v, path, diag),
            _ => return false,
        }
        true
    }
}

/// The entries of a top-level section (nothing if absent or not a mapping; that is reported
/// elsewhere).
fn section<'a>(root: &'a Node, name: &str) -> &'a [Entry] {
    root.get(name)
        .and_then(|e| e.value.entries())
        .unwrap_or_default()
}

/// Reads the routing, retry, fallback, cooldown and health-check settings.
pub(crate) fn read(root: &Node, diag: &mut Diag) -> Routing {
    let mut s = RoutingSettings::default();

    let mut litellm = Shared::default();
    let litellm_path = KeyPath::root().key("litellm_settings");
    for e in section(root, "litellm_settings") {
        litellm.read(&e.key, &e.value, &litellm_path.key(&e.key), diag);
    }

    let mut router = Shared::default();
    let router_path = KeyPath::root().key("router_settings");
    let mut strategy: Option<(String, &Node, KeyPath)> = None;
    let mut args: Option<(&Node, KeyPath)> = None;
    let mut pre_call = None;
    let mut pre_call_alias = None;
    for e in section(root, "router_settings") {
        let path = router_path.key(&e.key);
        let v = &e.value;
        if router.read(&e.key, v, &path, diag) {
            continue;
        }
        match e.key.as_str() {
            "routing_strategy" => {
                strategy = convert::string(v, &path, diag).map(|name| (name, v, path));
            }
            "routing_strategy_args" => args = Some((v, path)),
            "retry_after" => {
                if let Some(d) = convert::seconds(v, &path, diag, true) {
                    s.retry_after = d;
                }
            }
            "retry_policy" => s.retry_policy = policy(v, &path, "Retries", diag),
            "model_group_retry_policy" => {
                s.model_group_retry_policy = group_policies(v, &path, diag);
            }
            "allowed_fails_policy" => {
                s.allowed_fails_policy = policy(v, &path, "AllowedFails", diag);
            }
            "cooldown_time" => {
                if let Some(d) = convert::seconds(v, &path, diag, true) {
                    s.cooldown_time = d;
                }
            }
            "disable_cooldowns" => {
                s.disable_cooldowns = convert::boolean(v, &path, diag).unwrap_or(false);
            }
            "enable_pre_call_checks" => pre_call = convert::boolean(v, &path, diag),
            "enable_pre_call_check" => pre_call_alias = convert::boolean(v, &path, diag),
            "stream_timeout" => s.stream_timeout = convert::seconds(v, &path, diag, false),
            _ => {}
        }
    }
    s.strategy = read_strategy(strategy, args, diag);
    s.enable_pre_call_checks = pre_call.or(pre_call_alias).unwrap_or(false);

    // LiteLLM's Router: `num_retries` if given, else `litellm.num_retries`; the lists use
    // `router value or litellm value`, so an empty router list counts as unset.
    s.num_retries = router
        .num_retries
        .or(litellm.num_retries)
        .unwrap_or(s.num_retries);
    s.allowed_fails = router
        .allowed_fails
        .or(litellm.allowed_fails)
        .unwrap_or(s.allowed_fails);
    s.max_fallbacks = router
        .max_fallbacks
        .or(litellm.max_fallbacks)
        .unwrap_or(s.max_fallbacks);
    let mut groups = Vec::new();
    s.fallbacks = pick(router.fallbacks, litellm.fallbacks, &mut groups);
    s.context_window_fallbacks = pick(
        router.context_window_fallbacks,
        litellm.context_window_fallbacks,
        &mut groups,
    );
    s.content_policy_fallbacks = pick(
        router.content_policy_fallbacks,
        litellm.content_policy_fallbacks,
        &mut groups,
    );
    s.default_fallbacks = pick(
        router.default_fallbacks,
        litellm.default_fallbacks,
        &mut groups,
    );

    let general = KeyPath::root().key("general_settings");
    for e in section(root, "general_settings") {
        let path = general.key(&e.key);
        let v = &e.value;
        match e.key.as_str() {
            "background_health_checks" => {
                s.background_health_checks = convert::boolean(v, &path, diag).unwrap_or(false);
            }
            "health_check_interval" => {
                if let Some(d) = convert::seconds(v, &path, diag, false) {
                    s.health_check_interval = d;
                }
            }
            "health_check_concurrency" => {
                if let Some(n) = at_least_one(v, &path, diag) {
                    s.health_check_concurrency = n;
                }
            }
            _ => {}
        }
    }
    Routing {
        settings: s,
        groups,
    }
}

/// The router's list if it is given and not empty, else `litellm_settings`' (LiteLLM's `or`).
fn pick<T>(
    router: Option<Named<T>>,
    litellm: Option<Named<T>>,
    groups: &mut Vec<GroupRef>,
) -> Vec<T> {
    let chosen = match (router, litellm) {
        (Some(r), Some(l)) if r.value.is_empty() => Some(l),
        (Some(r), _) => Some(r),
        (None, l) => l,
    };
    match chosen {
        Some(named) => {
            groups.extend(named.groups);
            named.value
        }
        None => Vec::new(),
    }
}

fn at_least_one(v: &Node, path: &KeyPath, diag: &mut Diag) -> Option<usize> {
    let n = convert::whole(v, path, diag)?;
    if n == 0 {
        diag.error(
            Some(&v.loc),
            path,
            format!("must be at least 1, found {}", found(v)),
        );
        return None;
    }
    Some(usize::try_from(n).unwrap_or(usize::MAX))
}

fn read_strategy(
    name: Option<(String, &Node, KeyPath)>,
    args: Option<(&Node, KeyPath)>,
    diag: &mut Diag,
) -> Strategy {
    let (mut strategy, label) = match &name {
        None => (Strategy::SimpleShuffle, "simple-shuffle"),
        Some((name, node, path)) => match name.trim() {
            "simple-shuffle" => (Strategy::SimpleShuffle, "simple-shuffle"),
            "least-busy" => (Strategy::LeastBusy, "least-busy"),
            "latency-based-routing" => (
                Strategy::LatencyBased {
                    ttl: Duration::from_secs(3600),
                    lowest_latency_buffer: 0.0,
                },
                "latency-based-routing",
            ),
            "usage-based-routing" => (Strategy::UsageBased, "usage-based-routing"),
            "usage-based-routing-v2" => (Strategy::UsageBased, "usage-based-routing-v2"),
            "cost-based-routing" => (Strategy::CostBased, "cost-based-routing"),
            other => {
                let hint = keys::did_you_mean(other, STRATEGIES.iter().copied())
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                diag.error(
                    Some(&node.loc),
                    path,
                    format!(
                        "unknown routing strategy {}; {hint}expected one of: {}",
                        found(node),
                        STRATEGIES.join(", ")
                    ),
                );
                (Strategy::SimpleShuffle, "simple-shuffle")
            }
        },
    };
    let Some((node, path)) = args else {
        return strategy;
    };
    let Some(entries) = convert::mapping(node, &path, diag, "a mapping of arguments") else {
        return strategy;
    };
    for e in entries {
        let p = path.key(&e.key);
        let v = &e.value;
        match (&mut strategy, e.key.as_str()) {
            (Strategy::LatencyBased { ttl, .. }, "ttl") => {
                if let Some(d) = convert::seconds(v, &p, diag, false) {
                    *ttl = d;
                }
            }
            (
                Strategy::LatencyBased {
                    lowest_latency_buffer,
                    ..
                },
                "lowest_latency_buffer",
            ) => {
                if let Some(b) = convert::non_negative(v, &p, diag) {
                    *lowest_latency_buffer = b;
                }
            }
            (Strategy::LatencyBased { .. }, other) => {
                let hint = keys::did_you_mean(other, LATENCY_ARGS.iter().copied())
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                diag.warn(
                    Some(&e.key_loc),
                    &p,
                    format!(
                        "not used by tollgate (latency-based-routing reads `ttl` and `lowest_latency_buffer`); ignored{hint}"
                    ),
                );
            }
            (_, other) if LATENCY_ARGS.contains(&other) => diag.warn(
                Some(&e.key_loc),
                &p,
                format!("only used by latency-based-routing, not {label}; ignored"),
            ),
            _ => diag.warn(
                Some(&e.key_loc),
                &p,
                format!("not used by tollgate with {label}; ignored"),
            ),
        }
    }
    strategy
}

/// `retry_policy` / `allowed_fails_policy`: `<Class>Error<suffix>: n`.
fn policy(node: &Node, path: &KeyPath, suffix: &str, diag: &mut Diag) -> ClassPolicy {
    let mut policy = ClassPolicy::default();
    let Some(entries) = convert::mapping(
        node,
        path,
        diag,
        &format!("a mapping of error class to count (`RateLimitError{suffix}: 3`)"),
    ) else {
        return policy;
    };
    let names: Vec<String> = CLASSES
        .iter()
        .map(|(_, name)| format!("{name}{suffix}"))
        .collect();
    for e in entries {
        let p = path.key(&e.key);
        match names.iter().position(|n| *n == e.key) {
            Some(i) => {
                if let Some(n) = convert::whole_u32(&e.value, &p, diag) {
                    policy.counts.insert(CLASSES[i].0, n);
                }
            }
            None => {
                let message = match keys::did_you_mean(&e.key, names.iter().map(String::as_str)) {
                    Some(close) => format!("unknown error class; did you mean `{close}`?"),
                    None => format!("unknown error class; expected one of: {}", names.join(", ")),
                };
                diag.error(Some(&e.key_loc), &p, message);
            }
        }
    }
    policy
}

/// `model_group_retry_policy`: `group: {<Class>ErrorRetries: n, ...}`.
fn group_policies(node: &Node, path: &KeyPath, diag: &mut Diag) -> BTreeMap<String, ClassPolicy> {
    let mut out = BTreeMap::new();
    match &node.value {
        Value::Null | Value::Poison => {}
        Value::Map(entries) => {
            for e in entries {
                let p = policy(&e.value, &path.key(&e.key), "Retries", diag);
                out.insert(e.key.clone(), p);
            }
        }
        _ => diag.error(
            Some(&node.loc),
            path,
            format!(
                "expected a mapping of model group to retry policy, found {}",
                found(node)
            ),
        ),
    }
    out
}

/// One model group name: a non-empty plain value.
fn group_name(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<String> {
    let name = convert::string(node, path, diag)?;
    if name.trim().is_empty() {
        diag.error(Some(&node.loc), path, "the model group must not be empty");
        return None;
    }
    Some(name)
}

/// A list of model groups (a single name counts as a one-item list; null as empty).
fn group_list(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Named<String>> {
    let mut named = Named {
        value: Vec::new(),
        groups: Vec::new(),
    };
    let mut add = |item: &Node, p: KeyPath, diag: &mut Diag| {
        if let Some(name) = group_name(item, &p, diag) {
            named.groups.push(GroupRef {
                name: name.clone(),
                loc: item.loc.clone(),
                path: p,
            });
            named.value.push(name);
        }
    };
    match &node.value {
        Value::Null => {}
        Value::Poison => return None,
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                add(item, path.index(i), diag);
            }
        }
        _ if node.scalar_text().is_some() => add(node, path.clone(), diag),
        _ => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected a list of model groups, found {}", found(node)),
            );
            return None;
        }
    }
    Some(named)
}

/// LiteLLM's fallbacks shape: `[{"group": ["fallback", ...]}, ...]`, one group per item; a single
/// name may stand for its one-item list. Order is kept.
fn fallbacks(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Named<(String, Vec<String>)>> {
    const SHAPE: &str = "`- model-group: [fallback-group, ...]`";
    let items = convert::sequence(
        node,
        path,
        diag,
        &format!("a list of single-key mappings ({SHAPE})"),
    )?;
    let mut named = Named {
        value: Vec::new(),
        groups: Vec::new(),
    };
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        let entry = match &item.value {
            Value::Poison => continue,
            Value::Map(entries) if entries.len() == 1 => &entries[0],
            Value::Map(entries) => {
                diag.error(
                    Some(&item.loc),
                    &item_path,
                    format!(
                        "expected exactly one model group per item ({SHAPE}), found {} keys",
                        entries.len()
                    ),
                );
                continue;
            }
            _ => {
                diag.error(
                    Some(&item.loc),
                    &item_path,
                    format!(
                        "expected a mapping of one model group to its fallbacks ({SHAPE}), found {}",
                        found(item)
                    ),
                );
                continue;
            }
        };
        let group_path = item_path.key(&entry.key);
        if entry.key.trim().is_empty() {
            diag.error(
                Some(&entry.key_loc),
                &group_path,
                "the model group must not be empty",
            );
            continue;
        }
        let Some(list) = group_list(&entry.value, &group_path, diag) else {
            continue;
        };
        if let Some(earlier) = first.get(&entry.key) {
            diag.warn(
                Some(&entry.key_loc),
                &group_path,
                format!(
                    "`{}` already has fallbacks at {path}[{earlier}]; LiteLLM uses the first",
                    entry.key
                ),
            );
        } else {
            first.insert(entry.key.clone(), i);
        }
        // `*` as the key means every group (LiteLLM's generic fallback): nothing to check.
        if entry.key != "*" {
            named.groups.push(GroupRef {
                name: entry.key.clone(),
                loc: entry.key_loc.clone(),
                path: group_path,
            });
        }
        named.groups.extend(list.groups);
        named.value.push((entry.key.clone(), list.value));
    }
    Some(named)
}

/// Whether `name` matches a `model_name` pattern with `*` (each `*` stands for any text).
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let head = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((tail, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= tail.len() && rest.ends_with(tail)
}

/// Warns for each fallback group that is neither a `model_name` (exactly, or matched by a
/// wildcard `model_name`) nor a `model_group_alias` (LiteLLM accepts such a config).
pub(crate) fn check_groups(
    groups: &[GroupRef],
    deployments: &[Deployment],
    aliases: &BTreeMap<String, String>,
    diag: &mut Diag,
) {
    let names: BTreeSet<&str> = deployments
        .iter()
        .map(|d| d.model_name.as_str())
        .chain(aliases.keys().map(String::as_str))
        .collect();
    let patterns: Vec<&str> = names.iter().copied().filter(|n| n.contains('*')).collect();
    for g in groups {
        let name = g.name.as_str();
        if names.contains(name) || patterns.iter().any(|p| matches(p, name)) {
            continue;
        }
        let hint = keys::did_you_mean(name, names.iter().copied())
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        diag.warn(
            Some(&g.loc),
            &g.path,
            format!("`{name}` is not a model_name in model_list or a model_group_alias{hint}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcard_patterns() {
        assert!(matches("openai/*", "openai/gpt-4o"));
        assert!(matches("*", "anything"));
        assert!(matches("*-mini", "gpt-4o-mini"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("openai/*", "anthropic/claude"));
        assert!(!matches("*-mini", "gpt-4o"));
        assert!(!matches("ab*ba", "aba"));
    }
}
