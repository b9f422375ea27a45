//! Compute kernels: each file here pairs one WGSL kernel (`<name>.wgsl`) with its CPU twin and a
//! randomized test comparing the two (odd sizes, non-finite check, a guard region after the output
//! that must stay untouched). The public functions dispatch on where the tensors live.

pub mod add;
pub mod attention;
pub mod copy2d;
pub mod dwconv7;
pub mod gather_rows;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod mean_rows;
pub mod patchify;
pub mod qlinear;
pub mod read_sum;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;
pub mod tune;

use crate::runtime::Gpu;
use crate::tensor::{Data, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

/// The GPU all `tensors` live on, `None` when all are on the CPU; an error when they are mixed.
pub(crate) fn gpu_of(op: &str, tensors: &[&Tensor]) -> Result<Option<Arc<Gpu>>> {
    let mut gpu: Option<Arc<Gpu>> = None;
    let mut cpu = false;
    for t in tensors {
        match t.data() {
            Data::Cpu(_) => cpu = true,
            Data::Gpu(b) => {
                if gpu.is_none() {
                    gpu = Some(b.gpu().clone());
                }
            }
        }
    }
    if cpu && gpu.is_some() {
        return Err(Error::Shape(format!("{op}: CPU and GPU tensors mixed in one call")));
    }
    Ok(gpu)
}

/// The wgpu buffer of a GPU tensor (callers checked the device with `gpu_of`).
pub(crate) fn buf(t: &Tensor) -> &wgpu::Buffer {
    t.gpu().expect("GPU tensor (checked by gpu_of)").buffer()
}

pub(crate) fn cpu(t: &Tensor) -> &[f32] {
    t.cpu().expect("CPU tensor (checked by gpu_of)")
}

pub(crate) fn cpu_mut(t: &mut Tensor) -> &mut Vec<f32> {
    t.cpu_mut().expect("CPU tensor (checked by gpu_of)")
}

/// Element offsets and counts go to WGSL as u32: refuse anything larger.
pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Shape(format!("{what} = {v} does not fit the kernels' 32-bit indexing")))
}

/// Workgroup size of the one-workgroup-per-row reductions (norms): about 4 columns per
/// invocation, a power of two in 32..=256 (narrow rows waste no idle invocations).
pub(crate) fn row_workgroup(cols: usize) -> u32 {
    (cols.div_ceil(4).next_power_of_two() as u32).clamp(32, 256)
}

/// CPU twin of every matrix product: y[r, y_col + j] = Σ_k x[r, k] w[j, k] + b[j], summed in order
/// of k. Output columns go in blocks of 64 (in parallel where available) so that a single row
/// (decode) still uses every core; `weight_rows(j0, j1)` gives rows j0..j1 of w as f32 (borrowed,
/// or dequantized for packed formats).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_cpu<'w, F>(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize, weight_rows: F)
where
    F: Fn(usize, usize) -> std::borrow::Cow<'w, [f32]> + Sync + Send,
{
    const BLOCK: usize = 64;
    let blocks: Vec<usize> = (0..n.div_ceil(BLOCK)).collect();
    let compute = |&blk: &usize| -> Vec<f32> {
        let j0 = blk * BLOCK;
        let j1 = (j0 + BLOCK).min(n);
        let w = weight_rows(j0, j1); // [j1 - j0, k]
        let mut out = vec![0f32; m * (j1 - j0)]; // [m, j1 - j0]
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            for j in j0..j1 {
                let wj = &w[(j - j0) * k..(j - j0 + 1) * k];
                let mut s = 0f32;
                for (a, c) in xr.iter().zip(wj) {
                    s += a * c;
                }
                out[r * (j1 - j0) + (j - j0)] = s + b.map_or(0.0, |b| b[j]);
            }
        }
        out
    };
    #[cfg(feature = "parallel")]
    let parts: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        blocks.par_iter().map(compute).collect()
    };
    #[cfg(not(feature = "parallel"))]
    let parts: Vec<Vec<f32>> = blocks.iter().map(compute).collect();
    for (blk, part) in parts.iter().enumerate() {
        let j0 = blk * BLOCK;
        let width = part.len() / m.max(1);
        for r in 0..m {
            y[r * ny + y_col + j0..r * ny + y_col + j0 + width].copy_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
}

/// Runs `f(row_index, row)` over the rows of `out` ([rows, cols]), in parallel where available.
pub(crate) fn for_rows<F>(out: &mut [f32], cols: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if cols == 0 {
        return;
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| f(r, row));
    }
    #[cfg(not(feature = "parallel"))]
    out.chunks_mut(cols).enumerate().for_each(|(r, row)| f(r, row));
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Shared pieces of the CPU-vs-GPU kernel tests.
    use crate::runtime::Gpu;
    use crate::tensor::{Device, Tensor};
    use std::sync::{Arc, OnceLock};

    /// The test GPU. Panics (fails the test, never skips) when no adapter exists.
    pub fn gpu() -> Arc<Gpu> {
        static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
        GPU.get_or_init(|| {
            pollster::block_on(Gpu::new()).unwrap_or_else(|e| panic!("GPU kernel tests need an adapter: {e}"))
        })
        .clone()
    }

    pub fn gpu_device() -> Device {
        Device::Gpu(gpu())
    }

    /// xorshift64*: deterministic test data without a dependency.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [-1, 1).
        pub fn uniform(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n).map(|_| self.uniform() * scale).collect()
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub const GUARD: usize = 67;
    pub const SENTINEL: f32 = 12345.678;

    /// A GPU tensor of `shape` whose buffer has GUARD extra elements set to SENTINEL after it
    /// (the tensor's own elements hold `init`).
    pub fn guarded(shape: &[usize], init: &[f32]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(init.len(), n);
        let mut all = init.to_vec();
        all.extend(std::iter::repeat_n(SENTINEL, GUARD));
        let t = Tensor::from_vec(&gpu_device(), &[n + GUARD], all).expect("upload");
        // Same buffer, seen with the real shape: the guard lies past the end.
        let t = t.reshape_unchecked(shape);
        t
    }

    /// Reads a guarded tensor back: its values, after asserting the guard is intact.
    pub fn read_guarded(t: &Tensor) -> Vec<f32> {
        let n = t.numel();
        let b = t.gpu().expect("gpu tensor");
        let bytes = pollster::block_on(b.gpu().read(b.buffer(), 0, ((n + GUARD) * 4) as u64)).expect("readback");
        let all: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        for (i, v) in all[n..].iter().enumerate() {
            assert_eq!(*v, SENTINEL, "guard element {i} after the output was overwritten");
        }
        all[..n].to_vec()
    }

    /// Asserts |a - b| ≤ atol + rtol·|b| everywhere and that all values are finite.
    pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(g.is_finite() && w.is_finite(), "{what}: non-finite at {i}: gpu {g}, cpu {w}");
            assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}: element {i}: gpu {g}, cpu {w}");
        }
    }
}
