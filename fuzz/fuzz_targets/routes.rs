//! The path matcher: route patterns and request paths, any bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use permgate_core::catalog::Catalog;
use permgate_core::route::{Method, Pattern};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}")))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `METHOD PATH` against the built-in catalog's router...
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
    if let Some(m) = Method::parse(method)
        && let Some(api) = catalog().route(m, path)
    {
        assert!(path.starts_with('/'), "{path} matched {}", api.id);
    }
    // ... and the text as a route pattern.
    let _ = Pattern::parse(text);
});
