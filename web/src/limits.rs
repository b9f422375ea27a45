//! Whether a converted model's tensors can live on an adapter, or in the wasm heap for the CPU
//! backend, checked from the manifest before anything is downloaded.

use sphinx::io::converted::Manifest;
use sphinx::{Error, Result};

/// A weight larger than `maxStorageBufferBindingSize` is split into row chunks by `nn::Linear`;
/// what cannot be split is one row above the binding limit, or any other tensor (norms, biases,
/// embeddings of the vision towers) above it.
pub fn check_limits(m: &Manifest, max_buffer: u64, max_binding: u64) -> Result<()> {
    let limit = max_buffer.min(max_binding);
    for t in &m.tensors {
        let (rows, _) = t.matrix();
        let row_bytes = t.bytes.div_ceil(rows.max(1) as u64);
        // f32 copies on the GPU are up to 4 bytes per value whatever the stored precision.
        let values: u64 = t.shape.iter().product::<usize>() as u64;
        let splittable = t.shape.len() >= 2;
        let need = if splittable { row_bytes.max(values / rows.max(1) as u64 * 4) } else { values * 4 };
        if need > limit {
            return Err(Error::Gpu(format!(
                "tensor {} ({:?}, {}) needs a GPU buffer of {} MiB, but this adapter allows {} MiB \
                 (maxBufferSize {} MiB, maxStorageBufferBindingSize {} MiB); use a GPU with larger limits",
                t.name,
                t.shape,
                t.quant.name(),
                need >> 20,
                limit >> 20,
                max_buffer >> 20,
                max_binding >> 20
            )));
        }
    }
    Ok(())
}

/// The most memory a wasm32 module can address: 4 GiB (65536 pages of 64 KiB).
pub const WASM_MEMORY: u64 = 4 << 30;
/// What the CPU backend needs beside the weights at most: the image encode's activations (the
/// largest phase: ConvNeXt's first stage on one view of SPHINX-Tiny-1k, about 300 MiB), the KV cache
/// of a 4096-position chat (22 layers × 2 × 256 f32 × 4096 ≈ 184 MiB), the engine's own code and
/// data, and room for the allocator's fragmentation.
pub const CPU_WORKING_SET: u64 = 768 << 20;

/// The CPU backend keeps the weights in wasm memory as stored: refuses a model whose weights and
/// working set would not fit in [`WASM_MEMORY`].
pub fn check_cpu_memory(m: &Manifest) -> Result<()> {
    let weights = m.weight_bytes();
    if weights + CPU_WORKING_SET > WASM_MEMORY {
        return Err(Error::Config(format!(
            "this model's weights ({} MiB) and the CPU backend's working memory (up to {} MiB) do not fit the {} MiB a browser gives WebAssembly; use a smaller precision (q4) or the GPU",
            weights >> 20,
            CPU_WORKING_SET >> 20,
            WASM_MEMORY >> 20
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx::io::converted::{FileEntry, QuantChoice, TensorEntry};
    use sphinx::io::quant::Quant;

    fn manifest(tensors: &[(&str, Vec<usize>)]) -> Manifest {
        let entries: Vec<TensorEntry> = tensors
            .iter()
            .map(|(name, shape)| TensorEntry {
                name: name.to_string(),
                shard: 0,
                offset: 0,
                bytes: shape.iter().product::<usize>() as u64 * 4,
                shape: shape.clone(),
                quant: Quant::F32,
                dtype: "F32".into(),
            })
            .collect();
        Manifest {
            format: "sphinx-web".into(),
            format_version: 1,
            model: sphinx::convert::demo_config(),
            quantization: QuantChoice { llm: Quant::F32, vision: Quant::F32 },
            tokenizer: None,
            shards: vec![FileEntry { file: "s".into(), bytes: 1 << 40, sha256: String::new() }],
            tensors: entries,
        }
    }

    #[test]
    fn large_matrices_split_but_large_vectors_and_rows_do_not() {
        let mib = 1u64 << 20;
        // a 32000 x 2048 f32 matrix (250 MiB) fits a 128 MiB binding as row chunks
        check_limits(&manifest(&[("w", vec![32000, 2048])]), 256 * mib, 128 * mib).unwrap();
        // a vector of 64 Mi values (256 MiB) cannot be split
        let e = check_limits(&manifest(&[("norm", vec![64 << 20])]), 1024 * mib, 128 * mib).unwrap_err().to_string();
        assert!(e.contains("norm") && e.contains("maxStorageBufferBindingSize 128 MiB"), "{e}");
        // nor can one row larger than the binding
        let e = check_limits(&manifest(&[("wide", vec![2, 40 << 20])]), 1024 * mib, 128 * mib).unwrap_err().to_string();
        assert!(e.contains("wide"), "{e}");
    }
}
