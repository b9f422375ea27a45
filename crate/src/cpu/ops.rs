//! The CPU backend's element-wise and row kernels: GELU, LayerNorm, RMSNorm, SwiGLU, the residual
//! add (with ConvNeXt's layer scale) and the depthwise 7×7 convolution, each split over rows or
//! chunks on the pool and written so the compiler vectorizes the inner loops (f32 statistics in
//! eight partial sums, [`super::exp_f32_in_place`] instead of libm). The twins in `crate::kernels`
//! (f64 statistics, libm) are their oracle.

use super::Out;

/// Elements per parallel task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// Runs `f(chunk)` over `x` in chunks of `CHUNK` (in parallel where available).
fn chunks_mut(x: &mut [f32], f: impl Fn(&mut [f32]) + Sync + Send) {
    let out = Out(x.as_mut_ptr());
    let n = x.len();
    super::par_ranges(n, CHUNK, |a, b| {
        // SAFETY: [a, b) lies inside x and no other task touches it.
        f(unsafe { out.slice(a, b - a) })
    });
}

/// x ← 0.5·x·(1 + erf(x/√2)), erfc by the Chebyshev fit of Numerical Recipes (fractional error
/// < 1.2e-7, as the WGSL kernel), its exp vectorized.
pub fn gelu(x: &mut [f32]) {
    chunks_mut(x, |c| {
        let mut arg = [0f32; 256];
        for part in c.chunks_mut(256) {
            let arg = &mut arg[..part.len()];
            for (a, &v) in arg.iter_mut().zip(part.iter()) {
                let z = v.abs() * std::f32::consts::FRAC_1_SQRT_2;
                let t = 1.0 / (1.0 + 0.5 * z);
                let poly = -1.265_512_2
                    + t * (1.000_023_7 + t * (0.374_091_96 + t * (0.096_784_18 + t * (-0.186_288_06 + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
                *a = -z * z + poly;
            }
            super::exp_f32_in_place(arg);
            for (v, &e) in part.iter_mut().zip(arg.iter()) {
                let z = v.abs() * std::f32::consts::FRAC_1_SQRT_2;
                let erfc = e / (1.0 + 0.5 * z);
                let erf = if *v >= 0.0 { 1.0 - erfc } else { erfc - 1.0 };
                *v = 0.5 * *v * (1.0 + erf);
            }
        }
    });
}

/// Σ and Σ² of a row in f32 with eight partial sums each.
#[inline]
fn sums(row: &[f32]) -> (f32, f32) {
    let (mut s, mut q) = ([0f32; 8], [0f32; 8]);
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            s[i] += c[i];
            q[i] += c[i] * c[i];
        }
    }
    let (mut a, mut b) = (s.iter().sum::<f32>(), q.iter().sum::<f32>());
    for v in rest {
        a += v;
        b += v * v;
    }
    (a, b)
}

/// Runs `f(row index, input row, output row)` over rows of width `cols` (in parallel).
fn rows(y: &mut [f32], x: &[f32], cols: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send) {
    if cols == 0 {
        return;
    }
    let n = y.len() / cols;
    assert!(x.len() >= n * cols, "row kernel: sizes");
    let out = Out(y.as_mut_ptr());
    let per = (CHUNK / cols).max(1);
    super::par_ranges(n, per, |r0, r1| {
        for r in r0..r1 {
            // SAFETY: row r of y lies inside y and belongs to this task alone.
            let o = unsafe { out.slice(r * cols, cols) };
            f(r, &x[r * cols..(r + 1) * cols], o);
        }
    });
}

/// LayerNorm of each row of x: (x − mean)/√(var + eps)·w + b (mean and variance in f32; the
/// variance from the centred values, a second pass over the row).
pub fn layer_norm(y: &mut [f32], x: &[f32], w: &[f32], b: &[f32], cols: usize, eps: f64) {
    rows(y, x, cols, |_, row, out| {
        let mean = sums(row).0 / cols as f32;
        let mut q = [0f32; 8];
        for (i, v) in row.iter().enumerate() {
            let d = v - mean;
            q[i % 8] += d * d;
        }
        let rstd = 1.0 / (q.iter().sum::<f32>() / cols as f32 + eps as f32).sqrt();
        for (((o, v), w), b) in out.iter_mut().zip(row).zip(w).zip(b) {
            *o = (v - mean) * rstd * w + b;
        }
    });
}

/// RMSNorm of each row: x / √(mean(x²) + eps) · w.
pub fn rms_norm(y: &mut [f32], x: &[f32], w: &[f32], cols: usize, eps: f64) {
    rows(y, x, cols, |_, row, out| {
        let rs = 1.0 / (sums(row).1 / cols as f32 + eps as f32).sqrt();
        for ((o, v), w) in out.iter_mut().zip(row).zip(w) {
            *o = v * rs * w;
        }
    });
}

/// SwiGLU of [rows, 2h] (w1 | w3 halves) into [rows, h]: silu(a)·b.
pub fn swiglu(y: &mut [f32], x: &[f32], h: usize) {
    let out = Out(y.as_mut_ptr());
    let n = y.len() / h.max(1);
    super::par_ranges(n, (CHUNK / h.max(1)).max(1), |r0, r1| {
        for r in r0..r1 {
            // SAFETY: row r of y belongs to this task alone.
            let o = unsafe { out.slice(r * h, h) };
            let (a, b) = x[r * 2 * h..(r + 1) * 2 * h].split_at(h);
            for (o, &v) in o.iter_mut().zip(a) {
                *o = -v;
            }
            super::exp_f32_in_place(o);
            for ((o, &v), &g) in o.iter_mut().zip(a).zip(b) {
                *o = v / (1.0 + *o) * g;
            }
        }
    });
}

/// x += y (·gamma per column of width c when given).
pub fn add(x: &mut [f32], y: &[f32], gamma: Option<&[f32]>, c: usize) {
    match gamma {
        Some(g) => rows(x, y, c, |_, yr, xr| xr.iter_mut().zip(yr).zip(g).for_each(|((a, b), g)| *a += b * g)),
        None => {
            let out = Out(x.as_mut_ptr());
            super::par_ranges(x.len(), CHUNK, |a, b| {
                // SAFETY: [a, b) belongs to this task alone.
                let xs = unsafe { out.slice(a, b - a) };
                xs.iter_mut().zip(&y[a..b]).for_each(|(p, q)| *p += q);
            });
        }
    }
}

/// Depthwise 7×7 convolution, padding 3, on a channels-last [h, w, c] map: each output row sums 49
/// shifted input rows times per-channel weights laid out [49, c] (contiguous over channels).
pub fn dwconv7(y: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32], h: usize, w: usize, c: usize) {
    let mut wt = vec![0f32; 49 * c]; // [tap, channel]
    for ch in 0..c {
        for t in 0..49 {
            wt[t * c + ch] = weight[ch * 49 + t];
        }
    }
    let out = Out(y.as_mut_ptr());
    super::par_ranges(h, 1, |oy0, oy1| {
        for oy in oy0..oy1 {
            // SAFETY: output row oy ([w, c]) belongs to this task alone.
            let row = unsafe { out.slice(oy * w * c, w * c) };
            for ox in 0..w {
                let acc = &mut row[ox * c..(ox + 1) * c];
                acc.copy_from_slice(bias);
                for ky in 0..7 {
                    let iy = oy as isize + ky as isize - 3;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..7 {
                        let ix = ox as isize + kx as isize - 3;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let src = &x[(iy as usize * w + ix as usize) * c..][..c];
                        let tap = &wt[(ky * 7 + kx) * c..][..c];
                        for ((a, s), t) in acc.iter_mut().zip(src).zip(tap) {
                            *a += s * t;
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_close, Rng};

    #[test]
    fn element_and_row_kernels_match_their_twins() {
        let mut rng = Rng::new(61);
        for &(r, c) in &[(1, 1), (3, 7), (5, 33), (70, 129), (2, 20000)] {
            let x = rng.vec(r * c, 3.0);
            let (w, b) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
            let (mut got, mut want) = (x.clone(), x.clone());
            gelu(&mut got);
            crate::kernels::gelu::gelu_cpu(&mut want);
            assert_close(&format!("gelu {r}x{c}"), &got, &want, 1e-6, 1e-6);
            let (mut got, mut want) = (vec![0f32; r * c], vec![0f32; r * c]);
            layer_norm(&mut got, &x, &w, &b, c, 1e-6);
            crate::kernels::layer_norm::layer_norm_cpu(&mut want, &x, &w, &b, c, 1e-6);
            assert_close(&format!("layer_norm {r}x{c}"), &got, &want, 1e-5, 1e-5);
            rms_norm(&mut got, &x, &w, c, 1e-5);
            crate::kernels::rms_norm::rms_norm_cpu(&mut want, &x, &w, c, 1e-5);
            assert_close(&format!("rms_norm {r}x{c}"), &got, &want, 1e-5, 1e-5);
            let (mut got, mut want) = (x.clone(), x.clone());
            let y = rng.vec(r * c, 1.0);
            add(&mut got, &y, Some(&w), c);
            crate::kernels::add::add_cpu(&mut want, &y, Some(&w), c);
            assert_eq!(got, want, "add γ {r}x{c}");
            add(&mut got, &y, None, c);
            crate::kernels::add::add_cpu(&mut want, &y, None, c);
            assert_eq!(got, want, "add {r}x{c}");
            if c % 2 == 1 {
                continue;
            }
            let h = c / 2;
            let (mut got, mut want) = (vec![0f32; r * h], vec![0f32; r * h]);
            swiglu(&mut got, &x, h);
            crate::kernels::swiglu::swiglu_cpu(&mut want, &x, h);
            assert_close(&format!("swiglu {r}x{c}"), &got, &want, 1e-5, 1e-5);
        }
    }

    #[test]
    fn dwconv7_matches_its_twin() {
        let mut rng = Rng::new(62);
        for &(h, w, c) in &[(1, 1, 1), (3, 5, 7), (9, 8, 33), (16, 13, 64)] {
            let x = rng.vec(h * w * c, 1.0);
            let (wt, b) = (rng.vec(c * 49, 0.3), rng.vec(c, 0.3));
            let (mut got, mut want) = (vec![0f32; h * w * c], vec![0f32; h * w * c]);
            dwconv7(&mut got, &x, &wt, &b, h, w, c);
            crate::kernels::dwconv7::dwconv7_cpu(&mut want, &x, &wt, &b, h, w, c);
            assert_close(&format!("dwconv7 {h}x{w}x{c}"), &got, &want, 1e-5, 1e-5);
        }
    }
}
