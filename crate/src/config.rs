//! Model configuration as data: upstream's `params.json`/`config.json` (LLaMA2-Accessory `ModelArgs`),
//! `meta.json` (llama_type), the golden folders' `vision.json`, and the full-size presets of every
//! vision tower. Sizes a tensor shape can tell are read from the shape by the loaders and checked
//! against these values.

use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;

/// Bounds every configuration is checked against ([`ModelConfig::validate`]): generous for the
/// released models (the largest width is 5120, the largest FFN 13824, the vocabulary 32000, 40
/// layers), small enough that no hostile config can ask for absurd allocations.
pub mod bounds {
    /// Any width: model dims, tower widths, head counts.
    pub const MAX_WIDTH: usize = 1 << 16;
    /// FFN / MLP hidden widths.
    pub const MAX_HIDDEN: usize = 1 << 18;
    /// LLM vocabulary.
    pub const MAX_VOCAB: usize = 1 << 20;
    /// Blocks or layers of any tower or of the LLM.
    pub const MAX_LAYERS: usize = 1024;
    /// Image sides (the padded square, DINOv2's training size).
    pub const MAX_IMAGE_SIZE: usize = 4096;
    /// Patch sides: at most the towers' 224-pixel input.
    pub const MAX_PATCH: usize = 224;
    /// Q-Former query tokens.
    pub const MAX_QUERY_TOKENS: usize = 4096;
}
use bounds::*;

/// `section.field v` must lie in 1..=max.
fn check_size(section: &str, field: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 || v > max {
        return Err(Error::Config(format!("{section}.{field} {v}: must be in 1..={max}")));
    }
    Ok(())
}

/// A LayerNorm/RMSNorm epsilon: finite, > 0 and < 1.
fn check_eps(section: &str, field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0 && v < 1.0) {
        return Err(Error::Config(format!("{section}.{field} {v}: must be finite, > 0 and < 1")));
    }
    Ok(())
}

/// A finite, positive float (rope theta, scaling).
fn check_positive(section: &str, field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::Config(format!("{section}.{field} {v}: must be finite and > 0")));
    }
    Ok(())
}

/// `heads` in 1..=width and dividing it.
fn check_heads(section: &str, width_field: &str, width: usize, heads_field: &str, heads: usize) -> Result<()> {
    check_size(section, heads_field, heads, width.max(1))?;
    if !width.is_multiple_of(heads) {
        return Err(Error::Config(format!("{section}.{heads_field} {heads} does not divide {section}.{width_field} {width}")));
    }
    Ok(())
}

/// Which SPHINX assembly a checkpoint is (`meta.json` → `llama_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LlamaType {
    /// SPHINX-Tiny-1k: ConvNeXt + DINOv2, 1024 px, global view + 4 tiles.
    #[serde(rename = "llama_ens5_light")]
    Ens5Light,
    /// SPHINX-Tiny: ConvNeXt + DINOv2, 512 px, one view.
    #[serde(rename = "llama_ens_light")]
    EnsLight,
    /// SPHINX: CLIP + ConvNeXt + DINOv2 + Q-Former, 224 px.
    #[serde(rename = "llama_ens")]
    Ens,
    /// SPHINX-1k / v2-1k: as SPHINX, 448 px, global view + 4 sub-images.
    #[serde(rename = "llama_ens5")]
    Ens5,
}

impl LlamaType {
    pub const ALL: [LlamaType; 4] = [LlamaType::Ens5Light, LlamaType::EnsLight, LlamaType::Ens, LlamaType::Ens5];

    pub fn name(self) -> &'static str {
        match self {
            LlamaType::Ens5Light => "llama_ens5_light",
            LlamaType::EnsLight => "llama_ens_light",
            LlamaType::Ens => "llama_ens",
            LlamaType::Ens5 => "llama_ens5",
        }
    }

    pub fn parse(s: &str) -> Result<LlamaType> {
        LlamaType::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            Error::Config(format!(
                "unknown llama_type {s:?}: supported are {}",
                LlamaType::ALL.map(|t| t.name()).join(", ")
            ))
        })
    }

    /// Side of the padded square the image is resized to (`Transformer.image_size`).
    pub fn image_size(self) -> usize {
        match self {
            LlamaType::Ens5Light => 1024,
            LlamaType::EnsLight => 512,
            LlamaType::Ens => 224,
            LlamaType::Ens5 => 448,
        }
    }

    /// Views each image is split into (global + 4 tiles, or one).
    pub fn views(self) -> usize {
        match self {
            LlamaType::Ens5Light | LlamaType::Ens5 => 5,
            LlamaType::EnsLight | LlamaType::Ens => 1,
        }
    }

    /// Side of each ConvNeXt input.
    pub fn convnext_size(self) -> usize {
        match self {
            LlamaType::Ens5Light | LlamaType::EnsLight => 512,
            LlamaType::Ens | LlamaType::Ens5 => 256,
        }
    }

    /// Side of each DINOv2 (and CLIP / Q-Former, where present) input.
    pub fn dinov2_size(self) -> usize {
        224
    }

    /// Whether the variant has the CLIP ViT-L tower and the BLIP-2 Q-Former.
    pub fn has_clip_qformer(self) -> bool {
        matches!(self, LlamaType::Ens | LlamaType::Ens5)
    }

    /// Product name, for messages.
    pub fn release(self) -> &'static str {
        match self {
            LlamaType::Ens5Light => "SPHINX-Tiny-1k",
            LlamaType::EnsLight => "SPHINX-Tiny",
            LlamaType::Ens => "SPHINX",
            LlamaType::Ens5 => "SPHINX-1k",
        }
    }
}

fn default_multiple_of() -> usize {
    256
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10000.0
}

/// Upstream `ModelArgs` as written in `config.json` / `params.json` (unknown fields ignored,
/// missing ones take upstream's defaults).
#[derive(Clone, Debug, Deserialize)]
pub struct ModelArgs {
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    #[serde(default)]
    pub vocab_size: Option<i64>,
    #[serde(default = "default_multiple_of")]
    pub multiple_of: usize,
    #[serde(default)]
    pub ffn_dim_multiplier: Option<f64>,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<f64>,
}

/// The LLaMA decoder's resolved hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// FFN hidden width (w1/w3 rows).
    pub ffn_hidden: usize,
    pub vocab_size: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<f64>,
}

/// Upstream FeedForward: hidden = int(2·4·dim/3), times ffn_dim_multiplier (then int), rounded up to
/// a multiple of multiple_of.
/// Saturates instead of overflowing (the result is then refused by [`LlmConfig::validate`]).
pub fn llama_ffn_hidden(dim: usize, multiple_of: usize, ffn_dim_multiplier: Option<f64>) -> usize {
    let mut hidden = dim.saturating_mul(8) / 3;
    if let Some(m) = ffn_dim_multiplier {
        hidden = (m * hidden as f64) as usize; // `as` saturates; NaN gives 0
    }
    multiple_of.saturating_mul(hidden.div_ceil(multiple_of.max(1)))
}

impl ModelArgs {
    /// Reads `config.json` (what upstream's save writes) or else `params.json` from a folder.
    pub fn read(dir: &Path) -> Result<(ModelArgs, String)> {
        for name in ["config.json", "params.json"] {
            let p = dir.join(name);
            if p.is_file() {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                let args: ModelArgs = serde_json::from_str(&text).map_err(|e| Error::format(p.display(), e))?;
                return Ok((args, p.display().to_string()));
            }
        }
        Err(Error::Config(format!("{}: neither config.json nor params.json found", dir.display())))
    }

    /// Resolves the LLM sizes (`vocab_size` comes from the embedding's shape) and validates them;
    /// errors name `source`.
    pub fn resolve(&self, vocab_size: usize, source: &str) -> Result<LlmConfig> {
        let n_kv_heads = self.n_kv_heads.unwrap_or(self.n_heads);
        check_heads("params", "dim", self.dim, "n_heads", self.n_heads).map_err(|e| Error::format(source, e))?;
        if let Some(v) = self.vocab_size {
            if v > 0 && v as u64 != vocab_size as u64 {
                return Err(Error::format(source, format!("vocab_size {v} but tok_embeddings has {vocab_size} rows")));
            }
        }
        if self.multiple_of == 0 {
            return Err(Error::format(source, "multiple_of 0: must be at least 1"));
        }
        if let Some(m) = self.ffn_dim_multiplier {
            check_positive("params", "ffn_dim_multiplier", m).map_err(|e| Error::format(source, e))?;
        }
        let llm = LlmConfig {
            dim: self.dim,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads,
            head_dim: self.dim / self.n_heads,
            ffn_hidden: llama_ffn_hidden(self.dim, self.multiple_of, self.ffn_dim_multiplier),
            vocab_size,
            norm_eps: self.norm_eps,
            rope_theta: self.rope_theta,
            rope_scaling: self.rope_scaling,
        };
        llm.validate().map_err(|e| Error::format(source, e))?;
        Ok(llm)
    }
}

impl LlmConfig {
    /// Sizes bounded, heads consistent with the width (n_heads · head_dim = dim, n_kv_heads
    /// dividing n_heads, an even head_dim for RoPE), eps and RoPE parameters finite and positive.
    pub fn validate(&self) -> Result<()> {
        let s = "llm";
        check_size(s, "dim", self.dim, MAX_WIDTH)?;
        check_size(s, "n_layers", self.n_layers, MAX_LAYERS)?;
        check_heads(s, "dim", self.dim, "n_heads", self.n_heads)?;
        check_heads(s, "n_heads", self.n_heads, "n_kv_heads", self.n_kv_heads)?;
        if self.head_dim.checked_mul(self.n_heads) != Some(self.dim) || !self.head_dim.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "llm.head_dim {}: must be even (RoPE) and n_heads {} × head_dim must equal dim {}",
                self.head_dim, self.n_heads, self.dim
            )));
        }
        check_size(s, "ffn_hidden", self.ffn_hidden, MAX_HIDDEN)?;
        check_size(s, "vocab_size", self.vocab_size, MAX_VOCAB)?;
        check_eps(s, "norm_eps", self.norm_eps)?;
        check_positive(s, "rope_theta", self.rope_theta)?;
        if let Some(r) = self.rope_scaling {
            check_positive(s, "rope_scaling", r)?;
        }
        Ok(())
    }
}

/// Reads `meta.json` → llama_type.
pub fn read_llama_type(dir: &Path) -> Result<LlamaType> {
    let p = dir.join("meta.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    #[derive(Deserialize)]
    struct Meta {
        llama_type: String,
    }
    let meta: Meta = serde_json::from_str(&text).map_err(|e| Error::format(p.display(), e))?;
    LlamaType::parse(&meta.llama_type).map_err(|e| Error::format(p.display(), e))
}

fn default_patch_size() -> usize {
    14
}
fn default_dinov2_img_size() -> usize {
    518
}
fn default_interpolate_offset() -> f64 {
    0.1
}
fn eps_1e5() -> f64 {
    1e-5
}
fn eps_1e6() -> f64 {
    1e-6
}
fn eps_1e12() -> f64 {
    1e-12
}
fn default_cross_attention_frequency() -> usize {
    2
}
fn default_num_query_tokens() -> usize {
    32
}

// The vision structs read both the manifest's `model.vision` and the golden folders' `vision.json`
// sections (which leave out what upstream hard-codes: the defaults below; other keys are notes).

/// timm ConvNeXt (open_clip `convnext_xxlarge` trunk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvNextConfig {
    pub depths: Vec<usize>,
    pub dims: Vec<usize>,
    #[serde(default = "eps_1e5")]
    pub norm_eps: f64,
}

/// DINOv2 ViT (hub `dinov2_vitg14`, SwiGLU FFN).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dinov2Config {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// Training image size: the position embedding grid is img_size / patch_size.
    #[serde(default = "default_dinov2_img_size")]
    pub img_size: usize,
    /// vision.json gives it as `ffn.hidden` (or leaves it to the SwiGLU rule): 0 until resolved.
    #[serde(default)]
    pub ffn_hidden: usize,
    #[serde(default = "eps_1e6")]
    pub norm_eps: f64,
    #[serde(default = "default_interpolate_offset")]
    pub interpolate_offset: f64,
}

/// open_clip ViT-L/14 visual tower (as SPHINX uses it: no projection).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "eps_1e5")]
    pub norm_eps: f64,
}

/// BLIP-2 EVA ViT-g image tower feeding the Q-Former.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "eps_1e6")]
    pub layer_norm_eps: f64,
}

/// BLIP-2 Q-Former (BERT-style, cross-attention every `cross_attention_frequency` layers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QFormerConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_cross_attention_frequency")]
    pub cross_attention_frequency: usize,
    pub encoder_hidden_size: usize,
    #[serde(default = "eps_1e12")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_num_query_tokens")]
    pub num_query_tokens: usize,
}

/// All vision hyper-parameters of one variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub image_size: usize,
    pub convnext: ConvNextConfig,
    pub dinov2: Dinov2Config,
    #[serde(default)]
    pub clip: Option<ClipConfig>,
    #[serde(default)]
    pub qformer_vision: Option<BlipVisionConfig>,
    #[serde(default)]
    pub qformer: Option<QFormerConfig>,
}

impl ConvNextConfig {
    /// One width and one depth per stage (at least one stage), widths and depths bounded.
    pub fn validate(&self) -> Result<()> {
        let s = "convnext";
        if self.dims.is_empty() || self.dims.len() != self.depths.len() {
            return Err(Error::Config(format!(
                "convnext.dims {:?} and convnext.depths {:?}: need one width and one depth per stage (at least one stage)",
                self.dims, self.depths
            )));
        }
        for (i, (&d, &depth)) in self.dims.iter().zip(&self.depths).enumerate() {
            check_size(s, &format!("dims[{i}]"), d, MAX_WIDTH)?;
            check_size(s, &format!("depths[{i}]"), depth, MAX_LAYERS)?;
        }
        check_eps(s, "norm_eps", self.norm_eps)
    }
}

impl Dinov2Config {
    pub fn validate(&self) -> Result<()> {
        let s = "dinov2";
        check_size(s, "embed_dim", self.embed_dim, MAX_WIDTH)?;
        check_size(s, "depth", self.depth, MAX_LAYERS)?;
        check_heads(s, "embed_dim", self.embed_dim, "num_heads", self.num_heads)?;
        check_size(s, "patch_size", self.patch_size, MAX_PATCH)?;
        check_size(s, "img_size", self.img_size, MAX_IMAGE_SIZE)?;
        if self.patch_size > self.img_size {
            return Err(Error::Config(format!("dinov2.patch_size {} exceeds dinov2.img_size {}", self.patch_size, self.img_size)));
        }
        check_size(s, "ffn_hidden", self.ffn_hidden, MAX_HIDDEN)?;
        check_eps(s, "norm_eps", self.norm_eps)?;
        if !(self.interpolate_offset.is_finite() && (0.0..1.0).contains(&self.interpolate_offset)) {
            return Err(Error::Config(format!("dinov2.interpolate_offset {}: must be finite, in [0, 1)", self.interpolate_offset)));
        }
        Ok(())
    }
}

impl ClipConfig {
    pub fn validate(&self) -> Result<()> {
        let s = "clip";
        check_size(s, "width", self.width, MAX_WIDTH)?;
        check_size(s, "layers", self.layers, MAX_LAYERS)?;
        check_heads(s, "width", self.width, "heads", self.heads)?;
        check_size(s, "mlp_width", self.mlp_width, MAX_HIDDEN)?;
        check_size(s, "patch_size", self.patch_size, MAX_PATCH)?;
        check_eps(s, "norm_eps", self.norm_eps)
    }
}

impl BlipVisionConfig {
    pub fn validate(&self) -> Result<()> {
        let s = "qformer_vision";
        check_size(s, "hidden_size", self.hidden_size, MAX_WIDTH)?;
        check_size(s, "num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        check_heads(s, "hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)?;
        check_size(s, "intermediate_size", self.intermediate_size, MAX_HIDDEN)?;
        check_size(s, "patch_size", self.patch_size, MAX_PATCH)?;
        check_eps(s, "layer_norm_eps", self.layer_norm_eps)
    }
}

impl QFormerConfig {
    pub fn validate(&self) -> Result<()> {
        let s = "qformer";
        check_size(s, "hidden_size", self.hidden_size, MAX_WIDTH)?;
        check_size(s, "num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        check_heads(s, "hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)?;
        check_size(s, "intermediate_size", self.intermediate_size, MAX_HIDDEN)?;
        check_size(s, "cross_attention_frequency", self.cross_attention_frequency, MAX_LAYERS)?;
        check_size(s, "encoder_hidden_size", self.encoder_hidden_size, MAX_WIDTH)?;
        check_size(s, "num_query_tokens", self.num_query_tokens, MAX_QUERY_TOKENS)?;
        check_eps(s, "layer_norm_eps", self.layer_norm_eps)
    }
}

impl VisionConfig {
    /// Every tower's config, the image size, and the CLIP/Q-Former towers all present or all absent
    /// (the Q-Former reading the BLIP-2 tower's width).
    pub fn validate(&self) -> Result<()> {
        check_size("vision", "image_size", self.image_size, MAX_IMAGE_SIZE)?;
        self.convnext.validate()?;
        self.dinov2.validate()?;
        match (&self.clip, &self.qformer_vision, &self.qformer) {
            (None, None, None) => Ok(()),
            (Some(c), Some(v), Some(q)) => {
                c.validate()?;
                v.validate()?;
                q.validate()?;
                if q.encoder_hidden_size != v.hidden_size {
                    return Err(Error::Config(format!(
                        "qformer.encoder_hidden_size {} but qformer_vision.hidden_size {}",
                        q.encoder_hidden_size, v.hidden_size
                    )));
                }
                Ok(())
            }
            _ => Err(Error::Config("clip, qformer_vision and qformer: give all three or none".into())),
        }
    }
}

/// DINOv2's SwiGLUFFNFused hidden width: (int(int(4·D)·2/3) + 7) // 8 · 8.
pub fn dinov2_ffn_hidden(embed_dim: usize) -> usize {
    (4 * embed_dim * 2 / 3).div_ceil(8) * 8
}

impl VisionConfig {
    /// The released towers' sizes for a variant.
    pub fn preset(t: LlamaType) -> VisionConfig {
        let convnext = ConvNextConfig { depths: vec![3, 4, 30, 3], dims: vec![384, 768, 1536, 3072], norm_eps: 1e-5 };
        let dinov2 = Dinov2Config {
            embed_dim: 1536,
            depth: 40,
            num_heads: 24,
            patch_size: 14,
            img_size: 518,
            ffn_hidden: dinov2_ffn_hidden(1536),
            norm_eps: 1e-6,
            interpolate_offset: 0.1,
        };
        let (clip, qformer_vision, qformer) = if t.has_clip_qformer() {
            (
                Some(ClipConfig { width: 1024, layers: 24, heads: 16, mlp_width: 4096, patch_size: 14, norm_eps: 1e-5 }),
                Some(BlipVisionConfig {
                    hidden_size: 1408,
                    num_hidden_layers: 39,
                    num_attention_heads: 16,
                    intermediate_size: 6144,
                    patch_size: 14,
                    layer_norm_eps: 1e-6,
                }),
                Some(QFormerConfig {
                    hidden_size: 768,
                    num_hidden_layers: 12,
                    num_attention_heads: 12,
                    intermediate_size: 3072,
                    cross_attention_frequency: 2,
                    encoder_hidden_size: 1408,
                    layer_norm_eps: 1e-12,
                    num_query_tokens: 32,
                }),
            )
        } else {
            (None, None, None)
        };
        VisionConfig { image_size: t.image_size(), convnext, dinov2, clip, qformer_vision, qformer }
    }

    /// `vision.json` beside the checkpoint (the golden folders' format) when present, else the
    /// preset; validated either way (errors name the file).
    pub fn read(dir: &Path, t: LlamaType) -> Result<VisionConfig> {
        let p = dir.join("vision.json");
        if !p.is_file() {
            return Ok(VisionConfig::preset(t));
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        VisionConfig::from_vision_json(&text, t).map_err(|e| Error::format(p.display(), e))
    }

    fn from_vision_json(text: &str, t: LlamaType) -> Result<VisionConfig> {
        let v: VisionJson = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        if let Some(lt) = &v.llama_type {
            if lt != t.name() {
                return Err(Error::Config(format!("llama_type {lt} but meta.json says {}", t.name())));
            }
        }
        let image_size = v.image.image_size;
        if image_size != t.image_size() {
            return Err(Error::Config(format!("image.image_size {image_size}, but {} takes {}", t.name(), t.image_size())));
        }
        let ffn: Dinov2FfnSection = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let mut dinov2 = v.dinov2;
        dinov2.ffn_hidden = ffn.dinov2.ffn.map_or_else(|| dinov2_ffn_hidden(dinov2.embed_dim.min(MAX_WIDTH)), |f| f.hidden);
        let (clip, qformer_vision, qformer) = if t.has_clip_qformer() {
            let what = |name: &str| Error::Config(format!("{name} missing: {} has a CLIP tower and a Q-Former", t.name()));
            let q = v.qformer.ok_or_else(|| what("qformer"))?;
            (Some(v.clip.ok_or_else(|| what("clip"))?), Some(q.vision), Some(q.qformer))
        } else {
            (None, None, None)
        };
        let config = VisionConfig { image_size, convnext: v.convnext, dinov2, clip, qformer_vision, qformer };
        config.validate()?;
        Ok(config)
    }
}

/// The golden folders' `vision.json`: the sections the engine reads (the rest are notes).
#[derive(Deserialize)]
struct VisionJson {
    #[serde(default)]
    llama_type: Option<String>,
    image: ImageSection,
    convnext: ConvNextConfig,
    dinov2: Dinov2Config,
    #[serde(default)]
    clip: Option<ClipConfig>,
    #[serde(default)]
    qformer: Option<QFormerSection>,
}

#[derive(Deserialize)]
struct ImageSection {
    image_size: usize,
}

#[derive(Deserialize)]
struct QFormerSection {
    vision: BlipVisionConfig,
    qformer: QFormerConfig,
}

/// `dinov2.ffn.hidden` of vision.json (read in a second pass over the same text).
#[derive(Deserialize)]
struct Dinov2FfnSection {
    dinov2: Dinov2Ffn,
}

#[derive(Deserialize)]
struct Dinov2Ffn {
    #[serde(default)]
    ffn: Option<FfnSection>,
}

#[derive(Deserialize)]
struct FfnSection {
    hidden: usize,
}

/// Everything needed to build a model: the variant, the LLM and the vision sizes. Deserializing
/// one (a manifest's `model`) validates it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ModelConfig {
    pub llama_type: LlamaType,
    pub llm: LlmConfig,
    pub vision: VisionConfig,
}

impl ModelConfig {
    /// The LLM and every vision config valid, and the vision stack the one `llama_type` has
    /// (its image size; CLIP and Q-Former exactly for llama_ens / llama_ens5).
    pub fn validate(&self) -> Result<()> {
        self.llm.validate()?;
        self.vision.validate()?;
        let t = self.llama_type;
        if self.vision.image_size != t.image_size() {
            return Err(Error::Config(format!("vision.image_size {}, but {} takes {}", self.vision.image_size, t.name(), t.image_size())));
        }
        if self.vision.clip.is_some() != t.has_clip_qformer() {
            return Err(Error::Config(format!(
                "{} {} CLIP and Q-Former towers, but the config {} them",
                t.name(),
                if t.has_clip_qformer() { "has" } else { "has no" },
                if self.vision.clip.is_some() { "gives" } else { "lacks" }
            )));
        }
        Ok(())
    }
}

// `remote = "Self"` makes the derives inherent functions; the trait impls wrap them (validating).
impl Serialize for ModelConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ModelConfig::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let config = ModelConfig::deserialize(d)?;
        config.validate().map_err(serde::de::Error::custom)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffn_hidden_matches_upstream() {
        assert_eq!(llama_ffn_hidden(2048, 256, None), 5632); // TinyLlama
        assert_eq!(llama_ffn_hidden(5120, 256, None), 13824); // LLaMA-2-13B
        assert_eq!(llama_ffn_hidden(64, 32, None), 192); // dev
        assert_eq!(llama_ffn_hidden(8192, 4096, Some(1.3)), 28672); // LLaMA-2-70B
        assert_eq!(dinov2_ffn_hidden(1536), 4096);
        assert_eq!(dinov2_ffn_hidden(48), 128);
    }

    #[test]
    fn golden_configs_parse() {
        for (name, t) in [("sphinx-tiny-1k-dev", LlamaType::Ens5Light), ("sphinx-1k-dev", LlamaType::Ens5)] {
            let dir = crate::testing::golden_dir(name);
            assert_eq!(read_llama_type(&dir).unwrap(), t);
            let v = VisionConfig::read(&dir, t).unwrap();
            assert_eq!(v.convnext.dims, vec![16, 32, 48, 64]);
            assert_eq!(v.dinov2.ffn_hidden, 128);
            assert_eq!(v.clip.is_some(), t.has_clip_qformer());
            let (args, src) = ModelArgs::read(&dir).unwrap();
            let llm = args.resolve(32000, &src).unwrap();
            assert_eq!((llm.head_dim, llm.ffn_hidden), (16, 192));
        }
        assert!(LlamaType::parse("llama_ens7").unwrap_err().to_string().contains("unknown llama_type"));
        // the serde sections read what the golden files give (defaults where they are silent)
        let v = VisionConfig::read(&crate::testing::golden_dir("sphinx-1k-dev"), LlamaType::Ens5).unwrap();
        let c = v.clip.unwrap();
        assert_eq!((c.width, c.layers, c.heads, c.mlp_width, c.patch_size, c.norm_eps), (48, 2, 3, 192, 14, 1e-5));
        let (b, q) = (v.qformer_vision.unwrap(), v.qformer.unwrap());
        assert_eq!((b.hidden_size, b.num_attention_heads, b.intermediate_size, b.layer_norm_eps), (40, 4, 96, 1e-6));
        assert_eq!((q.hidden_size, q.num_hidden_layers, q.cross_attention_frequency, q.num_query_tokens, q.encoder_hidden_size), (32, 3, 2, 32, 40));
        assert_eq!((v.dinov2.norm_eps, v.dinov2.interpolate_offset, v.dinov2.img_size), (1e-6, 0.1, 518));
    }

    fn err_of(c: &ModelConfig) -> String {
        c.validate().expect_err("refused").to_string()
    }

    #[test]
    fn presets_and_demo_configs_validate() {
        for t in LlamaType::ALL {
            crate::models::params::preset(t).validate().unwrap();
        }
        for size in [crate::convert::DemoSize::Tiny, crate::convert::DemoSize::Wide, crate::convert::DemoSize::Full] {
            size.config().validate().unwrap();
        }
    }

    #[test]
    fn validate_names_the_field_at_fault() {
        let ok = crate::models::params::preset(LlamaType::Ens5);
        type Edit = Box<dyn Fn(&mut ModelConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("convnext.dims [] and convnext.depths", Box::new(|c| c.vision.convnext.dims.clear())),
            ("convnext.dims [384, 768, 1536] and", Box::new(|c| { c.vision.convnext.dims.pop(); })),
            ("convnext.dims[1] 0", Box::new(|c| c.vision.convnext.dims[1] = 0)),
            ("convnext.norm_eps NaN", Box::new(|c| c.vision.convnext.norm_eps = f64::NAN)),
            ("dinov2.patch_size 0", Box::new(|c| c.vision.dinov2.patch_size = 0)),
            ("dinov2.num_heads 0", Box::new(|c| c.vision.dinov2.num_heads = 0)),
            ("dinov2.num_heads 7 does not divide dinov2.embed_dim 1536", Box::new(|c| c.vision.dinov2.num_heads = 7)),
            ("dinov2.img_size 100000", Box::new(|c| c.vision.dinov2.img_size = 100000)),
            ("dinov2.interpolate_offset inf", Box::new(|c| c.vision.dinov2.interpolate_offset = f64::INFINITY)),
            ("clip.heads 0", Box::new(|c| c.vision.clip.as_mut().unwrap().heads = 0)),
            ("qformer_vision.num_attention_heads 5 does not divide", Box::new(|c| c.vision.qformer_vision.as_mut().unwrap().num_attention_heads = 5)),
            ("qformer.cross_attention_frequency 0", Box::new(|c| c.vision.qformer.as_mut().unwrap().cross_attention_frequency = 0)),
            ("qformer.encoder_hidden_size 1000 but", Box::new(|c| c.vision.qformer.as_mut().unwrap().encoder_hidden_size = 1000)),
            ("give all three or none", Box::new(|c| c.vision.qformer = None)),
            ("llm.norm_eps -1", Box::new(|c| c.llm.norm_eps = -1.0)),
            ("llm.rope_theta 0", Box::new(|c| c.llm.rope_theta = 0.0)),
            ("llm.rope_scaling NaN", Box::new(|c| c.llm.rope_scaling = Some(f64::NAN))),
            ("llm.n_kv_heads 3 does not divide llm.n_heads 40", Box::new(|c| c.llm.n_kv_heads = 3)),
            ("llm.head_dim 64", Box::new(|c| c.llm.head_dim = 64)),
            ("llm.vocab_size 8589934592", Box::new(|c| c.llm.vocab_size = 1 << 33)),
            ("llm.n_layers 0", Box::new(|c| c.llm.n_layers = 0)),
            ("vision.image_size 224, but llama_ens5 takes 448", Box::new(|c| c.vision.image_size = 224)),
            ("llama_ens_light has no CLIP and Q-Former towers, but the config gives them", Box::new(|c| {
                c.llama_type = LlamaType::EnsLight;
                c.vision.image_size = 512;
            })),
        ];
        for (needle, edit) in cases {
            let mut c = ok.clone();
            edit(&mut c);
            let e = err_of(&c);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn a_manifest_model_is_validated_when_read() {
        let mut c = crate::convert::demo_config();
        let good = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ModelConfig>(&good).unwrap(), c);
        c.vision.dinov2.num_heads = 5;
        let e = serde_json::from_str::<ModelConfig>(&serde_json::to_string(&c).unwrap()).unwrap_err().to_string();
        assert!(e.contains("dinov2.num_heads 5 does not divide dinov2.embed_dim 48"), "{e}");
    }

    #[test]
    fn params_json_is_resolved_with_checked_sizes() {
        let args = |json: &str| serde_json::from_str::<ModelArgs>(json).unwrap();
        let e = args(r#"{"dim": 64, "n_layers": 2, "n_heads": 0}"#).resolve(32000, "p.json").unwrap_err().to_string();
        assert!(e.contains("p.json") && e.contains("params.n_heads 0"), "{e}");
        let e = args(r#"{"dim": 18446744073709551615, "n_layers": 2, "n_heads": 1}"#).resolve(32000, "p.json").unwrap_err().to_string();
        assert!(e.contains("llm.dim 18446744073709551615"), "{e}");
        let e = args(r#"{"dim": 64, "n_layers": 2, "n_heads": 4, "norm_eps": -1}"#).resolve(32000, "p.json").unwrap_err().to_string();
        assert!(e.contains("llm.norm_eps -1"), "{e}");
        let e = args(r#"{"dim": 64, "n_layers": 2, "n_heads": 4, "ffn_dim_multiplier": -2}"#).resolve(32000, "p.json").unwrap_err().to_string();
        assert!(e.contains("ffn_dim_multiplier -2"), "{e}");
        assert!(args(r#"{"dim": 64, "n_layers": 2, "n_heads": 4, "multiple_of": 32}"#).resolve(32000, "p.json").is_ok());
    }

    #[test]
    fn vision_json_sections_are_checked() {
        let dir = crate::testing::golden_dir("sphinx-tiny-1k-dev");
        let text = std::fs::read_to_string(dir.join("vision.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["dinov2"]["patch_size"] = 0.into();
        let e = VisionConfig::from_vision_json(&v.to_string(), LlamaType::Ens5Light).unwrap_err().to_string();
        assert!(e.contains("dinov2.patch_size 0"), "{e}");
        v["dinov2"]["patch_size"] = "14".into();
        let e = VisionConfig::from_vision_json(&v.to_string(), LlamaType::Ens5Light).unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
    }
}
