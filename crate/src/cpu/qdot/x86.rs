//! x86-64 tile kernels: AVX-512 VNNI on the `Pairs` activation form, AVX2 on the `Natural` one.

use super::{Acts, QRows, Tile, BLOCK, JR, JR8, MR, ROWS8};
use std::arch::x86_64::*;

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Pair p of a weight row (blocks 2p and 2p + 1; `two` false: block 2p alone, the other zero) as
/// unsigned codes in the `Pairs` order: A = [w₂ₚ[0..16], w₂ₚ₊₁[0..16]], B = [w₂ₚ[16..32],
/// w₂ₚ₊₁[16..32]]; q8 flipped to q + 128, q4's nibbles as stored (a q4 row's 16-byte blocks are
/// already in this order: low nibbles are elements 0..16, high ones 16..32).
#[inline(always)]
unsafe fn weight_pair<const Q4: bool>(codes: *const u8, p: usize, two: bool) -> (__m256i, __m256i) {
    if Q4 {
        let raw = if two {
            _mm256_loadu_si256(codes.add(p * 32) as *const __m256i)
        } else {
            _mm256_inserti128_si256::<0>(_mm256_setzero_si256(), _mm_loadu_si128(codes.add(p * 32) as *const __m128i))
        };
        let m = _mm256_set1_epi8(0x0f);
        (_mm256_and_si256(raw, m), _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m))
    } else {
        let w0 = _mm256_loadu_si256(codes.add(p * 64) as *const __m256i);
        let w1 = if two { _mm256_loadu_si256(codes.add(p * 64 + 32) as *const __m256i) } else { _mm256_setzero_si256() };
        let flip = _mm256_set1_epi8(-128);
        (_mm256_xor_si256(_mm256_permute2x128_si256::<0x20>(w0, w1), flip), _mm256_xor_si256(_mm256_permute2x128_si256::<0x31>(w0, w1), flip))
    }
}

/// VNNI over the `Pairs` form: per pair of blocks and (weight row, activation row), two
/// `vpdpbusd` starting from the offset correction, one conversion, one scale product, one FMA.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub unsafe fn tile_vnni<const Q4: bool, const M: usize>(t: &Tile, o: &mut [[f32; MR]; JR]) {
    if M == 1 {
        return rows_vnni::<Q4>(t, o);
    }
    let a = t.acts;
    let (pairs, full) = (t.nb.div_ceil(2), t.nb / 2);
    let len = pairs * 8;
    let xp: [*const i8; M] = std::array::from_fn(|i| a.codes.as_ptr().add(t.r[i] * pairs * 64));
    let dp: [*const f32; M] = std::array::from_fn(|i| a.d.as_ptr().add(t.r[i] * len));
    let ip: [*const i32; M] = std::array::from_fn(|i| a.init.as_ptr().add(t.r[i] * len));
    let sp = t.ws.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); M]; JR];
    for p in 0..pairs {
        let w: [(__m256i, __m256i); JR] = std::array::from_fn(|j| weight_pair::<Q4>(t.w[j].as_ptr(), p, p < full));
        for i in 0..M {
            let xa = _mm256_loadu_si256(xp[i].add(p * 64) as *const __m256i);
            let xb = _mm256_loadu_si256(xp[i].add(p * 64 + 32) as *const __m256i);
            let dx = _mm256_loadu_ps(dp[i].add(p * 8));
            let init = _mm256_loadu_si256(ip[i].add(p * 8) as *const __m256i);
            for j in 0..JR {
                let s = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(init, w[j].0, xa), w[j].1, xb);
                let scale = _mm256_mul_ps(_mm256_loadu_ps(sp.add(j * len + p * 8)), dx);
                acc[j][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[j][i]);
            }
        }
    }
    for j in 0..JR {
        for i in 0..M {
            o[j][i] = hsum(acc[j][i]);
        }
    }
}

/// Decode (one activation row) for a tile's rows: see [`row_dot`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
unsafe fn rows_vnni<const Q4: bool>(t: &Tile, o: &mut [[f32; MR]; JR]) {
    for (j, oj) in o.iter_mut().enumerate() {
        oj[0] = row_dot::<Q4>(t.acts, t.r[0], t.nb, t.w[j].as_ptr(), t.s16[j].as_ptr());
    }
}

/// Decode: y[j − j0] = weight row j · activation row r for j in j0..j1, the rows one after
/// another with no per-tile set-up (the `Pairs` form).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub unsafe fn rows_range<const Q4: bool>(rows: &QRows, a: &Acts, r: usize, (j0, j1): (usize, usize), y: &mut [f32]) {
    let nb = rows.nb();
    for (j, yj) in (j0..j1).zip(y.iter_mut()) {
        *yj = row_dot::<Q4>(a, r, nb, rows.row_codes(j).as_ptr(), rows.row_scales16(j).as_ptr());
    }
}

/// Decode over a `Groups8` matrix: y[j − j0] = weight row j · activation row 0 for j in j0..j1,
/// eight rows (a group) at a time, the group's blocks read as one stream: per block eight (q8) or
/// four (q4) 32-byte loads, each word of 4 codes a row against 4 activation bytes broadcast
/// (`vpdpbusd`, lanes = rows; q8 made unsigned, q4's low and high nibbles the block's first and
/// second halves), into two sums started at −o·Σ q_x; one conversion, the rows' eight scales by one
/// `vcvtph2ps` times the block's activation scale, one FMA.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub unsafe fn groups8_range<const Q4: bool>(rows: &QRows, a: &Acts, (j0, j1): (usize, usize), y: &mut [f32]) {
    let (nb, gb) = (rows.nb(), if Q4 { 128 } else { 256 });
    debug_assert!(rows.codes.len() >= rows.rows / 8 * nb * gb && a.init.len() >= nb.div_ceil(2) * 8);
    let (nibble, flip) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(-128));
    for g in j0 / 8..j1.div_ceil(8) {
        let (mut wp, mut sp) = (rows.codes.as_ptr().add(g * nb * gb), rows.scales.as_ptr().add(g * nb * 16));
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            for line in (0..gb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(AHEAD + line) as *const i8);
            }
            // block b in the `Pairs` form: words 0..4 (elements 0..16) at `x`, 4..8 at `x` + 8 words
            let at = (b / 2) * 8 + (b % 2) * 4;
            let x = a.codes.as_ptr().add((b / 2) * 64 + (b % 2) * 16) as *const i32;
            let word = |t: usize| _mm256_set1_epi32(x.add(if t < 4 { t } else { t + 4 }).read_unaligned());
            let (mut lo, mut hi) = (_mm256_set1_epi32(*a.init.get_unchecked(at)), _mm256_setzero_si256());
            for t in 0..4 {
                let v = _mm256_loadu_si256(wp.add(32 * t) as *const __m256i);
                let (first, second) = if Q4 {
                    (_mm256_and_si256(v, nibble), _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble))
                } else {
                    (_mm256_xor_si256(v, flip), _mm256_xor_si256(_mm256_loadu_si256(wp.add(32 * (t + 4)) as *const __m256i), flip))
                };
                lo = _mm256_dpbusd_epi32(lo, first, word(t));
                hi = _mm256_dpbusd_epi32(hi, second, word(t + 4));
            }
            let scale = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(sp as *const __m128i)), _mm256_set1_ps(*a.d.get_unchecked(at)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), scale, acc);
            (wp, sp) = (wp.add(gb), sp.add(16));
        }
        let mut o = [0f32; 8];
        _mm256_storeu_ps(o.as_mut_ptr(), acc);
        for (j, v) in (g * 8..).zip(o) {
            if (j0..j1).contains(&j) {
                y[j - j0] = v;
            }
        }
    }
}

/// One weight row (codes at `wp`, binary16 scales at `sp`, `nb` blocks) · activation row r of the
/// `Pairs` form: the row read as one sequential stream (interleaved short rows starve the
/// hardware prefetcher), prefetching ahead; four pairs of blocks per step, their eight scales
/// widened by one instruction, into two sums kept in registers; the last pairs one by one.
#[inline(always)]
unsafe fn row_dot<const Q4: bool>(a: &Acts, r: usize, nb: usize, wp: *const u8, sp: *const u8) -> f32 {
    let (pairs, full) = (nb.div_ceil(2), nb / 2);
    let len = pairs * 8;
    let at = PairAt { w: wp, x: a.codes.as_ptr().add(r * pairs * 64), d: a.d.as_ptr().add(r * len), init: a.init.as_ptr().add(r * len) };
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut p = 0;
    while p + 4 <= full {
        let s8 = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(4 * p) as *const __m128i));
        a0 = at.dot::<Q4>(p, true, _mm256_permutevar8x32_ps(s8, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1)), a0);
        a1 = at.dot::<Q4>(p + 1, true, _mm256_permutevar8x32_ps(s8, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)), a1);
        a0 = at.dot::<Q4>(p + 2, true, _mm256_permutevar8x32_ps(s8, _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5)), a0);
        a1 = at.dot::<Q4>(p + 3, true, _mm256_permutevar8x32_ps(s8, _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)), a1);
        p += 4;
    }
    while p < pairs {
        // the pair's two scales (one at the end of an odd row: the other lane's activation
        // scale is zero)
        let two = p < full;
        let h = if two { (sp.add(4 * p) as *const i32).read_unaligned() } else { (sp.add(4 * p) as *const u16).read_unaligned() as i32 };
        let ws = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(h))), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
        a0 = at.dot::<Q4>(p, two, ws, a0);
        p += 1;
    }
    hsum(_mm256_add_ps(a0, a1))
}

/// Where `rows_vnni` reads one weight row and the activation row.
#[derive(Clone, Copy)]
struct PairAt {
    w: *const u8,
    x: *const i8,
    d: *const f32,
    init: *const i32,
}

/// Bytes ahead of the weight row being read that `rows_vnni` prefetches: about four DRAM
/// latencies at one core's share of the bandwidth (measured: 4 KiB over 1 KiB gave ~5 % on decode).
const AHEAD: usize = 4096;

impl PairAt {
    /// Pair p of the weight row (`two` false: its first block alone) against the activations'
    /// pair p, the weight scales `ws` in the `Pairs` lanes, into `acc`.
    #[inline(always)]
    unsafe fn dot<const Q4: bool>(self, p: usize, two: bool, ws: __m256, acc: __m256) -> __m256 {
        let pair_bytes = if Q4 { 32 } else { 64 };
        // one prefetch per 64-byte line
        if !Q4 || p % 2 == 0 {
            _mm_prefetch::<_MM_HINT_T0>(self.w.wrapping_add(p * pair_bytes + AHEAD) as *const i8);
        }
        let (wa, wb) = weight_pair::<Q4>(self.w, p, two);
        let xa = _mm256_loadu_si256(self.x.add(p * 64) as *const __m256i);
        let xb = _mm256_loadu_si256(self.x.add(p * 64 + 32) as *const __m256i);
        let i0 = _mm256_loadu_si256(self.init.add(p * 8) as *const __m256i);
        let s = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(i0, wa, xa), wb, xb);
        let scale = _mm256_mul_ps(ws, _mm256_loadu_ps(self.d.add(p * 8)));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc)
    }
}

/// Binary16 scales of one row → the `Pairs` layout [s₂ₚ ×4, s₂ₚ₊₁ ×4] (zero past the last block).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn expand_pairs(s16: &[u8], out: &mut [f32]) {
    let nb = s16.len() / 2;
    let mut b = 0;
    let lo = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let step = _mm256_set1_epi32(2);
    while b + 8 <= nb {
        let v = _mm256_cvtph_ps(_mm_loadu_si128(s16.as_ptr().add(2 * b) as *const __m128i));
        let mut idx = lo;
        for q in 0..4 {
            _mm256_storeu_ps(out.as_mut_ptr().add((b / 2 + q) * 8), _mm256_permutevar8x32_ps(v, idx));
            idx = _mm256_add_epi32(idx, step);
        }
        b += 8;
    }
    for bb in b..nb {
        let v = half::f16::from_le_bytes([s16[2 * bb], s16[2 * bb + 1]]).to_f32();
        out[(bb / 2) * 8 + (bb % 2) * 4..][..4].fill(v);
    }
    if nb % 2 == 1 {
        out[(nb / 2) * 8 + 4..][..4].fill(0.0);
    }
}

/// Block b of a weight row's codes: q8 as stored (signed), q4 as its 32 nibbles (unsigned).
#[inline(always)]
unsafe fn block<const Q4: bool>(codes: *const u8, b: usize) -> __m256i {
    if Q4 {
        let raw = _mm_loadu_si128(codes.add(b * 16) as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(raw, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), m);
        _mm256_set_m128i(hi, lo)
    } else {
        _mm256_loadu_si256(codes.add(b * BLOCK) as *const __m256i)
    }
}

/// AVX2 over the `Natural` form: q8 by the sign trick (|w| times x with w's sign,
/// `vpmaddubsw`), q4's unsigned nibbles times x directly (offset taken off by the caller); pairs
/// summed to i32 (`vpmaddwd`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile_avx2<const Q4: bool, const M: usize>(t: &Tile, o: &mut [[f32; MR]; JR]) {
    let kp = t.acts.kp;
    let xp: [*const i8; M] = std::array::from_fn(|i| t.acts.codes.as_ptr().add(t.r[i] * kp));
    let dp: [*const f32; M] = std::array::from_fn(|i| t.acts.d.as_ptr().add(t.r[i] * t.nb));
    let wp: [*const u8; JR] = std::array::from_fn(|j| t.w[j].as_ptr());
    let sp = t.ws.as_ptr();
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); M]; JR];
    for b in 0..t.nb {
        let x: [__m256i; M] = std::array::from_fn(|i| _mm256_loadu_si256(xp[i].add(b * BLOCK) as *const __m256i));
        let dx: [__m256; M] = std::array::from_fn(|i| _mm256_broadcast_ss(&*dp[i].add(b)));
        for j in 0..JR {
            if M == 1 {
                _mm_prefetch::<_MM_HINT_T0>(wp[j].add(b * if Q4 { 16 } else { BLOCK } + 512) as *const i8);
            }
            let w = block::<Q4>(wp[j], b);
            let aw = if Q4 { w } else { _mm256_sign_epi8(w, w) };
            let dw = _mm256_broadcast_ss(&*sp.add(j * t.nb + b));
            for i in 0..M {
                let xs = if Q4 { x[i] } else { _mm256_sign_epi8(x[i], w) };
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones);
                acc[j][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx[i]), acc[j][i]);
            }
        }
    }
    for j in 0..JR {
        for i in 0..M {
            o[j][i] = hsum(acc[j][i]);
        }
    }
}

/// VNNI over the `Rows8` form: one group of 16 activation rows (the lanes of a 512-bit register)
/// against JR8 weight rows. Per block and 4-byte step t, the activation vector t is multiplied by 4
/// bytes of each weight row broadcast (`vpdpbusd`, the broadcast folded into its memory operand),
/// every weight row's sum started at −128·Σ q_w; then per weight row one conversion, one scale
/// product (its scale times the 16 rows' scales) and one FMA for all 16 rows.
///
/// `ahead`: the next weight group's codes, fetched into the cache a block's share per block while
/// this one computes (they would otherwise come from memory when the next tile starts, the
/// hardware prefetcher idle through the long compute).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile_rows8<const GROUP: bool>(a: &Acts, g: usize, codes: &[i8], init: &[i32], ws: &[f32], nb: usize, ahead: &[u8], o: &mut [[f32; ROWS8]; JR8]) {
    let kp = nb * BLOCK;
    debug_assert!(codes.len() >= JR8 * kp && init.len() >= JR8 * nb && ws.len() >= JR8 * nb);
    let ahead_block = ahead.len() / nb.max(1);
    let (xp, dp) = (a.codes.as_ptr().add(g * nb * ROWS8 * BLOCK), a.d.as_ptr().add(g * nb * ROWS8));
    let (cp, ip, sp) = (codes.as_ptr(), init.as_ptr(), ws.as_ptr());
    let mut acc = [_mm512_setzero_ps(); JR8];
    for b in 0..nb {
        for line in (0..ahead_block).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(b * ahead_block + line) as *const i8);
        }
        // row j's block b: at j·nb + b, or (a group's, [`signed_group`]) at b·8 + j
        let at = |j: usize| if GROUP { b * JR8 + j } else { j * nb + b };
        let mut sums: [__m512i; JR8] = std::array::from_fn(|j| _mm512_set1_epi32(*ip.add(at(j))));
        for t in 0..8 {
            let x = _mm512_loadu_si512(xp.add((b * 8 + t) * ROWS8 * 4) as *const __m512i);
            for (j, s) in sums.iter_mut().enumerate() {
                let word = if GROUP { (b * 8 + t) * JR8 * 4 + j * 4 } else { j * kp + b * BLOCK + t * 4 };
                let w = (cp.add(word) as *const i32).read_unaligned();
                *s = _mm512_dpbusd_epi32(*s, x, _mm512_set1_epi32(w));
            }
        }
        let dx = _mm512_loadu_ps(dp.add(b * ROWS8));
        for (j, acc) in acc.iter_mut().enumerate() {
            let scale = _mm512_mul_ps(_mm512_set1_ps(*sp.add(at(j))), dx);
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[j]), scale, *acc);
        }
    }
    for (oj, acc) in o.iter_mut().zip(&acc) {
        _mm512_storeu_ps(oj.as_mut_ptr(), *acc);
    }
}

/// A `Groups8` group (its codes at `src`, nb blocks) as signed bytes in the order
/// `tile_rows8::<true>` reads: per block, eight 4-byte words a row (lanes = the group's rows),
/// word t holding elements 4t..4t+4 — q8's vectors as they are, q4's low nibbles of its four
/// vectors then their high ones (elements 16 + 4t ..), less 8; and −128·Σ q per (block, row) into
/// `init` ([block][row]; sums of the unsigned codes by `vpdpbusd` against ones).
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512vnni")]
pub unsafe fn signed_group(q4: bool, src: *const u8, nb: usize, codes: &mut [i8], init: &mut [i32]) {
    assert!(codes.len() >= nb * 256 && init.len() >= nb * 8, "signed_group: buffer sizes");
    let (nibble, eight, flip, ones) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(8), _mm256_set1_epi8(-128), _mm256_set1_epi8(1));
    let (out, offset) = (codes.as_mut_ptr(), if q4 { 8 } else { 128 });
    for b in 0..nb {
        // four independent sums (one chain of eight `vpdpbusd` waited on each one's latency)
        let mut sums = [_mm256_setzero_si256(); 4];
        for (t, sum) in sums.iter_mut().enumerate() {
            // words t and t + 4 of the block, as unsigned codes (q + offset)
            let (first, second) = if q4 {
                let v = _mm256_loadu_si256(src.add(b * 128 + t * 32) as *const __m256i);
                (_mm256_and_si256(v, nibble), _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble))
            } else {
                let at = |t: usize| _mm256_xor_si256(_mm256_loadu_si256(src.add(b * 256 + t * 32) as *const __m256i), flip);
                (at(t), at(t + 4))
            };
            *sum = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(*sum, first, ones), second, ones);
            let signed = |u: __m256i| if q4 { _mm256_sub_epi8(u, eight) } else { _mm256_xor_si256(u, flip) };
            _mm256_storeu_si256(out.add(b * 256 + t * 32) as *mut __m256i, signed(first));
            _mm256_storeu_si256(out.add(b * 256 + (t + 4) * 32) as *mut __m256i, signed(second));
        }
        let sum = _mm256_add_epi32(_mm256_add_epi32(sums[0], sums[1]), _mm256_add_epi32(sums[2], sums[3]));
        let q = _mm256_sub_epi32(sum, _mm256_set1_epi32(offset * BLOCK as i32));
        _mm256_storeu_si256(init.as_mut_ptr().add(b * 8) as *mut __m256i, _mm256_mullo_epi32(q, _mm256_set1_epi32(-128)));
    }
}

/// A weight row's blocks as signed bytes (q4's nibbles − 8) into `codes`, and −128·Σ q per block
/// into `init` (sums by `vpsadbw` of the codes made unsigned).
#[target_feature(enable = "avx2")]
pub unsafe fn signed_row(q4: bool, src: &[u8], codes: &mut [i8], init: &mut [i32]) {
    let (flip, eight, zero) = (_mm256_set1_epi8(-128), _mm256_set1_epi8(8), _mm256_setzero_si256());
    for (b, s) in init.iter_mut().enumerate() {
        // the block as unsigned codes (q + 128, or the nibbles q + 8) and the offset they carry
        let (u, offset) = if q4 {
            let raw = _mm_loadu_si128(src.as_ptr().add(b * 16) as *const __m128i);
            let m = _mm_set1_epi8(0x0f);
            (_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(raw), m), _mm_and_si128(raw, m)), 8)
        } else {
            (_mm256_xor_si256(_mm256_loadu_si256(src.as_ptr().add(b * BLOCK) as *const __m256i), flip), 128)
        };
        let signed = if q4 { _mm256_sub_epi8(u, eight) } else { _mm256_xor_si256(u, flip) };
        _mm256_storeu_si256(codes.as_mut_ptr().add(b * BLOCK) as *mut __m256i, signed);
        let sad = _mm256_sad_epu8(u, zero); // four u64 partial sums
        let t = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256::<1>(sad));
        let total = _mm_cvtsi128_si64(_mm_add_epi64(t, _mm_unpackhi_epi64(t, t))) as i32;
        *s = -128 * (total - offset * BLOCK as i32);
    }
}

/// [`super::quantize_row`] over the row's whole blocks (the same values: scale and inverse computed
/// alike in f32, `vcvtps2dq` rounding to nearest even as the scalar's 1.5·2²³ trick does); returns
/// how many blocks it did (a partial last block is the caller's).
#[target_feature(enable = "avx2")]
pub unsafe fn quantize_blocks(x: &[f32], codes: &mut [i8], d: &mut [f32], sums: &mut [i32]) -> usize {
    let whole = (x.len() / BLOCK).min(d.len()).min(sums.len()).min(codes.len() / BLOCK);
    let (abs, lim) = (_mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)), _mm256_set1_ps(127.0));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for b in 0..whole {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(b * BLOCK + i * 8)));
        // max(|v|, m): a NaN element is passed over, as f32::max does
        let m = v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(_mm256_and_ps(v, abs), m));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
        let scale = amax / 127.0;
        let inv = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let q: [__m256i; 4] = std::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], inv), _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim)));
        // i32 → i8: the packs interleave 128-bit lanes; one permutation puts the words back in order
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(codes.as_mut_ptr().add(b * BLOCK) as *mut __m256i, _mm256_permutevar8x32_epi32(packed, order));
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        sums[b] = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
        d[b] = scale;
    }
    whole
}
