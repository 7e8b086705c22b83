//! An HTTP/1.1 GET of an observer's JSON (status, endpoints), with a deadline, on hyper's
//! client connection (hyper is already the relay's server), over TLS when the relay has it
//! for its observers.

use std::time::Duration;

use bytes::Buf as _;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// Answers larger than this are refused: status and endpoint lists are far smaller.
const MAX_BODY: usize = 16 << 20;

/// `GET http(s)://{address}{path}` as JSON, or why not, in one line.
pub async fn get_json<T: DeserializeOwned>(
    tls: Option<&flowscope_tls::Connector>,
    address: &str,
    path: &str,
    timeout: Duration,
) -> Result<T, String> {
    let got = async {
        match tls {
            None => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(|e| format!("connecting to {address}: {e}"))?;
                let _ = stream.set_nodelay(true);
                get(stream, address, path).await
            }
            Some(tls) => get(tls.connect(address).await?, address, path).await,
        }
    };
    match tokio::time::timeout(timeout, got).await {
        Ok(Ok(body)) => serde_json::from_reader(body.reader())
            .map_err(|e| format!("GET {path}: not the expected JSON: {e}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "GET {path}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn get<S>(stream: S, address: &str, path: &str) -> Result<Bytes, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {address}: {e}"))?;
    let conn = tokio::spawn(conn);
    let request = Request::get(path)
        .header(hyper::header::HOST, address)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {path} from {address}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("GET {path} from {address}: reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("GET {path} from {address}: {status}: {text}"));
        }
        Ok(body)
    }
    .await;
    conn.abort();
    result
}
