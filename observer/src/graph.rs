//! `GET /api/v1/graph`: the service map of the flows the store holds, so the UI's first paint
//! shows the map at once instead of waiting for flows to stream in.
//!
//! The graph is built on request from the store's retained history with the model's
//! [`ServiceGraph`] (the same aggregation the UI runs on the stream), not kept per flow: the
//! pipeline pays nothing for it, and a request's filters apply to history exactly as the flows
//! WebSocket applies them. Its query parameters: [`flowscope_server::graph`].

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use flowscope_model::{
    Timestamp,
    graph::{GraphSnapshot, ServiceGraph},
};
use flowscope_server::graph::GraphQuery;

use crate::{api::AppState, store::READ_BATCH};

pub async fn graph(State(st): State<Arc<AppState>>, Query(query): Query<GraphQuery>) -> Response {
    let request = match query.parse() {
        Ok(r) => r,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    let filters = match request.flows.compile() {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("request: {e}")).into_response();
        }
    };
    // Decoding up to 65,535 retained flows takes tens of milliseconds: off the async workers.
    let built = tokio::task::spawn_blocking(move || {
        let mut graph = ServiceGraph::new(request.config);
        let since = request.flows.since.map(Timestamp::as_unix_nanos);
        let until = request.flows.until.map(Timestamp::as_unix_nanos);
        let store = &st.store;
        let start = match since {
            Some(s) => store.since_pos(s),
            None => store.first_pos(),
        };
        let mut pos = start.pos;
        let mut batch = Vec::with_capacity(READ_BATCH);
        while pos < start.end {
            batch.clear();
            let read = store.read(pos, start.end, READ_BATCH, &mut batch);
            pos = read.pos;
            for cached in &batch {
                let Some(flow) = cached.flow() else { continue };
                let time = flow.time.map(Timestamp::as_unix_nanos);
                if until.is_some_and(|u| time.is_some_and(|t| t > u))
                    || since.is_some_and(|s| time.is_some_and(|t| t < s))
                {
                    continue;
                }
                if filters.matches(flow) {
                    graph.ingest(flow);
                }
            }
            if read.copied == 0 {
                break;
            }
        }
        graph.snapshot(&request.view, Some(Timestamp::now()))
    })
    .await;
    match built {
        Ok(snapshot) => Json::<GraphSnapshot>(snapshot).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the graph: {e}"),
        )
            .into_response(),
    }
}
