//! The spelling rules Kubernetes applies to names, label keys, label values and port names.
//!
//! A policy or lab file the API server would refuse must be refused here too, with the same
//! reason: a selector with an invalid label value never reaches a cluster, so showing what it
//! "would" allow would be showing something that cannot exist. The rules follow
//! `k8s.io/apimachinery/pkg/util/validation` (`IsDNS1123Label`, `IsDNS1123Subdomain`,
//! `IsQualifiedName`, `IsValidLabelValue`, `IsValidPortName`); lengths are in bytes, as there.
//!
//! Each check returns a [`NameError`] that says what is wrong with the text and what would be
//! accepted: `"Prod" is not a DNS-1123 label: 'P' is not allowed; at most 63 lowercase
//! letters, digits and '-', starting and ending with a letter or digit`.

use std::fmt;

/// Kubernetes' limit on a DNS-1123 label (namespace and pod names), on the name part of a
/// label key, and on a label value.
pub const MAX_LABEL_LEN: usize = 63;

/// Kubernetes' limit on a DNS-1123 subdomain (object names, label key prefixes).
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// IANA service names, which Kubernetes port names are, are at most this long.
pub const MAX_PORT_NAME_LEN: usize = 15;

/// Which rule a text was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Namespace and pod names.
    DnsLabel,
    /// Object names such as a policy's.
    DnsSubdomain,
    /// Label and annotation keys.
    LabelKey,
    /// Label values.
    LabelValue,
    /// Container port names.
    PortName,
}

impl NameKind {
    /// How a message names the rule: "a DNS-1123 label".
    pub const fn noun(self) -> &'static str {
        match self {
            NameKind::DnsLabel => "a DNS-1123 label",
            NameKind::DnsSubdomain => "a DNS-1123 subdomain",
            NameKind::LabelKey => "a valid label key",
            NameKind::LabelValue => "a valid label value",
            NameKind::PortName => "a valid port name",
        }
    }

    /// What the rule accepts, in words.
    pub const fn rule(self) -> &'static str {
        match self {
            NameKind::DnsLabel => {
                "at most 63 lowercase letters, digits and '-', starting and ending with a letter \
                 or digit"
            }
            NameKind::DnsSubdomain => {
                "at most 253 lowercase letters, digits, '-' and '.', each dot-separated part \
                 starting and ending with a letter or digit"
            }
            NameKind::LabelKey => {
                "an optional DNS subdomain and '/' (e.g. app.kubernetes.io/), then at most 63 \
                 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            }
            NameKind::LabelValue => {
                "empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with \
                 a letter or digit"
            }
            NameKind::PortName => {
                "at most 15 lowercase letters, digits and '-', with at least one letter, no '-' \
                 at either end and no \"--\""
            }
        }
    }
}

/// A text that breaks one of the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {}: {}", kind.noun(), self.explain())]
pub struct NameError {
    /// The rule broken.
    pub kind: NameKind,
    /// The text as written.
    pub text: String,
    /// What exactly is wrong, e.g. `'P' is not allowed` or `it is 64 characters long`.
    pub problem: String,
}

impl NameError {
    fn new(kind: NameKind, text: &str, problem: impl fmt::Display) -> Self {
        NameError {
            kind,
            text: text.to_owned(),
            problem: problem.to_string(),
        }
    }

    /// The problem and the rule, without the text: for messages that name the text their own
    /// way (`"k8s:app-" is not a valid label key: ...`).
    pub fn explain(&self) -> String {
        format!("{}; {}", self.problem, self.kind.rule())
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A label key's name part and a label value: letters, digits, '-', '_', '.'.
fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// The first thing wrong with a token made of `allowed` characters, at most `max` long, whose
/// ends satisfy `end`. `subject` is how the problem names the token ("it", "the prefix").
fn token_problem(
    subject: &str,
    text: &str,
    max: usize,
    allowed: fn(char) -> bool,
    end: fn(char) -> bool,
) -> Option<String> {
    if text.is_empty() {
        return Some(format!("{subject} is empty"));
    }
    // Characters before length: the length is counted in bytes, which only equals the
    // characters a reader counts once every character is ASCII.
    if let Some(c) = text.chars().find(|c| !allowed(*c)) {
        return Some(format!("{c:?} is not allowed"));
    }
    if text.len() > max {
        return Some(format!("{subject} is {} characters long", text.len()));
    }
    if !text.starts_with(end) || !text.ends_with(end) {
        return Some(format!(
            "{subject} must start and end with a letter or digit"
        ));
    }
    None
}

fn subdomain_problem(subject: &str, text: &str) -> Option<String> {
    let allowed = |c: char| is_lower_alnum(c) || matches!(c, '-' | '.');
    if text.is_empty() {
        return Some(format!("{subject} is empty"));
    }
    if let Some(c) = text.chars().find(|c| !allowed(*c)) {
        return Some(format!("{c:?} is not allowed"));
    }
    if text.len() > MAX_SUBDOMAIN_LEN {
        return Some(format!("{subject} is {} characters long", text.len()));
    }
    if text.split('.').any(str::is_empty) {
        return Some(format!(
            "{subject} has an empty part: a '.' at either end or two together"
        ));
    }
    if !text
        .split('.')
        .all(|part| part.starts_with(is_lower_alnum) && part.ends_with(is_lower_alnum))
    {
        return Some(format!(
            "each dot-separated part of {subject} must start and end with a letter or digit"
        ));
    }
    None
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters: namespace and pod names.
pub fn dns_label(text: &str) -> Result<(), NameError> {
    let dash_or_lower_alnum = |c: char| is_lower_alnum(c) || c == '-';
    match token_problem(
        "it",
        text,
        MAX_LABEL_LEN,
        dash_or_lower_alnum,
        is_lower_alnum,
    ) {
        Some(problem) => Err(NameError::new(NameKind::DnsLabel, text, problem)),
        None => Ok(()),
    }
}

/// DNS-1123 labels joined by dots, at most 253 characters: object names. As in Kubernetes,
/// the parts are not limited to 63 characters each.
pub fn dns_subdomain(text: &str) -> Result<(), NameError> {
    match subdomain_problem("it", text) {
        Some(problem) => Err(NameError::new(NameKind::DnsSubdomain, text, problem)),
        None => Ok(()),
    }
}

/// A label or annotation key (Kubernetes' qualified name): an optional DNS subdomain and '/',
/// then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a
/// letter or digit.
pub fn label_key(text: &str) -> Result<(), NameError> {
    let problem = match text.split_once('/') {
        Some((_, name)) if name.contains('/') => Some("it has more than one '/'".to_owned()),
        Some((prefix, name)) => subdomain_problem("the prefix before '/'", prefix).or_else(|| {
            token_problem(
                "the name after '/'",
                name,
                MAX_LABEL_LEN,
                is_label_char,
                is_alnum,
            )
        }),
        None => token_problem("it", text, MAX_LABEL_LEN, is_label_char, is_alnum),
    };
    match problem {
        Some(problem) => Err(NameError::new(NameKind::LabelKey, text, problem)),
        None => Ok(()),
    }
}

/// A label value: empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending
/// with a letter or digit.
pub fn label_value(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Ok(());
    }
    match token_problem("it", text, MAX_LABEL_LEN, is_label_char, is_alnum) {
        Some(problem) => Err(NameError::new(NameKind::LabelValue, text, problem)),
        None => Ok(()),
    }
}

/// A port name (an IANA service name): at most 15 of a-z, 0-9 and '-', at least one letter,
/// no '-' at either end and no "--".
pub fn port_name(text: &str) -> Result<(), NameError> {
    let dash_or_lower_alnum = |c: char| is_lower_alnum(c) || c == '-';
    let problem = if text.is_empty() {
        Some("it is empty".to_owned())
    } else if let Some(c) = text.chars().find(|c| !dash_or_lower_alnum(*c)) {
        Some(format!("{c:?} is not allowed"))
    } else if text.len() > MAX_PORT_NAME_LEN {
        Some(format!("it is {} characters long", text.len()))
    } else if !text.contains(|c: char| c.is_ascii_lowercase()) {
        Some("it has no letter".to_owned())
    } else if text.starts_with('-') || text.ends_with('-') {
        Some("it starts or ends with '-'".to_owned())
    } else if text.contains("--") {
        Some("it has \"--\"".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(NameError::new(NameKind::PortName, text, problem)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(result: Result<(), NameError>) -> String {
        result.expect_err("refused").problem
    }

    #[test]
    fn dns_labels() {
        assert!(dns_label("kube-system").is_ok());
        assert!(dns_label("0").is_ok());
        assert_eq!(problem(dns_label("Default")), "'D' is not allowed");
        assert_eq!(
            problem(dns_label("-a")),
            "it must start and end with a letter or digit"
        );
        assert_eq!(
            problem(dns_label(&"a".repeat(64))),
            "it is 64 characters long"
        );
        assert_eq!(problem(dns_label("")), "it is empty");
        assert!(dns_label(&"a".repeat(63)).is_ok());
        assert_eq!(problem(dns_label("ä")), "'ä' is not allowed");
    }

    #[test]
    fn dns_subdomains() {
        assert!(dns_subdomain("allow.dns-egress").is_ok());
        assert!(dns_subdomain(&format!("{}.b", "a".repeat(70))).is_ok());
        assert!(problem(dns_subdomain("allow..dns")).contains("empty part"));
        assert_eq!(problem(dns_subdomain("allow_dns")), "'_' is not allowed");
        assert!(problem(dns_subdomain("a.-b")).contains("each dot-separated part"));
        assert!(dns_subdomain(&"a".repeat(254)).is_err());
    }

    #[test]
    fn label_keys() {
        assert!(label_key("kubernetes.io/metadata.name").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("App_1.x").is_ok());
        assert!(problem(label_key("/app")).contains("the prefix before '/' is empty"));
        assert_eq!(problem(label_key("a/b/c")), "it has more than one '/'");
        assert!(problem(label_key("app-")).contains("must start and end"));
        assert!(problem(label_key("x/")).contains("the name after '/' is empty"));
        assert!(problem(label_key("X/app")).contains("'X' is not allowed"));
        assert!(label_key(&"a".repeat(64)).is_err());
    }

    #[test]
    fn label_values() {
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_3").is_ok());
        assert_eq!(problem(label_value("a b")), "' ' is not allowed");
        assert!(label_value(&"a".repeat(64)).is_err());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn port_names() {
        assert!(port_name("serve-80-tcp").is_ok());
        assert_eq!(problem(port_name("80")), "it has no letter");
        assert_eq!(problem(port_name("http--x")), "it has \"--\"");
        assert!(port_name("serve-80-tcp-long").is_err());
        assert!(port_name("HTTP").is_err());
        assert!(port_name("-http").is_err());
    }

    #[test]
    fn messages_say_what_is_wrong_and_what_is_accepted() {
        assert_eq!(
            dns_label("Prod").expect_err("refused").to_string(),
            "\"Prod\" is not a DNS-1123 label: 'P' is not allowed; at most 63 lowercase \
             letters, digits and '-', starting and ending with a letter or digit"
        );
        assert!(
            label_value("a b")
                .expect_err("refused")
                .to_string()
                .starts_with("\"a b\" is not a valid label value: ' ' is not allowed; empty, or")
        );
    }
}
