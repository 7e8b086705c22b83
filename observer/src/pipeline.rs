//! The observer's one writer: datapath events in, flows into the store, in batches.
//! Also turns datapath losses (ring buffer reservations that failed) into lost events, and
//! counts each batch in the flow metrics (when enabled) just before storing it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use flowscope_common::{FlowEvent, kind};
use flowscope_model::flow::{LostEvent, LostEventSource};

use crate::{
    event::{Cached, Record},
    metrics::FlowMetrics,
    parse::Decoder,
    proxy::ProxyFlow,
    source::datapath::{DatapathStats, MAX_CPUS},
    store::{self, CapacityError, Read, Ring, Start},
};

/// How many of the newest events keep their decoded flow and JSON line: enough for followers
/// that run a few thousand flows behind the writer to share one rendering; older history is
/// kept compact and decoded by the request that reads it.
const HOT_CAPACITY: usize = 2047;

/// Recent history: every event as a compact record (`cold`, the configured capacity) and the
/// newest ones also as shared decoded entries (`hot`). Both rings receive the same batches, so
/// a sequence number means the same event in each.
pub struct FlowStore {
    cold: Ring<Arc<Record>>,
    hot: Ring<Arc<Cached>>,
}

impl FlowStore {
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        Ok(FlowStore {
            cold: Ring::new(capacity)?,
            hot: Ring::new(capacity.min(HOT_CAPACITY))?,
        })
    }

    pub fn push_batch(&self, records: &mut Vec<Arc<Record>>) {
        self.cold.push_batch(records.iter().cloned());
        // Last, so a follower woken by the hot ring finds the events in both.
        self.hot
            .push_batch(records.drain(..).map(|r| Arc::new(Cached::new(r))));
    }

    /// Reads up to `max` events from `pos` (stopping before `end`): shared entries while `pos`
    /// is recent enough, otherwise fresh entries built from the compact records.
    pub fn read(&self, pos: u64, end: u64, max: usize, out: &mut Vec<Arc<Cached>>) -> Read {
        if pos >= self.hot.oldest_seq() {
            let before = out.len();
            let r = self.hot.read_before(pos, end, max, out);
            if r.lost == 0 {
                return r;
            }
            // Overtaken in the hot ring only: the records are still in the cold one.
            out.truncate(before);
        }
        let mut records = Vec::with_capacity(max.min(store::READ_BATCH));
        let r = self.cold.read_before(pos, end, max, &mut records);
        out.extend(records.into_iter().map(|r| Arc::new(Cached::new(r))));
        r
    }

    pub async fn wait_for(&self, pos: u64) {
        self.hot.wait_for(pos).await
    }

    pub fn first_pos(&self) -> Start {
        self.cold.first_pos()
    }

    pub fn follow_pos(&self) -> Start {
        self.cold.follow_pos()
    }

    pub fn since_pos(&self, since_ns: i64) -> Start {
        self.cold.since_pos(since_ns)
    }

    pub fn last_pos(
        &self,
        n: usize,
        since_ns: Option<i64>,
        matches: impl FnMut(&Arc<Record>) -> bool,
    ) -> Start {
        self.cold.last_pos(n, since_ns, matches)
    }

    pub fn status(&self) -> store::Status {
        self.cold.status()
    }
}

/// Counters the API and metrics read; written only by the pipeline.
#[derive(Default)]
pub struct PipelineCounters {
    pub events_decoded: AtomicU64,
    pub datapath_lost: AtomicU64,
    pub malformed: AtomicU64,
}

pub struct Pipeline {
    pub decoder: Decoder,
    store: Arc<FlowStore>,
    counters: Arc<PipelineCounters>,
    batch: Vec<Arc<Record>>,
    lost_seen: [u64; MAX_CPUS],
    rate: RateWindow,
    metrics: Option<FlowMetrics>,
}

impl Pipeline {
    pub fn new(decoder: Decoder, store: Arc<FlowStore>, counters: Arc<PipelineCounters>) -> Self {
        Pipeline {
            decoder,
            store,
            counters,
            batch: Vec::with_capacity(1024),
            lost_seen: [0; MAX_CPUS],
            rate: RateWindow::new(),
            metrics: None,
        }
    }

    /// Counts every stored batch in these flow metrics from now on.
    pub fn set_metrics(&mut self, metrics: FlowMetrics) {
        self.metrics = Some(metrics);
    }

    pub fn metrics_mut(&mut self) -> Option<&mut FlowMetrics> {
        self.metrics.as_mut()
    }

    /// Records the batch in the metrics, then stores it in one write.
    fn store_batch(&mut self) {
        if let Some(m) = &mut self.metrics {
            m.record(&self.batch, self.decoder.registry());
        }
        self.store.push_batch(&mut self.batch);
    }

    /// Decodes a batch of datapath events and appends them to the store in one write.
    pub fn process(&mut self, events: &[FlowEvent]) {
        self.process_with_payloads(events, &mut Vec::new());
    }

    /// As [`Pipeline::process`], with the payloads of the batch's L7 events (DNS, HTTP) in
    /// order; they are parsed into L7 flows and then dropped (`payloads` is left empty).
    pub fn process_with_payloads(&mut self, events: &[FlowEvent], payloads: &mut Vec<Box<[u8]>>) {
        let mut messages = payloads.drain(..);
        for ev in events {
            if ev.kind == kind::DNS || ev.kind == kind::HTTP {
                let Some(payload) = messages.next() else {
                    continue;
                };
                let record = if ev.kind == kind::DNS {
                    self.decoder.dns_record(ev, &payload)
                } else {
                    self.decoder.http_record(ev, &payload)
                };
                if let Some(record) = record {
                    self.batch.push(Arc::new(Record::Flow(record)));
                }
                continue;
            }
            // A connection an endpoint's policy judged: Cilium's policy verdict notification
            // first, then the trace or drop event, both from one datapath record.
            let record = self.decoder.record(ev);
            if ev.policy_verdict != 0 && matches!(ev.kind, kind::NEW | kind::DROP) {
                let verdict = self.decoder.policy_verdict(&record);
                self.batch.push(Arc::new(Record::Flow(verdict)));
            }
            self.batch.push(Arc::new(Record::Flow(record)));
        }
        self.counters
            .events_decoded
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.rate.add(events.len() as u64);
        self.store_batch();
    }

    /// Stores the L7 flows of the proxy (requests and responses it judged), decoded as
    /// datapath events are: endpoints, interface, time; their HTTP fields and the policies
    /// that decided come with them.
    pub fn process_proxy(&mut self, flows: &mut Vec<ProxyFlow>) {
        let n = flows.len() as u64;
        for f in flows.drain(..) {
            let mut record = self.decoder.record(&f.ev);
            record.http = Some(Arc::new(f.http));
            record.attribution = f.attribution;
            self.batch.push(Arc::new(Record::Flow(record)));
        }
        self.counters.events_decoded.fetch_add(n, Ordering::Relaxed);
        self.rate.add(n);
        self.store_batch();
    }

    /// Stores a lost-events record for L7 flows the proxy could not queue.
    pub fn note_proxy_lost(&mut self, lost: u64) {
        let now_ns = self
            .decoder
            .wall_time(crate::clock::BootClock::boot_now_ns())
            .as_unix_nanos();
        let node = self.decoder.node_name().clone();
        self.batch.push(Arc::new(Record::Lost {
            time_ns: now_ns,
            lost: LostEvent {
                source: LostEventSource::ObserverEventsQueue,
                num_events_lost: lost,
                cpu: None,
                ..LostEvent::default()
            },
            node_name: node,
        }));
        self.store_batch();
    }

    /// Compares the datapath's per-CPU loss counters with the last look and stores one
    /// aggregated lost event per CPU that lost events since.
    /// Per CPU, the ring buffer losses already reported (by the observer before this one, for
    /// a pinned datapath it adopted): only losses beyond these are reported.
    pub fn set_lost_reported(&mut self, reported: &[u64; MAX_CPUS]) {
        self.lost_seen = *reported;
    }

    /// Per CPU, the ring buffer losses reported so far.
    pub fn lost_reported(&self) -> &[u64; MAX_CPUS] {
        &self.lost_seen
    }

    pub fn check_losses(&mut self, stats: &DatapathStats) {
        let now_ns = self
            .decoder
            .wall_time(crate::clock::BootClock::boot_now_ns())
            .as_unix_nanos();
        let node = self.decoder.node_name().clone();
        for (cpu, (&now, seen)) in stats
            .lost_per_cpu
            .iter()
            .zip(self.lost_seen.iter_mut())
            .enumerate()
        {
            if now > *seen {
                let lost = now - *seen;
                *seen = now;
                self.counters
                    .datapath_lost
                    .fetch_add(lost, Ordering::Relaxed);
                let ev = LostEvent {
                    source: LostEventSource::PerfEventRingBuffer,
                    num_events_lost: lost,
                    cpu: Some(cpu as i32),
                    ..LostEvent::default()
                };
                self.batch.push(Arc::new(Record::Lost {
                    time_ns: now_ns,
                    lost: ev,
                    node_name: node.clone(),
                }));
            }
        }
        if !self.batch.is_empty() {
            self.store_batch();
        }
    }

    /// Flows per second averaged over the last minute (Hubble's `flows_rate`).
    pub fn rate(&self) -> f64 {
        self.rate.per_second()
    }

    /// Ring buffer records of the wrong size (a kernel/userspace build mismatch): counted and
    /// reported, never silently skipped.
    pub fn note_malformed(&self, n: u64) {
        self.counters.malformed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn counters(&self) -> &PipelineCounters {
        &self.counters
    }

    /// Once a second: closes the rate window's second and ages the metrics' series.
    pub fn tick(&mut self) {
        self.rate.tick();
        if let Some(m) = &mut self.metrics {
            m.tick(self.decoder.registry(), Instant::now());
        }
    }
}

/// Per-second counts for the last 60 seconds.
struct RateWindow {
    slots: [u64; 60],
    current: u64,
    filled: usize,
    idx: usize,
    started: Instant,
}

impl RateWindow {
    fn new() -> Self {
        RateWindow {
            slots: [0; 60],
            current: 0,
            filled: 0,
            idx: 0,
            started: Instant::now(),
        }
    }

    fn add(&mut self, n: u64) {
        self.current += n;
    }

    /// Closes the current second; call once a second.
    fn tick(&mut self) {
        self.slots[self.idx] = self.current;
        self.current = 0;
        self.idx = (self.idx + 1) % 60;
        self.filled = (self.filled + 1).min(60);
    }

    fn per_second(&self) -> f64 {
        if self.filled == 0 {
            let secs = self.started.elapsed().as_secs_f64();
            return if secs > 0.0 {
                self.current as f64 / secs
            } else {
                0.0
            };
        }
        self.slots.iter().sum::<u64>() as f64 / self.filled as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_common::STAT_COUNT;

    #[test]
    fn datapath_losses_become_one_lost_event_per_cpu_and_interval() {
        let store = Arc::new(FlowStore::new(63).unwrap());
        let counters = Arc::new(PipelineCounters::default());
        let mut p = Pipeline::new(Decoder::new("n"), store.clone(), counters.clone());
        let mut stats = DatapathStats {
            counters: [0; STAT_COUNT as usize],
            lost_per_cpu: [0; MAX_CPUS],
        };
        p.check_losses(&stats);
        assert_eq!(store.status().total_written, 0, "no loss, no event");
        stats.lost_per_cpu[1] = 5;
        stats.lost_per_cpu[3] = 2;
        p.check_losses(&stats);
        stats.lost_per_cpu[1] = 12;
        p.check_losses(&stats);
        let mut out = Vec::new();
        let _ = store.read(0, u64::MAX, 10, &mut out);
        let lost: Vec<(Option<i32>, u64)> = out
            .iter()
            .map(|c| match &*c.record {
                Record::Lost { lost, .. } => {
                    assert_eq!(lost.source, LostEventSource::PerfEventRingBuffer);
                    (lost.cpu, lost.num_events_lost)
                }
                Record::Flow(_) => panic!("unexpected flow"),
            })
            .collect();
        assert_eq!(lost, vec![(Some(1), 5), (Some(3), 2), (Some(1), 7)]);
        assert_eq!(counters.datapath_lost.load(Ordering::Relaxed), 14);
        assert!(
            out[0].json().contains(r#""num_events_lost":"5""#),
            "{}",
            out[0].json()
        );
    }

    #[test]
    fn rate_averages_closed_seconds() {
        let mut r = RateWindow::new();
        r.add(100);
        r.tick();
        r.add(300);
        r.tick();
        assert_eq!(r.per_second(), 200.0);
        for _ in 0..60 {
            r.add(10);
            r.tick();
        }
        assert_eq!(r.per_second(), 10.0);
    }
}
