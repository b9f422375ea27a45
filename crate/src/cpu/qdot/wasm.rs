//! wasm tile kernels over the `Natural` activation form: SIMD128 with activations widened to i16,
//! and relaxed SIMD for q4 weights.

use super::{Tile, BLOCK, JR, MR};
use std::arch::wasm32::*;

#[inline(always)]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

/// Block b of a weight row as signed codes widened to four i16x8.
#[inline(always)]
unsafe fn block_i16<const Q4: bool>(codes: *const u8, b: usize) -> [v128; 4] {
    let (a, c) = if Q4 {
        let raw = v128_load(codes.add(b * 16) as *const v128);
        let eight = i8x16_splat(8);
        (i8x16_sub(v128_and(raw, i8x16_splat(0x0f)), eight), i8x16_sub(u8x16_shr(raw, 4), eight))
    } else {
        (v128_load(codes.add(b * BLOCK) as *const v128), v128_load(codes.add(b * BLOCK + 16) as *const v128))
    };
    [i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a), i16x8_extend_low_i8x16(c), i16x8_extend_high_i8x16(c)]
}

/// SIMD128: signed codes widened to i16, `i32x4.dot_i16x8_s` against the widened activations.
pub fn tile_simd<const Q4: bool, const M: usize>(t: &Tile, o: &mut [[f32; MR]; JR]) {
    let kp = t.acts.kp;
    // SAFETY: every pointer stays inside its slice: activation rows of kp (= nb · 32) codes and nb
    // scales, weight rows of nb blocks (the Tile's invariants, set up by qmatmul).
    unsafe {
        let xp: [*const i16; M] = std::array::from_fn(|i| t.acts.wide.as_ptr().add(t.r[i] * kp));
        let dp: [*const f32; M] = std::array::from_fn(|i| t.acts.d.as_ptr().add(t.r[i] * t.nb));
        let mut acc = [[f32x4_splat(0.0); M]; JR];
        for b in 0..t.nb {
            for j in 0..JR {
                let w = block_i16::<Q4>(t.w[j].as_ptr(), b);
                let dw = *t.ws.get_unchecked(j * t.nb + b);
                for i in 0..M {
                    let x = xp[i].add(b * BLOCK);
                    let mut s = i32x4_dot_i16x8(w[0], v128_load(x as *const v128));
                    s = i32x4_add(s, i32x4_dot_i16x8(w[1], v128_load(x.add(8) as *const v128)));
                    s = i32x4_add(s, i32x4_dot_i16x8(w[2], v128_load(x.add(16) as *const v128)));
                    s = i32x4_add(s, i32x4_dot_i16x8(w[3], v128_load(x.add(24) as *const v128)));
                    let scale = f32x4_splat(dw * *dp[i].add(b));
                    acc[j][i] = f32x4_add(acc[j][i], f32x4_mul(f32x4_convert_i32x4(s), scale));
                }
            }
        }
        for j in 0..JR {
            for i in 0..M {
                o[j][i] = hsum(acc[j][i]);
            }
        }
    }
}

/// Relaxed SIMD, q4: the stored nibbles (unsigned, 7-bit) times the i8 activations; the caller
/// takes the offset off.
#[cfg(target_feature = "relaxed-simd")]
pub fn tile_relaxed_q4<const M: usize>(t: &Tile, o: &mut [[f32; MR]; JR]) {
    let kp = t.acts.kp;
    // SAFETY: as in tile_simd.
    unsafe {
        let xp: [*const i8; M] = std::array::from_fn(|i| t.acts.codes.as_ptr().add(t.r[i] * kp));
        let dp: [*const f32; M] = std::array::from_fn(|i| t.acts.d.as_ptr().add(t.r[i] * t.nb));
        let mut acc = [[f32x4_splat(0.0); M]; JR];
        let low = i8x16_splat(0x0f);
        for b in 0..t.nb {
            for j in 0..JR {
                let raw = v128_load(t.w[j].as_ptr().add(b * 16) as *const v128);
                let (lo, hi) = (v128_and(raw, low), u8x16_shr(raw, 4));
                let dw = *t.ws.get_unchecked(j * t.nb + b);
                for i in 0..M {
                    let x = xp[i].add(b * BLOCK);
                    let s = i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(x as *const v128), lo, i32x4_splat(0));
                    let s = i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(x.add(16) as *const v128), hi, s);
                    let scale = f32x4_splat(dw * *dp[i].add(b));
                    acc[j][i] = f32x4_relaxed_madd(f32x4_convert_i32x4(s), scale, acc[j][i]);
                }
            }
        }
        for j in 0..JR {
            for i in 0..M {
                o[j][i] = hsum(acc[j][i]);
            }
        }
    }
}
