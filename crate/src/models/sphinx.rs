//! The SPHINX assembly (LLaMA2-Accessory `model/LLM/llama_ens*.py` `Transformer`): vision towers
//! per view, channel concatenation, `visual_proj` (and `qformer_proj`), `[start_img, tokens, end_img]`
//! per view, inserted after BOS in the decoder's input; the image's positions shift every later
//! decode position. The variant comes from `meta.json`'s llama_type (spec §2.5, §2.7, §3):
//! - `llama_ens5_light` / `llama_ens_light`: per view [ConvNeXt C | DINOv2 D] → visual_proj → 257 tokens;
//! - `llama_ens5` / `llama_ens`: per sub-image [CLIP W | ConvNeXt C | DINOv2 D] → visual_proj (257) and
//!   the Q-Former's 32 outputs → qformer_proj, as [start_img, 32, 257, end_img].

use super::clip_vit::ClipVit;
use super::convnext::{gap_tokens, ConvNext};
use super::dinov2::Dinov2;
use super::llama::{KvCache, Llama};
use super::qformer::Blip2QFormer;
use crate::config::{LlamaType, ModelConfig};
use crate::image::{views_for, ImageTensor};
use crate::kernels::copy2d::{concat_cols, copy2d};
use crate::shapes::Strided;
use crate::nn::{LayerNorm, Linear, Weights};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// The towers only `llama_ens` / `llama_ens5` have.
struct ClipQFormer {
    clip: ClipVit,
    qformer: Blip2QFormer,
    qformer_proj: Linear,          // qformer_proj.0
    qformer_proj_norm: LayerNorm,  // qformer_proj.1
}

pub struct Sphinx {
    pub config: ModelConfig,
    ens: Option<ClipQFormer>,
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
    /// Intermediate tensors by reference name (`clip_feats`, `qformer_vision_feats`, `qformer_feats`,
    /// `qformer_proj_out`, `convnext_feats`, `dinov2_feats`, `visual_proj_out`), kept only when asked for.
    pub intermediates: Vec<(&'static str, Vec<usize>, Tensor)>,
}

/// Side of the DINOv2, CLIP and Q-Former input in every variant.
const TOWER_INPUT: usize = 224;
/// `visual_proj` / `qformer_proj` LayerNorm: torch's default eps.
const PROJ_NORM_EPS: f64 = 1e-5;

impl Sphinx {
    /// Builds the model from the root scope of a checkpoint (keys `llma.*`).
    pub fn load(root: &Weights, config: &ModelConfig, max_seq_len: usize) -> Result<Sphinx> {
        let llm_scope = root.pp("llma");
        // everything but the decoder multiplies whole images' tokens at once
        let w = llm_scope.with_rows(crate::nn::Rows::Batch);
        let t = config.llama_type;
        let dim = config.llm.dim;
        let convnext = ConvNext::load(&w.pp("openclip_convnext_xxl"), &config.vision.convnext)?;
        let dinov2 = Dinov2::load(&w.pp("dinov2_vitg14"), &config.vision.dinov2, TOWER_INPUT)?;
        let ens = if t.has_clip_qformer() {
            let v = &config.vision;
            let (Some(cc), Some(vc), Some(qc)) = (&v.clip, &v.qformer_vision, &v.qformer) else {
                return Err(Error::Config(format!("{} ({}) needs the clip and qformer configs", t.name(), t.release())));
            };
            let clip = ClipVit::load(&w.pp("clip"), cc, TOWER_INPUT)?;
            if clip.tokens() != dinov2.tokens() {
                return Err(Error::Shape(format!("clip gives {} tokens per view, dinov2 {}", clip.tokens(), dinov2.tokens())));
            }
            let qformer = Blip2QFormer::load(&w.pp("qformer"), vc, qc, TOWER_INPUT)?;
            let h = qformer.hidden_size();
            Some(ClipQFormer {
                clip,
                qformer,
                qformer_proj: Linear::load(&w.pp("qformer_proj").pp("0"), dim, h, true)?,
                qformer_proj_norm: LayerNorm::load(&w.pp("qformer_proj").pp("1"), dim, PROJ_NORM_EPS)?,
            })
        } else {
            None
        };
        let clip_width = ens.as_ref().map_or(0, |e| e.clip.cfg.width);
        let fused = clip_width + convnext.out_dim() + config.vision.dinov2.embed_dim;
        let visual_proj = Linear::load(&w.pp("visual_proj").pp("0"), dim, fused, true)?;
        let visual_proj_norm = LayerNorm::load(&w.pp("visual_proj").pp("1"), dim, PROJ_NORM_EPS)?;
        let start_img = w.tensor("start_img", &[1, 1, dim])?.reshape(&[1, dim])?;
        let end_img = w.tensor("end_img", &[1, 1, dim])?.reshape(&[1, dim])?;
        let llm = Llama::load(&llm_scope, &config.llm, max_seq_len)?;
        root.finish()?;
        Ok(Sphinx { config: config.clone(), ens, convnext, dinov2, visual_proj, visual_proj_norm, start_img, end_img, llm })
    }

    pub fn device(&self) -> Device {
        self.llm.device()
    }

    /// The precision the model was built at (f16: weights stored as f16, an f16 KV cache).
    pub fn precision(&self) -> crate::nn::Precision {
        if self.llm.kv_f16 {
            crate::nn::Precision::F16
        } else {
            crate::nn::Precision::F32
        }
    }

    pub fn llama_type(&self) -> LlamaType {
        self.config.llama_type
    }

    /// Fused tokens one view contributes (257).
    fn view_tokens(&self) -> usize {
        self.dinov2.tokens()
    }

    /// Q-Former tokens one view contributes (32; 0 for the light variants).
    fn query_tokens(&self) -> usize {
        self.ens.as_ref().map_or(0, |e| e.qformer.num_queries())
    }

    /// Embeddings one image inserts after BOS: views · (2 + queries + 257), i.e. 1295 (Tiny-1k),
    /// 259 (Tiny), 291 (SPHINX), 1455 (SPHINX-1k).
    pub fn image_words(&self) -> usize {
        self.llama_type().views() * (self.query_tokens() + self.view_tokens() + 2)
    }

    /// The DINOv2 position embedding for the 224 input (a reference tensor).
    pub fn dinov2_pos_embed(&self) -> &[f32] {
        &self.dinov2.pos_embed
    }

    /// ConvNeXt on the views, one at a time (its activations are the largest): [nv·257, C].
    fn convnext_tokens(&self, views: &[ImageTensor]) -> Result<Tensor> {
        let dev = self.device();
        let (t, c) = (self.view_tokens(), self.convnext.out_dim());
        let mut conv = Tensor::empty(&dev, &[views.len() * t, c])?;
        for (i, v) in views.iter().enumerate() {
            dev.release_idle(); // the previous view's last-stage buffers
            let [_, h, w] = v.shape();
            let img = Tensor::from_slice(&dev, &[3, h, w], v.data())?;
            let (map, side) = self.convnext.forward(&img)?;
            let grid = (t - 1) as f64;
            let repeat = (grid.sqrt() as usize) / side;
            if side * repeat * side * repeat != t - 1 {
                return Err(Error::Shape(format!("ConvNeXt map {side}x{side} does not tile the {t}-token grid")));
            }
            let toks = gap_tokens(&map, side, repeat)?; // [257, C]
            copy2d(&mut conv, Strided::rows(i * t * c, c), &toks, Strided::rows(0, c), 1, t, c)?;
        }
        dev.release_idle();
        Ok(conv)
    }

    /// The vision towers of this variant, by the names [`Sphinx::encode_tower`] takes.
    pub fn towers(&self) -> Vec<&'static str> {
        let mut t = vec!["convnext", "dinov2"];
        if self.ens.is_some() {
            t.extend(["clip", "qformer"]);
        }
        t
    }

    /// Runs one vision tower alone on the views of `padded` (for benchmarks): its output features.
    pub fn encode_tower(&self, padded: &ImageTensor, tower: &str) -> Result<Tensor> {
        let dev = self.device();
        let views = views_for(self.llama_type(), padded)?;
        match (tower, &self.ens) {
            ("convnext", _) => self.convnext_tokens(&views.convnext),
            ("dinov2", _) => self.dinov2.forward(&dev, &views.dinov2),
            ("clip", Some(e)) => e.clip.forward(&dev, &views.clip),
            ("qformer", Some(e)) => Ok(e.qformer.forward(&dev, &views.clip)?.1),
            _ => Err(Error::Config(format!("no vision tower {tower} in {}", self.llama_type().name()))),
        }
    }

    /// `padded` is the `padded_resize` output [3, S, S]; returns the image embeddings.
    pub fn encode_image(&self, padded: &ImageTensor, keep_intermediates: bool) -> Result<ImageEncoding> {
        let encoding = self.device().run(|| self.encode_views(padded, keep_intermediates));
        // the towers' outputs, dropped on return, are freed rather than left idle in the pool
        self.device().release_idle();
        encoding
    }

    fn encode_views(&self, padded: &ImageTensor, keep_intermediates: bool) -> Result<ImageEncoding> {
        let dev = self.device();
        let layout = self.llama_type();
        let views = views_for(layout, padded)?;
        let nv = views.convnext.len();
        let t = self.view_tokens();
        let (c, d, dim) = (self.convnext.out_dim(), self.config.vision.dinov2.embed_dim, self.config.llm.dim);
        let mut intermediates = Vec::new();
        // CLIP and Q-Former on the CLIP-normalised sub-images (llama_ens*): [nv·257, W], [nv·Nq, dim]
        let mut clip_qformer = None;
        if let Some(e) = &self.ens {
            let clip = e.clip.forward(&dev, &views.clip)?;
            let (vision, qf) = e.qformer.forward(&dev, &views.clip)?;
            let qp = e.qformer_proj_norm.forward(&e.qformer_proj.forward(&qf)?)?;
            if keep_intermediates {
                let (wv, nq, h) = (e.qformer.vision_width(), e.qformer.num_queries(), e.qformer.hidden_size());
                intermediates.push(("clip_feats", vec![nv, t, e.clip.cfg.width], clip.try_clone()?));
                intermediates.push(("qformer_vision_feats", vec![nv, e.qformer.vision_tokens(), wv], vision));
                intermediates.push(("qformer_feats", vec![nv, nq, h], qf));
                intermediates.push(("qformer_proj_out", vec![nv, nq, dim], qp.try_clone()?));
            }
            clip_qformer = Some((clip, qp));
        }
        let conv = self.convnext_tokens(&views.convnext)?; // [nv·257, C]
        let dino = self.dinov2.forward(&dev, &views.dinov2)?; // [nv·257, D]
        dev.release_idle();
        // [nv·257, (W +) C + D]
        let fused = match &clip_qformer {
            Some((clip, _)) => concat_cols(&[clip, &conv, &dino])?,
            None => concat_cols(&[&conv, &dino])?,
        };
        let proj = self.visual_proj_norm.forward(&self.visual_proj.forward(&fused)?)?; // [nv·257, dim]
        drop(fused);
        // per view: [start_img, Nq query tokens, 257 tokens, end_img]
        let nq = self.query_tokens();
        let per = nq + t + 2;
        let mut tokens = Tensor::empty(&dev, &[nv * per, dim])?;
        let at = |row: usize| Strided { offset: row * dim, row: dim, batch: per * dim };
        let tags = Strided { offset: 0, row: 0, batch: 0 };
        copy2d(&mut tokens, at(0), &self.start_img, tags, nv, 1, dim)?;
        if let Some((_, qp)) = &clip_qformer {
            copy2d(&mut tokens, at(1), qp, Strided { offset: 0, row: dim, batch: nq * dim }, nv, nq, dim)?;
        }
        copy2d(&mut tokens, at(1 + nq), &proj, Strided { offset: 0, row: dim, batch: t * dim }, nv, t, dim)?;
        copy2d(&mut tokens, at(per - 1), &self.end_img, tags, nv, 1, dim)?;
        if keep_intermediates {
            intermediates.push(("convnext_feats", vec![nv, t, c], conv));
            intermediates.push(("dinov2_feats", vec![nv, t, d], dino));
            intermediates.push(("visual_proj_out", vec![nv, t, dim], proj));
        }
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
        let logits = self.device().run(|| self.llm.forward(x, cache))?;
        // decode steps use other sizes: the prompt's idle buffers need not wait for them
        self.device().release_idle();
        Ok(logits)
    }

    /// One decode step: feeds `id` at the next position (text position + image words, spec §2.7).
    pub fn decode(&self, cache: &mut KvCache, id: u32) -> Result<Tensor> {
        let mut x = Tensor::empty(&self.device(), &[1, self.config.llm.dim])?;
        self.llm.embed_into(&mut x, 0, &[id])?;
        self.device().run(|| self.llm.forward(x, cache))
    }
}
