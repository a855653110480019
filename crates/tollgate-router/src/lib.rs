//! Model groups -> deployments: name, alias and wildcard resolution, and the choice of one deployment.
//!
//! Generic over the per-deployment target `T` (the server uses its provider adapter), so the router knows
//! nothing about HTTP or providers.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use tollgate_config::Deployment;

/// A deployment with what the caller attaches to it.
#[derive(Debug)]
pub struct Entry<T> {
    pub deployment: Deployment,
    pub target: T,
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
    /// The model group that matched (after aliasing): an exact name or a wildcard pattern.
    pub group: &'a str,
    /// The model name to send upstream: the deployment's, with a wildcard filled in.
    pub upstream_model: Cow<'a, str>,
}

/// The routing table, immutable once built (a config reload builds a new one).
#[derive(Debug)]
pub struct Router<T> {
    entries: Vec<Entry<T>>,
    exact: HashMap<String, Vec<usize>>,
    wildcards: Vec<(Wildcard, String, Vec<usize>)>,
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
            .chain(self.wildcards.iter().map(|(_, n, _)| n.clone()))
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
    pub fn candidates<'a>(
        &'a self,
        model: &'a str,
    ) -> Option<(&'a str, Option<&'a str>, &'a [usize])> {
        let target = self.aliases.get(model).map(String::as_str).unwrap_or(model);
        if let Some((name, idx)) = self.exact.get_key_value(target) {
            return Some((name.as_str(), None, idx.as_slice()));
        }
        self.wildcards.iter().find_map(|(w, name, idx)| {
            w.capture(target)
                .map(|c| (name.as_str(), Some(c), idx.as_slice()))
        })
    }

    /// Pick one deployment for `model` (simple shuffle, weighted by `weight`, else `rpm`, else `tpm`).
    pub fn route<'a>(&'a self, model: &'a str) -> Option<Route<'a, T>> {
        let (group, capture, idx) = self.candidates(model)?;
        let i = pick_weighted(idx, |i| weight_of(&self.entries[i].deployment))?;
        let entry = &self.entries[i];
        Some(Route {
            entry,
            group,
            upstream_model: upstream_model(&entry.deployment.model, capture),
        })
    }
}

impl<T> Router<T> {
    /// Like [`Router::route`], from what [`Router::candidates`] returned (the caller looked the name up
    /// already), among the deployments `ok` accepts (e.g. those with rpm/tpm capacity left). `None` when
    /// none is acceptable. Allocates only when some deployment is refused.
    pub fn pick_where<'a>(
        &'a self,
        (group, capture, idx): (&'a str, Option<&'a str>, &'a [usize]),
        ok: impl Fn(&Entry<T>) -> bool,
    ) -> Option<Route<'a, T>> {
        let weight = |i: usize| weight_of(&self.entries[i].deployment);
        let i = if idx.iter().all(|&i| ok(&self.entries[i])) {
            pick_weighted(idx, weight)?
        } else {
            let allowed: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| ok(&self.entries[i]))
                .collect();
            pick_weighted(&allowed, weight)?
        };
        let entry = &self.entries[i];
        Some(Route {
            entry,
            group,
            upstream_model: upstream_model(&entry.deployment.model, capture),
        })
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

fn weight_of(d: &Deployment) -> f64 {
    d.weight
        .or(d.rpm.map(|r| r as f64))
        .or(d.tpm.map(|t| t as f64))
        .unwrap_or(1.0)
        .max(0.0)
}

fn pick_weighted(idx: &[usize], weight: impl Fn(usize) -> f64) -> Option<usize> {
    match idx {
        [] => None,
        [only] => Some(*only),
        _ => {
            let total: f64 = idx.iter().map(|&i| weight(i)).sum();
            if total <= 0.0 {
                return Some(idx[fastrand::usize(..idx.len())]);
            }
            let mut r = fastrand::f64() * total;
            for &i in idx {
                r -= weight(i);
                if r < 0.0 {
                    return Some(i);
                }
            }
            idx.last().copied()
        }
    }
}

#[cfg(test)]
mod tests;
