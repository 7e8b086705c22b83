//! Reads flow events from the kernel's ring buffer without blocking the runtime: wait until
//! the ring has data, then drain it in batches.

use std::{io, time::Duration};

use aya::maps::{MapData, RingBuf};
use flowscope_common::{EVENTS_POLL_MS, FlowEvent, L7Event, kind};
use tokio::io::unix::AsyncFd;

pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl EventReader {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the RingBuf owns its map's descriptor and always returns that same one; it
        // lives inside the AsyncFd until the AsyncFd is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(EventReader { ring })
    }

    /// Waits for events and appends up to `max` of them to `out`; the payload of each L7
    /// event (`kind::DNS`, `kind::HTTP`) goes to `payloads`, in the same order. Returns how many records had an
    /// unexpected size (a build mismatch between kernel and userspace; never expected).
    pub async fn read_batch(
        &mut self,
        out: &mut Vec<FlowEvent>,
        payloads: &mut Vec<Box<[u8]>>,
        max: usize,
    ) -> io::Result<u64> {
        let mut malformed = 0;
        let start = out.len();
        loop {
            // Whatever is waiting first: the datapath wakes us only once per batch
            // (EVENTS_WAKEUP_BYTES), so the ring may hold events without a wakeup.
            drain(
                self.ring.get_mut(),
                out,
                payloads,
                start,
                max,
                &mut malformed,
            );
            if out.len() > start || malformed > 0 {
                return Ok(malformed);
            }
            // Empty: wait for a wakeup, or the poll interval for a batch below the threshold.
            if let Ok(guard) = tokio::time::timeout(POLL, self.ring.readable_mut()).await {
                let mut guard = guard?;
                drain(
                    guard.get_inner_mut(),
                    out,
                    payloads,
                    start,
                    max,
                    &mut malformed,
                );
                if out.len() - start < max {
                    // Drained: only now is it safe to wait for the next epoll edge.
                    guard.clear_ready();
                }
            }
            if out.len() > start || malformed > 0 {
                return Ok(malformed);
            }
        }
    }
}

const POLL: Duration = Duration::from_millis(EVENTS_POLL_MS);

fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<FlowEvent>,
    payloads: &mut Vec<Box<[u8]>>,
    start: usize,
    max: usize,
    malformed: &mut u64,
) {
    while out.len() - start < max {
        let Some(item) = ring.next() else { break };
        match decode_record(&item) {
            Some((ev, payload)) => {
                if let Some(payload) = payload {
                    payloads.push(payload);
                }
                out.push(ev);
            }
            None => *malformed += 1,
        }
    }
}

/// One ring buffer record: the event, and for an L7 event (`kind::DNS`, `kind::HTTP`) its
/// payload. None for a record too short for what it says it is (a build mismatch between
/// kernel and userspace; never expected).
pub fn decode_record(item: &[u8]) -> Option<(FlowEvent, Option<Box<[u8]>>)> {
    if item.len() < std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: the record holds at least size_of::<FlowEvent>() bytes, and FlowEvent is a
    // repr(C) plain-data type valid for any bytes; read_unaligned makes no alignment
    // assumption about the ring's memory.
    let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) };
    if ev.kind != kind::DNS && ev.kind != kind::HTTP {
        return Some((ev, None));
    }
    // An L7Event: the FlowEvent, then the payload's length and first bytes.
    if item.len() < std::mem::size_of::<L7Event>() {
        return None;
    }
    let at = std::mem::offset_of!(L7Event, len);
    let len = u16::from_ne_bytes([item[at], item[at + 1]]) as usize;
    let body = std::mem::offset_of!(L7Event, payload);
    let len = len.min(item.len() - body);
    Some((ev, Some(item[body..body + len].into())))
}
