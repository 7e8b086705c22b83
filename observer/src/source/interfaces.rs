//! Which interfaces exist, which of them to watch, and a wake-up whenever links change, so
//! pod veths created after start are attached within moments.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use glob::Pattern;
use tokio::io::unix::AsyncFd;

/// A network interface present on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

/// Lists the interfaces of the current network namespace.
pub fn list() -> io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // An interface removed between the listing and this read is simply skipped.
        let Ok(index) = std::fs::read_to_string(entry.path().join("ifindex")) else {
            continue;
        };
        if let Ok(index) = index.trim().parse() {
            out.push(Interface { name, index });
        }
    }
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// The node's own addresses (all interfaces), so flows to and from them are marked `host`.
pub fn host_addrs() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: family AF_INET means this is a sockaddr_in.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    // SAFETY: family AF_INET6 means this is a sockaddr_in6.
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing the list getifaddrs returned, once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

/// Interface names to watch, as shell globs (`eth0`, `veth*`, `fs-*`).
#[derive(Clone, Debug)]
pub struct InterfaceSelector {
    patterns: Vec<Pattern>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid --interface pattern {pattern:?}: {reason}")]
pub struct SelectorError {
    pattern: String,
    reason: String,
}

impl InterfaceSelector {
    pub fn new<S: AsRef<str>>(globs: &[S]) -> Result<Self, SelectorError> {
        let patterns = globs
            .iter()
            .map(|g| {
                let g = g.as_ref();
                if g.is_empty() || g.len() > 64 {
                    return Err(SelectorError {
                        pattern: g.into(),
                        reason: "must be 1 to 64 characters".into(),
                    });
                }
                Pattern::new(g).map_err(|e| SelectorError {
                    pattern: g.into(),
                    reason: e.msg.into(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(InterfaceSelector { patterns })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }

    /// The patterns no interface in `present` matches.
    pub fn unmatched(&self, present: &[Interface]) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|p| !present.iter().any(|i| p.matches(&i.name)))
            .map(|p| p.as_str().to_string())
            .collect()
    }
}

/// A netlink socket subscribed to link changes. It is only a doorbell: on any message the
/// caller re-lists interfaces, which is simpler and no slower than decoding each message.
pub struct LinkWatcher {
    fd: AsyncFd<OwnedFd>,
}

impl LinkWatcher {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is a valid starting value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: bind with a pointer to a properly sized sockaddr_nl.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd is a valid socket owned by the AsyncFd from here on.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(LinkWatcher { fd })
    }

    /// Waits until at least one link change was announced, and drains the socket.
    pub async fn changed(&self) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut got = false;
            loop {
                // SAFETY: recv into a buffer we own, with its length.
                let n = unsafe {
                    libc::recv(
                        self.fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n > 0 {
                    got = true;
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    // The kernel dropped notifications: we rescan anyway, so that is a change.
                    Some(libc::ENOBUFS) => got = true,
                    _ if n == 0 => break,
                    _ => return Err(err),
                }
            }
            if got {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_globs() {
        let s = InterfaceSelector::new(&["eth0", "veth*", "fs-?x"]).unwrap();
        assert!(s.matches("eth0"));
        assert!(!s.matches("eth1"));
        assert!(s.matches("veth1234"));
        assert!(s.matches("fs-ax"));
        assert!(!s.matches("fs-abx"));
        let e = InterfaceSelector::new(&["bad[", "x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad["), "{e}");
        assert!(InterfaceSelector::new(&[""]).is_err());
    }

    #[test]
    fn lists_loopback() {
        let ifaces = list().unwrap();
        assert!(
            ifaces.iter().any(|i| i.name == "lo" && i.index == 1),
            "{ifaces:?}"
        );
    }

    #[test]
    fn host_addrs_include_loopback() {
        let addrs = host_addrs().unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }
}
