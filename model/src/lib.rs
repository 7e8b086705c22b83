//! `flowscope-model`: the one wire model of a network flow, shared by the observer, relay, CLI
//! and UI.
//!
//! Flows look exactly like Cilium Hubble's (`hubble observe -o jsonpb`), so Hubble tooling and
//! flowscope can read each other's output, and filters follow Hubble's `FlowFilter` semantics.
//! Nothing here touches the OS or the network, so the crate builds for `wasm32-unknown-unknown`.
//!
//! - [`api`]: the other bodies the servers answer ([`api::NodeInfo`]).
//! - [`flow`]: [`Flow`] and the [`GetFlowsResponse`] envelope streamed to clients.
//! - [`filter`]: [`GetFlowsRequest`], [`FlowFilter`] and the compiled [`FilterSet`].
//! - [`graph`]: the service map, [`graph::ServiceGraph`], that flows aggregate into.
//! - [`time`]: the nanosecond [`Timestamp`] and [`parse_time`] for `--since`/`--until` values.

pub mod api;
pub mod filter;
pub mod flow;
pub mod graph;
mod pbjson;
pub mod time;

pub use filter::{FilterError, FilterSet, FlowFilter, GetFlowsRequest};
pub use flow::{Flow, GetFlowsResponse, GetFlowsResponseRef, ResponseKind};
pub use pbjson::{ProtoEnum, UnknownEnumValue};
pub use time::{Timestamp, parse_time};
