//! `flowscope-tls`: TLS for flowscope's listeners (observer, relay) and clients (the relay's
//! connections to observers, `flowscope observe`), on rustls with ring.
//!
//! - [`ServerTls`]: a listener's certificate and key, and with client CAs, mutual TLS (a client
//!   without a certificate signed by one of them is refused during the handshake), as
//!   Hubble's `--tls-cert-file`, `--tls-key-file` and `--tls-client-ca-files` mean.
//! - [`check_listener`]: plain text is for loopback; another address needs TLS or an explicit
//!   opt-out, which the caller logs as a warning.
//! - [`ClientTls`]: a client's trusted CAs (else the system's roots are not consulted: the
//!   CAs must be named), its own certificate for mutual TLS, the name to verify, or no
//!   verification at all (`--tls-allow-insecure`).
//!
//! Every error names the file or flag at fault.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio::net::TcpStream;

pub use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

/// What is wrong with a TLS setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: {reason}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The ALPN protocols a listener offers: gRPC needs HTTP/2; browsers and the WebSocket use
/// HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// ring, as kube already builds it: it needs only a C compiler (aws-lc-rs, the provider with
/// post-quantum key exchange that rustls now prefers, needs cmake and much longer builds).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn private_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason: format!("no PEM private key in it ({e})"),
    })
}

fn roots(flag: &'static str, paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in certificates(flag, path)? {
            roots.add(cert).map_err(|e| TlsError::File {
                flag,
                path: path.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    Ok(roots)
}

/// A listener's TLS files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTls {
    /// `--tls-cert-file`: the server's certificate chain (PEM).
    pub cert: PathBuf,
    /// `--tls-key-file`: its private key (PEM).
    pub key: PathBuf,
    /// `--tls-client-ca-files`: with any, clients must present a certificate signed by one.
    pub client_cas: Vec<PathBuf>,
}

impl ServerTls {
    /// The rustls configuration, read and checked now.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs = certificates("--tls-cert-file", &self.cert)?;
        let key = private_key("--tls-key-file", &self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.client_cas.is_empty() {
            builder.with_no_client_auth()
        } else {
            let roots = roots("--tls-client-ca-files", &self.client_cas)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Config(format!("--tls-client-ca-files: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::Config(format!(
                "--tls-cert-file {} and --tls-key-file {} do not go together: {e}",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// How a listener may serve: plain text on loopback; elsewhere TLS, unless `plaintext` says
/// the operator wants plain text anyway (true is returned: warn about it).
pub fn check_listener(
    what: &str,
    listen: SocketAddr,
    tls: Option<&ServerTls>,
    plaintext: bool,
) -> Result<bool, TlsError> {
    match (tls, listen.ip().is_loopback(), plaintext) {
        (Some(_), _, true) => Err(TlsError::Config(format!(
            "{what}: --disable-server-tls contradicts --tls-cert-file"
        ))),
        (Some(_), _, false) | (None, true, _) => Ok(false),
        (None, false, true) => Ok(true),
        (None, false, false) => Err(TlsError::Config(format!(
            "{what}: --listen {listen} is not a loopback address, and flows would cross the \
             network in plain text: give --tls-cert-file and --tls-key-file (and \
             --tls-client-ca-files for mutual TLS), or --disable-server-tls to serve plain \
             text anyway"
        ))),
    }
}

/// A client's TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CAs the server's certificate must be signed by.
    pub cas: Vec<PathBuf>,
    /// The client's own certificate and key, for servers that ask (mutual TLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host it is reached at).
    pub server_name: Option<String>,
    /// Accept any server certificate (testing only).
    pub insecure: bool,
}

/// A client's rustls configuration and the name to verify.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The protocol a client speaks over its connections (ALPN): the server picks HTTP/2 when the
/// client offers it, so a client offers only what it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1: JSON GETs and the WebSocket.
    Http1,
    /// HTTP/2: gRPC.
    H2,
}

impl ClientTls {
    /// A connector for `alpn`; `flags` name the settings in messages (the CLI's are
    /// Hubble's, the relay has its own).
    pub fn connector(&self, flags: &ClientFlags, alpn: Alpn) -> Result<Connector, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        } else {
            if self.cas.is_empty() {
                return Err(TlsError::Config(format!(
                    "TLS needs the CA that signed the server's certificate: give {} (or {} to \
                     skip verification, for tests only)",
                    flags.cas, flags.insecure
                )));
            }
            builder.with_root_certificates(roots(flags.cas, &self.cas)?)
        };
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    certificates(flags.cert, cert)?,
                    private_key(flags.key, key)?,
                )
                .map_err(|e| {
                    TlsError::Config(format!(
                        "{} {} and {} {} do not go together: {e}",
                        flags.cert,
                        cert.display(),
                        flags.key,
                        key.display()
                    ))
                })?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Config(format!(
                    "{} and {} go together",
                    flags.cert, flags.key
                )));
            }
        };
        config.alpn_protocols = vec![match alpn {
            Alpn::Http1 => b"http/1.1".to_vec(),
            Alpn::H2 => b"h2".to_vec(),
        }];
        let server_name =
            match &self.server_name {
                Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                    TlsError::Config(format!("{} {name:?}: {e}", flags.server_name))
                })?),
                None => None,
            };
        Ok(Connector {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// The flag names a client's settings came from.
pub struct ClientFlags {
    pub cas: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
    pub server_name: &'static str,
    pub insecure: &'static str,
}

/// `flowscope observe`'s, which are `hubble observe`'s.
pub const HUBBLE_CLIENT_FLAGS: ClientFlags = ClientFlags {
    cas: "--tls-ca-cert-files",
    cert: "--tls-client-cert-file",
    key: "--tls-client-key-file",
    server_name: "--tls-server-name",
    insecure: "--tls-allow-insecure",
};

impl Connector {
    /// A TLS connection to `address` (HOST:PORT), verified against the server name (or the
    /// host); the error says what failed, in one line.
    pub async fn connect(&self, address: &str) -> Result<TlsStream<TcpStream>, String> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                let host = address
                    .rsplit_once(':')
                    .map_or(address, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                ServerName::try_from(host.to_string())
                    .map_err(|e| format!("{address}: not a host name to verify ({e})"))?
            }
        };
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {address}: {e}"))
    }
}

/// `--tls-allow-insecure`: any certificate passes (the handshake's signatures are still
/// checked, so the connection is encrypted to whoever answered).
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_for_loopback_unless_asked_for() {
        let tls = ServerTls::default();
        let local: SocketAddr = "127.0.0.1:4244".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:4244".parse().unwrap();
        assert!(!check_listener("observer", local, None, false).unwrap());
        assert!(!check_listener("observer", any, Some(&tls), false).unwrap());
        assert!(check_listener("observer", any, None, true).unwrap());
        let err = check_listener("observer", any, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--listen 0.0.0.0:4244 is not a loopback address"),
            "{err}"
        );
        assert!(err.contains("--disable-server-tls"), "{err}");
        assert!(check_listener("observer", any, Some(&tls), true).is_err());
    }

    #[test]
    fn missing_and_bad_files_are_named() {
        let tls = ServerTls {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_cas: Vec::new(),
        };
        let err = tls.config().unwrap_err().to_string();
        assert!(
            err.starts_with("--tls-cert-file /nonexistent/cert.pem: "),
            "{err}"
        );
        let client = ClientTls::default();
        let err = client
            .connector(&HUBBLE_CLIENT_FLAGS, Alpn::H2)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--tls-ca-cert-files"), "{err}");
        let half = ClientTls {
            cert: Some("/c".into()),
            insecure: true,
            ..ClientTls::default()
        };
        let err = half
            .connector(&HUBBLE_CLIENT_FLAGS, Alpn::H2)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--tls-client-cert-file and --tls-client-key-file go together"),
            "{err}"
        );
    }
}
