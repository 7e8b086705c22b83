//! `GET /api/v1/graph`: the service map of the flows the store holds, so the UI's first paint
//! shows the map at once instead of waiting for flows to stream in.
//!
//! The graph is built on request from the store's retained history with the model's
//! [`ServiceGraph`] (the same aggregation the UI runs on the stream), not kept per flow: the
//! pipeline pays nothing for it, and a request's filters apply to history exactly as the flows
//! WebSocket applies them. Query parameters, all optional:
//!
//! - `namespace=a,b`: only edges with an end in these namespaces, and their peers.
//! - `labels=app.kubernetes.io/name,k8s-app,app`: the labels that name workloads, in order.
//! - `request={...}`: a `GetFlowsRequest` (JSON) whose `whitelist`, `blacklist`, `since` and
//!   `until` select the flows counted; `number`, `first` and `follow` are ignored.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use flowscope_model::{
    GetFlowsRequest, Timestamp,
    graph::{GraphConfig, GraphSnapshot, GraphView, ServiceGraph},
};
use serde::Deserialize;

use crate::{api::AppState, store::READ_BATCH};

/// Naming labels a request may list: the UI sends a handful; this only stops abuse.
const MAX_NAME_LABELS: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GraphQuery {
    namespace: Option<String>,
    labels: Option<String>,
    request: Option<String>,
}

/// What a graph request asks for, checked.
pub struct GraphRequest {
    pub view: GraphView,
    pub config: GraphConfig,
    pub flows: GetFlowsRequest,
}

fn comma_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl GraphQuery {
    /// Checks the query parameters; the error names the one at fault.
    pub fn parse(&self) -> Result<GraphRequest, String> {
        let mut config = GraphConfig::default();
        let labels = comma_list(self.labels.as_deref());
        if labels.len() > MAX_NAME_LABELS {
            return Err(format!(
                "labels: at most {MAX_NAME_LABELS} naming labels, got {}",
                labels.len()
            ));
        }
        if !labels.is_empty() {
            config.name_labels = labels;
        }
        let flows = match self.request.as_deref() {
            Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
                .map_err(|e| format!("request: not a GetFlowsRequest: {e}"))?,
            _ => GetFlowsRequest::default(),
        };
        Ok(GraphRequest {
            view: GraphView {
                namespaces: comma_list(self.namespace.as_deref()),
            },
            config,
            flows,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let q = GraphQuery {
            namespace: Some("default, kube-system,".into()),
            labels: Some("component,app".into()),
            request: Some(r#"{"whitelist":[{"verdict":["DROPPED"]}]}"#.into()),
        };
        let r = q.parse().unwrap();
        assert_eq!(r.view.namespaces, ["default", "kube-system"]);
        assert_eq!(r.config.name_labels, ["component", "app"]);
        assert_eq!(r.flows.whitelist.len(), 1);

        let r = GraphQuery::default().parse().unwrap();
        assert!(r.view.namespaces.is_empty());
        assert_eq!(r.config, GraphConfig::default());

        let bad = GraphQuery {
            request: Some(r#"{"whitelist":[{"verdikt":[]}]}"#.into()),
            ..Default::default()
        };
        let err = bad.parse().err().unwrap();
        assert!(err.contains("verdikt"), "{err}");
    }
}
