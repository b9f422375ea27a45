//! Products with f32 and f16 weights on the CPU. Decode-sized batches (≤ [`DOT_MAX_ROWS`] rows)
//! take one dot product per output (AVX2 + FMA, f16 widened by F16C, where detected; else code the
//! compiler vectorizes), so each weight byte is read once; larger batches go through the
//! `matrixmultiply` crate's packed, cache-blocked SGEMM (its AVX2/FMA kernels are chosen at run
//! time), one block of weight rows per task, f16 rows widened into a per-task buffer first. Work
//! is split over output columns on rayon's pool.

use super::{par_ranges, task_rows, Out};
use half::f16;

/// Up to this many activation rows, one dot product per output.
pub const DOT_MAX_ROWS: usize = 4;
/// Weight rows per SGEMM task at least (a task is about an equal share of a thread's rows: each
/// SGEMM packs the whole activation block again).
const GEMM_ROWS: usize = 64;

/// How the weight matrix [n, k] is stored.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    /// Little-endian binary16.
    F16(&'a [u8]),
}

impl Weights<'_> {
    /// Row j widened to f32 into `out` (len k).
    fn widen_row(&self, j: usize, k: usize, out: &mut [f32]) {
        match *self {
            Weights::F32(w) => out.copy_from_slice(&w[j * k..(j + 1) * k]),
            Weights::F16(w) => widen_f16(&w[2 * j * k..2 * (j + 1) * k], out),
        }
    }

    /// x · row j.
    fn dot(&self, j: usize, k: usize, x: &[f32]) -> f32 {
        match *self {
            Weights::F32(w) => dot(x, &w[j * k..(j + 1) * k]),
            Weights::F16(w) => dot_f16(x, &w[2 * j * k..2 * (j + 1) * k]),
        }
    }
}

/// y[r, y_col + j] = Σ_k x[r, k] w[j, k] + b[j] for an f32 or f16 weight [n, k].
#[allow(clippy::too_many_arguments)]
pub fn matmul(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], m: usize, w: Weights, n: usize, k: usize, b: Option<&[f32]>) {
    let wlen = match w {
        Weights::F32(w) => w.len(),
        Weights::F16(w) => w.len() / 2,
    };
    assert!(x.len() >= m * k && wlen >= n * k && (m == 0 || y.len() >= (m - 1) * ny + y_col + n) && b.is_none_or(|b| b.len() >= n), "matmul: sizes");
    if m == 0 || n == 0 {
        return;
    }
    let out = Out(y.as_mut_ptr());
    if m <= DOT_MAX_ROWS || k == 0 {
        par_ranges(n, task_rows(n, 8, 16), |j0, j1| {
            for j in j0..j1 {
                let bias = b.map_or(0.0, |b| b[j]);
                for r in 0..m {
                    // SAFETY: inside y (asserted); this task alone writes column j.
                    unsafe { out.set(r * ny + y_col + j, w.dot(j, k, &x[r * k..(r + 1) * k]) + bias) };
                }
            }
        });
        return;
    }
    let per = n.div_ceil(2 * super::threads()).div_ceil(GEMM_ROWS).max(1) * GEMM_ROWS;
    par_ranges(n, per, |j0, j1| {
        let nc = j1 - j0;
        let widened;
        let wc: &[f32] = match w {
            Weights::F32(w) => &w[j0 * k..j1 * k],
            Weights::F16(_) => {
                let mut buf = vec![0f32; nc * k];
                for (i, row) in buf.chunks_mut(k).enumerate() {
                    w.widen_row(j0 + i, k, row);
                }
                widened = buf;
                &widened
            }
        };
        // SAFETY: A = x [m, k] row-major, B = wcᵀ [k, nc] (element (kk, j) at j·k + kk), C = the
        // columns y_col + j0 .. y_col + j1 of y's m rows (stride ny): all inside their slices
        // (asserted above); only this task writes those columns.
        unsafe {
            matrixmultiply::sgemm(m, k, nc, 1.0, x.as_ptr(), k as isize, 1, wc.as_ptr(), 1, k as isize, 0.0, out.at(y_col + j0), ny as isize, 1);
        }
        if let Some(b) = b {
            for r in 0..m {
                for j in j0..j1 {
                    // SAFETY: as above.
                    unsafe { *out.at(r * ny + y_col + j) += b[j] };
                }
            }
        }
    });
}

/// binary16 → f32.
pub fn widen_f16(src: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::Avx2.runs_here() {
        // SAFETY: AVX2/F16C detected.
        return unsafe { x86::widen_f16(src, out) };
    }
    for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// binary16 bits → f32, exact for every finite value (normal and subnormal; ±inf and NaN come
/// out finite): the exponent and mantissa moved into place and rescaled by 2^112, written with
/// integer and f32 operations only so that a loop of it vectorizes (wasm has no f16 conversion).
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // × 2^112
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// Σ x·w for f32 rows.
pub fn dot(x: &[f32], w: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::Avx2.runs_here() {
        // SAFETY: AVX2/FMA detected.
        return unsafe { x86::dot(x, w) };
    }
    super::dot_f32(x, w)
}

/// Σ x·w for an f16 weight row.
pub fn dot_f16(x: &[f32], w: &[u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::Avx2.runs_here() {
        // SAFETY: AVX2/FMA/F16C detected.
        return unsafe { x86::dot_f16(x, w) };
    }
    let mut acc = [0f32; 8];
    let n = x.len().min(w.len() / 2);
    for (i, (xi, c)) in x[..n].iter().zip(w.chunks_exact(2)).enumerate() {
        acc[i % 8] += xi * f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(x: &[f32], w: &[f32]) -> f32 {
        let n = x.len().min(w.len());
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (a, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i + 8 * a)), _mm256_loadu_ps(wp.add(i + 8 * a)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(wp.add(i)), acc[0]);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        while i < n {
            s += *xp.add(i) * *wp.add(i);
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(x: &[f32], w: &[u8]) -> f32 {
        let n = x.len().min(w.len() / 2);
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        while i + 16 <= n {
            for (a, acc) in acc.iter_mut().enumerate() {
                let h = _mm_loadu_si128(wp.add(2 * (i + 8 * a)) as *const __m128i);
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i + 8 * a)), _mm256_cvtph_ps(h), *acc);
            }
            i += 16;
        }
        let mut s = hsum(_mm256_add_ps(acc[0], acc[1]));
        while i < n {
            s += *xp.add(i) * half::f16::from_le_bytes([*wp.add(2 * i), *wp.add(2 * i + 1)]).to_f32();
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn widen_f16(src: &[u8], out: &mut [f32]) {
        let n = out.len().min(src.len() / 2);
        let mut i = 0;
        while i + 8 <= n {
            let h = _mm_loadu_si128(src.as_ptr().add(2 * i) as *const __m128i);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            i += 8;
        }
        while i < n {
            out[i] = half::f16::from_le_bytes([src[2 * i], src[2 * i + 1]]).to_f32();
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::quant::{Packed, Quant};
    use crate::kernels::test_util::{assert_close, Rng};

    /// Both paths (dot products, SGEMM blocks) for f32 and f16 weights against the scalar twin:
    /// decode rows, odd sizes, partial SGEMM blocks, a bias, output columns inside a wider row with
    /// the rest untouched.
    #[test]
    fn f16_bits_widen_exactly() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h);
            if want.is_finite() {
                assert_eq!(f16_bits_to_f32(h).to_bits(), want.to_f32().to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn matches_the_scalar_twin() {
        let mut rng = Rng::new(41);
        for &(m, n, k) in &[(1, 1, 1), (1, 37, 70), (3, 9, 33), (4, 130, 64), (5, 17, 72), (67, 130, 33), (129, 65, 200)] {
            let x = rng.vec(m * k, 1.0);
            let wv = rng.vec(n * k, 0.5);
            let b = rng.vec(n, 0.5);
            for quant in [Quant::F32, Quant::F16] {
                let p = Packed::quantize(quant, &wv, n, k);
                let (ny, col) = (n + 7, 3);
                let mut want = vec![-1.5f32; m * ny];
                crate::kernels::qlinear::qlinear_cpu(&mut want, ny, col, &x, &p, Some(&b), m);
                let f32s;
                let w = match quant {
                    Quant::F32 => {
                        f32s = bytemuck::pod_collect_to_vec::<u8, f32>(&p.bytes);
                        Weights::F32(&f32s)
                    }
                    _ => Weights::F16(&p.bytes),
                };
                let mut y = vec![-1.5f32; m * ny];
                matmul(&mut y, ny, col, &x, m, w, n, k, Some(&b));
                // another order of f32 sums over ≤ 200 products of O(1) terms
                assert_close(&format!("{quant} {m}x{n}x{k}"), &y, &want, 1e-5, 1e-5);
            }
        }
    }
}
