//! The observer's HTTP and WebSocket API (axum):
//! - `GET /api/v1/flows` (WebSocket): the first client message is a `GetFlowsRequest`; the server
//!   answers with `hubble observe -o json` lines: flows and lost events.
//! - `GET /api/v1/status`, `/api/v1/nodes`, `/healthz`, `/readyz`.
//! - `GET /api/v1/graph`: the service map of the stored flows (`graph`).
//! - `GET /` and `/ui/*`: the web UI (`flowscope_server::ui`).
//!
//! The flow-stream protocol's request reading, refusals and closing are the server kit's
//! (`flowscope_server::ws`), shared with the relay.

use std::{
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, Utf8Bytes, WebSocket},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use flowscope_model::{
    Timestamp,
    api::{
        AttachedInterface, DatapathCounters, Endpoint, ExportStatus, KubernetesStatus, NodeInfo,
        PolicyStatus, ServerStatus,
    },
    filter::{FilterSet, GetFlowsRequest},
    flow::{FieldMask, NodeState},
};
use flowscope_server::ws::{
    End, LineSink, MAX_REQUEST_BYTES, close_stream, read_request, refuse, refuse_busy, watch_client,
};
use futures_util::{StreamExt as _, stream::SplitSink};
use tokio::sync::watch;
use tracing::debug;

use crate::{
    event::{Cached, Record, ring_lost_line, unix_now_ns},
    pipeline::FlowStore,
    source::datapath::DatapathStats,
    store::{READ_BATCH, Read, Timestamped as _},
};

/// What the status endpoint reports beyond the store, refreshed once a second by the pipeline.
#[derive(Clone, Debug, Default)]
pub struct RuntimeStatus {
    /// Reported at the top level of the status body, as Hubble's `flows_rate`.
    pub flows_rate: f64,
    pub interfaces: Vec<AttachedInterface>,
    pub datapath: DatapathCounters,
    /// With a pinned datapath.
    pub pins: Option<flowscope_model::api::PinStatus>,
    /// Datapath events decoded by the pipeline.
    pub events_decoded: u64,
    /// Ring buffer records of an unexpected size, skipped (never expected).
    pub malformed_events: u64,
    /// Present when the observer enforces policies (`--policy-dir`).
    pub policy: Option<PolicyStatus>,
    /// The endpoints known now (served by `/api/v1/endpoints`).
    pub registry: Arc<crate::endpoints::Registry>,
    /// Present when flows are exported to a file (`--export-file`).
    pub export: Option<ExportStatus>,
    /// The L7 proxy's live counters, when it runs (with policies).
    pub proxy_stats: Option<Arc<crate::proxy::ProxyStats>>,
    /// The Kubernetes source's newest snapshot.
    pub cluster: Option<tokio::sync::watch::Receiver<Arc<flowscope_kubernetes::ClusterState>>>,
}

impl RuntimeStatus {
    /// The Kubernetes source's state, read live.
    fn kubernetes(&self) -> Option<KubernetesStatus> {
        self.cluster.as_ref().map(|c| {
            let state = c.borrow();
            KubernetesStatus {
                api: state.status.clone(),
                pods: state.pods.len(),
                namespaces: state.namespaces.len(),
                policies: state.policies.len(),
                services: state.services.len(),
                nodes: state.nodes.len(),
                revision: state.revision,
            }
        })
    }
}

impl From<&DatapathStats> for DatapathCounters {
    fn from(s: &DatapathStats) -> Self {
        use flowscope_common::*;
        let c = |i: u32| s.counters[i as usize];
        DatapathCounters {
            packets: c(STAT_PACKETS),
            events: c(STAT_EVENTS),
            events_lost: c(STAT_EVENTS_LOST),
            truncated_packets: c(STAT_TRUNCATED),
            non_ip_packets: c(STAT_NON_IP),
            fragments: c(STAT_FRAGMENTS),
            dropped_packets: c(STAT_DROPPED),
            connections_created: c(STAT_CT_CREATED),
            conntrack_full: c(STAT_CT_FULL),
            proxy_redirects: c(STAT_PROXY_REDIRECTS),
            proxy_failures: c(STAT_PROXY_FAILURES),
        }
    }
}

pub struct AppState {
    pub store: Arc<FlowStore>,
    pub node_name: Arc<str>,
    pub started: Instant,
    pub runtime: Mutex<RuntimeStatus>,
    pub ready: AtomicBool,
    /// Flows subscribers missed because the store overwrote them first.
    pub ring_lost: AtomicU64,
    pub subscribers: AtomicU64,
    /// Flow streams served at once at most (`--max-subscribers`).
    pub max_subscribers: u64,
    /// Becomes true on shutdown: streams close with "going away".
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// A node's API state around `store`, not yet ready, with nothing counted; `shutdown`
    /// ends its streams.
    pub fn new(
        store: Arc<FlowStore>,
        node_name: &str,
        max_subscribers: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        AppState {
            store,
            node_name: node_name.into(),
            started: Instant::now(),
            runtime: Mutex::new(RuntimeStatus::default()),
            ready: false.into(),
            ring_lost: 0.into(),
            subscribers: 0.into(),
            max_subscribers,
            shutdown,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/flows", get(flows))
        .route("/api/v1/status", get(status))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/endpoints", get(endpoints))
        .route("/api/v1/policies", get(policies))
        .route("/api/v1/graph", get(crate::graph::graph))
        .route("/", get(flowscope_server::ui::index))
        .route("/ui/{file}", get(flowscope_server::ui::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // Hubble's gRPC API on the same port (HTTP/2), for Hubble's own tools.
        .route_service(
            "/observer.Observer/{*method}",
            flowscope_proto::servers::observer::observer_server::ObserverServer::new(
                crate::grpc::GrpcObserver(state.clone()),
            ),
        )
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn status(State(st): State<Arc<AppState>>) -> Json<ServerStatus> {
    let s = st.store.status();
    let runtime = st.runtime.lock().map(|r| r.clone()).unwrap_or_default();
    Json(ServerStatus {
        num_flows: s.len as u64,
        max_flows: s.capacity as u64,
        seen_flows: s.total_written,
        flows_rate: runtime.flows_rate,
        uptime_ns: st.started.elapsed().as_nanos() as u64,
        version: env!("CARGO_PKG_VERSION").to_string(),
        // One node: this one, connected since it answers.
        num_connected_nodes: 1,
        num_unavailable_nodes: 0,
        unavailable_nodes: Vec::new(),
        oldest_flow_time: s.oldest_time_ns.map(Timestamp::from_unix_nanos),
        newest_flow_time: s.newest_time_ns.map(Timestamp::from_unix_nanos),
        subscribers: st.subscribers.load(Ordering::Relaxed),
        node_name: Some(st.node_name.to_string()),
        ring_lost_events: st.ring_lost.load(Ordering::Relaxed),
        kubernetes: runtime.kubernetes(),
        proxy: runtime.proxy_stats.as_ref().map(|p| p.status()),
        interfaces: Some(runtime.interfaces),
        datapath: Some(runtime.datapath),
        pins: runtime.pins,
        events_decoded: Some(runtime.events_decoded),
        malformed_events: Some(runtime.malformed_events),
        policy: runtime.policy,
        export: runtime.export,
        relay: None,
    })
}

/// `GET /api/v1/nodes`: this observer, the one node it is.
async fn nodes(State(st): State<Arc<AppState>>) -> Json<Vec<NodeInfo>> {
    Json(vec![node_info(&st)])
}

/// This observer as a node.
pub(crate) fn node_info(st: &AppState) -> NodeInfo {
    let s = st.store.status();
    let rate = st.runtime.lock().map(|r| r.flows_rate).unwrap_or(0.0);
    NodeInfo {
        name: st.node_name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        address: String::new(),
        state: NodeState::Connected,
        uptime_ns: st.started.elapsed().as_nanos() as u64,
        num_flows: s.len as u64,
        max_flows: s.capacity as u64,
        seen_flows: s.total_written,
        flows_rate: rate,
        error: None,
    }
}

async fn endpoints(State(st): State<Arc<AppState>>) -> Json<Vec<Endpoint>> {
    let runtime = st.runtime.lock().map(|r| r.clone()).unwrap_or_default();
    let revision = runtime.policy.as_ref().map_or(0, |p| p.revision);
    let lines = runtime
        .registry
        .endpoints
        .iter()
        .zip(&runtime.registry.specs)
        .map(|(ep, spec)| {
            let key = format!("{}/{}", ep.namespace, ep.pod_name);
            let (ingress, egress) = runtime
                .policy
                .as_ref()
                .and_then(|p| p.enforcement.get(&key).copied())
                .unwrap_or((false, false));
            Endpoint {
                id: ep.id,
                identity: ep.identity,
                namespace: ep.namespace.clone(),
                pod_name: ep.pod_name.clone(),
                labels: ep.labels.clone(),
                ips: spec.ips.iter().map(|i| i.to_string()).collect(),
                interface: spec.interface.clone(),
                ingress_enforcement: ingress,
                egress_enforcement: egress,
                policy_revision: revision,
            }
        })
        .collect();
    Json(lines)
}

async fn policies(State(st): State<Arc<AppState>>) -> Response {
    let runtime = st.runtime.lock().map(|r| r.clone()).unwrap_or_default();
    match runtime.policy {
        Some(p) => Json(p).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this observer enforces no policies (start it with --policy-dir DIR)",
        )
            .into_response(),
    }
}

async fn flows(ws: WebSocketUpgrade, State(st): State<Arc<AppState>>) -> Response {
    ws.max_message_size(MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| serve_flows(socket, st))
}

async fn serve_flows(socket: WebSocket, st: Arc<AppState>) {
    let (mut tx, mut rx) = socket.split();
    let Some(request) = read_request(&mut rx).await else {
        return;
    };
    let (request, filters) = match request {
        Ok(r) => r,
        Err(reason) => {
            debug!(%reason, "Refusing flow request");
            refuse(&mut tx, reason).await;
            return;
        }
    };
    // Each stream is a task and a socket: their number is bounded, and a client over the
    // bound is told so (and may retry).
    let Some(_subscriber) = Subscriber::new(&st) else {
        refuse_busy(&mut tx, too_many(&st)).await;
        return;
    };
    let (drain, gone) = watch_client(rx);
    let result = tokio::select! {
        r = stream(&mut tx, &st, &request, &filters) => r,
        _ = gone => Err(End::Gone),
    };
    drain.abort();
    close_stream(&mut tx, result, SHUTTING_DOWN).await;
}

/// Why a stream ends when the observer stops.
pub(crate) const SHUTTING_DOWN: &str = "observer shutting down";

/// One flow stream counted against `--max-subscribers` while it lives.
pub(crate) struct Subscriber(Arc<AppState>);

impl Subscriber {
    /// None when the observer already serves as many streams as it may.
    pub(crate) fn new(st: &Arc<AppState>) -> Option<Subscriber> {
        if st.subscribers.fetch_add(1, Ordering::Relaxed) >= st.max_subscribers {
            st.subscribers.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Subscriber(st.clone()))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The refusal of a stream over the bound, over WebSocket and gRPC alike.
pub(crate) fn too_many(st: &AppState) -> String {
    format!(
        "the observer serves at most {} flow streams at once (--max-subscribers); try again later",
        st.max_subscribers
    )
}

/// Where a flow stream goes: a WebSocket, or a gRPC response stream. Lines of the stream's
/// own (a masked flow, a loss this reader noticed) go through [`LineSink::line`].
pub(crate) trait FlowSink: LineSink {
    /// A stored record as it is (its encoding made once for every subscriber).
    fn record(&mut self, e: &Arc<Cached>) -> impl Future<Output = Result<(), End>> + Send;
}

impl FlowSink for SplitSink<WebSocket, Message> {
    async fn record(&mut self, e: &Arc<Cached>) -> Result<(), End> {
        self.line(e.json()).await
    }
}

/// Serves one request: history first (last N / first N / since), then, when following, new
/// flows as they are stored.
pub(crate) async fn stream(
    sink: &mut impl FlowSink,
    st: &AppState,
    req: &GetFlowsRequest,
    filters: &FilterSet,
) -> Result<(), End> {
    let store = &st.store;
    let since_ns = req.since.map(|t| t.as_unix_nanos());
    let until_ns = req.until.map(|t| t.as_unix_nanos());
    let everything = filters.matches_everything();
    // Positioning walks compact records; a filter needs the flow built to judge one.
    let record_matches = |r: &Arc<Record>| match &**r {
        Record::Flow(f) => everything || filters.matches(&f.to_flow()),
        Record::Lost { .. } => false,
    };
    let matches = |c: &Arc<Cached>| c.flow().is_some_and(|f| filters.matches(f));
    let number = usize::try_from(req.number).unwrap_or(usize::MAX);
    let start = if req.first {
        match since_ns {
            Some(s) => store.since_pos(s),
            None => store.first_pos(),
        }
    } else if req.follow && number == 0 && since_ns.is_none() {
        store.follow_pos()
    } else {
        // last N (0 without follow: everything retained), counting only flows that pass.
        let n = if number == 0 { usize::MAX } else { number };
        store.last_pos(n, since_ns, record_matches)
    };
    let mut out = Vec::with_capacity(READ_BATCH);
    let mut sender = Sender {
        sink,
        st,
        // Checked when the request was parsed.
        mask: req.mask().ok().flatten(),
        sent: 0,
        limit: if req.first && number > 0 {
            Some(number)
        } else {
            None
        },
        since_ns,
        until_ns,
    };
    let mut pos = start.pos;
    // History: up to the newest flow stored when the request arrived.
    while pos < start.end {
        let r = store.read(pos, start.end, READ_BATCH, &mut out);
        pos = match sender.batch(r, &mut out, &matches).await? {
            Sent::Done => return Ok(()),
            Sent::All => r.pos,
            Sent::Stopped { at } => at,
        };
        if r.copied == 0 {
            break;
        }
    }
    if !req.follow {
        return Ok(());
    }
    let mut shutdown = st.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Err(End::Shutdown);
        }
        // Following stops at `until` even when no flow arrives after it.
        let until_wait = async {
            match until_ns {
                Some(u) => {
                    let now = unix_now_ns();
                    if u > now {
                        tokio::time::sleep(Duration::from_nanos((u - now) as u64)).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = store.wait_for(pos) => {}
            _ = shutdown.changed() => return Err(End::Shutdown),
            _ = until_wait => return Ok(()),
        }
        let r = store.read(pos, u64::MAX, READ_BATCH, &mut out);
        pos = match sender.batch(r, &mut out, &matches).await? {
            Sent::Done => return Ok(()),
            Sent::All => r.pos,
            // Still stored (or lost, which the next read reports): no need to wait.
            Sent::Stopped { at } => at,
        };
    }
}

struct Sender<'a, S> {
    sink: &'a mut S,
    st: &'a AppState,
    mask: Option<FieldMask>,
    sent: usize,
    limit: Option<usize>,
    since_ns: Option<i64>,
    until_ns: Option<i64>,
}

/// How far [`Sender::batch`] got.
enum Sent {
    /// Every item of the batch was judged.
    All,
    /// The request is complete (first N sent, or past `until`).
    Done,
    /// The client was not ready for the item at sequence number `at`: the batch was let go
    /// and reading resumes there once the client is ready.
    Stopped { at: u64 },
}

impl<S: FlowSink> Sender<'_, S> {
    /// Sends what passes from one batch (`items`, as `read` copied them) and flushes once.
    /// `items` is empty afterwards, and before any wait for the client: a stream whose client
    /// falls behind holds no flows, so however many fall behind, the memory they cost is their
    /// sockets' buffers, and what they miss is reported as lost when the store overwrites it.
    async fn batch(
        &mut self,
        read: Read,
        items: &mut Vec<Arc<Cached>>,
        matches: &impl Fn(&Arc<Cached>) -> bool,
    ) -> Result<Sent, End> {
        let first = read.pos - read.copied as u64;
        if read.lost > 0 {
            self.st.ring_lost.fetch_add(read.lost, Ordering::Relaxed);
            let lost = ring_lost_line(read.lost, &self.st.node_name);
            if !self.ready_now().await? {
                items.clear();
                self.sink.ready().await?;
                self.sink.line(lost).await?;
                return Ok(Sent::Stopped { at: first });
            }
            self.sink.line(lost).await?;
        }
        let mut sent = Sent::All;
        for (i, e) in items.iter().enumerate() {
            let time_ns = e.time_ns();
            if self.until_ns.is_some_and(|u| time_ns > u) {
                sent = Sent::Done;
                break;
            }
            let is_flow = matches!(&*e.record, Record::Flow(_));
            // Lost events bypass the filters and do not count towards N, as in Hubble.
            if is_flow && (self.since_ns.is_some_and(|s| time_ns < s) || !matches(e)) {
                continue;
            }
            if !self.ready_now().await? {
                sent = Sent::Stopped {
                    at: first + i as u64,
                };
                break;
            }
            match &self.mask {
                Some(mask) if is_flow => self.sink.line(masked_line(&e.json(), mask)).await?,
                _ => self.sink.record(e).await?,
            }
            if is_flow {
                self.sent += 1;
                if self.limit.is_some_and(|l| self.sent >= l) {
                    sent = Sent::Done;
                    break;
                }
            }
        }
        items.clear();
        if let Sent::Stopped { .. } = sent {
            self.sink.ready().await?;
        }
        self.sink.flush().await?;
        Ok(sent)
    }

    /// Whether the client takes a line now, without waiting for it.
    async fn ready_now(&mut self) -> Result<bool, End> {
        let mut ready = pin!(self.sink.ready());
        match std::future::poll_fn(|cx| Poll::Ready(ready.as_mut().poll(cx))).await {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }
}

/// A response line with only the masked fields of its flow (per masked request: unmasked
/// requests share the rendered line).
pub fn masked_line(line: &str, mask: &FieldMask) -> Utf8Bytes {
    let Ok(mut response) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.into();
    };
    if let Some(flow) = response.get_mut("flow").and_then(|f| f.as_object_mut()) {
        mask.apply(flow);
    }
    response.to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::flow::{LostEvent, LostEventSource};
    use tokio::sync::{Notify, mpsc};

    /// Takes `budget` lines, then is not ready until the test releases it.
    struct GatedSink {
        budget: usize,
        release: Arc<Notify>,
        blocked: mpsc::UnboundedSender<()>,
        lines: mpsc::UnboundedSender<Utf8Bytes>,
    }

    impl LineSink for GatedSink {
        async fn line(&mut self, line: Utf8Bytes) -> Result<(), End> {
            assert!(
                self.budget > 0,
                "a line was sent to a sink that was not ready"
            );
            self.budget -= 1;
            self.lines.send(line).map_err(|_| End::Gone)
        }
        async fn flush(&mut self) -> Result<(), End> {
            Ok(())
        }
        async fn ready(&mut self) -> Result<(), End> {
            if self.budget == 0 {
                let _ = self.blocked.send(());
                self.release.notified().await;
                self.budget = usize::MAX;
            }
            Ok(())
        }
    }

    impl FlowSink for GatedSink {
        async fn record(&mut self, e: &Arc<Cached>) -> Result<(), End> {
            self.line(e.json()).await
        }
    }

    fn lost(n: u64) -> Arc<Record> {
        Arc::new(Record::Lost {
            time_ns: 1_700_000_000_000_000_000 + n as i64,
            lost: LostEvent {
                source: LostEventSource::ObserverEventsQueue,
                num_events_lost: n,
                cpu: None,
                ..LostEvent::default()
            },
            node_name: "n".into(),
        })
    }

    /// A client that stops reading holds none of the stored records while it waits (only the
    /// store does), and once it reads again it gets every record in order, none twice.
    #[tokio::test]
    async fn a_stream_waiting_for_its_client_holds_no_records() {
        let store = Arc::new(FlowStore::new(2047).unwrap());
        store.push_batch(&mut (1..=1500).map(lost).collect());
        let (_stop, shutdown) = watch::channel(false);
        let st = Arc::new(AppState::new(store.clone(), "n", 8, shutdown));
        let release = Arc::new(Notify::new());
        let (blocked_tx, mut blocked) = mpsc::unbounded_channel();
        let (lines_tx, mut lines) = mpsc::unbounded_channel();
        let mut sink = GatedSink {
            budget: 10,
            release: release.clone(),
            blocked: blocked_tx,
            lines: lines_tx,
        };
        let req: GetFlowsRequest = serde_json::from_str(r#"{"first": true}"#).unwrap();
        let filters = FilterSet::compile(&req.whitelist, &req.blacklist).unwrap();
        let task = tokio::spawn(async move {
            let r = stream(&mut sink, &st, &req, &filters).await;
            assert!(r.is_ok(), "the stream ended early");
        });
        blocked
            .recv()
            .await
            .expect("the stream waits for its client");
        let mut held = Vec::new();
        let _ = store.read(0, u64::MAX, 2000, &mut held);
        assert_eq!(held.len(), 1500);
        let pinned = held.iter().filter(|e| Arc::strong_count(e) > 2).count();
        assert_eq!(
            pinned, 0,
            "records held beyond the store and this test while the client does not read"
        );
        release.notify_one();
        task.await.unwrap();
        let mut got = Vec::new();
        while let Ok(line) = lines.try_recv() {
            got.push(line);
        }
        let want: Vec<Utf8Bytes> = held.iter().map(|e| e.json()).collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "every record once, in order");
    }
}
