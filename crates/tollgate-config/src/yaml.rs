//! YAML text to a node tree that keeps each value's file, line and column (anchors, aliases and `<<` merge keys resolved; plain scalars typed the way PyYAML, which LiteLLM uses, types them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::error::{ConfigError, Location};

/// Most nodes a document may expand to (aliases count every time they are used).
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 200;

/// Where a node is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) file: Arc<Path>,
    pub(crate) line: usize,
    pub(crate) col: usize,
}

impl Loc {
    pub(crate) fn location(&self) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: self.line,
            column: self.col,
        }
    }

    fn at(file: &Arc<Path>, span: &Span) -> Loc {
        Loc {
            file: Arc::clone(file),
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A value with its position. `env_var` names the variable when the value came from `os.environ/NAME`.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) loc: Loc,
    pub(crate) env_var: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Num(Num),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// A value whose problem was already reported (e.g. an unset `os.environ/` variable).
    Poison,
}

/// A number as written, with its parsed forms.
#[derive(Clone, Debug)]
pub(crate) struct Num {
    pub(crate) text: String,
    pub(crate) int: Option<i64>,
    pub(crate) float: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_loc: Loc,
    pub(crate) value: Node,
}

impl Node {
    pub(crate) fn new(value: Value, loc: Loc) -> Node {
        Node {
            value,
            loc,
            env_var: None,
        }
    }

    pub(crate) fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// "a string", "a mapping", ... for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Num(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Poison => "an invalid value",
        }
    }

    /// The text of a scalar (string, number as written, boolean); `None` for anything else.
    pub(crate) fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Num(n) => Some(Cow::Borrowed(&n.text)),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }

    /// The JSON form of this value (`Poison` becomes `null`).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null | Value::Poison => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Num(n) => n.to_json(),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

impl Num {
    /// A decimal text that JSON and `Decimal` accept (underscores, `+`, bare `.` fixed up).
    pub(crate) fn canonical(&self) -> String {
        if let Some(i) = self.int {
            return i.to_string();
        }
        let mut s: String = self.text.chars().filter(|c| *c != '_').collect();
        if let Some(rest) = s.strip_prefix('+') {
            s = rest.to_owned();
        }
        let (sign, body) = match s.strip_prefix('-') {
            Some(rest) => ("-", rest.to_owned()),
            None => ("", s),
        };
        let mut body = body;
        if body.starts_with('.') {
            body.insert(0, '0');
        }
        if let Some(dot) = body.find('.') {
            let after = body.as_bytes().get(dot + 1).copied();
            if !matches!(after, Some(b'0'..=b'9')) {
                body.insert(dot + 1, '0');
            }
        }
        format!("{sign}{body}")
    }

    fn to_json(&self) -> serde_json::Value {
        if let Some(i) = self.int {
            return serde_json::Value::Number(i.into());
        }
        if !self.float.is_finite() {
            return serde_json::Value::String(self.text.clone());
        }
        if let Ok(n) = serde_json::Number::from_str(&self.canonical()) {
            return serde_json::Value::Number(n);
        }
        serde_json::Number::from_f64(self.float).map_or_else(
            || serde_json::Value::String(self.text.clone()),
            serde_json::Value::Number,
        )
    }
}

/// A parsed file: its root node (`None` for an empty document) and parse-time warnings.
pub(crate) struct Parsed {
    pub(crate) root: Option<Node>,
    pub(crate) warnings: Vec<String>,
}

/// Parses one YAML document.
pub(crate) fn parse(text: &str, file: &Arc<Path>) -> Result<Parsed, ConfigError> {
    let mut builder = Builder {
        file: Arc::clone(file),
        anchors: HashMap::new(),
        stack: Vec::new(),
        root: None,
        total: 0,
        documents: 0,
        warnings: Vec::new(),
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ConfigError::Syntax {
            location: Location {
                file: file.to_path_buf(),
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: e.info().to_owned(),
        })?;
        builder.event(event, &span)?;
    }
    Ok(Parsed {
        root: builder.root,
        warnings: builder.warnings,
    })
}

struct KeyNode {
    text: String,
    loc: Loc,
    merge: bool,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(KeyNode, Node)>,
        key: Option<KeyNode>,
    },
}

struct Frame {
    kind: FrameKind,
    loc: Loc,
    anchor: usize,
    size: usize,
}

struct Builder {
    file: Arc<Path>,
    anchors: HashMap<usize, (Node, usize)>,
    stack: Vec<Frame>,
    root: Option<Node>,
    total: usize,
    documents: usize,
    warnings: Vec<String>,
}

impl Builder {
    fn error(&self, loc: &Loc, message: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            location: loc.location(),
            message: message.into(),
        }
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), ConfigError> {
        let loc = Loc::at(&self.file, span);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error(
                        &loc,
                        "more than one YAML document (`---`) in one file is not supported",
                    ));
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                let merge = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let value = self.scalar(&text, style, tag.as_deref(), &loc)?;
                self.total += 1;
                self.complete(Node::new(value, loc), 1, anchor, merge)
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    return Err(self.error(&loc, "alias to an unknown anchor"));
                };
                self.total += size;
                self.complete(node, size, 0, false)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", &loc)?;
                self.open(FrameKind::Seq(Vec::new()), loc, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", &loc)?;
                self.open(
                    FrameKind::Map {
                        entries: Vec::new(),
                        key: None,
                    },
                    loc,
                    anchor,
                )
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(self.error(&loc, "unbalanced collection end"));
                };
                let value = match frame.kind {
                    FrameKind::Seq(items) => Value::Seq(items),
                    FrameKind::Map { entries, .. } => self.finish_map(entries)?,
                };
                self.complete(Node::new(value, frame.loc), frame.size, frame.anchor, false)
            }
        }
    }

    fn open(&mut self, kind: FrameKind, loc: Loc, anchor: usize) -> Result<(), ConfigError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(&loc, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.total += 1;
        self.stack.push(Frame {
            kind,
            loc,
            anchor,
            size: 1,
        });
        Ok(())
    }

    fn complete(
        &mut self,
        node: Node,
        size: usize,
        anchor: usize,
        merge: bool,
    ) -> Result<(), ConfigError> {
        if self.total > MAX_NODES {
            return Err(self.error(
                &node.loc,
                format!("document expands to more than {MAX_NODES} values (alias bomb?)"),
            ));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        parent.size += size;
        match &mut parent.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map { entries, key } => match key.take() {
                Some(k) => entries.push((k, node)),
                None => {
                    let text = match node.scalar_text() {
                        Some(t) => t.into_owned(),
                        None if matches!(node.value, Value::Null) => "null".to_owned(),
                        None => {
                            let loc = node.loc.clone();
                            return Err(self.error(
                                &loc,
                                "a mapping key must be a plain value, not a list or mapping",
                            ));
                        }
                    };
                    *key = Some(KeyNode {
                        text,
                        loc: node.loc,
                        merge,
                    });
                }
            },
        }
        Ok(())
    }

    fn finish_map(&mut self, raw: Vec<(KeyNode, Node)>) -> Result<Value, ConfigError> {
        let mut explicit: Vec<Entry> = Vec::with_capacity(raw.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut merges: Vec<Node> = Vec::new();
        for (key, value) in raw {
            if key.merge {
                merges.push(value);
                continue;
            }
            if let Some(&i) = index.get(&key.text) {
                if let Some(existing) = explicit.get_mut(i) {
                    self.warnings.push(format!(
                        "{}: duplicate key `{}` (also at line {}); the later value wins",
                        key.loc.location(),
                        key.text,
                        existing.key_loc.line
                    ));
                    existing.key_loc = key.loc;
                    existing.value = value;
                }
                continue;
            }
            index.insert(key.text.clone(), explicit.len());
            explicit.push(Entry {
                key: key.text,
                key_loc: key.loc,
                value,
            });
        }
        if merges.is_empty() {
            return Ok(Value::Map(explicit));
        }
        // `<<` semantics (as PyYAML): merged keys come first; an explicit key overrides a merged
        // one; among several merged mappings the earlier one wins.
        let mut merged: Vec<Entry> = Vec::new();
        let mut merged_index: HashMap<String, usize> = HashMap::new();
        for source in merges {
            let sources = match source.value {
                Value::Map(_) => vec![source],
                Value::Seq(items) => items,
                _ => {
                    return Err(self.error(
                        &source.loc,
                        "the merge key `<<` needs a mapping or a list of mappings",
                    ));
                }
            };
            for mapping in sources {
                let Value::Map(entries) = mapping.value else {
                    return Err(self.error(
                        &mapping.loc,
                        "the merge key `<<` needs a mapping or a list of mappings",
                    ));
                };
                for entry in entries {
                    if !merged_index.contains_key(&entry.key) {
                        merged_index.insert(entry.key.clone(), merged.len());
                        merged.push(entry);
                    }
                }
            }
        }
        for entry in explicit {
            match merged_index
                .get(&entry.key)
                .and_then(|&i| merged.get_mut(i))
            {
                Some(slot) => *slot = entry,
                None => {
                    merged_index.insert(entry.key.clone(), merged.len());
                    merged.push(entry);
                }
            }
        }
        Ok(Value::Map(merged))
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        expected: &str,
        loc: &Loc,
    ) -> Result<(), ConfigError> {
        match tag {
            None => Ok(()),
            Some(t) if t.is_yaml_core_schema() => Ok(()),
            Some(t) if t.handle == "!" && t.suffix.is_empty() => Ok(()),
            Some(t) => Err(self.error(
                loc,
                format!("unsupported YAML tag `{t}` on a {expected} (LiteLLM's safe YAML loader rejects it too)"),
            )),
        }
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        loc: &Loc,
    ) -> Result<Value, ConfigError> {
        let Some(tag) = tag else {
            return Ok(if style == ScalarStyle::Plain {
                resolve_plain(text)
            } else {
                Value::Str(text.to_owned())
            });
        };
        if tag.handle == "!" && tag.suffix.is_empty() {
            return Ok(Value::Str(text.to_owned()));
        }
        if !tag.is_yaml_core_schema() {
            return Err(self.error(
                loc,
                format!("unsupported YAML tag `{tag}` (LiteLLM's safe YAML loader rejects it too)"),
            ));
        }
        let bad = |what: &str| self.error(loc, format!("`{text}` is not a valid {what}"));
        match tag.suffix.as_str() {
            "null" => Ok(Value::Null),
            "bool" => match resolve_plain(text) {
                v @ Value::Bool(_) => Ok(v),
                _ => Err(bad("!!bool")),
            },
            "int" => match parse_number(text) {
                Some(n) if n.int.is_some() => Ok(Value::Num(n)),
                _ => Err(bad("!!int")),
            },
            "float" => match parse_number(text) {
                Some(n) => Ok(Value::Num(Num { int: None, ..n })),
                _ => Err(bad("!!float")),
            },
            _ => Ok(Value::Str(text.to_owned())),
        }
    }
}

/// Types a plain (unquoted) scalar: YAML 1.1 null/boolean words as PyYAML reads them, numbers,
/// everything else a string (dates stay strings).
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Value::Bool(false)
        }
        _ => parse_number(text).map_or_else(|| Value::Str(text.to_owned()), Value::Num),
    }
}

/// Parses YAML integer (`12`, `-3`, `1_000`, `0x1F`, `0o17`, `0b101`) and float (`1.5`, `.5`,
/// `1e-7`, `-.inf`, `.nan`) forms.
pub(crate) fn parse_number(text: &str) -> Option<Num> {
    let num = |int: Option<i64>, float: f64| Num {
        text: text.to_owned(),
        int,
        float,
    };
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(num(None, f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(num(None, f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(num(None, f64::NAN)),
        _ => {}
    }
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if let Some(value) = parse_int_body(body) {
        let signed = if negative { -value } else { value };
        return Some(match i64::try_from(signed) {
            Ok(i) => num(Some(i), signed as f64),
            Err(_) => num(None, signed as f64),
        });
    }
    if is_float_body(body) {
        let cleaned: String = body.chars().filter(|c| *c != '_').collect();
        let cleaned = if cleaned.starts_with('.') {
            format!("0{cleaned}")
        } else {
            cleaned
        };
        let value: f64 = cleaned.parse().ok()?;
        return Some(num(None, if negative { -value } else { value }));
    }
    None
}

fn parse_int_body(body: &str) -> Option<i128> {
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b") {
        (2, d)
    } else {
        (10, body)
    };
    let first = digits.chars().next()?;
    if !first.is_digit(radix) {
        return None;
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)?;
        value = value
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(d))?;
    }
    Some(value)
}

fn is_float_body(body: &str) -> bool {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut mantissa_digits = 0;
    let mut seen_dot = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'0'..=b'9' => mantissa_digits += 1,
            b'_' if mantissa_digits > 0 => {}
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if mantissa_digits == 0 {
        return false;
    }
    let mut seen_exp = false;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while matches!(bytes.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == start {
            return false;
        }
        seen_exp = true;
    }
    i == bytes.len() && (seen_dot || seen_exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file() -> Arc<Path> {
        Arc::from(PathBuf::from("t.yaml").as_path())
    }

    fn json(text: &str) -> serde_json::Value {
        let parsed = parse(text, &file()).expect("parses");
        parsed.root.map_or(serde_json::Value::Null, |n| n.to_json())
    }

    #[test]
    fn scalars_typed_like_pyyaml() {
        let v = json(
            "a: 12\nb: '12'\nc: 1.5\nd: yes\ne: ~\nf: 2024-02-01\ng: 0x10\nh: 1_000\ni: 1e-7\nj: .5\nk: hello\nl: \"true\"\nm: !!str 5\nn: -3\n",
        );
        assert_eq!(
            v,
            serde_json::json!({"a": 12, "b": "12", "c": 1.5, "d": true, "e": null, "f": "2024-02-01",
                "g": 16, "h": 1000, "i": 1e-7, "j": 0.5, "k": "hello", "l": "true", "m": "5", "n": -3})
        );
    }

    #[test]
    fn number_text_is_kept() {
        let n = parse_number("0.000000150").expect("number");
        assert_eq!(n.int, None);
        assert_eq!(n.canonical(), "0.000000150");
        assert_eq!(
            parse_number("5.").map(|n| n.canonical()).as_deref(),
            Some("5.0")
        );
        assert_eq!(
            parse_number("-.5").map(|n| n.canonical()).as_deref(),
            Some("-0.5")
        );
        assert!(parse_number("1.2.3").is_none());
        assert!(parse_number("1e").is_none());
        assert!(parse_number("-").is_none());
        assert!(parse_number("_1").is_none());
        assert!(parse_number("12abc").is_none());
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = json(
            "base: &b {x: 1, y: 2}\nother: &o {y: 20, z: 30}\nuse:\n  <<: [*b, *o]\n  x: 10\nlist: [*b, *b]\n",
        );
        assert_eq!(v["use"], serde_json::json!({"x": 10, "y": 2, "z": 30}));
        assert_eq!(v["list"][1], serde_json::json!({"x": 1, "y": 2}));
    }

    #[test]
    fn positions_are_one_based() {
        let parsed = parse("a:\n  b: [1, x]\n", &file()).expect("parses");
        let root = parsed.root.expect("root");
        let b = &root.get("a").expect("a").value;
        let entry = b.get("b").expect("b");
        assert_eq!((entry.key_loc.line, entry.key_loc.col), (2, 3));
        let Value::Seq(items) = &entry.value.value else {
            panic!("seq")
        };
        assert_eq!((items[1].loc.line, items[1].loc.col), (2, 10));
    }

    #[test]
    fn duplicate_keys_warn_and_later_wins() {
        let parsed = parse("a: 1\na: 2\n", &file()).expect("parses");
        assert_eq!(
            parsed.root.expect("root").to_json(),
            serde_json::json!({"a": 2})
        );
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].starts_with("t.yaml:2:1: duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let Err(ConfigError::Syntax { location, message }) =
            parse("a: b: c\n", &file()).map(|_| ())
        else {
            panic!("expected a syntax error")
        };
        assert_eq!((location.line, location.column), (1, 5));
        assert!(message.contains("mapping values are not allowed"));
    }

    #[test]
    fn rejects_custom_tags_multi_docs_and_alias_bombs() {
        assert!(parse("a: !ENV x\n", &file()).is_err());
        assert!(parse("a: 1\n---\nb: 2\n", &file()).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&bomb, &file())
            .map(|_| ())
            .expect_err("bomb rejected");
        assert!(err.to_string().contains("alias bomb"), "{err}");
    }
}
