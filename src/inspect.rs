//! One-shot views of a running observer or relay: `status`, `list nodes`,
//! `list namespaces`, in the shape `hubble status` / `hubble list` print them.

use flowscope_model::{
    api::{Endpoint, KubernetesStatus, NodeInfo, ServerStatus},
    flow::NodeState,
};
use serde_json::Value;

use crate::client::get_json;

/// `1234567` -> `1,234,567`, as Hubble prints flow counts.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nanoseconds as `1h2m3s`, `4m5s`, `6s`.
fn age(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

fn fill(current: u64, max: u64) -> String {
    let percent = if max == 0 {
        0.0
    } else {
        current as f64 * 100.0 / max as f64
    };
    format!("{}/{} ({percent:.2}%)", thousands(current), thousands(max))
}

/// `flowscope status`: flows held, rate, uptime and nodes, like `hubble status`.
pub fn status(server: &str, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", get_json::<Value>(server, "/api/v1/status")?);
        return Ok(());
    }
    let s: ServerStatus = get_json(server, "/api/v1/status")?;
    println!("Healthcheck (via {server}): Ok");
    println!("Current/Max Flows: {}", fill(s.num_flows, s.max_flows));
    println!("Flows/s: {:.2}", s.flows_rate);
    println!("Uptime: {}", age(s.uptime_ns));
    let lost = s.ring_lost_events + s.datapath.as_ref().map_or(0, |d| d.events_lost);
    if lost > 0 {
        println!("Events lost: {}", thousands(lost));
    }
    // Hubble's ServerStatus fields: a relay's observers, or the observer itself.
    let (connected, unavailable) = (s.num_connected_nodes, s.num_unavailable_nodes);
    println!("Connected Nodes: {connected}/{}", connected + unavailable);
    if !s.unavailable_nodes.is_empty() {
        println!("Unavailable Nodes: {}", s.unavailable_nodes.join(", "));
    }
    if let Some(k) = &s.kubernetes {
        println!("{}", kubernetes_line(k));
    }
    Ok(())
}

/// The state of an observer's Kubernetes source.
fn kubernetes_line(k: &KubernetesStatus) -> String {
    let server = &k.api.server;
    let counts = format!(
        "{} pods, {} namespaces, {} services, {} nodes, {} policies",
        k.pods, k.namespaces, k.services, k.nodes, k.policies
    );
    if !k.api.connected {
        format!(
            "Kubernetes: {server} unreachable ({}); enforcing the last known state: {counts}",
            k.api.last_error.as_deref().unwrap_or("no answer")
        )
    } else if !k.api.synced {
        format!("Kubernetes: {server} connected, still listing: {counts}")
    } else {
        format!("Kubernetes: {server} connected and synced: {counts}")
    }
}

/// `flowscope list nodes`: the nodes behind the server, like `hubble list nodes`: an observer
/// is one, a relay lists each of its observers with its state.
pub fn nodes(server: &str, json: bool) -> anyhow::Result<()> {
    if json {
        let body: Value = get_json(server, "/api/v1/nodes")?;
        for node in body.as_array().into_iter().flatten() {
            println!("{node}");
        }
        return Ok(());
    }
    let nodes: Vec<NodeInfo> = get_json(server, "/api/v1/nodes")?;
    let mut rows = vec![[
        "NAME".to_string(),
        "STATUS".into(),
        "AGE".into(),
        "FLOWS/S".into(),
        "CURRENT/MAX-FLOWS".into(),
    ]];
    for node in &nodes {
        let connected = node.state == NodeState::Connected;
        let status = match node.state {
            NodeState::Connected => "Connected",
            NodeState::Unavailable => "Unavailable",
            NodeState::Gone => "Gone",
            NodeState::Error => "Error",
            _ => "Unknown",
        };
        let when = |text: String| if connected { text } else { "N/A".into() };
        rows.push([
            node.name.clone(),
            status.into(),
            when(age(node.uptime_ns)),
            when(format!("{:.2}", node.flows_rate)),
            when(fill(node.num_flows, node.max_flows)),
        ]);
    }
    print_table(&rows);
    Ok(())
}

/// `flowscope list namespaces`: the namespaces of the endpoints the server knows.
pub fn namespaces(server: &str, json: bool) -> anyhow::Result<()> {
    let endpoints: Vec<Endpoint> = get_json(server, "/api/v1/endpoints")?;
    let mut names: Vec<&str> = endpoints.iter().map(|e| e.namespace.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if json {
        for n in names {
            println!("{}", serde_json::json!({ "namespace": n }));
        }
    } else {
        println!("NAMESPACE");
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages_read_like_hubble() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(16_380), "16,380");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fill(16_380, 16_380), "16,380/16,380 (100.00%)");
        assert_eq!(fill(1, 3), "1/3 (33.33%)");
        assert_eq!(age(5_000_000_000), "5s");
        assert_eq!(age(125_000_000_000), "2m5s");
        assert_eq!(age(3_725_000_000_000), "1h2m5s");
    }
}
