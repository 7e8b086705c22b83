//! The proxy's connections to the original destination. Each is opened from the client's own
//! address (`IP_TRANSPARENT` and a bind to an address that is not the node's), so the server
//! sees the real client and its own ingress policy judges the real client's identity. They
//! carry `mark::FROM_PROXY` (`SO_MARK`): the datapath never hands them to the proxy again, and
//! it marks their replies so they come back to this socket instead of to the client whose
//! address it uses.

use std::{io, net::SocketAddr, os::fd::AsRawFd as _, time::Duration};

use flowscope_common::mark;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// How long connecting to the server may take before the request is answered 503.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection from `client`'s address (any free port) to `server`.
pub async fn connect(client: SocketAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let domain = if server.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if server.is_ipv4() {
        socket.set_ip_transparent_v4(true)?;
    } else {
        socket.set_ip_transparent_v6(true)?;
    }
    socket.set_mark(mark::FROM_PROXY)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    bind_address_no_port(&socket);
    let source = SocketAddr::new(client.ip(), 0);
    socket.bind(&source.into())?;
    let socket = TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(server)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {server} took longer than {CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: the source port is chosen at `connect`, by the whole 4-tuple,
/// rather than at `bind`, where each port could serve only one connection per client address.
/// Best effort: without it, binding still works with fewer ports.
fn bind_address_no_port(socket: &Socket) {
    const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to an int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
