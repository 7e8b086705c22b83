//! Kubernetes NetworkPolicy and CiliumNetworkPolicy: parsing, validation, and their meaning.
//!
//! This crate is where flowscope learns which policies exist. It reads manifests the way the
//! API server would accept them ([`load_dir`], [`parse_file`]) into typed models
//! ([`networkpolicy::NetworkPolicy`], [`cilium::CiliumNetworkPolicy`]) gathered in a
//! [`PolicySet`]; a document the cluster would refuse becomes a [`PolicyError`] naming its file,
//! line, column and field, and never costs the other documents their place.
//!
//! Reading goes `load` (files and documents) -> `yaml` (a tree that remembers lines) ->
//! `networkpolicy` / `cilium` (typed models, checked with `names` and `selector`). What a set
//! of policies means for a connection is [`verdict()`], a pure function over the set, the pods
//! and namespaces of a [`World`], and the [`Connection`]; [`compile()`] turns the same meaning
//! into per-endpoint lookup tables for the eBPF datapath. Cilium's HTTP rules are applied per
//! request by the observer's L7 proxy with [`l7`]'s [`HttpMatcher`], over the rule sets each
//! table entry grants; [`request_allowed`] is the reference it is held to.

pub mod cilium;
pub mod compile;
mod error;
pub mod l7;
mod load;
mod meta;
mod names;
pub mod networkpolicy;
mod ports;
pub mod selector;
pub mod verdict;
mod yaml;

pub use compile::{
    CompileError, Compiled, Decision, DirectionTable, EndpointIdentity, EndpointTables, Entry,
    L7Grant, compile, compile_for, lookup, unmatched_allowed,
};
pub use error::PolicyError;
pub use l7::{
    GrantMatch, HttpMatcher, HttpRequestFields, HttpRuleError, OwnedRequest, RuleMatch,
    check_grants,
};
pub use load::{
    MANIFEST_EXTENSIONS, ParseCache, ParsedFile, Policy, PolicyBody, PolicyId, PolicyKind,
    PolicySet, load_dir, load_dir_cached, parse_file, parse_file_in,
};
pub use meta::DEFAULT_NAMESPACE;
pub use ports::{PortRef, Protocol};
pub use verdict::{
    Connection, Peer, Selections, Verdict, World, request_allowed, selections, verdict,
};
