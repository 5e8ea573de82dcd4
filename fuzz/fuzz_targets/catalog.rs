//! The catalog parser and validator on any text: an error list or a catalog, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permgate_core::catalog::Catalog;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(catalog) = Catalog::parse("fuzz.toml", text) {
            // A catalog that parses also serializes and diffs against itself as empty.
            let _ = serde_json::to_string(&catalog);
            assert!(permgate_core::catalog::diff(&catalog, &catalog).is_empty());
        }
    }
});
