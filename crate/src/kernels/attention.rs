//! Scaled dot-product attention with grouped-query heads and an optional causal mask aligned to
//! the end of the key sequence (LLaMA `Attention.forward`, DINOv2/CLIP/Q-Former attention);
//! `attention.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::shapes::{Attn, Strided};
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "attention", parts: &[include_str!("kv_f32.wgsl"), include_str!("attention_params.wgsl"), include_str!("attention.wgsl")] };
/// Many queries: one invocation per query row, keys streamed through workgroup memory.
const TILED: Kernel = Kernel { name: "attention_tiled", parts: &[include_str!("kv_f32.wgsl"), include_str!("attention_params.wgsl"), include_str!("attention_tiled.wgsl")] };
/// The same two over an f16 KV cache.
const KERNEL_KV16: Kernel = Kernel { name: "attention/kv16", parts: &[include_str!("kv_f16.wgsl"), include_str!("attention_params.wgsl"), include_str!("attention.wgsl")] };
const TILED_KV16: Kernel = Kernel { name: "attention_tiled/kv16", parts: &[include_str!("kv_f16.wgsl"), include_str!("attention_params.wgsl"), include_str!("attention_tiled.wgsl")] };
/// The second pass of a split decode attention.
const COMBINE: Kernel = Kernel { name: "attention_combine", parts: &[include_str!("attention_combine.wgsl")] };
/// A split decode attention gives each workgroup at least this many keys ...
const SPLIT_MIN_KEYS: usize = 256;
/// ... in at most this many splits, until the dispatch has this many workgroups.
const SPLIT_MAX: usize = 32;
const SPLIT_TARGET_GROUPS: usize = 256;
const WG: u32 = 64;
/// From this many query rows on (and head_dim a multiple of 4, ≤ 128), `attention_tiled.wgsl` runs.
pub const TILED_MIN_QUERIES: usize = 8;
const TILED_QB: usize = 64;
const TILED_MAX_HEAD_DIM: usize = 128;
/// gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`: llvmpipe ends all loops of an invocation once this
/// many steps are spent in total, silently.
const LLVMPIPE_LOOP_STEPS: usize = 65535;

/// Loop steps one invocation of `attention_tiled.wgsl` takes at most (its loops' trip counts).
fn tiled_loop_steps(a: &Attn) -> usize {
    let keys = if a.causal { a.kv_len.min(a.q_pos0 + a.q_len) } else { a.kv_len };
    let hd4 = a.head_dim / 4;
    keys.div_ceil(16) * (3 * hd4 + 1) + 2 * hd4
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    q_len: u32,
    kv_len: u32,
    group: u32,
    head_dim: u32,
    causal: u32,
    q_pos0: u32,
    scale: f32,
    splits: u32,
    q: [u32; 4],
    k: [u32; 4],
    v: [u32; 4],
    o: [u32; 4],
}

fn side(what: &str, s: Strided) -> Result<[u32; 4]> {
    Ok([u32_of(what, s.offset)?, u32_of(what, s.row)?, u32_of(what, s.batch)?, 0])
}

/// Reads the highest element index a side touches.
fn extent(s: Strided, batch: usize, rows: usize, width: usize) -> usize {
    s.offset + batch.saturating_sub(1) * s.batch + rows.saturating_sub(1) * s.row + width
}

/// o = softmax(q·kᵀ·scale) v per (batch, query row, head). q/o rows hold n_heads·head_dim values
/// at their strides, k/v rows n_kv_heads·head_dim.
#[allow(clippy::too_many_arguments)]
pub fn attention_into(o: &mut Tensor, os: Strided, q: &Tensor, qs: Strided, k: &Tensor, ks: Strided, v: &Tensor, vs: Strided, a: &Attn) -> Result<()> {
    attention_kv(o, os, q, qs, k, ks, v, vs, a, false, None)
}

/// [`attention_into`] over an f16 KV cache: on the GPU `k` and `v` hold two f16 values per element
/// (see `copy2d::copy2d_to_f16`) and their strides count f16 values; on the CPU they hold the
/// f16-rounded values as f32.
#[allow(clippy::too_many_arguments)]
pub fn attention_into_kv16(o: &mut Tensor, os: Strided, q: &Tensor, qs: Strided, k: &Tensor, ks: Strided, v: &Tensor, vs: Strided, a: &Attn) -> Result<()> {
    attention_kv(o, os, q, qs, k, ks, v, vs, a, true, None)
}

/// How many workgroups share each (query row, head) of the row-per-workgroup kernel: on GPUs, a
/// decode step over a long cache is split until the dispatch fills the device (flash-decoding);
/// software adapters, whose few cores the heads already fill, and batches of queries take 1.
pub fn default_splits(software: bool, a: &Attn) -> usize {
    let groups = a.batch * a.q_len * a.n_heads;
    if software || a.q_len >= TILED_MIN_QUERIES || groups >= SPLIT_TARGET_GROUPS {
        return 1;
    }
    (a.kv_len / SPLIT_MIN_KEYS).min(SPLIT_TARGET_GROUPS.div_ceil(groups)).clamp(1, SPLIT_MAX)
}

#[allow(clippy::too_many_arguments)]
fn attention_kv(o: &mut Tensor, os: Strided, q: &Tensor, qs: Strided, k: &Tensor, ks: Strided, v: &Tensor, vs: Strided, a: &Attn, kv16: bool, splits: Option<usize>) -> Result<()> {
    if a.n_kv_heads == 0 || a.n_heads % a.n_kv_heads != 0 {
        return Err(Error::Shape(format!("attention: {} heads over {} kv heads", a.n_heads, a.n_kv_heads)));
    }
    if a.head_dim > 4 * WG as usize {
        return Err(Error::Shape(format!("attention: head_dim {} > {}", a.head_dim, 4 * WG)));
    }
    if a.kv_len == 0 || (a.causal && a.q_pos0 + a.q_len > a.kv_len) {
        return Err(Error::Shape(format!("attention: {} queries at {} over {} keys", a.q_len, a.q_pos0, a.kv_len)));
    }
    let qw = a.n_heads * a.head_dim;
    let kw = a.n_kv_heads * a.head_dim;
    // An f16 cache on the GPU packs two values per element.
    let per = |t: &Tensor, kv: bool| if kv && kv16 && t.gpu().is_some() { 2 } else { 1 };
    for (name, t, s, rows, width, kv) in [("q", &*q, qs, a.q_len, qw, false), ("k", k, ks, a.kv_len, kw, true), ("v", v, vs, a.kv_len, kw, true), ("o", &*o, os, a.q_len, qw, false)] {
        if extent(s, a.batch, rows, width) > t.numel() * per(t, kv) {
            return Err(Error::Shape(format!("attention: {name} {:?} too small for {a:?} at {s:?}", t.shape())));
        }
    }
    match gpu_of("attention", &[&*o, q, k, v])? {
        Some(gpu) => {
            crate::flops::count(a.flops());
            let p = Params {
                q_len: u32_of("q_len", a.q_len)?,
                kv_len: u32_of("kv_len", a.kv_len)?,
                group: (a.n_heads / a.n_kv_heads) as u32,
                head_dim: a.head_dim as u32,
                causal: a.causal as u32,
                q_pos0: u32_of("q_pos0", a.q_pos0)?,
                scale: a.scale,
                splits: 1,
                q: side("q", qs)?,
                k: side("k", ks)?,
                v: side("v", vs)?,
                o: side("o", os)?,
            };
            let bufs = [buf(q), buf(k), buf(v), buf(o)];
            let (heads, batch) = (u32_of("heads", a.n_heads)?, u32_of("batch", a.batch)?);
            let tiled = a.q_len >= TILED_MIN_QUERIES && a.head_dim <= TILED_MAX_HEAD_DIM && a.head_dim % 4 == 0;
            let steps = tiled_loop_steps(a);
            if tiled && gpu.info.name.contains("llvmpipe") && steps > LLVMPIPE_LOOP_STEPS {
                return Err(Error::Gpu(format!(
                    "attention: {} keys at head_dim {} take {steps} loop steps per invocation, past llvmpipe's limit of {LLVMPIPE_LOOP_STEPS} (it would end the loops early)",
                    a.kv_len, a.head_dim
                )));
            }
            let (kernel, tiled) = match (kv16, tiled) {
                (false, true) => (&TILED, true),
                (false, false) => (&KERNEL, false),
                (true, true) => (&TILED_KV16, true),
                (true, false) => (&KERNEL_KV16, false),
            };
            if tiled {
                gpu.dispatch(kernel, &[], &p, &bufs, [a.q_len.div_ceil(TILED_QB) as u32, heads, batch])
            } else {
                let splits = splits.unwrap_or_else(|| default_splits(gpu.info.software, a)).max(1);
                let records = a.batch * a.q_len * a.n_heads * splits;
                // one record per split (unbound for a single one: a small buffer stands in)
                let part = gpu.alloc(if splits > 1 { (records * (a.head_dim + 2) * 4) as u64 } else { 4 })?;
                let p = Params { splits: u32_of("attention splits", splits)?, ..p };
                let rows = u32_of("attention workgroups", a.q_len * splits)?;
                gpu.dispatch(kernel, &[("WG", WG as f64)], &p, &[buf(q), buf(k), buf(v), buf(o), part.buffer()], [rows, heads, batch])?;
                if splits == 1 {
                    return Ok(());
                }
                let c = [p.q_len, p.head_dim, p.splits, 0, p.o[0], p.o[1], p.o[2], 0];
                gpu.dispatch(&COMBINE, &[("WG", WG as f64)], &c, &[part.buffer(), buf(o)], [p.q_len, heads, batch])
            }
        }
        None => {
            let out = o.cpu_mut().expect("cpu");
            if crate::cpu::reference() {
                attention_cpu(out, os, cpu(q), qs, cpu(k), ks, cpu(v), vs, a);
            } else {
                crate::cpu::attn::attention(out, os, cpu(q), qs, cpu(k), ks, cpu(v), vs, a);
            }
            Ok(())
        }
    }
}

/// CPU twin: scores, max-subtracted softmax (sums in f64), weighted sum of values.
#[allow(clippy::too_many_arguments)]
pub fn attention_cpu(o: &mut [f32], os: Strided, q: &[f32], qs: Strided, k: &[f32], ks: Strided, v: &[f32], vs: Strided, a: &Attn) {
    let group = a.n_heads / a.n_kv_heads;
    let hd = a.head_dim;
    let mut scores = vec![0f32; a.kv_len];
    for b in 0..a.batch {
        for i in 0..a.q_len {
            for h in 0..a.n_heads {
                let kvh = h / group;
                let n = if a.causal { (a.q_pos0 + i + 1).min(a.kv_len) } else { a.kv_len };
                let qr = &q[qs.offset + b * qs.batch + i * qs.row + h * hd..][..hd];
                let mut m = f32::NEG_INFINITY;
                for (t, s) in scores[..n].iter_mut().enumerate() {
                    let kr = &k[ks.offset + b * ks.batch + t * ks.row + kvh * hd..][..hd];
                    let dot: f32 = qr.iter().zip(kr).map(|(x, y)| x * y).sum();
                    *s = dot * a.scale;
                    m = m.max(*s);
                }
                let mut l = 0f64;
                for s in scores[..n].iter_mut() {
                    *s = (*s - m).exp();
                    l += *s as f64;
                }
                let out = &mut o[os.offset + b * os.batch + i * os.row + h * hd..][..hd];
                for (d, od) in out.iter_mut().enumerate() {
                    let mut acc = 0f64;
                    for (t, s) in scores[..n].iter().enumerate() {
                        acc += *s as f64 * v[vs.offset + b * vs.batch + t * vs.row + kvh * hd + d] as f64;
                    }
                    *od = (acc / l) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    fn run(a: Attn, seed: u64) {
        run_split(a, seed, None)
    }

    fn run_split(a: Attn, seed: u64, splits: Option<usize>) {
        let dev = gpu_device();
        let mut rng = Rng::new(seed);
        let (qw, kw) = (a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim);
        // q, k, v as column blocks of one fused [batch, rows, qw + 2 kw] tensor, like a qkv projection.
        let width = qw + 2 * kw;
        let rows = a.q_len.max(a.kv_len);
        let qkv = rng.vec(a.batch * rows * width, 1.5);
        let qs = Strided { offset: 0, row: width, batch: rows * width };
        let ks = Strided { offset: qw, ..qs };
        let vs = Strided { offset: qw + kw, ..qs };
        let os = Strided { offset: 0, row: qw, batch: a.q_len * qw };
        let mut want = vec![0f32; a.batch * a.q_len * qw];
        attention_cpu(&mut want, os, &qkv, qs, &qkv, ks, &qkv, vs, &a);
        let t = Tensor::from_vec(&dev, &[a.batch * rows, width], qkv).unwrap();
        let mut o = guarded(&[a.batch * a.q_len, qw], &vec![0.0; a.batch * a.q_len * qw]);
        attention_kv(&mut o, os, &t, qs, &t, ks, &t, vs, &a, false, splits).unwrap();
        // Online vs two-pass softmax, f32 dot products: a few ulp per term.
        assert_close(&format!("attention {a:?} in {splits:?} splits"), &read_guarded(&o), &want, 2e-5, 2e-5);
    }

    /// Decode over a cache split across workgroups (flash-decoding) and merged by the second pass:
    /// equal shares, a last share cut short, more splits than keys (empty shares), GQA, causal
    /// offsets, head_dim past WG, batches; and when the engine splits by itself.
    #[test]
    fn split_decode_attention_matches_cpu() {
        let base = Attn { batch: 1, q_len: 1, kv_len: 1, n_heads: 4, n_kv_heads: 2, head_dim: 64, causal: true, q_pos0: 0, scale: 0.125 };
        for (a, splits) in [
            (Attn { kv_len: 1024, q_pos0: 1023, ..base }, 4),
            (Attn { kv_len: 1000, q_pos0: 999, ..base }, 7),
            (Attn { kv_len: 5, q_pos0: 4, ..base }, 8),
            (Attn { batch: 2, q_len: 3, kv_len: 300, q_pos0: 297, n_heads: 3, n_kv_heads: 1, head_dim: 200, ..base }, 5),
            (Attn { kv_len: 129, causal: false, head_dim: 10, ..base }, 2),
        ] {
            run_split(a, 30 + splits as u64, Some(splits));
        }
        let long = Attn { kv_len: 2048, q_pos0: 2047, n_heads: 32, n_kv_heads: 4, ..base };
        assert_eq!((default_splits(false, &long), default_splits(true, &long)), (8, 1));
        assert_eq!(default_splits(false, &Attn { q_len: 8, q_pos0: 2040, ..long }), 1, "a batch of queries: the tiled kernel");
        assert_eq!(default_splits(false, &Attn { kv_len: 300, q_pos0: 299, ..long }), 1, "a short cache");
    }

    #[test]
    fn attention_gpu_matches_cpu() {
        let base = Attn { batch: 1, q_len: 1, kv_len: 1, n_heads: 1, n_kv_heads: 1, head_dim: 1, causal: false, q_pos0: 0, scale: 1.0 };
        run(base, 1);
        // vision: batch of tiles, bidirectional, 257 tokens, head_dim 16 and 10
        run(Attn { batch: 3, q_len: 257, kv_len: 257, n_heads: 3, n_kv_heads: 3, head_dim: 16, scale: 0.25, ..base }, 2);
        run(Attn { batch: 2, q_len: 33, kv_len: 33, n_heads: 4, n_kv_heads: 4, head_dim: 10, scale: 0.316, ..base }, 3);
        // causal prefill with GQA
        run(Attn { q_len: 70, kv_len: 70, n_heads: 4, n_kv_heads: 2, head_dim: 16, causal: true, scale: 0.25, ..base }, 4);
        // ≥ 8 queries and head_dim ≤ 128 take attention_tiled.wgsl: partial query blocks, key
        // blocks, causal offsets, head_dim 128 at the limit
        run(Attn { batch: 2, q_len: 130, kv_len: 130, n_heads: 2, n_kv_heads: 1, head_dim: 128, causal: true, scale: 0.088, ..base }, 7);
        // TinyLlama's heads over a long prompt: the scalar kernel ran out of llvmpipe's loop steps
        // from ~450 keys on (rows left unwritten); LLaMA-2-13B's head_dim at 2.5 k keys
        run(Attn { q_len: 1000, kv_len: 1000, n_heads: 32, n_kv_heads: 4, head_dim: 64, causal: true, scale: 0.125, ..base }, 10);
        run(Attn { q_len: 16, kv_len: 2500, n_heads: 2, n_kv_heads: 2, head_dim: 128, causal: true, q_pos0: 2484, scale: 0.088, ..base }, 11);
        run(Attn { q_len: 9, kv_len: 40, n_heads: 3, n_kv_heads: 3, head_dim: 8, causal: true, q_pos0: 31, scale: 0.35, ..base }, 8);
        run(Attn { q_len: 20, kv_len: 17, n_heads: 2, n_kv_heads: 2, head_dim: 130, scale: 0.1, ..base }, 9);
        // head_dim 4 and 12: one and three steps of four dimensions, a key block cut at 5 keys
        run(Attn { q_len: 37, kv_len: 37, n_heads: 2, n_kv_heads: 1, head_dim: 4, causal: true, scale: 0.5, ..base }, 12);
        run(Attn { q_len: 11, kv_len: 21, n_heads: 3, n_kv_heads: 3, head_dim: 12, scale: 0.29, ..base }, 13);
        // one decode step at the end of a long cache, head_dim 128 and 200 (more than WG)
        run(Attn { q_len: 1, kv_len: 131, n_heads: 8, n_kv_heads: 1, head_dim: 128, causal: true, q_pos0: 130, scale: 0.088, ..base }, 5);
        run(Attn { q_len: 3, kv_len: 9, n_heads: 2, n_kv_heads: 2, head_dim: 200, causal: true, q_pos0: 6, scale: 0.07, ..base }, 6);
    }

    /// Past llvmpipe's loop budget the tiled kernel is refused, naming the limit, rather than run
    /// with its loops cut short; other adapters run it.
    #[test]
    fn attention_past_the_llvmpipe_loop_budget() {
        let a = Attn { batch: 1, q_len: 8, kv_len: 12000, n_heads: 1, n_kv_heads: 1, head_dim: 128, causal: true, q_pos0: 11992, scale: 0.088 };
        assert!(tiled_loop_steps(&a) > LLVMPIPE_LOOP_STEPS);
        let dev = gpu_device();
        let t = Tensor::from_vec(&dev, &[a.kv_len, 128], vec![0.5; a.kv_len * 128]).unwrap();
        let mut o = Tensor::empty(&dev, &[a.q_len, 128]).unwrap();
        let s = Strided::rows(0, 128);
        let r = attention_into(&mut o, s, &t, s, &t, s, &t, s, &a);
        if gpu().info.name.contains("llvmpipe") {
            let e = r.expect_err("past the budget").to_string();
            assert!(e.contains("12000 keys") && e.contains("65535"), "{e}");
        } else {
            r.unwrap();
        }
    }

    /// The f16 KV path: keys and values stored through `copy2d_to_f16` into f16 caches, attention
    /// over them on the GPU vs the CPU twin on the f16-rounded values (both paths: decode and tiled).
    #[test]
    fn attention_over_an_f16_cache_matches_cpu() {
        use crate::kernels::copy2d::copy2d_to_f16;
        let gpu = gpu();
        assert!(gpu.info.shader_f16, "the tests' adapter ({}) has no shader-f16 (lavapipe has it)", gpu.info.name);
        let dev = gpu_device();
        let mut rng = Rng::new(11);
        let base = Attn { batch: 1, q_len: 1, kv_len: 1, n_heads: 4, n_kv_heads: 2, head_dim: 16, causal: true, q_pos0: 0, scale: 0.25 };
        for a in [Attn { q_len: 1, kv_len: 37, q_pos0: 36, ..base }, Attn { q_len: 21, kv_len: 21, ..base }] {
            let (qw, kw) = (a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim);
            let (q, k, v) = (rng.vec(a.q_len * qw, 1.5), rng.vec(a.kv_len * kw, 1.5), rng.vec(a.kv_len * kw, 1.5));
            let round = |x: &[f32]| x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect::<Vec<_>>();
            let (qs, ks, os) = (Strided::rows(0, qw), Strided::rows(0, kw), Strided::rows(0, qw));
            let mut want = vec![0f32; a.q_len * qw];
            attention_cpu(&mut want, os, &q, qs, &round(&k), ks, &round(&v), ks, &a);
            let store = |x: Vec<f32>| {
                let src = Tensor::from_vec(&dev, &[a.kv_len, kw], x).unwrap();
                let mut cache = Tensor::empty(&dev, &[a.kv_len, kw / 2]).unwrap();
                copy2d_to_f16(&mut cache, ks, &src, ks, 1, a.kv_len, kw).unwrap();
                cache
            };
            let (kc, vc) = (store(k), store(v));
            let qt = Tensor::from_vec(&dev, &[a.q_len, qw], q).unwrap();
            for splits in [1, 3] {
                let mut o = guarded(&[a.q_len, qw], &vec![0.0; a.q_len * qw]);
                attention_kv(&mut o, os, &qt, qs, &kc, ks, &vc, ks, &a, true, Some(splits)).unwrap();
                assert_close(&format!("kv16 attention {a:?} in {splits} splits"), &read_guarded(&o), &want, 2e-5, 2e-5);
            }
        }
    }
}
