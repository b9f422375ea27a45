//! The SPHINX assembly (LLaMA2-Accessory `model/LLM/llama_ens*.py` `Transformer`): vision towers
//! per view, channel concatenation, `visual_proj`, `[start_img, tokens, end_img]` per view, inserted
//! after BOS in the decoder's input; the image's positions shift every later decode position.
//! The variant comes from `meta.json`'s llama_type (spec §2.5, §2.7, §3).

use super::convnext::{gap_tokens, ConvNext};
use super::dinov2::Dinov2;
use super::llama::{KvCache, Llama};
use crate::config::{LlamaType, ModelConfig};
use crate::image::{views_for, ImageTensor, ViewLayout};
use crate::kernels::copy2d::{concat_cols, copy2d, Strided};
use crate::nn::{LayerNorm, Linear, Weights};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

pub struct Sphinx {
    pub config: ModelConfig,
    convnext: ConvNext,
    dinov2: Dinov2,
    visual_proj: Linear,          // visual_proj.0
    visual_proj_norm: LayerNorm,  // visual_proj.1
    start_img: Tensor,            // [1, dim]
    end_img: Tensor,              // [1, dim]
    pub llm: Llama,
}

/// An encoded image: the embeddings inserted after BOS, plus (for traces) the tower outputs.
pub struct ImageEncoding {
    /// [image_words, dim]
    pub tokens: Tensor,
    /// Intermediate tensors by reference name (`convnext_feats`, `dinov2_feats`, `visual_proj_out`),
    /// kept only when asked for.
    pub intermediates: Vec<(&'static str, Vec<usize>, Tensor)>,
}

/// Side of the DINOv2 (and CLIP) input in every variant.
const TOWER_INPUT: usize = 224;

impl Sphinx {
    /// Builds the model from the root scope of a checkpoint (keys `llma.*`).
    pub fn load(root: &Weights, config: &ModelConfig, max_seq_len: usize) -> Result<Sphinx> {
        let w = root.pp("llma");
        let t = config.llama_type;
        if t.has_clip_qformer() {
            return Err(Error::Config(format!("{} ({}) is not supported yet", t.name(), t.release())));
        }
        let dim = config.llm.dim;
        let convnext = ConvNext::load(&w.pp("openclip_convnext_xxl"), &config.vision.convnext)?;
        let dinov2 = Dinov2::load(&w.pp("dinov2_vitg14"), &config.vision.dinov2, TOWER_INPUT)?;
        let fused = convnext.out_dim() + config.vision.dinov2.embed_dim;
        let visual_proj = Linear::load(&w.pp("visual_proj").pp("0"), dim, fused, true)?;
        let visual_proj_norm = LayerNorm::load(&w.pp("visual_proj").pp("1"), dim, 1e-5)?;
        let start_img = w.tensor("start_img", &[1, 1, dim])?.reshape(&[1, dim])?;
        let end_img = w.tensor("end_img", &[1, 1, dim])?.reshape(&[1, dim])?;
        let llm = Llama::load(&w, &config.llm, max_seq_len)?;
        root.finish()?;
        Ok(Sphinx { config: config.clone(), convnext, dinov2, visual_proj, visual_proj_norm, start_img, end_img, llm })
    }

    pub fn device(&self) -> Device {
        self.llm.device()
    }

    pub fn llama_type(&self) -> LlamaType {
        self.config.llama_type
    }

    /// Tokens one view contributes before the start/end tags (257).
    fn view_tokens(&self) -> usize {
        self.dinov2.tokens()
    }

    /// Embeddings one image inserts after BOS (1295 for SPHINX-Tiny-1k).
    pub fn image_words(&self) -> usize {
        self.llama_type().views() * (self.view_tokens() + 2)
    }

    /// The DINOv2 position embedding for the 224 input (a reference tensor).
    pub fn dinov2_pos_embed(&self) -> &[f32] {
        &self.dinov2.pos_embed
    }

    /// `padded` is the `padded_resize` output [3, S, S]; returns the image embeddings.
    pub fn encode_image(&self, padded: &ImageTensor, keep_intermediates: bool) -> Result<ImageEncoding> {
        let dev = self.device();
        let layout = ViewLayout::from_llama_type(self.llama_type().name())?;
        let views = views_for(layout, padded)?;
        let nv = views.convnext.len();
        let t = self.view_tokens();
        let (c, d, dim) = (self.convnext.out_dim(), self.config.vision.dinov2.embed_dim, self.config.llm.dim);
        // ConvNeXt, one view at a time (its activations are the largest): [nv·257, C]
        let mut conv = Tensor::empty(&dev, &[nv * t, c])?;
        for (i, v) in views.convnext.iter().enumerate() {
            let [_, h, w] = v.shape();
            let img = Tensor::from_slice(&dev, &[3, h, w], v.data())?;
            let (map, side) = self.convnext.forward(&img)?;
            let grid = (t - 1) as f64;
            let repeat = (grid.sqrt() as usize) / side;
            if side * repeat * side * repeat != t - 1 {
                return Err(Error::Shape(format!("ConvNeXt map {side}x{side} does not tile the {t}-token grid")));
            }
            let toks = gap_tokens(&map, side, repeat)?;
            copy2d(&mut conv, Strided::rows(i * t * c, c), &toks, Strided::rows(0, c), 1, t, c)?;
        }
        let dino = self.dinov2.forward(&dev, &views.dinov2)?; // [nv·257, D]
        let fused = concat_cols(&[&conv, &dino])?; // [nv·257, C + D]
        let proj = self.visual_proj_norm.forward(&self.visual_proj.forward(&fused)?)?; // [nv·257, dim]
        drop(fused);
        // per view: [start_img, 257 tokens, end_img]
        let per = t + 2;
        let mut tokens = Tensor::empty(&dev, &[nv * per, dim])?;
        let tags = Strided { offset: 0, row: 0, batch: 0 };
        copy2d(&mut tokens, Strided { offset: 0, row: dim, batch: per * dim }, &self.start_img, tags, nv, 1, dim)?;
        copy2d(&mut tokens, Strided { offset: dim, row: dim, batch: per * dim }, &proj, Strided { offset: 0, row: dim, batch: t * dim }, nv, t, dim)?;
        copy2d(&mut tokens, Strided { offset: (per - 1) * dim, row: dim, batch: per * dim }, &self.end_img, tags, nv, 1, dim)?;
        let intermediates = if keep_intermediates {
            vec![
                ("convnext_feats", vec![nv, t, c], conv),
                ("dinov2_feats", vec![nv, t, d], dino),
                ("visual_proj_out", vec![nv, t, dim], proj),
            ]
        } else {
            Vec::new()
        };
        Ok(ImageEncoding { tokens, intermediates })
    }

    /// The decoder input of a prompt: [embed(ids[0]), image…, embed(ids[1..])] ([L (+ image_words), dim]).
    pub fn input_embeds(&self, ids: &[u32], image: Option<&Tensor>) -> Result<Tensor> {
        let dim = self.config.llm.dim;
        if ids.is_empty() {
            return Err(Error::Config("empty prompt".into()));
        }
        let n_img = image.map_or(0, |t| t.rows());
        let mut x = Tensor::empty(&self.device(), &[ids.len() + n_img, dim])?;
        self.llm.embed_into(&mut x, 0, &ids[..1])?;
        if let Some(img) = image {
            img.expect_shape("image tokens", &[n_img, dim])?;
            copy2d(&mut x, Strided::rows(dim, dim), img, Strided::rows(0, dim), 1, n_img, dim)?;
        }
        self.llm.embed_into(&mut x, 1 + n_img, &ids[1..])?;
        Ok(x)
    }

    /// Prefill: runs the prompt (with the image after BOS) from an empty cache; returns the last
    /// position's logits [1, vocab].
    pub fn prefill(&self, cache: &mut KvCache, ids: &[u32], image: Option<&Tensor>) -> Result<Tensor> {
        cache.len = 0;
        let x = self.input_embeds(ids, image)?;
        self.llm.forward(x, cache)
    }

    /// One decode step: feeds `id` at the next position (text position + image words, spec §2.7).
    pub fn decode(&self, cache: &mut KvCache, id: u32) -> Result<Tensor> {
        let mut x = Tensor::empty(&self.device(), &[1, self.config.llm.dim])?;
        self.llm.embed_into(&mut x, 0, &[id])?;
        self.llm.forward(x, cache)
    }
}
