//! Turning document nodes into typed values (strings, whole numbers, floats, booleans, durations, decimals, lists), collecting errors and warnings with file, line and key path.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::error::{ConfigError, KeyPath};
use crate::yaml::{Entry, Loc, Node, Value, parse_number};

/// The entries of a mapping node. `None` for null (nothing to read), for a value already reported as bad,
/// and for any other type, which is reported as "expected {expected}, found ...".
pub(crate) fn mapping<'a>(
    node: &'a Node,
    path: &KeyPath,
    diag: &mut Diag,
    expected: &str,
) -> Option<&'a [Entry]> {
    match &node.value {
        Value::Null | Value::Poison => None,
        Value::Map(entries) => Some(entries),
        _ => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected {expected}, found {}", found(node)),
            );
            None
        }
    }
}

/// The items of a list node, as [`mapping`] does for mappings.
pub(crate) fn sequence<'a>(
    node: &'a Node,
    path: &KeyPath,
    diag: &mut Diag,
    expected: &str,
) -> Option<&'a [Node]> {
    match &node.value {
        Value::Null | Value::Poison => None,
        Value::Seq(items) => Some(items),
        _ => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected {expected}, found {}", found(node)),
            );
            None
        }
    }
}

/// Problems found while building the configuration; errors fail the load, warnings do not.
#[derive(Default)]
pub(crate) struct Diag {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<String>,
    pub(crate) unimplemented: BTreeSet<String>,
}

impl Diag {
    pub(crate) fn error(&mut self, loc: Option<&Loc>, path: &KeyPath, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            location: loc.map(Loc::location),
            key_path: path.as_str().to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, loc: Option<&Loc>, path: &KeyPath, message: impl AsRef<str>) {
        let line = ConfigError::Invalid {
            location: loc.map(Loc::location),
            key_path: path.as_str().to_owned(),
            message: message.as_ref().to_owned(),
        }
        .to_string();
        self.warnings.push(line);
    }
}

/// Describes a node for "found ..." in messages (scalar text shortened; never used for secrets).
pub(crate) fn found(node: &Node) -> String {
    let shown = match &node.value {
        Value::Str(s) => format!("the string \"{}\"", shorten(s)),
        Value::Num(n) => format!("the number {}", shorten(&n.text)),
        Value::Bool(b) => format!("the boolean {b}"),
        _ => node.kind().to_owned(),
    };
    match &node.env_var {
        Some(var) => format!("{shown} (from environment variable {var})"),
        None => shown,
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// `None` without a report for null and already-reported values.
fn absent(node: &Node) -> bool {
    matches!(node.value, Value::Null | Value::Poison)
}

/// A plain value as text: strings, numbers as written, booleans.
pub(crate) fn string(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<String> {
    if absent(node) {
        return None;
    }
    match node.scalar_text() {
        Some(text) => Some(text.into_owned()),
        None => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected a string, found {}", found(node)),
            );
            None
        }
    }
}

/// A number, or a string holding one (`"100"`), as written.
fn numeric(node: &Node) -> Option<crate::yaml::Num> {
    match &node.value {
        Value::Num(n) => Some(n.clone()),
        Value::Str(s) => parse_number(s.trim()),
        _ => None,
    }
}

/// A non-negative whole number (`100`, `"100"`, `1e3`).
pub(crate) fn whole(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<u64> {
    if absent(node) {
        return None;
    }
    let problem = match numeric(node) {
        Some(n) if n.float.is_nan() => "expected a whole number",
        Some(n) if n.float < 0.0 || n.int.is_some_and(|i| i < 0) => "must not be negative",
        Some(n) => match n.int {
            Some(i) => return u64::try_from(i).ok(),
            None if n.float.fract() == 0.0 && n.float <= u64::MAX as f64 => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                return Some(n.float as u64);
            }
            None => "expected a whole number",
        },
        None => "expected a whole number",
    };
    diag.error(
        Some(&node.loc),
        path,
        format!("{problem}, found {}", found(node)),
    );
    None
}

/// A whole number that fits `u32`.
pub(crate) fn whole_u32(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<u32> {
    let value = whole(node, path, diag)?;
    match u32::try_from(value) {
        Ok(v) => Some(v),
        Err(_) => {
            diag.error(
                Some(&node.loc),
                path,
                format!("must be at most {}, found {}", u32::MAX, found(node)),
            );
            None
        }
    }
}

/// A finite, non-negative number (`0.5`, `"2"`).
pub(crate) fn non_negative(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<f64> {
    if absent(node) {
        return None;
    }
    let problem = match numeric(node) {
        Some(n) if !n.float.is_finite() => "expected a finite number",
        Some(n) if n.float < 0.0 => "must not be negative",
        Some(n) => return Some(n.float),
        None => "expected a number",
    };
    diag.error(
        Some(&node.loc),
        path,
        format!("{problem}, found {}", found(node)),
    );
    None
}

/// `true`/`false` (also `"true"`, `"False"`, and YAML 1.1's yes/no/on/off).
pub(crate) fn boolean(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<bool> {
    if absent(node) {
        return None;
    }
    match &node.value {
        Value::Bool(b) => return Some(*b),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return Some(true),
            "false" | "no" | "off" => return Some(false),
            _ => {}
        },
        _ => {}
    }
    diag.error(
        Some(&node.loc),
        path,
        format!("expected true or false, found {}", found(node)),
    );
    None
}

/// Seconds (float) as a duration; zero allowed only when `allow_zero`.
pub(crate) fn seconds(
    node: &Node,
    path: &KeyPath,
    diag: &mut Diag,
    allow_zero: bool,
) -> Option<Duration> {
    if absent(node) {
        return None;
    }
    let problem = match numeric(node) {
        Some(n) if !n.float.is_finite() => "expected a number of seconds",
        Some(n) if n.float < 0.0 => "must not be negative",
        Some(n) if n.float == 0.0 && !allow_zero => "must be greater than 0",
        Some(n) => match Duration::try_from_secs_f64(n.float) {
            Ok(d) => return Some(d),
            Err(_) => "is too large",
        },
        None => "expected a number of seconds",
    };
    diag.error(
        Some(&node.loc),
        path,
        format!("{problem}, found {}", found(node)),
    );
    None
}

/// An exact decimal (prices): `0.000002`, `"2e-6"`, `1.5E-7`.
pub(crate) fn decimal(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Decimal> {
    if absent(node) {
        return None;
    }
    let parsed = numeric(node).and_then(|n| {
        let text = n.canonical();
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .ok()
    });
    match parsed {
        Some(d) if d.is_sign_negative() && !d.is_zero() => {
            diag.error(
                Some(&node.loc),
                path,
                format!("must not be negative, found {}", found(node)),
            );
            None
        }
        Some(d) => Some(d),
        None => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected a decimal number, found {}", found(node)),
            );
            None
        }
    }
}

/// A list of plain values as text (a single value is taken as a one-item list).
pub(crate) fn string_list(node: &Node, path: &KeyPath, diag: &mut Diag) -> Option<Vec<String>> {
    if absent(node) {
        return None;
    }
    match &node.value {
        Value::Seq(items) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| string(item, &path.index(i), diag))
                .collect(),
        ),
        _ if node.scalar_text().is_some() => string(node, path, diag).map(|s| vec![s]),
        _ => {
            diag.error(
                Some(&node.loc),
                path,
                format!("expected a list of strings, found {}", found(node)),
            );
            None
        }
    }
}

/// A whole number of at least `min`, as a `usize`.
pub(crate) fn at_least(v: &Node, path: &KeyPath, diag: &mut Diag, min: usize) -> Option<usize> {
    let n = whole(v, path, diag)?;
    match usize::try_from(n) {
        Ok(n) if n >= min => Some(n),
        _ => {
            diag.error(
                Some(&v.loc),
                path,
                format!(
                    "must be a whole number of at least {min}, found {}",
                    found(v)
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    fn node(yaml: &str) -> Node {
        let file: Arc<Path> = Arc::from(PathBuf::from("t.yaml").as_path());
        let parsed = crate::yaml::parse(&format!("v: {yaml}\n"), &file).expect("parse");
        parsed
            .root
            .and_then(|r| r.get("v").map(|e| e.value.clone()))
            .expect("v")
    }

    fn p() -> KeyPath {
        KeyPath::root().key("v")
    }

    #[test]
    fn whole_numbers_accept_numeric_strings() {
        let mut d = Diag::default();
        assert_eq!(whole(&node("100"), &p(), &mut d), Some(100));
        assert_eq!(whole(&node("\"100\""), &p(), &mut d), Some(100));
        assert_eq!(whole(&node("1e3"), &p(), &mut d), Some(1000));
        assert_eq!(whole(&node("~"), &p(), &mut d), None);
        assert!(d.errors.is_empty());
        assert_eq!(whole(&node("\"lots\""), &p(), &mut d), None);
        assert_eq!(whole(&node("-5"), &p(), &mut d), None);
        assert_eq!(whole(&node("1.5"), &p(), &mut d), None);
        let messages: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "t.yaml:1:4: v: expected a whole number, found the string \"lots\"",
                "t.yaml:1:4: v: must not be negative, found the number -5",
                "t.yaml:1:4: v: expected a whole number, found the number 1.5",
            ]
        );
    }

    #[test]
    fn booleans_and_durations() {
        let mut d = Diag::default();
        assert_eq!(boolean(&node("\"True\""), &p(), &mut d), Some(true));
        assert_eq!(boolean(&node("false"), &p(), &mut d), Some(false));
        assert_eq!(
            seconds(&node("1.5"), &p(), &mut d, false),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            seconds(&node("\"600\""), &p(), &mut d, false),
            Some(Duration::from_secs(600))
        );
        assert!(d.errors.is_empty());
        assert_eq!(seconds(&node("0"), &p(), &mut d, false), None);
        assert_eq!(boolean(&node("maybe"), &p(), &mut d), None);
        assert_eq!(d.errors.len(), 2);
    }

    #[test]
    fn decimals_are_exact() {
        let mut d = Diag::default();
        assert_eq!(
            decimal(&node("0.0000025"), &p(), &mut d),
            Decimal::from_str("0.0000025").ok()
        );
        assert_eq!(
            decimal(&node("2.5e-6"), &p(), &mut d),
            Decimal::from_str("0.0000025").ok()
        );
        assert_eq!(
            decimal(&node("\"1e-7\""), &p(), &mut d),
            Decimal::from_str("0.0000001").ok()
        );
        assert!(d.errors.is_empty());
        assert_eq!(decimal(&node("-1"), &p(), &mut d), None);
        assert_eq!(d.errors.len(), 1);
    }
}
