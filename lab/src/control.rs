//! `lab up` and `lab down`: from a lab file to namespaces on the machine and back, with the
//! state and endpoints files that tell `down`, `status` and the observer what exists, and the
//! pods' request logs that tell tests what reached the servers.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::{
    servers::DnsTable,
    spec::{LabSpec, Plan},
    topology::{self, LabState, PodNet},
};

/// The address that answers for `kubernetes.default.svc.cluster.local` (the lab's reserved
/// /24; nothing listens there).
const API_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// The directory of the pods' request logs, under the lab's state directory.
pub fn request_log_dir() -> PathBuf {
    Path::new(topology::STATE_DIR).join("requests")
}

/// The request log of one pod: every HTTP and gRPC request its servers received, one line
/// each, readable with [`crate::servers::read_request_log`]. `<state dir>/requests/<namespace>_<pod>.log`
/// (namespace and pod names hold no `_`). `lab up` creates it empty, the runner appends to
/// it, `lab down` removes it.
pub fn request_log_path(namespace: &str, pod: &str) -> PathBuf {
    request_log_dir().join(format!("{namespace}_{pod}.log"))
}

/// A fresh, empty request log for every pod; logs of an earlier lab go.
fn create_request_logs(pods: &[PodNet]) -> anyhow::Result<()> {
    let dir = request_log_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for pod in pods {
        let path = request_log_path(&pod.namespace, &pod.name);
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// A lab file read and planned, ready to bring up.
pub struct Lab {
    pub source: String,
    pub text: String,
    pub spec: LabSpec,
    pub plan: Plan,
    pub pods: Vec<PodNet>,
}

impl Lab {
    /// Reads and checks a lab file (or the built-in demo with `None`); nothing is created.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Lab> {
        let (source, text) = match file {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading lab file {}", path.display()))?,
            ),
            None => (
                "built-in demo".to_string(),
                crate::spec::DEMO_YAML.to_string(),
            ),
        };
        Self::from_text(source, text)
    }

    pub fn from_text(source: String, text: String) -> anyhow::Result<Lab> {
        let spec = LabSpec::parse(&text, &source).map_err(anyhow::Error::msg)?;
        let plan = spec.plan().map_err(anyhow::Error::msg)?;
        let pods: Vec<PodNet> = plan
            .pods
            .iter()
            .map(|p| PodNet::new(&p.namespace, &p.name, p.ip))
            .collect();
        let mut ifs: Vec<&str> = pods.iter().map(|p| p.host_if.as_str()).collect();
        ifs.sort();
        if ifs.windows(2).any(|w| w[0] == w[1]) {
            bail!("{source}: two pods hash to the same interface name; rename one");
        }
        Ok(Lab {
            source,
            text,
            spec,
            plan,
            pods,
        })
    }

    pub fn source_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    /// The endpoints file for the observer: every pod with its labels and address.
    pub fn endpoints_json(&self) -> serde_json::Value {
        let endpoints: Vec<_> = self
            .plan
            .pods
            .iter()
            .zip(&self.pods)
            .map(|(p, net)| {
                json!({
                    "namespace": p.namespace,
                    "pod_name": p.name,
                    "ips": [p.ip.to_string()],
                    "labels": p.labels,
                    "namespace_labels": p.namespace_labels,
                    "interface": net.host_if,
                    "ports": p.ports.iter().map(|port| json!({
                        "name": port.name.clone().unwrap_or_default(),
                        "port": port.port,
                        "protocol": port.protocol.as_str(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "endpoints": endpoints })
    }

    /// Names the lab's DNS servers answer: `<pod>.<namespace>[.svc[.cluster.local]]`.
    pub fn dns_table(&self) -> Arc<DnsTable> {
        let table = DnsTable::new();
        for p in &self.plan.pods {
            for suffix in ["", ".svc", ".svc.cluster.local"] {
                table.insert(&format!("{}.{}{suffix}", p.name, p.namespace), p.ip);
            }
        }
        table.insert("kubernetes.default.svc.cluster.local", API_SERVER);
        Arc::new(table)
    }

    /// Host-side interfaces of the pods, for the observer to attach to.
    pub fn interfaces(&self) -> Vec<String> {
        self.pods.iter().map(|p| p.host_if.clone()).collect()
    }

    /// Brings the lab up: refuses when another lab is up, reuses one from the same file, cleans
    /// leftovers of a crashed lab, creates every pod (rolling back on failure), and writes the
    /// state and endpoints files and an empty request log per pod. Returns false when an
    /// identical lab was already up (its request logs are kept).
    pub fn up(&self) -> anyhow::Result<bool> {
        if let Some(state) = LabState::load() {
            let alive = is_live(&state);
            if alive && state.source_hash == self.source_hash() {
                return Ok(false);
            }
            if alive {
                bail!(
                    "a lab from {} is already up; `flowscope lab down` first",
                    state.source
                );
            }
        }
        // No usable state: whatever carries the lab's prefixes is a leftover.
        topology::delete_everything(&[]);
        LabState::remove();
        topology::create_all(&self.pods)?;
        let state = LabState {
            source: self.source.clone(),
            source_hash: self.source_hash(),
            text: self.text.clone(),
            pods: self.pods.clone(),
            runner_pid: None,
        };
        let written = state
            .save()
            .and_then(|()| {
                topology::write_atomic(
                    &topology::endpoints_path(),
                    serde_json::to_string_pretty(&self.endpoints_json())?.as_bytes(),
                )
            })
            .and_then(|()| create_request_logs(&self.pods));
        if let Err(err) = written {
            topology::delete_everything(&self.pods);
            LabState::remove();
            let _ = std::fs::remove_dir_all(request_log_dir());
            return Err(err);
        }
        Ok(true)
    }
}

/// A lab is live while its namespaces exist and the process that runs it (if one was recorded)
/// is alive; otherwise what remains is the leftover of a crash or a kill -9.
pub fn is_live(state: &LabState) -> bool {
    let namespaces = !state.pods.is_empty()
        && state
            .pods
            .iter()
            .all(|p| std::path::Path::new("/run/netns").join(&p.netns).exists());
    // SAFETY: kill with signal 0 only checks that the process exists.
    let runner = |pid: u32| unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    namespaces && state.runner_pid.is_none_or(runner)
}

/// Records the process that runs the lab's servers and traffic.
pub fn set_runner(pid: u32) -> anyhow::Result<()> {
    let mut state = LabState::load().context("no lab state to update")?;
    state.runner_pid = Some(pid);
    state.save()
}

/// Removes the lab that is up (and any leftovers), stopping its runner. Idempotent.
pub fn down() -> anyhow::Result<()> {
    let state = LabState::load().unwrap_or_default();
    // Never signal ourselves: the demo records its own pid and removes its lab on the way out.
    if let Some(pid) = state.runner_pid.filter(|p| *p != std::process::id()) {
        stop_process(pid);
    }
    topology::delete_everything(&state.pods);
    LabState::remove();
    // The runner's log, the request logs and the demo's policy copies go too: nothing of the
    // lab stays behind.
    let _ = std::fs::remove_dir_all(topology::STATE_DIR);
    Ok(())
}

/// SIGTERM, then SIGKILL after two seconds. Only for a process we recorded ourselves.
fn stop_process(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: kill(2) on a pid; signal 0 only checks that it exists.
    let alive = |p| unsafe { libc::kill(p, 0) } == 0;
    if !alive(pid) {
        return;
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..20 {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// `lab status`: one line per pod.
pub fn status_lines(state: &LabState) -> Vec<String> {
    let spec = LabSpec::parse(&state.text, &state.source).ok();
    let mut lines = vec![format!(
        "{:<28} {:<15} {:<12} PORTS",
        "POD", "IP", "INTERFACE"
    )];
    for p in &state.pods {
        let ports = spec
            .as_ref()
            .and_then(|s| {
                s.pods
                    .iter()
                    .find(|q| q.namespace == p.namespace && q.name == p.name)
            })
            .map(|q| {
                q.ports
                    .iter()
                    .map(|port| {
                        let app = port.app.map(|a| format!(" {a}")).unwrap_or_default();
                        format!("{}/{}{app}", port.port, port.protocol)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let up = std::path::Path::new("/run/netns").join(&p.netns).exists();
        lines.push(format!(
            "{:<28} {:<15} {:<12} {}{}",
            p.id(),
            p.ip,
            p.host_if,
            ports,
            if up { "" } else { "  (namespace missing)" }
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_logs_live_under_the_state_directory() {
        assert_eq!(
            request_log_path("kube-system", "coredns"),
            Path::new("/run/flowscope/lab/requests/kube-system_coredns.log")
        );
        assert_eq!(
            request_log_path("a", "b").parent(),
            Some(&*request_log_dir())
        );
    }
}
