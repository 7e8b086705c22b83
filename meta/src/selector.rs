//! Label selectors: one type for both ways Kubernetes writes them, and one matching core.
//!
//! A [`LabelSelector`] is built either from a manifest's `matchLabels`/`matchExpressions` (the
//! policy reader fills the public fields) or from the string syntax `kubectl -l` and Hubble's
//! label filters take, `app=x,tier in (web,api),!canary` ([`LabelSelector::parse`]). As in
//! Kubernetes' own `labels.Selector`, the string form becomes requirements: `app=x` is
//! `app In (x)`, `app!=x` is `app NotIn (x)`, `!app` is `app DoesNotExist`, and `>`/`<` give
//! `Gt`/`Lt`, which only the string syntax can write.
//!
//! With the `yaml` feature, [`LabelSelector::from_yaml`] reads `matchLabels` and
//! `matchExpressions` from a manifest's tree, recording every problem at its line.
//!
//! Every way of matching goes through [`LabelSelector::matches_by`]: a requirement holds when
//! some value the key has satisfies it (or, for `NotIn` and `DoesNotExist`, when none does).
//! What differs is where values come from:
//!
//! - [`LabelSelector::matches`]: a pod's or namespace's labels (Kubernetes' semantics, one
//!   value per key);
//! - [`LabelSelector::matches_with`]: a lookup, which the policy compiler uses to resolve
//!   Cilium's sourced keys (`k8s:app`, `k8s:io.cilium.k8s.namespace.labels.x`) against a pod,
//!   its namespace and the reserved identities without building a label set per question;
//! - [`LabelSelector::matches_cilium_labels`]: a flow's Cilium label strings (`k8s:app=x`),
//!   as Hubble's label filters match them. Several labels may share a key from different
//!   sources; `key=v` holds if any of them has the value and `key!=v` is its negation. (Cilium
//!   looks only at the first such label, in an order that depends on an unstable sort;
//!   considering all of them is deterministic.) A `cidr:` key matches narrower CIDR labels.
//!
//! Which keys are accepted depends on who writes them ([`KeyRule`]): plain Kubernetes label
//! keys in a NetworkPolicy, keys after one of Cilium's known sources in a
//! CiliumNetworkPolicy, and any source in a Hubble filter, checked the way Hubble checks it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::cilium::{self, Label, SourcedKey};
use crate::names::{self, NameError};

/// Labels as Kubernetes writes them, in key order so output is stable.
pub type Labels = BTreeMap<String, String>;

/// A label selector: every `match_labels` entry and every requirement must hold. The empty
/// selector (`{}`, or the empty string) selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelSelector {
    /// Each key must have exactly this value.
    pub match_labels: Labels,
    /// Each requirement must hold, as must every `match_labels` entry.
    pub match_expressions: Vec<Requirement>,
}

/// One requirement: a `matchExpressions` entry, or one comma-separated part of the string
/// syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// The label key, as written (with its Cilium source, if any).
    pub key: String,
    /// How the key's value is compared with `values`.
    pub operator: Operator,
    /// Non-empty for `In` and `NotIn`, empty for `Exists` and `DoesNotExist`, one integer
    /// for `Gt` and `Lt`.
    pub values: Vec<String>,
}

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value is an integer greater than the value (string syntax `key>3`).
    Gt,
    /// The label's value is an integer less than the value (string syntax `key<3`).
    Lt,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
        })
    }
}

impl Requirement {
    /// Whether the requirement holds, given `any(predicate)`: whether some value the key has
    /// satisfies the predicate (false when the key is absent).
    pub fn holds_by(&self, any: impl Fn(&dyn Fn(&str) -> bool) -> bool) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        // Kubernetes parses the bound when matching too; the constructors made sure it parses.
        let bound = || self.values.first().and_then(|v| v.parse::<i64>().ok());
        match self.operator {
            Operator::In => any(&listed),
            Operator::NotIn => !any(&listed),
            Operator::Exists => any(&|_| true),
            Operator::DoesNotExist => !any(&|_| true),
            Operator::Gt => {
                bound().is_some_and(|n| any(&|v| v.parse::<i64>().is_ok_and(|v| v > n)))
            }
            Operator::Lt => {
                bound().is_some_and(|n| any(&|v| v.parse::<i64>().is_ok_and(|v| v < n)))
            }
        }
    }
}

impl LabelSelector {
    /// Parses the Kubernetes selector syntax: comma-separated requirements, each one of
    /// `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
    /// `key notin (a,b)`, `key>3`, `key<3`. Keys are checked with `rule`. The empty selector
    /// matches everything.
    pub fn parse(selector: &str, rule: KeyRule) -> Result<Self, SelectorError> {
        Parser::new(selector, rule).parse()
    }

    /// True for `{}`, which selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// The matching core. `any(key, predicate)` says whether some value `key` has satisfies
    /// `predicate`; `false` when the key has none.
    pub fn matches_by(&self, any: impl Fn(&str, &dyn Fn(&str) -> bool) -> bool) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| any(key, &|v| v == value))
            && self
                .match_expressions
                .iter()
                .all(|r| r.holds_by(|predicate| any(&r.key, predicate)))
    }

    /// Whether labels looked up by `value_of` satisfy the selector: one value per key at most.
    pub fn matches_with<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matches_by(|key, predicate| value_of(key).is_some_and(predicate))
    }

    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Whether Cilium labels (`"source:key=value"` strings) satisfy the selector, as Hubble's
    /// label filters decide (see the module documentation). Allocates nothing.
    pub fn matches_cilium_labels<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        self.matches_by(|key, predicate| {
            let key = SourcedKey::new(key);
            labels
                .iter()
                .map(|l| Label::parse(l.as_ref()))
                .any(|l| key.selects(&l) && predicate(l.value))
        })
    }
}

/// Which label keys a selector may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// Kubernetes label keys (NetworkPolicy).
    Kubernetes,
    /// Kubernetes label keys, optionally after one of Cilium's [`cilium::SOURCES`] and ':'
    /// (CiliumNetworkPolicy).
    Cilium,
    /// Hubble's label filters: any source before the first ':'; the key is checked in the
    /// combined `source.key` form (`any.app` when no source is written), which is what Hubble
    /// hands to Kubernetes' parser.
    Hubble,
}

/// A label key a [`KeyRule`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a label key (after its source, if any).
    #[error("{written:?} is not a valid label key: {reason}")]
    Invalid {
        /// The key as written.
        written: String,
        /// What is wrong with it and what is accepted ([`NameError::explain`]). Boxed, as
        /// every string of the selector errors, to keep the flow filters' errors small.
        reason: Box<str>,
    },
    /// A Cilium key whose source Cilium does not know.
    #[error(
        "{written:?} is not a Cilium label source; accepted: {}",
        cilium::SOURCES.join(", ")
    )]
    UnknownSource {
        /// The source as written.
        written: String,
    },
}

impl KeyRule {
    /// Checks a key as written.
    pub fn check(self, written: &str) -> Result<(), KeyError> {
        let invalid = |error: NameError| KeyError::Invalid {
            written: written.to_owned(),
            reason: error.explain().into(),
        };
        match self {
            KeyRule::Kubernetes => names::label_key(written).map_err(invalid),
            KeyRule::Cilium => {
                let (source, key) = cilium::split_source(written);
                if !cilium::SOURCES.contains(&source) {
                    return Err(KeyError::UnknownSource {
                        written: source.to_owned(),
                    });
                }
                names::label_key(key).map_err(invalid)
            }
            KeyRule::Hubble => {
                let (source, key) = cilium::split_source(written);
                names::label_key(&format!("{source}.{key}")).map_err(invalid)
            }
        }
    }
}

/// Why a label selector in the string syntax was rejected. Positions are byte offsets into
/// the selector.
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
    /// A key the [`KeyRule`] refuses.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// A value that is not a valid label value, or not an integer after `>` or `<`.
    #[error("{value:?} is not a valid value for {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: Box<str>,
    },
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
    rule: KeyRule,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, rule: KeyRule) -> Self {
        Parser {
            tokens: tokenize(input),
            pos: 0,
            rule,
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
        let mut selector = LabelSelector::default();
        if self.peek() == Token::End {
            return Ok(selector);
        }
        loop {
            selector.match_expressions.push(self.requirement()?);
            match self.peek() {
                Token::End => return Ok(selector),
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
        self.rule.check(written_key)?;
        let key = written_key.to_owned();
        if matches!(self.peek(), Token::End | Token::Comma) {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: Vec::new(),
            });
        }
        if negated {
            return Err(self.unexpected("',' or the end of the selector after a '!key'"));
        }
        let (operator, values) = match self.peek() {
            Token::Word("in") => (Operator::In, self.value_set()?),
            Token::Word("notin") => (Operator::NotIn, self.value_set()?),
            Token::Equals | Token::DoubleEquals => {
                self.next();
                (Operator::In, vec![self.single_value()?])
            }
            Token::NotEquals => {
                self.next();
                (Operator::NotIn, vec![self.single_value()?])
            }
            Token::GreaterThan | Token::LessThan => {
                let greater = self.next() == Token::GreaterThan;
                let value = self.single_value()?;
                if value.parse::<i64>().is_err() {
                    return Err(SelectorError::InvalidValue {
                        key,
                        value,
                        reason: "'>' and '<' need an integer".into(),
                    });
                }
                let operator = if greater { Operator::Gt } else { Operator::Lt };
                (operator, vec![value])
            }
            _ => return Err(self.unexpected("one of =, ==, !=, in, notin, >, <")),
        };
        if matches!(operator, Operator::In | Operator::NotIn) {
            for value in &values {
                names::label_value(value).map_err(|error| SelectorError::InvalidValue {
                    key: key.clone(),
                    value: value.clone(),
                    reason: error.explain().into(),
                })?;
            }
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
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

#[cfg(feature = "yaml")]
mod read;
#[cfg(test)]
mod tests;
