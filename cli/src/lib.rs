//! `flowscope-cli`: the client commands of the `flowscope` binary, kept out of `main.rs` so they
//! can be tested without a terminal or a running observer.
//!
//! - [`observe()`]: `flowscope observe`, Hubble's `hubble observe` over the observer's WebSocket
//!   API (`GET /api/v1/flows`): the same flags, filter semantics and output formats, plus
//!   `--aggregate-by` and replay of saved JSON lines with `--input-file`.

pub mod observe;

pub use observe::{ObserveArgs, observe};
