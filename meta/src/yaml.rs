//! YAML documents as trees that remember where every value is, and the small readers that turn
//! them into typed objects while collecting every problem with its line (behind the `yaml`
//! feature, so the wasm UI does not carry a YAML parser).
//!
//! Why not `#[derive(Deserialize)]` on the typed objects? Three things a manifest directory
//! needs that a derived reader cannot give:
//!
//! - the kind of a document decides its shape, and `kind: List` nests whole documents under
//!   `items`; serde's tagged enums buffer values and lose their `Spanned` locations;
//! - a document should report all its problems at once, as `kubectl apply` does, not the first;
//! - `port: 53` and `port: "53"` mean different things in a NetworkPolicy (a number, and a
//!   port *name* that is invalid), so scalars must keep their YAML type.
//!
//! So each document is read once, with `serde-saphyr`, into a [`Node`] tree, and the typed
//! readers walk that tree. Messages read `file:line:column: field.path: problem` ([`Problem`]).
//!
//! The lab file (`flowscope-lab`) is read by the same tree and readers: it is one document
//! ([`parse_document`]), reports the first problem its reading finds, and judges every scalar
//! as the text written ([`scalar_text`]), so `port: "80"`, `port: 80` and the label value
//! `1.10` read as written.

use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned};

/// A problem found in a file, said the way a compiler would: one line naming the file, the
/// line and column, the field, and what would be accepted: `allow-dns.yaml:12:9:
/// spec.egress[0].ports[0].protocol: "ICMP" is not TCP, UDP or SCTP`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {}{message}", location(.line, .column), field_prefix(.field))]
pub struct Problem {
    /// The file as its reader was given it.
    pub file: String,
    /// 1-based, when known (a file that cannot be read has none).
    pub line: Option<u64>,
    /// 1-based, in characters, when known.
    pub column: Option<u64>,
    /// Where in the document, e.g. `spec.egress[0].ports[0].protocol`; empty when the problem
    /// is the whole document or file.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

fn location(line: &Option<u64>, column: &Option<u64>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Where a value starts in its file: 1-based line and column; 0 when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    fn from_location(location: Location, line_offset: u64) -> Pos {
        if location == Location::UNKNOWN {
            Pos::default()
        } else {
            Pos {
                line: location.line() + line_offset,
                column: location.column(),
            }
        }
    }

    fn known(self) -> Option<(u64, u64)> {
        (self.line != 0).then_some((self.line, self.column))
    }
}

/// A YAML value and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: Pos,
    pub value: Value,
    /// A scalar YAML reads as something other than a string (`80`, `1.10`, `0x50`, `yes`),
    /// as written in the file: readers that take every scalar as text ([`scalar_text`]) need
    /// `1.10` and `080` as typed, not as the number YAML makes of them. `None` for strings,
    /// lists and mappings.
    pub written: Option<String>,
    /// Where the value's text is in its document, in bytes (offset, length), when known; only
    /// needed until `written` is filled in.
    span: Option<(usize, usize)>,
}

/// A YAML value, keeping the scalar's type as the YAML 1.1 reading Kubernetes uses gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// As YAML reads it: a key read as a boolean or a number is its value as text (`yes` is
    /// "true", as Kubernetes' YAML 1.1 reading makes it).
    pub key: String,
    pub key_at: Pos,
    pub value: Node,
    /// A key YAML reads as something other than a string (`yes`, `080`), as written; `None`
    /// for string keys. See [`Entry::written_key`].
    pub key_written: Option<String>,
    /// Where a key that is not a string is in its document, in bytes (offset, length).
    key_span: Option<(usize, usize)>,
}

impl Entry {
    /// The key as written in the file, for messages and for readers that take every key as
    /// text.
    pub fn written_key(&self) -> &str {
        self.key_written.as_deref().unwrap_or(&self.key)
    }
}

impl Value {
    /// How a message names what was found.
    fn describe(&self) -> String {
        match self {
            Value::Null => "nothing (null)".to_owned(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(n) => format!("the number {n}"),
            Value::Float(x) => format!("the number {x}"),
            Value::Str(s) => format!("the string {:?}", sanitize(s)),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }
}

impl Node {
    /// The value at `key` when this is a mapping, whatever its type.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The string at `key` when this is a mapping and that value is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key).map(|node| &node.value) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Fills in [`Node::written`] for every scalar that is not a string, from the text the
    /// document was read from.
    fn fill_written(&mut self, text: &str) {
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.fill_written(text)),
            Value::Map(entries) => {
                for entry in entries {
                    entry.key_written = written(text, entry.key_span);
                    entry.value.fill_written(text);
                }
            }
            Value::Str(_) => {}
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                self.written = written(text, self.span);
            }
        }
    }

    fn shift(&mut self, line_offset: u64) {
        if self.at.line != 0 {
            self.at.line += line_offset;
        }
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.shift(line_offset)),
            Value::Map(entries) => {
                for entry in entries {
                    if entry.key_at.line != 0 {
                        entry.key_at.line += line_offset;
                    }
                    entry.value.shift(line_offset);
                }
            }
            _ => {}
        }
    }
}

/// The text at `span` of `text`, trimmed; `None` when unknown or empty.
fn written(text: &str, span: Option<(usize, usize)>) -> Option<String> {
    span.and_then(|(start, len)| text.get(start..start.checked_add(len)?))
        .map(|written| written.trim().to_owned())
        .filter(|written| !written.is_empty())
}

fn byte_span(location: Location) -> Option<(usize, usize)> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    Some((start, len))
}

// Reading a tree: every value is `Spanned`, keys too, so a message can point at either.

struct RawNode(Value);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

fn node(spanned: Spanned<RawNode>) -> Node {
    let span = byte_span(spanned.referenced);
    Node {
        at: Pos::from_location(spanned.referenced, 0),
        value: spanned.value.0,
        written: None,
        span,
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push(Entry {
                key: key.value.text,
                key_at: Pos::from_location(key.referenced, 0),
                value: node(value),
                key_written: None,
                key_span: key.value.typed.then(|| byte_span(key.referenced)).flatten(),
            });
        }
        Ok(RawNode(Value::Map(entries)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(value) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(node(value));
        }
        Ok(RawNode(Value::Seq(items)))
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode(Value::Int(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode(Value::Int(v.into())))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode(Value::Int(v)))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<RawNode, E> {
        i128::try_from(v)
            .map(|v| RawNode(Value::Int(v)))
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode(Value::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode(Value::Str(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode(Value::Str(String::from_utf8_lossy(v).into_owned())))
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode(Value::Null))
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode(Value::Null))
    }
}

/// A mapping key as text. Kubernetes objects only have string keys; a key YAML reads as a
/// boolean or a number (`80: x`, `yes: x`) is `typed`, so that its text as written can be
/// recovered for messages ([`Entry::written_key`]).
struct KeyText {
    text: String,
    typed: bool,
}

impl KeyText {
    fn text(text: String) -> KeyText {
        KeyText { text, typed: false }
    }
    fn typed(text: String) -> KeyText {
        KeyText { text, typed: true }
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText::text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<KeyText, E> {
        Ok(KeyText::text(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
        Ok(KeyText::typed(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText::typed(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText::typed(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
        Ok(KeyText::typed(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<KeyText, E> {
        Ok(KeyText::typed("null".to_owned()))
    }
    fn visit_none<E>(self) -> Result<KeyText, E> {
        Ok(KeyText::typed("null".to_owned()))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<KeyText, D::Error> {
        KeyText::deserialize(d)
    }
}

/// One document of a file: its text and the 0-based line of the file it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub text: &'a str,
    pub first_line: u64,
}

/// Splits a file into its documents the way `kubectl` does: at lines that are `---` alone or
/// followed by a comment. Documents holding only blank lines and comments are left out (they
/// are what an editor leaves after a trailing `---`). Splitting here, rather than letting the
/// YAML reader walk the whole stream, means broken YAML in one document costs only that one.
pub fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 0u64;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let index = index as u64;
        if is_separator(line) {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = index + 1;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line: start_line,
    });
    chunks.retain(|chunk| !is_blank(chunk.text));
    chunks
}

fn is_separator(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        let rest = rest.trim();
        rest.is_empty() || rest.starts_with('#')
    })
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        // `...` ends a document and `%YAML` opens one; neither holds content.
        line.is_empty() || line.starts_with('#') || line == "..." || line.starts_with('%')
    })
}

/// How flowscope reads YAML: without the crate's source snippets, since every message
/// carries file:line:column already and the snippets would repeat them over several lines.
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options
}

/// Reads one document. The error is where the YAML breaks and why.
pub fn parse_chunk(chunk: Chunk<'_>) -> Result<Node, (Pos, String)> {
    match read_tree(chunk.text, options()) {
        Ok(mut tree) => {
            tree.shift(chunk.first_line);
            Ok(tree)
        }
        Err(error) => Err(yaml_error(&error, chunk.first_line, "document")),
    }
}

/// YAML that cannot be read as a tree: where it breaks, the field it breaks in when that is
/// known (a key written twice names the mapping it is in), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: Pos,
    /// E.g. `pods[1]` for a key written twice in that item; empty when unknown.
    pub field: String,
    pub message: String,
}

/// Reads a whole text as one document, for files that hold exactly one (a lab file); `unit`
/// is what the text is to its reader ("file"), as messages name it ("the file ends too
/// early").
pub fn parse_document(text: &str, unit: &str) -> Result<Node, SyntaxError> {
    read_tree(text, options()).map_err(|error| {
        let (at, message) = yaml_error(&error, 0, unit);
        let field = match error.without_snippet() {
            serde_saphyr::Error::DuplicateMappingKey { .. } => duplicate_key_field(text, at),
            _ => String::new(),
        };
        SyntaxError { at, field, message }
    })
}

fn read_tree(text: &str, options: serde_saphyr::Options) -> Result<Node, serde_saphyr::Error> {
    let spanned = serde_saphyr::from_str_with_options::<Spanned<RawNode>>(text, options)?;
    let mut tree = node(spanned);
    tree.fill_written(text);
    Ok(tree)
}

/// The path of the mapping holding the key written twice at `at`, from a second reading that
/// lets repeated keys through; empty when it cannot be found.
fn duplicate_key_field(text: &str, at: Pos) -> String {
    let mut options = options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    read_tree(text, options)
        .ok()
        .and_then(|tree| mapping_with_key_at(&tree, at, String::new()))
        .unwrap_or_default()
}

fn mapping_with_key_at(node: &Node, at: Pos, path: String) -> Option<String> {
    match &node.value {
        Value::Map(entries) => {
            if entries.iter().any(|entry| entry.key_at == at) {
                return Some(path);
            }
            entries.iter().find_map(|entry| {
                let child = if path.is_empty() {
                    sanitize(&entry.key)
                } else {
                    format!("{path}.{}", sanitize(&entry.key))
                };
                mapping_with_key_at(&entry.value, at, child)
            })
        }
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| mapping_with_key_at(item, at, format!("{path}[{i}]"))),
        _ => None,
    }
}

fn yaml_error(error: &serde_saphyr::Error, line_offset: u64, unit: &str) -> (Pos, String) {
    let error = error.without_snippet();
    let at = error
        .location()
        .map(|l| Pos::from_location(l, line_offset))
        .unwrap_or_default();
    let message = syntax_message(error, unit).unwrap_or_else(|| invalid_yaml(error));
    (at, message)
}

/// The message for YAML that breaks the rules every reader shares (a key written twice, the
/// text ending early, an alias without an anchor), in words a user of the file knows; `unit`
/// is what the text is to its reader ("document", "file"). `None` for other errors.
fn syntax_message(error: &serde_saphyr::Error, unit: &str) -> Option<String> {
    use serde_saphyr::Error as E;

    Some(match error.without_snippet() {
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!("key {:?} is written twice", sanitize(key))
        }
        E::DuplicateMappingKey { key: None, .. } => "a key is written twice".to_owned(),
        E::Eof { .. } => format!("the {unit} ends too early"),
        E::UnknownAnchor { .. } => {
            format!("this alias names no anchor: `*name` needs an `&name` earlier in the {unit}")
        }
        _ => return None,
    })
}

/// `invalid YAML: ` and the crate's own words, made safe to print.
fn invalid_yaml(error: &serde_saphyr::Error) -> String {
    format!(
        "invalid YAML: {}",
        sanitize(&serde_saphyr::UserMessageFormatter.format_message(error.without_snippet()))
    )
}

/// Text from a file, with control characters escaped so that a message stays one line and
/// cannot drive the terminal.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The problems found in one document, in the order found.
pub struct Diagnostics<'f> {
    file: &'f str,
    pub errors: Vec<Problem>,
}

impl<'f> Diagnostics<'f> {
    pub fn new(file: &'f str) -> Self {
        Diagnostics {
            file,
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, at: Pos, field: &str, message: impl fmt::Display) {
        let known = at.known();
        self.errors.push(Problem {
            file: self.file.to_owned(),
            line: known.map(|(line, _)| line),
            column: known.map(|(_, column)| column),
            field: field.to_owned(),
            message: message.to_string(),
        });
    }

    /// How many problems so far: a reader compares before and after to learn whether a part
    /// was valid.
    pub fn count(&self) -> usize {
        self.errors.len()
    }
}

/// A value found under a key, with its field path.
#[derive(Clone, Copy)]
pub struct Field<'n, 'p> {
    pub node: &'n Node,
    pub path: &'p str,
}

/// Reads a mapping key by key, and at the end refuses the keys nobody asked for: Kubernetes
/// would silently prune them, but a misspelt key in a policy (`podselector`) would then change
/// what traffic flows without a word.
pub struct Object<'n> {
    pub path: String,
    pub at: Pos,
    entries: &'n [Entry],
    taken: Vec<bool>,
    known: Vec<&'static str>,
    /// Required keys found absent or empty, reported by [`Object::finish`].
    lacking: Vec<(&'static str, Option<Pos>)>,
}

impl<'n> Object<'n> {
    /// `None`, with the problem recorded, when `node` is not a mapping. A null reads as an empty
    /// mapping, as Kubernetes' JSON decoding does (`spec:` with nothing under it).
    pub fn new(d: &mut Diagnostics<'_>, node: &'n Node, path: &str) -> Option<Object<'n>> {
        let entries: &[Entry] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            other => {
                d.push(
                    node.at,
                    path,
                    format!(
                        "expected a mapping of `key: value` entries, found {}",
                        other.describe()
                    ),
                );
                return None;
            }
        };
        Some(Object {
            path: path.to_owned(),
            at: node.at,
            entries,
            taken: vec![false; entries.len()],
            known: Vec::new(),
            lacking: Vec::new(),
        })
    }

    /// The path of a key of this object.
    pub fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value at `key`; `None` when absent or null (Kubernetes reads both as unset).
    pub fn take(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        let index = self.entries.iter().position(|e| e.key == key)?;
        self.taken[index] = true;
        let value = &self.entries[index].value;
        (value.value != Value::Null).then_some(value)
    }

    /// Whether `key` is written, even as null.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Where `key` is written, even with a null value.
    pub fn key_at(&self, key: &str) -> Option<Pos> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.key_at)
    }

    /// The value at `key`, which must be there. [`Object::finish`] reports it, after the unknown
    /// keys (a misspelt key is the usual reason one is missing): when absent as missing,
    /// pointing at the object; when written with nothing after it (or `~`, `null`) as having
    /// no value, pointing at the key.
    pub fn require(&mut self, key: &'static str) -> Option<&'n Node> {
        let node = self.take(key);
        if node.is_none() {
            self.lacking.push((key, self.key_at(key)));
        }
        node
    }

    /// Accepts `key` without reading it: fields the API server sets (`status`, `uid`, ...) that
    /// an exported manifest carries and that change nothing about the policy.
    pub fn ignore(&mut self, key: &'static str) {
        let _ = self.take(key);
    }

    /// Refuses `key` if written: a real field of the API that flowscope cannot evaluate, so
    /// loading the policy without it would misstate what the cluster does.
    pub fn unsupported(&mut self, d: &mut Diagnostics<'_>, key: &'static str, why: &str) {
        self.known.push(key);
        if let Some(index) = self.entries.iter().position(|e| e.key == key) {
            self.taken[index] = true;
            let entry = &self.entries[index];
            d.push(entry.key_at, &self.child(key), why);
        }
    }

    /// Refuses every key not read, naming the keys that are accepted here, then reports the
    /// required keys found lacking ([`Object::require`]).
    pub fn finish(self, d: &mut Diagnostics<'_>) {
        for (entry, taken) in self.entries.iter().zip(&self.taken) {
            if !taken {
                let accepted = self.known.join(", ");
                d.push(
                    entry.key_at,
                    &self.path,
                    format!(
                        "unknown key {:?}; accepted keys: {accepted}",
                        sanitize(entry.written_key())
                    ),
                );
            }
        }
        for (key, written_at) in &self.lacking {
            let path = self.child(key);
            match written_at {
                Some(at) => d.push(*at, &path, "has no value; write one"),
                None => d.push(self.at, &path, "required, but missing"),
            }
        }
    }
}

fn mismatch(d: &mut Diagnostics<'_>, f: Field<'_, '_>, expected: &str) {
    let hint = match &f.node.value {
        Value::Int(n) if expected == "a string" => format!("; write it quoted: \"{n}\""),
        // Kubernetes reads YAML 1.1, where `y`, `yes`, `on` (and `n`, `no`, `off`) are
        // booleans: the namespace `y` of the conformance suites must be quoted.
        Value::Bool(_) if expected == "a string" => {
            "; YAML reads y, yes, on, n, no, off, true and false as booleans, so write the \
             text quoted, e.g. \"y\""
                .to_owned()
        }
        _ => String::new(),
    };
    d.push(
        f.node.at,
        f.path,
        format!(
            "expected {expected}, found {}{hint}",
            f.node.value.describe()
        ),
    );
}

/// A string, or `None` with the problem recorded.
pub fn string(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Option<String> {
    match &f.node.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            mismatch(d, f, "a string");
            None
        }
    }
}

/// `true` or `false`.
pub fn boolean(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Option<bool> {
    match &f.node.value {
        Value::Bool(b) => Some(*b),
        _ => {
            mismatch(d, f, "true or false");
            None
        }
    }
}

/// A whole number.
pub fn integer(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Option<i128> {
    match &f.node.value {
        Value::Int(n) => Some(*n),
        _ => {
            mismatch(d, f, "a whole number");
            None
        }
    }
}

/// A number or a string, as Kubernetes' `IntOrString`.
pub enum IntOrString {
    Int(i128),
    Str(String),
}

pub fn int_or_string(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Option<IntOrString> {
    match &f.node.value {
        Value::Int(n) => Some(IntOrString::Int(*n)),
        Value::Str(s) => Some(IntOrString::Str(s.clone())),
        _ => {
            mismatch(d, f, "a number or a string");
            None
        }
    }
}

/// Any scalar as the text written in the file, for readers that judge every value as text
/// (the lab file reads `port: 80`, `port: "80"` and a label value `1.10` alike): a string as
/// YAML reads it (quotes and escapes resolved), any other scalar as written (`080`, `1.10`,
/// `yes`). A list, a mapping or a null is recorded as a problem.
pub fn scalar_text(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Option<String> {
    match &f.node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Null => {
            d.push(f.node.at, f.path, "has no value; write one");
            None
        }
        Value::Seq(_) | Value::Map(_) => {
            mismatch(d, f, "a single value such as text or a number");
            None
        }
        Value::Bool(b) => Some(f.node.written.clone().unwrap_or_else(|| b.to_string())),
        Value::Int(n) => Some(f.node.written.clone().unwrap_or_else(|| n.to_string())),
        Value::Float(x) => Some(f.node.written.clone().unwrap_or_else(|| x.to_string())),
    }
}

/// The entries of a mapping, for readers that take whatever keys are written (labels); a null
/// is an empty mapping.
pub fn mapping<'n>(d: &mut Diagnostics<'_>, f: Field<'n, '_>) -> Option<&'n [Entry]> {
    match &f.node.value {
        Value::Map(entries) => Some(entries),
        Value::Null => Some(&[]),
        _ => {
            mismatch(d, f, "a mapping of `key: value` entries");
            None
        }
    }
}

/// The items of a list.
pub fn list<'n>(d: &mut Diagnostics<'_>, f: Field<'n, '_>) -> Option<&'n [Node]> {
    match &f.node.value {
        Value::Seq(items) => Some(items),
        _ => {
            mismatch(d, f, "a list of `- ` items");
            None
        }
    }
}

/// A list of strings, each with where it is.
pub fn string_list(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Vec<(String, Pos)> {
    let Some(items) = list(d, f) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path);
        if let Some(s) = string(
            d,
            Field {
                node: item,
                path: &path,
            },
        ) {
            out.push((s, item.at));
        }
    }
    out
}

/// A mapping of strings to strings (labels, annotations, `matchLabels`): each key with where it
/// is, its value, and the field path of that value.
pub fn string_map(d: &mut Diagnostics<'_>, f: Field<'_, '_>) -> Vec<(String, Pos, String, String)> {
    let entries: &[Entry] = match &f.node.value {
        Value::Map(entries) => entries,
        Value::Null => &[],
        _ => {
            mismatch(d, f, "a mapping of `key: value` strings");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let path = format!("{}[{:?}]", f.path, sanitize(&entry.key));
        let value = match &entry.value.value {
            // `key:` with nothing after it is the empty value, which labels allow.
            Value::Null => Some(String::new()),
            _ => string(
                d,
                Field {
                    node: &entry.value,
                    path: &path,
                },
            ),
        };
        if let Some(value) = value {
            out.push((entry.key.clone(), entry.key_at, value, path));
        }
    }
    out
}

/// A string that must be present: recorded as missing, pointing at the object, when absent.
pub fn required_string(
    d: &mut Diagnostics<'_>,
    object: &mut Object<'_>,
    key: &'static str,
) -> Option<(String, Pos)> {
    let path = object.child(key);
    match object.take(key) {
        Some(node) => string(d, Field { node, path: &path }).map(|s| (s, node.at)),
        None => {
            d.push(object.at, &path, "required, but missing");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_like_compiler_messages() {
        let problem = Problem {
            file: "allow-dns.yaml".into(),
            line: Some(12),
            column: Some(9),
            field: "spec.egress[0].ports[0].protocol".into(),
            message: "\"ICMP\" is not TCP, UDP or SCTP".into(),
        };
        assert_eq!(
            problem.to_string(),
            "allow-dns.yaml:12:9: spec.egress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP"
        );
        let problem = Problem {
            file: "p.yaml".into(),
            line: None,
            column: None,
            field: String::new(),
            message: "cannot be read".into(),
        };
        assert_eq!(problem.to_string(), "p.yaml: cannot be read");
    }

    #[test]
    fn documents_split_at_separator_lines_only() {
        let text = "a: 1\n---\nb: 2\n--- # comment\n# only a comment\n---\nc: |\n  ---x\n";
        let chunks = split_documents(text);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].text, "a: 1\n");
        assert_eq!(chunks[0].first_line, 0);
        assert_eq!(chunks[1].text, "b: 2\n");
        assert_eq!(chunks[1].first_line, 2);
        assert_eq!(chunks[2].text, "c: |\n  ---x\n");
        assert_eq!(chunks[2].first_line, 6);
    }

    #[test]
    fn leading_separator_and_empty_file_give_no_empty_documents() {
        assert_eq!(split_documents("---\na: 1\n").len(), 1);
        assert!(split_documents("").is_empty());
        assert!(split_documents("# nothing\n---\n\n").is_empty());
    }

    #[test]
    fn values_and_keys_carry_file_lines() {
        let text = "x: 0\n---\nspec:\n  port: 53\n  name: \"53\"\n";
        let chunks = split_documents(text);
        let tree = parse_chunk(chunks[1]).expect("valid YAML");
        let spec = tree.get("spec").expect("spec");
        let port = spec.get("port").expect("port");
        assert_eq!(port.value, Value::Int(53));
        assert_eq!(port.at, Pos { line: 4, column: 9 });
        let name = spec.get("name").expect("name");
        assert_eq!(name.value, Value::Str("53".into()));
        let Value::Map(entries) = &spec.value else {
            panic!("spec is a mapping")
        };
        assert_eq!(entries[1].key_at, Pos { line: 5, column: 3 });
    }

    #[test]
    fn broken_yaml_and_duplicate_keys_are_located() {
        let text = "a: 1\n---\nb: [1, 2\n";
        let chunks = split_documents(text);
        let (at, message) = parse_chunk(chunks[1]).expect_err("broken");
        assert!(at.line >= 3, "{at:?}");
        assert!(
            message.starts_with("invalid YAML") || message.contains("ends"),
            "{message}"
        );

        let chunks = split_documents("a: 1\na: 2\n");
        let (at, message) = parse_chunk(chunks[0]).expect_err("duplicate");
        assert_eq!(message, "key \"a\" is written twice");
        assert_eq!(at.line, 2);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_accepted_ones() {
        let chunks = split_documents("spec:\n  podselector: {}\n");
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let mut d = Diagnostics::new("p.yaml");
        let spec = tree.get("spec").expect("spec");
        let mut object = Object::new(&mut d, spec, "spec").expect("mapping");
        assert!(object.take("podSelector").is_none());
        object.ignore("status");
        object.finish(&mut d);
        assert_eq!(
            d.errors[0].to_string(),
            "p.yaml:2:3: spec: unknown key \"podselector\"; accepted keys: podSelector, status"
        );
    }

    #[test]
    fn yaml_1_1_booleans_where_a_string_belongs_suggest_quotes() {
        let chunks = split_documents("namespace: y\n");
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let mut d = Diagnostics::new("p.yaml");
        let node = tree.get("namespace").expect("namespace");
        assert_eq!(
            node.value,
            Value::Bool(true),
            "read as YAML 1.1, like kubectl"
        );
        assert_eq!(
            string(
                &mut d,
                Field {
                    node,
                    path: "namespace"
                }
            ),
            None
        );
        assert!(
            d.errors[0].message.contains("write the text quoted"),
            "{:?}",
            d.errors
        );
    }

    #[test]
    fn a_number_where_a_string_belongs_suggests_quotes() {
        let chunks = split_documents("port: 8080\n");
        let tree = parse_chunk(chunks[0]).expect("valid YAML");
        let mut d = Diagnostics::new("p.yaml");
        let field = Field {
            node: tree.get("port").expect("port"),
            path: "port",
        };
        assert_eq!(string(&mut d, field), None);
        assert_eq!(
            d.errors[0].message,
            "expected a string, found the number 8080; write it quoted: \"8080\""
        );
    }

    #[test]
    fn scalars_read_as_text_keep_what_was_written() {
        let text = "a: 080\nb: {p: 1.10, q: yes, s: 0x50, t: \"8\\x41\"}\nc: [5, 1e3]\n";
        let tree = parse_document(text, "file").expect("valid YAML");
        let mut d = Diagnostics::new("p.yaml");
        let mut text_at = |node: &Node| scalar_text(&mut d, Field { node, path: "x" });
        let b = tree.get("b").expect("b");
        assert_eq!(text_at(tree.get("a").expect("a")).as_deref(), Some("080"));
        assert_eq!(text_at(b.get("p").expect("p")).as_deref(), Some("1.10"));
        assert_eq!(text_at(b.get("q").expect("q")).as_deref(), Some("yes"));
        assert_eq!(text_at(b.get("s").expect("s")).as_deref(), Some("0x50"));
        // A quoted string is its value, escapes resolved.
        assert_eq!(text_at(b.get("t").expect("t")).as_deref(), Some("8A"));
        let Value::Seq(items) = &tree.get("c").expect("c").value else {
            panic!("c is a list")
        };
        assert_eq!(text_at(&items[1]).as_deref(), Some("1e3"));
        assert_eq!(text_at(tree.get("c").expect("c")), None);
        assert_eq!(
            d.errors[0].to_string(),
            "p.yaml:3:4: x: expected a single value such as text or a number, found a list"
        );
        assert_eq!(d.count(), 1);
    }

    #[test]
    fn a_document_names_the_mapping_that_repeats_a_key() {
        let text = "pods:\n  - name: a\n  - name: b\n    ip: 1\n    ip: 2\n";
        let error = parse_document(text, "file").expect_err("duplicate");
        assert_eq!(
            error,
            SyntaxError {
                at: Pos { line: 5, column: 5 },
                field: "pods[1]".into(),
                message: "key \"ip\" is written twice".into(),
            }
        );
        let error = parse_document("a: [1\n", "file").expect_err("broken");
        assert_eq!(error.field, "");
        assert!(
            error.message.starts_with("invalid YAML") || error.message == "the file ends too early",
            "{error:?}"
        );
    }

    #[test]
    fn required_keys_tell_missing_from_empty() {
        let tree = parse_document("item:\n  name:\n  other: 1\n", "file").expect("valid YAML");
        let mut d = Diagnostics::new("p.yaml");
        let item = tree.get("item").expect("item");
        let mut object = Object::new(&mut d, item, "item").expect("mapping");
        assert_eq!(object.key_at("name"), Some(Pos { line: 2, column: 3 }));
        assert_eq!(object.key_at("kind"), None);
        assert!(object.require("name").is_none());
        assert!(object.require("kind").is_none());
        object.finish(&mut d);
        let messages: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "p.yaml:3:3: item: unknown key \"other\"; accepted keys: name, kind",
                "p.yaml:2:3: item.name: has no value; write one",
                "p.yaml:2:3: item.kind: required, but missing",
            ]
        );
    }

    #[test]
    fn mappings_of_any_keys_and_null_as_empty() {
        let tree = parse_document("l: {a: 1}\ne:\ns: x\n", "file").expect("valid YAML");
        let mut d = Diagnostics::new("p.yaml");
        let field = |key| Field {
            node: tree.get(key).expect("key"),
            path: "l",
        };
        assert_eq!(mapping(&mut d, field("l")).map(<[Entry]>::len), Some(1));
        assert_eq!(mapping(&mut d, field("e")).map(<[Entry]>::len), Some(0));
        assert!(mapping(&mut d, field("s")).is_none());
        assert_eq!(
            d.errors[0].message,
            "expected a mapping of `key: value` entries, found the string \"x\""
        );
    }

    #[test]
    fn keys_that_are_not_strings_keep_what_was_written() {
        let tree = parse_document("y: 1\n080: 2\nname: 3\n", "file").expect("valid YAML");
        let Value::Map(entries) = &tree.value else {
            panic!("a mapping")
        };
        let keys: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.written_key()))
            .collect();
        assert_eq!(keys, [("true", "y"), ("80", "080"), ("name", "name")]);
        let mut d = Diagnostics::new("p.yaml");
        let mut object = Object::new(&mut d, &tree, "").expect("mapping");
        let _ = object.take("name");
        object.finish(&mut d);
        assert_eq!(
            d.errors[0].message, "unknown key \"y\"; accepted keys: name",
            "{:?}",
            d.errors
        );
    }
}
