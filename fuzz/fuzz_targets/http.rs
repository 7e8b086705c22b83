//! HTTP/1.x heads as the datapath copies them from the visibility ports (at most 512 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flowscope_observer::http::parse(data);
});
