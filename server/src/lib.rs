//! `flowscope-server`: what the observer's and the relay's servers share, so the relay needs
//! neither the observer nor the eBPF toolchain to build.
//!
//! - [`ws`]: the flow-stream protocol over WebSocket (the request, refusals, closing).
//! - [`grpc`]: Hubble's gRPC API beside it: requests, responses and refusals as the WebSocket's.
//! - [`listen`]: the API listener, plain (loopback) or TLS, HTTP/1.1 and HTTP/2 on one port.
//! - [`graph`]: the service map's query (`GET /api/v1/graph`).
//! - [`ui`]: the web UI's files, embedded at build time.
//! - [`metrics`]: the `/metrics` listener, its formats, and the metric name prefix.

mod etag;
pub mod graph;
pub mod grpc;
pub mod listen;
pub mod metrics;
pub mod ui;
pub mod ws;
