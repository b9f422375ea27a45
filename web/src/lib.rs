//! wasm-bindgen bindings over the `sphinx` crate (filled in by the browser issue).
