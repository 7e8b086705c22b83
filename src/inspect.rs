//! One-shot views of a running observer or relay: `status`, `list nodes`,
//! `list namespaces`, in the shape `hubble status` / `hubble list` print them.

use flowscope_model::{api::NodeInfo, flow::NodeState};
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
    let s = get_json(server, "/api/v1/status")?;
    if json {
        println!("{s}");
        return Ok(());
    }
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!("Healthcheck (via {server}): Ok");
    println!(
        "Current/Max Flows: {}",
        fill(n("num_flows"), n("max_flows"))
    );
    println!("Flows/s: {:.2}", s["flows_rate"].as_f64().unwrap_or(0.0));
    println!("Uptime: {}", age(n("uptime_ns")));
    let lost = n("ring_lost_events") + s["datapath"]["events_lost"].as_u64().unwrap_or(0);
    if lost > 0 {
        println!("Events lost: {}", thousands(lost));
    }
    // Hubble's ServerStatus fields when the server aggregates nodes (a relay); an observer is
    // one node, connected since it answered.
    let connected = s["num_connected_nodes"].as_u64().unwrap_or(1);
    let unavailable = s["num_unavailable_nodes"].as_u64().unwrap_or(0);
    println!("Connected Nodes: {connected}/{}", connected + unavailable);
    if let Some(nodes) = s["unavailable_nodes"].as_array().filter(|n| !n.is_empty()) {
        let names: Vec<&str> = nodes.iter().filter_map(Value::as_str).collect();
        println!("Unavailable Nodes: {}", names.join(", "));
    }
    if let Some(line) = kubernetes_line(&s["kubernetes"]) {
        println!("{line}");
    }
    Ok(())
}

/// The state of an observer's Kubernetes source, when it has one.
fn kubernetes_line(k: &Value) -> Option<String> {
    let server = k["server"].as_str()?;
    let n = |key: &str| k[key].as_u64().unwrap_or(0);
    let counts = format!(
        "{} pods, {} namespaces, {} services, {} nodes, {} policies",
        n("pods"),
        n("namespaces"),
        n("services"),
        n("nodes"),
        n("policies")
    );
    Some(if k["connected"] != true {
        format!(
            "Kubernetes: {server} unreachable ({}); enforcing the last known state: {counts}",
            k["last_error"].as_str().unwrap_or("no answer")
        )
    } else if k["synced"] != true {
        format!("Kubernetes: {server} connected, still listing: {counts}")
    } else {
        format!("Kubernetes: {server} connected and synced: {counts}")
    })
}

/// `flowscope list nodes`: the nodes behind the server, like `hubble list nodes`: an observer
/// is one, a relay lists each of its observers with its state.
pub fn nodes(server: &str, json: bool) -> anyhow::Result<()> {
    let body = get_json(server, "/api/v1/nodes")?;
    if json {
        for node in body.as_array().into_iter().flatten() {
            println!("{node}");
        }
        return Ok(());
    }
    let nodes: Vec<NodeInfo> = serde_json::from_value(body)
        .map_err(|e| anyhow::anyhow!("the nodes {server} answered: {e}"))?;
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
    let endpoints = get_json(server, "/api/v1/endpoints")?;
    let mut names: Vec<&str> = endpoints
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e: &Value| e["namespace"].as_str())
        .collect();
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
