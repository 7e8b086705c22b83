//! The one error type of the crate: a problem in a policy file, said the way a compiler would.
//!
//! It exists so that every refusal, whether the YAML is broken, a key is misspelt or a CIDR is
//! out of range, reaches the user as one line naming the file, the line and column, the field,
//! and what would be accepted: `allow-dns.yaml:12:9: spec.egress[0].ports[0].protocol: "ICMP"
//! is not TCP, UDP or SCTP`.

/// A problem found in one document of a policy file. The document it is in is not loaded; the
/// other documents of the file are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {}{message}", location(.line, .column), field_prefix(.field))]
pub struct PolicyError {
    /// The file as named to [`crate::parse_file`], or its path under the directory given to
    /// [`crate::load_dir`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_a_compiler_message() {
        let error = PolicyError {
            file: "allow-dns.yaml".into(),
            line: Some(12),
            column: Some(9),
            field: "spec.egress[0].ports[0].protocol".into(),
            message: "\"ICMP\" is not TCP, UDP or SCTP".into(),
        };
        assert_eq!(
            error.to_string(),
            "allow-dns.yaml:12:9: spec.egress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP"
        );
    }

    #[test]
    fn display_leaves_out_what_is_unknown() {
        let error = PolicyError {
            file: "p.yaml".into(),
            line: None,
            column: None,
            field: String::new(),
            message: "cannot be read".into(),
        };
        assert_eq!(error.to_string(), "p.yaml: cannot be read");
    }
}
