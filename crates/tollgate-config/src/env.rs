//! `Env`: environment lookups through the config's `environment_variables` overlay, then a base (the process, or a fixed map for tests).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Environment variable lookup: overlay variables first (the config's `environment_variables`),
/// then the base (the real process environment, or a fixed map in tests).
///
/// Nothing here ever writes to the process environment.
#[derive(Clone)]
pub struct Env {
    overlay: BTreeMap<String, String>,
    base: Base,
}

#[derive(Clone)]
enum Base {
    Process,
    Map(Arc<BTreeMap<String, String>>),
}

impl Env {
    /// The real process environment (variables whose value is not UTF-8 read as unset).
    #[must_use]
    pub fn process() -> Env {
        Env {
            overlay: BTreeMap::new(),
            base: Base::Process,
        }
    }

    /// Exactly these variables and nothing from the process (for tests).
    #[must_use]
    pub fn from_map(vars: impl IntoIterator<Item = (String, String)>) -> Env {
        Env {
            overlay: BTreeMap::new(),
            base: Base::Map(Arc::new(vars.into_iter().collect())),
        }
    }

    /// The value of `name`: the overlay first, then the base.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(value) = self.overlay.get(name) {
            return Some(value.clone());
        }
        match &self.base {
            Base::Process => std::env::var(name).ok(),
            Base::Map(map) => map.get(name).cloned(),
        }
    }

    /// A new `Env` with `vars` layered over this one (a later duplicate wins).
    #[must_use]
    pub fn with_overlay(&self, vars: impl IntoIterator<Item = (String, String)>) -> Env {
        let mut next = self.clone();
        next.overlay.extend(vars);
        next
    }

    /// The first of `names` that is set to a non-empty value, with the name that supplied it.
    pub(crate) fn first_non_empty(&self, names: &[&str]) -> Option<(String, String)> {
        names.iter().find_map(|name| {
            self.get(name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| ((*name).to_owned(), value))
        })
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Variable values are often secrets: show names only.
        let base = match &self.base {
            Base::Process => "process".to_owned(),
            Base::Map(map) => format!("map of {} variables", map.len()),
        };
        f.debug_struct("Env")
            .field("overlay", &self.overlay.keys().collect::<Vec<_>>())
            .field("base", &base)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn overlay_wins_over_base() {
        let base = env(&[("A", "base"), ("B", "b")]);
        let layered = base.with_overlay([("A".to_owned(), "over".to_owned())]);
        assert_eq!(layered.get("A").as_deref(), Some("over"));
        assert_eq!(layered.get("B").as_deref(), Some("b"));
        assert_eq!(base.get("A").as_deref(), Some("base"));
        assert_eq!(layered.get("C"), None);
    }

    #[test]
    fn from_map_ignores_process_env() {
        // PATH is set in any test process; a map-based Env must not see it.
        assert_eq!(env(&[]).get("PATH"), None);
    }

    #[test]
    fn first_non_empty_skips_blank() {
        let e = env(&[("TOLLGATE_PORT", " "), ("PORT", "8000")]);
        assert_eq!(
            e.first_non_empty(&["TOLLGATE_PORT", "PORT"]),
            Some(("PORT".to_owned(), "8000".to_owned()))
        );
    }

    #[test]
    fn debug_shows_no_values() {
        let e = env(&[("KEY", "sk-secret")]).with_overlay([("X".into(), "sk-other".into())]);
        let shown = format!("{e:?}");
        assert!(!shown.contains("sk-"), "{shown}");
    }
}
