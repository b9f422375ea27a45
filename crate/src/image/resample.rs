//! `F.interpolate(x.half(), size, mode=...)` as `encode_image` calls it on the GPU, mirroring
//! PyTorch's CUDA kernels: `upsample_bicubic2d_out_frame` (aten/src/ATen/native/cuda/
//! UpSampleBicubic2d.cu) with `area_pixel_compute_source_index`, `get_cubic_upsampling_coefficients`
//! and `cubic_interp1d` (UpSample.cuh), and `upsample_nearest2d_out_frame` (UpSampleNearest2d.cu).
//! Plus the exact crops `encode_image` takes with slicing.
//!
//! fp16 semantics: operands are the fp16-rounded inputs, arithmetic is f32 (`accscalar_t`), the
//! result is rounded once to fp16 and returned as f32 (upstream casts back with `.to(image)`).
//! Departures: the bicubic is evaluated separably (each source row's x-interpolation is computed
//! once, then combined along y) — the same f32 operations in the same order as the per-pixel CUDA
//! kernel, so the same values. Multiply-adds are plain f32 (no FMA); nvcc and the CPU build that
//! made the golden data may fuse some of them, which moves ~0.2% of the fp16 outputs by 1 ulp.

use super::ImageTensor;
use crate::{Error, Result};
use half::f16;

/// Rounds to the nearest fp16 value (ties to even) and back: `x.half().float()`.
#[inline]
pub fn round_fp16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Keys' cubic convolution constant in PyTorch (`A = -0.75`, OpenCV's choice).
const A: f32 = -0.75;

/// `cubic_convolution1`: |x| <= 1.
#[inline]
fn cubic_convolution1(x: f32) -> f32 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

/// `cubic_convolution2`: 1 < |x| < 2.
#[inline]
fn cubic_convolution2(x: f32) -> f32 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// `get_cubic_upsampling_coefficients(coeffs, t)`.
fn cubic_coefficients(t: f32) -> [f32; 4] {
    let x1 = t;
    let x2 = 1.0 - t;
    [cubic_convolution2(x1 + 1.0), cubic_convolution1(x1), cubic_convolution1(x2), cubic_convolution2(x2 + 1.0)]
}

/// Per output index of one axis: the 4 border-clamped source indices and their weights.
struct CubicTaps {
    idx: Vec<[usize; 4]>,
    w: Vec<[f32; 4]>,
}

fn cubic_taps(in_size: usize, out_size: usize) -> CubicTaps {
    // area_pixel_compute_scale without a scale_factor: (float)in / out.
    let scale = in_size as f32 / out_size as f32;
    let last = in_size as i64 - 1;
    let mut idx = Vec::with_capacity(out_size);
    let mut w = Vec::with_capacity(out_size);
    for d in 0..out_size {
        // area_pixel_compute_source_index(scale, d, align_corners=false, cubic=true)
        let s = scale * (d as f32 + 0.5) - 0.5;
        let i = s.floor() as i64;
        let t = s - i as f32;
        // upsample_get_value_bounded clamps each tap to [0, in-1].
        idx.push([0i64, 1, 2, 3].map(|k| (i - 1 + k).clamp(0, last) as usize));
        w.push(cubic_coefficients(t));
    }
    CubicTaps { idx, w }
}

/// `x0*c0 + x1*c1 + x2*c2 + x3*c3`, left to right, plain f32 (`cubic_interp1d`).
#[inline]
fn interp4(x: [f32; 4], c: &[f32; 4]) -> f32 {
    x[0] * c[0] + x[1] * c[1] + x[2] * c[2] + x[3] * c[3]
}

/// `F.interpolate(x.half(), (out_h, out_w), mode='bicubic', align_corners=False)` with CUDA
/// semantics, cast back to f32. // [3, H, W] -> [3, out_h, out_w]
pub fn bicubic_fp16(src: &ImageTensor, out_h: usize, out_w: usize) -> Result<ImageTensor> {
    let mut out = bicubic_f32_of_fp16(src, out_h, out_w)?;
    for v in out.data.iter_mut() {
        *v = round_fp16(*v); // the kernel's static_cast<scalar_t> of the f32 result
    }
    Ok(out)
}

/// The bicubic kernel's f32 result before its final rounding to fp16 (operands already rounded to
/// fp16). Exposed to the tests, which compare it with PyTorch's float32 kernel.
pub(crate) fn bicubic_f32_of_fp16(src: &ImageTensor, out_h: usize, out_w: usize) -> Result<ImageTensor> {
    check_out("bicubic_fp16", out_h, out_w)?;
    let (h, w) = (src.height(), src.width());
    if h == out_h && w == out_w {
        // The kernel's "input and output are the same size, just copy" branch.
        let data = src.data().iter().map(|&v| round_fp16(v)).collect();
        return ImageTensor::new(h, w, data);
    }
    let tx = cubic_taps(w, out_w);
    let ty = cubic_taps(h, out_h);
    let mut out = vec![0f32; 3 * out_h * out_w];
    let mut line = vec![0f32; w];
    let mut rows = vec![0f32; h * out_w]; // x-interpolated source rows of one channel // [H, out_w]
    for c in 0..3 {
        let plane = src.plane(c);
        for (y, row) in rows.chunks_exact_mut(out_w).enumerate() {
            for (l, &v) in line.iter_mut().zip(&plane[y * w..(y + 1) * w]) {
                *l = round_fp16(v); // x.half()
            }
            for (o, (ix, cw)) in row.iter_mut().zip(tx.idx.iter().zip(&tx.w)) {
                *o = interp4([line[ix[0]], line[ix[1]], line[ix[2]], line[ix[3]]], cw);
            }
        }
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (orow, (iy, cw)) in dst.chunks_exact_mut(out_w).zip(ty.idx.iter().zip(&ty.w)) {
            let r = iy.map(|y| &rows[y * out_w..(y + 1) * out_w]);
            for (x, o) in orow.iter_mut().enumerate() {
                *o = interp4([r[0][x], r[1][x], r[2][x], r[3][x]], cw);
            }
        }
    }
    ImageTensor::new(out_h, out_w, out)
}

/// Source indices of torch's default `'nearest'` mode: `min(floor(dst * (float)in/out), in-1)`.
fn nearest_index(in_size: usize, out_size: usize) -> Vec<usize> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size).map(|d| ((d as f32 * scale).floor() as usize).min(in_size - 1)).collect()
}

/// `F.interpolate(x.half(), (out_h, out_w))` (mode `'nearest'`), cast back to f32: a gather of
/// fp16-rounded values (an fp16 round trip even when the size is unchanged).
/// // [3, H, W] -> [3, out_h, out_w]
pub fn nearest_fp16(src: &ImageTensor, out_h: usize, out_w: usize) -> Result<ImageTensor> {
    check_out("nearest_fp16", out_h, out_w)?;
    let (h, w) = (src.height(), src.width());
    let ix = nearest_index(w, out_w);
    let iy = nearest_index(h, out_h);
    let mut out = Vec::with_capacity(3 * out_h * out_w);
    for c in 0..3 {
        let plane = src.plane(c);
        for &y in &iy {
            let row = &plane[y * w..(y + 1) * w];
            out.extend(ix.iter().map(|&x| round_fp16(row[x])));
        }
    }
    ImageTensor::new(out_h, out_w, out)
}

/// `x[..., y0:y0+h, x0:x0+w]`: an exact copy. // [3, H, W] -> [3, h, w]
pub fn crop(src: &ImageTensor, y0: usize, x0: usize, h: usize, w: usize) -> Result<ImageTensor> {
    if h == 0 || w == 0 || y0 + h > src.height() || x0 + w > src.width() {
        return Err(Error::Shape(format!(
            "crop rows {y0}..{} cols {x0}..{} outside image {:?}",
            y0 + h,
            x0 + w,
            src.shape()
        )));
    }
    let mut out = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        let plane = src.plane(c);
        for y in y0..y0 + h {
            out.extend_from_slice(&plane[y * src.width() + x0..y * src.width() + x0 + w]);
        }
    }
    ImageTensor::new(h, w, out)
}

/// The four quadrants in upstream order: top-left `[:n, :n]`, top-right `[:n, n:]`, bottom-left
/// `[n:, :n]`, bottom-right `[n:, n:]` of a `2n x 2n` image. // [3, 2n, 2n] -> 4 x [3, n, n]
pub fn quadrants(src: &ImageTensor) -> Result<[ImageTensor; 4]> {
    let s = src.height();
    if src.width() != s || !s.is_multiple_of(2) {
        return Err(Error::Shape(format!("quadrants need an even square image, got {:?}", src.shape())));
    }
    let n = s / 2;
    Ok([crop(src, 0, 0, n, n)?, crop(src, 0, n, n, n)?, crop(src, n, 0, n, n)?, crop(src, n, n, n, n)?])
}

fn check_out(op: &str, h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(Error::Shape(format!("{op}: output size {h}x{w} is empty")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_2x_weights() {
        // 448 -> 224 (spec 3.1): s = 2d + 0.5, taps 2d-1 .. 2d+2, weights (-3, 19, 19, -3) / 32.
        let t = cubic_taps(448, 224);
        assert_eq!(t.idx[0], [0, 0, 1, 2]);
        assert_eq!(t.idx[5], [9, 10, 11, 12]);
        assert_eq!(t.idx[223], [445, 446, 447, 447]);
        for w in &t.w {
            assert_eq!(*w, [-3.0 / 32.0, 19.0 / 32.0, 19.0 / 32.0, -3.0 / 32.0]);
        }
    }

    #[test]
    fn nearest_224_to_256_reads_floor_7i_over_8() {
        let idx = nearest_index(224, 256);
        for (i, &s) in idx.iter().enumerate() {
            assert_eq!(s, 7 * i / 8);
        }
        assert_eq!(nearest_index(512, 512), (0..512).collect::<Vec<_>>());
    }

    #[test]
    fn quadrant_layout() {
        let data: Vec<f32> = (0..3 * 4 * 4).map(|v| v as f32).collect();
        let im = ImageTensor::new(4, 4, data).unwrap();
        let q = quadrants(&im).unwrap();
        assert_eq!(q[0].plane(0), &[0.0, 1.0, 4.0, 5.0]);
        assert_eq!(q[1].plane(0), &[2.0, 3.0, 6.0, 7.0]);
        assert_eq!(q[2].plane(0), &[8.0, 9.0, 12.0, 13.0]);
        assert_eq!(q[3].plane(2), &[42.0, 43.0, 46.0, 47.0]);
        assert!(crop(&im, 3, 0, 2, 1).is_err());
    }
}
