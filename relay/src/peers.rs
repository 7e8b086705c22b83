//! The observers a relay serves from, and whether each answers.
//!
//! Peers come from three places, merged: `--peer` addresses, a peers file (one address per
//! line, re-read when it changes), and a peer service: a DNS name that resolves to every
//! observer (a Kubernetes headless Service), re-resolved every few seconds. This plays the role
//! of Hubble's peer service: new observers are picked up, removed ones are dropped.
//!
//! Each peer has a poller that reads the observer's `/api/v1/status` every
//! [`POLL_INTERVAL`]: that is how the relay knows the node's name, its flow counts for
//! `status`/`list nodes`, and whether it is connected. A peer that does not answer is
//! unavailable and retried with exponential backoff ([`RETRY_MIN`] to [`RETRY_MAX`]); a flow
//! stream that fails reports it at once ([`Pool::report_offline`]), as Hubble's `ReportOffline`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use flowscope_model::api::{NodeInfo, ServerStatus};
use flowscope_model::flow::NodeState;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::http;

/// How often a connected peer's status is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// First retry of a peer that did not answer; doubled up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a status request may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the peers file and the peer service are looked at again.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);
/// Peers one relay follows at most: a bound on tasks and connections whatever the inputs say.
pub const MAX_PEERS: usize = 4096;

/// One observer's address, as `--peer` and the peers file take it: `[NAME=]HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerSpec {
    /// A name to show until the observer tells its own.
    pub name: Option<String>,
    /// `HOST:PORT` as dialed.
    pub address: String,
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (name, address) = match s.split_once('=') {
            Some((n, a)) => (Some(n.trim()), a.trim()),
            None => (None, s),
        };
        if name.is_some_and(str::is_empty) {
            return Err(format!("{s:?}: the name before '=' is empty"));
        }
        check_host_port(address).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(PeerSpec {
            name: name.map(str::to_string),
            address: address.to_string(),
        })
    }
}

/// `HOST:PORT`, `[V6]:PORT`: a host and a port 1-65535.
pub fn check_host_port(address: &str) -> Result<(), String> {
    if let Some((scheme, rest)) = address.split_once("://") {
        return Err(format!(
            "give HOST:PORT without {scheme}:// (e.g. {})",
            rest.trim_end_matches('/')
        ));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected HOST:PORT (e.g. 10.0.0.7:4244 or node-1:4244)".into());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "IPv6 addresses need brackets: [{host}]:{port} (as in a URL)"
        ));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{host:?} is not a host name or address"));
    }
    Ok(())
}

/// A peers file: one `[NAME=]HOST:PORT` per line, `#` comments and blank lines ignored.
/// Returns the valid lines and an error for each other line, naming it.
pub fn parse_peers_file(path: &Path, text: &str) -> (Vec<PeerSpec>, Vec<String>) {
    let mut peers = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<PeerSpec>() {
            Ok(p) => peers.push(p),
            Err(e) => errors.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    (peers, errors)
}

/// Where the relay finds its peers.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub peers: Vec<PeerSpec>,
    pub peers_file: Option<PathBuf>,
    /// `HOST:PORT` of a DNS name with one address per observer.
    pub peer_service: Option<String>,
    /// The observers' pods from the Kubernetes API, each reached at its address and this
    /// port, and named by its node.
    pub peer_pods: Option<PeerPods>,
}

/// Observers found as pods through the Kubernetes API.
#[derive(Clone, Debug)]
pub struct PeerPods {
    pub pods: tokio::sync::watch::Receiver<Option<Vec<flowscope_kubernetes::peers::PeerPod>>>,
    pub port: u16,
    /// What the pods were asked by (`namespace` and selector), for messages.
    pub what: String,
}

#[derive(Debug)]
struct PeerState {
    status: Option<ServerStatus>,
    connected: bool,
    error: Option<String>,
}

/// TLS to the observers, one setting for each protocol the relay speaks to them (ALPN tells
/// the observer's listener which it is).
#[derive(Clone, Debug)]
pub struct ObserverTls {
    /// HTTP/1.1: the JSON API and the WebSocket.
    pub http1: flowscope_tls::Connector,
    /// HTTP/2: gRPC.
    pub h2: flowscope_tls::Connector,
}

/// One observer.
pub struct Peer {
    pub address: String,
    configured_name: Option<String>,
    state: Mutex<PeerState>,
    wake: Notify,
    poller: Mutex<Option<tokio::task::AbortHandle>>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// The node's name as the observer reports it; before it answered, the configured name or
    /// the address.
    pub fn name(&self) -> String {
        let st = self.state.lock().expect("peer state");
        match &st.status {
            Some(ServerStatus {
                node_name: Some(name),
                ..
            }) if !name.is_empty() => name.clone(),
            _ => self
                .configured_name
                .clone()
                .unwrap_or_else(|| self.address.clone()),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.state.lock().expect("peer state").connected
    }

    /// The state as Hubble Relay names its peer connections (gRPC's connectivity states):
    /// `READY` when the observer answers, `TRANSIENT_FAILURE` after it failed, `CONNECTING`
    /// before its first answer.
    pub fn connection_status(&self) -> &'static str {
        let st = self.state.lock().expect("peer state");
        if st.connected {
            "READY"
        } else if st.error.is_some() {
            "TRANSIENT_FAILURE"
        } else {
            "CONNECTING"
        }
    }

    /// Hubble's `Node` for this peer.
    /// The oldest and newest flow this observer held when it last answered, while connected.
    pub fn flow_times(
        &self,
    ) -> (
        Option<flowscope_model::Timestamp>,
        Option<flowscope_model::Timestamp>,
    ) {
        let st = self.state.lock().expect("peer state");
        match (&st.status, st.connected) {
            (Some(s), true) => (s.oldest_flow_time, s.newest_flow_time),
            _ => (None, None),
        }
    }

    pub fn node(&self) -> NodeInfo {
        let name = self.name();
        let st = self.state.lock().expect("peer state");
        let s = st.status.clone().unwrap_or_default();
        NodeInfo {
            name,
            version: s.version,
            address: self.address.clone(),
            state: if st.connected {
                NodeState::Connected
            } else {
                NodeState::Unavailable
            },
            uptime_ns: s.uptime_ns,
            num_flows: s.num_flows,
            max_flows: s.max_flows,
            seen_flows: s.seen_flows,
            flows_rate: s.flows_rate,
            error: if st.connected { None } else { st.error.clone() },
        }
    }
}

/// The peers, keyed by address.
pub struct Pool {
    peers: RwLock<BTreeMap<String, Arc<Peer>>>,
    /// Bumped when a peer is added, removed, connects or disconnects: flow streams in follow
    /// mode attach to newly connected peers when it changes.
    changed: watch::Sender<u64>,
    /// Problems with the peer inputs (peers file lines, the peer service), shown in status.
    discovery_errors: Mutex<Vec<String>>,
    /// True once the inputs were read once.
    discovered: std::sync::atomic::AtomicBool,
    /// TLS to the observers (`--observer-tls-*`), or plain text.
    pub tls: Option<ObserverTls>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(None)
    }
}

impl Pool {
    /// A pool whose observers are reached over `tls` (or plain text).
    pub fn new(tls: Option<ObserverTls>) -> Self {
        Pool {
            peers: RwLock::default(),
            changed: watch::channel(0).0,
            discovery_errors: Mutex::default(),
            discovered: Default::default(),
            tls,
        }
    }
}

impl Pool {
    /// The peers now, sorted by address.
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        self.peers
            .read()
            .expect("peers")
            .values()
            .cloned()
            .collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn discovery_errors(&self) -> Vec<String> {
        self.discovery_errors.lock().expect("errors").clone()
    }

    pub fn discovered(&self) -> bool {
        self.discovered.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A flow stream found `address` unreachable: mark it unavailable and poll it now.
    pub fn report_offline(&self, address: &str, error: &str) {
        let peer = self.peers.read().expect("peers").get(address).cloned();
        if let Some(peer) = peer {
            let was = {
                let mut st = peer.state.lock().expect("peer state");
                let was = st.connected;
                st.connected = false;
                st.error = Some(error.to_string());
                was
            };
            if was {
                warn!(peer = %peer.name(), address, "Peer unavailable: {error}");
                self.bump();
            }
            peer.wake.notify_one();
        }
    }

    /// Makes the peer set `wanted`: new peers get a poller, peers no longer wanted are dropped.
    fn set(self: &Arc<Self>, wanted: BTreeMap<String, Option<String>>) {
        let mut changed = false;
        {
            let mut peers = self.peers.write().expect("peers");
            let gone: Vec<String> = peers
                .keys()
                .filter(|a| !wanted.contains_key(*a))
                .cloned()
                .collect();
            for address in gone {
                if let Some(peer) = peers.remove(&address) {
                    info!(peer = %peer.name(), %address, "Peer removed");
                    if let Some(task) = peer.poller.lock().expect("poller").take() {
                        task.abort();
                    }
                    changed = true;
                }
            }
            for (address, name) in wanted {
                if peers.contains_key(&address) {
                    continue;
                }
                if peers.len() >= MAX_PEERS {
                    warn!(%address, "Peer ignored: the relay follows at most {MAX_PEERS} peers");
                    continue;
                }
                let peer = Arc::new(Peer {
                    address: address.clone(),
                    configured_name: name,
                    state: Mutex::new(PeerState {
                        status: None,
                        connected: false,
                        error: Some("not contacted yet".into()),
                    }),
                    wake: Notify::new(),
                    poller: Mutex::new(None),
                });
                let task = tokio::spawn(poll(self.clone(), peer.clone()));
                *peer.poller.lock().expect("poller") = Some(task.abort_handle());
                info!(%address, "Peer added");
                peers.insert(address, peer);
                changed = true;
            }
        }
        if changed {
            self.bump();
        }
    }

    /// Stops every poller (at shutdown).
    pub fn stop(&self) {
        for peer in self.peers() {
            if let Some(task) = peer.poller.lock().expect("poller").take() {
                task.abort();
            }
        }
    }
}

/// Reads one peer's status until it is removed.
async fn poll(pool: Arc<Pool>, peer: Arc<Peer>) {
    let mut retry = RETRY_MIN;
    loop {
        let result = http::get_json::<ServerStatus>(
            pool.tls.as_ref().map(|t| &t.http1),
            &peer.address,
            "/api/v1/status",
            STATUS_TIMEOUT,
        )
        .await;
        let (was, now) = {
            let mut st = peer.state.lock().expect("peer state");
            let was = st.connected;
            match result {
                Ok(status) => {
                    st.status = Some(status);
                    st.connected = true;
                    st.error = None;
                }
                Err(err) => {
                    st.connected = false;
                    st.error = Some(err);
                }
            }
            (was, st.connected)
        };
        if was != now {
            let name = peer.name();
            if now {
                info!(peer = %name, address = %peer.address, "Peer connected");
            } else {
                let err = peer.state.lock().expect("peer state").error.clone();
                warn!(peer = %name, address = %peer.address, "Peer unavailable: {}",
                    err.unwrap_or_default());
            }
            pool.bump();
        }
        let wait = if now {
            retry = RETRY_MIN;
            POLL_INTERVAL
        } else {
            let w = retry;
            retry = (retry * 2).min(RETRY_MAX);
            w
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = peer.wake.notified() => {}
        }
    }
}

/// Reads the peer inputs every [`DISCOVERY_INTERVAL`] and keeps the pool in line with them.
/// A peers file that cannot be read or has bad lines keeps the peers it gave before for the
/// lines it can no longer read, and its errors are reported; a peer service that does not
/// resolve keeps the addresses it resolved to last.
pub async fn discover(pool: Arc<Pool>, mut discovery: Discovery) {
    let mut file_peers: Vec<PeerSpec> = Vec::new();
    let mut file_seen: Option<(SystemTime, u64)> = None;
    let mut file_errors: Vec<String> = Vec::new();
    let mut service_peers: BTreeSet<String> = BTreeSet::new();
    let mut service_error: Option<String> = None;
    loop {
        if let Some(path) = &discovery.peers_file {
            let meta = std::fs::metadata(path)
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            match meta {
                Ok(seen) if file_seen != Some(seen) => {
                    file_seen = Some(seen);
                    match std::fs::read_to_string(path) {
                        Ok(text) => {
                            let (peers, errors) = parse_peers_file(path, &text);
                            for e in &errors {
                                warn!("Peers file: {e}");
                            }
                            file_peers = peers;
                            file_errors = errors;
                        }
                        Err(e) => {
                            file_errors = vec![format!("{}: {e}", path.display())];
                            warn!("Peers file: {}", file_errors[0]);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let msg = format!("{}: {e} (keeping its last peers)", path.display());
                    if file_errors.first() != Some(&msg) {
                        warn!("Peers file: {msg}");
                    }
                    file_errors = vec![msg];
                    file_seen = None;
                }
            }
        }
        if let Some(service) = &discovery.peer_service {
            match tokio::net::lookup_host(service.as_str()).await {
                Ok(addrs) => {
                    service_peers = addrs.map(|a| a.to_string()).collect();
                    service_error = None;
                }
                Err(e) => {
                    let msg = format!(
                        "peer service {service}: {e} (keeping its last {} addresses)",
                        service_peers.len()
                    );
                    if service_error.as_ref() != Some(&msg) {
                        warn!("{msg}");
                    }
                    service_error = Some(msg);
                }
            }
        }
        let mut wanted: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut pods_error = None;
        if let Some(peer_pods) = &discovery.peer_pods {
            match peer_pods.pods.borrow().as_ref() {
                Some(pods) => {
                    for pod in pods {
                        let address = std::net::SocketAddr::new(pod.ip, peer_pods.port).to_string();
                        wanted.insert(address, Some(pod.node.clone()));
                    }
                }
                None => {
                    pods_error = Some(format!(
                        "observer pods ({}): not listed from the Kubernetes API yet",
                        peer_pods.what
                    ))
                }
            }
        }
        for p in discovery.peers.iter().chain(&file_peers) {
            wanted
                .entry(p.address.clone())
                .or_insert_with(|| p.name.clone());
        }
        for a in &service_peers {
            wanted.entry(a.clone()).or_insert(None);
        }
        pool.set(wanted);
        let mut errors = file_errors.clone();
        errors.extend(service_error.clone());
        errors.extend(pods_error);
        *pool.discovery_errors.lock().expect("errors") = errors;
        pool.discovered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Pods from the API are followed as they change; the rest is looked at again later.
        match discovery.peer_pods.as_mut() {
            Some(peer_pods) => {
                tokio::select! {
                    _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
                    changed = peer_pods.pods.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(DISCOVERY_INTERVAL).await;
                        }
                    }
                }
            }
            None => tokio::time::sleep(DISCOVERY_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_are_checked_with_a_reason() {
        let p: PeerSpec = "node-1=10.0.0.7:4244".parse().unwrap();
        assert_eq!(p.name.as_deref(), Some("node-1"));
        assert_eq!(p.address, "10.0.0.7:4244");
        let p: PeerSpec = " [2001:db8::1]:4244 ".parse().unwrap();
        assert_eq!(p.name, None);
        assert_eq!(p.address, "[2001:db8::1]:4244");
        for (bad, why) in [
            ("10.0.0.7", "expected HOST:PORT"),
            ("10.0.0.7:0", "port \"0\""),
            ("10.0.0.7:http", "port \"http\""),
            (":4244", "host is empty"),
            ("=a:1", "name before '=' is empty"),
            ("2001:db8::1:4244", "need brackets"),
            ("http://a:1", "without http:// (e.g. a:1)"),
            ("a b:1", "not a host"),
        ] {
            let err = bad.parse::<PeerSpec>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_peers_file_keeps_its_good_lines_and_names_its_bad_ones() {
        let text = "# observers\nnode-1=10.0.0.1:4244\n\n10.0.0.2:4244  # second\nnot an address\n";
        let (peers, errors) = parse_peers_file(Path::new("/etc/peers"), text);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[1].address, "10.0.0.2:4244");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("/etc/peers:5: "), "{errors:?}");
    }
}
