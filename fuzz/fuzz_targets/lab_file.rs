//! Lab files (`lab up FILE`, `demo --lab FILE`, `connectivity test --lab FILE`): parsed and
//! planned; nothing is created.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = flowscope_lab::control::Lab::from_text("fuzz.yaml".into(), text.into());
    }
});
