//! The flow-stream protocol over WebSocket, as observer and relay speak it: the client's first
//! message is a JSON `GetFlowsRequest`; the server answers with `hubble observe -o json` lines and
//! closes with 1000 at the end of a finite request, 1001 when it shuts down, 1007 (with an
//! `error` line first) for a request it refuses, 1013 when it serves as many streams as it may.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use flowscope_model::{
    api::{ErrorBody, close},
    filter::{FilterSet, GetFlowsRequest},
};
use futures_util::{
    SinkExt as _, StreamExt as _,
    stream::{SplitSink, SplitStream},
};

/// How long a client may take to send its request after connecting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A request larger than this is refused: filters are short, and the server buffers the message.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// WebSocket close reasons are limited to 123 bytes by RFC 6455.
const MAX_CLOSE_REASON: usize = 123;

/// Where a flow stream's lines go: a WebSocket (one text message each), or a gRPC response
/// stream ([`crate::grpc::GrpcLines`]).
pub trait LineSink: Send {
    /// One `hubble observe -o json` line.
    fn line(&mut self, line: Utf8Bytes) -> impl Future<Output = Result<(), End>> + Send;
    /// After each batch.
    fn flush(&mut self) -> impl Future<Output = Result<(), End>> + Send;
    /// Completes when the sink takes the next line without waiting. A stream that finds it not
    /// ready lets go of what it has not sent before waiting, so a client that falls behind holds
    /// the sink's own bounded buffer and nothing of the history (which stays in the store).
    fn ready(&mut self) -> impl Future<Output = Result<(), End>> + Send;
    /// A response as a relay forwards it from an observer. A relay follows its observers in
    /// its client's encoding, so this is a line here and encoded bytes for a gRPC sink; the
    /// other way round it is converted.
    fn forward(&mut self, response: Forwarded) -> impl Future<Output = Result<(), End>> + Send {
        async move {
            match response {
                Forwarded::Line(line) => self.line(line).await,
                Forwarded::Encoded(encoded) => {
                    let line = encoded
                        .decode()
                        .map_err(|e| e.to_string())
                        .and_then(|r| flowscope_proto::convert::response_line(&r));
                    match line {
                        Ok(line) => self.line(line.into()).await,
                        // Not Hubble's message: nothing a client could read.
                        Err(e) => {
                            tracing::warn!("Dropped a response an observer sent: {e}");
                            Ok(())
                        }
                    }
                }
            }
        }
    }
}

/// One response of an observer's flow stream as a relay forwards it: the JSON line of its
/// WebSocket, or the wire bytes of its gRPC stream.
pub enum Forwarded {
    Line(Utf8Bytes),
    Encoded(flowscope_proto::Encoded),
}

impl LineSink for SplitSink<WebSocket, Message> {
    async fn line(&mut self, line: Utf8Bytes) -> Result<(), End> {
        self.feed(Message::Text(line)).await.map_err(|_| End::Gone)
    }

    async fn flush(&mut self) -> Result<(), End> {
        futures_util::SinkExt::flush(self)
            .await
            .map_err(|_| End::Gone)
    }

    // tungstenite buffers up to its write buffer (128 KiB) plus one message, and is not ready
    // again until a blocked write has been flushed.
    async fn ready(&mut self) -> Result<(), End> {
        std::future::poll_fn(|cx| self.poll_ready_unpin(cx))
            .await
            .map_err(|_| End::Gone)
    }
}

/// Why a stream ended early.
pub enum End {
    /// The client went away or the socket failed: nothing more to send.
    Gone,
    /// The server is shutting down.
    Shutdown,
}

/// The client sends nothing after its request; reading on keeps pings answered, and the
/// receiver completes when it leaves. Abort the task when the stream ends.
pub fn watch_client(
    mut rx: SplitStream<WebSocket>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
        let _ = gone_tx.send(());
    });
    (task, gone)
}

/// Closes a flow stream that ended: 1000 when the request is complete, 1001 with `shutdown`
/// when the server is going away, nothing when the client already left.
pub async fn close_stream(
    tx: &mut SplitSink<WebSocket, Message>,
    result: Result<(), End>,
    shutdown: &'static str,
) {
    let (code, reason) = match result {
        Ok(()) => (close::DONE, "end of flows"),
        Err(End::Shutdown) => (close::GOING_AWAY, shutdown),
        Err(End::Gone) => return,
    };
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// The client's first message as a checked request: None when it left without one, an error
/// (for [`refuse`]) when what it sent is not a valid `GetFlowsRequest` or nothing came within
/// [`REQUEST_TIMEOUT`]. The relay reads its clients' requests the same way.
pub async fn read_request(
    rx: &mut SplitStream<WebSocket>,
) -> Option<Result<(GetFlowsRequest, FilterSet), String>> {
    Some(
        match tokio::time::timeout(REQUEST_TIMEOUT, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => parse_request(t.as_str()),
            Ok(Some(Ok(Message::Binary(b)))) => match std::str::from_utf8(&b) {
                Ok(t) => parse_request(t),
                Err(_) => Err("request is not UTF-8 JSON".to_string()),
            },
            Ok(Some(Ok(_))) => Err("the first message must be a JSON GetFlowsRequest".to_string()),
            Ok(_) => return None,
            Err(_) => Err(format!(
                "no request within {}s: send a JSON GetFlowsRequest first",
                REQUEST_TIMEOUT.as_secs()
            )),
        },
    )
}

pub fn parse_request(text: &str) -> Result<(GetFlowsRequest, FilterSet), String> {
    let req: GetFlowsRequest =
        serde_json::from_str(text).map_err(|e| format!("invalid request: {e}"))?;
    req.validate()
        .map_err(|e| format!("invalid request: {e}"))?;
    let filters = FilterSet::compile(&req.whitelist, &req.blacklist)
        .map_err(|e| format!("invalid request: {e}"))?;
    Ok((req, filters))
}

/// Sends the full reason as a JSON error line (a close reason is capped at 123 bytes), then
/// closes with 1007 (invalid payload data) and as much of the reason as fits.
pub async fn refuse(tx: &mut SplitSink<WebSocket, Message>, reason: String) {
    refuse_with(tx, "INVALID_ARGUMENT", close::INVALID_REQUEST, reason).await
}

/// Refuses a stream over the server's bound on streams: `RESOURCE_EXHAUSTED`, closed with
/// 1013 (try again later); `reason` names the bound's flag.
pub async fn refuse_busy(tx: &mut SplitSink<WebSocket, Message>, reason: String) {
    refuse_with(tx, "RESOURCE_EXHAUSTED", close::TRY_AGAIN_LATER, reason).await
}

/// As [`refuse`], with a gRPC-style `code` in the error line and a WebSocket close code.
async fn refuse_with(
    tx: &mut SplitSink<WebSocket, Message>,
    code: &str,
    close_code: u16,
    reason: String,
) {
    let line = serde_json::to_string(&ErrorBody::new(code, reason.as_str())).unwrap_or_default();
    let _ = tx.send(Message::Text(line.into())).await;
    let mut short = reason;
    if short.len() > MAX_CLOSE_REASON {
        let mut cut = MAX_CLOSE_REASON - 3;
        while !short.is_char_boundary(cut) {
            cut -= 1;
        }
        short.truncate(cut);
        short.push_str("...");
    }
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: close_code,
            reason: short.into(),
        })))
        .await;
}
