//! The view in the URL's query, so a link reproduces it: namespace, filters, columns,
//! selection and naming labels. `?ns=default&f=from:label=k8s:app=frontend&verdict=DROPPED
//! &http=5%2B&cols=time,source,verdict&sel=node:default/frontend&labels=app`.

use flowscope_model::flow::Verdict;

use crate::filters::{FilterEntry, Filters};
use crate::rows::{Column, Selection};

/// Everything a link carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewState {
    /// The namespace shown; `None` for all namespaces.
    pub namespace: Option<String>,
    /// What the server filters on.
    pub filters: Filters,
    /// Table columns, in order.
    pub columns: Vec<Column>,
    /// The map node or edge that narrows the table.
    pub selection: Option<Selection>,
    /// Labels naming workloads; empty for the default list.
    pub name_labels: Vec<String>,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            namespace: None,
            filters: Filters::default(),
            columns: Column::DEFAULT.to_vec(),
            selection: None,
            name_labels: Vec::new(),
        }
    }
}

impl ViewState {
    /// Reads a query string (with or without the leading `?`). Parts that do not parse are
    /// skipped and described in the second value, so a stale link still opens.
    pub fn from_query(query: &str) -> (ViewState, Vec<String>) {
        let mut state = ViewState::default();
        let mut problems = Vec::new();
        for pair in query.trim_start_matches('?').split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match decode(key).as_str() {
                "ns" if !value.is_empty() => state.namespace = Some(value),
                "f" => match FilterEntry::parse(&value) {
                    Ok(e) => state.filters.entries.push(e),
                    Err(e) => problems.push(e),
                },
                "verdict" => match Verdict::from_name(&value) {
                    Some(v) => state.filters.verdict = Some(v),
                    None => problems.push(format!("verdict '{value}' is unknown")),
                },
                "http" if !value.is_empty() => state.filters.http_status = Some(value),
                "cols" => {
                    let cols: Vec<Column> = value.split(',').filter_map(Column::from_key).collect();
                    if !cols.is_empty() {
                        state.columns = cols;
                    }
                }
                "sel" => state.selection = Selection::from_param(&value),
                "labels" => {
                    state.name_labels = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                _ => {}
            }
        }
        (state, problems)
    }

    /// The query string (with `?`, or empty), leaving out what is at its default.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(ns) = &self.namespace {
            parts.push(format!("ns={}", encode(ns)));
        }
        for e in &self.filters.entries {
            parts.push(format!("f={}", encode(&e.to_string())));
        }
        if let Some(v) = self.filters.verdict {
            parts.push(format!("verdict={}", v.as_str()));
        }
        if let Some(h) = &self.filters.http_status {
            parts.push(format!("http={}", encode(h)));
        }
        if self.columns != Column::DEFAULT {
            let cols: Vec<&str> = self.columns.iter().map(|c| c.key()).collect();
            parts.push(format!("cols={}", cols.join(",")));
        }
        if let Some(sel) = &self.selection {
            parts.push(format!("sel={}", encode(&sel.to_param())));
        }
        if !self.name_labels.is_empty() {
            parts.push(format!("labels={}", encode(&self.name_labels.join(","))));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Percent-encodes everything but unreserved characters and a few that read well in a query
/// value (`/`, `:`, `,`).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b':'
            | b',' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes `%XX` and `+` (a space, as forms send it); malformed escapes stay as they are.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_view_is_an_empty_query() {
        assert_eq!(ViewState::default().to_query(), "");
        assert_eq!(ViewState::from_query("").0, ViewState::default());
        assert_eq!(ViewState::from_query("?").0, ViewState::default());
    }

    #[test]
    fn a_full_view_round_trips() {
        let state = ViewState {
            namespace: Some("default".into()),
            filters: Filters {
                entries: vec![
                    FilterEntry::parse("from:label=k8s:app=frontend").unwrap(),
                    FilterEntry::parse("!to:ip=198.18.0.0/24").unwrap(),
                ],
                verdict: Some(Verdict::Dropped),
                http_status: Some("5+".into()),
            },
            columns: vec![Column::Time, Column::Verdict, Column::DropReason],
            selection: Some(Selection::Edge(
                "default/frontend->default/my-api:8080/TCP".into(),
            )),
            name_labels: vec!["app".into(), "component".into()],
        };
        let query = state.to_query();
        assert!(query.contains("verdict=DROPPED"), "{query}");
        assert!(query.contains("http=5%2B"), "{query}");
        assert!(
            query.contains("f=from:label%3Dk8s:app%3Dfrontend"),
            "{query}"
        );
        let (back, problems) = ViewState::from_query(&query);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back, state);
    }

    #[test]
    fn bad_parts_are_reported_and_skipped() {
        let (state, problems) =
            ViewState::from_query("?verdict=MAYBE&f=colour%3Dred&cols=nope&ns=kube-system&x=1");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(state.namespace.as_deref(), Some("kube-system"));
        assert_eq!(state.columns, Column::DEFAULT);
        assert!(state.filters.is_empty());
    }

    #[test]
    fn percent_coding() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd/%C3%A9");
        assert_eq!(decode("a%20b%26c%3Dd/%C3%A9"), "a b&c=d/é");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
