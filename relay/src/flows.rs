//! `GET /api/v1/flows` on the relay: one request, answered from every connected observer.
//!
//! As Hubble's relay: the request is checked, then forwarded unchanged to each connected
//! observer (so `number` means N per node); the client first gets `node_status` lines naming
//! the connected and the unavailable nodes, then the observers' lines merged in time order
//! ([`SortBuffer`]). A node whose stream fails gets a `NODE_UNAVAILABLE` line with the reason;
//! when following, the relay re-attaches to it once it answers again, asking for the flows
//! since the last one it forwarded from it (none are lost if the observer still holds them),
//! and attaches to observers that join while the stream runs.
//!
//! The relay asks its observers in its client's encoding: a WebSocket client's request goes
//! to their WebSockets and their JSON lines are forwarded, a gRPC client's to their gRPC
//! `GetFlows` and their encoded responses are forwarded unchanged (only each response's kind
//! and time are read, for the merge), so no flow is converted on the way.
//!
//! Memory is bounded per request: each observer's lines go through a bounded channel (a slow
//! client slows the observers' sends, whose own buffers count what they must drop), and the
//! merge holds at most [`SORT_BUFFER_MAX`] lines.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{Utf8Bytes, WebSocket},
    },
    response::Response,
};
use flowscope_model::{
    Timestamp,
    api::close,
    filter::GetFlowsRequest,
    flow::{GetFlowsResponse, NodeState, NodeStatusEvent},
};
use flowscope_server::ws::{
    End, Forwarded, LineSink, MAX_REQUEST_BYTES, close_stream, read_request, refuse, refuse_busy,
    watch_client,
};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tracing::debug;

use crate::{
    RelayState,
    merge::SortBuffer,
    peers::{ObserverTls, Peer},
};

/// Lines the merge holds at most per request.
pub const SORT_BUFFER_MAX: usize = 1024;
/// A quiet observer holds the others' flows back this long at most (Hubble's relay flushes its
/// sort buffer every second too).
pub const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// Lines in flight from the observers to the merge, per request.
const CHANNEL_LINES: usize = 4096;
/// How long connecting to an observer's flow API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a following stream looks for observers to (re)attach to, besides on changes.
const REATTACH_INTERVAL: Duration = Duration::from_secs(2);

pub async fn flows(ws: WebSocketUpgrade, State(st): State<Arc<RelayState>>) -> Response {
    ws.max_message_size(MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| serve(socket, st))
}

/// One stream from one observer: its source in the merge (one per observer, kept when it is
/// re-attached) and which attachment it is, so lines still in flight from a stream that was
/// replaced are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamId {
    source: usize,
    epoch: u32,
}

/// How the relay asks its observers for a request's flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// Their WebSocket: JSON lines.
    WebSocket,
    /// Their gRPC `GetFlows`: encoded responses.
    Grpc,
}

/// What an observer's stream sends the merge.
enum Msg {
    Line {
        id: StreamId,
        time_ns: i64,
        flow: bool,
        line: Forwarded,
    },
    /// The observer ended the stream (request complete).
    End { id: StreamId },
    /// The stream failed; the message says why.
    Failed { id: StreamId, error: String },
    /// The observer refused the request (its error line): Hubble's NODE_ERROR, not retried for
    /// this request.
    Refused { id: StreamId, error: String },
}

/// One observer attached to this request.
struct Attached {
    peer: Arc<Peer>,
    /// The stream now attached.
    id: StreamId,
    /// Still streaming.
    open: bool,
    /// Time of the newest line forwarded from it, to resume after a failure.
    last_ns: Option<i64>,
    failed_at: Option<Instant>,
    task: tokio::task::AbortHandle,
}

async fn serve(socket: WebSocket, st: Arc<RelayState>) {
    let (mut tx, mut rx) = socket.split();
    let Some(request) = read_request(&mut rx).await else {
        return;
    };
    let request = match request {
        Ok((request, _filters)) => request,
        Err(reason) => {
            refuse(&mut tx, reason).await;
            return;
        }
    };
    let Some(_request) = Request::new(&st) else {
        refuse_busy(&mut tx, too_many(&st)).await;
        return;
    };
    let (drain, mut gone) = watch_client(rx);
    let mut merge = Merge::new(&st, request, Upstream::WebSocket);
    let result = merge.run(&mut tx, &mut gone).await;
    merge.stop();
    drain.abort();
    close_stream(&mut tx, result, SHUTTING_DOWN).await;
}

/// Why a stream ends when the relay stops.
pub(crate) const SHUTTING_DOWN: &str = "relay shutting down";

/// One flow request counted against `--max-flow-requests` while it lives: each holds a
/// connection to every observer and a merge buffer, so their number is bounded, and a client
/// over the bound is told so (and may retry).
pub(crate) struct Request(Arc<RelayState>);

impl Request {
    pub(crate) fn new(st: &Arc<RelayState>) -> Option<Request> {
        if st.metrics.requests.inc() >= st.max_requests as i64 {
            st.metrics.requests.dec();
            st.metrics.requests_refused.inc();
            return None;
        }
        Some(Request(st.clone()))
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.0.metrics.requests.dec();
    }
}

/// The refusal of a request over the bound, over WebSocket and gRPC alike.
pub(crate) fn too_many(st: &RelayState) -> String {
    format!(
        "the relay serves at most {} flow streams at once (--max-flow-requests); try again later",
        st.max_requests
    )
}

pub(crate) struct Merge<'a> {
    st: &'a RelayState,
    request: GetFlowsRequest,
    attached: BTreeMap<String, Attached>,
    /// Each observer's source in the merge and its last attachment, kept when it leaves, so
    /// re-attaching reuses the source: a long follow with a flapping node stays the same size.
    slots: BTreeMap<String, StreamId>,
    /// The observer of each source.
    sources: Vec<String>,
    upstream: Upstream,
    buffer: SortBuffer<(bool, Forwarded)>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// Lines counted in the merge-queue gauge now.
    queued: i64,
}

impl<'a> Merge<'a> {
    pub(crate) fn new(st: &'a RelayState, request: GetFlowsRequest, upstream: Upstream) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_LINES);
        Merge {
            st,
            request,
            attached: BTreeMap::new(),
            slots: BTreeMap::new(),
            sources: Vec::new(),
            upstream,
            buffer: SortBuffer::new(SORT_BUFFER_MAX, IDLE_FLUSH),
            tx,
            rx,
            queued: 0,
        }
    }

    /// Starts streaming from `peer` with `request`, replacing its previous stream if any.
    fn attach(&mut self, peer: Arc<Peer>, request: &GetFlowsRequest, last_ns: Option<i64>) {
        let now = Instant::now();
        let id = match self.slots.get(&peer.address) {
            Some(prev) => {
                self.buffer.reopen(prev.source, now);
                StreamId {
                    source: prev.source,
                    epoch: prev.epoch.wrapping_add(1),
                }
            }
            None => {
                self.sources.push(peer.address.clone());
                StreamId {
                    source: self.buffer.add_source(now),
                    epoch: 0,
                }
            }
        };
        self.slots.insert(peer.address.clone(), id);
        let task = tokio::spawn(pump(
            self.st.pool.tls.clone(),
            peer.address.clone(),
            request.clone(),
            self.upstream,
            id,
            self.tx.clone(),
        ))
        .abort_handle();
        if let Some(old) = self.attached.get(&peer.address) {
            old.task.abort();
        }
        self.attached.insert(
            peer.address.clone(),
            Attached {
                peer,
                id,
                open: true,
                last_ns,
                failed_at: None,
                task,
            },
        );
    }

    /// The attachment `id` belongs to, if it is still the current one.
    fn current(&mut self, id: StreamId) -> Option<&mut Attached> {
        let address = self.sources.get(id.source)?;
        self.attached.get_mut(address).filter(|a| a.id == id)
    }

    pub(crate) fn stop(&mut self) {
        for a in self.attached.values() {
            a.task.abort();
        }
        self.st.metrics.merge_queue.dec_by(self.queued);
        self.queued = 0;
    }

    /// Streams the merge into `tx` until the request is complete, `gone` completes (the
    /// client left) or the relay shuts down.
    pub(crate) async fn run(
        &mut self,
        tx: &mut impl LineSink,
        gone: &mut (impl Future + Unpin),
    ) -> Result<(), End> {
        let follow = self.request.follow;
        let until_ns = self.request.until.map(|t| t.as_unix_nanos());
        let mut changes = self.st.pool.subscribe();
        let mut shutdown = self.st.shutdown.clone();
        // Who is there now: connected nodes get the request, the others are reported.
        let (mut connected, mut unavailable) = (Vec::new(), Vec::new());
        for peer in self.st.pool.peers() {
            if peer.is_connected() {
                connected.push(peer.name());
                let request = self.request.clone();
                self.attach(peer, &request, None);
            } else {
                unavailable.push(peer.name());
            }
        }
        changes.mark_unchanged();
        if !connected.is_empty() {
            send_status(tx, NodeState::Connected, connected, String::new()).await?;
        }
        if !unavailable.is_empty() {
            send_status(tx, NodeState::Unavailable, unavailable, String::new()).await?;
        }
        tx.flush().await?;

        let mut inbox = Vec::with_capacity(256);
        let mut out = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_scan = Instant::now();
        loop {
            let mut statuses: Vec<(NodeState, Vec<String>, String)> = Vec::new();
            tokio::select! {
                n = self.rx.recv_many(&mut inbox, 256) => {
                    debug_assert!(n > 0, "the merge holds a sender");
                }
                _ = tick.tick() => {}
                _ = changes.changed(), if follow => {
                    self.reattach(&mut statuses);
                    last_scan = Instant::now();
                }
                _ = &mut *gone => return Err(End::Gone),
                _ = shutdown.changed() => return Err(End::Shutdown),
            }
            if follow && last_scan.elapsed() >= REATTACH_INTERVAL {
                self.reattach(&mut statuses);
                last_scan = Instant::now();
            }
            for msg in inbox.drain(..) {
                self.take(msg, &mut statuses);
            }
            let now = Instant::now();
            // Everything ended: the request is complete, unless following, which waits for
            // observers to come back until `until`.
            let until_passed = until_ns.is_some_and(|u| now_unix_nanos() > u);
            let finished = self.buffer.open_sources() == 0 && (!follow || until_passed);
            if finished {
                self.buffer.drain(now, &mut out);
            } else {
                self.buffer.pop_ready(now, &mut out);
            }
            let flows = send(tx, &mut out, statuses).await?;
            let held = self.buffer.len() as i64;
            self.st.metrics.merge_queue.inc_by(held - self.queued);
            self.queued = held;
            self.st.metrics.flows_forwarded.inc_by(flows);
            if finished {
                return Ok(());
            }
        }
    }

    /// Takes one message from an observer's stream. Messages of a stream that was replaced or
    /// removed since are dropped.
    fn take(&mut self, msg: Msg, statuses: &mut Vec<(NodeState, Vec<String>, String)>) {
        match msg {
            Msg::Line {
                id,
                time_ns,
                flow,
                line,
            } => {
                let Some(a) = self.current(id) else {
                    return;
                };
                if flow {
                    a.last_ns = Some(a.last_ns.map_or(time_ns, |l| l.max(time_ns)));
                }
                self.buffer.push(id.source, time_ns, (flow, line));
            }
            Msg::End { id } => {
                if let Some(a) = self.current(id) {
                    a.open = false;
                    self.buffer.end(id.source);
                }
            }
            Msg::Refused { id, error } => {
                if let Some(a) = self.current(id) {
                    a.open = false;
                    let name = a.peer.name();
                    self.buffer.end(id.source);
                    self.st.metrics.peer_stream_errors.inc();
                    statuses.push((NodeState::Error, vec![name], error));
                }
            }
            Msg::Failed { id, error } => {
                if let Some(a) = self.current(id) {
                    a.open = false;
                    a.failed_at = Some(Instant::now());
                    let (name, address) = (a.peer.name(), a.peer.address.clone());
                    self.buffer.end(id.source);
                    self.st.metrics.peer_stream_errors.inc();
                    debug!(peer = %name, "Flow stream failed: {error}");
                    self.st.pool.report_offline(&address, &error);
                    statuses.push((NodeState::Unavailable, vec![name], error));
                }
            }
        }
    }

    /// Following: attach to observers that connected since, and re-attach to those whose
    /// stream failed and that answer again.
    fn reattach(&mut self, statuses: &mut Vec<(NodeState, Vec<String>, String)>) {
        let peers = self.st.pool.peers();
        // Observers no longer among the peers (removed from the peers file or the peer
        // service): their streams end, and the client is told they are gone.
        let gone: Vec<String> = self
            .attached
            .keys()
            .filter(|a| !peers.iter().any(|p| &p.address == *a))
            .cloned()
            .collect();
        let mut gone_names = Vec::new();
        for address in gone {
            if let Some(a) = self.attached.remove(&address) {
                a.task.abort();
                self.buffer.end(a.id.source);
                gone_names.push(a.peer.name());
            }
        }
        if !gone_names.is_empty() {
            statuses.push((NodeState::Gone, gone_names, String::new()));
        }
        let mut joined = Vec::new();
        for peer in peers {
            if !peer.is_connected() {
                continue;
            }
            let resume = match self.attached.get(&peer.address) {
                None => None,
                Some(a) if a.open => continue,
                // Ended on its own (`until` reached): nothing more to ask.
                Some(a) if a.failed_at.is_none() => continue,
                Some(a) => {
                    if a.failed_at.is_some_and(|t| t.elapsed() < REATTACH_INTERVAL) {
                        continue;
                    }
                    Some(a.last_ns)
                }
            };
            // New flows only for a node that joins; for one that comes back, the flows since
            // the last one forwarded from it.
            let mut request = self.request.clone();
            request.number = 0;
            request.first = false;
            request.since = match resume {
                Some(Some(last)) => Some(Timestamp::from_unix_nanos(last.saturating_add(1))),
                _ => None,
            };
            let last = resume.flatten();
            joined.push(peer.name());
            self.attach(peer, &request, last);
        }
        if !joined.is_empty() {
            statuses.push((NodeState::Connected, joined, String::new()));
        }
    }
}

/// Sends node status lines, then `out`, and flushes once; returns the flows sent.
async fn send(
    tx: &mut impl LineSink,
    out: &mut Vec<(bool, Forwarded)>,
    statuses: Vec<(NodeState, Vec<String>, String)>,
) -> Result<u64, End> {
    if out.is_empty() && statuses.is_empty() {
        return Ok(0);
    }
    for (state, names, message) in statuses {
        send_status(tx, state, names, message).await?;
    }
    let mut flows = 0;
    for (flow, line) in out.drain(..) {
        flows += u64::from(flow);
        tx.forward(line).await?;
    }
    tx.flush().await?;
    Ok(flows)
}

async fn send_status(
    tx: &mut impl LineSink,
    state: NodeState,
    node_names: Vec<String>,
    message: String,
) -> Result<(), End> {
    let response = GetFlowsResponse::from_node_status(
        NodeStatusEvent {
            state_change: state,
            node_names,
            message,
        },
        "",
        Timestamp::from_unix_nanos(now_unix_nanos()),
    );
    let line = serde_json::to_string(&response.as_ref()).unwrap_or_default();
    tx.line(line.into()).await
}

/// The flow lines the connected observers answer `request` with (not following), unordered,
/// for the relay's own views (the graph). The channel ends when every observer has answered;
/// dropping it stops the streams.
pub fn history(st: &RelayState, request: &GetFlowsRequest) -> mpsc::Receiver<Utf8Bytes> {
    let (tx, mut rx) = mpsc::channel(CHANNEL_LINES);
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_LINES);
    let pumps: Vec<_> = st
        .pool
        .peers()
        .into_iter()
        .filter(|p| p.is_connected())
        .enumerate()
        .map(|(source, p)| {
            let id = StreamId { source, epoch: 0 };
            tokio::spawn(pump(
                st.pool.tls.clone(),
                p.address.clone(),
                request.clone(),
                Upstream::WebSocket,
                id,
                tx.clone(),
            ))
        })
        .collect();
    drop(tx);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Msg::Line {
                flow: true,
                line: Forwarded::Line(line),
                ..
            } = msg
                && out_tx.send(line).await.is_err()
            {
                break;
            }
        }
        for p in pumps {
            p.abort();
        }
    });
    out_rx
}

/// Streams one observer's answer to `request` into the merge.
async fn pump(
    tls: Option<ObserverTls>,
    address: String,
    request: GetFlowsRequest,
    upstream: Upstream,
    id: StreamId,
    tx: mpsc::Sender<Msg>,
) {
    let result = match upstream {
        Upstream::WebSocket => {
            let text = serde_json::to_string(&request).unwrap_or_default();
            stream_from(tls.map(|t| t.http1).as_ref(), &address, text, id, &tx).await
        }
        Upstream::Grpc => stream_grpc(tls.map(|t| t.h2), &address, &request, id, &tx).await,
    };
    let msg = match result {
        Ok(()) => Msg::End { id },
        Err(StreamError::Refused(error)) => Msg::Refused { id, error },
        Err(StreamError::Failed(error)) => Msg::Failed { id, error },
    };
    let _ = tx.send(msg).await;
}

/// Why an observer's stream ended early.
enum StreamError {
    /// The connection failed or closed abnormally: the node is unavailable for now.
    Failed(String),
    /// The observer answered the request with an error line.
    Refused(String),
}

impl From<String> for StreamError {
    fn from(e: String) -> Self {
        StreamError::Failed(e)
    }
}

async fn stream_from(
    tls: Option<&flowscope_tls::Connector>,
    address: &str,
    request: String,
    id: StreamId,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), StreamError> {
    match tls {
        None => {
            let url = format!("ws://{address}/api/v1/flows");
            let connect = tokio_tungstenite::connect_async(&url);
            let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| format!("no WebSocket connection to {address} within 5 s"))?
                .map_err(|e| format!("connecting to {url}: {e}"))?;
            read_stream(ws, address, request, id, tx).await
        }
        Some(tls) => {
            let url = format!("wss://{address}/api/v1/flows");
            let connect = async {
                let stream = tls.connect(address).await?;
                tokio_tungstenite::client_async(&url, stream)
                    .await
                    .map_err(|e| format!("connecting to {url}: {e}"))
            };
            let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| format!("no WebSocket connection to {address} within 5 s"))??;
            read_stream(ws, address, request, id, tx).await
        }
    }
}

/// Sends the request to an observer's gRPC `GetFlows` and forwards what it answers as it came.
async fn stream_grpc(
    tls: Option<flowscope_tls::Connector>,
    address: &str,
    request: &GetFlowsRequest,
    id: StreamId,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), StreamError> {
    let request =
        flowscope_proto::convert::request_to_proto(request).map_err(StreamError::Refused)?;
    let channel = flowscope_proto::client::connect(address, tls, CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("connecting to {address} (gRPC): {e}"))?;
    // The observer's answer to the request (as its WebSocket's error line would be), or a
    // stream that broke off.
    let failed = |status: tonic::Status| match status.code() {
        code @ (tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Aborted) => StreamError::Failed(format!(
            "reading flows from {address}: {} ({code:?})",
            status.message()
        )),
        _ => StreamError::Refused(format!(
            "{address} refused the request: {}",
            status.message()
        )),
    };
    let mut responses = flowscope_proto::client::get_flows_encoded(channel, request)
        .await
        .map_err(failed)?;
    loop {
        let Some(response) = responses.message().await.map_err(failed)? else {
            return Ok(());
        };
        let head = response.head().map_err(|e| {
            StreamError::Failed(format!(
                "{address} sent a response that is not a GetFlowsResponse: {e}"
            ))
        })?;
        let msg = Msg::Line {
            id,
            time_ns: head.time_ns.unwrap_or_else(now_unix_nanos),
            flow: head.kind == flowscope_proto::Kind::Flow,
            line: Forwarded::Encoded(response),
        };
        if tx.send(msg).await.is_err() {
            return Ok(());
        }
    }
}

/// Sends the request on an observer's WebSocket and forwards what it answers.
async fn read_stream<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    address: &str,
    request: String,
    id: StreamId,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), StreamError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(tungstenite::Message::Text(request.into()))
        .await
        .map_err(|e| format!("sending the request to {address}: {e}"))?;
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| format!("reading flows from {address}: {e}"))? {
            tungstenite::Message::Text(text) => {
                let bytes: bytes::Bytes = text.into();
                let Ok(line) = Utf8Bytes::try_from(bytes) else {
                    continue;
                };
                let (time_ns, kind) = line_head(&line);
                if kind == Kind::Error {
                    return Err(StreamError::Refused(format!(
                        "{address} refused the request: {}",
                        error_message(&line)
                    )));
                }
                let msg = Msg::Line {
                    id,
                    time_ns: time_ns.unwrap_or_else(now_unix_nanos),
                    flow: kind == Kind::Flow,
                    line: Forwarded::Line(line),
                };
                if tx.send(msg).await.is_err() {
                    return Ok(());
                }
            }
            tungstenite::Message::Close(frame) => {
                return match frame {
                    Some(f) if u16::from(f.code) == close::DONE => Ok(()),
                    Some(f) => Err(StreamError::Failed(format!(
                        "{address} closed the stream: {} {}",
                        u16::from(f.code),
                        f.reason
                    ))),
                    None => Err(StreamError::Failed(format!("{address} closed the stream"))),
                };
            }
            _ => {}
        }
    }
    Err(StreamError::Failed(format!("{address}: connection closed")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Flow,
    Other,
    Error,
}

/// The time and kind of one `GetFlowsResponse` line, without building the flow. Observers
/// write the kind first and the time last; a line laid out otherwise is parsed in full.
fn line_head(line: &str) -> (Option<i64>, Kind) {
    let kind = if line.starts_with("{\"flow\":") {
        Some(Kind::Flow)
    } else if line.starts_with("{\"lost_events\":") || line.starts_with("{\"node_status\":") {
        Some(Kind::Other)
    } else if line.starts_with("{\"error\":") {
        return (None, Kind::Error);
    } else {
        None
    };
    let fast = kind.and_then(|k| {
        let tail = line.strip_suffix("\"}")?;
        let at = tail.rfind("\"time\":\"")?;
        let ts: Timestamp = tail[at + 8..].parse().ok()?;
        Some((Some(ts.as_unix_nanos()), k))
    });
    if let Some(head) = fast {
        return head;
    }
    #[derive(serde::Deserialize)]
    struct Head {
        time: Option<Timestamp>,
        flow: Option<serde::de::IgnoredAny>,
        error: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_str::<Head>(line) {
        Ok(h) if h.error.is_some() => (None, Kind::Error),
        Ok(h) => (
            h.time.map(|t| t.as_unix_nanos()),
            if h.flow.is_some() {
                Kind::Flow
            } else {
                Kind::Other
            },
        ),
        Err(_) => (None, Kind::Other),
    }
}

fn error_message(line: &str) -> String {
    serde_json::from_str::<flowscope_model::api::ErrorBody>(line)
        .map(|body| body.error.message)
        .unwrap_or_else(|_| line.chars().take(200).collect())
}

pub fn now_unix_nanos() -> i64 {
    Timestamp::now().as_unix_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_heads_are_read_without_building_the_flow() {
        let flow = r#"{"flow":{"time":"2026-11-25T10:00:00.000000001Z","verdict":"FORWARDED"},"node_name":"n1","time":"2026-11-25T10:00:00.000000001Z"}"#;
        let t: Timestamp = "2026-11-25T10:00:00.000000001Z".parse().unwrap();
        assert_eq!(line_head(flow), (Some(t.as_unix_nanos()), Kind::Flow));
        let lost = r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"},"node_name":"n1","time":"2026-11-25T10:00:00.000000001Z"}"#;
        assert_eq!(line_head(lost), (Some(t.as_unix_nanos()), Kind::Other));
        // Another server's field order: parsed in full.
        let other = r#"{"time":"2026-11-25T10:00:00.000000001Z","node_name":"n1","flow":{"verdict":"DROPPED"}}"#;
        assert_eq!(line_head(other), (Some(t.as_unix_nanos()), Kind::Flow));
        let err = r#"{"error":{"code":"INVALID_ARGUMENT","message":"bad"}}"#;
        assert_eq!(line_head(err).1, Kind::Error);
        assert_eq!(error_message(err), "bad");
    }
}
