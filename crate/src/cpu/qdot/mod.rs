//! Products with q8 / q4 weights on the CPU: the activations are quantized per 32-block to 8 bits
//! ([`Acts`]: d = max|x| / 127 in f32, q = round(x / d)), each block's integer dot product with the
//! weight codes is exact, and the blocks are summed as Σ d_w·d_x·Σ q_w q_x in f32 (ggml's Q8_0
//! activations with a finer scale). The weights are read where they are held (codes region and
//! binary16 scales region, docs/format.md): in the stored order, or — on AVX-512 VNNI
//! ([`crate::cpu::hold`]) — in the `Groups8` order, eight rows' blocks together; no copy.
//!
//! A kernel computes a tile of `JR` weight rows × `MR` activation rows, so that each weight block
//! loaded is used `MR` times and each activation block `JR` times; decode takes one activation row.
//! Where an instruction wants an unsigned operand (x86 `vpdpbusd` / `vpmaddubsw`, wasm's relaxed
//! dot), the weight codes are taken unsigned — q8 as q + 128, q4 as its stored nibble (q + 8) — and
//! the offset o·Σ q_x is taken off again: in the integer sums where the kernel starts each block's
//! sum at −o·Σ q_x (VNNI), else in f32 afterwards ([`Acts::e`]).
//!
//! Kernels: AVX-512 VNNI (`x86::tile_vnni`: two blocks per 256-bit register, activations stored
//! pre-interleaved for it; decode of a `Groups8` matrix by `x86::groups8_range`, eight rows
//! per register), AVX2 (`vpmaddubsw`; q8 with the sign trick, as ggml does), wasm
//! SIMD128 (activations widened to i16 once, `i32x4.dot_i16x8_s`), wasm relaxed SIMD for q4 weights
//! (`i32x4.relaxed_dot_i8x16_i7x16_add_s`: nibbles are 7-bit), and portable integer loops.
//! [`qdot_exact`] is the oracle they are all tested against.

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;

use super::{par_ranges, task_rows, Isa, Out};
use crate::io::quant::{padded_cols, Layout, Packed, Quant, BLOCK};
use half::f16;

/// Weight rows per tile, activation rows per tile (decode: 1).
const JR: usize = 4;
const MR: usize = 4;
/// Activation rows of a `Rows8` group (one 512-bit register of i32 lanes), weight rows of its tile.
const ROWS8: usize = 16;
const JR8: usize = 8;

/// How a kernel wants the activations laid out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Form {
    /// Codes row by row; `wide`: also as i16; `e`: with d·Σq per block (unsigned weights,
    /// offset taken off in f32).
    Natural { wide: bool, e: bool },
    /// Blocks interleaved by pairs for 256-bit VNNI: per pair of blocks (2p, 2p+1), 64 bytes
    /// [x₂ₚ[0..16], x₂ₚ₊₁[0..16], x₂ₚ[16..32], x₂ₚ₊₁[16..32]], so that one `vpdpbusd` sums block 2p
    /// into lanes 0–3 and block 2p+1 into lanes 4–7; the scales as [d₂ₚ×4, d₂ₚ₊₁×4]; the start of
    /// each pair's sums, [−o·Σq₂ₚ, 0, 0, 0, −o·Σq₂ₚ₊₁, 0, 0, 0]; rows padded to a multiple of MR.
    Pairs { offset: i32 },
    /// Rows by sixteens for VNNI batches (16 rows and more): per group of 16 rows and block,
    /// eight 64-byte vectors, vector t holding bytes 4t..4t+4 of each row's block as unsigned codes
    /// (q + 128), so that one 512-bit `vpdpbusd` against 4 bytes of a weight row broadcast sums them
    /// for all 16 rows at once (lanes = rows); the scales as [group, block, 16]; rows padded to a
    /// multiple of 16.
    Rows8,
}

impl Form {
    fn of(isa: Isa, quant: Quant, m: usize) -> Form {
        let offset = if quant == Quant::Q8 { 128 } else { 8 };
        match isa {
            Isa::Avx512Vnni if m >= ROWS8 => Form::Rows8,
            Isa::Avx512Vnni => Form::Pairs { offset },
            Isa::Avx2 | Isa::WasmRelaxed if quant == Quant::Q4 => Form::Natural { wide: false, e: true },
            Isa::WasmSimd | Isa::WasmRelaxed => Form::Natural { wide: true, e: false },
            _ => Form::Natural { wide: false, e: false },
        }
    }

    /// f32 values of one weight row's scales in the kernel's form.
    fn scale_len(self, nb: usize) -> usize {
        match self {
            Form::Natural { .. } | Form::Rows8 => nb,
            Form::Pairs { .. } => nb.div_ceil(2) * 8,
        }
    }
}

/// Activation rows quantized per 32-block.
pub struct Acts {
    /// Rows quantized (the input's); `Pairs` holds `padded` rows, the extra ones zero.
    pub rows: usize,
    padded: usize,
    /// Columns padded to whole blocks.
    pub kp: usize,
    form: Form,
    /// Signed codes [padded, kp] (zero past the input) in the form's layout.
    codes: Vec<i8>,
    /// The codes widened to i16 (`Natural { wide }`), else empty.
    wide: Vec<i16>,
    /// Scales [rows, nb] (`Natural`), or [padded, pairs, 8] (`Pairs`).
    d: Vec<f32>,
    /// d · Σ q per block [rows, nb] (`Natural { e }`), else empty.
    e: Vec<f32>,
    /// The sums' starts [padded, pairs, 8] (`Pairs`), else empty.
    init: Vec<i32>,
    /// `Pairs`: the signed codes [rows, kp] and scales [rows, nb] in plain order (the oracle's).
    plain: (Vec<i8>, Vec<f32>),
}

impl Acts {
    /// Quantizes x ([m, k] row-major) as `isa`'s kernel for `quant` weights reads it.
    pub fn quantize(isa: Isa, quant: Quant, x: &[f32], m: usize, k: usize) -> Acts {
        Acts::with_form(Form::of(isa, quant, m), x, m, k)
    }

    fn with_form(form: Form, x: &[f32], m: usize, k: usize) -> Acts {
        let kp = padded_cols(k);
        let nb = kp / BLOCK;
        let mut codes = vec![0i8; m * kp];
        let mut d = vec![0f32; m * nb];
        let mut sums = vec![0i32; m * nb];
        let (cp, dp, sp) = (Out(codes.as_mut_ptr()), Out(d.as_mut_ptr()), Out(sums.as_mut_ptr()));
        par_ranges(m, (16384 / kp.max(1)).max(1), |r0, r1| {
            for r in r0..r1 {
                // SAFETY: row r of each buffer ([kp] codes, [nb] scales and sums) lies inside it
                // and belongs to this task alone.
                let (c, s, q) = unsafe { (cp.slice(r * kp, kp), dp.slice(r * nb, nb), sp.slice(r * nb, nb)) };
                quantize_row(&x[r * k..(r + 1) * k], c, s, q);
            }
        });
        let mut a = Acts { rows: m, padded: m, kp, form, codes: Vec::new(), wide: Vec::new(), d: Vec::new(), e: Vec::new(), init: Vec::new(), plain: (Vec::new(), Vec::new()) };
        match form {
            Form::Natural { wide, e } => {
                if wide {
                    a.wide = codes.iter().map(|&c| c as i16).collect();
                }
                if e {
                    a.e = d.iter().zip(&sums).map(|(d, s)| d * *s as f32).collect();
                }
                a.codes = codes;
                a.d = d;
            }
            Form::Pairs { offset } => {
                a.interleave(&codes, &d, &sums, offset);
                a.plain = (codes, d);
            }
            Form::Rows8 => {
                a.by_eights(&codes, &d);
                a.plain = (codes, d);
            }
        }
        a
    }

    /// Fills the `Pairs` form from plain codes, scales and block sums.
    fn interleave(&mut self, codes: &[i8], d: &[f32], sums: &[i32], offset: i32) {
        let (kp, nb) = (self.kp, self.kp / BLOCK);
        let pairs = nb.div_ceil(2);
        self.padded = if self.rows >= MR { self.rows.div_ceil(MR) * MR } else { self.rows };
        self.codes = vec![0; self.padded * pairs * 64];
        self.d = vec![0.0; self.padded * pairs * 8];
        self.init = vec![0; self.padded * pairs * 8];
        for r in 0..self.rows {
            for b in 0..nb {
                let (p, half) = (b / 2, b % 2);
                let at = (r * pairs + p) * 64 + half * 16;
                let src = &codes[r * kp + b * BLOCK..r * kp + (b + 1) * BLOCK];
                self.codes[at..at + 16].copy_from_slice(&src[..16]);
                self.codes[at + 32..at + 48].copy_from_slice(&src[16..]);
                let lanes = (r * pairs + p) * 8 + half * 4;
                self.d[lanes..lanes + 4].fill(d[r * nb + b]);
                self.init[lanes] = -offset * sums[r * nb + b];
            }
        }
    }

    /// Fills the `Rows8` form from plain codes and scales.
    fn by_eights(&mut self, codes: &[i8], d: &[f32]) {
        let (kp, nb) = (self.kp, self.kp / BLOCK);
        self.padded = self.rows.div_ceil(ROWS8) * ROWS8;
        let groups = self.padded / ROWS8;
        let group_block = ROWS8 * BLOCK; // bytes of one group's block
        // padded rows: code 0 (+ 128), scale 0
        self.codes = vec![-128; groups * nb * group_block];
        self.d = vec![0.0; groups * nb * ROWS8];
        for r in 0..self.rows {
            let (g, lane) = (r / ROWS8, r % ROWS8);
            for b in 0..nb {
                let at = (g * nb + b) * group_block;
                let src = &codes[r * kp + b * BLOCK..r * kp + (b + 1) * BLOCK];
                for (t, word) in src.chunks_exact(4).enumerate() {
                    // q + 128 as a byte: the same bits as q with the top one flipped
                    let flipped = (u32::from_ne_bytes([word[0] as u8, word[1] as u8, word[2] as u8, word[3] as u8]) ^ 0x8080_8080).to_ne_bytes();
                    let dst = &mut self.codes[at + t * ROWS8 * 4 + lane * 4..][..4];
                    for (o, f) in dst.iter_mut().zip(flipped) {
                        *o = f as i8;
                    }
                }
                self.d[(g * nb + b) * ROWS8 + lane] = d[r * nb + b];
            }
        }
    }

    /// Row r's signed codes and scales in plain order.
    fn plain(&self) -> (&[i8], &[f32]) {
        match self.form {
            Form::Natural { .. } => (&self.codes, &self.d),
            Form::Pairs { .. } | Form::Rows8 => (&self.plain.0, &self.plain.1),
        }
    }

    pub fn code(&self, r: usize, c: usize) -> i32 {
        self.plain().0[r * self.kp + c] as i32
    }

    pub fn scale(&self, r: usize, b: usize) -> f32 {
        self.plain().1[r * self.kp / BLOCK + b]
    }
}

/// One row: codes, scales and block sums of the codes (whole blocks by AVX2 where it runs).
fn quantize_row(x: &[f32], codes: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::Avx2.runs_here() {
        // SAFETY: AVX2 detected.
        let done = unsafe { x86::quantize_blocks(x, codes, d, sums) };
        return quantize_scalar(x, codes, d, sums, done);
    }
    quantize_scalar(x, codes, d, sums, 0)
}

/// [`quantize_row`] from block `from` on, one element at a time (the SIMD version's twin).
fn quantize_scalar(x: &[f32], codes: &mut [i8], d: &mut [f32], sums: &mut [i32], from: usize) {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds (ties to even)
    for (b, (db, sb)) in d.iter_mut().zip(sums.iter_mut()).enumerate().skip(from) {
        let (c0, c1) = (b * BLOCK, ((b + 1) * BLOCK).min(x.len()));
        let src = &x[c0..c1];
        let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (o, &v) in codes[c0..c1].iter_mut().zip(src) {
            let q = ((v * inv).clamp(-127.0, 127.0) + ROUND) - ROUND;
            *o = q as i8;
            sum += q as i32;
        }
        *db = scale;
        *sb = sum;
    }
}

/// A packed q8 / q4 matrix seen as code rows and scale rows (no copy where they are stored row
/// by row; a `Groups8` matrix's rows are gathered by [`QRows::gather`]).
#[derive(Clone, Copy)]
pub struct QRows<'a> {
    pub quant: Quant,
    pub rows: usize,
    pub kp: usize,
    w: &'a Packed,
    codes: &'a [u8],
    scales: &'a [u8],
}

impl<'a> QRows<'a> {
    pub fn new(w: &'a Packed) -> QRows<'a> {
        assert!(w.quant.is_block(), "QRows takes q8 or q4 weights");
        let kp = padded_cols(w.cols);
        let at = w.scales_offset();
        let scale_len = 2 * w.rows * kp / BLOCK;
        QRows { quant: w.quant, rows: w.rows, kp, w, codes: &w.bytes[..at], scales: &w.bytes[at..at + scale_len] }
    }

    fn grouped(&self) -> bool {
        self.w.layout == Layout::Groups8
    }

    /// Row j of a `Groups8` matrix in the stored order: its codes into `codes` (len ≥ row bytes),
    /// its binary16 scales into `s16` (len ≥ 2·nb).
    fn gather(&self, j: usize, codes: &mut [u8], s16: &mut [u8]) {
        let (nb, bb, g, i) = (self.nb(), self.w.block_bytes(), j / 8, j % 8);
        let (src, sc) = (&self.codes[g * nb * 8 * bb..(g + 1) * nb * 8 * bb], &self.scales[g * nb * 16..(g + 1) * nb * 16]);
        for (b, (c, s)) in codes.chunks_exact_mut(bb).zip(s16.chunks_exact_mut(2)).take(nb).enumerate() {
            for (t, word) in c.chunks_exact_mut(4).enumerate() {
                word.copy_from_slice(&src[b * 8 * bb + t * 32 + i * 4..][..4]);
            }
            s.copy_from_slice(&sc[b * 16 + 2 * i..][..2]);
        }
    }

    /// Group g's codes (eight rows) of a `Groups8` matrix.
    fn group_codes(&self, g: usize) -> &'a [u8] {
        let gb = self.nb() * 8 * self.w.block_bytes();
        &self.codes[g * gb..(g + 1) * gb]
    }

    fn row_bytes(&self) -> usize {
        if self.quant == Quant::Q8 {
            self.kp
        } else {
            self.kp / 2
        }
    }

    fn nb(&self) -> usize {
        self.kp / BLOCK
    }

    /// Row j's codes (the stored order).
    fn row_codes(&self, j: usize) -> &'a [u8] {
        debug_assert!(!self.grouped());
        let rb = self.row_bytes();
        &self.codes[j * rb..(j + 1) * rb]
    }

    /// Row j's binary16 scales (the stored order).
    fn row_scales16(&self, j: usize) -> &'a [u8] {
        debug_assert!(!self.grouped());
        let nb = self.nb();
        &self.scales[2 * j * nb..2 * (j + 1) * nb]
    }

    /// Binary16 scales `s` of a row as f32 in `form`'s layout into `out` (len `form.scale_len(nb)`).
    fn widen_scales(s: &[u8], form: Form, out: &mut [f32]) {
        match form {
            Form::Natural { .. } | Form::Rows8 => super::gemm::widen_f16(s, out),
            Form::Pairs { .. } => {
                #[cfg(target_arch = "x86_64")]
                if super::Isa::Avx2.runs_here() {
                    // SAFETY: AVX2/F16C detected.
                    return unsafe { x86::expand_pairs(s, out) };
                }
                for (b, c) in s.chunks_exact(2).enumerate() {
                    out[(b / 2) * 8 + (b % 2) * 4..][..4].fill(f16::from_le_bytes([c[0], c[1]]).to_f32());
                }
                if (s.len() / 2) % 2 == 1 {
                    out[(s.len() / 4) * 8 + 4..][..4].fill(0.0);
                }
            }
        }
    }

    /// The signed weight code of row j, column c.
    pub fn code(&self, j: usize, c: usize) -> i32 {
        let (b, i) = (c / BLOCK, c % BLOCK);
        match self.quant {
            Quant::Q8 => self.w.bytes[self.w.code_at(j, b, i)] as i8 as i32,
            _ => {
                let byte = self.w.bytes[self.w.code_at(j, b, i % 16)];
                (if i < 16 { byte & 0x0f } else { byte >> 4 }) as i32 - 8
            }
        }
    }

    pub fn scale(&self, j: usize, b: usize) -> f32 {
        let at = self.w.scale_at(j, b);
        f16::from_le_bytes([self.w.bytes[at], self.w.bytes[at + 1]]).to_f32()
    }

    /// What unsigned codes add to the signed ones: 128 (q8) or 8 (q4).
    fn offset(&self) -> f32 {
        if self.quant == Quant::Q8 {
            128.0
        } else {
            8.0
        }
    }
}

/// The oracle: Σ_b d_w·d_x·(Σ q_w q_x) for weight row j and activation row r, in f64.
pub fn qdot_exact(w: &QRows, j: usize, a: &Acts, r: usize) -> f64 {
    (0..w.nb())
        .map(|b| {
            let s: i64 = (b * BLOCK..(b + 1) * BLOCK).map(|c| (w.code(j, c) * a.code(r, c)) as i64).sum();
            w.scale(j, b) as f64 * a.scale(r, b) as f64 * s as f64
        })
        .sum()
}

/// One tile's inputs: JR weight rows (clamped to the matrix), MR activation rows, the weight rows'
/// scales in the form's layout ([JR][scale_len]).
struct Tile<'a> {
    w: [&'a [u8]; JR],
    /// The rows' binary16 scales as stored (the VNNI decode kernel reads them).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    s16: [&'a [u8]; JR],
    /// The rows' scales in the form's layout (filled where a kernel of the call reads them).
    ws: &'a [f32],
    acts: &'a Acts,
    r: [usize; MR],
    nb: usize,
}

/// y[r, y_col + j] = Σ_k x[r, k] w[j, k] + b[j] for q8 / q4 weights w ([n, k]), activations
/// quantized to q8 per block; `isa` picks the kernel (it must run on this machine).
#[allow(clippy::too_many_arguments)]
pub fn qmatmul(isa: Isa, y: &mut [f32], ny: usize, y_col: usize, x: &[f32], m: usize, w: &Packed, b: Option<&[f32]>) {
    qmatmul_many(isa, y, ny, x, m, &[Part { w, y_col, bias: b }]);
}

/// One weight of [`qmatmul_many`]: its products go to columns `y_col ..` of y, plus `bias`.
pub struct Part<'a> {
    pub w: &'a Packed,
    pub y_col: usize,
    pub bias: Option<&'a [f32]>,
}

/// [`qmatmul`] for several weights of one format and width that read the same activations (a
/// layer's q/k/v projections, its FFN's w1 and w3): the activations are quantized once and every
/// weight's rows are split over the pool together, one parallel region instead of one each.
pub fn qmatmul_many(isa: Isa, y: &mut [f32], ny: usize, x: &[f32], m: usize, parts: &[Part]) {
    let Some(first) = parts.first() else { return };
    let (quant, k) = (first.w.quant, first.w.cols);
    for p in parts {
        let n = p.w.rows;
        assert!(p.w.quant == quant && p.w.cols == k, "qmatmul: weights of one call share format and width");
        assert!(x.len() >= m * k && (m == 0 || y.len() >= (m - 1) * ny + p.y_col + n) && p.bias.is_none_or(|b| b.len() >= n), "qmatmul: sizes");
    }
    assert!(isa.runs_here(), "qmatmul: {isa:?} does not run here");
    let total: usize = parts.iter().map(|p| p.w.rows).sum();
    if m == 0 || total == 0 {
        return;
    }
    let acts = Acts::quantize(isa, quant, x, m, k);
    let out = Out(y.as_mut_ptr());
    // decode: one range of rows per thread, each read as one stream (measured on the wide q4
    // model's decode: 1 task a thread ~10 % faster than 8, whose stream starts cost more than the
    // balance they buy); batches: about eight tasks a thread
    let step = if m == 1 { total.div_ceil(super::threads()).max(16).div_ceil(JR8) * JR8 } else { task_rows(total, JR8, 16) };
    par_ranges(total, step, |g0, g1| {
        let mut start = 0;
        for p in parts {
            let (a, b) = (g0.max(start), g1.min(start + p.w.rows));
            if a < b && acts.form == Form::Rows8 {
                weight_rows8(&acts, p, a - start, b - start, (out, ny));
            } else if a < b {
                weight_rows(isa, &acts, p, a - start, b - start, (out, ny));
            }
            start += p.w.rows;
        }
    });
}

/// Rows j0 .. j1 of one weight against every activation row, written into y.
fn weight_rows(isa: Isa, acts: &Acts, part: &Part, j0: usize, j1: usize, (out, ny): (Out, usize)) {
    let rows = QRows::new(part.w);
    let (nb, form, m) = (rows.nb(), acts.form, acts.rows);
    #[cfg(target_arch = "x86_64")]
    if m == 1 && isa == Isa::Avx512Vnni {
        return decode_rows(&rows, acts, part, (j0, j1), out);
    }
    let len = form.scale_len(nb);
    // the VNNI decode kernel reads the stored binary16 scales itself
    let need_ws = !matches!(form, Form::Pairs { .. }) || acts.padded >= MR;
    let mut ws = vec![0f32; if need_ws { JR * len } else { 0 }];
    // a `Groups8` matrix's rows, gathered into the stored order a tile at a time
    let (rb, grouped) = (rows.row_bytes(), rows.grouped());
    let (mut gc, mut gs) = if grouped { (vec![0u8; JR * rb], vec![0u8; JR * 2 * nb]) } else { (Vec::new(), Vec::new()) };
    // activation rows in blocks whose codes stay in the L2 cache while every weight tile of a task
    // passes over them (a whole image's rows would stream from memory once per weight tile)
    let m_block = ((M_BLOCK_BYTES / kp_bytes(acts)) / MR * MR).max(MR);
    for mb in (0..m).step_by(m_block) {
        let m_end = (mb + m_block).min(m);
        for jg in (j0..j1).step_by(JR) {
            let jr = (j1 - jg).min(JR);
            let wrow = |i: usize| jg + i.min(jr - 1);
            if grouped {
                for i in 0..JR {
                    rows.gather(wrow(i), &mut gc[i * rb..(i + 1) * rb], &mut gs[i * 2 * nb..(i + 1) * 2 * nb]);
                }
            }
            let w: [&[u8]; JR] = std::array::from_fn(|i| if grouped { &gc[i * rb..(i + 1) * rb] } else { rows.row_codes(wrow(i)) });
            let s16: [&[u8]; JR] = std::array::from_fn(|i| if grouped { &gs[i * 2 * nb..(i + 1) * 2 * nb] } else { rows.row_scales16(wrow(i)) });
            if need_ws {
                for (i, s) in s16.iter().enumerate() {
                    QRows::widen_scales(s, form, &mut ws[i * len..(i + 1) * len]);
                }
            }
            tile_rows(isa, &rows, acts, (w, s16, &ws), (jg, jr), (mb, m_end), part.bias, (out, ny, part.y_col));
        }
    }
}

/// Decode (one activation row in the `Pairs` form, VNNI) of rows j0 .. j1: a `Groups8` matrix
/// eight rows at a time, else each row straight through; no tiles.
#[cfg(target_arch = "x86_64")]
fn decode_rows(rows: &QRows, acts: &Acts, part: &Part, (j0, j1): (usize, usize), out: Out) {
    let mut y = vec![0f32; j1 - j0];
    // SAFETY: VNNI was detected (qmatmul asserted isa.runs_here()); one activation row in the
    // `Pairs` form, rows j0..j1 inside the weight.
    unsafe {
        match (rows.quant, rows.grouped()) {
            (Quant::Q4, true) => x86::groups8_range::<true>(rows, acts, (j0, j1), &mut y),
            (_, true) => x86::groups8_range::<false>(rows, acts, (j0, j1), &mut y),
            (Quant::Q4, false) => x86::rows_range::<true>(rows, acts, 0, (j0, j1), &mut y),
            _ => x86::rows_range::<false>(rows, acts, 0, (j0, j1), &mut y),
        }
    }
    for (i, v) in y.iter().enumerate() {
        // SAFETY: row 0, column y_col + j0 + i inside y (asserted by qmatmul); only this task
        // writes columns j0..j1.
        unsafe { out.set(part.y_col + j0 + i, v + part.bias.map_or(0.0, |b| b[j0 + i])) };
    }
}

/// Rows j0 .. j1 of one weight against every activation row in the `Rows8` form (x86 VNNI):
/// per tile of JR8 weight rows, their signed codes (q4 unpacked once), the starts of their block
/// sums (−128·Σ q_w: the activations' offset taken off in the integer sums) and their scales,
/// then every group of 8 activation rows of the cache block.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn weight_rows8(acts: &Acts, part: &Part, j0: usize, j1: usize, (out, ny): (Out, usize)) {
    #[cfg(target_arch = "x86_64")]
    {
        let rows = QRows::new(part.w);
        let (nb, kp, m) = (rows.nb(), rows.kp, acts.rows);
        let mut t = Tile8 { codes: vec![0i8; JR8 * kp], init: vec![0i32; JR8 * nb], ws: vec![0f32; JR8 * nb], gc: vec![0u8; rows.row_bytes()], gs: vec![0u8; 2 * nb] };
        let m_block = ((M_BLOCK_BYTES / kp.max(1)) / ROWS8 * ROWS8).max(ROWS8);
        for mb in (0..acts.padded).step_by(m_block) {
            let m_end = (mb + m_block).min(acts.padded);
            for jg in (j0..j1).step_by(JR8) {
                let jr = (j1 - jg).min(JR8);
                let group = t.fill(&rows, jg, jr);
                // the next group's codes, fetched while the first activation group computes
                let next = if group && jg + 2 * JR8 <= j1 { rows.group_codes(jg / 8 + 1) } else { &[] };
                for g0 in (mb..m_end).step_by(ROWS8) {
                    let ahead = if g0 == mb { next } else { &[] };
                    let mut o = [[0f32; ROWS8]; JR8];
                    // SAFETY: VNNI was detected (qmatmul asserted isa.runs_here()); the buffers hold
                    // JR8 rows of kp codes and nb starts/scales, the group g0/8 lies inside acts.
                    unsafe {
                        match group {
                            true => x86::tile_rows8::<true>(acts, g0 / ROWS8, &t.codes, &t.init, &t.ws, nb, ahead, &mut o),
                            false => x86::tile_rows8::<false>(acts, g0 / ROWS8, &t.codes, &t.init, &t.ws, nb, ahead, &mut o),
                        }
                    }
                    // row by row: each activation row's jr outputs are neighbours in y
                    let bias: [f32; JR8] = std::array::from_fn(|i| part.bias.map_or(0.0, |b| b[jg + i.min(jr - 1)]));
                    for r in 0..m.saturating_sub(g0).min(ROWS8) {
                        // SAFETY: row g0 + r < m, columns y_col + jg .. + jr inside y (asserted by
                        // qmatmul); only this task writes columns jg .. jg + jr.
                        let y = unsafe { out.slice((g0 + r) * ny + part.y_col + jg, jr) };
                        for (i, v) in y.iter_mut().enumerate() {
                            *v = o[i][r] + bias[i];
                        }
                    }
                }
            }
        }
    }
}

/// The weight side of a `Rows8` tile: JR8 rows' signed codes, block sums' starts and scales, and
/// room to gather one `Groups8` row into the stored order.
#[cfg(target_arch = "x86_64")]
struct Tile8 {
    codes: Vec<i8>,
    init: Vec<i32>,
    ws: Vec<f32>,
    gc: Vec<u8>,
    gs: Vec<u8>,
}

#[cfg(target_arch = "x86_64")]
impl Tile8 {
    /// Fills the tile for rows jg .. jg + jr (the last repeated up to JR8); true when they are a
    /// whole `Groups8` group, whose signed codes come straight from its vectors in the order
    /// `tile_rows8::<true>` reads, else row by row in the stored order.
    fn fill(&mut self, rows: &QRows, jg: usize, jr: usize) -> bool {
        let (nb, kp) = (rows.nb(), rows.kp);
        if rows.grouped() && jg.is_multiple_of(8) && jr == JR8 {
            let g = jg / 8;
            // SAFETY: AVX-512 VNNI was detected (qmatmul); group g lies inside the codes region;
            // the buffers hold JR8 · kp codes and JR8 · nb starts (asserted inside).
            unsafe { x86::signed_group(rows.quant == Quant::Q4, rows.group_codes(g).as_ptr(), nb, &mut self.codes, &mut self.init) };
            QRows::widen_scales(&rows.scales[g * nb * 16..(g + 1) * nb * 16], Form::Rows8, &mut self.ws);
            return true;
        }
        let q4 = rows.quant == Quant::Q4;
        for i in 0..JR8 {
            let j = jg + i.min(jr - 1);
            let (src, s16) = if rows.grouped() {
                rows.gather(j, &mut self.gc, &mut self.gs);
                (&self.gc[..], &self.gs[..])
            } else {
                (rows.row_codes(j), rows.row_scales16(j))
            };
            assert!(src.len() >= nb * if q4 { 16 } else { BLOCK }, "weight_rows8: row sizes");
            // SAFETY: AVX2 is part of VNNI (detected); the slices hold nb blocks (asserted).
            unsafe { x86::signed_row(q4, src, &mut self.codes[i * kp..(i + 1) * kp], &mut self.init[i * nb..(i + 1) * nb]) };
            QRows::widen_scales(s16, Form::Rows8, &mut self.ws[i * nb..(i + 1) * nb]);
        }
        false
    }
}

/// Activation rows past which a block of them is too large for the L2 cache.
const M_BLOCK_BYTES: usize = 256 << 10;

/// Bytes of one activation row's codes.
fn kp_bytes(a: &Acts) -> usize {
    a.kp.max(1) * if a.wide.is_empty() { 1 } else { 3 }
}

type TileWeights<'a, 'b> = ([&'a [u8]; JR], [&'a [u8]; JR], &'b [f32]);

/// The tiles of weight rows jg .. jg + jr against activation rows m0 .. m1, written into y.
#[allow(clippy::too_many_arguments)]
fn tile_rows(isa: Isa, rows: &QRows, acts: &Acts, (w, s16, ws): TileWeights, (jg, jr): (usize, usize), (m0, m1): (usize, usize), b: Option<&[f32]>, (out, ny, y_col): (Out, usize, usize)) {
    let (nb, form) = (rows.nb(), acts.form);
    let m = acts.rows;
    let mut r0 = m0;
    while r0 < m1 {
        let mr = if acts.padded - r0 >= MR { MR } else { 1 };
        let tile = Tile { w, s16, ws, acts, r: std::array::from_fn(|i| r0 + i.min(mr - 1)), nb };
        let mut o = [[0f32; MR]; JR];
        run_tile(isa, rows.quant, mr, &tile, &mut o);
        if form == (Form::Natural { wide: false, e: true }) {
            unoffset(&tile, rows.offset(), mr, &mut o);
        }
        for (i, oj) in o.iter().enumerate().take(jr) {
            let bias = b.map_or(0.0, |b| b[jg + i]);
            for (ri, v) in oj.iter().enumerate().take(mr.min(m - r0)) {
                // SAFETY: row r0 + ri < m and column y_col + jg + i < y_col + n are inside y
                // (asserted by qmatmul), and only this task writes column jg + i.
                unsafe { out.set((r0 + ri) * ny + y_col + jg + i, v + bias) };
            }
        }
        r0 += mr;
    }
}

/// Takes the unsigned codes' offset off in f32: o[j][r] -= offset · Σ_b d_w[j, b] · e[r, b].
fn unoffset(t: &Tile, offset: f32, mr: usize, o: &mut [[f32; MR]; JR]) {
    for (j, oj) in o.iter_mut().enumerate() {
        let ws = &t.ws[j * t.nb..(j + 1) * t.nb];
        for (ri, v) in oj.iter_mut().enumerate().take(mr) {
            let r = t.r[ri];
            *v -= offset * super::gemm::dot(ws, &t.acts.e[r * t.nb..(r + 1) * t.nb]);
        }
    }
}

/// Runs `isa`'s tile kernel (`mr` is MR or 1).
fn run_tile(isa: Isa, quant: Quant, mr: usize, t: &Tile, o: &mut [[f32; MR]; JR]) {
    let q4 = quant == Quant::Q4;
    macro_rules! both {
        ($($f:ident)::+) => {
            match (q4, mr) {
                (false, 1) => $($f)::+::<false, 1>(t, o),
                (false, _) => $($f)::+::<false, MR>(t, o),
                (true, 1) => $($f)::+::<true, 1>(t, o),
                (true, _) => $($f)::+::<true, MR>(t, o),
            }
        };
    }
    match isa {
        // SAFETY (x86): qmatmul asserted that the features of `isa` are present.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { both!(x86::tile_vnni) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { both!(x86::tile_avx2) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
        Isa::WasmRelaxed if q4 => match mr {
            1 => wasm::tile_relaxed_q4::<1>(t, o),
            _ => wasm::tile_relaxed_q4::<MR>(t, o),
        },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::WasmSimd | Isa::WasmRelaxed => both!(wasm::tile_simd),
        _ => both!(portable_tile),
    }
}

/// Block b of a weight row as 32 signed codes.
#[inline(always)]
fn signed_block(q4: bool, codes: &[u8], b: usize, w: &mut [i8; BLOCK]) {
    if q4 {
        let src = &codes[b * 16..b * 16 + 16];
        for i in 0..16 {
            w[i] = (src[i] & 0x0f) as i8 - 8;
            w[i + 16] = (src[i] >> 4) as i8 - 8;
        }
    } else {
        for (o, &c) in w.iter_mut().zip(&codes[b * BLOCK..(b + 1) * BLOCK]) {
            *o = c as i8;
        }
    }
}

fn portable_tile<const Q4: bool, const M: usize>(t: &Tile, o: &mut [[f32; MR]; JR]) {
    let kp = t.acts.kp;
    let mut w = [[0i8; BLOCK]; JR];
    for b in 0..t.nb {
        for (j, wj) in w.iter_mut().enumerate() {
            signed_block(Q4, t.w[j], b, wj);
        }
        for ri in 0..M {
            let r = t.r[ri];
            let x = &t.acts.codes[r * kp + b * BLOCK..r * kp + (b + 1) * BLOCK];
            let dx = t.acts.d[r * t.nb + b];
            for (j, wj) in w.iter().enumerate() {
                let s: i32 = wj.iter().zip(x).map(|(&a, &c)| a as i32 * c as i32).sum();
                o[j][ri] += t.ws[j * t.nb + b] * dx * s as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::Rng;

    /// Every kernel this machine runs, on both formats, at decode and batch sizes, odd shapes
    /// (partial blocks, an odd number of blocks, partial tiles, rows past a multiple of MR, rows
    /// in several cache blocks),
    /// against the exact oracle; a guard region around the output columns stays untouched.
    #[test]
    fn every_isa_matches_the_exact_products() {
        let mut rng = Rng::new(31);
        // rows in multiples of 8 (also in the `Groups8` order): 40, 24, 64, 16, 32 (decode, tiles, `Rows8`)
        let cases = [(1, 1, 32), (1, 13, 70), (3, 40, 45), (5, 17, 72), (9, 66, 200), (1, 130, 2048), (4, 7, 96), (13, 9, 33), (8, 12, 64), (301, 9, 2048), (20, 11, 70), (1, 5, 288), (1, 21, 600), (1, 24, 70), (1, 64, 2048), (1, 16, 600), (7, 32, 96), (20, 16, 70), (40, 24, 600)];
        for isa in Isa::available() {
            for quant in [Quant::Q8, Quant::Q4] {
                for (&(m, n, k), grouped) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
                    let x = rng.vec(m * k, 2.0);
                    let w = Packed::quantize(quant, &rng.vec(n * k, 0.5), n, k);
                    let w = if grouped { w.into_groups8() } else { w };
                    let b = rng.vec(n, 0.5);
                    let (ny, col) = (n + 5, 2);
                    let mut y = vec![7.5f32; m * ny];
                    qmatmul(isa, &mut y, ny, col, &x, m, &w, Some(&b));
                    let acts = Acts::quantize(isa, quant, &x, m, k);
                    let rows = QRows::new(&w);
                    for r in 0..m {
                        for c in 0..ny {
                            let got = y[r * ny + c];
                            if c < col || c >= col + n {
                                assert_eq!(got, 7.5, "{isa:?} {quant} {m}x{n}x{k}: guard [{r},{c}] written");
                                continue;
                            }
                            let j = c - col;
                            let want = qdot_exact(&rows, j, &acts, r) + b[j] as f64;
                            // f32 sums of per-block products (and, for unsigned codes, the offset
                            // taken off in f32): relative to the sum of magnitudes
                            let mag: f64 = (0..rows.nb()).map(|bb| (rows.scale(j, bb) * acts.scale(r, bb)).abs() as f64 * 127.0 * 128.0 * 32.0).sum();
                            assert!((got as f64 - want).abs() <= 1e-6 * mag + 1e-5, "{isa:?} {quant} {m}x{n}x{k} [{r},{j}]: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }

    /// Several weights in one call give what one call each gives, bit for bit, into their columns
    /// (also with `Groups8` weights whose groups a task boundary cuts: 13 stored rows first).
    #[test]
    fn many_weights_in_one_call_equal_one_call_each() {
        let mut rng = Rng::new(33);
        for isa in Isa::available() {
            for (quant, sizes) in [(Quant::Q8, [13, 4, 30]), (Quant::Q4, [13, 4, 30]), (Quant::Q4, [13, 40, 32]), (Quant::Q8, [13, 40, 32])] {
                for m in [1, 6] {
                    let k = 96;
                    let ws: Vec<Packed> = sizes.iter().map(|&n| Packed::quantize(quant, &rng.vec(n * k, 0.5), n, k).into_groups8()).collect();
                    let bias = rng.vec(sizes[2], 0.5);
                    let x = rng.vec(m * k, 1.0);
                    let ny = sizes.iter().sum::<usize>() + 3;
                    let (mut one, mut many) = (vec![-2.0f32; m * ny], vec![-2.0f32; m * ny]);
                    let cols = [1, 1 + sizes[0], 1 + sizes[0] + sizes[1]];
                    for (i, w) in ws.iter().enumerate() {
                        qmatmul(isa, &mut one, ny, cols[i], &x, m, w, (i == 2).then_some(&bias[..]));
                    }
                    let parts: Vec<Part> = ws.iter().enumerate().map(|(i, w)| Part { w, y_col: cols[i], bias: (i == 2).then_some(&bias[..]) }).collect();
                    qmatmul_many(isa, &mut many, ny, &x, m, &parts);
                    assert_eq!(one, many, "{isa:?} {quant} m={m}");
                }
            }
        }
    }

    /// The SIMD quantization gives the scalar one's codes, scales and sums bit for bit: random
    /// rows, a zero block, halves that round to even, a partial last block.
    #[test]
    fn fast_quantization_equals_the_scalar_one() {
        let mut rng = Rng::new(34);
        for k in [32, 70, 256, 1000] {
            let mut x = rng.vec(k, 3.0);
            x[..32].fill(0.0);
            if k >= 96 {
                // block 2: |max| 127 (scale 1), so each x.5 is a tie
                for (i, v) in x[64..96].iter_mut().enumerate() {
                    *v = i as f32 - 16.5;
                }
                x[64] = -127.0;
            }
            let nb = padded_cols(k) / BLOCK;
            let (mut c0, mut d0, mut s0) = (vec![0i8; nb * BLOCK], vec![0f32; nb], vec![0i32; nb]);
            let (mut c1, mut d1, mut s1) = (c0.clone(), d0.clone(), s0.clone());
            quantize_row(&x, &mut c0, &mut d0, &mut s0);
            quantize_scalar(&x, &mut c1, &mut d1, &mut s1, 0);
            assert_eq!((c0, d0, s0), (c1, d1, s1), "k = {k}");
        }
    }

    /// The 8-bit activations stay close to the f32 product the scalar twin computes.
    #[test]
    fn close_to_the_f32_twin() {
        let mut rng = Rng::new(32);
        let (m, n, k) = (3, 50, 256);
        let x = rng.vec(m * k, 1.0);
        for quant in [Quant::Q8, Quant::Q4] {
            let w = Packed::quantize(quant, &rng.vec(n * k, 0.5), n, k);
            let mut twin = vec![0f32; m * n];
            crate::kernels::qlinear::qlinear_cpu(&mut twin, n, 0, &x, &w, None, m);
            let mut y = vec![0f32; m * n];
            qmatmul(super::super::isa(), &mut y, n, 0, &x, m, &w, None);
            let scale = twin.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (a, b) in y.iter().zip(&twin) {
                // activations rounded to 1/254 of their block's range: ~0.5 % of the largest output
                assert!((a - b).abs() <= 0.01 * scale, "{quant}: {a} vs {b} (max {scale})");
            }
        }
    }
}
