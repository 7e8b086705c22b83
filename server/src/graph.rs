//! The query of `GET /api/v1/graph` (the service map), as observer and relay read it:
//!
//! - `namespace=a,b`: only edges with an end in these namespaces, and their peers.
//! - `labels=app.kubernetes.io/name,k8s-app,app`: the labels that name workloads, in order.
//! - `request={...}`: a `GetFlowsRequest` (JSON) whose `whitelist`, `blacklist`, `since` and
//!   `until` select the flows counted; `number`, `first` and `follow` are ignored.

use flowscope_model::{
    GetFlowsRequest,
    graph::{GraphConfig, GraphView},
};
use serde::Deserialize;

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
