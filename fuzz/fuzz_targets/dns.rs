//! DNS messages as the datapath copies them from UDP port 53 (at most the first 512 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flowscope_observer::dns::parse(data);
});
