//! `flowscope demo`: two test hosts in network namespaces that talk through this machine, the
//! observer attached to their veths, and steady traffic, some of it denied. The lab (issue 3)
//! grows this into pods, namespaces and policies.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};

/// Demo hosts: (namespace and host-side veth name, subnet third octet).
const HOSTS: [(&str, u8); 2] = [("fsd-client", 100), ("fsd-server", 101)];
const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
const DENIED_PORT: u16 = 9090;

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

fn addr(third: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, third, host)
}

/// Removes whatever an earlier demo left (also after a crash or kill -9).
pub fn teardown() {
    for (name, _) in HOSTS {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let _ = Command::new("ip").args(["link", "del", name]).output();
    }
}

/// Creates the two hosts; the host side of each veth routes between them.
pub fn setup() -> anyhow::Result<()> {
    teardown();
    for (name, third) in HOSTS {
        ip(&["netns", "add", name])?;
        ip(&[
            "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", addr(third, 1)),
            "dev",
            name,
        ])?;
        ip(&["link", "set", name, "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/24", addr(third, 2)),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", name, "link", "set", "eth0", "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            name,
            "route",
            "add",
            "default",
            "via",
            &addr(third, 1).to_string(),
        ])?;
        // Forward between the demo veths only; the machine's other interfaces keep their
        // setting.
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/forwarding"), "1")
            .with_context(|| format!("enabling forwarding on {name}"))?;
    }
    Ok(())
}

/// Runs `f` on a new thread inside network namespace `ns`.
fn spawn_in(ns: &'static str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace fd we hold open; it affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!("setns {ns}: {}", std::io::Error::last_os_error());
            return;
        }
        f();
    });
    Ok(())
}

/// Servers in the server host, and a client loop in the client host, until `stop`.
pub fn start_traffic(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let server = addr(HOSTS[1].1, 2);
    spawn_in(HOSTS[1].0, move || {
        for port in [HTTP_PORT, DENIED_PORT] {
            let Ok(l) = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) else {
                return;
            };
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    );
                }
            });
        }
        if let Ok(u) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, UDP_PORT)) {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], from);
            }
        }
    })?;
    spawn_in(HOSTS[0].0, move || {
        let timeout = Duration::from_millis(500);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut s) =
                TcpStream::connect_timeout(&SocketAddr::new(server.into(), HTTP_PORT), timeout)
            {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n");
                let mut buf = Vec::new();
                let _ = s.set_read_timeout(Some(timeout));
                let _ = s.read_to_end(&mut buf);
            }
            if let Ok(u) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
                let _ = u.set_read_timeout(Some(timeout));
                let _ = u.send_to(b"demo", (server, UDP_PORT));
                let _ = u.recv(&mut [0u8; 64]);
            }
            // Denied: the SYN is dropped by the datapath and the connect times out.
            let _ =
                TcpStream::connect_timeout(&SocketAddr::new(server.into(), DENIED_PORT), timeout);
            std::thread::sleep(Duration::from_millis(500));
        }
    })?;
    Ok(())
}

/// The deny rule the demo runs with, so some of its traffic is dropped.
pub fn deny_rule() -> String {
    format!(
        "cidr={},port={DENIED_PORT},protocol=tcp",
        addr(HOSTS[1].1, 2)
    )
}

pub fn interfaces() -> Vec<String> {
    HOSTS.iter().map(|(n, _)| n.to_string()).collect()
}
