//! Merging the time-ordered flow streams of many observers into one, in time order.
//!
//! Hubble's relay keeps a fixed-size heap and flushes it every second, so its order is best
//! effort (cilium#11223). Each observer already sends its flows in time order, so this is a
//! k-way merge: the oldest buffered flow goes out once every open stream has a flow buffered
//! (nothing older can come), which gives a total order with as little as one flow per stream
//! held. Two bounds keep it live and small:
//! - a stream that has had nothing buffered for `idle` (an observer with no traffic) is not
//!   waited for until it sends again, so a quiet node delays the others by at most `idle`;
//! - at most `capacity` flows are held; beyond that the oldest goes out at once.

use std::{
    cmp::{Ordering, Reverse},
    collections::BinaryHeap,
    time::{Duration, Instant},
};

struct Entry<T> {
    time_ns: i64,
    seq: u64,
    source: usize,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.time_ns, self.seq) == (other.time_ns, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time_ns, self.seq).cmp(&(other.time_ns, other.seq))
    }
}

struct Source {
    open: bool,
    buffered: usize,
    /// Since when this open stream has had nothing buffered.
    empty_since: Instant,
}

/// A k-way merge of time-ordered streams (see the module docs).
pub struct SortBuffer<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    sources: Vec<Source>,
    capacity: usize,
    idle: Duration,
    seq: u64,
}

impl<T> SortBuffer<T> {
    pub fn new(capacity: usize, idle: Duration) -> Self {
        SortBuffer {
            heap: BinaryHeap::new(),
            sources: Vec::new(),
            capacity: capacity.max(1),
            idle,
            seq: 0,
        }
    }

    /// A new stream; returns its index.
    pub fn add_source(&mut self, now: Instant) -> usize {
        self.sources.push(Source {
            open: true,
            buffered: 0,
            empty_since: now,
        });
        self.sources.len() - 1
    }

    /// The stream of `source` starts again (a re-attached observer): it is waited for again.
    pub fn reopen(&mut self, source: usize, now: Instant) {
        if let Some(s) = self.sources.get_mut(source) {
            s.open = true;
            if s.buffered == 0 {
                s.empty_since = now;
            }
        }
    }

    /// The stream ended: it is no longer waited for.
    pub fn end(&mut self, source: usize) {
        if let Some(s) = self.sources.get_mut(source) {
            s.open = false;
        }
    }

    /// Streams not ended.
    pub fn open_sources(&self) -> usize {
        self.sources.iter().filter(|s| s.open).count()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn push(&mut self, source: usize, time_ns: i64, item: T) {
        if let Some(s) = self.sources.get_mut(source) {
            s.buffered += 1;
        }
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            time_ns,
            seq: self.seq,
            source,
            item,
        }));
    }

    /// Whether some open, recently active stream has nothing buffered: a flow older than the
    /// buffered ones may still come from it.
    fn waiting(&self, now: Instant) -> bool {
        self.sources
            .iter()
            .any(|s| s.open && s.buffered == 0 && now.duration_since(s.empty_since) < self.idle)
    }

    /// Moves every flow that may go out now, oldest first, to `out`.
    pub fn pop_ready(&mut self, now: Instant, out: &mut Vec<T>) {
        while !self.heap.is_empty() {
            if self.heap.len() <= self.capacity && self.waiting(now) {
                break;
            }
            self.pop_one(now, out);
        }
    }

    /// Moves everything to `out`, oldest first (all streams ended, or the request is over).
    pub fn drain(&mut self, now: Instant, out: &mut Vec<T>) {
        while !self.heap.is_empty() {
            self.pop_one(now, out);
        }
    }

    fn pop_one(&mut self, now: Instant, out: &mut Vec<T>) {
        if let Some(Reverse(e)) = self.heap.pop() {
            if let Some(s) = self.sources.get_mut(e.source) {
                s.buffered -= 1;
                if s.buffered == 0 {
                    s.empty_since = now;
                }
            }
            out.push(e.item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(1);

    #[test]
    fn interleaved_streams_come_out_in_time_order() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(1000, IDLE);
        let a = b.add_source(t0);
        let c = b.add_source(t0);
        let mut out = Vec::new();
        // a sends 1, 4, 7; c sends 2, 3, 9: nothing may go out while c has nothing buffered.
        for t in [1, 4, 7] {
            b.push(a, t, t);
            b.pop_ready(t0, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        b.push(c, 2, 2);
        b.pop_ready(t0, &mut out);
        // 1 and 2 are safe; after 2, c has nothing: wait.
        assert_eq!(out, [1, 2]);
        b.push(c, 3, 3);
        b.push(c, 9, 9);
        b.pop_ready(t0, &mut out);
        // a's 4 and 7 go, then a has nothing buffered and is waited for.
        assert_eq!(out, [1, 2, 3, 4, 7]);
        b.end(a);
        b.pop_ready(t0, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 7, 9]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_quiet_stream_delays_the_others_by_the_idle_time_only() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(1000, IDLE);
        let busy = b.add_source(t0);
        let _quiet = b.add_source(t0);
        let mut out = Vec::new();
        b.push(busy, 10, 10);
        b.pop_ready(t0 + Duration::from_millis(500), &mut out);
        assert!(out.is_empty());
        b.pop_ready(t0 + Duration::from_millis(1001), &mut out);
        assert_eq!(out, [10]);
        // Still quiet: later flows go out at once.
        b.push(busy, 11, 11);
        b.pop_ready(t0 + Duration::from_millis(1002), &mut out);
        assert_eq!(out, [10, 11]);
    }

    #[test]
    fn the_buffer_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(3, IDLE);
        let a = b.add_source(t0);
        let _silent = b.add_source(t0);
        let mut out = Vec::new();
        for t in 0..10 {
            b.push(a, t, t);
            b.pop_ready(t0, &mut out);
            assert!(b.len() <= 3);
        }
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 6]);
        b.drain(t0, &mut out);
        assert_eq!(out, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_reopened_source_is_waited_for_again() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(1000, IDLE);
        let a = b.add_source(t0);
        let c = b.add_source(t0);
        let mut out = Vec::new();
        b.end(c);
        b.push(a, 1, 1);
        b.pop_ready(t0, &mut out);
        assert_eq!(out, [1], "an ended source is not waited for");
        b.reopen(c, t0);
        b.push(a, 2, 2);
        b.pop_ready(t0, &mut out);
        assert_eq!(out, [1], "the reopened source may still send older flows");
        b.push(c, 1, 1);
        b.pop_ready(t0, &mut out);
        assert_eq!(out, [1, 1]);
        assert_eq!(b.open_sources(), 2);
        b.end(c);
        b.pop_ready(t0, &mut out);
        assert_eq!(out, [1, 1, 2]);
    }

    #[test]
    fn equal_times_keep_arrival_order() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(10, IDLE);
        let a = b.add_source(t0);
        b.push(a, 5, "first");
        b.push(a, 5, "second");
        let mut out = Vec::new();
        b.pop_ready(t0, &mut out);
        assert_eq!(out, ["first", "second"]);
    }
}
