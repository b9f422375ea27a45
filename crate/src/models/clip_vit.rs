//! CLIP ViT-L/14 image tower as SPHINX uses it: open_clip `VisionTransformer` (`open_clip/transformer.py`)
//! driven by LLaMA2-Accessory's `clip_encode_image` (`model/LLM/llama_ens.py`): conv1 (no bias), class
//! token, positional_embedding, ln_pre, residual blocks with `nn.MultiheadAttention`, ln_post on all
//! tokens, and **no** `proj` (spec §3, §3.1).
//!
//! Attention runs over the tokens of each sub-image: the open_clip ≤ 2.24 semantics SPHINX was built
//! with (upstream permutes to (L, N, D) before `transformer`; open_clip ≥ 2.26 would mix sub-images).

use super::vit::{fused_self_attention, PatchEmbedding};
use crate::config::ClipConfig;
use crate::image::ImageTensor;
use crate::kernels::gelu::gelu_;
use crate::nn::{LayerNorm, Linear, PatchConv, Weights};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// `nn.MultiheadAttention` (self-attention, batch of independent sequences).
struct MultiheadAttention {
    in_proj: Linear, // in_proj_weight [3W, W] rows [q; k; v], in_proj_bias [3W]
    out_proj: Linear,
}

struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
}

struct ResBlock {
    ln_1: LayerNorm,
    attn: MultiheadAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

pub struct ClipVit {
    /// conv1 (no bias), class_embedding, positional_embedding.
    embedding: PatchEmbedding,
    ln_pre: LayerNorm,
    resblocks: Vec<ResBlock>,
    ln_post: LayerNorm,
    pub cfg: ClipConfig,
}

impl ClipVit {
    /// Loads `clip.visual.*` from the `clip` scope for inputs of `input_side` pixels (224); declares the
    /// text tower's leftovers and `visual.proj` as unused. Width, depth and MLP width come from the
    /// tensors and must agree with `cfg`.
    pub fn load(w: &Weights, cfg: &ClipConfig, input_side: usize) -> Result<ClipVit> {
        for unused in ["token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection", "logit_scale"] {
            w.ignore(unused);
        }
        let v = w.pp("visual");
        v.ignore("proj");
        let (p, eps) = (cfg.patch_size, cfg.norm_eps);
        let width = v.pp("conv1").leading_dim("weight")?;
        if width != cfg.width {
            return Err(Error::Weights(format!("{}: width {width}, config says {}", v.path("conv1.weight"), cfg.width)));
        }
        let grid = input_side / p;
        let tb = v.pp("transformer").pp("resblocks");
        let layers = v.pp("transformer").count("resblocks")?;
        if layers != cfg.layers {
            return Err(Error::Weights(format!("{}: {layers} blocks, config says {}", v.path("transformer.resblocks"), cfg.layers)));
        }
        if cfg.heads == 0 || !width.is_multiple_of(cfg.heads) {
            return Err(Error::Config(format!("clip: width {width} is not a multiple of heads {}", cfg.heads)));
        }
        let resblocks = (0..layers)
            .map(|i| {
                let b = tb.pp(i);
                let a = b.pp("attn");
                let hidden = b.pp("mlp").pp("c_fc").leading_dim("weight")?;
                if hidden != cfg.mlp_width {
                    return Err(Error::Weights(format!("{}: {hidden} rows, config mlp_width {}", b.path("mlp.c_fc.weight"), cfg.mlp_width)));
                }
                let in_proj_weight = a.packed("in_proj_weight", &[3 * width, width])?;
                let in_proj_bias = a.values("in_proj_bias", &[3 * width])?;
                Ok(ResBlock {
                    ln_1: LayerNorm::load(&b.pp("ln_1"), width, eps)?,
                    attn: MultiheadAttention {
                        in_proj: Linear::from_packed(w.device(), in_proj_weight, Some(in_proj_bias))?,
                        out_proj: Linear::load(&a.pp("out_proj"), width, width, true)?,
                    },
                    ln_2: LayerNorm::load(&b.pp("ln_2"), width, eps)?,
                    mlp: Mlp {
                        c_fc: Linear::load(&b.pp("mlp").pp("c_fc"), hidden, width, true)?,
                        c_proj: Linear::load(&b.pp("mlp").pp("c_proj"), width, hidden, true)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipVit {
            embedding: PatchEmbedding {
                conv: PatchConv::load(&v.pp("conv1"), width, 3, p, false)?,
                class: v.tensor("class_embedding", &[width])?.reshape(&[1, width])?,
                // no interpolation upstream: the table must fit the input grid
                pos: v.tensor("positional_embedding", &[1 + grid * grid, width])?,
                grid,
            },
            ln_pre: LayerNorm::load(&v.pp("ln_pre"), width, eps)?,
            resblocks,
            ln_post: LayerNorm::load(&v.pp("ln_post"), width, eps)?,
            cfg: cfg.clone(),
        })
    }

    /// Tokens per view: class + grid².
    pub fn tokens(&self) -> usize {
        self.embedding.tokens()
    }

    /// views: each [3, side, side] (CLIP-normalised) → ln_post of every token, [views · tokens, W].
    pub fn forward(&self, device: &Device, views: &[ImageTensor]) -> Result<Tensor> {
        let (t, b) = (self.tokens(), views.len());
        let x = self.embedding.forward(device, views)?;
        let mut x = self.ln_pre.forward(&x)?;
        for blk in &self.resblocks {
            // x += out_proj(MHA(ln_1(x)))
            let qkv = blk.attn.in_proj.forward(&blk.ln_1.forward(&x)?)?; // [b·t, 3W] = (3, heads, hd) per row
            let a = fused_self_attention(&qkv, b, t, self.cfg.heads)?;
            drop(qkv);
            blk.attn.out_proj.forward_add(&mut x, &a)?;
            // x += c_proj(gelu(c_fc(ln_2(x))))
            let mut h = blk.mlp.c_fc.forward(&blk.ln_2.forward(&x)?)?;
            gelu_(&mut h)?;
            blk.mlp.c_proj.forward_add(&mut x, &h)?;
        }
        self.ln_post.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::weights::MemorySource;
    use crate::tensor::Device;

    /// Widths read from a shape: a 0-d tensor is refused naming it (no index panic), here and in
    /// the BLIP-2 tower.
    #[test]
    fn zero_dimensional_width_tensors_are_refused_by_name() {
        let src = |name: &str| MemorySource { name: "mem".into(), tensors: vec![(name.into(), vec![], vec![0.0])] };
        let cfg = crate::config::VisionConfig::preset(crate::config::LlamaType::Ens);
        let w = Weights::new(Box::new(src("visual.conv1.weight")), Device::Cpu);
        let e = ClipVit::load(&w, cfg.clip.as_ref().unwrap(), 224).err().expect("refused").to_string();
        assert!(e.contains("visual.conv1.weight") && e.contains("shape []"), "{e}");
        let w = Weights::new(Box::new(src("vision_model.embeddings.patch_embedding.weight")), Device::Cpu);
        let e = crate::models::qformer::Blip2QFormer::load(&w, cfg.qformer_vision.as_ref().unwrap(), cfg.qformer.as_ref().unwrap(), 224)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("patch_embedding.weight") && e.contains("shape []"), "{e}");
    }
}
