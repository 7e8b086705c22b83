//! Pods as network namespaces: creating them on real veths, removing them (also after a crash),
//! and the state file that says what a lab made.
//!
//! Addressing follows Calico's layout, which needs no bridge and no per-pod subnet: a pod has
//! its IP as a /32 on `eth0` and a default route via 169.254.1.1 on that link; the host side of
//! its veth answers ARP for it (proxy ARP), routes the pod's /32 to the veth, and forwards
//! between lab veths only (per-interface forwarding), so pods reach each other through the host.

use std::{
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Where lab state lives. Under /run: gone after a reboot, like the namespaces themselves.
pub const STATE_DIR: &str = "/run/flowscope/lab";
/// Prefix of every namespace and host-side interface the lab creates, so `down` can find
/// leftovers of a lab whose state was lost.
pub const NETNS_PREFIX: &str = "fsl-";
pub const IF_PREFIX: &str = "fsl";
/// The pods' gateway: never on the wire, answered by proxy ARP on the host side.
pub const GATEWAY: &str = "169.254.1.1";

/// One pod's network, as the lab made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNet {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    /// Network namespace name (`/run/netns/<netns>`).
    pub netns: String,
    /// Host side of the pod's veth.
    pub host_if: String,
}

impl PodNet {
    pub fn new(namespace: &str, name: &str, ip: Ipv4Addr) -> Self {
        PodNet {
            namespace: namespace.to_string(),
            name: name.to_string(),
            ip,
            netns: format!("{NETNS_PREFIX}{namespace}-{name}"),
            host_if: host_if_name(namespace, name),
        }
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `fsl` + 8 hex digits of a hash of `namespace/name`: interface names are limited to 15
/// bytes, pod names are not.
pub fn host_if_name(namespace: &str, name: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{IF_PREFIX}{h:08x}")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))
}

/// Creates one pod's namespace, veth, addresses and routes.
pub fn create_pod(p: &PodNet) -> anyhow::Result<()> {
    if Path::new("/run/netns").join(&p.netns).exists() {
        bail!(
            "network namespace {} already exists: is a lab already up? (flowscope lab down)",
            p.netns
        );
    }
    ip(&["netns", "add", &p.netns])?;
    let ns = p.netns.as_str();
    let pod_ip = format!("{}/32", p.ip);
    let steps: [&[&str]; 8] = [
        &[
            "link", "add", &p.host_if, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
        &["link", "set", &p.host_if, "up"],
        &["-n", ns, "link", "set", "lo", "up"],
        &["-n", ns, "addr", "add", &pod_ip, "dev", "eth0"],
        &["-n", ns, "link", "set", "eth0", "up"],
        &[
            "-n", ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link",
        ],
        &[
            "-n", ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0",
        ],
        &["route", "add", &pod_ip, "dev", &p.host_if, "scope", "link"],
    ];
    for step in steps {
        ip(step)?;
    }
    // A permanent neighbour entry for the gateway: a pod's first packet goes out at once
    // instead of waiting for proxy ARP.
    let mac = host_mac(&p.host_if)?;
    ip(&[
        "-n",
        ns,
        "neigh",
        "replace",
        GATEWAY,
        "dev",
        "eth0",
        "lladdr",
        &mac,
        "nud",
        "permanent",
    ])?;
    let conf = format!("/proc/sys/net/ipv4/conf/{}", p.host_if);
    sysctl(&format!("{conf}/proxy_arp"), "1")?;
    sysctl(&format!("{conf}/forwarding"), "1")?;
    Ok(())
}

fn host_mac(host_if: &str) -> anyhow::Result<String> {
    let path = format!("/sys/class/net/{host_if}/address");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_string())
}

/// Removes one pod's namespace (which takes its veth and routes with it).
pub fn delete_pod(p: &PodNet) {
    let _ = Command::new("ip").args(["netns", "del", &p.netns]).output();
    let _ = Command::new("ip")
        .args(["link", "del", &p.host_if])
        .output();
}

/// Creates every pod; on the first failure removes what was made and returns the error.
pub fn create_all(pods: &[PodNet]) -> anyhow::Result<()> {
    for (i, p) in pods.iter().enumerate() {
        if let Err(err) = create_pod(p) {
            for made in &pods[..=i] {
                delete_pod(made);
            }
            return Err(err.context(format!("creating pod {}", p.id())));
        }
    }
    Ok(())
}

/// Removes every lab namespace and interface on this machine: those listed and any leftover
/// with the lab's prefixes (after a crash, kill -9 or lost state). Idempotent.
pub fn delete_everything(pods: &[PodNet]) {
    for p in pods {
        delete_pod(p);
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(NETNS_PREFIX) {
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_lab_interface(&name) {
                let _ = Command::new("ip").args(["link", "del", &name]).output();
            }
        }
    }
}

/// `fsl` followed by exactly 8 hex digits: the lab's host-side veths.
pub fn is_lab_interface(name: &str) -> bool {
    name.len() == IF_PREFIX.len() + 8
        && name.starts_with(IF_PREFIX)
        && name[IF_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// Runs `f` on a new thread inside `netns`; sockets it opens live there.
pub fn spawn_in<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<T>> {
    let file = std::fs::File::open(Path::new("/run/netns").join(netns))
        .with_context(|| format!("opening network namespace {netns}"))?;
    let name = netns.to_string();
    Ok(std::thread::Builder::new()
        .name(format!("lab {name}"))
        .spawn(move || {
            enter(&file, &name);
            f()
        })?)
}

/// Moves the calling thread into the namespace behind `file`.
pub fn enter(file: &std::fs::File, name: &str) {
    // SAFETY: setns on a namespace fd we hold open; it changes only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        panic!(
            "entering network namespace {name}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// What `lab up` made, so `down`, `status` and a second `up` know.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// The lab file it came from (`built-in demo` for the demo), and a hash of its text so a
    /// second `up` of the same file reuses the lab instead of refusing.
    pub source: String,
    pub source_hash: u64,
    /// The lab file's text, so the runner and `status` do not depend on the file still being
    /// there (or unchanged).
    pub text: String,
    pub pods: Vec<PodNet>,
    /// The process serving the pods' ports and running the traffic, if any.
    pub runner_pid: Option<u32>,
}

impl LabState {
    pub fn load() -> Option<LabState> {
        let text = std::fs::read_to_string(state_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        write_atomic(
            &state_path(),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }

    pub fn remove() {
        let _ = std::fs::remove_file(state_path());
        let _ = std::fs::remove_file(endpoints_path());
    }
}

/// Writes through a temporary file and a rename, so readers (the observer watching the
/// endpoints file) never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The state file of the lab that is up.
pub fn state_path() -> PathBuf {
    Path::new(STATE_DIR).join("state.json")
}

/// The endpoints file the observer reads (`flowscope observer --endpoints`).
pub fn endpoints_path() -> PathBuf {
    Path::new(STATE_DIR).join("endpoints.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_and_are_recognised() {
        let n = host_if_name("kube-system", "a-very-long-pod-name-that-goes-on-and-on");
        assert!(n.len() <= 15, "{n}");
        assert!(is_lab_interface(&n));
        assert_ne!(host_if_name("x", "a"), host_if_name("y", "a"));
        assert!(!is_lab_interface("fsh1234"));
        assert!(!is_lab_interface("eth0"));
    }
}
