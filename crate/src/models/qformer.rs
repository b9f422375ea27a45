//! BLIP-2 as SPHINX uses it: transformers `Blip2Model` (`models/blip_2/modeling_blip_2.py`) without
//! the language model, called as `get_qformer_features(pixel_values)` → `last_hidden_state`: the EVA
//! ViT-g image tower (`Blip2VisionModel`) feeding the Q-Former's cross-attention (`Blip2QFormerModel`)
//! over the learned `query_tokens` (spec §3, §3.1). No masks, no text input, dropout inactive.

use super::vit::{fused_self_attention, PatchEmbedding};
use crate::config::{BlipVisionConfig, QFormerConfig};
use crate::image::ImageTensor;
use crate::kernels::add::add_;
use crate::kernels::attention::attention_into;
use crate::shapes::Attn;
use crate::kernels::copy2d::copy2d;
use crate::shapes::Strided;
use crate::kernels::gelu::gelu_;
use crate::nn::{LayerNorm, Linear, PatchConv, Weights};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

struct VisionAttention {
    qkv: Linear, // [3W, W], bias [3W] (q_bias | 0 | v_bias in BLIP-2 weights)
    projection: Linear,
}

struct VisionMlp {
    fc1: Linear,
    fc2: Linear,
}

/// `Blip2EncoderLayer` (pre-norm).
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: VisionAttention,
    layer_norm2: LayerNorm,
    mlp: VisionMlp,
}

/// `Blip2VisionModel`: embeddings → encoder → post_layernorm.
struct VisionModel {
    /// embeddings: patch_embedding, class_embedding, position_embedding.
    embedding: PatchEmbedding,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    cfg: BlipVisionConfig,
}

/// `Blip2QFormerMultiHeadAttention` (self or cross).
struct MultiHeadAttention {
    query: Linear,
    key: Linear,   // [H, H], or [H, encoder_hidden] for cross-attention
    value: Linear, // as key
}

/// `Blip2QFormerSelfOutput` / `Blip2QFormerOutput`: LayerNorm(dense(h) + residual) (post-norm).
struct Output {
    dense: Linear,
    layer_norm: LayerNorm, // `LayerNorm`
}

struct QFormerAttention {
    attention: MultiHeadAttention,
    output: Output,
}

/// `Blip2QFormerLayer` (query path only: the 32 queries are the whole sequence).
struct QFormerLayer {
    attention: QFormerAttention,
    /// on layers with layer_idx % cross_attention_frequency == 0
    crossattention: Option<QFormerAttention>,
    intermediate_query: Linear, // intermediate_query.dense
    output_query: Output,
}

/// `Blip2QFormerModel`: layernorm(query_tokens) → encoder.layer.N.
struct QFormerModel {
    layernorm: LayerNorm,
    layer: Vec<QFormerLayer>,
    cfg: QFormerConfig,
}

pub struct Blip2QFormer {
    vision_model: VisionModel,
    query_tokens: Tensor, // [Nq, H]
    qformer: QFormerModel,
}

impl Output {
    fn load(w: &Weights, out: usize, inp: usize, eps: f64) -> Result<Output> {
        Ok(Output { dense: Linear::load(&w.pp("dense"), out, inp, true)?, layer_norm: LayerNorm::load(&w.pp("LayerNorm"), out, eps)? })
    }

    /// LayerNorm(dense(h) + residual).
    fn forward(&self, h: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let mut y = self.dense.forward(h)?;
        add_(&mut y, residual, None)?;
        self.layer_norm.forward(&y)
    }
}

impl QFormerAttention {
    fn load(w: &Weights, h: usize, kv_in: usize, eps: f64) -> Result<QFormerAttention> {
        let a = w.pp("attention");
        Ok(QFormerAttention {
            attention: MultiHeadAttention {
                query: Linear::load(&a.pp("query"), h, h, true)?,
                key: Linear::load(&a.pp("key"), h, kv_in, true)?,
                value: Linear::load(&a.pp("value"), h, kv_in, true)?,
            },
            output: Output::load(&w.pp("output"), h, h, eps)?,
        })
    }
}

impl VisionModel {
    fn load(w: &Weights, cfg: &BlipVisionConfig, input_side: usize) -> Result<VisionModel> {
        let e = w.pp("embeddings");
        let p = cfg.patch_size;
        let width = e.pp("patch_embedding").leading_dim("weight")?;
        if width != cfg.hidden_size {
            return Err(Error::Weights(format!("{}: width {width}, config hidden_size {}", e.path("patch_embedding.weight"), cfg.hidden_size)));
        }
        let heads = cfg.num_attention_heads;
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(Error::Config(format!("qformer vision: width {width} is not a multiple of {heads} heads")));
        }
        let grid = input_side / p;
        let n = w.pp("encoder").count("layers")?;
        if n != cfg.num_hidden_layers {
            return Err(Error::Weights(format!("{}: {n} layers, config says {}", w.path("encoder.layers"), cfg.num_hidden_layers)));
        }
        let eps = cfg.layer_norm_eps;
        let layers = (0..n)
            .map(|i| {
                let l = w.pp("encoder").pp("layers").pp(i);
                let hidden = l.pp("mlp").pp("fc1").leading_dim("weight")?;
                if hidden != cfg.intermediate_size {
                    return Err(Error::Weights(format!("{}: {hidden} rows, config intermediate_size {}", l.path("mlp.fc1.weight"), cfg.intermediate_size)));
                }
                Ok(EncoderLayer {
                    layer_norm1: LayerNorm::load(&l.pp("layer_norm1"), width, eps)?,
                    self_attn: VisionAttention {
                        qkv: Linear::load(&l.pp("self_attn").pp("qkv"), 3 * width, width, true)?,
                        projection: Linear::load(&l.pp("self_attn").pp("projection"), width, width, true)?,
                    },
                    layer_norm2: LayerNorm::load(&l.pp("layer_norm2"), width, eps)?,
                    mlp: VisionMlp {
                        fc1: Linear::load(&l.pp("mlp").pp("fc1"), hidden, width, true)?,
                        fc2: Linear::load(&l.pp("mlp").pp("fc2"), width, hidden, true)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let t = 1 + grid * grid;
        Ok(VisionModel {
            embedding: PatchEmbedding {
                conv: PatchConv::load(&e.pp("patch_embedding"), width, 3, p, true)?,
                class: e.tensor("class_embedding", &[1, 1, width])?.reshape(&[1, width])?,
                // the 224 input uses the table as is (no interpolation)
                pos: e.tensor("position_embedding", &[1, t, width])?.reshape(&[t, width])?,
                grid,
            },
            layers,
            post_layernorm: LayerNorm::load(&w.pp("post_layernorm"), width, eps)?,
            cfg: cfg.clone(),
        })
    }

    /// views [3, side, side] → post_layernorm of every token, [views · (1 + g²), W].
    fn forward(&self, device: &Device, views: &[ImageTensor]) -> Result<Tensor> {
        let (t, b) = (self.embedding.tokens(), views.len());
        let mut x = self.embedding.forward(device, views)?;
        for l in &self.layers {
            // x += projection(attn(layer_norm1(x))), qkv rows = (3, heads, head_dim)
            let qkv = l.self_attn.qkv.forward(&l.layer_norm1.forward(&x)?)?; // [b·t, 3W]
            let a = fused_self_attention(&qkv, b, t, self.cfg.num_attention_heads)?;
            drop(qkv);
            l.self_attn.projection.forward_add(&mut x, &a)?;
            // x += fc2(gelu(fc1(layer_norm2(x))))
            let mut h = l.mlp.fc1.forward(&l.layer_norm2.forward(&x)?)?;
            gelu_(&mut h)?;
            l.mlp.fc2.forward_add(&mut x, &h)?;
        }
        self.post_layernorm.forward(&x)
    }
}

impl QFormerModel {
    fn load(w: &Weights, cfg: &QFormerConfig, vision_width: usize) -> Result<QFormerModel> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::Config(format!("qformer: hidden {h} is not a multiple of {} heads", cfg.num_attention_heads)));
        }
        if cfg.encoder_hidden_size != vision_width {
            return Err(Error::Config(format!("qformer: encoder_hidden_size {}, vision tower width {vision_width}", cfg.encoder_hidden_size)));
        }
        let n = w.pp("encoder").count("layer")?;
        if n != cfg.num_hidden_layers {
            return Err(Error::Weights(format!("{}: {n} layers, config says {}", w.path("encoder.layer"), cfg.num_hidden_layers)));
        }
        let freq = cfg.cross_attention_frequency.max(1);
        let layer = (0..n)
            .map(|i| {
                let l = w.pp("encoder").pp("layer").pp(i);
                let inter = l.pp("intermediate_query").pp("dense").leading_dim("weight")?;
                if inter != cfg.intermediate_size {
                    return Err(Error::Weights(format!("{}: {inter} rows, config intermediate_size {}", l.path("intermediate_query.dense.weight"), cfg.intermediate_size)));
                }
                let has_cross = l.pp("crossattention").pp("attention").pp("query").contains("weight");
                if has_cross != (i % freq == 0) {
                    return Err(Error::Weights(format!(
                        "{}: cross-attention {}, but cross_attention_frequency {freq} says {}",
                        l.path("crossattention"),
                        if has_cross { "present" } else { "absent" },
                        if i % freq == 0 { "present" } else { "absent" }
                    )));
                }
                Ok(QFormerLayer {
                    attention: QFormerAttention::load(&l.pp("attention"), h, h, eps)?,
                    crossattention: if has_cross { Some(QFormerAttention::load(&l.pp("crossattention"), h, vision_width, eps)?) } else { None },
                    intermediate_query: Linear::load(&l.pp("intermediate_query").pp("dense"), inter, h, true)?,
                    output_query: Output::load(&l.pp("output_query"), h, inter, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QFormerModel { layernorm: LayerNorm::load(&w.pp("layernorm"), h, eps)?, layer, cfg: cfg.clone() })
    }

    /// queries [b·Nq, H] (the query tokens per view), image [b·T, Wv] → last_hidden_state [b·Nq, H].
    fn forward(&self, queries: &Tensor, image: &Tensor, b: usize) -> Result<Tensor> {
        let (h, heads) = (self.cfg.hidden_size, self.cfg.num_attention_heads);
        let nq = queries.rows() / b.max(1);
        let t = image.rows() / b.max(1);
        let hd = h / heads;
        let dev = queries.device();
        let mut x = self.layernorm.forward(queries)?;
        for l in &self.layer {
            // x = LN(x + dense(SelfAttn(x)))
            let sa = &l.attention.attention;
            let mut qkv = Tensor::empty(&dev, &[b * nq, 3 * h])?; // [b·Nq, q | k | v]
            sa.query.forward_into(&mut qkv, 0, &x)?;
            sa.key.forward_into(&mut qkv, h, &x)?;
            sa.value.forward_into(&mut qkv, 2 * h, &x)?;
            let ctx = fused_self_attention(&qkv, b, nq, heads)?;
            drop(qkv);
            x = l.attention.output.forward(&ctx, &x)?;
            // x = LN(x + dense(CrossAttn(x, image)))
            if let Some(ca) = &l.crossattention {
                let q = ca.attention.query.forward(&x)?; // [b·Nq, H]
                let mut kv = Tensor::empty(&dev, &[b * t, 2 * h])?; // [b·T, k | v]
                ca.attention.key.forward_into(&mut kv, 0, image)?;
                ca.attention.value.forward_into(&mut kv, h, image)?;
                let mut ctx = Tensor::empty(&dev, &[b * nq, h])?;
                let qs = Strided { offset: 0, row: h, batch: nq * h };
                let ks = Strided { offset: 0, row: 2 * h, batch: t * 2 * h };
                let a = Attn { batch: b, q_len: nq, kv_len: t, n_heads: heads, n_kv_heads: heads, head_dim: hd, causal: false, q_pos0: 0, scale: (hd as f32).powf(-0.5) };
                attention_into(&mut ctx, qs, &q, qs, &kv, ks, &kv, Strided { offset: h, ..ks }, &a)?;
                x = ca.output.forward(&ctx, &x)?;
            }
            // x = LN(x + output_query.dense(gelu(intermediate_query.dense(x))))
            let mut f = l.intermediate_query.forward(&x)?;
            gelu_(&mut f)?;
            x = l.output_query.forward(&f, &x)?;
        }
        Ok(x)
    }
}

impl Blip2QFormer {
    /// Loads the `qformer` scope (`vision_model`, `query_tokens`, `qformer`) for inputs of
    /// `input_side` pixels (224). Sizes come from the tensors and must agree with the configs.
    pub fn load(w: &Weights, vision: &BlipVisionConfig, cfg: &QFormerConfig, input_side: usize) -> Result<Blip2QFormer> {
        let vision_model = VisionModel::load(&w.pp("vision_model"), vision, input_side)?;
        let have = w.shape("query_tokens")?;
        let want = [1, cfg.num_query_tokens, cfg.hidden_size];
        if have != want {
            return Err(Error::Weights(format!("{}: shape {have:?}, config gives {want:?}", w.path("query_tokens"))));
        }
        let query_tokens = w.tensor("query_tokens", &want)?.reshape(&want[1..])?;
        let qformer = QFormerModel::load(&w.pp("qformer"), cfg, vision_model.cfg.hidden_size)?;
        Ok(Blip2QFormer { vision_model, query_tokens, qformer })
    }

    /// Query tokens per view (32).
    pub fn num_queries(&self) -> usize {
        self.query_tokens.rows()
    }

    /// Q-Former width H.
    pub fn hidden_size(&self) -> usize {
        self.qformer.cfg.hidden_size
    }

    /// Vision tower width Wv.
    pub fn vision_width(&self) -> usize {
        self.vision_model.cfg.hidden_size
    }

    /// Tokens per view of the vision tower (1 + g²).
    pub fn vision_tokens(&self) -> usize {
        self.vision_model.embedding.tokens()
    }

    /// views [3, 224, 224] (CLIP-normalised) → (vision tower output [views · T, Wv] — the
    /// cross-attention's encoder_hidden_states —, last_hidden_state [views · Nq, H]).
    pub fn forward(&self, device: &Device, views: &[ImageTensor]) -> Result<(Tensor, Tensor)> {
        let b = views.len();
        let image = self.vision_model.forward(device, views)?;
        let (nq, h) = (self.num_queries(), self.hidden_size());
        let mut queries = Tensor::empty(device, &[b * nq, h])?;
        copy2d(&mut queries, Strided { offset: 0, row: h, batch: nq * h }, &self.query_tokens, Strided { offset: 0, row: h, batch: 0 }, b, nq, h)?;
        let out = self.qformer.forward(&queries, &image, b)?;
        Ok((image, out))
    }
}
