//! `flowscope connectivity test`: probes every ordered pair of distinct lab pods on every port
//! the destination declares, in parallel, and reports what happened on the wire next to what
//! the observer saw for each probe (its verdict, and the policies once they exist).

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use flowscope_lab::{
    servers::{ProbeResult, probe_tcp, probe_udp},
    spec::{Plan, Protocol},
    topology::{self, PodNet},
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long one probe waits for an answer: a denied TCP SYN or UDP datagram gets none.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Probes in flight per source pod; with 9 pods that is 144 at once.
const WORKERS_PER_POD: usize = 16;
/// After the last probe, how long to wait for the observer's last flows.
const FLOW_GRACE: Duration = Duration::from_millis(500);

/// One probe's outcome: a line of `-o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeLine {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: String,
    pub connected: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verdict: String,
    #[serde(default)]
    pub policies: Vec<String>,
}

struct Probe {
    from: usize,
    to: usize,
    port: u16,
    protocol: Protocol,
}

/// The 5-tuple the observer reports a probe's packets under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    tcp: bool,
}

/// What the observer saw for a probe: its verdict and the policies that decided it.
type Seen = (String, Vec<String>);

/// Runs all probes. `observer_ws` is the flows API of an observer attached to the lab.
pub async fn run(
    plan: &Plan,
    pods: &[PodNet],
    observer_ws: &str,
) -> anyhow::Result<Vec<ProbeLine>> {
    let mut probes = Vec::new();
    for (from, _) in plan.pods.iter().enumerate() {
        for (to, dst) in plan.pods.iter().enumerate() {
            if from == to {
                continue;
            }
            for port in &dst.ports {
                probes.push(Probe {
                    from,
                    to,
                    port: port.port,
                    protocol: port.protocol,
                });
            }
        }
    }
    // Follow flows from before the first probe, so none is missed.
    let (mut ws, _) = tokio_tungstenite::connect_async(observer_ws)
        .await
        .with_context(|| format!("connecting to the observer at {observer_ws}"))?;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"follow":true}"#.into(),
    ))
    .await?;
    let verdicts: Arc<Mutex<HashMap<Tuple, Seen>>> = Arc::default();
    let collector = {
        let verdicts = verdicts.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let tokio_tungstenite::tungstenite::Message::Text(t) = msg else {
                    continue;
                };
                if let Some((tuple, verdict, policies)) = flow_tuple(&t)
                    && let Ok(mut v) = verdicts.lock()
                {
                    // The strongest verdict on the path wins: a drop anywhere, else an audit
                    // (would have dropped), else forwarded. The policies of both ends (egress at
                    // the source, ingress at the destination) are listed.
                    let rank = |v: &str| match v {
                        "DROPPED" => 2,
                        "AUDIT" => 1,
                        _ => 0,
                    };
                    let e = v
                        .entry(tuple)
                        .or_insert_with(|| (verdict.clone(), Vec::new()));
                    if rank(&verdict) > rank(&e.0) {
                        e.0 = verdict;
                    }
                    for p in policies {
                        if !e.1.contains(&p) {
                            e.1.push(p);
                        }
                    }
                }
            }
        })
    };
    // Give the subscription a moment to be registered before traffic starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let addrs: Vec<Ipv4Addr> = plan.pods.iter().map(|p| p.ip).collect();
    let results = tokio::task::spawn_blocking({
        let pods = pods.to_vec();
        move || run_probes(&pods, &addrs, probes)
    })
    .await??;
    tokio::time::sleep(FLOW_GRACE).await;
    collector.abort();
    let verdicts = verdicts.lock().map(|v| v.clone()).unwrap_or_default();

    let mut lines: Vec<ProbeLine> = results
        .into_iter()
        .map(|(probe, result)| {
            let src = plan.pods[probe.from].ip;
            let dst = plan.pods[probe.to].ip;
            let tuple = Tuple {
                src,
                sport: result.source_port,
                dst,
                dport: probe.port,
                tcp: probe.protocol == Protocol::Tcp,
            };
            ProbeLine {
                from: format!(
                    "{}/{}",
                    plan.pods[probe.from].namespace, plan.pods[probe.from].name
                ),
                to: format!(
                    "{}/{}",
                    plan.pods[probe.to].namespace, plan.pods[probe.to].name
                ),
                port: probe.port,
                protocol: protocol_name(probe.protocol).to_string(),
                connected: result.connected,
                verdict: verdicts
                    .get(&tuple)
                    .map(|v| v.0.clone())
                    .unwrap_or_default(),
                policies: verdicts
                    .get(&tuple)
                    .map(|v| v.1.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    lines.sort_by(|a, b| {
        (&a.from, &a.to, a.port, &a.protocol).cmp(&(&b.from, &b.to, b.port, &b.protocol))
    });
    Ok(lines)
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// The request 5-tuple, verdict and deciding policies (`namespace/name`) of a flow line, for
/// flows of probes (pod to pod, not replies).
fn flow_tuple(line: &str) -> Option<(Tuple, String, Vec<String>)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let f = v.get("flow")?;
    if f.get("is_reply").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let src = f["IP"]["source"].as_str()?.parse().ok()?;
    let dst = f["IP"]["destination"].as_str()?.parse().ok()?;
    let (l4, tcp) = if f["l4"].get("TCP").is_some() {
        (&f["l4"]["TCP"], true)
    } else {
        (f["l4"].get("UDP")?, false)
    };
    let port = |k: &str| l4.get(k).and_then(Value::as_u64).unwrap_or(0) as u16;
    let tuple = Tuple {
        src,
        sport: port("source_port"),
        dst,
        dport: port("destination_port"),
        tcp,
    };
    let mut policies = Vec::new();
    for field in [
        "egress_allowed_by",
        "ingress_allowed_by",
        "egress_denied_by",
        "ingress_denied_by",
    ] {
        for p in f[field].as_array().into_iter().flatten() {
            let ns = p["namespace"].as_str().unwrap_or("");
            let name = p["name"].as_str().unwrap_or("");
            policies.push(if ns.is_empty() {
                name.to_string()
            } else {
                format!("{ns}/{name}")
            });
        }
    }
    Some((
        tuple,
        f["verdict"].as_str().unwrap_or("").to_string(),
        policies,
    ))
}

/// Runs the probes from threads inside each source pod's namespace, in parallel.
fn run_probes(
    pods: &[PodNet],
    addrs: &[Ipv4Addr],
    probes: Vec<Probe>,
) -> anyhow::Result<Vec<(Probe, ProbeResult)>> {
    let mut by_source: BTreeMap<usize, Vec<Probe>> = BTreeMap::new();
    for p in probes {
        by_source.entry(p.from).or_default().push(p);
    }
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (from, list) in by_source {
        let queue = Arc::new(Mutex::new(list));
        for _ in 0..WORKERS_PER_POD {
            let queue = queue.clone();
            let results = results.clone();
            let addrs = addrs.to_vec();
            handles.push(topology::spawn_in(&pods[from].netns, move || {
                while let Some(probe) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let dst = SocketAddr::new(addrs[probe.to].into(), probe.port);
                    let r = match probe.protocol {
                        Protocol::Tcp => probe_tcp(dst, PROBE_TIMEOUT),
                        Protocol::Udp => probe_udp(dst, PROBE_TIMEOUT),
                    };
                    if let Ok(mut res) = results.lock() {
                        res.push((probe, r));
                    }
                }
            })?);
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let out = std::mem::take(
        &mut *results
            .lock()
            .map_err(|_| anyhow::anyhow!("probe thread panicked"))?,
    );
    Ok(out)
}

/// Prints a reachability matrix per port/protocol: `.` reachable, `X` not, `-` self.
pub fn print_table(lines: &[ProbeLine]) {
    let mut pods: Vec<&str> = lines
        .iter()
        .flat_map(|l| [l.from.as_str(), l.to.as_str()])
        .collect();
    pods.sort();
    pods.dedup();
    let mut keys: Vec<(u16, &str)> = lines
        .iter()
        .map(|l| (l.port, l.protocol.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    let width = pods.iter().map(|p| p.len()).max().unwrap_or(4).max(8);
    for (port, proto) in keys {
        let cell: HashMap<(&str, &str), &ProbeLine> = lines
            .iter()
            .filter(|l| l.port == port && l.protocol == proto)
            .map(|l| ((l.from.as_str(), l.to.as_str()), l))
            .collect();
        print!("{:<width$}", format!("{proto}/{port}"));
        for p in &pods {
            print!(" {p:>width$}");
        }
        println!();
        for from in &pods {
            print!("{from:<width$}");
            for to in &pods {
                let c = if from == to {
                    "-"
                } else {
                    match cell.get(&(*from, *to)) {
                        Some(l) if l.connected => ".",
                        Some(_) => "X",
                        None => " ",
                    }
                };
                print!(" {c:>width$}");
            }
            println!();
        }
        println!();
    }
}

/// Compares results with an expectation file (JSON lines with at least from, to, port,
/// protocol, connected; `-o json` output works as is). Returns the mismatches.
pub fn compare(lines: &[ProbeLine], expect: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(expect).with_context(|| format!("reading {}", expect.display()))?;
    let mut expected = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.contains("\"summary\"") {
            continue;
        }
        let e: ProbeLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a probe line", expect.display(), n + 1))?;
        expected.insert(
            (e.from.clone(), e.to.clone(), e.port, e.protocol.clone()),
            e.connected,
        );
    }
    if expected.is_empty() {
        bail!("{}: no expectations found", expect.display());
    }
    let mut mismatches = Vec::new();
    for l in lines {
        let key = (l.from.clone(), l.to.clone(), l.port, l.protocol.clone());
        if let Some(want) = expected.remove(&key)
            && want != l.connected
        {
            mismatches.push(format!(
                "{} -> {} {}/{}: expected {}, got {} (verdict {})",
                l.from,
                l.to,
                l.protocol,
                l.port,
                if want { "connected" } else { "blocked" },
                if l.connected { "connected" } else { "blocked" },
                if l.verdict.is_empty() {
                    "unknown"
                } else {
                    &l.verdict
                },
            ));
        }
    }
    for (from, to, port, proto) in expected.into_keys() {
        mismatches.push(format!(
            "{from} -> {to} {proto}/{port}: expected, but no such probe"
        ));
    }
    mismatches.sort();
    Ok(mismatches)
}

/// The summary line after the probes.
pub fn summary(lines: &[ProbeLine], took: Instant) -> Value {
    let connected = lines.iter().filter(|l| l.connected).count();
    serde_json::json!({"summary": {
        "probes": lines.len(),
        "connected": connected,
        "blocked": lines.len() - connected,
        "dropped_by_datapath": lines.iter().filter(|l| l.verdict == "DROPPED").count(),
        "seconds": (took.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    }})
}
