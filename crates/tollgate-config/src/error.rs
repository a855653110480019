//! Configuration errors: where a problem is (file, line, column, key path) and what it is.

use std::fmt;
use std::path::PathBuf;

/// A position in a config file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as it was named (the `--config` path, or an include joined to its parent's folder).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Everything that can be wrong with a configuration.
///
/// `Display` is `<file>:<line>:<col>: <key.path>: <message>` whenever the location and key path
/// are known; [`ConfigError::Multiple`] prints one such line per problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file itself could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The path that was given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML.
    #[error("{location}: invalid YAML: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The parser's explanation.
        message: String,
    },
    /// A value or key in the document (or a CLI flag) is wrong.
    #[error("{}", invalid_line(location.as_ref(), key_path, message))]
    Invalid {
        /// Where the offending key or value is written; `None` for CLI flags.
        location: Option<Location>,
        /// Dotted key path such as `model_list[1].litellm_params.api_key` (or `--port`).
        key_path: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable that tollgate reads for a setting has a bad value.
    #[error("environment variable {variable}: {message}")]
    Env {
        /// The variable's name, e.g. `PORT`.
        variable: String,
        /// What is wrong with its value.
        message: String,
    },
    /// Several independent problems, in document order.
    #[error("{}", multiple_lines(.0))]
    Multiple(Vec<ConfigError>),
}

fn invalid_line(location: Option<&Location>, key_path: &str, message: &str) -> String {
    match (location, key_path.is_empty()) {
        (Some(loc), false) => format!("{loc}: {key_path}: {message}"),
        (Some(loc), true) => format!("{loc}: {message}"),
        (None, false) => format!("{key_path}: {message}"),
        (None, true) => message.to_owned(),
    }
}

fn multiple_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The process exit code for any configuration problem (`EX_USAGE`, 64).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        64
    }

    /// The individual problems: itself, or the members of [`ConfigError::Multiple`].
    #[must_use]
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Multiple(all) => all.iter().flat_map(ConfigError::problems).collect(),
            other => vec![other],
        }
    }

    /// Where the (first) problem is written, when known.
    #[must_use]
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { location, .. } => Some(location),
            ConfigError::Invalid { location, .. } => location.as_ref(),
            ConfigError::Multiple(all) => all.first().and_then(ConfigError::location),
            ConfigError::Read { .. } | ConfigError::Env { .. } => None,
        }
    }

    /// The dotted key path of the (first) problem, when known.
    #[must_use]
    pub fn key_path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key_path, .. } if !key_path.is_empty() => Some(key_path),
            ConfigError::Multiple(all) => all.first().and_then(ConfigError::key_path),
            _ => None,
        }
    }

    pub(crate) fn from_many(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Multiple(errors)),
        }
    }
}

/// A dotted key path being built while walking the document, e.g. `model_list[1].litellm_params`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(String);

impl KeyPath {
    pub(crate) fn root() -> KeyPath {
        KeyPath(String::new())
    }

    pub(crate) fn key(&self, key: &str) -> KeyPath {
        if self.0.is_empty() {
            KeyPath(key.to_owned())
        } else {
            KeyPath(format!("{}.{key}", self.0))
        }
    }

    pub(crate) fn index(&self, index: usize) -> KeyPath {
        KeyPath(format!("{}[{index}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this path is `prefix` or lies below it.
    pub(crate) fn is_under(&self, prefix: &str) -> bool {
        self.0 == prefix
            || (self.0.starts_with(prefix)
                && matches!(self.0.as_bytes().get(prefix.len()), Some(b'.' | b'[')))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_display_forms() {
        let loc = Location {
            file: PathBuf::from("c.yaml"),
            line: 3,
            column: 7,
        };
        let e = ConfigError::Invalid {
            location: Some(loc.clone()),
            key_path: "a.b".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "c.yaml:3:7: a.b: bad");
        let e = ConfigError::Invalid {
            location: None,
            key_path: "--port".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "--port: bad");
        assert_eq!(e.exit_code(), 64);
        let e = ConfigError::Invalid {
            location: Some(loc),
            key_path: String::new(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "c.yaml:3:7: bad");
    }

    #[test]
    fn key_paths() {
        let p = KeyPath::root()
            .key("model_list")
            .index(1)
            .key("litellm_params");
        assert_eq!(p.as_str(), "model_list[1].litellm_params");
        assert!(p.is_under("model_list"));
        assert!(p.is_under("model_list[1]"));
        assert!(!p.is_under("model_lis"));
        assert!(!KeyPath::root().key("model_list2").is_under("model_list"));
    }
}
