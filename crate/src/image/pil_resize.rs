//! Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB, mirroring `src/libImaging/Resample.c`
//! (`precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`,
//! `ImagingResampleVertical_8bpc`, `ImagingResampleInner`) bit for bit.
//!
//! Separable, horizontal pass first, uint8 between the passes. Per axis, scale = in/out (f64); the
//! filter (Keys cubic, a = -0.5, support 2) is widened by the scale when downscaling; weights are
//! normalised to sum 1 in f64, then turned into integers with 22 fractional bits (round half away
//! from zero); a pixel is `clamp((2^21 + Σ w·p) >> 22, 0, 255)`. A pass whose size does not change
//! is skipped, as in Pillow. Departure: the source is read row by row through [`RowSource`], so the
//! padded square of `padded_resize` is never materialised (the arithmetic is unchanged).

use super::Rgb8;
use crate::Result;

/// `PRECISION_BITS` in Resample.c: 32 - 8 - 2.
const PRECISION_BITS: u32 = 22;
/// `BICUBIC.support`.
const BICUBIC_SUPPORT: f64 = 2.0;

/// `bicubic_filter` (a = -0.5), in f64 like the C code.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        return ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    }
    if x < 2.0 {
        return (((x - 5.0) * x + 8.0) * x - 4.0) * A;
    }
    0.0
}

/// Integer filter taps of one axis: output `i` reads inputs `start[i] .. start[i] + len[i]` with
/// weights `k[i * ksize ..][..len[i]]`.
pub(crate) struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
}

impl Coeffs {
    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let o = i * self.ksize;
        (self.start[i], &self.k[o..o + self.len[i]])
    }
}

/// `precompute_coeffs(inSize, 0, inSize, outSize, &BICUBIC, ...)` followed by
/// `normalize_coeffs_8bpc`.
pub(crate) fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    // box = (0, 0, w, h) arrives as floats: in0 = 0.0, in1 = in_size (exact below 2^24).
    let in0 = 0f32;
    let in1 = in_size as f32;
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;

    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; so does `as` (both sides are far inside i64).
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        // At most 2*ceil(support)+1 taps by construction; clamp anyway so that no index can leave
        // this output's row of `k` (Pillow would write into the next row).
        let n = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let xmin = xmin as usize;
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let v = bicubic_filter(((x + xmin) as f64 - center + 0.5) * ss);
            *wx = v;
            ww += v;
        }
        let row = &mut k[xx * ksize..xx * ksize + n];
        for (kx, &wx) in row.iter_mut().zip(&w[..n]) {
            let wx = if ww != 0.0 { wx / ww } else { wx };
            // normalize_coeffs_8bpc: round half away from zero, then C's truncating cast.
            let v = wx * (1u32 << PRECISION_BITS) as f64;
            *kx = if wx < 0.0 { (-0.5 + v) as i32 } else { (0.5 + v) as i32 };
        }
        start.push(xmin);
        len.push(n);
    }
    Coeffs { ksize, start, len, k }
}

/// `clip8`: the accumulator already holds the +0.5 rounding term.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A source image read one row at a time. `row` fills `out` (width * 3 bytes, interleaved RGB) and
/// returns true when the row is one uniform fill colour shared by every other row that returns
/// true (the padding of `padded_resize`), letting the horizontal pass compute such rows once.
pub(crate) trait RowSource {
    fn width(&self) -> usize;
    fn height(&self) -> usize;
    fn row(&self, y: usize, out: &mut [u8]) -> bool;
}

impl RowSource for Rgb8 {
    fn width(&self) -> usize {
        Rgb8::width(self)
    }
    fn height(&self) -> usize {
        Rgb8::height(self)
    }
    fn row(&self, y: usize, out: &mut [u8]) -> bool {
        let n = Rgb8::width(self) * 3;
        out.copy_from_slice(&self.data()[y * n..(y + 1) * n]);
        false
    }
}

/// `ImagingResampleHorizontal_8bpc` for one row. // [W_in, 3] -> [W_out, 3]
fn horizontal_row(src: &[u8], c: &Coeffs, out: &mut [u8]) {
    for (xx, px) in out.chunks_exact_mut(3).enumerate() {
        let (xmin, k) = c.taps(xx);
        let taps = &src[xmin * 3..(xmin + k.len()) * 3];
        let (mut s0, mut s1, mut s2) = (1i32 << (PRECISION_BITS - 1), 1i32 << (PRECISION_BITS - 1), 1i32 << (PRECISION_BITS - 1));
        for (p, &w) in taps.chunks_exact(3).zip(k) {
            s0 += p[0] as i32 * w;
            s1 += p[1] as i32 * w;
            s2 += p[2] as i32 * w;
        }
        px[0] = clip8(s0);
        px[1] = clip8(s1);
        px[2] = clip8(s2);
    }
}

/// `ImagingResampleInner` with BICUBIC on an RGB source: returns `[out_h, out_w, 3]` bytes.
pub(crate) fn resample(src: &dyn RowSource, out_w: usize, out_h: usize) -> Vec<u8> {
    let (in_w, in_h) = (src.width(), src.height());
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    let vert = precompute_coeffs(in_h, out_h);
    // First and one-past-last source rows the vertical pass reads.
    let ybox_first = vert.start.first().copied().unwrap_or(0);
    let ybox_last = match (vert.start.last(), vert.len.last()) {
        (Some(s), Some(l)) => s + l,
        _ => 0,
    };

    // Rows ybox_first..ybox_last, horizontally resampled when the width changes. // [rows, out_w, 3]
    let rows = ybox_last - ybox_first;
    let mut tmp = vec![0u8; rows * out_w * 3];
    let mut line = vec![0u8; in_w * 3];
    if need_horizontal {
        let horiz = precompute_coeffs(in_w, out_w);
        let mut uniform_done: Option<usize> = None;
        for r in 0..rows {
            let uniform = src.row(ybox_first + r, &mut line);
            let (done, rest) = tmp.split_at_mut(r * out_w * 3);
            let dst = &mut rest[..out_w * 3];
            match (uniform, uniform_done) {
                (true, Some(prev)) => dst.copy_from_slice(&done[prev * out_w * 3..(prev + 1) * out_w * 3]),
                _ => {
                    horizontal_row(&line, &horiz, dst);
                    if uniform {
                        uniform_done = Some(r);
                    }
                }
            }
        }
    } else {
        for r in 0..rows {
            src.row(ybox_first + r, &mut tmp[r * out_w * 3..(r + 1) * out_w * 3]);
        }
    }
    if !need_vertical {
        // rows == in_h == out_h here: the scale-1 taps span every row.
        return tmp;
    }

    // ImagingResampleVertical_8bpc, accumulated a whole row at a time (integer sums, so the order
    // of the additions does not matter). // [rows, out_w, 3] -> [out_h, out_w, 3]
    let n = out_w * 3;
    let mut out = vec![0u8; out_h * n];
    let mut acc = vec![0i32; n];
    for yy in 0..out_h {
        let (ymin, k) = vert.taps(yy);
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let r = ymin + y - ybox_first;
            for (a, &p) in acc.iter_mut().zip(&tmp[r * n..(r + 1) * n]) {
                *a += p as i32 * w;
            }
        }
        for (o, &a) in out[yy * n..(yy + 1) * n].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Pillow `img.resize((out_w, out_h), Image.BICUBIC)` on an RGB image.
pub fn pil_resize_bicubic(src: &Rgb8, out_w: usize, out_h: usize) -> Result<Rgb8> {
    super::check_dims(out_w, out_h)?;
    if out_w == src.width() && out_h == src.height() {
        // Image.resize returns a copy when size and box are unchanged.
        return Ok(src.clone());
    }
    Rgb8::new(out_w, out_h, resample(src, out_w, out_h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for &(i, o) in &[(333usize, 1024usize), (512, 448), (7, 13), (23, 6), (16384, 1024)] {
            let c = precompute_coeffs(i, o);
            for x in 0..o {
                let (s, k) = c.taps(x);
                assert!(s + k.len() <= i, "{i}->{o}: taps of {x} leave the input");
                let sum: i64 = k.iter().map(|&v| v as i64).sum();
                assert!((sum - (1 << 22)).abs() <= k.len() as i64, "{i}->{o} at {x}: sum {sum}");
            }
        }
    }

    #[test]
    fn upscale_matches_hand_computed_taps() {
        // 2 -> 4: center of output 0 is 0.25; taps x=0,1 (xmin clamped to 0, xmax = 2).
        let c = precompute_coeffs(2, 4);
        let (s, k) = c.taps(0);
        assert_eq!(s, 0);
        assert_eq!(k.len(), 2);
        // filter(0.25) = 1.5*0.25^3 - 2.5*0.25^2 + 1 ; filter(1.25) = -0.5*(1.25^3 - 5*1.25^2 + 8*1.25 - 4)
        let (a, b) = (1.5 * 0.015625 - 2.5 * 0.0625 + 1.0, -0.5 * (1.953125 - 7.8125 + 10.0 - 4.0));
        let want = [a / (a + b), b / (a + b)];
        for (g, w) in k.iter().zip(want) {
            let v = w * 4194304.0;
            assert_eq!(*g, if w < 0.0 { (-0.5 + v) as i32 } else { (0.5 + v) as i32 });
        }
        assert_eq!(k[0] + k[1], 1 << 22);
    }
}
