//! A line of flow JSON as `observe --input-file` reads it (Hubble's `observe -o json`, the
//! exporter's files), and as the relay and `observe` read observers' streams.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = flowscope_cli::observe::parse_input_line(text);
    }
});
