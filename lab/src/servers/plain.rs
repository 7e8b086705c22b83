//! Ports without an application protocol, and the UDP side of DNS: a TCP greeter that answers
//! one line per connection, and a UDP loop that echoes datagrams or answers DNS queries.

use std::{io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::OwnedSemaphorePermit,
    time::{Instant, timeout, timeout_at},
};

use super::{App, ERROR_BACKOFF, Shared, dns};

/// How long the plain TCP server waits for the client's line before answering anyway: clients
/// that send nothing (`nc` with no input) still get their answer, a little later.
const PLAIN_READ_WINDOW: Duration = Duration::from_millis(500);
/// What the plain TCP server reads from a client before answering; the rest is drained on close.
const MAX_PLAIN_REQUEST: usize = 4 * 1024;
/// How long writing the answer may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After answering, the server reads (and drops) what the client still sends for this long before
/// closing: closing with unread data makes the kernel send a reset, which can destroy the answer
/// before the client reads it ("lingering close", as Apache and nginx do).
const LINGER: Duration = Duration::from_millis(500);
/// The most bytes drained during the lingering close.
const LINGER_BYTES: usize = 64 * 1024;
/// Receive buffer for UDP: the largest datagram IPv4 can carry, so echoes are never truncated.
const UDP_BUFFER: usize = 65_535;

/// Reads the client's line (up to a newline, end of file, [`MAX_PLAIN_REQUEST`] bytes or
/// [`PLAIN_READ_WINDOW`]), then answers with one line naming the server's port.
pub(super) async fn serve_tcp(mut stream: TcpStream, port: u16, _permit: OwnedSemaphorePermit) {
    let deadline = Instant::now() + PLAIN_READ_WINDOW;
    let mut buf = vec![0u8; MAX_PLAIN_REQUEST];
    let mut len = 0;
    let read = timeout_at(deadline, async {
        while let Some(free) = buf.get_mut(len..).filter(|free| !free.is_empty()) {
            let n = stream.read(free).await?;
            if n == 0 {
                break;
            }
            let start = len;
            len += n;
            if buf.get(start..len).is_some_and(|new| new.contains(&b'\n')) {
                break;
            }
        }
        io::Result::Ok(())
    })
    .await;
    // A read error (a reset) leaves no one to answer; a timeout only ends the wait.
    if let Ok(Err(_)) = read {
        return;
    }
    let answer = format!("flowscope-lab {port}\n");
    if let Ok(Ok(())) = timeout(WRITE_TIMEOUT, stream.write_all(answer.as_bytes())).await {
        linger_close(&mut stream).await;
    }
}

/// Half-closes, then drains what the client still sends (bounded) before the socket is dropped;
/// see [`LINGER`].
async fn linger_close(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    let _ = timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Serves one UDP port: echoes datagrams, or answers them as DNS queries.
pub(super) async fn udp_loop(socket: UdpSocket, app: App, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // A pending error (an ICMP report about an earlier reply) is consumed by the
            // receive that returns it, so the next one proceeds.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => {
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let datagram = buf.get(..len).unwrap_or_default();
        // Send errors concern one peer (unreachable, buffer full); UDP gives no way to tell it,
        // and the next datagram is unaffected.
        match app {
            App::Dns => {
                if let Some(reply) = dns::reply(datagram, &shared.dns) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
            App::Plain | App::Http | App::Grpc => {
                let _ = socket.send_to(datagram, peer).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        net::{Shutdown, TcpStream, UdpSocket},
    };

    use super::{
        super::{Protocol, probe_tcp, probe_udp, test_util::*},
        *,
    };

    #[test]
    fn tcp_plain_answers_with_its_port() {
        let (servers, _) = start(&[spec(Protocol::Tcp, App::Plain)]);
        let addr = servers.local_addrs()[0];
        let result = probe_tcp(addr, TIMEOUT);
        assert!(result.connected, "{result:?}");
        assert_eq!(result.detail, format!("flowscope-lab {}", addr.port()));
        assert_ne!(result.source_port, 0);

        // A client that sends nothing but closes its side is answered at once.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let started = std::time::Instant::now();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, format!("flowscope-lab {}\n", addr.port()));
        assert!(started.elapsed() < PLAIN_READ_WINDOW);

        // One that sends nothing at all is answered after the read window.
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, format!("flowscope-lab {}\n", addr.port()));
    }

    #[test]
    fn udp_plain_echoes() {
        let (servers, _) = start(&[spec(Protocol::Udp, App::Plain)]);
        let addr = servers.local_addrs()[0];
        let result = probe_udp(addr, TIMEOUT);
        assert_eq!(
            (result.connected, result.detail.as_str()),
            (true, "echo"),
            "{result:?}"
        );
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        for payload in [&b"x"[..], &[0u8; 1500][..], &[7u8; 9000][..]] {
            socket.send_to(payload, addr).unwrap();
            let mut buf = [0u8; UDP_BUFFER];
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (payload, addr));
        }
    }
}
