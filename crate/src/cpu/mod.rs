//! The fast CPU backend: what `Device::Cpu` runs. Matrix products with packed weights (q8, q4)
//! quantize the activations per 32-block to 8 bits (f32 scale, ggml's Q8_0 scheme with a finer
//! scale) and sum integer dot products per block (`qdot`); f16 and f32 weights go through a blocked
//! f32 GEMM (`gemm`, the `matrixmultiply` crate for batches, FMA dot products for decode rows).
//! Weights stay in their stored format; work is split over output columns on rayon's pool.
//!
//! SIMD is chosen at run time ([`Isa`]): x86-64 AVX-512 VNNI (256-bit), AVX2 + FMA, else portable
//! code the compiler vectorizes for the target (NEON on aarch64, SIMD128 in wasm when the build
//! enables it). The scalar twins in `crate::kernels` stay the oracle: every kernel here is tested
//! against them, and [`set_reference`] makes `Device::Cpu` run the twins themselves (tests,
//! benchmarks).

pub mod attn;
pub mod gemm;
pub mod ops;
pub mod qdot;
#[cfg(feature = "parallel")]
mod team;

use crate::io::quant::{Packed, Quant};
use std::sync::OnceLock;

/// The SIMD level the CPU kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isa {
    /// x86-64 AVX-512 VNNI with 256-bit vectors (plus AVX2, FMA, F16C).
    Avx512Vnni,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// wasm SIMD128 with relaxed SIMD (a build with `+relaxed-simd`, loaded where the browser has it).
    WasmRelaxed,
    /// wasm SIMD128.
    WasmSimd,
    /// Whatever the compiler vectorizes the portable code to (NEON on aarch64).
    Portable,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx2 => "avx2",
            Isa::WasmRelaxed => "wasm-relaxed-simd",
            Isa::WasmSimd => "wasm-simd128",
            Isa::Portable => "portable",
        }
    }

    /// Every level this machine (or this wasm build) can run, best first (tests run each).
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512Vnni, Isa::Avx2, Isa::WasmRelaxed, Isa::WasmSimd, Isa::Portable].into_iter().filter(|i| i.runs_here()).collect()
    }

    /// Whether this machine (x86: detected at run time) or this build (wasm: its target features)
    /// runs the level.
    pub fn runs_here(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && Isa::Avx2.runs_here()
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("f16c"),
            Isa::WasmRelaxed => cfg!(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd")),
            Isa::WasmSimd => cfg!(all(target_arch = "wasm32", target_feature = "simd128")),
            Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// The best SIMD level of this machine (detected once).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| Isa::available()[0])
}

/// The order the CPU backend holds a weight in: q8/q4 with rows in multiples of 8 in the `Groups8`
/// order where the AVX-512 VNNI decode kernel reads it (the same bytes permuted: still held once),
/// else as stored. Every CPU kernel and twin reads either order.
pub fn hold(w: Packed) -> Packed {
    if isa() == Isa::Avx512Vnni {
        w.into_groups8()
    } else {
        w
    }
}

/// Threads the CPU kernels split work over.
pub fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "parallel"))]
    1
}

/// What the CPU backend runs, in words (for `info` and the bench).
pub fn describe() -> String {
    if reference() {
        return "scalar reference twins".into();
    }
    format!("{} SIMD, {} thread{}", isa().name(), threads(), if threads() == 1 { "" } else { "s" })
}

std::thread_local! {
    static REFERENCE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Makes `Device::Cpu` on this thread run the scalar twins (the oracle) instead of the fast
/// kernels (`None`: the process default, `SPHINX_CPU_REFERENCE=1` in the environment). Kernels
/// read it on the calling thread, so a test can compare both in one process.
pub fn set_reference(on: Option<bool>) {
    REFERENCE.with(|r| r.set(on));
}

/// Whether `Device::Cpu` runs the scalar twins on this thread.
pub fn reference() -> bool {
    static DEFAULT: OnceLock<bool> = OnceLock::new();
    REFERENCE.with(|r| r.get()).unwrap_or_else(|| *DEFAULT.get_or_init(|| std::env::var("SPHINX_CPU_REFERENCE").is_ok_and(|v| v == "1")))
}

/// y[r, y_col + j] = Σ_k x[r, k] w[j, k] + b[j] for a stored weight w [n, k] (any format) and m
/// activation rows: the fast kernel of its format. The scalar twins in `crate::kernels` are the
/// oracle; the kernels' CPU path takes them instead under [`set_reference`] (and counts the work).
#[allow(clippy::too_many_arguments)]
pub fn linear_packed(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], m: usize, w: &Packed, b: Option<&[f32]>) {
    let (n, k) = (w.rows, w.cols);
    match w.quant {
        Quant::Q8 | Quant::Q4 => qdot::qmatmul(isa(), y, ny, y_col, x, m, w, b),
        Quant::F16 => gemm::matmul(y, ny, y_col, x, m, gemm::Weights::F16(&w.bytes), n, k, b),
        // stored f32 bytes need not be aligned for f32: widen a copy (the f32 path proper takes
        // `linear_f32`, whose weights are already f32 values)
        Quant::F32 => gemm::matmul(y, ny, y_col, x, m, gemm::Weights::F32(&bytemuck::pod_collect_to_vec(&w.bytes)), n, k, b),
    }
}

/// [`linear_packed`] for several weights that read the same activations, each into its column
/// block of y (`(weight, y_col, bias)`): q8 and q4 weights of one format and width share one
/// quantization of the activations and one parallel region (`qdot::qmatmul_many`); others run
/// one by one.
pub fn linear_packed_many(y: &mut [f32], ny: usize, x: &[f32], m: usize, parts: &[(&Packed, usize, Option<&[f32]>)]) {
    let Some(&(first, _, _)) = parts.first() else { return };
    let shared = first.quant.is_block() && parts.iter().all(|(w, _, _)| w.quant == first.quant && w.cols == first.cols);
    if !shared {
        for &(w, col, b) in parts {
            linear_packed(y, ny, col, x, m, w, b);
        }
        return;
    }
    let parts: Vec<qdot::Part> = parts.iter().map(|&(w, y_col, bias)| qdot::Part { w, y_col, bias }).collect();
    qdot::qmatmul_many(isa(), y, ny, x, m, &parts);
}

/// [`linear_packed`] for f32 weight values.
#[allow(clippy::too_many_arguments)]
pub fn linear_f32(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], m: usize, w: &[f32], n: usize, k: usize, b: Option<&[f32]>) {
    gemm::matmul(y, ny, y_col, x, m, gemm::Weights::F32(w), n, k, b)
}

/// Runs `f(first, last)` over `0..n` split into chunks of `step` (in parallel where available).
pub(crate) fn par_ranges<F>(n: usize, step: usize, f: F)
where
    F: Fn(usize, usize) + Sync + Send,
{
    let step = step.max(1);
    let chunks = n.div_ceil(step);
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        if chunks > 1 {
            let chunk = |c: usize| f(c * step, ((c + 1) * step).min(n));
            if !team::run_on_current(chunks, &chunk) {
                (0..chunks).into_par_iter().for_each(chunk);
            }
            return;
        }
    }
    for c in 0..chunks {
        f(c * step, ((c + 1) * step).min(n));
    }
}

/// Runs `f` on a thread of the CPU pool while the caller waits, the pool's other threads spinning
/// on a [`team::Team`] until it is done: the parallel regions inside it (a decode step has about
/// ten) start at once, instead of each region being handed to the pool and its threads woken
/// through the kernel. Only for work on `Device::Cpu` (what
/// [`crate::tensor::Device::run`] calls it for): `f` may hold values that are not `Send` (a GPU
/// device's handles on the web) as long as it never touches them.
pub fn on_pool<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "parallel")]
    if rayon::current_thread_index().is_none() && threads() > 1 && !reference() {
        /// Moves CPU-only work to a pool thread (see above).
        struct CpuOnly<T>(T);
        // SAFETY: on_pool's contract: the closure and its result only carry CPU data across.
        unsafe impl<T> Send for CpuOnly<T> {}
        impl<T> CpuOnly<T> {
            fn into_inner(self) -> T {
                self.0
            }
        }
        let (f, set) = (CpuOnly(f), REFERENCE.with(|r| r.get()));
        let team = team::Team::new();
        let r = rayon::scope(|s| {
            // the other pool threads spin on the team until f is done (`team`)
            for _ in 1..threads() {
                s.spawn(|_| team.help());
            }
            let f = f.into_inner();
            set_reference(set);
            let r = CpuOnly(team.lead(f));
            set_reference(None);
            r
        });
        return r.into_inner();
    }
    f()
}

/// Rows per parallel task for `n` output columns: about 8 tasks a thread, a multiple of `align`.
pub(crate) fn task_rows(n: usize, align: usize, min: usize) -> usize {
    let per = n.div_ceil(threads() * 8).max(min);
    per.div_ceil(align) * align
}

/// A raw output pointer that parallel tasks writing disjoint elements share.
pub(crate) struct Out<T = f32>(pub *mut T);

impl<T> Clone for Out<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Out<T> {}
// SAFETY: tasks write disjoint elements (each owns a range of the output).
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}

impl<T> Out<T> {
    /// Writes `v` at element `i`.
    ///
    /// # Safety
    /// `i` is inside the slice this pointer came from and no other task writes it.
    #[inline(always)]
    pub unsafe fn set(self, i: usize, v: T) {
        unsafe { *self.0.add(i) = v }
    }

    /// The pointer to element `i`.
    ///
    /// # Safety
    /// As for [`Out::set`].
    #[inline(always)]
    pub unsafe fn at(self, i: usize) -> *mut T {
        unsafe { self.0.add(i) }
    }

    /// Elements `i .. i + n` as a slice.
    ///
    /// # Safety
    /// The range is inside the slice this pointer came from and belongs to the caller's task alone.
    #[inline(always)]
    pub unsafe fn slice(self, i: usize, n: usize) -> &'static mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(i), n) }
    }
}

/// Σ a[i]·b[i] in f32 with eight partial sums (the compiler vectorizes it).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// e^x in place, within 2 ulp over the range where it is finite (Cephes' polynomial for e^r on
/// |r| ≤ ln2/2 after taking out n·ln2), written so the compiler vectorizes it (no libm call).
/// Inputs below −87.3 give ~1e-38 rather than 0; above 88, e^88 rather than up to inf.
pub fn exp_f32_in_place(x: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds to an integer
    for v in x.iter_mut() {
        let a = v.clamp(-87.3, 88.0);
        let n = (a * LOG2E + ROUND) - ROUND;
        let r = a - n * C1 - n * C2;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 5.000_000_1e-1;
        let e = p * r * r + r + 1.0;
        *v = e * f32::from_bits(((n as i32 + 127) as u32) << 23);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_two_ulp() {
        let mut xs: Vec<f32> = (-8730..=8800).map(|i| i as f32 * 0.01).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 0.346_573_6, -0.346_573_6]);
        let mut got = xs.clone();
        super::exp_f32_in_place(&mut got);
        for (x, g) in xs.iter().zip(&got) {
            let want = (*x as f64).exp();
            assert!(((*g as f64 - want) / want).abs() < 2.5e-7, "exp({x}) = {g}, want {want}");
        }
    }
}
