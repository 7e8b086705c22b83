//! Cilium's HTTP rules (`toPorts[].rules.http`) applied to requests: what the observer's L7
//! proxy asks of every request on a connection the tables send through it
//! ([`Entry::http`](crate::Entry::http)).
//!
//! The tables decide per connection; this module decides per request. [`HttpMatcher`] compiles
//! one rule set (the `http` list of one port rule) once, regular expressions included, and
//! [`HttpMatcher::check`] answers per request without allocating. [`check_grants`] applies the
//! rule sets an entry grants ([`Entry::l7`](crate::Entry::l7)), which is what the proxy does.
//! The reference reading of the same rules is
//! [`request_allowed`](crate::verdict::request_allowed), which the tests in `compile_tests.rs`
//! hold the matchers to.
//!
//! # Semantics (Cilium's `getHTTPRule` and its proxy's `network_policy.cc`)
//!
//! - `method`, `path` and `host` are regular expressions matched against the whole value (as
//!   if anchored with `^...$`) of `:method`, `:path` and `:authority`. `:path` is the request
//!   target as sent, query included: `/api/items` does not match `/api/items?x=1`, write
//!   `/api/items(\?.*)?`. `:authority` is the `Host` header (HTTP/1.1) or the authority
//!   (HTTP/2) as sent, with the port when the client sent one, which most clients do for a
//!   port other than 80/443: `my-api` does not match `my-api:8080`, write `my-api(:8080)?`.
//!   Matching is case-sensitive, as in Cilium (`(?i)` makes an expression case-insensitive).
//!   The expressions are RE2's syntax as the `regex` crate reads it (the two agree on
//!   everything but a few rarely used escapes and flags).
//! - `headers`: each entry is split as Cilium splits it, at its first space, the name losing a
//!   trailing `:`: `X-Debug` requires the header, `X-Debug: on` requires its value to be `on`.
//! - `headerMatches`: `name` with `value` requires that value, without one the header's
//!   presence. On a mismatch the request fails the rule, unless `mismatch: LOG`: then the rule
//!   still matches and the mismatch is reported ([`RuleMatch::log_mismatches`]) for the proxy
//!   to log or count.
//! - Header names compare without case. A header sent more than once is compared as Envoy
//!   compares it: its values joined with `,` in the order received (`X: a` and `X: b` read as
//!   `a,b`). Values compare exactly, byte for byte. A name may be one of the pseudo-headers
//!   `:method`, `:path` or `:authority`.
//! - The fields of one rule must all match (AND); a rule without fields matches every request;
//!   a request passes a rule set when one of its rules matches (OR). When some rule has a LOG
//!   header match, every rule is evaluated, as Cilium does, so that every mismatch of every
//!   matching rule is reported.
//!
//! # Limits
//!
//! - An expression whose compiled form exceeds [`REGEX_SIZE_LIMIT`] is refused when the policy
//!   is read. Envoy's own RE2 limit is smaller by default (a program size of 100), so a long
//!   expression flowscope accepts may still be refused by Cilium.
//! - Refused when the policy is read: `headerMatches` that rewrite the request (`mismatch:
//!   ADD`, `DELETE`, `REPLACE`: flowscope's proxy never changes requests), that take their
//!   value from a Kubernetes Secret (`secret`: flowscope reads no Secrets), and `headers` or
//!   `headerMatches` that no request can satisfy (`X-Key:value` without a space names a header
//!   `X-Key:value` in Cilium; a value with surrounding spaces; `:scheme`).
//! - A `headers` entry naming `Host` reads the `Host` header as the request carries it, where
//!   Envoy has turned it into `:authority`; write `host` (or `:authority`) to match it.

use regex::{Regex, RegexBuilder};

use crate::cilium::{HttpRule, MismatchAction};
use crate::compile::L7Grant;

/// The largest compiled form (the regex crate's measure, in bytes) one `method`, `path` or
/// `host` expression may take: 1 MiB. Expressions come from policies anyone allowed to write
/// one in a namespace can apply, and each stays compiled for the life of its policy. 1 MiB
/// holds an alternation of 500 literal 30-character paths (a test checks it), far more than
/// Cilium's own proxy accepts (Envoy's RE2 program size limit is 100 by default), and bounds a
/// hostile expression.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The pseudo-headers a `headers` entry or a `headerMatches` name may name.
pub const PSEUDO_HEADERS: [&str; 3] = [":method", ":path", ":authority"];

/// Compiles a `method`, `path` or `host` expression as Cilium's proxy applies it: matching the
/// whole value, within [`REGEX_SIZE_LIMIT`]. The one place such expressions are compiled,
/// when a policy is read and when a matcher is built, so both refuse the same ones.
pub fn http_regex(pattern: &str) -> Result<Regex, regex::Error> {
    // The expression must stand on its own: `a)|(b` would otherwise close the anchoring group
    // early and match every value ending in `b`. Parsing it alone with no room to compile
    // checks that cheaply: a syntax error is its own, while running out of room (or, for a
    // plain literal, compiling nothing at all) means it parsed.
    if let Err(error @ regex::Error::Syntax(_)) = RegexBuilder::new(pattern).size_limit(0).build() {
        return Err(error);
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Splits a `headers` entry as Cilium does: at the first space, the name losing any trailing
/// `:`. `X-Debug: on` -> (`X-Debug`, `Some("on")`); `X-Debug` -> (`X-Debug`, `None`): only
/// presence. An empty value also asks for presence only.
pub fn header_entry(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once(' ') {
        Some((name, value)) => (
            name.trim_end_matches(':'),
            Some(value).filter(|v| !v.is_empty()),
        ),
        None => (entry, None),
    }
}

/// Why `name` can never name a header of a request, if it cannot: empty, not an HTTP token
/// (RFC 9110), or a pseudo-header other than [`PSEUDO_HEADERS`].
pub(crate) fn header_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("has no header name".to_owned());
    }
    if name.starts_with(':') {
        return (!PSEUDO_HEADERS.iter().any(|p| p.eq_ignore_ascii_case(name))).then(|| {
            format!(
                "{name:?} is not a pseudo-header flowscope can match; accepted: {}",
                PSEUDO_HEADERS.join(", ")
            )
        });
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    (!name.chars().all(token)).then(|| format!("{name:?} is not a header name"))
}

/// Why no request can carry `value`, if none can: header values arrive without surrounding
/// whitespace and without control characters.
pub(crate) fn header_value_problem(value: &str) -> Option<&'static str> {
    if value.trim() != value {
        Some("begins or ends with whitespace, which no header value does once received")
    } else if value.chars().any(|c| c.is_control() && c != '\t') {
        Some("holds a control character, which no header value can")
    } else {
        None
    }
}

/// A request as the L7 proxy sees it. Implemented over whatever the proxy parses requests
/// into; for hyper's `http::Request<B>`, a newtype (the orphan rule forbids implementing it
/// for `http::Request` directly) whose `header_values` is
/// `self.0.headers().get_all(name).iter().map(|v| v.as_bytes())`, which allocates nothing.
pub trait HttpRequestFields {
    /// `:method`, e.g. `GET`.
    fn method(&self) -> &str;
    /// `:path`: the request target as sent, query included, e.g. `/api/items?x=1`. For a
    /// request whose target is a full URL (to a forward proxy), its path and query.
    fn path(&self) -> &str;
    /// `:authority`: the HTTP/2 authority, or the `Host` header, as sent (port included when
    /// the client wrote one). `None` when the request has neither (or it is not UTF-8): a rule
    /// with `host` then does not match.
    fn host(&self) -> Option<&str>;
    /// Every value of header `name`, in the order received; empty when it is absent. `name`
    /// is always a lowercase HTTP token (never a pseudo-header): lookups may skip case
    /// folding, though implementations should compare names without case.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

/// A request held in plain fields, for tests and for asking what a policy would do with a
/// request that was never sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedRequest {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority` or `Host`.
    pub host: Option<String>,
    /// Headers other than `Host`, in order; a name may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OwnedRequest {
    /// A request without host or headers.
    pub fn new(method: &str, path: &str) -> Self {
        OwnedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            ..OwnedRequest::default()
        }
    }

    /// With `:authority` / `Host` set.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// With one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }
}

impl HttpRequestFields for OwnedRequest {
    fn method(&self) -> &str {
        &self.method
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Whether `req` has header `name` (any case; a pseudo-header reads the request's method,
/// path or authority) and, with `expected`, whether its values joined by `,` equal it.
pub(crate) fn header_holds(
    req: &impl HttpRequestFields,
    name: &str,
    expected: Option<&str>,
) -> bool {
    HeaderCheck::new(name, expected).holds(req)
}

/// Whether `values` is not empty and, with `expected`, whether the values joined by `,` equal
/// it, compared piece by piece so nothing is allocated.
fn joined_equals<'v>(mut values: impl Iterator<Item = &'v [u8]>, expected: Option<&[u8]>) -> bool {
    let Some(first) = values.next() else {
        return false;
    };
    let Some(expected) = expected else {
        return true;
    };
    let Some(mut rest) = expected.strip_prefix(first) else {
        return false;
    };
    for value in values {
        match rest.strip_prefix(b",").and_then(|r| r.strip_prefix(value)) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Method,
    Path,
    Authority,
    Header,
}

impl Target {
    fn of(name: &str) -> Target {
        match name.to_ascii_lowercase().as_str() {
            ":method" => Target::Method,
            ":path" => Target::Path,
            ":authority" => Target::Authority,
            _ => Target::Header,
        }
    }
}

/// Why a rule set cannot be compiled: an expression that is not one, or too large. Rules read
/// by this crate never fail; rules built by hand may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("http[{rule}].{field}: {message}")]
pub struct HttpRuleError {
    /// The rule's index in its rule set.
    pub rule: usize,
    /// `method`, `path` or `host`.
    pub field: &'static str,
    /// The regex crate's explanation.
    pub message: String,
}

/// A rule set compiled for requests: see the module documentation for what matches.
///
/// Cost of [`HttpMatcher::check`]: rules are tried in order until one matches (all of them
/// when some rule has a LOG header match). Per rule, one anchored regex match for each of
/// `method`, `path`, `host` it has, linear in the value's length (the regex crate never
/// backtracks; its match state is pooled per thread), and one header lookup per header
/// condition, with no copy of the values. Nothing is allocated unless a LOG header match
/// mismatches. Share one matcher per rule set between connections (it is `Send + Sync`).
#[derive(Debug, Clone)]
pub struct HttpMatcher {
    rules: Vec<CompiledRule>,
    /// Some rule has a LOG header match: every rule is evaluated.
    logs: bool,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    method: Option<Regex>,
    path: Option<Regex>,
    host: Option<Regex>,
    /// `headers` and FAIL header matches: each must hold.
    required: Vec<HeaderCheck>,
    /// LOG header matches, with the name to report.
    logged: Vec<(HeaderCheck, Box<str>)>,
}

#[derive(Debug, Clone)]
struct HeaderCheck {
    target: Target,
    /// Lowercase, for [`Target::Header`].
    name: Box<str>,
    /// `None`: presence.
    value: Option<Box<[u8]>>,
}

impl HeaderCheck {
    fn new(name: &str, value: Option<&str>) -> Self {
        HeaderCheck {
            target: Target::of(name),
            name: name.to_ascii_lowercase().into(),
            value: value.filter(|v| !v.is_empty()).map(|v| v.as_bytes().into()),
        }
    }

    fn holds(&self, req: &impl HttpRequestFields) -> bool {
        let expected = self.value.as_deref();
        match self.target {
            Target::Method => joined_equals(std::iter::once(req.method().as_bytes()), expected),
            Target::Path => joined_equals(std::iter::once(req.path().as_bytes()), expected),
            Target::Authority => joined_equals(req.host().map(str::as_bytes).into_iter(), expected),
            Target::Header => joined_equals(req.header_values(&self.name), expected),
        }
    }
}

impl CompiledRule {
    /// Everything but the LOG header matches holds.
    fn matches(&self, req: &impl HttpRequestFields) -> bool {
        self.method
            .as_ref()
            .is_none_or(|r| r.is_match(req.method()))
            && self.path.as_ref().is_none_or(|r| r.is_match(req.path()))
            && self
                .host
                .as_ref()
                .is_none_or(|r| req.host().is_some_and(|h| r.is_match(h)))
            && self.required.iter().all(|h| h.holds(req))
    }
}

/// The rule of a set that admitted a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch<'m> {
    /// The index of the first matching rule in its rule set.
    pub rule: usize,
    /// The names (as written in the policy) of the LOG header matches that did not hold, in
    /// every matching rule, each once; empty in the common case, and then not allocated.
    pub log_mismatches: Vec<&'m str>,
}

impl HttpMatcher {
    /// Compiles `rules` (one `rules.http` list) once.
    pub fn new(rules: &[HttpRule]) -> Result<Self, HttpRuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut logs = false;
        for (index, rule) in rules.iter().enumerate() {
            let regex = |field: &'static str, pattern: &Option<String>| {
                pattern
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .map(http_regex)
                    .transpose()
                    .map_err(|error| HttpRuleError {
                        rule: index,
                        field,
                        message: error.to_string(),
                    })
            };
            let mut required: Vec<HeaderCheck> = rule
                .headers
                .iter()
                .map(|entry| {
                    let (name, value) = header_entry(entry);
                    HeaderCheck::new(name, value)
                })
                .collect();
            let mut logged = Vec::new();
            for m in &rule.header_matches {
                let check = HeaderCheck::new(&m.name, m.value.as_deref());
                match m.mismatch {
                    MismatchAction::Fail => required.push(check),
                    MismatchAction::Log => logged.push((check, m.name.as_str().into())),
                }
            }
            logs |= !logged.is_empty();
            compiled.push(CompiledRule {
                method: regex("method", &rule.method)?,
                path: regex("path", &rule.path)?,
                host: regex("host", &rule.host)?,
                required,
                logged,
            });
        }
        Ok(HttpMatcher {
            rules: compiled,
            logs,
        })
    }

    /// The rule admitting `req`, or `None` when no rule does (the proxy then answers 403).
    pub fn check(&self, req: &impl HttpRequestFields) -> Option<RuleMatch<'_>> {
        let mut found: Option<RuleMatch<'_>> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches(req) {
                continue;
            }
            let found = found.get_or_insert(RuleMatch {
                rule: index,
                log_mismatches: Vec::new(),
            });
            if !self.logs {
                break;
            }
            for (check, name) in &rule.logged {
                if !check.holds(req) && !found.log_mismatches.contains(&&**name) {
                    found.log_mismatches.push(name);
                }
            }
        }
        found
    }

    /// Whether some rule has a LOG header match, so that [`HttpMatcher::check`] evaluates
    /// every rule.
    pub fn logs(&self) -> bool {
        self.logs
    }
}

/// The grant that admitted a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantMatch<'m> {
    /// The first grant whose rule set matched.
    pub grant: L7Grant,
    /// Its matching rule.
    pub rule: usize,
    /// The LOG header mismatches of every matching rule of every grant, each name once.
    pub log_mismatches: Vec<&'m str>,
}

/// Applies the rule sets `grants` name (an [`Entry::l7`](crate::Entry::l7)) to `req`, as the
/// proxy does: `matchers[i]` is
/// [`Compiled::http_rule_sets`](crate::Compiled::http_rule_sets)`[i]` compiled. `None` when
/// no rule of any grant matches, including when `grants` is empty or names a rule set
/// `matchers` lacks (fail closed). Stops at the first match, unless a granted matcher logs:
/// then every grant is evaluated, for its LOG mismatches.
pub fn check_grants<'m>(
    matchers: &'m [HttpMatcher],
    grants: &[L7Grant],
    req: &impl HttpRequestFields,
) -> Option<GrantMatch<'m>> {
    let matcher = |grant: &L7Grant| matchers.get(grant.rule_set as usize);
    let mut found: Option<GrantMatch<'m>> = None;
    for grant in grants {
        let Some(m) = matcher(grant).and_then(|m| m.check(req)) else {
            continue;
        };
        match &mut found {
            None => {
                found = Some(GrantMatch {
                    grant: *grant,
                    rule: m.rule,
                    log_mismatches: m.log_mismatches,
                });
                if !grants.iter().filter_map(matcher).any(HttpMatcher::logs) {
                    break;
                }
            }
            Some(found) => {
                for name in m.log_mismatches {
                    if !found.log_mismatches.contains(&name) {
                        found.log_mismatches.push(name);
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::HeaderMatch;

    fn rule(method: Option<&str>, path: Option<&str>, host: Option<&str>) -> HttpRule {
        HttpRule {
            method: method.map(str::to_owned),
            path: path.map(str::to_owned),
            host: host.map(str::to_owned),
            ..HttpRule::default()
        }
    }

    fn matcher(rules: &[HttpRule]) -> HttpMatcher {
        HttpMatcher::new(rules).expect("valid rules")
    }

    fn allows(m: &HttpMatcher, req: &OwnedRequest) -> bool {
        m.check(req).is_some()
    }

    fn get(path: &str) -> OwnedRequest {
        OwnedRequest::new("GET", path)
    }

    #[test]
    fn expressions_match_whole_values() {
        let m = matcher(&[rule(Some("GET"), Some("/a"), None)]);
        assert!(allows(&m, &get("/a")));
        assert!(!allows(&m, &OwnedRequest::new("GETX", "/a")));
        assert!(!allows(&m, &OwnedRequest::new("XGET", "/a")));
        assert!(!allows(&m, &get("/a/b")));
        assert!(!allows(&m, &get("/b/a")));
        // The query is part of `:path`.
        assert!(!allows(&m, &get("/a?x=1")));
        let m = matcher(&[rule(None, Some(r"/api/items(\?.*)?"), None)]);
        assert!(allows(&m, &get("/api/items")));
        assert!(allows(&m, &get("/api/items?x=1")));
        assert!(!allows(&m, &get("/api/items/1")));
        let m = matcher(&[rule(None, Some("/api/.*"), None)]);
        assert!(allows(&m, &get("/api/")));
        assert!(allows(&m, &get("/api/v1/x?y=2")));
        assert!(!allows(&m, &get("/apix")));
    }

    #[test]
    fn alternations_stay_anchored() {
        let m = matcher(&[rule(Some("GET|HEAD"), None, None)]);
        assert!(allows(&m, &get("/")));
        assert!(allows(&m, &OwnedRequest::new("HEAD", "/")));
        assert!(!allows(&m, &OwnedRequest::new("GETS", "/")));
        assert!(!allows(&m, &OwnedRequest::new("XHEAD", "/")));
        assert!(!allows(&m, &OwnedRequest::new("POST", "/")));
        // Methods are case-sensitive, as in Cilium.
        assert!(!allows(&m, &OwnedRequest::new("get", "/")));
    }

    #[test]
    fn an_expression_cannot_escape_its_anchors() {
        // Alone, `/a)|(.*` does not parse; wrapped, it would match everything.
        assert!(matches!(
            http_regex("/a)|(.*"),
            Err(regex::Error::Syntax(_))
        ));
        assert!(http_regex("/a(").is_err());
        assert!(http_regex("GET").is_ok(), "a literal");
        assert!(http_regex(r"/api/v[0-9]+/\w+").is_ok());
        let big = format!("({})", vec![r"\w{50}"; 200].join("|"));
        assert!(matches!(
            http_regex(&big),
            Err(regex::Error::CompiledTooBig(REGEX_SIZE_LIMIT))
        ));
        let paths: Vec<String> = (0..1000)
            .map(|i| format!("/api/v1/resource-{i}/items"))
            .collect();
        assert!(http_regex(&paths[..500].join("|")).is_ok(), "500 paths fit");
        assert!(http_regex(&paths.join("|")).is_err(), "1,000 do not");
        let m = HttpMatcher::new(&[rule(None, Some("/a)|(.*"), None)]);
        assert_eq!(m.expect_err("refused").field, "path");
    }

    #[test]
    fn host_is_the_authority_as_sent() {
        let m = matcher(&[rule(None, None, Some(r"my-api"))]);
        assert!(allows(&m, &get("/").with_host("my-api")));
        // Clients send the port with the host for ports other than 80 and 443.
        assert!(!allows(&m, &get("/").with_host("my-api:8080")));
        assert!(!allows(&m, &get("/")), "no Host: a host rule cannot match");
        let m = matcher(&[rule(None, None, Some(r"my-api(\.default\.svc)?(:8080)?"))]);
        for host in ["my-api", "my-api:8080", "my-api.default.svc:8080"] {
            assert!(allows(&m, &get("/").with_host(host)), "{host}");
        }
        assert!(!allows(&m, &get("/").with_host("my-api:9090")));
    }

    #[test]
    fn headers_require_presence_or_a_value() {
        let headers = |list: &[&str]| HttpRule {
            headers: list.iter().map(|h| h.to_string()).collect(),
            ..HttpRule::default()
        };
        let m = matcher(&[headers(&["X-Debug"])]);
        assert!(allows(&m, &get("/").with_header("x-debug", "")));
        assert!(allows(&m, &get("/").with_header("X-DEBUG", "anything")));
        assert!(!allows(&m, &get("/").with_header("X-Debugger", "1")));
        let m = matcher(&[headers(&["X-Debug: on", "Accept"])]);
        assert!(allows(
            &m,
            &get("/")
                .with_header("x-debug", "on")
                .with_header("accept", "*/*")
        ));
        assert!(!allows(&m, &get("/").with_header("x-debug", "on")), "AND");
        assert!(!allows(
            &m,
            &get("/")
                .with_header("x-debug", "On")
                .with_header("accept", "*/*")
        ));
        // Pseudo-headers read the request line.
        let m = matcher(&[headers(&[":method: GET", ":authority"])]);
        assert!(allows(&m, &get("/").with_host("h")));
        assert!(!allows(&m, &get("/")));
        assert!(!allows(&m, &OwnedRequest::new("PUT", "/").with_host("h")));
    }

    #[test]
    fn header_entries_split_as_cilium_splits_them() {
        assert_eq!(header_entry("X-Debug"), ("X-Debug", None));
        assert_eq!(header_entry("X-Debug: on"), ("X-Debug", Some("on")));
        assert_eq!(header_entry("X-Debug on"), ("X-Debug", Some("on")));
        assert_eq!(header_entry("X-Debug: a b"), ("X-Debug", Some("a b")));
        assert_eq!(header_entry("X-Debug:  on"), ("X-Debug", Some(" on")));
        assert_eq!(header_entry("X-Debug: "), ("X-Debug", None));
        assert_eq!(header_entry("X-Debug:on"), ("X-Debug:on", None));
        assert_eq!(header_entry(":path /a"), (":path", Some("/a")));
        assert_eq!(header_name_problem("X-Debug"), None);
        assert_eq!(header_name_problem(":Authority"), None);
        assert!(header_name_problem("X-Debug:on").is_some());
        assert!(header_name_problem(":scheme").is_some());
        assert!(header_name_problem("").is_some());
        assert_eq!(header_value_problem("a b"), None);
        assert!(header_value_problem(" on").is_some());
        assert!(header_value_problem("a\nb").is_some());
    }

    #[test]
    fn repeated_headers_compare_joined_by_commas() {
        let m = matcher(&[HttpRule {
            headers: vec!["X-Tag: a,b".into()],
            ..HttpRule::default()
        }]);
        let two = get("/").with_header("x-tag", "a").with_header("X-Tag", "b");
        assert!(allows(&m, &two));
        assert!(allows(&m, &get("/").with_header("x-tag", "a,b")));
        assert!(!allows(&m, &get("/").with_header("x-tag", "a")));
        assert!(!allows(&m, &two.clone().with_header("x-tag", "c")));
        let m = matcher(&[HttpRule {
            headers: vec!["X-Tag: a".into()],
            ..HttpRule::default()
        }]);
        assert!(!allows(&m, &two), "one of two values is not the header");
        assert!(joined_equals([&b""[..], b""].into_iter(), Some(b",")));
        assert!(!joined_equals(std::iter::empty(), None));
    }

    fn header_match(name: &str, value: Option<&str>, mismatch: MismatchAction) -> HeaderMatch {
        HeaderMatch {
            name: name.into(),
            value: value.map(str::to_owned),
            mismatch,
        }
    }

    #[test]
    fn header_matches_fail_or_log() {
        let m = matcher(&[HttpRule {
            method: Some("GET".into()),
            header_matches: vec![
                header_match("X-Token", Some("secret"), MismatchAction::Fail),
                header_match("X-Trace", None, MismatchAction::Log),
                header_match("X-Tenant", Some("blue"), MismatchAction::Log),
            ],
            ..HttpRule::default()
        }]);
        assert!(m.logs());
        let ok = get("/")
            .with_header("x-token", "secret")
            .with_header("x-trace", "1")
            .with_header("x-tenant", "blue");
        assert_eq!(
            m.check(&ok),
            Some(RuleMatch {
                rule: 0,
                log_mismatches: vec![]
            })
        );
        assert_eq!(m.check(&get("/").with_header("x-token", "other")), None);
        assert_eq!(m.check(&get("/")), None);
        let logged = get("/")
            .with_header("X-Token", "secret")
            .with_header("x-tenant", "red");
        assert_eq!(
            m.check(&logged).map(|r| r.log_mismatches),
            Some(vec!["X-Trace", "X-Tenant"])
        );
        // A LOG mismatch of a rule that does not match otherwise is not reported.
        let post = OwnedRequest::new("POST", "/").with_header("x-token", "secret");
        assert_eq!(m.check(&post), None);
    }

    #[test]
    fn rules_are_ored_and_fields_anded() {
        let m = matcher(&[
            rule(Some("GET"), Some("/public/.*"), None),
            rule(Some("POST"), Some("/submit"), Some("api")),
        ]);
        assert_eq!(m.check(&get("/public/x")).map(|r| r.rule), Some(0));
        let post = OwnedRequest::new("POST", "/submit");
        assert_eq!(
            m.check(&post.clone().with_host("api")).map(|r| r.rule),
            Some(1)
        );
        assert_eq!(m.check(&post), None, "host missing");
        assert_eq!(m.check(&get("/submit").with_host("api")), None);
        assert_eq!(m.check(&OwnedRequest::new("POST", "/public/x")), None);
    }

    #[test]
    fn every_matching_rule_reports_its_log_mismatches() {
        let logging = |name: &str| HttpRule {
            header_matches: vec![header_match(name, None, MismatchAction::Log)],
            ..HttpRule::default()
        };
        let m = matcher(&[
            rule(Some("GET"), None, None),
            logging("X-A"),
            rule(Some("PUT"), None, None),
            logging("X-B"),
            logging("X-A"),
        ]);
        let found = m.check(&get("/")).expect("matches");
        assert_eq!(found.rule, 0);
        assert_eq!(found.log_mismatches, ["X-A", "X-B"]);
    }

    #[test]
    fn an_empty_rule_matches_everything() {
        let m = matcher(&[HttpRule::default()]);
        assert!(allows(&m, &OwnedRequest::new("DELETE", "/anything?at=all")));
        assert!(!m.logs());
        // No rules: nothing matches (`http: []` is read as one empty rule, never as none).
        assert!(!allows(&matcher(&[]), &get("/")));
        // An empty expression is no condition, as in Cilium.
        let m = matcher(&[rule(Some(""), Some(""), Some(""))]);
        assert!(allows(&m, &get("/x")));
    }

    #[test]
    fn grants_apply_every_named_rule_set() {
        let matchers = vec![
            matcher(&[rule(Some("GET"), None, None)]),
            matcher(&[rule(Some("POST"), None, None)]),
            matcher(&[HttpRule {
                header_matches: vec![header_match("X-Trace", None, MismatchAction::Log)],
                ..HttpRule::default()
            }]),
        ];
        let grant = |policy, rule_set| L7Grant { policy, rule_set };
        let post = OwnedRequest::new("POST", "/");
        let both = [grant(0, 0), grant(1, 1)];
        assert_eq!(
            check_grants(&matchers, &both, &post).map(|m| m.grant),
            Some(grant(1, 1))
        );
        assert_eq!(check_grants(&matchers, &both[..1], &post), None);
        assert_eq!(check_grants(&matchers, &[], &post), None);
        assert_eq!(check_grants(&matchers, &[grant(0, 7)], &post), None);
        let logged = check_grants(&matchers, &[grant(0, 1), grant(2, 2)], &post).expect("match");
        assert_eq!(logged.grant, grant(0, 1));
        assert_eq!(logged.log_mismatches, ["X-Trace"]);
    }
}
