//! Weight precisions of the converted format (docs/format.md): f32, f16, and the block formats q8
//! and q4 (32 values per block, one binary16 scale each; codes region then scales region).
//! Quantization, exact host-side dequantization (the CPU twins of the fused kernels use it), and
//! row slicing for weights split across storage bindings.

use crate::{Error, Result};
use half::f16;
use serde::{Deserialize, Serialize};

/// Values per quantization block.
pub const BLOCK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    F32,
    F16,
    Q8,
    Q4,
}

impl Quant {
    pub fn parse(s: &str) -> Result<Quant> {
        match s {
            "f32" => Ok(Quant::F32),
            "f16" => Ok(Quant::F16),
            "q8" => Ok(Quant::Q8),
            "q4" => Ok(Quant::Q4),
            other => Err(Error::Config(format!("unknown precision {other:?}: expected f32, f16, q8 or q4"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16",
            Quant::Q8 => "q8",
            Quant::Q4 => "q4",
        }
    }

    /// Whether this is a block format (rows padded to whole blocks).
    pub fn is_block(self) -> bool {
        matches!(self, Quant::Q8 | Quant::Q4)
    }

    /// Bytes of a [rows, cols] matrix in this precision, or None when that overflows (sizes read
    /// from a file are checked with this before [`Quant::bytes`] is trusted).
    pub fn checked_bytes(self, rows: u64, cols: u64) -> Option<u64> {
        let n = rows.checked_mul(cols)?;
        match self {
            Quant::F32 => n.checked_mul(4),
            Quant::F16 => n.checked_mul(2),
            Quant::Q8 | Quant::Q4 => {
                let kp = cols.div_ceil(BLOCK as u64).checked_mul(BLOCK as u64)?;
                let cells = rows.checked_mul(kp)?;
                let codes = if self == Quant::Q8 { cells } else { cells / 2 };
                codes.checked_add((cells / BLOCK as u64).div_ceil(2).checked_mul(4)?)
            }
        }
    }

    /// Bytes of a [rows, cols] matrix in this precision.
    pub fn bytes(self, rows: usize, cols: usize) -> usize {
        match self {
            Quant::F32 => rows * cols * 4,
            Quant::F16 => rows * cols * 2,
            Quant::Q8 | Quant::Q4 => {
                let kp = padded_cols(cols);
                let codes = if self == Quant::Q8 { rows * kp } else { rows * kp / 2 };
                codes + scales_bytes(rows * kp / BLOCK)
            }
        }
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Columns rounded up to whole blocks.
pub fn padded_cols(cols: usize) -> usize {
    cols.div_ceil(BLOCK) * BLOCK
}

/// Bytes of `n` binary16 scales, padded to a multiple of 4.
fn scales_bytes(n: usize) -> usize {
    n.div_ceil(2) * 4
}

/// A [rows, cols] weight matrix in one of the formats, as stored (docs/format.md), or — q4 on
/// the CPU backend's AVX-512 VNNI path — with its bytes in the `Groups8` order.
#[derive(Clone, Debug)]
pub struct Packed {
    pub quant: Quant,
    pub rows: usize,
    pub cols: usize,
    pub bytes: Vec<u8>,
    pub layout: Layout,
}

/// The order of a block format's bytes: the same codes and scales, the same regions, two orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// Row after row (docs/format.md): what files, the GPU and every kernel but one read.
    #[default]
    Stored,
    /// q8/q4 in groups of 8 rows (rows a multiple of 8): per group and block, 32-byte vectors
    /// (eight for q8, four for q4), vector t holding bytes 4t..4t+4 of each of the 8 rows' block in
    /// turn, so that one 256-bit `vpdpbusd` against 4 activation bytes broadcast sums a block's part
    /// for all 8 rows (lanes = rows) and a decode step reads the weight as one stream; the scales
    /// likewise [group, block, 8].
    Groups8,
}

impl Packed {
    /// Wraps stored bytes, checking their size.
    pub fn new(quant: Quant, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Packed> {
        let want = quant.bytes(rows, cols);
        if bytes.len() != want {
            return Err(Error::Shape(format!("{quant} [{rows}, {cols}] needs {want} bytes, got {}", bytes.len())));
        }
        Ok(Packed { quant, rows, cols, bytes, layout: Layout::Stored })
    }

    /// Quantizes row-major f32 values.
    pub fn quantize(quant: Quant, values: &[f32], rows: usize, cols: usize) -> Packed {
        assert_eq!(values.len(), rows * cols, "quantize: values vs shape");
        let bytes = match quant {
            Quant::F32 => bytemuck::cast_slice(values).to_vec(),
            Quant::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            Quant::Q8 | Quant::Q4 => {
                let kp = padded_cols(cols);
                let nb = kp / BLOCK;
                let code_len = if quant == Quant::Q8 { rows * kp } else { rows * kp / 2 };
                let mut codes = vec![0u8; code_len];
                let mut scales = Vec::with_capacity(rows * nb);
                let mut block = [0f32; BLOCK];
                for r in 0..rows {
                    for b in 0..nb {
                        block.fill(0.0);
                        let c0 = b * BLOCK;
                        let c1 = (c0 + BLOCK).min(cols);
                        block[..c1 - c0].copy_from_slice(&values[r * cols + c0..r * cols + c1]);
                        let at = r * nb + b;
                        let d = if quant == Quant::Q8 {
                            quantize_q8_block(&block, &mut codes[at * BLOCK..(at + 1) * BLOCK])
                        } else {
                            quantize_q4_block(&block, &mut codes[at * BLOCK / 2..(at + 1) * BLOCK / 2])
                        };
                        scales.push(d);
                    }
                }
                let mut bytes = codes;
                for s in &scales {
                    bytes.extend_from_slice(&s.to_le_bytes());
                }
                if scales.len() % 2 == 1 {
                    bytes.extend_from_slice(&[0, 0]);
                }
                bytes
            }
        };
        Packed { quant, rows, cols, bytes, layout: Layout::Stored }
    }

    /// Bytes of one row's block of codes: 32 (q8) or 16 (q4).
    pub fn block_bytes(&self) -> usize {
        if self.quant == Quant::Q8 {
            BLOCK
        } else {
            BLOCK / 2
        }
    }

    /// This matrix in the `Groups8` order (a permutation of its bytes), when it is stored q8 or q4
    /// with rows a multiple of 8; else itself.
    pub fn into_groups8(self) -> Packed {
        if !self.quant.is_block() || self.layout != Layout::Stored || !self.rows.is_multiple_of(8) {
            return self;
        }
        let mut out = Packed { bytes: huge_zeroed(self.bytes.len()), layout: Layout::Groups8, ..self };
        let (nb, at, bb) = (padded_cols(out.cols) / BLOCK, self.scales_offset(), self.block_bytes());
        // word t of row i's block b to (g, b, t, i), its scale to (g, b, i): `code_at`, `scale_at`
        for (g, dst) in out.bytes[..at].chunks_exact_mut(nb * 8 * bb).enumerate() {
            let src = &self.bytes[g * 8 * nb * bb..(g + 1) * 8 * nb * bb];
            for (b, block) in dst.chunks_exact_mut(8 * bb).enumerate() {
                for (w, word) in block.chunks_exact_mut(4).enumerate() {
                    let (t, i) = (w / 8, w % 8);
                    word.copy_from_slice(&src[i * nb * bb + b * bb + t * 4..][..4]);
                }
            }
        }
        let scales = &self.bytes[at..];
        for (gb, dst) in out.bytes[at..at + 2 * self.rows * nb].chunks_exact_mut(16).enumerate() {
            let (g, b) = (gb / nb, gb % nb);
            for (i, s) in dst.chunks_exact_mut(2).enumerate() {
                s.copy_from_slice(&scales[2 * ((g * 8 + i) * nb + b)..][..2]);
            }
        }
        out
    }

    /// Where byte `t` of row r's block b of q8/q4 codes lies (t < [`Packed::block_bytes`]).
    pub fn code_at(&self, r: usize, b: usize, t: usize) -> usize {
        let (nb, bb) = (padded_cols(self.cols) / BLOCK, self.block_bytes());
        match self.layout {
            Layout::Stored => (r * nb + b) * bb + t,
            Layout::Groups8 => ((r / 8) * nb + b) * 8 * bb + (t / 4) * 32 + (r % 8) * 4 + t % 4,
        }
    }

    /// Where the binary16 scale of row r's block b lies.
    pub fn scale_at(&self, r: usize, b: usize) -> usize {
        let nb = padded_cols(self.cols) / BLOCK;
        let i = match self.layout {
            Layout::Stored => r * nb + b,
            Layout::Groups8 => ((r / 8) * nb + b) * 8 + r % 8,
        };
        self.scales_offset() + 2 * i
    }

    /// Byte offset of the scales region (block formats).
    pub fn scales_offset(&self) -> usize {
        let kp = padded_cols(self.cols);
        match self.quant {
            Quant::Q8 => self.rows * kp,
            Quant::Q4 => self.rows * kp / 2,
            _ => self.bytes.len(),
        }
    }

    fn scale(&self, r: usize, b: usize) -> f32 {
        let at = self.scale_at(r, b);
        f16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]).to_f32()
    }

    /// Row `r` as f32 into `out` (len = cols): exactly the values the kernels compute.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let k = self.cols;
        match self.quant {
            Quant::F32 => {
                let s = &self.bytes[r * k * 4..(r + 1) * k * 4];
                for (o, c) in out.iter_mut().zip(s.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Quant::F16 => {
                let s = &self.bytes[r * k * 2..(r + 1) * k * 2];
                for (o, c) in out.iter_mut().zip(s.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            Quant::Q8 => {
                for (c, o) in out.iter_mut().enumerate() {
                    let q = self.bytes[self.code_at(r, c / BLOCK, c % BLOCK)] as i8;
                    *o = q as f32 * self.scale(r, c / BLOCK);
                }
            }
            Quant::Q4 => {
                for (c, o) in out.iter_mut().enumerate() {
                    let (b, j) = (c / BLOCK, c % BLOCK);
                    let byte = self.bytes[self.code_at(r, b, j % 16)];
                    let u = if j < 16 { byte & 0x0f } else { byte >> 4 };
                    *o = (u as f32 - 8.0) * self.scale(r, b);
                }
            }
        }
    }

    /// The whole matrix as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }

    /// Rows `r0 .. r0 + n` as their own matrix (same format).
    pub fn slice_rows(&self, r0: usize, n: usize) -> Packed {
        assert!(self.layout == Layout::Stored, "slice_rows reads the stored order");
        let k = self.cols;
        let bytes = match self.quant {
            Quant::F32 => self.bytes[r0 * k * 4..(r0 + n) * k * 4].to_vec(),
            Quant::F16 => self.bytes[r0 * k * 2..(r0 + n) * k * 2].to_vec(),
            Quant::Q8 | Quant::Q4 => {
                let kp = padded_cols(k);
                let row_codes = if self.quant == Quant::Q8 { kp } else { kp / 2 };
                let nb = kp / BLOCK;
                let mut b = self.bytes[r0 * row_codes..(r0 + n) * row_codes].to_vec();
                let s0 = self.scales_offset() + 2 * r0 * nb;
                b.extend_from_slice(&self.bytes[s0..s0 + 2 * n * nb]);
                if (n * nb) % 2 == 1 {
                    b.extend_from_slice(&[0, 0]);
                }
                b
            }
        };
        Packed { quant: self.quant, rows: n, cols: k, bytes, layout: Layout::Stored }
    }
}

/// q8: d = max|w| / 127 (binary16), q = round(w / d). Returns d.
fn quantize_q8_block(block: &[f32; BLOCK], codes: &mut [u8]) -> f16 {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = f16::from_f32(amax / 127.0);
    let df = d.to_f32();
    for (c, &v) in codes.iter_mut().zip(block) {
        let q = if df == 0.0 { 0.0 } else { (v / df).round().clamp(-127.0, 127.0) };
        *c = (q as i8) as u8;
    }
    d
}

/// q4 (ggml Q4_0 arithmetic): d = m / -8 for the value m of largest magnitude (binary16),
/// u = clamp(round(w / d) + 8, 0, 15); value j in the low nibble of byte j, value j + 16 in the high.
fn quantize_q4_block(block: &[f32; BLOCK], codes: &mut [u8]) -> f16 {
    let mut m = 0f32;
    for &v in block {
        if v.abs() > m.abs() {
            m = v;
        }
    }
    let d = f16::from_f32(m / -8.0);
    let df = d.to_f32();
    let code = |v: f32| -> u8 {
        if df == 0.0 {
            8
        } else {
            ((v / df).round() + 8.0).clamp(0.0, 15.0) as u8
        }
    };
    for j in 0..BLOCK / 2 {
        codes[j] = code(block[j]) | (code(block[j + 16]) << 4);
    }
    d
}

/// `len` zero bytes for a weight the CPU kernels stream: on Linux advised onto transparent huge
/// pages before the first write (a decode step reads every weight once: with 4 KiB pages each page
/// is a TLB miss and a stop for the hardware prefetcher). Elsewhere, or where the kernel declines,
/// plain pages.
fn huge_zeroed(len: usize) -> Vec<u8> {
    let v = vec![0u8; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, end) = ((v.as_ptr() as usize).next_multiple_of(HUGE), (v.as_ptr() as usize + len) / HUGE * HUGE);
        if end > start {
            // SAFETY: [start, end) lies inside v's allocation; advice changes no contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 2.0
            })
            .collect()
    }

    #[test]
    fn sizes_and_layout() {
        // 3 rows x 3 blocks = 9 scales = 18 bytes, padded to 20
        assert_eq!(Quant::Q4.bytes(3, 70), 144 + 20);
        assert_eq!(Quant::Q8.bytes(2, 64), 128 + 8);
        assert_eq!(Quant::F16.bytes(3, 5), 30);
        for q in [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4] {
            for (r, c) in [(3, 70), (1, 1), (7, 33), (0, 5)] {
                assert_eq!(q.checked_bytes(r, c), Some(q.bytes(r as usize, c as usize) as u64), "{q} {r}x{c}");
            }
            assert_eq!(q.checked_bytes(1 << 33, 1 << 32), None, "{q}");
        }
    }

    #[test]
    fn round_trips_within_half_a_step() {
        let (rows, cols) = (5, 70); // a partial last block
        let w = data(rows * cols, 1);
        for q in [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4] {
            let p = Packed::quantize(q, &w, rows, cols);
            assert_eq!(p.bytes.len(), q.bytes(rows, cols), "{q}");
            let back = p.to_f32();
            for r in 0..rows {
                for b in 0..padded_cols(cols) / BLOCK {
                    let c0 = b * BLOCK;
                    let c1 = (c0 + BLOCK).min(cols);
                    let amax = w[r * cols + c0..r * cols + c1].iter().fold(0f32, |m, v| m.max(v.abs()));
                    // half a quantization step (+ the binary16 rounding of the scale)
                    let tol = match q {
                        Quant::F32 => 0.0,
                        Quant::F16 => amax / 1024.0,
                        Quant::Q8 => amax / 127.0 * 0.51,
                        // codes span [-8, 7] steps: the side opposite the largest value clamps at 7
                        Quant::Q4 => amax / 8.0 * 1.01,
                    };
                    for c in c0..c1 {
                        let (a, b) = (w[r * cols + c], back[r * cols + c]);
                        assert!((a - b).abs() <= tol, "{q} [{r},{c}]: {a} vs {b} (tol {tol})");
                    }
                }
            }
            // slicing rows gives the same values as slicing the dequantized matrix
            let s = p.slice_rows(2, 2);
            assert_eq!(s.bytes.len(), q.bytes(2, cols));
            assert_eq!(s.to_f32(), back[2 * cols..4 * cols].to_vec(), "{q} slice");
        }
    }

    #[test]
    fn q4_layout_is_low_then_high_nibble() {
        let mut w = vec![0f32; 32];
        w[0] = -8.0; // the largest magnitude: d = -8 / -8 = 1
        w[1] = 3.0;
        w[17] = -2.0;
        let p = Packed::quantize(Quant::Q4, &w, 1, 32);
        assert_eq!(p.bytes[0] & 0x0f, 0); // -8 → u = 0
        assert_eq!(p.bytes[1] & 0x0f, 11); // 3 → 11
        assert_eq!(p.bytes[1] >> 4, 6); // w[17] = -2 → 6
        assert_eq!(f16::from_le_bytes([p.bytes[16], p.bytes[17]]).to_f32(), 1.0);
        assert_eq!(p.to_f32(), w);
    }

    /// The `Groups8` order is a permutation of the same bytes: every row dequantizes to the same
    /// values, odd block counts and padded columns included; other matrices are left as they are.
    #[test]
    fn groups8_is_the_same_matrix() {
        for (quant, rows, cols) in [(Quant::Q4, 8, 32), (Quant::Q4, 16, 70), (Quant::Q4, 24, 600), (Quant::Q4, 64, 2048), (Quant::Q8, 8, 32), (Quant::Q8, 16, 70), (Quant::Q8, 24, 600)] {
            let p = Packed::quantize(quant, &data(rows * cols, 7), rows, cols);
            let g = p.clone().into_groups8();
            assert_eq!(g.layout, Layout::Groups8);
            assert_eq!(g.bytes.len(), p.bytes.len());
            assert_eq!(g.to_f32(), p.to_f32(), "{quant} {rows}x{cols}");
            let (mut a, mut b) = (p.bytes.clone(), g.bytes.clone());
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{rows}x{cols}: a permutation");
        }
        for (quant, rows) in [(Quant::Q4, 12), (Quant::Q8, 20), (Quant::F16, 8)] {
            let p = Packed::quantize(quant, &data(rows * 64, 3), rows, 64);
            assert_eq!(p.clone().into_groups8().layout, Layout::Stored, "{quant} x{rows}");
        }
    }

    #[test]
    fn zero_blocks_stay_zero() {
        for q in [Quant::Q8, Quant::Q4] {
            let p = Packed::quantize(q, &[0.0; 40], 1, 40);
            assert!(p.to_f32().iter().all(|&v| v == 0.0));
        }
    }
}
