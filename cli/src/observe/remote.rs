//! The server's flow stream. `--server HOST:PORT` speaks Hubble's gRPC API ([`super::grpc`]),
//! as `hubble observe --server` does, so the same command works against Cilium's Hubble;
//! `--server ws://HOST:PORT` (or `http://`) reads flowscope's WebSocket instead:
//! `GET /api/v1/flows` upgraded to a WebSocket. The client sends one GetFlowsRequest as a JSON
//! text message; the observer answers with one GetFlowsResponse JSON line per message (flows
//! and lost events), or with an `{"error":{...}}` line and close code 1007 when it refuses the
//! request.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use flowscope_model::{
    GetFlowsRequest, GetFlowsResponse,
    api::{ErrorBody, ServerStatus, close},
};
use futures_util::{FutureExt as _, SinkExt as _, Stream, StreamExt as _};
use tokio_tungstenite::tungstenite::{self, Message};

use flowscope_tls::{Alpn, ClientTls, Connector, HUBBLE_CLIENT_FLAGS};

use super::sink::{Halt, Sink};

/// Messages handled from the socket's buffer before the loop checks Ctrl-C and timers again.
const BURST: usize = 1024;
/// How long a goodbye (close frame) may take after Ctrl-C.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
/// Server lines quoted in errors are cut to this many bytes.
const QUOTE_LIMIT: usize = 200;

/// How a stream ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The observer sent everything asked for and closed the stream.
    Complete,
    /// Ctrl-C.
    Interrupted,
}

/// `ws://SERVER/api/v1/flows`; SERVER may carry a `ws://` or `http://` scheme.
pub(crate) fn flows_url(server: &str) -> String {
    format!("ws://{}/api/v1/flows", split_server(server).1)
}

/// `--server`'s scheme (empty without one) and HOST:PORT.
fn split_server(server: &str) -> (&str, &str) {
    match server.split_once("://") {
        Some((scheme, host)) => (scheme, host.trim_end_matches('/')),
        None => ("", server.trim_end_matches('/')),
    }
}

pub(crate) fn unreachable(server: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "cannot reach the observer at {server}: {why} (is `flowscope observer` running? set \
         --server or FLOWSCOPE_SERVER)"
    )
}

/// Streams the responses to `request` into `sink` until the observer ends the stream, the
/// output closes, or `interrupt` completes (Ctrl-C).
pub(crate) async fn stream(
    server: &str,
    tls: Option<&ClientTls>,
    connect_timeout: Duration,
    request: &GetFlowsRequest,
    sink: &mut Sink,
    interrupt: impl Future<Output = ()>,
) -> Result<End, Halt> {
    let (scheme, host) = split_server(server);
    let websocket = match scheme {
        "" | "grpc" | "tls" => false,
        "ws" | "http" | "wss" | "https" => true,
        other => {
            return Err(Halt::Failed(anyhow!(
                "--server {server:?}: `{other}://` is not supported; use HOST:PORT or \
                 tls://HOST:PORT (Hubble's gRPC API), or ws:// or wss://HOST:PORT (flowscope's \
                 WebSocket)"
            )));
        }
    };
    // TLS when asked for, with settings or the defaults (CAs are then required).
    let default = ClientTls::default();
    let tls = match (tls, scheme) {
        (Some(tls), _) => Some(tls),
        (None, "tls" | "wss" | "https") => Some(&default),
        (None, _) => None,
    };
    let alpn = if websocket { Alpn::Http1 } else { Alpn::H2 };
    let connector = tls
        .map(|t| t.connector(&HUBBLE_CLIENT_FLAGS, alpn))
        .transpose()
        .map_err(|e| Halt::Failed(e.into()))?;
    if websocket {
        websocket_stream(
            server,
            host,
            connector.as_ref(),
            connect_timeout,
            request,
            sink,
            interrupt,
        )
        .await
    } else {
        super::grpc::stream(host, connector, connect_timeout, request, sink, interrupt).await
    }
}

/// [`stream`] over flowscope's WebSocket.
async fn websocket_stream(
    server: &str,
    host: &str,
    tls: Option<&Connector>,
    connect_timeout: Duration,
    request: &GetFlowsRequest,
    sink: &mut Sink,
    interrupt: impl Future<Output = ()>,
) -> Result<End, Halt> {
    match tls {
        None => {
            let url = flows_url(host);
            let connect = tokio_tungstenite::connect_async(url.as_str());
            let ws = match tokio::time::timeout(connect_timeout, connect).await {
                Err(_) => Err(ConnectError::Timeout),
                Ok(Err(e)) => Err(ConnectError::Ws(e)),
                Ok(Ok((ws, _))) => Ok(ws),
            };
            read_websocket(server, &url, ws, connect_timeout, request, sink, interrupt).await
        }
        Some(tls) => {
            let url = format!("wss://{host}/api/v1/flows");
            let connect = async {
                let stream = tls.connect(host).await.map_err(ConnectError::Tls)?;
                tokio_tungstenite::client_async(url.as_str(), stream)
                    .await
                    .map_err(ConnectError::Ws)
            };
            let ws = match tokio::time::timeout(connect_timeout, connect).await {
                Err(_) => Err(ConnectError::Timeout),
                Ok(result) => result.map(|(ws, _)| ws),
            };
            read_websocket(server, &url, ws, connect_timeout, request, sink, interrupt).await
        }
    }
}

/// Why a WebSocket could not be opened.
enum ConnectError {
    Timeout,
    Tls(String),
    Ws(tungstenite::Error),
}

async fn read_websocket<S>(
    server: &str,
    url: &str,
    ws: Result<tokio_tungstenite::WebSocketStream<S>, ConnectError>,
    connect_timeout: Duration,
    request: &GetFlowsRequest,
    sink: &mut Sink,
    interrupt: impl Future<Output = ()>,
) -> Result<End, Halt>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = match ws {
        Err(ConnectError::Timeout) => {
            return Err(Halt::Failed(unreachable(
                server,
                format!("no answer within {connect_timeout:?}"),
            )));
        }
        Err(ConnectError::Tls(e)) => return Err(Halt::Failed(unreachable(server, e))),
        Err(ConnectError::Ws(tungstenite::Error::Http(response))) => {
            return Err(Halt::Failed(anyhow!(
                "the server at {server} is not a flowscope observer: it answered HTTP {} to \
                 {url}",
                response.status()
            )));
        }
        Err(ConnectError::Ws(tungstenite::Error::Url(e))) => {
            return Err(Halt::Failed(anyhow!(
                "--server {server:?} is not an address such as 127.0.0.1:4244 ({e})"
            )));
        }
        Err(ConnectError::Ws(e)) => return Err(Halt::Failed(unreachable(server, e))),
        Ok(ws) => ws,
    };
    let body = serde_json::to_string(request)
        .map_err(|e| Halt::Failed(anyhow!("cannot encode the request: {e}")))?;
    ws.send(Message::text(body))
        .await
        .map_err(|e| Halt::Failed(anyhow!("cannot send the request to {server}: {e}")))?;

    let end = drive(&mut ws, request.follow, sink, interrupt, |message, sink| {
        handle_message(server, message, sink)
    })
    .await?;
    if end == End::Interrupted {
        // Best effort: the observer also notices the socket closing.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
    }
    Ok(end)
}

/// Feeds a stream's messages to `handle` (which says when the stream is over) until it is,
/// the output closes, or `interrupt` completes (Ctrl-C), for every transport: what already
/// arrived is handled without waiting, and the output is flushed only when idle, so a busy
/// stream is written in large blocks; while following, the sink's timer ticks.
pub(crate) async fn drive<S: Stream + Unpin>(
    stream: &mut S,
    follow: bool,
    sink: &mut Sink,
    interrupt: impl Future<Output = ()>,
    mut handle: impl FnMut(Option<S::Item>, &mut Sink) -> Result<Option<End>, Halt>,
) -> Result<End, Halt> {
    let interrupt = interrupt.fuse();
    tokio::pin!(interrupt);
    let period = sink.tick_interval().filter(|_| follow);
    let mut ticker = period.map(|p| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    loop {
        let mut budget = BURST;
        while budget > 0 {
            match stream.next().now_or_never() {
                Some(message) => {
                    budget -= 1;
                    if let Some(end) = handle(message, sink)? {
                        return Ok(end);
                    }
                }
                None => break,
            }
        }
        if budget == 0 {
            // Still busy: look at Ctrl-C and the timer without waiting, then read on.
            if interrupt.as_mut().now_or_never().is_some() {
                return Ok(End::Interrupted);
            }
            if let Some(t) = ticker.as_mut()
                && t.tick().now_or_never().is_some()
            {
                sink.tick()?;
            }
            continue;
        }
        // Idle: make what was printed visible before waiting.
        sink.flush()?;
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut interrupt => return Ok(End::Interrupted),
            () = tick => sink.tick()?,
            message = stream.next() => {
                if let Some(end) = handle(message, sink)? {
                    return Ok(end);
                }
            }
        }
    }
}

/// Handles one WebSocket message; `Some` when the stream is over.
fn handle_message(
    server: &str,
    message: Option<Result<Message, tungstenite::Error>>,
    sink: &mut Sink,
) -> Result<Option<End>, Halt> {
    let text = match message {
        None => {
            return Err(Halt::Failed(anyhow!(
                "the connection to the observer at {server} ended without a close message"
            )));
        }
        Some(Err(e)) => {
            return Err(Halt::Failed(anyhow!(
                "the connection to the observer at {server} failed: {e}"
            )));
        }
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Binary(bytes))) => match tungstenite::Utf8Bytes::try_from(bytes) {
            Ok(text) => text,
            Err(_) => {
                return Err(Halt::Failed(anyhow!(
                    "the observer at {server} sent a binary message that is not UTF-8 JSON"
                )));
            }
        },
        Some(Ok(Message::Close(frame))) => {
            return match frame {
                None => Ok(Some(End::Complete)),
                Some(f) if u16::from(f.code) == close::DONE => Ok(Some(End::Complete)),
                Some(f) if u16::from(f.code) == close::INVALID_REQUEST => Err(Halt::Failed(
                    anyhow!("the observer refused the request: {}", f.reason),
                )),
                Some(f) => Err(Halt::Failed(anyhow!(
                    "the observer at {server} closed the stream: {} (code {})",
                    if f.reason.is_empty() {
                        "no reason given"
                    } else {
                        f.reason.as_str()
                    },
                    u16::from(f.code)
                ))),
            };
        }
        Some(Ok(_)) => return Ok(None),
    };
    for line in text.split('\n') {
        handle_line(line, sink)?;
    }
    Ok(None)
}

/// One line from the observer: a response, or the error that ends the stream.
pub(crate) fn handle_line(line: &str, sink: &mut Sink) -> Result<(), Halt> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() {
        return Ok(());
    }
    // The observer writes the payload key first, so these prefixes identify flow and lost
    // lines without parsing them.
    if line.starts_with("{\"flow\":") && sink.raw_json_line(line, true)? {
        return Ok(());
    }
    if line.starts_with("{\"lost_events\":") && sink.raw_json_line(line, false)? {
        return Ok(());
    }
    match serde_json::from_str::<GetFlowsResponse>(line) {
        Ok(resp) => Ok(sink.response(&resp)?),
        Err(e) => match error_message(line) {
            Some(message) => Err(Halt::Failed(anyhow!(
                "the observer refused the request: {message}"
            ))),
            None => Err(Halt::Failed(anyhow!(
                "the observer sent a line that is not a GetFlowsResponse ({e}): {}",
                quote(line)
            ))),
        },
    }
}

/// The message of an `{"error":{"code":..., "message":...}}` line.
fn error_message(line: &str) -> Option<String> {
    serde_json::from_str::<ErrorBody>(line)
        .ok()
        .map(|body| body.error.message)
}

fn quote(line: &str) -> String {
    if line.len() <= QUOTE_LIMIT {
        return line.to_owned();
    }
    let mut end = QUOTE_LIMIT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}

/// What `/api/v1/status` says about the flows the observer holds, to explain an empty result
/// (hubble#131, hubble#251): `None` when it cannot be asked.
pub(crate) fn empty_result_hint(
    server: &str,
    since: Option<flowscope_model::Timestamp>,
) -> Option<String> {
    let host = split_server(server).1;
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    let status: ServerStatus = agent
        .get(&format!("http://{host}/api/v1/status"))
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()?;
    let num = status.num_flows;
    if num == 0 {
        return Some(format!(
            "no flows: the observer at {server} has not stored any flow yet"
        ));
    }
    let mut hint = format!("no flows matched; the observer at {server} holds {num} flows");
    if let (Some(oldest), Some(newest)) = (status.oldest_flow_time, status.newest_flow_time) {
        hint.push_str(&format!(" from {oldest} to {newest}"));
        if since.is_some_and(|since| since > newest) {
            hint.push_str("; --since is after the newest");
        }
    }
    Some(hint)
}
