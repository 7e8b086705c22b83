//! flowscope's web UI: a live service map coloured by verdict beside the flow table.
//!
//! Data path: the observer's `GET /api/v1/graph` seeds the map at once; the flows WebSocket
//! (`GET /api/v1/flows`, a `GetFlowsRequest` built from the filter bar) then streams
//! `hubble observe -o jsonpb` lines. Lines are only queued as they arrive; once per animation
//! frame ([`engine`]) they are parsed, counted into the model's
//! [`flowscope_model::graph::ServiceGraph`] (the same aggregation the API runs) and turned into
//! table rows, and the map is redrawn at most four times a second. Everything between the
//! socket and the screen is bounded: the queue, the rows, the graph and the layout.
//!
//! The view logic is plain Rust, unit-tested on the host: [`filters`] (the CLI's filter
//! semantics), [`url`] (the view in the link), [`rows`] (cells, bounded buffer, selection,
//! export) and [`layout`] (stable placement grouped by namespace, edge geometry).

pub mod filters;
pub mod layout;
pub mod rows;
pub mod url;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod mapdom;
#[cfg(target_arch = "wasm32")]
mod tabledom;

/// The wasm entry point: mounts the app on the page's body.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    leptos::mount::mount_to_body(app::App);
}
