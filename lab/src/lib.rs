//! The lab: a cluster on one machine. Pods are network namespaces joined to the host by veths,
//! with real servers on their declared ports, so flowscope sees real kernel traffic.
//!
//! - `spec`: the lab file (YAML), its validation, and the address plan.
//! - `topology`: namespaces, veths, addresses and routes; the lab's state file.
//! - `servers`: the servers a pod runs (TCP, UDP echo, HTTP, gRPC, DNS), the log of the
//!   requests they receive, and the client probes.
//! - `runner`: servers and continuous traffic while the lab is up.
//! - `control`: `up`, `down`, what the observer needs to know about the pods, and where each
//!   pod's request log is.
pub mod control;
pub mod runner;
pub mod servers;
pub mod spec;
pub mod topology;
