//! Kubernetes label selectors (`app=x,tier in (web,api),!canary`) matched against Cilium's
//! source-prefixed labels (`k8s:app=x`, `reserved:world`), as Hubble's label filters do.
//!
//! A selector key may name a source (`k8s:app`) and then matches only labels from that source;
//! a key without one (`app`) matches the key from any source. Parsing and validation happen
//! once; matching slices the flow's label strings in place and never allocates.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;

/// A parsed label selector: all requirements must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: SelectorKey,
    op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

/// A selector key split into Cilium's source and key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SelectorKey {
    /// `None` for the `any` source.
    source: Option<String>,
    key: String,
    /// For `cidr:` keys: the prefix, so broader selectors match narrower labels.
    cidr: Option<IpNet>,
}

/// Why a label selector was rejected. Positions are byte offsets into the selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector does not follow the grammar.
    #[error("expected {expected} at position {position}, found {found}")]
    Unexpected {
        /// What the grammar allows here.
        expected: &'static str,
        /// What was there instead.
        found: String,
        /// Byte offset.
        position: usize,
    },
    /// A key that is not a valid label key.
    #[error("{key:?} is not a valid label key: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value that is not a valid label value.
    #[error("{value:?} is not a valid value for {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl LabelSelector {
    /// Parses the Kubernetes selector syntax: comma-separated requirements, each one of
    /// `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
    /// `key notin (a,b)`, `key>3`, `key<3`. The empty selector matches everything.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        Parser::new(selector).parse()
    }

    /// Whether the labels (`"source:key=value"` strings) satisfy every requirement.
    ///
    /// Where several labels share a key (from different sources), `key=v` holds if any of them
    /// has the value, and `key!=v` is its negation. Cilium looks only at the first such label,
    /// in an order that depends on an unstable sort; considering all of them is deterministic.
    pub fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

impl Requirement {
    fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        let mut values = labels
            .iter()
            .map(|l| Label::parse(l.as_ref()))
            .filter(|l| self.key.selects(l))
            .map(|l| l.value);
        match &self.op {
            Op::Exists => values.next().is_some(),
            Op::DoesNotExist => values.next().is_none(),
            Op::In(set) => values.any(|v| set.iter().any(|s| s == v)),
            Op::NotIn(set) => !values.any(|v| set.iter().any(|s| s == v)),
            Op::GreaterThan(n) => values.any(|v| v.parse::<i64>().is_ok_and(|v| v > *n)),
            Op::LessThan(n) => values.any(|v| v.parse::<i64>().is_ok_and(|v| v < *n)),
        }
    }
}

/// A flow label, sliced out of its `"source:key=value"` string.
struct Label<'a> {
    source: &'a str,
    key: &'a str,
    value: &'a str,
}

impl<'a> Label<'a> {
    /// Cilium's label syntax: the source runs to the first ':' (a `$` prefix means `reserved`),
    /// and the key to the first '='.
    fn parse(label: &'a str) -> Self {
        let (source, rest) = if let Some(rest) = label.strip_prefix('$') {
            ("reserved", rest)
        } else if let Some((source, rest)) = label.split_once(':') {
            (if source.is_empty() { "unspec" } else { source }, rest)
        } else if let Some(rest) = label.strip_prefix("reserved.") {
            ("reserved", rest)
        } else {
            ("unspec", label)
        };
        let (key, value) = match rest.split_once('=') {
            // `reserved:=host` is how Cilium writes some reserved labels.
            Some(("", key)) if source == "reserved" => (key, ""),
            Some((key, value)) => (key, value),
            None => (rest, ""),
        };
        Label { source, key, value }
    }
}

impl SelectorKey {
    fn selects(&self, label: &Label<'_>) -> bool {
        let Some(source) = &self.source else {
            return label.key == self.key;
        };
        if label.source != source {
            return false;
        }
        if let Some(selector_net) = &self.cidr {
            // A broader cidr selector covers narrower cidr labels, as in Cilium.
            return parse_cidr_key(label.key).is_some_and(|label_net| {
                selector_net.prefix_len() <= label_net.prefix_len()
                    && selector_net.contains(&label_net.network())
            });
        }
        label.key == self.key
    }

    /// Splits a user key the way Hubble does: text before the first ':' is the source, and a
    /// key without one selects any source. Validation applies to the combined `source.key`
    /// form, which is what Hubble hands to the Kubernetes parser.
    fn parse(written: &str) -> Result<Self, SelectorError> {
        let (source, key) = written.split_once(':').unwrap_or(("any", written));
        let combined = format!("{source}.{key}");
        validate_qualified_name(&combined).map_err(|reason| SelectorError::InvalidKey {
            key: written.to_owned(),
            reason,
        })?;
        let source = (source != "any").then(|| source.to_owned());
        let cidr = if source.as_deref() == Some("cidr") {
            parse_cidr_key(key)
        } else {
            None
        };
        Ok(SelectorKey {
            source,
            key: key.to_owned(),
            cidr,
        })
    }
}

/// Parses a Cilium CIDR label key, which spells IPv6 colons as '-' ("2001-db8--/32").
fn parse_cidr_key(key: &str) -> Option<IpNet> {
    const MAX: usize = 64;
    if key.len() > MAX {
        return None;
    }
    let mut buf = [0u8; MAX];
    for (dst, src) in buf.iter_mut().zip(key.bytes()) {
        *dst = if src == b'-' { b':' } else { src };
    }
    std::str::from_utf8(&buf[..key.len()]).ok()?.parse().ok()
}

/// Kubernetes `IsQualifiedName`: an optional DNS-subdomain prefix and '/', then a name of at
/// most 63 characters made of alphanumerics, '-', '_' and '.', starting and ending with an
/// alphanumeric.
fn validate_qualified_name(s: &str) -> Result<(), &'static str> {
    let (prefix, name) = match s.split('/').collect::<Vec<_>>().as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return Err("a key may contain at most one '/'"),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("the prefix before '/' must not be empty");
        }
        if prefix.len() > 253 || !is_dns_subdomain(prefix) {
            return Err("the prefix before '/' must be a lowercase DNS subdomain");
        }
    }
    if name.is_empty() {
        return Err("the name must not be empty");
    }
    if name.len() > 63 {
        return Err("the name must be at most 63 characters");
    }
    if !is_label_token(name) {
        return Err(
            "the name must consist of alphanumerics, '-', '_' or '.', and start and end with an \
             alphanumeric",
        );
    }
    Ok(())
}

/// Kubernetes label value: empty, or at most 63 characters of alphanumerics, '-', '_' and '.',
/// starting and ending with an alphanumeric.
fn validate_label_value(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("a value must be at most 63 characters");
    }
    if !s.is_empty() && !is_label_token(s) {
        return Err(
            "a value must consist of alphanumerics, '-', '_' or '.', and start and end with an \
             alphanumeric",
        );
    }
    Ok(())
}

fn is_label_token(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return false;
        };
        let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        lower_alnum(first)
            && lower_alnum(last)
            && bytes.iter().all(|b| lower_alnum(b) || *b == b'-')
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "{w:?}"),
            Token::Not => f.write_str("'!'"),
            Token::Equals => f.write_str("'='"),
            Token::DoubleEquals => f.write_str("'=='"),
            Token::NotEquals => f.write_str("'!='"),
            Token::GreaterThan => f.write_str("'>'"),
            Token::LessThan => f.write_str("'<'"),
            Token::OpenParen => f.write_str("'('"),
            Token::CloseParen => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
            Token::End => f.write_str("the end of the selector"),
        }
    }
}

/// Splits a selector into tokens with their byte offsets. As in Kubernetes, a word is any run
/// of characters other than whitespace and `=!(),<>`.
fn tokenize(input: &str) -> Vec<(Token<'_>, usize)> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let (token, len) = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'!' if next == Some(b'=') => (Token::NotEquals, 2),
            b'=' if next == Some(b'=') => (Token::DoubleEquals, 2),
            b'!' => (Token::Not, 1),
            b'=' => (Token::Equals, 1),
            b'>' => (Token::GreaterThan, 1),
            b'<' => (Token::LessThan, 1),
            b'(' => (Token::OpenParen, 1),
            b')' => (Token::CloseParen, 1),
            b',' => (Token::Comma, 1),
            _ => {
                let len = bytes[i..]
                    .iter()
                    .position(|b| b" \t\r\n=!(),<>".contains(b))
                    .unwrap_or(bytes.len() - i);
                (Token::Word(&input[i..i + len]), len)
            }
        };
        tokens.push((token, i));
        i += len;
    }
    tokens.push((Token::End, input.len()));
    tokens
}

struct Parser<'a> {
    tokens: Vec<(Token<'a>, usize)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            tokens: tokenize(input),
            pos: 0,
        }
    }

    fn peek(&self) -> Token<'a> {
        self.tokens.get(self.pos).map_or(Token::End, |t| t.0)
    }

    fn next(&mut self) -> Token<'a> {
        let token = self.peek();
        self.pos = (self.pos + 1).min(self.tokens.len().saturating_sub(1));
        token
    }

    fn unexpected(&self, expected: &'static str) -> SelectorError {
        let (found, position) = self
            .tokens
            .get(self.pos)
            .copied()
            .unwrap_or((Token::End, 0));
        SelectorError::Unexpected {
            expected,
            found: found.to_string(),
            position,
        }
    }

    fn parse(mut self) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek() == Token::End {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.peek() {
                Token::End => return Ok(LabelSelector { requirements }),
                Token::Comma => {
                    self.next();
                }
                _ => return Err(self.unexpected("',' or the end of the selector")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == Token::Not;
        if negated {
            self.next();
        }
        let Token::Word(written_key) = self.peek() else {
            return Err(self.unexpected("a label key"));
        };
        self.next();
        let key = SelectorKey::parse(written_key)?;
        if matches!(self.peek(), Token::End | Token::Comma) {
            let op = if negated {
                Op::DoesNotExist
            } else {
                Op::Exists
            };
            return Ok(Requirement { key, op });
        }
        if negated {
            return Err(self.unexpected("',' or the end of the selector after a '!key'"));
        }
        let op = match self.peek() {
            Token::Word("in") => Op::In(self.value_set()?),
            Token::Word("notin") => Op::NotIn(self.value_set()?),
            Token::Equals | Token::DoubleEquals => {
                self.next();
                Op::In(vec![self.single_value()?])
            }
            Token::NotEquals => {
                self.next();
                Op::NotIn(vec![self.single_value()?])
            }
            Token::GreaterThan | Token::LessThan => {
                let greater = self.next() == Token::GreaterThan;
                let value = self.single_value()?;
                let n = value
                    .parse::<i64>()
                    .map_err(|_| SelectorError::InvalidValue {
                        key: written_key.to_owned(),
                        value: value.clone(),
                        reason: "'>' and '<' need an integer",
                    })?;
                if greater {
                    Op::GreaterThan(n)
                } else {
                    Op::LessThan(n)
                }
            }
            _ => return Err(self.unexpected("one of =, ==, !=, in, notin, >, <")),
        };
        if let Op::In(values) | Op::NotIn(values) = &op {
            for value in values {
                validate_label_value(value).map_err(|reason| SelectorError::InvalidValue {
                    key: written_key.to_owned(),
                    value: value.clone(),
                    reason,
                })?;
            }
        }
        Ok(Requirement { key, op })
    }

    /// `=` and friends take one value; nothing before ',' or the end means the empty value.
    fn single_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Token::End | Token::Comma => Ok(String::new()),
            Token::Word(w) => {
                self.next();
                Ok(w.to_owned())
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    /// `(a, b)`; as in Kubernetes, empty items are empty values, so `()` is `("")`.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.next(); // `in` or `notin`
        if self.peek() != Token::OpenParen {
            return Err(self.unexpected("'('"));
        }
        self.next();
        let mut values = Vec::new();
        loop {
            match self.peek() {
                Token::Word(w) => {
                    self.next();
                    values.push(w.to_owned());
                }
                _ => values.push(String::new()),
            }
            match self.peek() {
                Token::Comma => {
                    self.next();
                }
                Token::CloseParen => {
                    self.next();
                    return Ok(values);
                }
                _ => return Err(self.unexpected("',' or ')'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    const POD: &[&str] = &[
        "k8s:app=frontend",
        "k8s:tier=web",
        "k8s:io.kubernetes.pod.namespace=shop",
        "k8s:app.kubernetes.io/name=checkout",
        "container:version=3",
    ];

    #[test]
    fn equality_and_sources() {
        assert!(sel("app=frontend").matches(POD));
        assert!(sel("app==frontend").matches(POD));
        assert!(sel("k8s:app=frontend").matches(POD));
        assert!(sel("any:app=frontend").matches(POD));
        assert!(!sel("container:app=frontend").matches(POD));
        assert!(!sel("app=backend").matches(POD));
        assert!(sel("app.kubernetes.io/name=checkout").matches(POD));
        assert!(sel("k8s:io.kubernetes.pod.namespace=shop").matches(POD));
    }

    #[test]
    fn inequality_and_sets() {
        assert!(sel("app!=backend").matches(POD));
        assert!(!sel("app!=frontend").matches(POD));
        assert!(
            sel("missing!=x").matches(POD),
            "!= holds when the key is absent"
        );
        assert!(sel("tier in (api, web)").matches(POD));
        assert!(!sel("tier in (api,db)").matches(POD));
        assert!(sel("tier notin (api,db)").matches(POD));
        assert!(!sel("tier notin (web)").matches(POD));
        assert!(sel("missing notin (x)").matches(POD));
        assert!(!sel("missing in (x)").matches(POD));
    }

    #[test]
    fn existence_and_and() {
        assert!(sel("app").matches(POD));
        assert!(!sel("!app").matches(POD));
        assert!(sel("!canary").matches(POD));
        assert!(!sel("canary").matches(POD));
        assert!(sel("app=frontend, tier=web, !canary").matches(POD));
        assert!(!sel("app=frontend,tier=api").matches(POD));
        assert!(
            sel("").matches(POD),
            "the empty selector matches everything"
        );
        assert!(sel("!app").matches::<&str>(&[]));
    }

    #[test]
    fn numeric_comparisons() {
        assert!(sel("version>2").matches(POD));
        assert!(!sel("version>3").matches(POD));
        assert!(sel("container:version<4").matches(POD));
        assert!(!sel("k8s:version<4").matches(POD));
    }

    #[test]
    fn reserved_and_value_less_labels() {
        let world: &[&str] = &["reserved:world"];
        assert!(sel("reserved:world").matches(world));
        assert!(sel("world").matches(world));
        assert!(!sel("k8s:world").matches(world));
        assert!(!sel("reserved:host").matches(world));
        assert!(sel("reserved:host").matches(&["$host"]));
        assert!(sel("reserved:host").matches(&["reserved:=host"]));
        assert!(
            sel("x=").matches(&["k8s:x"]),
            "an empty value matches a value-less label"
        );
        assert!(sel("x in ()").matches(&["k8s:x="]));
    }

    #[test]
    fn cidr_labels_match_broader_selectors() {
        let labels: &[&str] = &["cidr:10.1.2.0/24", "cidr:2001-db8--/48"];
        assert!(sel("cidr:10.0.0.0/8").matches(labels));
        assert!(sel("cidr:10.1.2.0/24").matches(labels));
        assert!(!sel("cidr:10.1.2.0/25").matches(labels));
        assert!(!sel("cidr:192.168.0.0/16").matches(labels));
        assert!(!sel("k8s:10.0.0.0/8").matches(labels));
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("app in (a", "',' or ')'"),
            ("app in a", "'('"),
            ("app=a,", "a label key"),
            (",app", "a label key"),
            ("app=a b", "',' or the end"),
            ("!app=a", "after a '!key'"),
            ("app ~ a", "one of =, ==, !=, in, notin, >, <"),
            ("app = (a)", "a value"),
        ];
        for (input, expected) in cases {
            let err = LabelSelector::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?} gave {err:?}");
        }
        let err = LabelSelector::parse("app in (a").unwrap_err();
        assert_eq!(
            err,
            SelectorError::Unexpected {
                expected: "',' or ')'",
                found: "the end of the selector".to_owned(),
                position: 9,
            }
        );
    }

    #[test]
    fn validation_errors() {
        assert!(matches!(
            LabelSelector::parse("app-=x"),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(matches!(
            LabelSelector::parse("a/b/c=x"),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(matches!(
            LabelSelector::parse("app=-x"),
            Err(SelectorError::InvalidValue { .. })
        ));
        assert!(matches!(
            LabelSelector::parse("app in (ok, bad!)"),
            Err(SelectorError::Unexpected { .. })
        ));
        assert!(matches!(
            LabelSelector::parse("app in (ok, -bad)"),
            Err(SelectorError::InvalidValue { .. })
        ));
        let err = LabelSelector::parse("replicas>many").unwrap_err();
        assert!(err.to_string().contains("integer"), "{err}");
        let long = format!("app={}", "v".repeat(64));
        assert!(LabelSelector::parse(&long).is_err());
    }
}
