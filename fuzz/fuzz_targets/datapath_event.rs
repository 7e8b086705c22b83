//! Ring buffer records as the datapath writes them: decoded (flow events, and L7 events with
//! their payload), then through the pipeline into the store as flows. The first byte splits
//! the rest into up to four records, so related events (a DNS query and its answer, a
//! connection's verdict and trace) meet in one decoder.
#![no_main]

use std::sync::Arc;

use flowscope_observer::{
    parse::Decoder,
    pipeline::{FlowStore, Pipeline, PipelineCounters},
    source::events::decode_record,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let parts = usize::from(first % 4) + 1;
    let size = rest.len().div_ceil(parts).max(1);
    let mut events = Vec::new();
    let mut payloads = Vec::new();
    for chunk in rest.chunks(size) {
        if let Some((event, payload)) = decode_record(chunk) {
            events.push(event);
            payloads.extend(payload);
        }
    }
    let store = Arc::new(FlowStore::new(255).expect("capacity"));
    let mut pipeline = Pipeline::new(
        Decoder::new("fuzz"),
        store,
        Arc::new(PipelineCounters::default()),
    );
    pipeline.process_with_payloads(&events, &mut payloads);
});
