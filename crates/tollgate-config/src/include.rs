//! Reading the root document and its `include:` files (nested, relative to the including file, cycles rejected), merged as LiteLLM merges them.
//!
//! LiteLLM (`ProxyConfig._process_includes`) takes each included file's top-level keys in turn:
//! a list whose key the including document already has (`model_list`) is appended to; any other
//! value replaces the including document's value for that key. Included `model_list` entries
//! therefore come after the including file's own. tollgate does the same, and also resolves an
//! included file's own `include:` (relative to that file) before merging it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ConfigError, KeyPath};
use crate::yaml::{self, Entry, Loc, Node, Value};

/// Deepest chain of nested includes accepted.
const MAX_INCLUDE_DEPTH: usize = 32;

/// The merged document and the warnings found while reading it.
pub(crate) struct Document {
    pub(crate) root: Node,
    pub(crate) warnings: Vec<String>,
}

/// Parses `text` (named `file`) and everything it includes.
pub(crate) fn load_root(text: &str, file: &Path) -> Result<Document, ConfigError> {
    let mut warnings = Vec::new();
    let mut stack = vec![(identity(file), file.to_path_buf())];
    let root = load_tree(text, file, &mut stack, &mut warnings)?;
    Ok(Document { root, warnings })
}

/// An empty top-level mapping (no config file, or an empty one).
pub(crate) fn empty_root(file: &Path) -> Node {
    Node::new(
        Value::Map(Vec::new()),
        Loc {
            file: Arc::from(file),
            line: 1,
            col: 1,
        },
    )
}

/// The path used to recognise the same file reached twice.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn load_tree(
    text: &str,
    file: &Path,
    stack: &mut Vec<(PathBuf, PathBuf)>,
    warnings: &mut Vec<String>,
) -> Result<Node, ConfigError> {
    let parsed = yaml::parse(text, &Arc::from(file))?;
    warnings.extend(parsed.warnings);
    let mut root = match parsed.root {
        None => {
            warnings.push(format!("{}: the config file is empty", file.display()));
            empty_root(file)
        }
        Some(node) if matches!(node.value, Value::Null) => {
            warnings.push(format!("{}: the config file is empty", file.display()));
            empty_root(file)
        }
        Some(node) if matches!(node.value, Value::Map(_)) => node,
        Some(node) => {
            return Err(ConfigError::Invalid {
                location: Some(node.loc.location()),
                key_path: String::new(),
                message: format!(
                    "the top level of a config file must be a mapping (model_list:, general_settings:, ...), found {}",
                    node.kind()
                ),
            });
        }
    };
    let Value::Map(entries) = &mut root.value else {
        return Ok(root);
    };
    let Some(position) = entries.iter().position(|e| e.key == "include") else {
        return Ok(root);
    };
    let include = entries.remove(position);
    let path = KeyPath::root().key("include");
    let items: Vec<(String, Loc, KeyPath)> = match include.value.value {
        Value::Null => Vec::new(),
        Value::Str(s) => vec![(s, include.value.loc, path)],
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item.value {
                    Value::Str(s) => out.push((s, item.loc, path.index(i))),
                    _ => {
                        return Err(invalid(
                            &item.loc,
                            &path.index(i),
                            format!("expected a file path, found {}", item.kind()),
                        ));
                    }
                }
            }
            out
        }
        _ => {
            let kind = include.value.kind();
            return Err(invalid(
                &include.value.loc,
                &path,
                format!("expected a list of file paths, found {kind}"),
            ));
        }
    };
    for (relative, loc, item_path) in items {
        let target = file
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(&relative);
        let id = identity(&target);
        if let Some(start) = stack.iter().position(|(seen, _)| *seen == id) {
            let chain: Vec<String> = stack
                .get(start..)
                .unwrap_or_default()
                .iter()
                .map(|(_, shown)| shown.display().to_string())
                .chain(std::iter::once(target.display().to_string()))
                .collect();
            return Err(invalid(
                &loc,
                &item_path,
                format!("include cycle: {}", chain.join(" -> ")),
            ));
        }
        if stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(invalid(
                &loc,
                &item_path,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files"),
            ));
        }
        let text = std::fs::read_to_string(&target).map_err(|e| {
            invalid(
                &loc,
                &item_path,
                format!("cannot read included file `{}`: {e}", target.display()),
            )
        })?;
        stack.push((id, target.clone()));
        let included = load_tree(&text, &target, stack, warnings)?;
        stack.pop();
        merge(&mut root, included, file, warnings);
    }
    Ok(root)
}

fn invalid(loc: &Loc, path: &KeyPath, message: String) -> ConfigError {
    ConfigError::Invalid {
        location: Some(loc.location()),
        key_path: path.as_str().to_owned(),
        message,
    }
}

/// LiteLLM's merge: lists are appended to an existing list, anything else replaces.
fn merge(root: &mut Node, included: Node, file: &Path, warnings: &mut Vec<String>) {
    let (Value::Map(entries), Value::Map(new_entries)) = (&mut root.value, included.value) else {
        return;
    };
    for entry in new_entries {
        match entries.iter_mut().find(|e| e.key == entry.key) {
            None => entries.push(entry),
            Some(existing) => match (&mut existing.value.value, entry.value.value) {
                (Value::Seq(items), Value::Seq(more)) => items.extend(more),
                (old, new) => {
                    if matches!(old, Value::Map(_)) {
                        warnings.push(format!(
                            "{}: `{}` from the included file replaces the whole `{}` of {} (LiteLLM replaces top-level sections from included files; it does not merge them)",
                            entry.key_loc.location(),
                            entry.key,
                            entry.key,
                            file.display()
                        ));
                    }
                    *existing = Entry {
                        key: entry.key,
                        key_loc: entry.key_loc,
                        value: Node {
                            value: new,
                            loc: entry.value.loc,
                            env_var: entry.value.env_var,
                        },
                    };
                }
            },
        }
    }
}
