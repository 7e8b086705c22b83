//! The endpoints file `--endpoints` reads (as the lab writes it): parsed, then the registry
//! built from it (identities, labels).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = serde_json::from_slice::<flowscope_observer::endpoints::EndpointsFile>(data) {
        let registry = flowscope_observer::endpoints::Registry::build(&file.endpoints);
        let _ = registry.len();
    }
});
