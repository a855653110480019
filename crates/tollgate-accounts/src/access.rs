//! Model access: a key's, team's or user's `models` list against a model group, with LiteLLM's special
//! names (`all-proxy-models`, `all-team-models`, `*`), wildcards (`openai/*`) and access groups
//! (`model_info.access_groups`).

/// Special entries.
pub const ALL_PROXY_MODELS: &str = "all-proxy-models";
pub const ALL_TEAM_MODELS: &str = "all-team-models";

/// Does one `models` entry allow `model` (whose deployments are in `access_groups`)?
fn entry_allows(entry: &str, model: &str, access_groups: &[String]) -> bool {
    if entry == model || entry == "*" || entry == ALL_PROXY_MODELS {
        return true;
    }
    if let Some(prefix) = entry.strip_suffix('*')
        && model.starts_with(prefix)
    {
        return true;
    }
    access_groups.iter().any(|g| g == entry)
}

/// An empty list allows everything (the caller decides what an empty list inherits).
pub fn list_allows(list: &[String], model: &str, access_groups: &[String]) -> bool {
    list.is_empty() || list.iter().any(|e| entry_allows(e, model, access_groups))
}

/// The layered rule: the key's list (if it has one, and it does not just defer to the team), then the
/// team's, then the user's for keys without a team: each non-empty list must allow the model.
pub fn allowed(
    key_models: &[String],
    team_models: Option<&[String]>,
    user_models: Option<&[String]>,
    model: &str,
    access_groups: &[String],
) -> bool {
    let key_defers = key_models.is_empty() || key_models.iter().all(|m| m == ALL_TEAM_MODELS);
    if !key_defers && !list_allows(key_models, model, access_groups) {
        return false;
    }
    if let Some(team) = team_models {
        return list_allows(team, model, access_groups);
    }
    if let Some(user) = user_models {
        return list_allows(user, model, access_groups);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_and_wildcards() {
        assert!(list_allows(&[], "gpt-4o", &[]));
        assert!(list_allows(&v(&["gpt-4o"]), "gpt-4o", &[]));
        assert!(!list_allows(&v(&["gpt-4o"]), "gpt-4o-mini", &[]));
        assert!(list_allows(&v(&["openai/*"]), "openai/gpt-4o", &[]));
        assert!(!list_allows(&v(&["openai/*"]), "anthropic/claude", &[]));
        assert!(list_allows(&v(&["all-proxy-models"]), "x", &[]));
        assert!(list_allows(&v(&["beta-models"]), "x", &v(&["beta-models"])));
    }

    #[test]
    fn key_then_team() {
        let team = v(&["a", "b"]);
        assert!(allowed(&[], Some(&team), None, "a", &[]));
        assert!(!allowed(&[], Some(&team), None, "c", &[]));
        assert!(allowed(
            &v(&["all-team-models"]),
            Some(&team),
            None,
            "b",
            &[]
        ));
        assert!(!allowed(&v(&["a"]), Some(&team), None, "b", &[]));
        assert!(!allowed(&v(&["c"]), Some(&team), None, "c", &[]));
        assert!(allowed(&v(&["c"]), None, None, "c", &[]));
        assert!(!allowed(&[], None, Some(&v(&["a"])), "c", &[]));
    }
}
