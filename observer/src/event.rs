//! What the flow store holds. Every event is kept as a compact [`Record`] (a datapath event
//! and its context, about 200 bytes) for the whole history; the recent part is also kept as
//! [`Cached`] entries whose full flow and JSON line are built at most once, by whichever
//! subscriber needs them first, and then shared by every other subscriber.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use flowscope_model::{
    Flow, Timestamp,
    flow::{GetFlowsResponseRef, LostEvent, LostEventSource, ResponseKindRef},
};
use flowscope_proto::Encoded;

use crate::{parse::FlowRecord, store::Timestamped};

pub enum Record {
    Flow(FlowRecord),
    /// Events lost before the store (the kernel ring buffer was full).
    Lost {
        time_ns: i64,
        lost: LostEvent,
        node_name: Arc<str>,
    },
}

impl Timestamped for Record {
    fn time_ns(&self) -> i64 {
        match self {
            Record::Flow(f) => f.time_ns,
            Record::Lost { time_ns, .. } => *time_ns,
        }
    }
}

/// A record with its flow and JSON line, each built on first use.
pub struct Cached {
    pub record: Arc<Record>,
    flow: OnceLock<Flow>,
    json: OnceLock<Utf8Bytes>,
    /// The gRPC message in wire form, made from the JSON line once a gRPC client asks for the
    /// record.
    grpc: OnceLock<Result<Encoded, tonic::Status>>,
}

impl Cached {
    pub fn new(record: Arc<Record>) -> Self {
        Cached {
            record,
            flow: OnceLock::new(),
            json: OnceLock::new(),
            grpc: OnceLock::new(),
        }
    }

    /// The flow, or None for a lost-events record.
    pub fn flow(&self) -> Option<&Flow> {
        match &*self.record {
            Record::Flow(r) => Some(self.flow.get_or_init(|| r.to_flow())),
            Record::Lost { .. } => None,
        }
    }

    /// The `hubble observe -o json` line, rendered once however many subscribers send it.
    pub fn json(&self) -> Utf8Bytes {
        self.json
            .get_or_init(|| {
                let line = match &*self.record {
                    Record::Flow(r) => {
                        let flow = self.flow.get_or_init(|| r.to_flow());
                        // A typical line is 800 to 1,000 bytes: one allocation, no regrowth.
                        let mut buf = Vec::with_capacity(1024);
                        serde_json::to_writer(&mut buf, &GetFlowsResponseRef::from(flow))
                            .map(|()| String::from_utf8(buf).unwrap_or_default())
                    }
                    Record::Lost {
                        time_ns,
                        lost,
                        node_name,
                    } => lost_line(lost, node_name, *time_ns),
                };
                // Serializing plain structs into a String cannot fail.
                Utf8Bytes::from(line.unwrap_or_default())
            })
            .clone()
    }
}

impl Cached {
    /// The gRPC message, converted and encoded once however many gRPC subscribers send it.
    pub fn grpc(&self) -> Result<Encoded, tonic::Status> {
        self.grpc
            .get_or_init(|| flowscope_server::grpc::response(&self.json()))
            .clone()
    }
}

/// The line a reader of the store (a flow stream, the exporter) sends when the writer
/// overwrote `lost` flows before it read them: Hubble's `HUBBLE_RING_BUFFER` lost event, now.
pub fn ring_lost_line(lost: u64, node_name: &str) -> Utf8Bytes {
    let ev = LostEvent {
        source: LostEventSource::HubbleRingBuffer,
        num_events_lost: lost,
        cpu: Some(0),
        ..LostEvent::default()
    };
    // Serializing plain structs into a String cannot fail.
    Utf8Bytes::from(lost_line(&ev, node_name, unix_now_ns()).unwrap_or_default())
}

/// The wall clock in nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A lost-events line, also used for losses found by a reader itself.
pub fn lost_line(lost: &LostEvent, node_name: &str, time_ns: i64) -> serde_json::Result<String> {
    serde_json::to_string(&GetFlowsResponseRef {
        kind: ResponseKindRef::LostEvents(lost),
        node_name,
        time: Some(Timestamp::from_unix_nanos(time_ns)),
    })
}

impl Timestamped for Cached {
    fn time_ns(&self) -> i64 {
        self.record.time_ns()
    }
}
