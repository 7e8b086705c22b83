//! Reads flow events from the kernel's ring buffer without blocking the runtime: wait until
//! the ring has data, then drain it in batches.

use std::io;

use aya::maps::{MapData, RingBuf};
use flowscope_common::FlowEvent;
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

    /// Waits for events and appends up to `max` of them to `out`. Returns how many records had
    /// an unexpected size (a build mismatch between kernel and userspace; never expected).
    pub async fn read_batch(&mut self, out: &mut Vec<FlowEvent>, max: usize) -> io::Result<u64> {
        let mut malformed = 0;
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            let start = out.len();
            while out.len() - start < max {
                let Some(item) = ring.next() else { break };
                if item.len() < std::mem::size_of::<FlowEvent>() {
                    malformed += 1;
                    continue;
                }
                // SAFETY: the record holds at least size_of::<FlowEvent>() bytes written by the
                // datapath as a FlowEvent (a repr(C) plain-data type); read_unaligned makes no
                // alignment assumption about the ring's memory.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) });
            }
            if out.len() - start < max {
                // Drained: only now is it safe to wait for the next epoll edge.
                guard.clear_ready();
            }
            if out.len() > start || malformed > 0 {
                return Ok(malformed);
            }
        }
    }
}
