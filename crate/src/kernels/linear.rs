//! Linear layer y = x·wᵀ + b (torch `nn.Linear`, weight [N, K]); `linear.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "linear", source: concat!(include_str!("linear_params.wgsl"), include_str!("linear.wgsl")) };
/// Few-row variant (decode): a workgroup reduces 8 outputs over K instead of tiling 64x64.
const MATVEC: Kernel = Kernel { name: "matvec", source: concat!(include_str!("linear_params.wgsl"), include_str!("matvec.wgsl")) };
/// Up to this many rows go through `matvec.wgsl`.
pub const MATVEC_MAX_ROWS: usize = 4;
/// Short rows (K ≤ 128, any number of rows) or few outputs (N < 64): one invocation per output.
/// Reductions over a workgroup only pay off for longer rows.
const SMALL: Kernel = Kernel { name: "linear_small", source: concat!(include_str!("linear_params.wgsl"), include_str!("linear_small.wgsl")) };
const SMALL_MAX_K: usize = 128;
/// Many rows on a software adapter (K a multiple of 4): 4x4 register blocks from vec4 loads, no
/// workgroup memory (2.2x faster image encoding than the tiled kernel on lavapipe).
const VEC4: Kernel = Kernel { name: "linear_vec4", source: concat!(include_str!("linear_params.wgsl"), include_str!("linear_vec4.wgsl")) };

/// The kernels `linear_into` chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearPath {
    Small,
    Matvec,
    Tiled,
    Vec4,
}

impl LinearPath {
    pub const ALL: [LinearPath; 4] = [LinearPath::Small, LinearPath::Matvec, LinearPath::Tiled, LinearPath::Vec4];

    /// Whether the kernel can take an [m, k] · [n, k]ᵀ problem on `gpu` (grid and index limits).
    pub fn takes(self, gpu: &crate::runtime::Gpu, m: usize, n: usize, k: usize) -> bool {
        let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
        let u32_max = u32::MAX as u64;
        match self {
            // both number their outputs (or 4x4 blocks) in one u32
            LinearPath::Small => (m as u64) * (n as u64) <= u32_max,
            LinearPath::Vec4 => k % 4 == 0 && (m.div_ceil(4) as u64) * (n.div_ceil(4) as u64) <= u32_max,
            LinearPath::Matvec => m as u64 <= max && n.div_ceil(8) as u64 <= max,
            LinearPath::Tiled => m.div_ceil(64) as u64 <= max && n.div_ceil(64) as u64 <= max,
        }
    }

    /// The kernel for a problem: see the kernel constants.
    pub fn choose(gpu: &crate::runtime::Gpu, m: usize, n: usize, k: usize) -> LinearPath {
        let many = m > MATVEC_MAX_ROWS;
        if gpu.info.software && many && LinearPath::Vec4.takes(gpu, m, n, k) {
            LinearPath::Vec4
        } else if (k <= SMALL_MAX_K || (many && n < 64)) && LinearPath::Small.takes(gpu, m, n, k) {
            LinearPath::Small
        } else if !many {
            LinearPath::Matvec
        } else {
            LinearPath::Tiled
        }
    }
}

/// The parameters of every linear kernel (`linear_params.wgsl`; qlinear.rs uses them too).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub has_bias: u32,
    pub x_offset: u32,
    pub x_stride: u32,
    pub y_offset: u32,
    pub y_stride: u32,
    /// Block formats only (0 for f32): k padded to whole blocks, first word of the scales region.
    pub kp: u32,
    pub scales: u32,
    pub _pad: [u32; 2],
}

/// x [.., K] · w[N, K]ᵀ + b[N] → [.., N].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let n = w.shape().first().copied().unwrap_or(0);
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    let mut y = Tensor::empty(&x.device(), &shape)?;
    linear_into(&mut y, 0, x, w, b)?;
    Ok(y)
}

/// Writes x·wᵀ + b into columns `y_col .. y_col + N` of y ([M, Ny]); x is [M, K].
pub fn linear_into(y: &mut Tensor, y_col: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<()> {
    linear_into_path(y, y_col, x, w, b, None)
}

/// [`linear_into`] through a given kernel (`None`: the one [`LinearPath::choose`] picks); tests
/// use it to check every kernel on every adapter.
pub fn linear_into_path(y: &mut Tensor, y_col: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>, path: Option<LinearPath>) -> Result<()> {
    let (m, k) = (x.rows(), x.last_dim());
    if w.rank() != 2 || w.shape()[1] != k {
        return Err(Error::Shape(format!("linear: weight {:?} does not take inputs of width {k}", w.shape())));
    }
    let n = w.shape()[0];
    if let Some(b) = b {
        b.expect_shape("linear bias", &[n])?;
    }
    let ny = y.last_dim();
    if y.rows() != m || y_col + n > ny {
        return Err(Error::Shape(format!(
            "linear: output {:?} cannot take {m} rows x columns {y_col}..{}",
            y.shape(),
            y_col + n
        )));
    }
    let mut all = vec![x, w];
    all.extend(b);
    match gpu_of("linear", &all)? {
        Some(gpu) => {
            if y.gpu().is_none() {
                return Err(Error::Shape("linear: output on the CPU, inputs on the GPU".into()));
            }
            let p = Params {
                m: u32_of("linear rows", m)?,
                n: u32_of("linear outputs", n)?,
                k: u32_of("linear inputs", k)?,
                has_bias: b.is_some() as u32,
                x_offset: 0,
                x_stride: k as u32,
                y_offset: u32_of("linear output offset", y_col)?,
                y_stride: u32_of("linear output stride", ny)?,
                kp: 0,
                scales: 0,
                _pad: [0; 2],
            };
            let bias = b.map(buf).unwrap_or(buf(w));
            let bufs = [buf(x), buf(w), bias, buf(y)];
            let path = path.unwrap_or_else(|| LinearPath::choose(&gpu, m, n, k));
            if !path.takes(&gpu, m, n, k) {
                return Err(Error::Gpu(format!("linear: the {path:?} kernel cannot take {m}x{n}x{k}")));
            }
            match path {
                LinearPath::Small => gpu.dispatch(&SMALL, &[("WG", 64.0)], &p, &bufs, gpu.grid((m * n) as u64, 64)),
                LinearPath::Vec4 => gpu.dispatch(&VEC4, &[("WG", 64.0)], &p, &bufs, gpu.grid((m.div_ceil(4) * n.div_ceil(4)) as u64, 64)),
                LinearPath::Matvec => gpu.dispatch(&MATVEC, &[], &p, &bufs, [n.div_ceil(8) as u32, m as u32, 1]),
                LinearPath::Tiled => gpu.dispatch(&KERNEL, &[], &p, &bufs, [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1]),
            }
        }
        None => {
            let out = y.cpu_mut().ok_or_else(|| Error::Shape("linear: output on the GPU, inputs on the CPU".into()))?;
            linear_cpu(out, ny, y_col, cpu(x), cpu(w), b.map(cpu), m, n, k);
            Ok(())
        }
    }
}

/// CPU twin: y[r, y_col + j] = Σ_k x[r, k] w[j, k] + b[j], summed in order of k like the kernel.
#[allow(clippy::too_many_arguments)]
pub fn linear_cpu(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) {
    super::matmul_cpu(y, ny, y_col, x, b, m, n, k, |j0, j1| std::borrow::Cow::Borrowed(&w[j0 * k..j1 * k]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn linear_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(1);
        let gpu = gpu();
        // Every kernel that can take a case, whichever the adapter would choose.
        for &(m, n, k, bias) in &[(1, 1, 1, false), (3, 5, 7, true), (4, 9, 70, true), (5, 9, 72, false), (67, 130, 33, true), (129, 65, 200, false), (70, 20, 300, true), (1, 300, 516, true), (2, 70, 300, false), (6, 7, 4, true)] {
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(n * k, 0.5);
            let b = rng.vec(n, 0.5);
            let mut want = vec![0f32; m * n];
            linear_cpu(&mut want, n, 0, &x, &w, bias.then_some(&b[..]), m, n, k);
            let xg = Tensor::from_vec(&dev, &[m, k], x).unwrap();
            let wg = Tensor::from_vec(&dev, &[n, k], w).unwrap();
            let bg = Tensor::from_vec(&dev, &[n], b).unwrap();
            for path in LinearPath::ALL.into_iter().filter(|p| p.takes(&gpu, m, n, k)) {
                let mut y = guarded(&[m, n], &vec![0.0; m * n]);
                linear_into_path(&mut y, 0, &xg, &wg, bias.then_some(&bg), Some(path)).unwrap();
                // f32 sums of ≤ 516 products of O(1) terms; the order differs by kernel (vec4 partial sums).
                assert_close(&format!("linear {path:?} {m}x{n}x{k}"), &read_guarded(&y), &want, 1e-5, 2e-5);
            }
        }
    }

    #[test]
    fn linear_writes_a_column_block() {
        let dev = gpu_device();
        let gpu = gpu();
        let mut rng = Rng::new(2);
        for (m, k) in [(1, 9), (5, 9), (1, 8), (7, 8)] {
            let (n, ny, col) = (3, 11, 4);
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(n * k, 1.0);
            let init = rng.vec(m * ny, 1.0);
            let mut want = init.clone();
            linear_cpu(&mut want, ny, col, &x, &w, None, m, n, k);
            let (xg, wg) = (Tensor::from_vec(&dev, &[m, k], x).unwrap(), Tensor::from_vec(&dev, &[n, k], w).unwrap());
            for path in LinearPath::ALL.into_iter().filter(|p| p.takes(&gpu, m, n, k)) {
                let mut y = guarded(&[m, ny], &init);
                linear_into_path(&mut y, col, &xg, &wg, None, Some(path)).unwrap();
                assert_close(&format!("column block {path:?} {m}x{k}"), &read_guarded(&y), &want, 1e-5, 1e-5);
            }
        }
    }
}
