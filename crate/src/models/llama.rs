//! The LLaMA decoder of SPHINX (LLaMA2-Accessory `model/LLM/llama*.py` `Transformer`): token
//! embedding, pre-norm blocks with grouped-query attention, adjacent-pair RoPE and a SwiGLU FFN, a
//! KV cache, final RMSNorm and the output projection (spec §2.6). No biases anywhere.

use crate::config::LlmConfig;
use crate::kernels::attention::{attention_into, attention_into_kv16};
use crate::shapes::Attn;
use crate::kernels::copy2d::{copy2d, copy2d_to_f16, slice_rows};
use crate::shapes::Strided;
use crate::kernels::rope::RopeTable;
use crate::kernels::swiglu::swiglu;
use crate::nn::{Embedding, Linear, Precision, RmsNorm, Rows, Weights};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// upstream's `from_pretrained` default context length.
pub const DEFAULT_MAX_SEQ_LEN: usize = 4096;
/// The longest context a model may be built for (16× upstream's; the RoPE table and KV cache grow
/// with it, and no released SPHINX was trained beyond 4096).
pub const MAX_SEQ_LEN: usize = 1 << 16;

/// `max_seq_len` in 1..=[`MAX_SEQ_LEN`] (`what` names the flag or option in the error).
pub fn check_max_seq_len(max_seq_len: usize, what: &str) -> Result<()> {
    if max_seq_len == 0 || max_seq_len > MAX_SEQ_LEN {
        return Err(Error::Config(format!("{what} {max_seq_len}: must be in 1..={MAX_SEQ_LEN}")));
    }
    Ok(())
}

struct Attention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
}

struct FeedForward {
    w1: Linear,
    w2: Linear,
    w3: Linear,
}

struct Layer {
    attention: Attention,
    feed_forward: FeedForward,
    attention_norm: RmsNorm,
    ffn_norm: RmsNorm,
}

type Copy2d = fn(&mut Tensor, Strided, &Tensor, Strided, usize, usize, usize) -> Result<()>;
type Attend = fn(&mut Tensor, Strided, &Tensor, Strided, &Tensor, Strided, &Tensor, Strided, &Attn) -> Result<()>;

pub struct Llama {
    tok_embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    rope: RopeTable,
    pub cfg: LlmConfig,
    pub max_seq_len: usize,
    /// The KV cache holds f16 (the f16 precision path).
    pub kv_f16: bool,
}

/// Keys and values of every layer for positions 0..len, on the model's device.
pub struct KvCache {
    // per layer [capacity, n_kv_heads · head_dim]; an f16 cache on the GPU packs two values per
    // element ([capacity, n_kv_heads · head_dim / 2]), on the CPU it holds f16-rounded f32 values
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    f16: bool,
    pub capacity: usize,
    /// Positions filled so far (the next token goes here).
    pub len: usize,
}

impl Llama {
    /// Loads `tok_embeddings`, `layers.N.*`, `norm`, `output` from this scope. The number of layers
    /// and the vocabulary come from the checkpoint and must agree with `cfg`.
    pub fn load(w: &Weights, cfg: &LlmConfig, max_seq_len: usize) -> Result<Llama> {
        check_max_seq_len(max_seq_len, "max_seq_len")?;
        let (dim, hd) = (cfg.dim, cfg.head_dim);
        let n_layers = w.count("layers")?;
        if n_layers != cfg.n_layers {
            return Err(Error::Weights(format!("{}: {n_layers} layers, config says {}", w.path("layers"), cfg.n_layers)));
        }
        let tok_embeddings = Embedding::load(&w.pp("tok_embeddings"), cfg.vocab_size, dim)?;
        let (qd, kvd, hidden) = (cfg.n_heads * hd, cfg.n_kv_heads * hd, cfg.ffn_hidden);
        let layers = (0..n_layers)
            .map(|i| {
                let l = w.pp("layers").pp(i);
                let (a, f) = (l.pp("attention"), l.pp("feed_forward"));
                Ok(Layer {
                    attention: Attention {
                        wq: Linear::load(&a.pp("wq"), qd, dim, false)?,
                        wk: Linear::load(&a.pp("wk"), kvd, dim, false)?,
                        wv: Linear::load(&a.pp("wv"), kvd, dim, false)?,
                        wo: Linear::load(&a.pp("wo"), dim, qd, false)?,
                    },
                    feed_forward: FeedForward {
                        w1: Linear::load(&f.pp("w1"), hidden, dim, false)?,
                        w2: Linear::load(&f.pp("w2"), dim, hidden, false)?,
                        w3: Linear::load(&f.pp("w3"), hidden, dim, false)?,
                    },
                    attention_norm: RmsNorm::load(&l.pp("attention_norm"), dim, cfg.norm_eps)?,
                    ffn_norm: RmsNorm::load(&l.pp("ffn_norm"), dim, cfg.norm_eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Llama {
            tok_embeddings,
            layers,
            norm: RmsNorm::load(&w.pp("norm"), dim, cfg.norm_eps)?,
            // only the last position is projected: decode-sized products
            output: Linear::load(&w.pp("output").with_rows(Rows::Decode), cfg.vocab_size, dim, false)?,
            rope: RopeTable::new(w.device(), hd, cfg.rope_theta, max_seq_len, cfg.rope_scaling)?,
            cfg: cfg.clone(),
            max_seq_len,
            kv_f16: w.precision() == Precision::F16,
        })
    }

    pub fn device(&self) -> Device {
        self.norm.weight.device()
    }

    /// Bytes of weights one decode step reads: every layer's projections and the output layer (the
    /// embedding reads one row).
    pub fn decode_weight_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                let (a, f) = (&l.attention, &l.feed_forward);
                [&a.wq, &a.wk, &a.wv, &a.wo, &f.w1, &f.w2, &f.w3].iter().map(|w| w.weight_bytes()).sum::<u64>()
            })
            .sum();
        layers + self.output.weight_bytes()
    }

    /// An empty cache for up to `capacity` positions (≤ max_seq_len).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        if capacity > self.max_seq_len {
            return Err(Error::Config(format!("a sequence of {capacity} positions exceeds max_seq_len {}", self.max_seq_len)));
        }
        let kvd = self.cfg.n_kv_heads * self.cfg.head_dim;
        let dev = self.device();
        if self.kv_f16 && kvd % 2 != 0 {
            return Err(Error::Config(format!("an f16 KV cache needs an even key width, not {kvd}")));
        }
        let width = if self.kv_f16 && dev.is_gpu() { kvd / 2 } else { kvd };
        let mk = || (0..self.layers.len()).map(|_| Tensor::empty(&dev, &[capacity, width])).collect::<Result<Vec<_>>>();
        Ok(KvCache { k: mk()?, v: mk()?, f16: self.kv_f16, capacity, len: 0 })
    }

    /// Writes the embeddings of `ids` into rows `row0..` of `dst` ([rows, dim]).
    pub fn embed_into(&self, dst: &mut Tensor, row0: usize, ids: &[u32]) -> Result<()> {
        self.tok_embeddings.forward_into(dst, row0, ids)
    }

    /// Runs `x` ([L, dim], the input embeddings of positions cache.len .. cache.len + L) through the
    /// decoder, appending to the cache; returns the logits of the last position, [1, vocab].
    pub fn forward(&self, x: Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (l, dim) = (x.rows(), self.cfg.dim);
        x.expect_shape("decoder input", &[l, dim])?;
        let pos0 = cache.len;
        if pos0 + l > cache.capacity {
            return Err(Error::Config(format!("sequence of {} positions exceeds the KV cache ({})", pos0 + l, cache.capacity)));
        }
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            self.layer_forward(layer, &mut x, &mut cache.k[i], &mut cache.v[i], pos0, cache.f16)?;
        }
        cache.len = pos0 + l;
        let last = slice_rows(&x, l - 1, 1)?; // only the last position's logits are returned
        self.output.forward(&self.norm.forward(&last)?)
    }

    fn layer_forward(&self, layer: &Layer, x: &mut Tensor, k_cache: &mut Tensor, v_cache: &mut Tensor, pos0: usize, kv16: bool) -> Result<()> {
        let c = &self.cfg;
        let l = x.rows();
        let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let w = qd + 2 * kvd;
        let dev = x.device();
        // h = x + wo(attention(attention_norm(x)))
        let h = layer.attention_norm.forward(x)?;
        let mut qkv = Tensor::empty(&dev, &[l, w])?; // [L, q | k | v]
        let a = &layer.attention;
        Linear::forward_cat(&[&a.wq, &a.wk, &a.wv], &mut qkv, &h)?;
        drop(h);
        self.rope.apply_(&mut qkv, 0, c.n_heads + c.n_kv_heads, pos0)?; // q and k: neighbouring heads
        let (store, attend) = if kv16 { (copy2d_to_f16 as Copy2d, attention_into_kv16 as Attend) } else { (copy2d as Copy2d, attention_into as Attend) };
        store(k_cache, Strided::rows(pos0 * kvd, kvd), &qkv, Strided::rows(qd, w), 1, l, kvd)?;
        store(v_cache, Strided::rows(pos0 * kvd, kvd), &qkv, Strided::rows(qd + kvd, w), 1, l, kvd)?;
        let mut o = Tensor::empty(&dev, &[l, qd])?;
        attend(
            &mut o,
            Strided::rows(0, qd),
            &qkv,
            Strided::rows(0, w),
            k_cache,
            Strided::rows(0, kvd),
            v_cache,
            Strided::rows(0, kvd),
            &Attn {
                batch: 1,
                q_len: l,
                kv_len: pos0 + l,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                causal: true,
                q_pos0: pos0,
                scale: 1.0 / (c.head_dim as f32).sqrt(),
            },
        )?;
        drop(qkv);
        layer.attention.wo.forward_add(x, &o)?;
        drop(o);
        // out = h + w2(silu(w1(ffn_norm(h))) · w3(ffn_norm(h)))
        let h = layer.ffn_norm.forward(x)?;
        let hidden = c.ffn_hidden;
        let mut g = Tensor::empty(&dev, &[l, 2 * hidden])?; // [L, w1 | w3]
        Linear::forward_cat(&[&layer.feed_forward.w1, &layer.feed_forward.w3], &mut g, &h)?;
        let a = swiglu(&g)?;
        layer.feed_forward.w2.forward_add(x, &a)
    }
}
