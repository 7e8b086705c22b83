//! The API contract: the bodies observer and relay answer besides flows, typed once for the
//! servers that write them and the clients (CLI, UI) that read them.

use serde::{Deserialize, Serialize};

use crate::flow::NodeState;

/// One node as Hubble's `GetNodes` returns it (`GET /api/v1/nodes`, `flowscope list nodes`);
/// a relay answers the same shape for each of its observers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeInfo {
    pub name: String,
    pub version: String,
    pub address: String,
    /// `NODE_CONNECTED`, `NODE_UNAVAILABLE`, ...
    pub state: NodeState,
    pub uptime_ns: u64,
    pub num_flows: u64,
    pub max_flows: u64,
    pub seen_flows: u64,
    pub flows_rate: f64,
    /// Why the node is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
