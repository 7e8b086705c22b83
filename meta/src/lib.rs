//! Kubernetes object conventions, written once for every flowscope crate that meets them.
//!
//! Policies (`flowscope-policy`), Hubble flow filters (`flowscope-model`) and the lab file
//! (`flowscope-lab`) all name objects, write labels and select by labels. Each used to carry
//! its own copy of those rules, and the copies had drifted apart (a label key prefix of 64
//! characters per part passed one and not another). Here they exist once:
//!
//! - [`names`]: DNS-1123 labels and subdomains, label keys and values, port names, each with
//!   a message that says what is wrong and what would be accepted;
//! - [`selector`]: [`LabelSelector`], built from `matchLabels`/`matchExpressions` or parsed
//!   from the string syntax (`app=x,tier in (web,api),!canary`), with one matching core;
//! - [`cilium`]: Cilium's source-prefixed labels (`k8s:app=x`, `reserved:world`) and the
//!   source rules selectors over them follow;
//! - `yaml` (feature `yaml`): manifests as trees that remember every value's line and column,
//!   the readers that walk them collecting every problem, and reading a [`LabelSelector`]
//!   from `matchLabels`/`matchExpressions` with positions.
//!
//! The crate sits at the bottom of the workspace and is wasm-safe: no I/O, no clock, no
//! threads, so the browser UI (through `flowscope-model`) compiles it too, without the `yaml`
//! feature.

pub mod cilium;
pub mod names;
pub mod selector;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use names::NameError;
pub use selector::{KeyRule, LabelSelector, Labels, Operator, Requirement, SelectorError};
