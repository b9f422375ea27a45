//! The device's own limits, measured in the bench's run (`sphinx bench --roofline`, the bench
//! page's "roofline" box): how fast it reads a buffer larger than its caches (and, on a GPU, a
//! texture of the same bytes), how fast it copies one, and its best f32 GEMM; each phase and kernel of the report is then given as a share of them
//! (decode: weight bytes per second ÷ the bandwidth, [`Roofline::bandwidth`]; prefill, encode and
//! products: GFLOP/s ÷ the GEMM peak — products of 8-bit codes can pass an f32 peak).

use super::{median_ms, rand_vec};
use crate::kernels::linear::{linear_into_variant, Body, Store, WeightFormat, VARIANTS};
use crate::kernels::read_sum::{read_sum, read_texels};
use crate::runtime::Gpu;
use crate::tensor::{Device, Tensor};
use crate::Result;
use std::sync::Arc;

/// What the device reaches with simple kernels.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Roofline {
    /// GB/s of one read of a `bytes`-byte buffer (a decode step reads its weights once).
    pub read_gbps: f64,
    /// GB/s of one read of the same bytes as a texture (GPU only): on CPU-based adapters the one
    /// read their shaders gather without a branch per lane, so the most any shader reads there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub texture_read_gbps: Option<f64>,
    /// GB/s of a copy of it, bytes read plus bytes written.
    pub copy_gbps: f64,
    /// The buffer's size (larger than the caches of the machines the engine runs on).
    pub bytes: u64,
    /// GFLOP/s of the best f32 GEMM among the device's kernels, at `gemm_shape` (m, n, k).
    pub gemm_gflops: f64,
    pub gemm_shape: [usize; 3],
    /// Which kernel reached it.
    pub gemm_kernel: String,
}

impl Roofline {
    /// The bandwidth a phase that reads memory is held to: the faster of the read probe and the
    /// copy (bytes read plus written) — the tighter bound where the probe kernel is the slower.
    pub fn bandwidth(&self) -> f64 {
        self.read_gbps.max(self.copy_gbps)
    }
}

/// Bytes of the buffer read and copied: past the last-level caches here (32 MiB), inside the
/// WebGPU default binding limit (128 MiB).
const BYTES: usize = 64 << 20;

/// Measures the device's limits (medians of `reps` runs after a warm-up).
pub async fn measure(device: &Device, reps: usize) -> Result<Roofline> {
    let ((read_ms, texture_ms, copy_ms), (gemm_gflops, gemm_shape, gemm_kernel)) = match device {
        Device::Cpu => (cpu(reps).await?, cpu_gemm(reps)?),
        Device::Gpu(g) => (gpu(g, reps).await?, gpu_gemm(g, reps).await?),
    };
    let gbps = |bytes: usize, ms: f64| bytes as f64 / (ms / 1e3) / 1e9;
    Ok(Roofline {
        read_gbps: gbps(BYTES, read_ms),
        texture_read_gbps: texture_ms.map(|ms| gbps(BYTES, ms)),
        copy_gbps: gbps(2 * BYTES, copy_ms),
        bytes: BYTES as u64,
        gemm_gflops,
        gemm_shape,
        gemm_kernel,
    })
}

/// The CPU's read and copy of the buffer (ms): a summing loop and `copy_from_slice`, split over
/// the pool (no texture).
async fn cpu(reps: usize) -> Result<(f64, Option<f64>, f64)> {
    let src: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let mut dst = vec![0u64; BYTES / 8];
    let chunk = (BYTES / 8).div_ceil(crate::cpu::threads() * 4);
    let sink = std::sync::atomic::AtomicU64::new(0);
    let read = median_ms(&Device::Cpu, reps, || {
        crate::cpu::par_ranges(src.len(), chunk, |a, b| {
            let s = src[a..b].iter().fold(0u64, |s, v| s.wrapping_add(*v));
            sink.fetch_add(s, std::sync::atomic::Ordering::Relaxed);
        });
        Ok(())
    })
    .await?;
    let out = crate::cpu::Out(dst.as_mut_ptr());
    let copy = median_ms(&Device::Cpu, reps, || {
        crate::cpu::par_ranges(src.len(), chunk, |a, b| {
            // SAFETY: [a, b) lies inside dst (as long as src) and belongs to this task alone.
            unsafe { out.slice(a, b - a) }.copy_from_slice(&src[a..b]);
        });
        Ok(())
    })
    .await?;
    std::hint::black_box((sink.into_inner(), &dst));
    Ok((read, None, copy))
}

/// The CPU's GEMM peak: [`super::cpu_gemm_peak`] (`matrixmultiply` at 1536³).
fn cpu_gemm(reps: usize) -> Result<(f64, [usize; 3], String)> {
    let gemm = super::cpu_gemm_peak(reps)?;
    Ok((gemm.gflops, [1536; 3], gemm.variant))
}

/// Texels per row of the texture probe (2048 rows of 32 KiB: inside WebGPU's default 8192-texel
/// side) and per invocation (4096 invocations, each reading half a row: the fastest split on
/// llvmpipe, 1.9× its buffer read of the same spans).
const TEXTURE_WIDTH: u32 = 2048;
const TEXTURE_SPAN: usize = 1024;

/// A GPU's read (`read_sum.wgsl`), texture read (`read_texels.wgsl`) and buffer-to-buffer copy
/// of the buffer (ms).
async fn gpu(g: &Arc<Gpu>, reps: usize) -> Result<(f64, Option<f64>, f64)> {
    let device = Device::Gpu(g.clone());
    let n = BYTES / 4;
    let values = rand_vec(n, 11);
    let x = Tensor::from_vec(&device, &[n], values.clone())?;
    let mut sums = Tensor::zeros(&device, &[256 * 1024])?;
    let read = median_ms(&device, reps, || read_sum(&x, &mut sums)).await?;
    let texels = g.texels(TEXTURE_WIDTH, (BYTES / 16) as u32 / TEXTURE_WIDTH, bytemuck::cast_slice(&values))?;
    drop(values);
    let mut spans = Tensor::zeros(&device, &[BYTES / 16 / TEXTURE_SPAN])?;
    let texture = median_ms(&device, reps, || read_texels(g, &texels, TEXTURE_SPAN, &mut spans)).await?;
    let y = Tensor::zeros(&device, &[n])?;
    let copy = median_ms(&device, reps, || {
        g.copy(crate::kernels::buf(&x), 0, crate::kernels::buf(&y), 0, BYTES as u64);
        Ok(())
    })
    .await?;
    Ok((read, Some(texture), copy))
}

/// A GPU's GEMM peak: the best of every f32 GEMM variant (the tiled and vec4 bodies; the matvec
/// and small ones are for decode rows) that takes a [256, 1024] · [1024, 1024]ᵀ product (a
/// prefill batch; 0.5 GFLOP, so that software adapters finish it in seconds).
async fn gpu_gemm(g: &Arc<Gpu>, reps: usize) -> Result<(f64, [usize; 3], String)> {
    let device = Device::Gpu(g.clone());
    let [m, n, k] = [256, 1024, 1024];
    let a = Tensor::from_vec(&device, &[m, k], rand_vec(m * k, 12))?;
    let w = Tensor::from_vec(&device, &[n, k], rand_vec(n * k, 13))?;
    let mut out = Tensor::empty(&device, &[m, n])?;
    let (mut best, mut kernel) = (0.0, String::new());
    for v in VARIANTS.iter().filter(|v| matches!(v.body, Body::Tiled | Body::Vec4 | Body::Vec4Texels) && v.takes(g, WeightFormat::F32, m, n, k)) {
        let ms = median_ms(&device, reps, || linear_into_variant(&mut out, 0, &a, &w, None, Some(v), Store::Set)).await?;
        let gflops = 2.0 * (m * n * k) as f64 / (ms / 1e3) / 1e9;
        if gflops > best {
            (best, kernel) = (gflops, v.name.to_string());
        }
    }
    Ok((best, [m, n, k], kernel))
}
