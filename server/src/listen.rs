//! The API listener, plain or TLS: one port for HTTP/1.1 (the UI, the JSON API, the WebSocket)
//! and HTTP/2 (gRPC), told apart by ALPN under TLS and by the request's preface in plain text.

use std::{sync::Arc, time::Duration};

use axum::Router;
use flowscope_tls::TlsAcceptor;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, open requests have this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A port that could not be opened, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {what} on {addr}{}", hint(.source, .flag))]
pub struct BindError {
    pub what: &'static str,
    pub addr: std::net::SocketAddr,
    pub flag: &'static str,
    pub source: std::io::Error,
}

fn hint(source: &std::io::Error, flag: &str) -> String {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            " (another process listens there: another flowscope, or Cilium's Hubble on 4244, \
             4245 or 9965? stop it or choose another address with {flag})"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            " (no interface of this machine has that address: choose one it has with {flag})"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!(
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE: choose another with {flag})"
            )
        }
        _ => String::new(),
    }
}

/// Opens `addr` for `what` (the API, metrics); an error says what to do, naming `flag`.
pub async fn bind(
    what: &'static str,
    addr: std::net::SocketAddr,
    flag: &'static str,
) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what,
        addr,
        flag,
        source,
    })
}

/// The listener's TLS configuration, checked before the server starts (`what` names it in
/// messages): plain text only on loopback unless `disable_server_tls`, which is warned about.
pub fn tls(
    what: &str,
    listen: std::net::SocketAddr,
    tls: Option<&flowscope_tls::ServerTls>,
    disable_server_tls: bool,
) -> Result<Option<Arc<rustls::ServerConfig>>, flowscope_tls::TlsError> {
    let plain_remote = flowscope_tls::check_listener(what, listen, tls, disable_server_tls)?;
    let config = tls.map(flowscope_tls::ServerTls::config).transpose()?;
    if plain_remote {
        warn!(%listen, "The {what} serves flows in plain text on a non-loopback address (--disable-server-tls): anyone who can reach it reads them");
    }
    Ok(config)
}

/// Serves `app` on `listener` until `shutdown` completes; with `tls`, every connection is a
/// TLS connection (clients that fail the handshake, a client certificate included, are
/// dropped before any request).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(config) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let acceptor = TlsAcceptor::from(config);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: try again, as axum does.
                Err(e) => {
                    debug!(error = %e, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder, app) = (acceptor.clone(), builder.clone(), app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                debug!(%peer, error = %e, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}
