//! Model groups -> deployments: name, alias and wildcard resolution, and the choice of one deployment.
//!
//! Generic over the per-deployment target `T` (the server uses its provider adapter), so the router knows
//! nothing about HTTP or providers.

pub mod pick;
pub mod policy;
pub mod state;
pub mod sync;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tollgate_config::Deployment;

pub use pick::{PickOptions, Unavailable};
pub use state::{DeploymentState, Health, RateLimits, StateRegistry};

/// A deployment with what the caller attaches to it.
#[derive(Debug)]
pub struct Entry<T> {
    pub deployment: Deployment,
    pub target: T,
    /// Live state (in flight, latency, usage, cooldown, health), shared across reloads by deployment id.
    pub state: Arc<DeploymentState>,
    /// Input plus output price per token, for `cost-based-routing` (ordering only, never summed).
    pub cost_per_token: Option<f64>,
}

impl<T> Entry<T> {
    /// An entry with fresh state (tests, and callers that keep no state across reloads).
    pub fn new(deployment: Deployment, target: T) -> Self {
        Entry {
            deployment,
            target,
            state: Arc::default(),
            cost_per_token: None,
        }
    }
}

/// A model-name pattern with one `*`, e.g. `openai/*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wildcard {
    prefix: String,
    suffix: String,
}

impl Wildcard {
    fn parse(pattern: &str) -> Option<Wildcard> {
        let (prefix, suffix) = pattern.split_once('*')?;
        Some(Wildcard {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The part of `name` the `*` stands for, if it matches.
    fn capture<'n>(&self, name: &'n str) -> Option<&'n str> {
        if name.len() < self.prefix.len() + self.suffix.len() {
            return None;
        }
        name.strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }

    fn specificity(&self) -> usize {
        self.prefix.len() + self.suffix.len()
    }
}

/// Where one request goes.
#[derive(Debug)]
pub struct Route<'a, T> {
    pub entry: &'a Entry<T>,
    /// The entry's index in [`Router::entries`].
    pub index: usize,
    /// The model group that matched (after aliasing): an exact name or a wildcard pattern.
    pub group: &'a str,
    /// The model name to send upstream: the deployment's, with a wildcard filled in.
    pub upstream_model: Cow<'a, str>,
}

/// One model group's deployments, with their cumulative weights for O(log n) weighted draws.
#[derive(Debug)]
struct Group {
    name: String,
    idx: Vec<usize>,
    cumulative: Vec<f64>,
}

impl Group {
    fn new(name: String, idx: Vec<usize>, weight: impl Fn(usize) -> f64) -> Group {
        let mut total = 0.0;
        let cumulative = idx
            .iter()
            .map(|&i| {
                total += weight(i);
                total
            })
            .collect();
        Group {
            name,
            idx,
            cumulative,
        }
    }
}

/// The deployments a model name may go to: what [`Router::candidates`] found.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    /// The model group (exact name or wildcard pattern).
    pub group: &'a str,
    /// What a wildcard's `*` stood for.
    pub capture: Option<&'a str>,
    /// Indices into [`Router::entries`].
    pub idx: &'a [usize],
    cumulative: &'a [f64],
}

/// The routing table, immutable once built (a config reload builds a new one).
#[derive(Debug)]
pub struct Router<T> {
    entries: Vec<Entry<T>>,
    exact: HashMap<String, Group>,
    wildcards: Vec<(Wildcard, Group)>,
    aliases: BTreeMap<String, String>,
    hidden: BTreeSet<String>,
}

impl<T> Router<T> {
    /// Build the table. `aliases` maps a public name to a model group (`router_settings.model_group_alias`);
    /// aliases in `hidden` route but are not listed by [`Router::model_names`].
    pub fn new(
        entries: Vec<Entry<T>>,
        aliases: BTreeMap<String, String>,
        hidden: BTreeSet<String>,
    ) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcards: Vec<(Wildcard, String, Vec<usize>)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let name = &e.deployment.model_name;
            match Wildcard::parse(name) {
                Some(w) => match wildcards.iter_mut().find(|(_, n, _)| n == name) {
                    Some((_, _, idx)) => idx.push(i),
                    None => wildcards.push((w, name.clone(), vec![i])),
                },
                None => exact.entry(name.clone()).or_default().push(i),
            }
        }
        // Most specific pattern first; config order among equals (stable sort).
        wildcards.sort_by_key(|(w, _, _)| std::cmp::Reverse(w.specificity()));
        let weight = |i: usize| weight_of(&entries[i].deployment);
        let exact = exact
            .into_iter()
            .map(|(name, idx)| (name.clone(), Group::new(name, idx, weight)))
            .collect();
        let wildcards = wildcards
            .into_iter()
            .map(|(w, name, idx)| (w, Group::new(name, idx, weight)))
            .collect();
        Router {
            entries,
            exact,
            wildcards,
            aliases,
            hidden,
        }
    }

    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// Public model names: every exact group, every alias, every wildcard pattern; sorted, deduplicated.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exact
            .keys()
            .cloned()
            .chain(
                self.aliases
                    .keys()
                    .filter(|a| !self.hidden.contains(*a))
                    .cloned(),
            )
            .chain(self.wildcards.iter().map(|(_, g)| g.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// True if `model` names something routable (exact, alias or wildcard).
    pub fn knows(&self, model: &str) -> bool {
        self.candidates(model).is_some()
    }

    /// The deployments a model name may go to, with the group and the wildcard capture.
    pub fn candidates<'a>(&'a self, model: &'a str) -> Option<Candidates<'a>> {
        let target = self.aliases.get(model).map(String::as_str).unwrap_or(model);
        if let Some(g) = self.exact.get(target) {
            return Some(Candidates {
                group: &g.name,
                capture: None,
                idx: &g.idx,
                cumulative: &g.cumulative,
            });
        }
        self.wildcards.iter().find_map(|(w, g)| {
            w.capture(target).map(|c| Candidates {
                group: &g.name,
                capture: Some(c),
                idx: &g.idx,
                cumulative: &g.cumulative,
            })
        })
    }

    /// Pick one deployment for `model` with the default strategy (simple shuffle) and no filters.
    pub fn route<'a>(&'a self, model: &'a str) -> Option<Route<'a, T>> {
        let c = self.candidates(model)?;
        self.pick(c, &PickOptions::default(), |_| true).ok()
    }

    /// The route to entry `i` of a group found by [`Router::candidates`].
    pub fn route_to<'a>(&'a self, c: Candidates<'a>, i: usize) -> Route<'a, T> {
        let entry = &self.entries[i];
        Route {
            entry,
            index: i,
            group: c.group,
            upstream_model: upstream_model(&entry.deployment.model, c.capture),
        }
    }
}

/// The deployment's model with `*` replaced by the wildcard capture (or the capture itself for a bare `*`).
fn upstream_model<'a>(deployment_model: &'a str, capture: Option<&'a str>) -> Cow<'a, str> {
    match capture {
        Some(c) if deployment_model.contains('*') => {
            Cow::Owned(deployment_model.replacen('*', c, 1))
        }
        _ => Cow::Borrowed(deployment_model),
    }
}

/// `weight`, else `rpm`, else `tpm`, else 1.
pub fn weight_of(d: &Deployment) -> f64 {
    d.weight
        .or(d.rpm.map(|r| r as f64))
        .or(d.tpm.map(|t| t as f64))
        .unwrap_or(1.0)
        .max(0.0)
}

#[cfg(test)]
mod tests;
