//! wasm-bindgen bindings of the SPHINX engine for browsers, driven by the npm package's Web Worker
//! (`pkg/worker.js`): the GPU device and model session (`session.rs`), shard reads from the Origin
//! Private File System (`opfs.rs`), incremental SHA-256 of downloads (`digest.rs`), the adapter-limit
//! check of a manifest (`limits.rs`), and answer parsing for drawing boxes and points (`tasks.rs`).
//! A thin shell: the model code is the `sphinx` crate's, the same as natively. Errors cross to
//! JavaScript as `Error`s carrying the crate's message. The browser-only modules build for wasm32
//! only; the rest is unit-tested natively.

pub mod digest;
pub mod limits;
#[cfg(target_arch = "wasm32")]
pub mod opfs;
#[cfg(target_arch = "wasm32")]
pub mod session;
pub mod tasks;

use wasm_bindgen::prelude::*;

/// The threaded build: `initThreadPool(n)` starts n Web Workers on this module's shared memory and
/// makes them rayon's pool (the CPU backend's kernels split over them).
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;

/// A crate error as a JavaScript `Error` with the same message.
pub(crate) fn js_error(e: sphinx::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// Checks `loadSphinx`'s options (`{precision, autotune, limits, device}`) with the engine's own
/// parsers; the error names the option and what it takes.
#[wasm_bindgen(js_name = checkLoadOptions)]
pub fn check_load_options(json: &str) -> Result<(), JsError> {
    #[derive(serde::Deserialize)]
    struct Options {
        precision: String,
        autotune: String,
        limits: String,
        device: String,
    }
    let o: Options = serde_json::from_str(json).map_err(|e| JsError::new(&format!("loadSphinx options: {e}")))?;
    let checked = sphinx::nn::PrecisionChoice::parse(&o.precision)
        .and(sphinx::kernels::tune::AutotuneMode::parse(&o.autotune))
        .and(sphinx::runtime::LimitsChoice::parse(&o.limits))
        .and(sphinx::tensor::DeviceChoice::parse(&o.device));
    checked.map(|_| ()).map_err(|e| JsError::new(&format!("loadSphinx: {e}")))
}

/// The package version (the workspace's).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
