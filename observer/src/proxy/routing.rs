//! The one piece of routing the proxy needs: packets the datapath marked for it
//! (`mark::TO_PROXY`) are delivered locally whatever their destination address, as a transparent
//! proxy's packets must be. One policy routing rule per family sends marked packets to a table
//! whose only route is `local default dev lo`: `ip rule add fwmark 0xa00/0xf00 lookup 2050` and
//! `ip route add local default dev lo table 2050`. Nothing is evaluated per packet beyond the
//! rule's mark compare; there are no iptables rules.
//!
//! One more node setting goes with them: TCP early demux is turned off
//! (`net.ipv4.tcp_early_demux = 0`). The proxy's sockets carry pods' addresses; when one of
//! them is in TIME_WAIT, early demux would attach it to a later packet of the same 4-tuple that
//! is *forwarded* (the same client port reused for a connection the proxy is not asked to
//! handle, or after a policy change), and the kernel drops forwarded packets that carry a
//! socket. Without early demux such packets are routed as ever; only this node's own TCP
//! sockets lose a route cache shortcut.
//!
//! Installed when the proxy starts (an existing identical rule from an earlier run is reused)
//! and removed when the last observer using them stops: every running observer holds a shared
//! lock on [`LOCK_FILE`], and the one that stops removes them only if it can then take the lock
//! exclusively. Left behind after a crash, they only affect packets carrying the mark, which
//! nothing but flowscope's datapath sets, and the next observer to stop removes them.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
};

use anyhow::Context as _;
use flowscope_common::mark;
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, IpVersion, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        route::{RouteMessage, RouteScope, RouteType},
        rule::{RuleAction, RuleAttribute, RuleMessage},
    },
};
use tracing::{debug, warn};

/// The routing table of marked packets. Cilium uses 2004 and 2005; this stays clear of them
/// and of the tables below 256 that distributions name.
pub const TABLE: u32 = 2050;
/// The rule's priority: after the local table (0), before main (32766).
pub const PRIORITY: u32 = 9;
/// The loopback interface's index, fixed by the kernel.
const LOOPBACK: u32 = 1;
/// Held (shared) by every observer whose proxy relies on the rule; see the module docs.
pub const LOCK_FILE: &str = "/run/flowscope/proxy-routing.lock";

/// The installed rules and routes; [`Routing::remove`] takes them away again.
pub struct Routing {
    handle: Handle,
    installed: Vec<Installed>,
    /// Our shared lock on [`LOCK_FILE`]; released (by closing it) when we stop.
    lock: Option<File>,
    /// `tcp_early_demux` as it was before (restored by the last observer to stop).
    early_demux: Option<String>,
}

const EARLY_DEMUX: &str = "/proc/sys/net/ipv4/tcp_early_demux";
/// Where the value before the first observer turned it off is kept, for the last one to stop.
const EARLY_DEMUX_SAVED: &str = "/run/flowscope/tcp_early_demux.saved";

/// Turns TCP early demux off (see the module docs); returns the value to restore, as the first
/// observer found it (kept in [`EARLY_DEMUX_SAVED`] across observers and crashes).
fn disable_early_demux() -> Option<String> {
    let now = std::fs::read_to_string(EARLY_DEMUX)
        .ok()?
        .trim()
        .to_string();
    let before = match std::fs::read_to_string(EARLY_DEMUX_SAVED) {
        Ok(saved) => saved.trim().to_string(),
        Err(_) => {
            let _ = std::fs::write(EARLY_DEMUX_SAVED, &now);
            now.clone()
        }
    };
    if now != "0"
        && let Err(err) = std::fs::write(EARLY_DEMUX, "0")
    {
        warn!(
            "Turning {EARLY_DEMUX} off: {err}; forwarded connections reusing a proxied 4-tuple may be dropped for a minute"
        );
    }
    Some(before)
}

/// `flock` on a file we hold open; true when the lock was taken.
fn flock(file: &File, operation: libc::c_int) -> bool {
    // SAFETY: flock on a file descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), operation) == 0 }
}

fn open_lock() -> anyhow::Result<File> {
    let path = std::path::Path::new(LOCK_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {LOCK_FILE}"))
}

enum Installed {
    Rule(RuleMessage),
    Route(RouteMessage),
}

impl Routing {
    /// Installs the rule and the local route for IPv4 and, where the node has IPv6, IPv6.
    pub async fn install() -> anyhow::Result<Routing> {
        let lock = open_lock()?;
        anyhow::ensure!(
            flock(&lock, libc::LOCK_SH),
            "locking {LOCK_FILE}: {}",
            std::io::Error::last_os_error()
        );
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(connection);
        let mut routing = Routing {
            handle,
            installed: Vec::new(),
            lock: Some(lock),
            early_demux: None,
        };
        routing.early_demux = disable_early_demux();
        for v6 in [false, true] {
            match routing.install_family(v6).await {
                Ok(()) => {}
                // A node without IPv6 has no IPv6 to redirect; IPv4 is required.
                Err(err) if v6 => warn!("L7 proxy routing for IPv6 not installed: {err:#}"),
                Err(err) => {
                    routing.remove().await;
                    return Err(err);
                }
            }
        }
        Ok(routing)
    }

    async fn install_family(&mut self, v6: bool) -> anyhow::Result<()> {
        let route = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                .table_id(TABLE)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .output_interface(LOOPBACK)
                .build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .table_id(TABLE)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .output_interface(LOOPBACK)
                .build()
        };
        self.handle
            .route()
            .add(route.clone())
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding `local default dev lo table {TABLE}`"))?;
        self.installed.push(Installed::Route(route));

        let rule = self.rule_message(v6);
        if self.rule_exists(&rule, v6).await {
            debug!(v6, "Proxy routing rule already present");
        } else {
            let mut add = self.handle.rule().add();
            *add.message_mut() = rule.clone();
            add.execute().await.with_context(|| {
                format!(
                    "adding `ip rule fwmark {:#x}/{:#x} lookup {TABLE}`",
                    mark::TO_PROXY,
                    mark::MASK
                )
            })?;
        }
        self.installed.push(Installed::Rule(rule));
        Ok(())
    }

    fn rule_message(&self, v6: bool) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.table = 0;
        m.header.action = RuleAction::ToTable;
        m.attributes = vec![
            RuleAttribute::Table(TABLE),
            RuleAttribute::Priority(PRIORITY),
            RuleAttribute::FwMark(mark::TO_PROXY),
            RuleAttribute::FwMask(mark::MASK),
        ];
        m
    }

    async fn rule_exists(&self, wanted: &RuleMessage, v6: bool) -> bool {
        let version = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let Ok(rules) = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect::<Vec<_>>()
            .await
        else {
            return false;
        };
        // The kernel reports a table above 255 as an attribute, as it was given.
        rules
            .iter()
            .any(|r| wanted.attributes.iter().all(|a| r.attributes.contains(a)))
    }

    /// Removes what [`Routing::install`] added, unless another observer still uses it.
    pub async fn remove(&mut self) {
        // Release our shared lock, then see whether anyone else holds one.
        drop(self.lock.take());
        // Held while removing: an observer starting meanwhile waits for its shared lock, then
        // installs afresh.
        let Some(_exclusive) = open_lock()
            .ok()
            .filter(|f| flock(f, libc::LOCK_EX | libc::LOCK_NB))
        else {
            debug!("Proxy routing kept: another observer uses it");
            self.installed.clear();
            return;
        };
        if let Some(before) = self.early_demux.take() {
            if let Err(err) = std::fs::write(EARLY_DEMUX, &before) {
                warn!("Restoring {EARLY_DEMUX}: {err}");
            }
            let _ = std::fs::remove_file(EARLY_DEMUX_SAVED);
        }
        for item in self.installed.drain(..).rev() {
            let result = match item {
                Installed::Rule(m) => self.handle.rule().del(m).execute().await,
                Installed::Route(m) => self.handle.route().del(m).execute().await,
            };
            if let Err(err) = result {
                debug!("Removing proxy routing: {err}");
            }
        }
    }
}
