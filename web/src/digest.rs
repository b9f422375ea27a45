//! SHA-256 computed as download chunks arrive (the manifest lists every file's digest), so that a
//! shard is verified without being read twice and never held whole in memory.

use sha2::{Digest, Sha256 as Inner};
use sphinx::io::converted::hex;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Sha256 {
    inner: Inner,
    bytes: f64,
}

#[wasm_bindgen]
impl Sha256 {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256 {
        Sha256 { inner: Inner::new(), bytes: 0.0 }
    }

    /// Hashes the next chunk (copied into wasm memory for the call, then freed).
    pub fn update(&mut self, chunk: &[u8]) {
        self.inner.update(chunk);
        self.bytes += chunk.len() as f64;
    }

    /// Bytes hashed so far.
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> f64 {
        self.bytes
    }

    /// The lower-case hex digest (consumes the hasher).
    pub fn finish(self) -> String {
        hex(&self.inner.finalize())
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

/// One-shot digest (cache keys, small files).
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(data: &[u8]) -> String {
    sphinx::io::converted::sha256_hex(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut h = Sha256::new();
        for c in data.chunks(333) {
            h.update(c);
        }
        assert_eq!(h.bytes(), 10_000.0);
        assert_eq!(h.finish(), sha256_hex(&data));
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
