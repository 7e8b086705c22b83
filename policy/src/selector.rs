//! Label selectors (`matchLabels` and `matchExpressions`).
//!
//! Every part of a policy that picks pods or namespaces does it with one of these, in both
//! Kubernetes' and Cilium's policies. The type, its key and value rules, its matching and its
//! reading from YAML with positions are Kubernetes' concepts that Hubble's label filters and
//! the lab share, so they live in [`flowscope_meta::selector`]. Cilium's keys may carry a
//! source (`k8s:app`, `reserved:host`); the key is kept as written and
//! [`verdict`](mod@crate::verdict) decides what each source can match.

pub use flowscope_meta::selector::{KeyRule, LabelSelector, Labels, Operator, Requirement};

/// The label sources Cilium knows; a key with another source is refused.
pub use flowscope_meta::cilium::SOURCES as CILIUM_SOURCES;
