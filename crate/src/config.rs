//! Model configuration as data: upstream's `params.json`/`config.json` (LLaMA2-Accessory `ModelArgs`),
//! `meta.json` (llama_type), the golden folders' `vision.json`, and the full-size presets of every
//! vision tower. Sizes a tensor shape can tell are read from the shape by the loaders and checked
//! against these values.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

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
pub fn llama_ffn_hidden(dim: usize, multiple_of: usize, ffn_dim_multiplier: Option<f64>) -> usize {
    let mut hidden = 2 * (4 * dim) / 3;
    if let Some(m) = ffn_dim_multiplier {
        hidden = (m * hidden as f64) as usize;
    }
    multiple_of * hidden.div_ceil(multiple_of.max(1))
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

    /// Resolves the LLM sizes; `vocab_size` comes from the embedding's shape.
    pub fn resolve(&self, vocab_size: usize, source: &str) -> Result<LlmConfig> {
        let n_kv_heads = self.n_kv_heads.unwrap_or(self.n_heads);
        if self.n_heads == 0 || self.dim % self.n_heads != 0 {
            return Err(Error::Config(format!("{source}: dim {} is not a multiple of n_heads {}", self.dim, self.n_heads)));
        }
        if n_kv_heads == 0 || self.n_heads % n_kv_heads != 0 {
            return Err(Error::Config(format!("{source}: n_heads {} is not a multiple of n_kv_heads {n_kv_heads}", self.n_heads)));
        }
        if let Some(v) = self.vocab_size {
            if v > 0 && v as usize != vocab_size {
                return Err(Error::Config(format!(
                    "{source}: vocab_size {v} but tok_embeddings has {vocab_size} rows"
                )));
            }
        }
        Ok(LlmConfig {
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
        })
    }
}

/// Reads `meta.json` → llama_type.
pub fn read_llama_type(dir: &Path) -> Result<LlamaType> {
    let p = dir.join("meta.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::format(p.display(), e))?;
    let t = v["llama_type"]
        .as_str()
        .ok_or_else(|| Error::format(p.display(), "no string field llama_type"))?;
    LlamaType::parse(t).map_err(|e| Error::format(p.display(), e))
}

/// timm ConvNeXt (open_clip `convnext_xxlarge` trunk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvNextConfig {
    pub depths: Vec<usize>,
    pub dims: Vec<usize>,
    pub norm_eps: f64,
}

/// DINOv2 ViT (hub `dinov2_vitg14`, SwiGLU FFN).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dinov2Config {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub patch_size: usize,
    /// Training image size: the position embedding grid is img_size / patch_size.
    pub img_size: usize,
    pub ffn_hidden: usize,
    pub norm_eps: f64,
    pub interpolate_offset: f64,
}

/// open_clip ViT-L/14 visual tower (as SPHINX uses it: no projection).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub patch_size: usize,
    pub norm_eps: f64,
}

/// BLIP-2 EVA ViT-g image tower feeding the Q-Former.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    pub layer_norm_eps: f64,
}

/// BLIP-2 Q-Former (BERT-style, cross-attention every `cross_attention_frequency` layers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QFormerConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub cross_attention_frequency: usize,
    pub encoder_hidden_size: usize,
    pub layer_norm_eps: f64,
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

    /// `vision.json` beside the checkpoint (the golden folders' format) when present, else the preset.
    pub fn read(dir: &Path, t: LlamaType) -> Result<VisionConfig> {
        let p = dir.join("vision.json");
        if !p.is_file() {
            return Ok(VisionConfig::preset(t));
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::format(p.display(), e))?;
        VisionConfig::from_vision_json(&v, t).map_err(|e| Error::format(p.display(), e))
    }

    fn from_vision_json(v: &Value, t: LlamaType) -> Result<VisionConfig> {
        if let Some(lt) = v["llama_type"].as_str() {
            if lt != t.name() {
                return Err(Error::Config(format!("llama_type {lt} but meta.json says {}", t.name())));
            }
        }
        let preset = VisionConfig::preset(t);
        let usize_at = |path: &str| -> Result<usize> {
            v.pointer(path)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| Error::Config(format!("field {path} missing or not an integer")))
        };
        let f64_or = |path: &str, d: f64| v.pointer(path).and_then(Value::as_f64).unwrap_or(d);
        let list = |path: &str| -> Result<Vec<usize>> {
            v.pointer(path)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| Error::Config(format!("field {path} missing or not a list of integers")))
        };
        let image_size = usize_at("/image/image_size")?;
        if image_size != t.image_size() {
            return Err(Error::Config(format!("/image/image_size {image_size}, but {} takes {}", t.name(), t.image_size())));
        }
        let convnext = ConvNextConfig {
            depths: list("/convnext/depths")?,
            dims: list("/convnext/dims")?,
            norm_eps: f64_or("/convnext/norm_eps", preset.convnext.norm_eps),
        };
        let embed_dim = usize_at("/dinov2/embed_dim")?;
        let dinov2 = Dinov2Config {
            embed_dim,
            depth: usize_at("/dinov2/depth")?,
            num_heads: usize_at("/dinov2/num_heads")?,
            patch_size: usize_at("/dinov2/patch_size").unwrap_or(14),
            img_size: usize_at("/dinov2/img_size").unwrap_or(518),
            ffn_hidden: usize_at("/dinov2/ffn/hidden").unwrap_or_else(|_| dinov2_ffn_hidden(embed_dim)),
            norm_eps: 1e-6,
            interpolate_offset: 0.1,
        };
        let (clip, qformer_vision, qformer) = if t.has_clip_qformer() {
            (
                Some(ClipConfig {
                    width: usize_at("/clip/width")?,
                    layers: usize_at("/clip/layers")?,
                    heads: usize_at("/clip/heads")?,
                    mlp_width: usize_at("/clip/mlp_width")?,
                    patch_size: usize_at("/clip/patch_size").unwrap_or(14),
                    norm_eps: f64_or("/clip/norm_eps", 1e-5),
                }),
                Some(BlipVisionConfig {
                    hidden_size: usize_at("/qformer/vision/hidden_size")?,
                    num_hidden_layers: usize_at("/qformer/vision/num_hidden_layers")?,
                    num_attention_heads: usize_at("/qformer/vision/num_attention_heads")?,
                    intermediate_size: usize_at("/qformer/vision/intermediate_size")?,
                    patch_size: usize_at("/qformer/vision/patch_size").unwrap_or(14),
                    layer_norm_eps: f64_or("/qformer/vision/layer_norm_eps", 1e-6),
                }),
                Some(QFormerConfig {
                    hidden_size: usize_at("/qformer/qformer/hidden_size")?,
                    num_hidden_layers: usize_at("/qformer/qformer/num_hidden_layers")?,
                    num_attention_heads: usize_at("/qformer/qformer/num_attention_heads")?,
                    intermediate_size: usize_at("/qformer/qformer/intermediate_size")?,
                    cross_attention_frequency: usize_at("/qformer/qformer/cross_attention_frequency").unwrap_or(2),
                    encoder_hidden_size: usize_at("/qformer/qformer/encoder_hidden_size")?,
                    layer_norm_eps: f64_or("/qformer/qformer/layer_norm_eps", 1e-12),
                    num_query_tokens: usize_at("/qformer/qformer/num_query_tokens").unwrap_or(32),
                }),
            )
        } else {
            (None, None, None)
        };
        Ok(VisionConfig { image_size, convnext, dinov2, clip, qformer_vision, qformer })
    }
}

/// Everything needed to build a model: the variant, the LLM and the vision sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub llama_type: LlamaType,
    pub llm: LlmConfig,
    pub vision: VisionConfig,
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
    }
}
