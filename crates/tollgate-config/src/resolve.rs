//! `environment_variables:` (layered over the environment first) and `os.environ/NAME` values anywhere in the document, replaced through that overlay.

use crate::convert::Diag;
use crate::env::Env;
use crate::error::KeyPath;
use crate::yaml::{Node, Value};

/// The prefix LiteLLM uses for "read this value from the environment".
pub(crate) const ENV_PREFIX: &str = "os.environ/";

/// Applies the document's `environment_variables` over `env`; returns the layered `Env` and the
/// variables that were set, in order.
///
/// As in LiteLLM, entries are applied in order, a value may itself be `os.environ/NAME` (read from
/// what is set so far), and such a value whose variable is unset leaves the entry unset (warning).
pub(crate) fn environment_variables(
    root: &mut Node,
    env: &Env,
    diag: &mut Diag,
) -> (Env, Vec<(String, String)>) {
    let path = KeyPath::root().key("environment_variables");
    let unchanged = || (env.clone(), Vec::new());
    let Value::Map(top) = &mut root.value else {
        return unchanged();
    };
    let Some(section) = top.iter_mut().find(|e| e.key == "environment_variables") else {
        return unchanged();
    };
    let entries = match &mut section.value.value {
        Value::Null => return unchanged(),
        Value::Map(entries) => entries,
        _ => {
            let kind = section.value.kind();
            diag.error(
                Some(&section.value.loc),
                &path,
                format!("expected a mapping of NAME: value, found {kind}"),
            );
            return unchanged();
        }
    };
    let mut current = env.clone();
    let mut applied = Vec::new();
    for entry in entries {
        let entry_path = path.key(&entry.key);
        let node = &mut entry.value;
        let value = match &node.value {
            Value::Str(s) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) => {
                    let name = name.to_owned();
                    match current.get(&name) {
                        Some(v) => {
                            node.value = Value::Str(v.clone());
                            node.env_var = Some(name);
                            Some(v)
                        }
                        None => {
                            diag.warn(
                                Some(&node.loc),
                                &entry_path,
                                format!("environment variable `{name}` is not set (from `{ENV_PREFIX}{name}`); `{}` is left unset", entry.key),
                            );
                            node.value = Value::Null;
                            None
                        }
                    }
                }
                None => Some(s.clone()),
            },
            Value::Num(_) | Value::Bool(_) => node.scalar_text().map(|t| t.into_owned()),
            Value::Null => {
                diag.warn(
                    Some(&node.loc),
                    &entry_path,
                    "has no value; the variable is left unset",
                );
                None
            }
            Value::Seq(_) | Value::Map(_) | Value::Poison => {
                let kind = node.kind();
                diag.error(
                    Some(&node.loc),
                    &entry_path,
                    format!("expected a plain value (string or number), found {kind}"),
                );
                None
            }
        };
        if let Some(v) = value {
            current = current.with_overlay([(entry.key.clone(), v.clone())]);
            applied.push((entry.key.clone(), v));
        }
    }
    (current, applied)
}

/// Replaces every `os.environ/NAME` string below the top level (except `environment_variables`).
///
/// An unset variable is an error, except under a key listed in `soft` (a LiteLLM setting tollgate
/// does not implement), where it is a warning and the value becomes null.
pub(crate) fn env_refs(root: &mut Node, env: &Env, soft: &[String], diag: &mut Diag) {
    let Value::Map(entries) = &mut root.value else {
        return;
    };
    for entry in entries {
        if entry.key == "environment_variables" {
            continue;
        }
        let path = KeyPath::root().key(&entry.key);
        walk(&mut entry.value, &path, env, soft, diag);
    }
}

fn walk(node: &mut Node, path: &KeyPath, env: &Env, soft: &[String], diag: &mut Diag) {
    match &mut node.value {
        Value::Str(s) => {
            let Some(name) = s.strip_prefix(ENV_PREFIX) else {
                return;
            };
            let name = name.to_owned();
            if name.trim().is_empty() {
                diag.error(
                    Some(&node.loc),
                    path,
                    format!("`{ENV_PREFIX}` needs a variable name after the slash"),
                );
                node.value = Value::Poison;
                return;
            }
            match env.get(&name) {
                Some(v) => {
                    node.value = Value::Str(v);
                    node.env_var = Some(name);
                }
                None if soft.iter().any(|prefix| path.is_under(prefix)) => {
                    diag.warn(
                        Some(&node.loc),
                        path,
                        format!("environment variable `{name}` is not set (from `{ENV_PREFIX}{name}`); ignored because tollgate does not implement this setting"),
                    );
                    node.value = Value::Null;
                }
                None => {
                    diag.error(
                        Some(&node.loc),
                        path,
                        format!(
                            "environment variable `{name}` is not set (from `{ENV_PREFIX}{name}`)"
                        ),
                    );
                    node.value = Value::Poison;
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(i), env, soft, diag);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                let child = path.key(&entry.key);
                walk(&mut entry.value, &child, env, soft, diag);
            }
        }
        Value::Null | Value::Bool(_) | Value::Num(_) | Value::Poison => {}
    }
}
