//! Linear layer y = x·wᵀ + b (torch `nn.Linear`, weight [N, K]) for every stored weight format.
//! Five kernel bodies — `linear_tiled.wgsl` (workgroup-memory tiles), `linear_vec4.wgsl` (register
//! blocks, no barriers), `linear_small.wgsl` (one invocation per output), `matvec.wgsl` (decode) and
//! `matvec_rows.wgsl` (decode on software adapters; with the accessors' `weights_*_blocks.wgsl`) —
//! each read the weight through an accessor file prepended to them (`weights_{f32,f16,f16_native,
//! q8,q4}.wgsl`), so a body is written once for all formats. A [`Variant`] is a body with a set of
//! override constants (tile shape, per-invocation blocking, workgroup size); which one runs is the
//! tuned choice for the shape ([`super::tune`]) or, untuned, the heuristic of [`default_variant`].
//! The CPU twin is shared by every format (packed weights are dequantized a few rows at a time).

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::{Gpu, Kernel};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// How a weight matrix is stored for the kernels: one accessor file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    F32,
    /// binary16 unpacked from u32 words (any adapter).
    F16,
    /// binary16 read as WGSL `f16` (`enable f16`; adapters with shader-f16).
    F16Native,
    Q8,
    Q4,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 5] = [WeightFormat::F32, WeightFormat::F16, WeightFormat::F16Native, WeightFormat::Q8, WeightFormat::Q4];

    fn index(self) -> usize {
        self as usize
    }

    /// Whether `gpu` can run kernels reading this format.
    pub fn runs_on(self, gpu: &Gpu) -> bool {
        self != WeightFormat::F16Native || gpu.info.shader_f16
    }
}

/// The kernel bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Tiled,
    Vec4,
    Small,
    Matvec,
    /// Decode without barriers or branches: four outputs per invocation, a block of 32 values per
    /// step (`matvec_rows.wgsl`).
    Rows,
}

/// A body with its override constants.
#[derive(Debug, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub body: Body,
    pub overrides: &'static [(&'static str, f64)],
}

/// Every variant the engine may run (each one is tested against the CPU twin on every format).
pub const VARIANTS: &[Variant] = &[
    Variant { name: "tiled64x64", body: Body::Tiled, overrides: &[("WGX", 16.0), ("WGY", 16.0), ("TM", 4.0), ("TN", 4.0), ("BK", 16.0)] },
    Variant { name: "tiled32x32", body: Body::Tiled, overrides: &[("WGX", 8.0), ("WGY", 8.0), ("TM", 4.0), ("TN", 4.0), ("BK", 16.0)] },
    Variant { name: "tiled128x64", body: Body::Tiled, overrides: &[("WGX", 16.0), ("WGY", 16.0), ("TM", 8.0), ("TN", 4.0), ("BK", 8.0)] },
    Variant { name: "tiled64x128", body: Body::Tiled, overrides: &[("WGX", 16.0), ("WGY", 16.0), ("TM", 4.0), ("TN", 8.0), ("BK", 8.0)] },
    Variant { name: "vec4r4", body: Body::Vec4, overrides: &[("WG", 64.0), ("RM", 4.0)] },
    Variant { name: "vec4r4w256", body: Body::Vec4, overrides: &[("WG", 256.0), ("RM", 4.0)] },
    Variant { name: "vec4r2", body: Body::Vec4, overrides: &[("WG", 64.0), ("RM", 2.0)] },
    Variant { name: "small64", body: Body::Small, overrides: &[("WG", 64.0)] },
    Variant { name: "small256", body: Body::Small, overrides: &[("WG", 256.0)] },
    Variant { name: "matvec8x32", body: Body::Matvec, overrides: &[("ROWS", 8.0), ("LANES", 32.0)] },
    Variant { name: "matvec4x64", body: Body::Matvec, overrides: &[("ROWS", 4.0), ("LANES", 64.0)] },
    Variant { name: "matvec16x16", body: Body::Matvec, overrides: &[("ROWS", 16.0), ("LANES", 16.0)] },
    Variant { name: "matvec2x128", body: Body::Matvec, overrides: &[("ROWS", 2.0), ("LANES", 128.0)] },
    Variant { name: "rows64", body: Body::Rows, overrides: &[("WG", 64.0)] },
    Variant { name: "rows8", body: Body::Rows, overrides: &[("WG", 8.0)] },
];

/// Up to this many rows are "decode" rows: the matvec body's class of problems.
pub const MATVEC_MAX_ROWS: usize = 4;
/// Short rows (K ≤ 128): one invocation per output beats any reduction.
const SMALL_MAX_K: usize = 128;

/// The five kernels of a body: accessor `weights_<format>.wgsl`, its matvec units
/// `weights_{values,q8,q4}_units.wgsl`, (with a suffix: `weights_{values,q8,q4}_<suffix>.wgsl`),
/// parameters, body.
macro_rules! kernels_of {
    ($body:literal, $name:literal $(, $ext:literal)?) => {
        [
            kernels_of!(@one $body, $name, "f32", "values" $(, $ext)?),
            kernels_of!(@one $body, $name, "f16", "values" $(, $ext)?),
            kernels_of!(@one $body, $name, "f16_native", "values" $(, $ext)?),
            kernels_of!(@one $body, $name, "q8", "q8" $(, $ext)?),
            kernels_of!(@one $body, $name, "q4", "q4" $(, $ext)?),
        ]
    };
    (@one $body:literal, $name:literal, $format:literal, $units:literal $(, $ext:literal)?) => {
        Kernel {
            name: concat!($name, "/", $format),
            parts: &[
                include_str!(concat!("weights_", $format, ".wgsl")),
                include_str!(concat!("weights_", $units, "_units.wgsl")),
                $(include_str!(concat!("weights_", $units, "_", $ext, ".wgsl")),)?
                include_str!("linear_params.wgsl"),
                include_str!($body),
            ],
        }
    };
}

const TILED: [Kernel; 5] = kernels_of!("linear_tiled.wgsl", "linear_tiled");
const VEC4: [Kernel; 5] = kernels_of!("linear_vec4.wgsl", "linear_vec4");
const SMALL: [Kernel; 5] = kernels_of!("linear_small.wgsl", "linear_small");
const MATVEC: [Kernel; 5] = kernels_of!("matvec.wgsl", "matvec");
const ROWS: [Kernel; 5] = kernels_of!("matvec_rows.wgsl", "matvec_rows", "blocks");

/// The WGSL of every linear kernel, piece by piece (for the autotune cache key: changed kernels retune).
pub fn kernel_sources() -> impl Iterator<Item = &'static str> {
    [&TILED, &VEC4, &SMALL, &MATVEC, &ROWS].into_iter().flat_map(|k| k.iter().flat_map(|k| k.parts.iter().copied()))
}

impl Variant {
    fn kernel(&self, format: WeightFormat) -> &'static Kernel {
        let table = match self.body {
            Body::Tiled => &TILED,
            Body::Vec4 => &VEC4,
            Body::Small => &SMALL,
            Body::Matvec => &MATVEC,
            Body::Rows => &ROWS,
        };
        &table[format.index()]
    }

    fn ov(&self, name: &str) -> usize {
        self.overrides.iter().find(|(k, _)| *k == name).map_or(0, |(_, v)| *v as usize)
    }

    /// Output rows x columns of one workgroup (tiled), or per invocation (vec4).
    fn block(&self) -> (usize, usize) {
        match self.body {
            Body::Tiled => (self.ov("WGY") * self.ov("TM"), self.ov("WGX") * self.ov("TN")),
            Body::Vec4 => (self.ov("RM"), 4),
            Body::Small => (1, 1),
            Body::Matvec => (1, self.ov("ROWS")),
            Body::Rows => (1, 4 * self.ov("WG")),
        }
    }

    fn invocations(&self) -> usize {
        match self.body {
            Body::Tiled => self.ov("WGX") * self.ov("WGY"),
            Body::Vec4 | Body::Small | Body::Rows => self.ov("WG"),
            Body::Matvec => self.ov("ROWS") * self.ov("LANES"),
        }
    }

    /// Whether the variant can take an [m, k] · [n, k]ᵀ problem in `format` on `gpu`.
    pub fn takes(&self, gpu: &Gpu, format: WeightFormat, m: usize, n: usize, k: usize) -> bool {
        let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
        let fits_wg = self.invocations() as u32 <= gpu.limits.max_compute_invocations_per_workgroup;
        let (bm, bn) = self.block();
        let shape_ok = match self.body {
            Body::Tiled => m.div_ceil(bm) as u64 <= max && n.div_ceil(bn) as u64 <= max,
            Body::Vec4 => k % 4 == 0 && (m.div_ceil(bm) as u64) * (n.div_ceil(4) as u64) <= u32::MAX as u64,
            Body::Small => (m as u64) * (n as u64) <= u32::MAX as u64,
            Body::Matvec | Body::Rows => m as u64 <= max && n.div_ceil(bn) as u64 <= max,
        };
        fits_wg && shape_ok && format.runs_on(gpu)
    }

    fn groups(&self, gpu: &Gpu, m: usize, n: usize) -> [u32; 3] {
        let (bm, bn) = self.block();
        match self.body {
            Body::Tiled => [n.div_ceil(bn) as u32, m.div_ceil(bm) as u32, 1],
            Body::Vec4 => gpu.grid((m.div_ceil(bm) * n.div_ceil(4)) as u64, self.invocations() as u32),
            Body::Small => gpu.grid((m * n) as u64, self.invocations() as u32),
            Body::Matvec | Body::Rows => [n.div_ceil(bn) as u32, m as u32, 1],
        }
    }
}

/// A variant by name.
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

fn named(name: &str) -> &'static Variant {
    variant(name).unwrap_or(&VARIANTS[0])
}

/// The untuned choice: decode rows → matvec (software adapters: `matvec_rows`, four outputs per
/// invocation and wide loads, 3–4x the reduction matvec's decode on lavapipe); short rows or few outputs → one invocation
/// per output; batches on software adapters (lavapipe, SwiftShader) → register blocks without
/// barriers (2–5x faster there); GPUs → 64x64 tiles.
pub fn default_variant(gpu: &Gpu, format: WeightFormat, m: usize, n: usize, k: usize) -> &'static Variant {
    let many = m > MATVEC_MAX_ROWS;
    let pick = if gpu.info.software && many && named("vec4r4").takes(gpu, format, m, n, k) {
        "vec4r4"
    } else if (k <= SMALL_MAX_K || (many && n < 64)) && named("small64").takes(gpu, format, m, n, k) {
        "small64"
    } else if !many && gpu.info.software && named("rows8").takes(gpu, format, m, n, k) {
        "rows8"
    } else if !many {
        "matvec8x32"
    } else {
        "tiled64x64"
    };
    named(pick)
}

/// The parameters of every linear kernel (`linear_params.wgsl`).
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

/// A weight as the kernels read it: its buffer, format and packed-layout fields.
pub(super) struct WeightRef<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub format: WeightFormat,
    pub n: usize,
    pub kp: usize,
    pub scales: u32,
}

/// Checks the shapes of y[.., y_col..y_col+n] = x · wᵀ + b; returns (m, k, ny).
pub(super) fn check_shapes(y: &Tensor, y_col: usize, x: &Tensor, n: usize, w_cols: usize, b: Option<&Tensor>) -> Result<(usize, usize, usize)> {
    let (m, k) = (x.rows(), x.last_dim());
    if w_cols != k {
        return Err(Error::Shape(format!("linear: weight [{n}, {w_cols}] does not take inputs of width {k}")));
    }
    if let Some(b) = b {
        b.expect_shape("linear bias", &[n])?;
    }
    let ny = y.last_dim();
    if y.rows() != m || y_col + n > ny {
        return Err(Error::Shape(format!("linear: output {:?} cannot take {m} rows x columns {y_col}..{}", y.shape(), y_col + n)));
    }
    Ok((m, k, ny))
}

/// Records y[.., y_col..] = x · wᵀ + b on the GPU with `variant` (None: the tuned or default one).
pub(super) fn dispatch(gpu: &Gpu, y: &Tensor, y_col: usize, x: &Tensor, w: &WeightRef, b: Option<&Tensor>, variant: Option<&Variant>) -> Result<()> {
    if y.gpu().is_none() {
        return Err(Error::Shape("linear: output on the CPU, inputs on the GPU".into()));
    }
    let (m, k, ny) = (x.rows(), x.last_dim(), y.last_dim());
    let n = w.n;
    let p = Params {
        m: u32_of("linear rows", m)?,
        n: u32_of("linear outputs", n)?,
        k: u32_of("linear inputs", k)?,
        has_bias: b.is_some() as u32,
        x_offset: 0,
        x_stride: u32_of("linear inputs", k)?,
        y_offset: u32_of("linear output offset", y_col)?,
        y_stride: u32_of("linear output stride", ny)?,
        kp: u32_of("padded inputs", w.kp)?,
        scales: w.scales,
        _pad: [0; 2],
    };
    let v = variant.unwrap_or_else(|| super::tune::choose(gpu, w.format, m, n, k));
    if !v.takes(gpu, w.format, m, n, k) {
        return Err(Error::Gpu(format!("linear: the {} kernel cannot take {m}x{n}x{k} ({:?})", v.name, w.format)));
    }
    let bias = b.map(buf).unwrap_or(buf(x));
    let mut bufs = vec![buf(x), w.buffer, bias, buf(y)];
    if v.body == Body::Rows && matches!(w.format, WeightFormat::Q8 | WeightFormat::Q4) {
        bufs.push(w.buffer); // wv: the block formats' block_dot reads it 16 bytes at a time
    }
    crate::flops::count(2 * m * n * k);
    gpu.dispatch(v.kernel(w.format), v.overrides, &p, &bufs, v.groups(gpu, m, n))
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

/// Writes x·wᵀ + b into columns `y_col .. y_col + N` of y ([M, Ny]); x is [M, K], w f32 [N, K].
pub fn linear_into(y: &mut Tensor, y_col: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<()> {
    linear_into_variant(y, y_col, x, w, b, None)
}

/// [`linear_into`] through a given variant (`None`: the tuned or default one); tests use it to
/// check every variant on every adapter.
pub fn linear_into_variant(y: &mut Tensor, y_col: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>, variant: Option<&Variant>) -> Result<()> {
    if w.rank() != 2 {
        return Err(Error::Shape(format!("linear: weight {:?} is not a matrix", w.shape())));
    }
    let n = w.shape()[0];
    let (m, k, ny) = check_shapes(y, y_col, x, n, w.shape()[1], b)?;
    let mut all = vec![x, w];
    all.extend(b);
    match gpu_of("linear", &all)? {
        Some(gpu) => {
            let wr = WeightRef { buffer: buf(w), format: WeightFormat::F32, n, kp: 0, scales: 0 };
            dispatch(&gpu, y, y_col, x, &wr, b, variant)
        }
        None => {
            let out = y.cpu_mut().ok_or_else(|| Error::Shape("linear: output on the GPU, inputs on the CPU".into()))?;
            crate::flops::count(2 * m * n * k);
            if crate::cpu::reference() {
                linear_cpu(out, ny, y_col, cpu(x), cpu(w), b.map(cpu), m, n, k);
            } else {
                crate::cpu::linear_f32(out, ny, y_col, cpu(x), m, cpu(w), n, k, b.map(cpu));
            }
            Ok(())
        }
    }
}

/// CPU twin: y[r, y_col + j] = Σ_k x[r, k] w[j, k] + b[j], summed in order of k.
#[allow(clippy::too_many_arguments)]
pub fn linear_cpu(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) {
    super::matmul_cpu(y, ny, y_col, x, b, m, n, k, |j0, j1| std::borrow::Cow::Borrowed(&w[j0 * k..j1 * k]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    /// Shapes that reach every body: decode rows, short rows, odd sizes, partial tiles and blocks.
    pub(crate) const CASES: &[(usize, usize, usize, bool)] = &[(1, 1, 1, false), (3, 5, 7, true), (4, 9, 70, true), (5, 9, 72, false), (67, 130, 33, true), (129, 65, 200, false), (70, 20, 300, true), (1, 300, 516, true), (2, 70, 300, false), (6, 7, 4, true)];

    #[test]
    fn every_f32_variant_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(1);
        let gpu = gpu();
        for &(m, n, k, bias) in CASES {
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(n * k, 0.5);
            let b = rng.vec(n, 0.5);
            let mut want = vec![0f32; m * n];
            linear_cpu(&mut want, n, 0, &x, &w, bias.then_some(&b[..]), m, n, k);
            let xg = Tensor::from_vec(&dev, &[m, k], x).unwrap();
            let wg = Tensor::from_vec(&dev, &[n, k], w).unwrap();
            let bg = Tensor::from_vec(&dev, &[n], b).unwrap();
            let mut ran = 0;
            for v in VARIANTS.iter().filter(|v| v.takes(&gpu, WeightFormat::F32, m, n, k)) {
                let mut y = guarded(&[m, n], &vec![0.0; m * n]);
                linear_into_variant(&mut y, 0, &xg, &wg, bias.then_some(&bg), Some(v)).unwrap();
                // f32 sums of ≤ 516 products of O(1) terms; the order differs by body (vec4 partial sums).
                assert_close(&format!("linear {} {m}x{n}x{k}", v.name), &read_guarded(&y), &want, 1e-5, 2e-5);
                ran += 1;
            }
            assert!(ran >= 8, "{m}x{n}x{k}: only {ran} variants take it");
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
            for v in VARIANTS.iter().filter(|v| v.takes(&gpu, WeightFormat::F32, m, n, k)) {
                let mut y = guarded(&[m, ny], &init);
                linear_into_variant(&mut y, col, &xg, &wg, None, Some(v)).unwrap();
                assert_close(&format!("column block {} {m}x{k}", v.name), &read_guarded(&y), &want, 1e-5, 1e-5);
            }
        }
    }

    #[test]
    fn variant_names_are_unique_and_defaults_are_variants() {
        let gpu = gpu();
        for (i, v) in VARIANTS.iter().enumerate() {
            assert!(VARIANTS[..i].iter().all(|u| u.name != v.name), "{} twice", v.name);
        }
        for &(m, n, k, _) in CASES {
            let v = default_variant(&gpu, WeightFormat::Q4, m, n, k);
            assert!(v.takes(&gpu, WeightFormat::Q4, m, n, k), "default {} for {m}x{n}x{k}", v.name);
        }
    }
}
