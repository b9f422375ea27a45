//! Benchmarks (`sphinx bench`): kernel timings at the shapes SPHINX runs, on the device in hand.
//! Timings only — no test asserts on them.

use crate::kernels::attention::{attention_into, Attn};
use crate::kernels::copy2d::Strided;
use crate::io::quant::{Packed, Quant};
use crate::nn::Linear;
use crate::tensor::{Device, Tensor};
use crate::Result;
use std::time::Instant;

/// One measured case.
pub struct BenchRow {
    pub name: String,
    pub ms: f64,
    /// Useful work per run (flop) for a rate.
    pub flop: f64,
    /// Bytes of weights/activations read per run, for a bandwidth.
    pub bytes: f64,
}

impl std::fmt::Display for BenchRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} {:>10.3} ms {:>9.2} GFLOP/s {:>8.2} GB/s",
            self.name,
            self.ms,
            self.flop / self.ms / 1e6,
            self.bytes / self.ms / 1e6
        )
    }
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Median wall time of `f` (after one warm-up run), waiting for the device each time.
fn time(device: &Device, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    device.sync()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        device.sync()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Linear layers and attention at decode and prefill shapes of a model with `dim`, `hidden`,
/// `vocab`, `heads`/`kv_heads` (scaled down with `scale` for slow devices).
pub fn kernel_benches(device: &Device, dim: usize, hidden: usize, vocab: usize, heads: usize, kv_heads: usize, reps: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for &(m, n, k, what) in &[(1, hidden, dim, "decode ffn w1"), (1, vocab, dim, "decode output"), (256, hidden, dim, "prefill ffn w1 (256 rows)")] {
        let x = Tensor::from_vec(device, &[m, k], rand_vec(m * k, 1))?;
        // through nn::Linear: weights above the storage-binding limit are split into row chunks
        let w = Linear::from_values(device, rand_vec(n * k, 2), n, k, None)?;
        let ms = time(device, reps, || w.forward(&x).map(|_| ()))?;
        rows.push(BenchRow { name: format!("linear {what} {m}x{n}x{k}"), ms, flop: 2.0 * (m * n * k) as f64, bytes: 4.0 * (n * k + m * k) as f64 });
    }
    // the fused dequantizing kernels at decode (matvec) and prefill (tiled) shapes
    for q in [Quant::F16, Quant::Q8, Quant::Q4] {
        for &(m, what) in &[(1usize, "decode"), (256, "prefill")] {
            let (n, k) = (hidden, dim);
            let x = Tensor::from_vec(device, &[m, k], rand_vec(m * k, 6))?;
            let w = Linear::from_packed(device, Packed::quantize(q, &rand_vec(n * k, 7), n, k), None)?;
            let ms = time(device, reps, || w.forward(&x).map(|_| ()))?;
            rows.push(BenchRow { name: format!("linear {q} {what} ffn w1 {m}x{n}x{k}"), ms, flop: 2.0 * (m * n * k) as f64, bytes: q.bytes(n, k) as f64 + 4.0 * (m * k) as f64 });
        }
    }
    let hd = dim / heads;
    for &kv_len in &[64usize, 1344] {
        let q = Tensor::from_vec(device, &[1, heads * hd], rand_vec(heads * hd, 3))?;
        let kc = Tensor::from_vec(device, &[kv_len, kv_heads * hd], rand_vec(kv_len * kv_heads * hd, 4))?;
        let vc = Tensor::from_vec(device, &[kv_len, kv_heads * hd], rand_vec(kv_len * kv_heads * hd, 5))?;
        let mut o = Tensor::empty(device, &[1, heads * hd])?;
        let a = Attn { batch: 1, q_len: 1, kv_len, n_heads: heads, n_kv_heads: kv_heads, head_dim: hd, causal: true, q_pos0: kv_len - 1, scale: 0.125 };
        let ms = time(device, reps, || {
            attention_into(&mut o, Strided::rows(0, heads * hd), &q, Strided::rows(0, heads * hd), &kc, Strided::rows(0, kv_heads * hd), &vc, Strided::rows(0, kv_heads * hd), &a)
        })?;
        rows.push(BenchRow {
            name: format!("attention decode kv={kv_len} h={heads}/{kv_heads} d={hd}"),
            ms,
            flop: 4.0 * (kv_len * heads * hd) as f64,
            bytes: 8.0 * (kv_len * kv_heads * hd) as f64,
        });
    }
    Ok(rows)
}
