//! A flow request as clients send it (GetFlowsRequest JSON with its FlowFilters): validated,
//! compiled, and its filters run against a flow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<flowscope_model::GetFlowsRequest>(data) else {
        return;
    };
    if let Ok(filters) = request.compile() {
        let _ = filters.matches(&flowscope_model::Flow::default());
    }
});
