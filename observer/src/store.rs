//! The observer's memory of recent flows: a fixed-capacity ring that the pipeline appends to and
//! every API request reads from, so `--last`, `--first`, `--since` and `--follow` are served
//! without per-client queues and without ever making the pipeline wait for a slow client.
//!
//! It follows Hubble's observer ring (capacity 2^i − 1, an implicit sequence number per item,
//! readers as plain cursors, last-N found by walking backwards over matches only) and departs
//! from it where Hubble's users pay for it:
//! - A reader that is overtaken learns one aggregated count for the whole gap, not one lost event
//!   per overwritten slot (the lost-event floods of cilium#34981 and hubble#1737), and lost counts
//!   are never stored in the ring, so they cannot displace real flows.
//! - Positioning reports when a request reached further back than the ring retains
//!   (hubble#251, hubble#460), so the API can say so instead of answering with silence.
//! - A lock taken once per batch replaces Hubble's per-item atomics: a lock-free ring of `Arc`s
//!   needs deferred reclamation or `unsafe` to stop a reader cloning an `Arc` the writer is
//!   freeing, while a per-batch lock costs one uncontended acquisition per few hundred flows and
//!   readers hold it only to clone a bounded slice of pointers.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

/// Hubble's default (`Capacity4095`), so operators' habits and sizing carry over.
pub const DEFAULT_CAPACITY: usize = 4095;

/// Hubble's upper bound; 65,535 `Arc`s is half a MiB of slots, and a bigger window belongs in an
/// exporter plus a database (cilium#40539), not in agent memory.
pub const MAX_CAPACITY: usize = 65_535;

/// Items copied per [`Reader`] read. The copy happens under the read lock, so this bounds how long
/// one reader can delay the writer (about 1,024 `Arc` clones, a few microseconds) while keeping
/// lock round trips to a handful per ring's worth of history.
pub const READ_BATCH: usize = 1024;

/// Items examined per lock acquisition while positioning. The predicate runs under the read lock,
/// so this bounds the writer's wait to 1,024 filter evaluations; at the default capacity a full
/// walk still takes only four acquisitions.
const WALK_CHUNK: u64 = 1024;

const _: () = assert!((DEFAULT_CAPACITY + 1).is_power_of_two() && DEFAULT_CAPACITY <= MAX_CAPACITY);

/// Something with an event time, which `since` positioning compares against.
pub trait Timestamped {
    /// Event time in nanoseconds since the Unix epoch.
    fn time_ns(&self) -> i64;
}

// The ring normally holds `Arc<StoredFlow>`; this lets the flow type implement the trait once.
impl<U: Timestamped + ?Sized> Timestamped for Arc<U> {
    fn time_ns(&self) -> i64 {
        (**self).time_ns()
    }
}

/// A ring capacity outside what [`Ring::new`] accepts. Callers add the flag or field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "flow buffer capacity {value} is not supported: use 2^i - 1 for i in 1..=16, \
     i.e. one of 1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095 (the default), 8191, 16383, \
     32767 or 65535"
)]
pub struct CapacityError {
    /// The rejected value.
    pub value: usize,
}

/// Checks a capacity without building a ring, so configuration can be rejected at parse time.
pub fn check_capacity(value: usize) -> Result<(), CapacityError> {
    // Checking the range first keeps `value + 1` from overflowing.
    if (1..=MAX_CAPACITY).contains(&value) && (value + 1).is_power_of_two() {
        Ok(())
    } else {
        Err(CapacityError { value })
    }
}

/// The outcome of [`Ring::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Read {
    /// Where the next read should start.
    pub pos: u64,
    /// Items appended to `out`.
    pub copied: usize,
    /// Items between the requested position and the oldest retained one that were overwritten
    /// before this read; reported once, for the whole gap.
    pub lost: u64,
    /// `pos` had reached the newest item (or the read's end bound) when the read was made.
    pub caught_up: bool,
}

/// Where a request starts reading, from the positioning methods of [`Ring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Start {
    /// The first sequence number to read.
    pub pos: u64,
    /// `next_seq()` as seen while positioning. `[pos, end)` is the history the position was chosen
    /// from: requests without follow stop there, so they finish even while flows keep arriving.
    pub end: u64,
    /// Older items that might have belonged to the answer had already been overwritten: the
    /// answer reaches back only as far as the ring does.
    pub truncated: bool,
}

/// A consistent snapshot for status endpoints and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub capacity: usize,
    pub len: usize,
    /// Items ever written (Hubble's `seen_flows`).
    pub total_written: u64,
    pub oldest_seq: u64,
    /// Times of the oldest and newest retained items: the window of history a request can see.
    pub oldest_time_ns: Option<i64>,
    pub newest_time_ns: Option<i64>,
}

struct Inner<T> {
    /// Reserved at `capacity + 1` (a power of two) so a sequence number maps to its slot with a
    /// mask; it fills by pushing and never reallocates. One slot always holds the most recently
    /// evicted item, which is no longer readable.
    slots: Vec<T>,
    /// Sequence number of the next item to be written, which is also the number ever written.
    next: u64,
    /// `capacity`, which is also `slots.capacity() - 1`.
    mask: u64,
}

impl<T> Inner<T> {
    fn oldest(&self) -> u64 {
        self.next.saturating_sub(self.mask)
    }

    /// Callers keep `seq` in `oldest()..next`, where every slot has been written.
    fn get(&self, seq: u64) -> &T {
        &self.slots[(seq & self.mask) as usize]
    }
}

/// Fixed-capacity history of recent items with a single writer and any number of cursor readers.
pub struct Ring<T> {
    inner: RwLock<Inner<T>>,
    /// Mirrors `Inner::next` so size queries and followers' wake-up checks skip the lock.
    next: AtomicU64,
    capacity: u64,
    appended: Notify,
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("next_seq", &self.next_seq())
            .finish_non_exhaustive()
    }
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self::with_valid_capacity(DEFAULT_CAPACITY)
    }
}

impl<T> Ring<T> {
    /// Allocates all slots up front; `capacity` must be 2^i − 1 for i in 1..=16.
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        check_capacity(capacity)?;
        Ok(Self::with_valid_capacity(capacity))
    }

    fn with_valid_capacity(capacity: usize) -> Self {
        Self {
            inner: RwLock::new(Inner {
                slots: Vec::with_capacity(capacity + 1),
                next: 0,
                mask: capacity as u64,
            }),
            next: AtomicU64::new(0),
            capacity: capacity as u64,
            appended: Notify::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Items currently readable.
    pub fn len(&self) -> usize {
        // At most `capacity`, which fits in usize.
        self.next_seq().min(self.capacity) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.next_seq() == 0
    }

    /// Items ever written (Hubble's `seen_flows`); the same number as [`Ring::next_seq`].
    pub fn total_written(&self) -> u64 {
        self.next_seq()
    }

    /// Sequence number the next written item will get.
    pub fn next_seq(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Sequence number of the oldest readable item (equal to `next_seq()` when empty).
    pub fn oldest_seq(&self) -> u64 {
        self.next_seq().saturating_sub(self.capacity)
    }

    /// Start of a `first N` request: the oldest retained item.
    pub fn first_pos(&self) -> Start {
        let end = self.next_seq();
        let pos = end.saturating_sub(self.capacity);
        Start {
            pos,
            end,
            truncated: pos > 0,
        }
    }

    /// Start of a follow request with no backlog: only items written from now on.
    pub fn follow_pos(&self) -> Start {
        let end = self.next_seq();
        Start {
            pos: end,
            end,
            truncated: false,
        }
    }

    /// Returns once an item with sequence number `pos` has been written (`next_seq() > pos`).
    ///
    /// Cancel-safe: it holds no state, so dropping it in a `tokio::select!` loses nothing.
    pub async fn wait_for(&self, pos: u64) {
        loop {
            let mut appended = pin!(self.appended.notified());
            // Registering before checking means a batch pushed between the check and the await
            // still wakes this waiter.
            appended.as_mut().enable();
            if self.next_seq() > pos {
                return;
            }
            appended.await;
        }
    }

    fn read_inner(&self) -> RwLockReadGuard<'_, Inner<T>> {
        // `Inner` is consistent after every item (slot first, then `next`), so a writer that
        // panicked mid-batch (a panicking iterator) left nothing half-written.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_inner(&self) -> RwLockWriteGuard<'_, Inner<T>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Clone + Timestamped + Send + Sync> Ring<T> {
    /// Appends a batch under one lock acquisition and wakes followers once.
    ///
    /// Meant for a single writer (the pipeline task); concurrent writers are safe but interleave.
    /// Items this batch evicts are dropped after the lock is released, so freeing old flows does
    /// not hold up readers; pass an exact-size iterator (a `Vec` or a `drain`) to benefit.
    pub fn push_batch(&self, items: impl IntoIterator<Item = T>) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        let capacity = self.capacity();
        // Bounded by the capacity so a batch far larger than the ring cannot grow this without
        // limit; evictions beyond that are freed in place.
        let mut evicted = Vec::with_capacity(items.size_hint().0.min(capacity));
        {
            let mut guard = self.write_inner();
            let inner = &mut *guard;
            for item in items {
                let slot = (inner.next & inner.mask) as usize;
                match inner.slots.get_mut(slot) {
                    Some(old) => {
                        let old = std::mem::replace(old, item);
                        if evicted.len() < capacity {
                            evicted.push(old);
                        }
                    }
                    None => inner.slots.push(item),
                }
                inner.next += 1;
                // Published per item so the mirror stays exact even if the iterator panics.
                self.next.store(inner.next, Ordering::Release);
            }
        }
        self.appended.notify_waiters();
        drop(evicted);
    }

    /// Copies up to `max` items starting at `pos` into `out`.
    ///
    /// If `pos` has been overwritten, the read jumps to the oldest retained item and reports the
    /// whole gap as one `lost` count. A `pos` beyond `next_seq()` reads nothing and stays put.
    pub fn read(&self, pos: u64, max: usize, out: &mut Vec<T>) -> Read {
        self.read_before(pos, u64::MAX, max, out)
    }

    /// [`Ring::read`] that never copies sequence numbers at or after `end`, and counts as lost
    /// only overwritten items before `end`.
    pub fn read_before(&self, pos: u64, end: u64, max: usize, out: &mut Vec<T>) -> Read {
        let inner = self.read_inner();
        let oldest = inner.oldest();
        let (start, lost) = if pos < oldest {
            (oldest, oldest.min(end).saturating_sub(pos))
        } else {
            (pos, 0)
        };
        let limit = inner.next.min(end);
        let stop = limit.min(start.saturating_add(max as u64)).max(start);
        out.extend((start..stop).map(|seq| inner.get(seq).clone()));
        Read {
            pos: stop,
            // At most `max`.
            copied: (stop - start) as usize,
            lost,
            caught_up: stop >= limit,
        }
    }

    /// Start of a `last N` request: walks back from the newest item counting only items for
    /// which `matches` is true, and stops at the N-th match, at the first item older than
    /// `since_ns`, or at the oldest retained item, whichever comes first.
    ///
    /// Reading forward from the returned position yields the N matches (or all there are), so the
    /// backlog is never buffered. With `n == 0` nothing is replayed. Like Hubble, the walk stops at
    /// the first item older than `since_ns` even though times are only roughly ordered; the
    /// reader still applies `since` to each item. `matches` runs under the read lock: keep it to
    /// the request's filters and do not touch the ring from it.
    pub fn last_pos(
        &self,
        n: usize,
        since_ns: Option<i64>,
        matches: impl FnMut(&T) -> bool,
    ) -> Start {
        self.last_pos_chunked(n, since_ns, matches, WALK_CHUNK, || {})
    }

    fn last_pos_chunked(
        &self,
        n: usize,
        since_ns: Option<i64>,
        mut matches: impl FnMut(&T) -> bool,
        chunk: u64,
        mut between_chunks: impl FnMut(),
    ) -> Start {
        if n == 0 {
            return self.follow_pos();
        }
        let mut found = 0;
        let mut walked: Option<(u64, u64)> = None;
        loop {
            let inner = self.read_inner();
            let oldest = inner.oldest();
            let (mut pos, end) = walked.unwrap_or((inner.next, inner.next));
            let start = |pos, truncated| Start {
                pos,
                end,
                truncated,
            };
            if pos < oldest {
                // The writer overwrote part of what was already counted: start at what remains.
                return start(oldest, true);
            }
            let stop = pos.saturating_sub(chunk).max(oldest);
            while pos > stop {
                let item = inner.get(pos - 1);
                if since_ns.is_some_and(|since| item.time_ns() < since) {
                    return start(pos, false);
                }
                pos -= 1;
                if matches(item) {
                    found += 1;
                    if found == n {
                        return start(pos, false);
                    }
                }
            }
            if pos == oldest {
                return start(pos, oldest > 0);
            }
            walked = Some((pos, end));
            drop(inner);
            between_chunks();
        }
    }

    /// Start of a `since` request without `last`: the first retained position whose item time is
    /// at or after `since_ns`, or `next_seq()` if there is none.
    ///
    /// This walks forward rather than binary-searching: events from different CPUs reach the ring
    /// interleaved, so times are only roughly ordered and a bisection could land inside a run of
    /// late items and skip earlier matches. A walk costs at most one pass in chunks.
    pub fn since_pos(&self, since_ns: i64) -> Start {
        self.since_pos_chunked(since_ns, WALK_CHUNK, || {})
    }

    fn since_pos_chunked(
        &self,
        since_ns: i64,
        chunk: u64,
        mut between_chunks: impl FnMut(),
    ) -> Start {
        let mut walked: Option<u64> = None;
        let mut skipped = false;
        loop {
            let inner = self.read_inner();
            let oldest = inner.oldest();
            let mut pos = match walked {
                Some(pos) if pos < oldest => {
                    // Items not yet examined were overwritten; any of them might have matched.
                    skipped = true;
                    oldest
                }
                Some(pos) => pos,
                None => oldest,
            };
            let stop = inner.next.min(pos.saturating_add(chunk));
            let start = |pos, truncated| Start {
                pos,
                end: inner.next,
                truncated,
            };
            while pos < stop {
                if inner.get(pos).time_ns() >= since_ns {
                    return start(pos, skipped || (pos == oldest && oldest > 0));
                }
                pos += 1;
            }
            if pos >= inner.next {
                return start(pos, skipped);
            }
            walked = Some(pos);
            drop(inner);
            between_chunks();
        }
    }

    pub fn status(&self) -> Status {
        let inner = self.read_inner();
        let oldest = inner.oldest();
        let (oldest_time_ns, newest_time_ns) = if inner.next > oldest {
            (
                Some(inner.get(oldest).time_ns()),
                Some(inner.get(inner.next - 1).time_ns()),
            )
        } else {
            (None, None)
        };
        Status {
            capacity: self.capacity(),
            len: (inner.next - oldest) as usize,
            total_written: inner.next,
            oldest_seq: oldest,
            oldest_time_ns,
            newest_time_ns,
        }
    }
}

/// The outcome of one [`Reader`] step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Batch {
    /// Items appended to `out`.
    pub copied: usize,
    /// Items overwritten before this reader got to them, aggregated over the whole gap. They
    /// come before the copied items.
    pub lost: u64,
    /// Nothing more was available (or the end bound was reached) when this batch was read.
    pub caught_up: bool,
}

/// A cursor over a shared ring, for one API request.
///
/// Holds only a position: a slow reader costs the writer nothing and simply falls behind, and
/// learns how far through [`Batch::lost`].
pub struct Reader<T> {
    ring: Arc<Ring<T>>,
    pos: u64,
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("pos", &self.pos)
            .field("ring", &self.ring)
            .finish()
    }
}

impl<T: Clone + Timestamped + Send + Sync> Reader<T> {
    /// `pos` should come from the ring's positioning methods ([`Start::pos`]).
    pub fn new(ring: Arc<Ring<T>>, pos: u64) -> Self {
        Self { ring, pos }
    }

    /// Sequence number of the next item this reader will return.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn ring(&self) -> &Arc<Ring<T>> {
        &self.ring
    }

    /// Copies up to [`READ_BATCH`] items into `out` without waiting.
    pub fn try_next_batch(&mut self, out: &mut Vec<T>) -> Batch {
        self.try_next_batch_before(u64::MAX, out)
    }

    /// Like [`Reader::try_next_batch`] but stops before sequence number `end` (usually
    /// [`Start::end`]), so a request without follow ends even while flows keep arriving.
    pub fn try_next_batch_before(&mut self, end: u64, out: &mut Vec<T>) -> Batch {
        let read = self.ring.read_before(self.pos, end, READ_BATCH, out);
        self.pos = read.pos;
        Batch {
            copied: read.copied,
            lost: read.lost,
            caught_up: read.caught_up,
        }
    }

    /// Returns the next non-empty batch (items, a loss, or both), waiting for the writer when
    /// caught up. Returns at once while backlog remains, so a follow request needs only this.
    ///
    /// Cancel-safe: the position only moves together with items appended to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<T>) -> Batch {
        loop {
            let batch = self.try_next_batch(out);
            if batch.copied > 0 || batch.lost > 0 {
                return batch;
            }
            self.ring.wait_for(self.pos).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Ev {
        seq: u64,
        t: i64,
        tagged: bool,
    }

    impl Timestamped for Ev {
        fn time_ns(&self) -> i64 {
            self.t
        }
    }

    /// Items whose `seq` equals the ring sequence number they will get when pushed in order,
    /// with times 10 ns apart and every tenth one tagged.
    fn evs(seqs: Range<u64>) -> Vec<Ev> {
        seqs.map(|seq| Ev {
            seq,
            t: 1_000 + 10 * seq as i64,
            tagged: seq % 10 == 0,
        })
        .collect()
    }

    fn filled(capacity: usize, written: u64) -> Ring<Ev> {
        let ring = Ring::new(capacity).unwrap();
        ring.push_batch(evs(0..written));
        ring
    }

    /// Reads from `pos` to the newest item, returning the sequence numbers read and the total lost.
    fn drain(ring: &Ring<Ev>, mut pos: u64) -> (Vec<u64>, u64) {
        let (mut seqs, mut lost, mut out) = (Vec::new(), 0, Vec::new());
        loop {
            let read = ring.read(pos, 100, &mut out);
            lost += read.lost;
            pos = read.pos;
            seqs.extend(out.drain(..).map(|e| e.seq));
            if read.caught_up {
                return (seqs, lost);
            }
        }
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn capacity_must_be_one_less_than_a_power_of_two() {
        for i in 1..=16 {
            let capacity = (1usize << i) - 1;
            let ring = Ring::<Ev>::new(capacity).unwrap();
            assert_eq!(ring.capacity(), capacity);
        }
        for value in [0, 2, 4, 100, 4096, 65_534, 65_536, 131_071, usize::MAX] {
            let err = Ring::<Ev>::new(value).unwrap_err();
            assert_eq!(err, CapacityError { value });
            let message = err.to_string();
            assert!(message.contains(&value.to_string()), "{message}");
            assert!(
                message.contains("65535") && message.contains("4095"),
                "{message}"
            );
        }
        assert_eq!(Ring::<Ev>::default().capacity(), DEFAULT_CAPACITY);
    }

    #[test]
    fn counters_before_and_after_wrapping() {
        let ring = Ring::<Ev>::new(7).unwrap();
        assert!(ring.is_empty());
        assert_eq!((ring.len(), ring.oldest_seq(), ring.next_seq()), (0, 0, 0));
        assert_eq!(ring.status().oldest_time_ns, None);

        ring.push_batch(evs(0..5));
        assert_eq!((ring.len(), ring.oldest_seq(), ring.next_seq()), (5, 0, 5));

        // Batches of assorted sizes, including one larger than the ring.
        ring.push_batch(evs(5..6));
        ring.push_batch(Vec::new());
        ring.push_batch(evs(6..13));
        ring.push_batch(evs(13..40));
        ring.push_batch(evs(40..43));
        assert_eq!(ring.len(), 7);
        assert_eq!(ring.total_written(), 43);
        assert_eq!(ring.oldest_seq(), 36);

        let (seqs, lost) = drain(&ring, ring.oldest_seq());
        assert_eq!(seqs, (36..43).collect::<Vec<_>>());
        assert_eq!(lost, 0);

        let status = ring.status();
        assert_eq!(
            (status.len, status.total_written, status.oldest_seq),
            (7, 43, 36)
        );
        assert_eq!(status.oldest_time_ns, Some(1_360));
        assert_eq!(status.newest_time_ns, Some(1_420));
    }

    #[test]
    fn read_respects_max_and_end() {
        let ring = filled(15, 10);
        let mut out = Vec::new();
        let read = ring.read(2, 3, &mut out);
        assert_eq!(
            read,
            Read {
                pos: 5,
                copied: 3,
                lost: 0,
                caught_up: false
            }
        );
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);

        out.clear();
        let read = ring.read_before(5, 7, 100, &mut out);
        assert_eq!(
            read,
            Read {
                pos: 7,
                copied: 2,
                lost: 0,
                caught_up: true
            }
        );

        // Ahead of the writer: nothing read, position kept.
        let read = ring.read(12, 100, &mut out);
        assert_eq!(
            read,
            Read {
                pos: 12,
                copied: 0,
                lost: 0,
                caught_up: true
            }
        );
    }

    #[test]
    fn overwritten_reader_gets_one_lost_count_and_continues_at_oldest() {
        let ring = filled(7, 5);
        let mut out = Vec::new();
        let read = ring.read(0, 2, &mut out);
        assert_eq!((read.pos, read.lost), (2, 0));

        ring.push_batch(evs(5..30));
        out.clear();
        let read = ring.read(2, 100, &mut out);
        assert_eq!(
            read,
            Read {
                pos: 30,
                copied: 7,
                lost: 21,
                caught_up: true
            }
        );
        assert_eq!(
            out.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (23..30).collect::<Vec<_>>()
        );

        // Bounded reads count only the part of the gap they asked for.
        out.clear();
        let read = ring.read_before(2, 10, 100, &mut out);
        assert_eq!(
            read,
            Read {
                pos: 23,
                copied: 0,
                lost: 8,
                caught_up: true
            }
        );

        let mut reader = Reader::new(Arc::new(ring), 0);
        out.clear();
        let batch = reader.try_next_batch(&mut out);
        assert_eq!(
            batch,
            Batch {
                copied: 7,
                lost: 23,
                caught_up: true
            }
        );
        assert_eq!(reader.pos(), 30);
        assert_eq!(
            reader.try_next_batch(&mut out),
            Batch {
                copied: 0,
                lost: 0,
                caught_up: true
            }
        );
    }

    #[test]
    fn last_n_counts_only_matches() {
        let ring = filled(4095, 3_000);
        let start = ring.last_pos(5, None, |e| e.tagged);
        assert_eq!(
            start,
            Start {
                pos: 2_950,
                end: 3_000,
                truncated: false
            }
        );
        let (seqs, _) = drain(&ring, start.pos);
        assert_eq!(seqs.len(), 50);

        // 250 matches need 2,500 items: the walk crosses chunk boundaries.
        let start = ring.last_pos(250, None, |e| e.tagged);
        assert_eq!(start.pos, 500);
        let (seqs, _) = drain(&ring, start.pos);
        let tagged = seqs.iter().filter(|&&s| s % 10 == 0).count();
        assert_eq!(tagged, 250);

        // Unfiltered, and on a wrapped ring.
        let ring = wrapped();
        assert_eq!(ring.last_pos(3, None, |_| true).pos, 97);
        assert_eq!(ring.last_pos(0, None, |_| true), ring.follow_pos());
    }

    fn wrapped() -> Ring<Ev> {
        filled(15, 100)
    }

    #[test]
    fn last_n_larger_than_available() {
        // Not wrapped: everything is there, nothing is missing.
        let ring = filled(15, 5);
        assert_eq!(
            ring.last_pos(100, None, |_| true),
            Start {
                pos: 0,
                end: 5,
                truncated: false
            }
        );

        // Wrapped: starts at the oldest retained item and says the answer is cut short.
        let ring = wrapped();
        let start = ring.last_pos(100, None, |e| e.tagged);
        assert_eq!(
            start,
            Start {
                pos: 85,
                end: 100,
                truncated: true
            }
        );

        let empty = Ring::<Ev>::new(15).unwrap();
        assert_eq!(
            empty.last_pos(10, None, |_| true),
            Start {
                pos: 0,
                end: 0,
                truncated: false
            }
        );
    }

    #[test]
    fn last_n_stops_at_since() {
        let ring = filled(4095, 3_000);
        // Item 2,000 has time 21,000; everything before it is older.
        let start = ring.last_pos(1_000, Some(21_000), |e| e.tagged);
        assert_eq!(
            start,
            Start {
                pos: 2_000,
                end: 3_000,
                truncated: false
            }
        );
        // N reached before the since boundary.
        assert_eq!(ring.last_pos(3, Some(21_000), |e| e.tagged).pos, 2_970);
        // A since boundary before the retained window is not reached: truncated.
        let ring = wrapped();
        let start = ring.last_pos(1_000, Some(0), |_| true);
        assert_eq!(
            start,
            Start {
                pos: 85,
                end: 100,
                truncated: true
            }
        );
    }

    #[test]
    fn since_finds_the_first_item_at_or_after() {
        let ring = filled(4095, 3_000);
        let start = ring.since_pos(21_000);
        assert_eq!(
            start,
            Start {
                pos: 2_000,
                end: 3_000,
                truncated: false
            }
        );
        assert_eq!(ring.since_pos(20_995).pos, 2_000);
        assert_eq!(
            ring.since_pos(0),
            Start {
                pos: 0,
                end: 3_000,
                truncated: false
            }
        );
        // In the future: nothing to replay.
        assert_eq!(
            ring.since_pos(1_000_000),
            Start {
                pos: 3_000,
                end: 3_000,
                truncated: false
            }
        );

        // Before the retained window of a wrapped ring.
        let ring = wrapped();
        assert_eq!(
            ring.since_pos(0),
            Start {
                pos: 85,
                end: 100,
                truncated: true
            }
        );

        // Roughly ordered times: a late item must not hide earlier matches.
        let ring = Ring::new(15).unwrap();
        let times = [10, 20, 50, 30, 40, 60];
        ring.push_batch(times.iter().enumerate().map(|(i, &t)| Ev {
            seq: i as u64,
            t,
            tagged: false,
        }));
        assert_eq!(ring.since_pos(45).pos, 2);
        assert_eq!(ring.since_pos(25).pos, 2);
        assert_eq!(ring.since_pos(15).pos, 1);
    }

    #[test]
    fn first_and_follow_positions() {
        let ring = filled(15, 10);
        assert_eq!(
            ring.first_pos(),
            Start {
                pos: 0,
                end: 10,
                truncated: false
            }
        );
        assert_eq!(
            ring.follow_pos(),
            Start {
                pos: 10,
                end: 10,
                truncated: false
            }
        );
        let ring = wrapped();
        assert_eq!(
            ring.first_pos(),
            Start {
                pos: 85,
                end: 100,
                truncated: true
            }
        );
        let (seqs, _) = drain(&ring, ring.first_pos().pos);
        assert_eq!(seqs, (85..100).collect::<Vec<_>>());
    }

    #[test]
    fn walks_cope_with_the_writer_overwriting_between_chunks() {
        let ring = filled(63, 63);
        let mut pushed = false;
        // The first chunk counts 62 down to 53; the writer then overwrites up to 56.
        let start = ring.last_pos_chunked(
            1_000,
            None,
            |_| true,
            10,
            || {
                if !pushed {
                    ring.push_batch(evs(63..120));
                    pushed = true;
                }
            },
        );
        assert_eq!(
            start,
            Start {
                pos: 57,
                end: 63,
                truncated: true
            }
        );
        assert_eq!(ring.oldest_seq(), 57);

        // Forward: the writer overwrites items not yet examined.
        let ring = filled(63, 63);
        let mut pushed = false;
        let start = ring.since_pos_chunked(1_000 + 10 * 65, 10, || {
            if !pushed {
                ring.push_batch(evs(63..100));
                pushed = true;
            }
        });
        assert_eq!(
            start,
            Start {
                pos: 65,
                end: 100,
                truncated: true
            }
        );

        // Overwrites that stay below the walked part change nothing.
        let ring = filled(63, 63);
        let start = ring.last_pos_chunked(20, None, |_| true, 10, || ring.push_batch(evs(63..64)));
        assert_eq!(start.pos, 43);
        assert!(!start.truncated);
    }

    #[test]
    fn push_batch_of_a_full_ring() {
        let ring = Ring::new(MAX_CAPACITY).unwrap();
        ring.push_batch(evs(0..65_535));
        assert_eq!(
            (ring.len(), ring.oldest_seq(), ring.next_seq()),
            (65_535, 0, 65_535)
        );
        let (seqs, lost) = drain(&ring, 0);
        assert_eq!(lost, 0);
        assert!(seqs.iter().copied().eq(0..65_535));

        let ring = Ring::new(DEFAULT_CAPACITY).unwrap();
        ring.push_batch(evs(0..65_535));
        assert_eq!(ring.oldest_seq(), 65_535 - 4_095);
        let (seqs, _) = drain(&ring, 0);
        assert!(seqs.iter().copied().eq(61_440..65_535));
    }

    #[test]
    fn holds_arcs() {
        let ring: Ring<Arc<Ev>> = Ring::new(3).unwrap();
        let first = Arc::new(Ev {
            seq: 0,
            t: 5,
            tagged: true,
        });
        ring.push_batch([first.clone()]);
        assert_eq!(ring.since_pos(5).pos, 0);
        assert_eq!(Arc::strong_count(&first), 2);
        // Evicted items are released by later writes rather than kept.
        ring.push_batch(evs(1..5).into_iter().map(Arc::new));
        assert_eq!(ring.oldest_seq(), 2);
        assert_eq!(Arc::strong_count(&first), 1);
    }

    #[tokio::test]
    async fn follower_wakes_on_push() {
        let ring = Arc::new(Ring::<Ev>::new(15).unwrap());
        let pos = ring.follow_pos().pos;
        assert!(
            timeout(Duration::from_millis(50), ring.wait_for(pos))
                .await
                .is_err()
        );

        let mut reader = Reader::new(ring.clone(), pos);
        let follower = tokio::spawn(async move {
            let mut out = Vec::new();
            let batch = reader.next_batch(&mut out).await;
            (batch, out)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        ring.push_batch(evs(0..3));
        let (batch, out) = timeout(WAIT, follower).await.unwrap().unwrap();
        assert_eq!(batch.copied, 3);
        assert_eq!(out, evs(0..3));

        // Already past the position: no wait at all.
        timeout(WAIT, ring.wait_for(1)).await.unwrap();
    }

    #[tokio::test]
    async fn waiting_is_cancel_safe() {
        let ring = Arc::new(Ring::<Ev>::new(15).unwrap());
        let mut reader = Reader::new(ring.clone(), 0);
        let mut out = Vec::new();
        tokio::select! {
            _ = reader.next_batch(&mut out) => panic!("nothing was pushed"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert_eq!((reader.pos(), out.len()), (0, 0));
        ring.push_batch(evs(0..2));
        let batch = timeout(WAIT, reader.next_batch(&mut out)).await.unwrap();
        assert_eq!((batch.copied, reader.pos()), (2, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_readers_see_every_item_or_its_loss() {
        const TOTAL: u64 = 200_000;
        let ring = Arc::new(Ring::<Ev>::new(255).unwrap());
        ring.push_batch(evs(0..100));

        let mut readers = Vec::new();
        for (i, start) in [ring.first_pos().pos, ring.follow_pos().pos, 0, 50]
            .into_iter()
            .enumerate()
        {
            let mut reader = Reader::new(ring.clone(), start);
            readers.push(tokio::spawn(async move {
                let (mut delivered, mut lost, mut out) = (0, 0, Vec::new());
                let mut expected = start;
                while reader.pos() < TOTAL {
                    let batch = reader.next_batch(&mut out).await;
                    assert!(batch.copied > 0 || batch.lost > 0);
                    expected += batch.lost;
                    lost += batch.lost;
                    for e in out.drain(..) {
                        assert_eq!(e.seq, expected, "reader {i}");
                        expected += 1;
                        delivered += 1;
                    }
                    assert_eq!(reader.pos(), expected);
                    if i == 3 && delivered % 7 == 0 {
                        // A slow reader, to be overtaken.
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
                assert_eq!(delivered + lost, TOTAL - start, "reader {i}");
                lost
            }));
        }

        let rewinder = {
            let ring = ring.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                while ring.next_seq() < TOTAL {
                    let start = ring.last_pos(40, None, |e| e.seq % 3 == 0);
                    assert!(start.pos <= start.end && start.end <= ring.next_seq());
                    out.clear();
                    let read = ring.read(start.pos, 1, &mut out);
                    if !start.truncated && read.lost == 0 {
                        assert_eq!(out[0].seq, start.pos);
                        assert_eq!(out[0].seq % 3, 0);
                    }
                    tokio::task::yield_now().await;
                }
            })
        };

        let writer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut seq = 100;
                let mut size = 1;
                while seq < TOTAL {
                    let end = (seq + size).min(TOTAL);
                    ring.push_batch(evs(seq..end));
                    seq = end;
                    size = size % 64 + 1;
                    if seq % 4_096 < 64 {
                        // Pauses let followers catch up and sleep, so wake-ups are exercised too.
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            })
        };

        for reader in readers {
            timeout(Duration::from_secs(60), reader)
                .await
                .unwrap()
                .unwrap();
        }
        timeout(WAIT, rewinder).await.unwrap().unwrap();
        writer.join().unwrap();
        assert_eq!(ring.total_written(), TOTAL);
    }
}
