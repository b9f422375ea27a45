//! Attention on the CPU: one task per (batch, key/value head, block of query rows), so that the
//! query heads sharing a key/value head (grouped-query attention) read its keys and values while
//! they are in cache. Scores are SIMD dot products, the softmax is max-subtracted with a
//! vectorized exp ([`super::exp_f32`]) and f32 sums, and the weighted sum of values is an axpy per
//! key. No copy of the inputs is made (the KV cache is read in place).

use super::{par_ranges, Out};
use crate::shapes::Attn;
use crate::shapes::Strided;

/// Query rows per task.
const QB: usize = 16;

/// o = softmax(q·kᵀ·scale) v per (batch, query row, head); strides and sizes as
/// `kernels::attention::attention_cpu` (the oracle) takes them, already checked by the caller.
#[allow(clippy::too_many_arguments)]
pub fn attention(o: &mut [f32], os: Strided, q: &[f32], qs: Strided, k: &[f32], ks: Strided, v: &[f32], vs: Strided, a: &Attn) {
    crate::flops::count(a.flops());
    let group = a.n_heads / a.n_kv_heads;
    let qblocks = a.q_len.div_ceil(QB);
    let tasks = a.batch * a.n_kv_heads * qblocks;
    let out = Out(o.as_mut_ptr());
    let olen = o.len();
    par_ranges(tasks, 1, |t0, t1| {
        let mut scores = vec![0f32; a.kv_len];
        let mut acc = vec![0f32; a.head_dim];
        for t in t0..t1 {
            let (b, rest) = (t / (a.n_kv_heads * qblocks), t % (a.n_kv_heads * qblocks));
            let (kvh, qb) = (rest / qblocks, rest % qblocks);
            for i in qb * QB..((qb + 1) * QB).min(a.q_len) {
                let n = if a.causal { (a.q_pos0 + i + 1).min(a.kv_len) } else { a.kv_len };
                for h in kvh * group..(kvh + 1) * group {
                    let qr = &q[qs.offset + b * qs.batch + i * qs.row + h * a.head_dim..][..a.head_dim];
                    one_row(qr, k, ks, v, vs, b, kvh, n, a, &mut scores, &mut acc);
                    let at = os.offset + b * os.batch + i * os.row + h * a.head_dim;
                    assert!(at + a.head_dim <= olen, "attention: output row outside o");
                    for (d, val) in acc.iter().enumerate() {
                        // SAFETY: inside o (asserted); each (batch, row, head) belongs to one task.
                        unsafe { out.set(at + d, *val) };
                    }
                }
            }
        }
    });
}

/// One query row of one head against keys 0..n: the attention output into `acc`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn one_row(qr: &[f32], k: &[f32], ks: Strided, v: &[f32], vs: Strided, b: usize, kvh: usize, n: usize, a: &Attn, scores: &mut [f32], acc: &mut [f32]) {
    let hd = a.head_dim;
    let mut m = f32::NEG_INFINITY;
    for (t, s) in scores[..n].iter_mut().enumerate() {
        let kr = &k[ks.offset + b * ks.batch + t * ks.row + kvh * hd..][..hd];
        *s = super::gemm::dot(qr, kr) * a.scale;
        m = m.max(*s);
    }
    for s in scores[..n].iter_mut() {
        *s -= m;
    }
    super::exp_f32_in_place(&mut scores[..n]);
    let l: f32 = scores[..n].iter().sum();
    acc.fill(0.0);
    for (t, &p) in scores[..n].iter().enumerate() {
        let vr = &v[vs.offset + b * vs.batch + t * vs.row + kvh * hd..][..hd];
        for (o, &x) in acc.iter_mut().zip(vr) {
            *o += p * x;
        }
    }
    let inv = 1.0 / l;
    for o in acc.iter_mut() {
        *o *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::attention_cpu;
    use crate::kernels::test_util::{assert_close, Rng};

    /// Against the scalar twin: decode and prefill, grouped and plain heads, causal offsets, odd
    /// head sizes, batches, query blocks cut short, q/k/v as column blocks of one fused tensor and
    /// the output inside a wider row whose other columns stay untouched.
    #[test]
    fn matches_the_scalar_twin() {
        let base = Attn { batch: 1, q_len: 1, kv_len: 1, n_heads: 1, n_kv_heads: 1, head_dim: 1, causal: false, q_pos0: 0, scale: 1.0 };
        let cases = [
            base,
            Attn { batch: 3, q_len: 37, kv_len: 37, n_heads: 3, n_kv_heads: 3, head_dim: 16, scale: 0.25, ..base },
            Attn { q_len: 70, kv_len: 70, n_heads: 4, n_kv_heads: 2, head_dim: 16, causal: true, scale: 0.25, ..base },
            Attn { q_len: 1, kv_len: 131, n_heads: 8, n_kv_heads: 1, head_dim: 64, causal: true, q_pos0: 130, scale: 0.125, ..base },
            Attn { q_len: 9, kv_len: 40, n_heads: 3, n_kv_heads: 3, head_dim: 13, causal: true, q_pos0: 31, scale: 0.35, ..base },
            Attn { batch: 2, q_len: 20, kv_len: 17, n_heads: 2, n_kv_heads: 2, head_dim: 130, scale: 0.1, ..base },
        ];
        let mut rng = Rng::new(51);
        for a in cases {
            let (qw, kw) = (a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim);
            let width = qw + 2 * kw;
            let rows = a.q_len.max(a.kv_len);
            let qkv = rng.vec(a.batch * rows * width, 1.5);
            let qs = Strided { offset: 0, row: width, batch: rows * width };
            let ks = Strided { offset: qw, ..qs };
            let vs = Strided { offset: qw + kw, ..qs };
            let ow = qw + 5;
            let os = Strided { offset: 2, row: ow, batch: a.q_len * ow };
            let mut want = vec![-3.0f32; a.batch * a.q_len * ow];
            attention_cpu(&mut want, os, &qkv, qs, &qkv, ks, &qkv, vs, &a);
            let mut got = vec![-3.0f32; a.batch * a.q_len * ow];
            attention(&mut got, os, &qkv, qs, &qkv, ks, &qkv, vs, &a);
            assert_close(&format!("{a:?}"), &got, &want, 2e-5, 2e-5);
        }
    }
}
