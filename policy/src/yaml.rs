//! Manifests as trees that remember where every value is, and the readers that walk them:
//! Kubernetes' conventions, shared with the lab file, so they live in `flowscope_meta::yaml`.

pub(crate) use flowscope_meta::yaml::*;

/// Asserts that `errors` are as many as `expected` and each starts with its counterpart, in
/// order (the messages' tails, such as lists of accepted values, are not pinned).
#[cfg(test)]
pub(crate) fn assert_errors(errors: &[String], expected: &[&str]) {
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, expected) in errors.iter().zip(expected) {
        assert!(
            error.starts_with(expected),
            "{error}\n  expected {expected}"
        );
    }
}
