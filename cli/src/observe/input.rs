//! `--input-file`: replays saved JSON lines through the same filters and printers, with no
//! observer. Lines are GetFlowsResponse envelopes as `-o jsonpb` (and Hubble, and Hubble's
//! exporter) write them, or bare Flow objects as Hubble's legacy JSON output wrote them.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use flowscope_model::{FilterSet, Flow, GetFlowsRequest, GetFlowsResponse, Timestamp};

use super::format::response_time;
use super::sink::{Halt, Sink};

/// How many flows a replay keeps: Hubble's io reader semantics for `--first`/`--last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    All,
    First(u64),
    Last(u64),
}

impl Selection {
    pub(crate) fn of(request: &GetFlowsRequest) -> Selection {
        match request.number {
            0 | u64::MAX => Selection::All,
            n if request.first => Selection::First(n),
            n => Selection::Last(n),
        }
    }
}

/// Top-level keys of exporter lines that are not flows; such lines are skipped.
const OTHER_EVENTS: &[&str] = &["agent_event", "agentEvent", "debug_event", "debugEvent"];

/// Parses one line: `Ok(None)` for events that are not printed here (agent/debug events).
pub fn parse_line(text: &str) -> Result<Option<GetFlowsResponse>, String> {
    let envelope_error = match serde_json::from_str::<GetFlowsResponse>(text) {
        Ok(resp) => return Ok(Some(resp)),
        Err(e) => e,
    };
    // Only lines that are not envelopes pay for this second parse.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("not a JSON object".to_owned());
    };
    let envelope_keys = [
        "flow",
        "lost_events",
        "lostEvents",
        "node_status",
        "nodeStatus",
    ];
    if envelope_keys.iter().any(|k| object.contains_key(*k)) {
        return Err(format!("not a valid GetFlowsResponse: {envelope_error}"));
    }
    if OTHER_EVENTS.iter().any(|k| object.contains_key(*k)) {
        return Ok(None);
    }
    if object.contains_key("error") {
        return Err(format!("an error line, not a flow: {text}"));
    }
    let flow: Flow = serde_json::from_value(value).map_err(|e| format!("not a valid Flow: {e}"))?;
    if flow == Flow::default() {
        return Err(
            "neither a GetFlowsResponse (with \"flow\", \"lost_events\" or \"node_status\") \
             nor a Flow object"
                .to_owned(),
        );
    }
    Ok(Some(GetFlowsResponse::from_flow(flow)))
}

/// Replays `reader` (named `source` in errors) into `sink`.
///
/// The sink is shared with the Ctrl-C handler, which finishes it and sets `stop`; it is
/// locked per line, never while waiting for input.
pub(crate) fn replay(
    mut reader: BufReader<impl Read>,
    source: &str,
    request: &GetFlowsRequest,
    filters: &FilterSet,
    sink: &Mutex<Sink>,
    stop: &AtomicBool,
) -> Result<(), Halt> {
    let selection = Selection::of(request);
    let mut kept: VecDeque<GetFlowsResponse> = VecDeque::new();
    let mut kept_flows = 0u64;
    let mut emitted = 0u64;
    let mut buf = Vec::with_capacity(2048);
    let mut line_no = 0u64;
    let lock = || sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        if reader.buffer().is_empty() {
            // The next read may wait (a pipe from a live `observe -f`): show what we have.
            lock().flush()?;
        }
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Halt::Failed(anyhow!("cannot read {source}: {e}")))?;
        if n == 0 || stop.load(Ordering::Relaxed) {
            break;
        }
        line_no += 1;
        let text = std::str::from_utf8(&buf)
            .map_err(|_| Halt::Failed(anyhow!("{source}:{line_no}: the line is not UTF-8 text")))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let resp = match parse_line(text) {
            Ok(Some(resp)) => resp,
            Ok(None) => continue,
            Err(e) => return Err(Halt::Failed(anyhow!("{source}:{line_no}: {e}"))),
        };
        let time = response_time(&resp).unwrap_or(Timestamp::UNIX_EPOCH);
        if request.since.is_some_and(|s| time < s) || request.until.is_some_and(|u| time > u) {
            continue;
        }
        let is_flow = match resp.flow() {
            Some(flow) => {
                if !filters.matches(flow) {
                    continue;
                }
                true
            }
            // Lost events and node status pass, as they do on the server.
            None => false,
        };
        match selection {
            Selection::Last(n) => {
                kept.push_back(resp);
                if is_flow {
                    kept_flows += 1;
                }
                while kept_flows > n {
                    if kept.pop_front().is_some_and(|r| r.flow().is_some()) {
                        kept_flows -= 1;
                    }
                }
            }
            Selection::First(n) => {
                let mut sink = lock();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                sink.response(&resp)?;
                if is_flow {
                    emitted += 1;
                    if emitted >= n {
                        break;
                    }
                }
            }
            Selection::All => {
                let mut sink = lock();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                sink.response(&resp)?;
            }
        }
    }
    let mut sink = lock();
    if stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    for resp in kept {
        sink.response(&resp)?;
    }
    Ok(())
}
