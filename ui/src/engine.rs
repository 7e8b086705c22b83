//! Between the network and the screen: the WebSocket and HTTP calls, the queue of received
//! lines, and the once-per-animation-frame step that turns them into map and table updates.
//!
//! Received lines are only queued (bounded: [`MAX_PENDING`]); one `requestAnimationFrame`
//! callback per frame parses as many as fit in [`FRAME_BUDGET_MS`], so at thousands of flows
//! per second the page does one batch of work per frame and never a long task. Signals are set
//! once per frame (the table), at most every [`MAP_INTERVAL_MS`] (the map) and every
//! [`STATS_INTERVAL_MS`] (the status bar).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use flowscope_model::{
    GetFlowsResponse, ResponseKind, Timestamp,
    flow::NodeState,
    graph::{GraphConfig, GraphSnapshot, GraphView, ServiceGraph},
};
use leptos::prelude::*;
use wasm_bindgen::{JsCast as _, prelude::*};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::layout::{Layout, MapModel, build_map, fit, islands_per_row};
use crate::rows::{MAX_ROWS, Row, RowBuffer, row_visible};
use crate::url::{ViewState, encode};

/// Lines waiting for a frame. A hidden tab gets no animation frames, so this is what bounds
/// memory then: past it the oldest lines are dropped and counted (shown as "dropped by UI").
pub const MAX_PENDING: usize = 20_000;
/// Parsing time per frame: half a 60 Hz frame, leaving the rest for rendering.
pub const FRAME_BUDGET_MS: f64 = 8.0;
/// The map is redrawn at most this often: rates and counts need no 60 Hz.
pub const MAP_INTERVAL_MS: f64 = 250.0;
/// The status bar is refreshed this often.
pub const STATS_INTERVAL_MS: f64 = 500.0;
/// The server's status is polled this often.
pub const STATUS_POLL_MS: u64 = 2_000;
/// Reconnection delays grow to this.
const MAX_RETRY_MS: u32 = 5_000;
/// The window of the client-side flows/s.
const RATE_WINDOW_MS: f64 = 5_000.0;

/// The map's translation x, y and scale.
pub type Transform = (f64, f64, f64);

/// A frame's map result: the model, the namespaces for the selector, a new transform to fit.
type MapUpdate = (MapModel, Vec<String>, Option<Transform>);

/// The WebSocket's state, as the status bar shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnState {
    /// Opening the socket (or fetching the graph first).
    Connecting,
    /// Flows are streaming.
    Open,
    /// Closed; retrying. The reason, if any.
    Closed(String),
    /// The server refused the request (bad filter): no retry until the filters change.
    Refused(String),
}

/// The status bar's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Flows received per second (client side, last 5 s, by flow time: history excluded).
    pub flows_per_sec: f64,
    /// The observer's own flows/s.
    pub server_rate: Option<f64>,
    /// Lost events reported by the server.
    pub lost: u64,
    /// Lines dropped by the UI because it fell behind (hidden tab).
    pub ui_dropped: u64,
    /// Nodes whose flows arrive.
    pub nodes_connected: Vec<String>,
    /// Nodes the relay cannot reach.
    pub nodes_unavailable: Vec<String>,
    /// Rows kept.
    pub rows: usize,
    /// Map size.
    pub graph_nodes: usize,
    /// See `graph_nodes`.
    pub graph_edges: usize,
    /// Evicted from the map.
    pub evicted: u64,
    /// Lines waiting to be parsed.
    pub pending: usize,
}

/// Every signal the views read; `Copy`, so closures take it by value.
#[derive(Clone, Copy)]
pub struct Signals {
    /// The view the URL carries.
    pub state: RwSignal<ViewState>,
    /// Connection state.
    pub conn: RwSignal<ConnState>,
    /// Status bar figures.
    pub stats: RwSignal<Stats>,
    /// Rows the table shows (namespace and selection applied), newest first.
    pub rows: RwSignal<Arc<Vec<Arc<Row>>>>,
    /// The table is frozen.
    pub paused: RwSignal<bool>,
    /// Rows received since the pause.
    pub new_while_paused: RwSignal<usize>,
    /// What the map draws.
    pub map: RwSignal<Arc<MapModel>>,
    /// Namespaces for the selector.
    pub namespaces: RwSignal<Vec<String>>,
    /// Map translation x, y and scale.
    pub transform: RwSignal<Transform>,
    /// The row whose details are open.
    pub details: RwSignal<Option<Arc<Row>>>,
    /// The map's size on screen, for fitting.
    pub map_size: RwSignal<(f64, f64)>,
    /// The map keeps everything in view as it grows, until the user pans or zooms.
    pub auto_fit: RwSignal<bool>,
}

struct Conn {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// The non-reactive state: queue, graph, layout, rows.
pub struct Engine {
    pending: VecDeque<String>,
    graph: ServiceGraph,
    /// Flows at or before this time are already in the graph (from `/api/v1/graph`).
    graph_since: Option<Timestamp>,
    layout: Layout,
    /// The layout of the namespace view, and its namespace.
    ns_layout: Option<(String, Layout)>,
    buffer: RowBuffer,
    /// The rows at the moment of pausing.
    frozen: Option<Vec<Arc<Row>>>,
    seq: u64,
    /// Bumped on every restart; callbacks of an older connection are ignored.
    generation: u64,
    conn: Option<Conn>,
    retry_ms: u32,
    frame_scheduled: bool,
    rows_dirty: bool,
    map_dirty: bool,
    need_fit: bool,
    last_map_ms: f64,
    last_stats_ms: f64,
    arrivals: VecDeque<(f64, u32)>,
    /// Flows stamped at or after this are live, not the history sent at connection: the open
    /// time less the rate window (clocks of server and browser differ a little). Fixed at the
    /// open, so a browser that falls behind a fast stream still counts what it receives.
    live_since: Option<Timestamp>,
    stats: Stats,
    connected: BTreeSet<String>,
    unavailable: BTreeSet<String>,
}

/// The engine's handle: `Copy` and `Send`, so reactive closures and JS callbacks share it.
pub type Handle = StoredValue<Engine, LocalStorage>;

pub fn new_engine() -> Handle {
    StoredValue::new_local(Engine {
        pending: VecDeque::new(),
        graph: ServiceGraph::default(),
        graph_since: None,
        layout: Layout::default(),
        ns_layout: None,
        buffer: RowBuffer::new(MAX_ROWS),
        frozen: None,
        seq: 0,
        generation: 0,
        conn: None,
        retry_ms: 500,
        frame_scheduled: false,
        rows_dirty: false,
        map_dirty: false,
        need_fit: true,
        last_map_ms: f64::NEG_INFINITY,
        last_stats_ms: f64::NEG_INFINITY,
        arrivals: VecDeque::new(),
        live_since: None,
        stats: Stats::default(),
        connected: BTreeSet::new(),
        unavailable: BTreeSet::new(),
    })
}

fn now_ms() -> f64 {
    window()
        .performance()
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

fn wall_now() -> Timestamp {
    Timestamp::from_unix_nanos((js_sys::Date::now() * 1e6) as i64)
}

fn graph_config(state: &ViewState) -> GraphConfig {
    let mut config = GraphConfig::default();
    if !state.name_labels.is_empty() {
        config.name_labels = state.name_labels.clone();
    }
    config
}

fn base_url(scheme_ws: bool) -> String {
    let loc = window().location();
    let host = loc.host().unwrap_or_default();
    let https = loc.protocol().map(|p| p == "https:").unwrap_or(false);
    match (scheme_ws, https) {
        (true, true) => format!("wss://{host}"),
        (true, false) => format!("ws://{host}"),
        (false, true) => format!("https://{host}"),
        (false, false) => format!("http://{host}"),
    }
}

/// GETs a URL's body as text.
pub async fn fetch_text(url: &str) -> Result<String, String> {
    let js = |e: JsValue| format!("{e:?}");
    let resp = JsFuture::from(window().fetch_with_str(url))
        .await
        .map_err(js)?;
    let resp: web_sys::Response = resp.dyn_into().map_err(js)?;
    if !resp.ok() {
        return Err(format!("{} from {url}", resp.status()));
    }
    let text = JsFuture::from(resp.text().map_err(js)?).await.map_err(js)?;
    Ok(text.as_string().unwrap_or_default())
}

/// Starts over with the current filters: new graph from the server, new stream.
pub fn restart(eng: Handle, sig: Signals) {
    let state = sig.state.get_untracked();
    let generation = eng
        .try_update_value(|e| {
            e.generation += 1;
            e.conn = None;
            e.pending.clear();
            e.buffer.clear();
            e.frozen = None;
            e.graph = ServiceGraph::new(graph_config(&state));
            e.graph_since = None;
            // The new stream's history repeats the last seconds: count them once.
            e.arrivals.clear();
            e.live_since = None;
            e.rows_dirty = true;
            e.map_dirty = true;
            e.need_fit = true;
            e.generation
        })
        .unwrap_or_default();
    sig.paused.set(false);
    sig.new_while_paused.set(0);
    sig.details.set(None);
    sig.conn.set(ConnState::Connecting);
    leptos::task::spawn_local(async move {
        let request = state.filters.request(0);
        let mut url = format!("{}/api/v1/graph", base_url(false));
        let mut params = Vec::new();
        if !request.whitelist.is_empty() || !request.blacklist.is_empty() {
            let json = serde_json::to_string(&request).unwrap_or_default();
            params.push(format!("request={}", encode(&json)));
        }
        if !state.name_labels.is_empty() {
            params.push(format!("labels={}", encode(&state.name_labels.join(","))));
        }
        if !params.is_empty() {
            url = format!("{url}?{}", params.join("&"));
        }
        let seeded = fetch_text(&url)
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<GraphSnapshot>(&t).ok());
        let current = eng.with_value(|e| e.generation) == generation;
        if !current {
            return;
        }
        if let Some(snapshot) = seeded {
            eng.update_value(|e| {
                e.graph = ServiceGraph::from_snapshot(graph_config(&state), &snapshot);
                e.graph_since = snapshot.time;
                e.map_dirty = true;
            });
        }
        connect(eng, sig, generation);
        schedule_frame(eng, sig);
    });
}

fn connect(eng: Handle, sig: Signals, generation: u64) {
    let state = sig.state.get_untracked();
    let request = state.filters.request(MAX_ROWS as u64);
    let url = format!("{}/api/v1/flows", base_url(true));
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            sig.conn.set(ConnState::Closed(format!("{e:?}")));
            return;
        }
    };
    let text = serde_json::to_string(&request).unwrap_or_default();
    let open_ws = ws.clone();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        let _ = open_ws.send_with_str(&text);
        sig.conn.set(ConnState::Open);
        eng.update_value(|e| {
            e.retry_ms = 500;
            e.live_since = Some(wall_now().saturating_add_nanos(-(RATE_WINDOW_MS * 1e6) as i64));
        });
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let Some(line) = ev.data().as_string() else {
            return;
        };
        let schedule = eng
            .try_update_value(|e| {
                if e.generation != generation {
                    return false;
                }
                if e.pending.len() >= MAX_PENDING {
                    e.pending.pop_front();
                    e.stats.ui_dropped += 1;
                }
                e.pending.push_back(line);
                !e.frame_scheduled
            })
            .unwrap_or(false);
        if schedule {
            schedule_frame(eng, sig);
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
        let current = eng.with_value(|e| e.generation) == generation;
        if !current {
            return;
        }
        if ev.code() == flowscope_model::api::close::INVALID_REQUEST {
            sig.conn.set(ConnState::Refused(ev.reason()));
            return;
        }
        let delay = eng
            .try_update_value(|e| {
                e.conn = None;
                let d = e.retry_ms;
                e.retry_ms = (e.retry_ms * 2).min(MAX_RETRY_MS);
                d
            })
            .unwrap_or(MAX_RETRY_MS);
        let reason = if ev.reason().is_empty() {
            format!("closed ({})", ev.code())
        } else {
            ev.reason()
        };
        sig.conn.set(ConnState::Closed(reason));
        set_timeout(
            move || {
                if eng.with_value(|e| e.generation) == generation {
                    restart(eng, sig);
                }
            },
            std::time::Duration::from_millis(u64::from(delay)),
        );
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    eng.update_value(|e| {
        e.conn = Some(Conn {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    });
}

/// Asks for one animation frame, unless one is already coming.
pub fn schedule_frame(eng: Handle, sig: Signals) {
    let first = eng
        .try_update_value(|e| !std::mem::replace(&mut e.frame_scheduled, true))
        .unwrap_or(false);
    if first {
        request_animation_frame(move || frame(eng, sig));
    }
}

/// Marks the map and rows for recomputation at the next frame (view or selection changed).
pub fn invalidate(eng: Handle, sig: Signals, fit_view: bool) {
    eng.update_value(|e| {
        e.map_dirty = true;
        e.rows_dirty = true;
        e.last_map_ms = f64::NEG_INFINITY;
        e.need_fit |= fit_view;
    });
    schedule_frame(eng, sig);
}

/// Freezes or thaws the table.
pub fn set_paused(eng: Handle, sig: Signals, paused: bool) {
    eng.update_value(|e| {
        e.frozen = paused.then(|| e.buffer.iter().cloned().collect());
        e.rows_dirty = true;
    });
    sig.paused.set(paused);
    sig.new_while_paused.set(0);
    schedule_frame(eng, sig);
}

/// The rows the table shows now, oldest last: what the export writes.
pub fn shown_rows(sig: Signals) -> Arc<Vec<Arc<Row>>> {
    sig.rows.get_untracked()
}

/// One frame's work.
fn frame(eng: Handle, sig: Signals) {
    let start = now_ms();
    let state = sig.state.get_untracked();
    let paused = sig.paused.get_untracked();
    let mut rows_update: Option<Vec<Arc<Row>>> = None;
    let mut map_update: Option<MapUpdate> = None;
    let mut stats_update: Option<Stats> = None;
    let mut refused: Option<String> = None;
    let mut new_rows = 0usize;
    let map_size = sig.map_size.get_untracked();
    let auto_fit = sig.auto_fit.get_untracked();
    let more = eng
        .try_update_value(|e| {
            e.frame_scheduled = false;
            let mut parsed = 0u32;
            let mut live = 0u32;
            let live_since = e.live_since;
            while let Some(line) = e.pending.pop_front() {
                match serde_json::from_str::<GetFlowsResponse>(&line) {
                    Ok(response) => match response.kind {
                        ResponseKind::Flow(flow) => {
                            // History sent at connection time is not part of the live rate.
                            if flow
                                .time
                                .is_some_and(|t| live_since.is_some_and(|l| t >= l))
                            {
                                live += 1;
                            }
                            let keys = if e.graph_since.is_none_or(|t| flow.time > Some(t)) {
                                e.graph.ingest(&flow)
                            } else {
                                e.graph.keys(&flow)
                            };
                            e.seq += 1;
                            let row = Row::new(e.seq, line.into(), &flow, keys.as_ref());
                            e.buffer.push(Arc::new(row));
                            // A paused table shows its frozen rows: nothing to redo.
                            e.rows_dirty |= e.frozen.is_none();
                            e.map_dirty = true;
                            new_rows += 1;
                        }
                        ResponseKind::LostEvents(lost) => e.stats.lost += lost.num_events_lost,
                        ResponseKind::NodeStatus(status) => {
                            for node in status.node_names {
                                match status.state_change {
                                    NodeState::Connected => {
                                        e.unavailable.remove(&node);
                                        e.connected.insert(node);
                                    }
                                    NodeState::Unknown => {}
                                    _ => {
                                        e.connected.remove(&node);
                                        e.unavailable.insert(node);
                                    }
                                }
                            }
                        }
                    },
                    Err(_) => {
                        if let Ok(body) =
                            serde_json::from_str::<flowscope_model::api::ErrorBody>(&line)
                        {
                            refused = Some(body.error.message);
                        }
                    }
                }
                parsed += 1;
                // Checking the clock costs little next to parsing a flow, but not nothing.
                if parsed.is_multiple_of(32) && now_ms() - start > FRAME_BUDGET_MS {
                    break;
                }
            }
            let t = now_ms();
            if live > 0 {
                e.arrivals.push_back((t, live));
            }
            while e
                .arrivals
                .front()
                .is_some_and(|(at, _)| t - at > RATE_WINDOW_MS)
            {
                e.arrivals.pop_front();
            }
            if e.rows_dirty {
                e.rows_dirty = false;
                let ns = state.namespace.as_deref();
                let sel = state.selection.as_ref();
                let visible = |r: &&Arc<Row>| row_visible(r, ns, sel);
                rows_update = Some(match &e.frozen {
                    Some(frozen) => frozen.iter().filter(visible).cloned().collect(),
                    None => e.buffer.iter().filter(visible).cloned().collect(),
                });
            }
            if e.map_dirty && t - e.last_map_ms >= MAP_INTERVAL_MS {
                e.map_dirty = false;
                e.last_map_ms = t;
                let now = Some(wall_now());
                let all = e.graph.snapshot(&GraphView::all(), now);
                let view = match &state.namespace {
                    Some(ns) => e.graph.snapshot(&GraphView::namespace(ns.clone()), now),
                    None => all.clone(),
                };
                e.stats.evicted = all.evicted_nodes + all.evicted_edges;
                let model = match &state.namespace {
                    None => {
                        if e.layout.is_empty() {
                            let per_row = islands_per_row(map_size.0, map_size.1, &all.nodes);
                            e.layout = Layout::new(per_row);
                        }
                        build_map(&mut e.layout, &all.nodes, &view)
                    }
                    Some(ns) => {
                        // A namespace and its peers get a compact layout of their own, the
                        // namespace first; it too keeps every node where it was placed.
                        if e.ns_layout.as_ref().is_none_or(|(n, _)| n != ns) {
                            let per_row = islands_per_row(map_size.0, map_size.1, &view.nodes);
                            e.ns_layout = Some((ns.clone(), Layout::new(per_row)));
                        }
                        let order = view
                            .nodes
                            .iter()
                            .filter(|n| n.namespace == *ns)
                            .chain(view.nodes.iter().filter(|n| n.namespace != *ns));
                        match e.ns_layout.as_mut() {
                            Some((_, layout)) => build_map(layout, order, &view),
                            None => MapModel::default(),
                        }
                    }
                };
                let fit_to =
                    ((e.need_fit || auto_fit) && !model.nodes.is_empty() && map_size.0 > 0.0)
                        .then(|| fit(model.bounds, map_size.0, map_size.1));
                if fit_to.is_some() {
                    e.need_fit = false;
                }
                map_update = Some((model, all.namespaces, fit_to));
            }
            if t - e.last_stats_ms >= STATS_INTERVAL_MS {
                e.last_stats_ms = t;
                let received: u32 = e.arrivals.iter().map(|(_, n)| n).sum();
                let span = e
                    .arrivals
                    .front()
                    .map_or(1.0, |(at, _)| (t - at).max(1_000.0));
                let mut s = e.stats.clone();
                s.flows_per_sec = f64::from(received) / (span / 1_000.0);
                s.rows = e.buffer.len();
                s.graph_nodes = e.graph.node_count();
                s.graph_edges = e.graph.edge_count();
                s.pending = e.pending.len();
                s.nodes_connected = e.connected.iter().cloned().collect();
                s.nodes_unavailable = e.unavailable.iter().cloned().collect();
                e.stats = s.clone();
                stats_update = Some(s);
            }
            !e.pending.is_empty() || e.map_dirty
        })
        .unwrap_or(false);
    if let Some(rows) = rows_update {
        sig.rows.set(Arc::new(rows));
    }
    if paused && new_rows > 0 {
        sig.new_while_paused.update(|n| *n += new_rows);
    }
    if let Some((model, namespaces, fit_to)) = map_update {
        sig.map.set(Arc::new(model));
        if sig.namespaces.get_untracked() != namespaces {
            sig.namespaces.set(namespaces);
        }
        if let Some(t) = fit_to
            && t != sig.transform.get_untracked()
        {
            sig.transform.set(t);
        }
    }
    if let Some(mut s) = stats_update {
        let old = sig.stats.get_untracked();
        s.server_rate = old.server_rate;
        if s.nodes_connected.is_empty() {
            s.nodes_connected = old.nodes_connected.clone();
        }
        if s != old {
            sig.stats.set(s);
        }
    }
    if let Some(msg) = refused {
        sig.conn.set(ConnState::Refused(msg));
    }
    if more {
        schedule_frame(eng, sig);
    }
}

/// Polls `/api/v1/status` for the server's rate and node, and keeps rates on the map fresh
/// while no flows arrive.
pub fn start_status_poll(eng: Handle, sig: Signals) {
    let poll = move || {
        leptos::task::spawn_local(async move {
            let url = format!("{}/api/v1/status", base_url(false));
            if let Ok(text) = fetch_text(&url).await
                && let Ok(status) =
                    serde_json::from_str::<flowscope_model::api::ServerStatus>(&text)
            {
                sig.stats.update(|s| {
                    s.server_rate = Some(status.flows_rate);
                    if let Some(node) = status.node_name
                        && s.nodes_connected.is_empty()
                    {
                        s.nodes_connected = vec![node];
                    }
                });
            }
            eng.update_value(|e| e.map_dirty = true);
            schedule_frame(eng, sig);
        });
    };
    poll();
    let _ = set_interval_with_handle(poll, std::time::Duration::from_millis(STATUS_POLL_MS));
}
