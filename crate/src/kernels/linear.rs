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
use crate::runtime::{Bound, Gpu, Kernel};
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
    /// `linear_vec4.wgsl` reading x from a texture it is copied into first (`x_texels.wgsl`).
    Vec4Texels,
    Small,
    Matvec,
    /// Decode without barriers or branches: four outputs per invocation, a block of 32 values per
    /// step (`matvec_rows.wgsl`).
    Rows,
    /// Decode with one subgroup per output, reduced by `subgroupAdd` (`matvec_subgroup.wgsl`;
    /// adapters with subgroups only).
    Subgroup,
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
    Variant { name: "vec4r8", body: Body::Vec4, overrides: &[("WG", 64.0), ("RM", 8.0)] },
    Variant { name: "vec4r16", body: Body::Vec4, overrides: &[("WG", 64.0), ("RM", 16.0)] },
    Variant { name: "texels8", body: Body::Vec4Texels, overrides: &[("WG", 64.0), ("RM", 8.0)] },
    Variant { name: "texels16", body: Body::Vec4Texels, overrides: &[("WG", 64.0), ("RM", 16.0)] },
    Variant { name: "small64", body: Body::Small, overrides: &[("WG", 64.0)] },
    Variant { name: "small256", body: Body::Small, overrides: &[("WG", 256.0)] },
    Variant { name: "matvec8x32", body: Body::Matvec, overrides: &[("ROWS", 8.0), ("LANES", 32.0)] },
    Variant { name: "matvec4x64", body: Body::Matvec, overrides: &[("ROWS", 4.0), ("LANES", 64.0)] },
    Variant { name: "matvec16x16", body: Body::Matvec, overrides: &[("ROWS", 16.0), ("LANES", 16.0)] },
    Variant { name: "matvec2x128", body: Body::Matvec, overrides: &[("ROWS", 2.0), ("LANES", 128.0)] },
    Variant { name: "rows64", body: Body::Rows, overrides: &[("WG", 64.0)] },
    Variant { name: "rows8", body: Body::Rows, overrides: &[("WG", 8.0)] },
    Variant { name: "subgroup8x64", body: Body::Subgroup, overrides: &[("ROWS", 8.0), ("WG", 64.0)] },
    Variant { name: "subgroup4x128", body: Body::Subgroup, overrides: &[("ROWS", 4.0), ("WG", 128.0)] },
];

/// Up to this many rows are "decode" rows: the matvec body's class of problems.
pub const MATVEC_MAX_ROWS: usize = 4;
/// Short rows (K ≤ 128): one invocation per output beats any reduction.
const SMALL_MAX_K: usize = 128;

/// The five kernels of a body: accessor `weights_<format>.wgsl`, its matvec units
/// `weights_{values,q8,q4}_units.wgsl`, (with a suffix: `weights_{values,q8,q4}_<suffix>.wgsl`),
/// parameters, body (or [activation accessor, body]).
macro_rules! kernels_of {
    ($body:literal, $name:literal $(, $ext:literal)?) => {
        kernels_of!([$body], $name $(, $ext)?)
    };
    ([$($body:literal),+], $name:literal $(, $ext:literal)?) => {
        [
            kernels_of!(@one [$($body),+], $name, "f32", "values" $(, $ext)?),
            kernels_of!(@one [$($body),+], $name, "f16", "values" $(, $ext)?),
            kernels_of!(@one [$($body),+], $name, "f16_native", "values" $(, $ext)?),
            kernels_of!(@one [$($body),+], $name, "q8", "q8" $(, $ext)?),
            kernels_of!(@one [$($body),+], $name, "q4", "q4" $(, $ext)?),
        ]
    };
    (@one [$($body:literal),+], $name:literal, $format:literal, $units:literal $(, $ext:literal)?) => {
        Kernel {
            name: concat!($name, "/", $format),
            parts: &[
                include_str!(concat!("weights_", $format, ".wgsl")),
                include_str!(concat!("weights_", $units, "_units.wgsl")),
                $(include_str!(concat!("weights_", $units, "_", $ext, ".wgsl")),)?
                include_str!("linear_params.wgsl"),
                $(include_str!($body),)+
            ],
        }
    };
}

const TILED: [Kernel; 5] = kernels_of!("linear_tiled.wgsl", "linear_tiled");
const VEC4: [Kernel; 5] = kernels_of!(["x_vec4.wgsl", "linear_vec4.wgsl"], "linear_vec4");
const VEC4_TEXELS: [Kernel; 5] = kernels_of!(["x_texels.wgsl", "linear_vec4.wgsl"], "linear_vec4_texels");
const SMALL: [Kernel; 5] = kernels_of!("linear_small.wgsl", "linear_small");
const MATVEC: [Kernel; 5] = kernels_of!("matvec.wgsl", "matvec");
const ROWS: [Kernel; 5] = kernels_of!("matvec_rows.wgsl", "matvec_rows", "blocks");
const SUBGROUP: [Kernel; 5] = kernels_of!("matvec_subgroup.wgsl", "matvec_subgroup");

/// The WGSL of every linear kernel, piece by piece (for the autotune cache key: changed kernels retune).
pub fn kernel_sources() -> impl Iterator<Item = &'static str> {
    [&TILED, &VEC4, &VEC4_TEXELS, &SMALL, &MATVEC, &ROWS, &SUBGROUP].into_iter().flat_map(|k| k.iter().flat_map(|k| k.parts.iter().copied()))
}

impl Variant {
    fn kernel(&self, format: WeightFormat) -> &'static Kernel {
        let table = match self.body {
            Body::Tiled => &TILED,
            Body::Vec4 => &VEC4,
            Body::Vec4Texels => &VEC4_TEXELS,
            Body::Small => &SMALL,
            Body::Matvec => &MATVEC,
            Body::Rows => &ROWS,
            Body::Subgroup => &SUBGROUP,
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
            Body::Vec4 | Body::Vec4Texels => (self.ov("RM"), 4),
            Body::Small => (1, 1),
            Body::Matvec => (1, self.ov("ROWS")),
            Body::Rows => (1, 4 * self.ov("WG")),
            Body::Subgroup => (1, self.ov("ROWS")),
        }
    }

    fn invocations(&self) -> usize {
        match self.body {
            Body::Tiled => self.ov("WGX") * self.ov("WGY"),
            Body::Vec4 | Body::Vec4Texels | Body::Small | Body::Rows | Body::Subgroup => self.ov("WG"),
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
            // texel rows of K/4 texels, 256-byte aligned; as many texel rows as x rows
            Body::Vec4Texels => {
                let side = gpu.limits.max_texture_dimension_2d as usize;
                k % 64 == 0 && k / 4 <= side && m <= side && (m.div_ceil(bm) as u64) * (n.div_ceil(4) as u64) <= u32::MAX as u64
            }
            Body::Small => (m as u64) * (n as u64) <= u32::MAX as u64,
            Body::Matvec | Body::Rows => m as u64 <= max && n.div_ceil(bn) as u64 <= max,
            Body::Subgroup => gpu.info.subgroups && m as u64 <= max && n.div_ceil(bn) as u64 <= max,
        };
        fits_wg && shape_ok && format.runs_on(gpu)
    }

    fn groups(&self, gpu: &Gpu, m: usize, n: usize) -> [u32; 3] {
        let (bm, bn) = self.block();
        match self.body {
            Body::Tiled => [n.div_ceil(bn) as u32, m.div_ceil(bm) as u32, 1],
            Body::Vec4 | Body::Vec4Texels => gpu.grid((m.div_ceil(bm) * n.div_ceil(4)) as u64, self.invocations() as u32),
            Body::Small => gpu.grid((m * n) as u64, self.invocations() as u32),
            Body::Matvec | Body::Rows | Body::Subgroup => [n.div_ceil(bn) as u32, m as u32, 1],
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
/// barriers (2–5x faster there than tiles): 16 rows per invocation from 32 rows on, 8 from 8, x
/// read from a texture where its rows fit one (on lavapipe, q8 and f16 weights, 8 to 1025 rows:
/// 1.4–2x the 4-row blocks); GPUs → 64x64 tiles.
pub fn default_variant(gpu: &Gpu, format: WeightFormat, m: usize, n: usize, k: usize) -> &'static Variant {
    let many = m > MATVEC_MAX_ROWS;
    let blocks = match m {
        32.. => ["texels16", "vec4r16", "vec4r4"].as_slice(),
        8.. => ["texels8", "vec4r8", "vec4r4"].as_slice(),
        _ => ["vec4r4"].as_slice(),
    };
    let software_batch = (gpu.info.software && many).then(|| blocks.iter().copied().find(|b| named(b).takes(gpu, format, m, n, k))).flatten();
    let pick = if let Some(b) = software_batch {
        b
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

/// How a linear kernel writes its outputs: in place of what y held, or added to it (a residual
/// added in the same pass: `y += x · wᵀ + b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Set,
    Add,
}

impl Store {
    /// On the CPU: runs `write` (which sets y's columns y_col .. y_col + n of m rows), then adds
    /// back what they held for [`Store::Add`]; each sum in the GPU's order, (x · w + b) + held.
    pub(crate) fn cpu(self, y: &mut [f32], ny: usize, y_col: usize, (m, n): (usize, usize), write: impl FnOnce(&mut [f32])) {
        let held = (self == Store::Add).then(|| y.to_vec());
        write(y);
        if let Some(held) = held {
            for r in 0..m {
                let cols = r * ny + y_col..r * ny + y_col + n;
                for (v, h) in y[cols.clone()].iter_mut().zip(&held[cols]) {
                    *v += h;
                }
            }
        }
    }
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
    /// 1: add what y held ([`Store::Add`]).
    pub add_to_y: u32,
    pub _pad: u32,
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

/// Records y[.., y_col..] = x · wᵀ + b (added to y with [`Store::Add`]) on the GPU with `variant`
/// (None: the tuned or default one).
pub(super) fn dispatch(gpu: &Gpu, y: &Tensor, y_col: usize, x: &Tensor, w: &WeightRef, b: Option<&Tensor>, variant: Option<&Variant>, store: Store) -> Result<()> {
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
        add_to_y: (store == Store::Add) as u32,
        _pad: 0,
    };
    let v = variant.unwrap_or_else(|| super::tune::choose(gpu, w.format, m, n, k));
    if !v.takes(gpu, w.format, m, n, k) {
        return Err(Error::Gpu(format!("linear: the {} kernel cannot take {m}x{n}x{k} ({:?})", v.name, w.format)));
    }
    let bias = b.map(buf).unwrap_or(buf(x));
    // x as the body reads it: its buffer, or a texture it is copied into (rows of K/4 texels)
    let texels = if v.body == Body::Vec4Texels { Some(gpu.texels_from(buf(x), (k / 4) as u32, m as u32)?) } else { None };
    let x_bound = texels.as_ref().map_or(Bound::Buffer(buf(x)), Bound::Texture);
    let mut bound = vec![x_bound, Bound::Buffer(w.buffer), Bound::Buffer(bias), Bound::Buffer(buf(y))];
    if v.body == Body::Rows && matches!(w.format, WeightFormat::Q8 | WeightFormat::Q4) {
        bound.push(Bound::Buffer(w.buffer)); // wv: the block formats' block_dot reads it 16 bytes at a time
    }
    crate::flops::count(2 * m * n * k);
    gpu.dispatch_bound(v.kernel(w.format), v.overrides, &p, &bound, v.groups(gpu, m, n))
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
    linear_into_variant(y, y_col, x, w, b, None, Store::Set)
}

/// [`linear_into`] through a given variant (`None`: the tuned or default one) and [`Store`]; tests
/// use it to check every variant on every adapter.
pub fn linear_into_variant(y: &mut Tensor, y_col: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>, variant: Option<&Variant>, store: Store) -> Result<()> {
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
            dispatch(&gpu, y, y_col, x, &wr, b, variant, store)
        }
        None => {
            let out = y.cpu_mut().ok_or_else(|| Error::Shape("linear: output on the GPU, inputs on the CPU".into()))?;
            crate::flops::count(2 * m * n * k);
            store.cpu(out, ny, y_col, (m, n), |out| {
                if crate::cpu::reference() {
                    linear_cpu(out, ny, y_col, cpu(x), cpu(w), b.map(cpu), m, n, k);
                } else {
                    crate::cpu::linear_f32(out, ny, y_col, cpu(x), m, cpu(w), n, k, b.map(cpu));
                }
            });
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
    use crate::tensor::Device;

    /// Shapes that reach every body: decode rows, short rows, odd sizes, partial tiles and blocks.
    pub(crate) const CASES: &[(usize, usize, usize, bool)] = &[(1, 1, 1, false), (3, 5, 7, true), (4, 9, 70, true), (5, 9, 72, false), (67, 130, 33, true), (129, 65, 200, false), (70, 20, 300, true), (1, 300, 516, true), (2, 70, 300, false), (6, 7, 4, true), (70, 33, 128, true), (17, 9, 64, false)];

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
            let (mut ran, mut subgroup, mut texels) = (0, 0, 0);
            for v in VARIANTS.iter().filter(|v| v.takes(&gpu, WeightFormat::F32, m, n, k)) {
                let mut y = guarded(&[m, n], &vec![0.0; m * n]);
                linear_into_variant(&mut y, 0, &xg, &wg, bias.then_some(&bg), Some(v), Store::Set).unwrap();
                // f32 sums of ≤ 516 products of O(1) terms; the order differs by body (vec4 partial sums).
                assert_close(&format!("linear {} {m}x{n}x{k}", v.name), &read_guarded(&y), &want, 1e-5, 2e-5);
                ran += 1;
                subgroup += (v.body == Body::Subgroup) as usize;
                texels += (v.body == Body::Vec4Texels) as usize;
            }
            // x read from a texture: rows of K/4 texels a multiple of 256 bytes
            assert_eq!(texels, if k % 64 == 0 { 2 } else { 0 }, "{m}x{n}x{k}: texel variants run");
            assert!(ran >= 8, "{m}x{n}x{k}: only {ran} variants take it");
            // lavapipe, the tests' adapter, has subgroups (of 8): their bodies are tested here
            assert!(gpu.info.subgroups, "the tests' adapter ({}) has no subgroups", gpu.info.name);
            assert_eq!(subgroup, 2, "{m}x{n}x{k}: subgroup variants run");
        }
    }

    /// Every variant writes only its column block, set or added to what y held (a residual), as
    /// the CPU does.
    #[test]
    fn linear_writes_a_column_block_set_or_added() {
        let dev = gpu_device();
        let gpu = gpu();
        let mut rng = Rng::new(2);
        for (m, k) in [(1, 9), (5, 9), (1, 8), (7, 8), (70, 40)] {
            let (n, ny, col) = (3, 11, 4);
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(n * k, 1.0);
            let b = rng.vec(n, 1.0);
            let init = rng.vec(m * ny, 1.0);
            let (xg, wg, bg) = (Tensor::from_vec(&dev, &[m, k], x.clone()).unwrap(), Tensor::from_vec(&dev, &[n, k], w.clone()).unwrap(), Tensor::from_vec(&dev, &[n], b.clone()).unwrap());
            for store in [Store::Set, Store::Add] {
                let mut want = init.clone();
                store.cpu(&mut want, ny, col, (m, n), |out| linear_cpu(out, ny, col, &x, &w, Some(&b), m, n, k));
                let mut cpu_y = Tensor::from_vec(&Device::Cpu, &[m, ny], init.clone()).unwrap();
                let (xc, wc, bc) = (Tensor::from_vec(&Device::Cpu, &[m, k], x.clone()).unwrap(), Tensor::from_vec(&Device::Cpu, &[n, k], w.clone()).unwrap(), Tensor::from_vec(&Device::Cpu, &[n], b.clone()).unwrap());
                linear_into_variant(&mut cpu_y, col, &xc, &wc, Some(&bc), None, store).unwrap();
                assert_close(&format!("column block on the CPU {store:?} {m}x{k}"), cpu_y.cpu().unwrap(), &want, 1e-5, 1e-5);
                let mut ran = 0;
                for v in VARIANTS.iter().filter(|v| v.takes(&gpu, WeightFormat::F32, m, n, k)) {
                    let mut y = guarded(&[m, ny], &init);
                    linear_into_variant(&mut y, col, &xg, &wg, Some(&bg), Some(v), store).unwrap();
                    assert_close(&format!("column block {} {store:?} {m}x{k}", v.name), &read_guarded(&y), &want, 1e-5, 1e-5);
                    ran += 1;
                }
                assert!(ran >= 5, "{m}x{k}: {ran} variants");
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
