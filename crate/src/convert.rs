//! `sphinx convert`, `sphinx mix`, `sphinx demo-model` and `sphinx inspect`: producing and
//! describing converted folders (docs/format.md) tensor by tensor.

use crate::config::{LlamaType, ModelConfig};
use crate::io::converted::{matrix_of, Manifest, ModelWriter, QuantChoice};
use crate::io::quant::{Packed, Quant};
use crate::load::ModelDir;
use crate::models::params::parameter_shapes;
use crate::io::TensorSource;
use crate::{Error, Result};
use std::path::Path;

/// Which precision group a tensor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Llm,
    Vision,
}

pub fn group_of(name: &str) -> Group {
    let n = name.strip_prefix("llma.").unwrap_or(name);
    if n.starts_with("tok_embeddings.") || n.starts_with("layers.") || n.starts_with("output.") || n == "norm.weight" {
        Group::Llm
    } else {
        Group::Vision
    }
}

/// Whether a tensor is stored in the group's precision (docs/format.md "What is quantized"):
/// `*.weight` of 2 or 4 dimensions with at least 32 inputs, except depthwise kernels.
pub fn is_quantizable(name: &str, shape: &[usize]) -> bool {
    name.ends_with(".weight") && matches!(shape.len(), 2 | 4) && matrix_of(shape).1 >= 32 && !name.contains(".conv_dw.")
}

/// Rank of a tensor in the build order: vision towers, projections, image tags, then the LLM.
fn build_rank(name: &str) -> (usize, usize) {
    let n = name.strip_prefix("llma.").unwrap_or(name);
    let group = [
        "openclip_convnext_xxl.",
        "dinov2_vitg14.",
        "clip.",
        "qformer.",
        "qformer_proj.",
        "visual_proj.",
        "start_img",
        "end_img",
        "tok_embeddings.",
        "layers.",
        "norm.",
        "output.",
    ]
    .iter()
    .position(|p| n.starts_with(p))
    .unwrap_or(usize::MAX);
    let layer = n.strip_prefix("layers.").and_then(|r| r.split('.').next()).and_then(|i| i.parse().ok()).unwrap_or(0);
    (group, layer)
}

/// Names in build order (stable: file order within a group).
pub fn build_order(mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|n| build_rank(n));
    names
}

/// What precision a tensor gets.
pub fn quant_for(name: &str, shape: &[usize], choice: QuantChoice) -> Quant {
    if !is_quantizable(name, shape) {
        return Quant::F32;
    }
    match group_of(name) {
        Group::Llm => choice.llm,
        Group::Vision => choice.vision,
    }
}

/// Writes every tensor of `source` into a converted folder (atomically: see [`ModelWriter`]). A
/// non-empty `out` is refused unless `replace` and it holds only a model this tool wrote.
pub fn convert(source: &mut dyn TensorSource, config: &ModelConfig, out: &Path, choice: QuantChoice, shard_bytes: u64, tokenizer_json: Option<&[u8]>, replace: bool) -> Result<Manifest> {
    let mut writer = ModelWriter::new(out, shard_bytes, replace)?;
    for name in build_order(source.names()) {
        let shape = source.shape(&name).ok_or_else(|| Error::Weights(format!("tensor {name} listed without a shape")))?;
        let (rows, cols) = matrix_of(&shape);
        let values = source.read_f32(&name)?;
        let packed = Packed::quantize(quant_for(&name, &shape, choice), &values, rows, cols);
        drop(values);
        writer.add(&name, &shape, packed)?;
    }
    source.finish()?;
    writer.finish(config, choice, tokenizer_json)
}

/// The paper's weight mix θ = β·θ_A + (1 − β)·θ_B, element-wise, written as a converted folder.
/// With `only_llm`, vision tensors are copied from A. Names and shapes must agree exactly. Written
/// atomically ([`ModelWriter`]); a non-empty `out` is refused unless `replace`.
#[allow(clippy::too_many_arguments)]
pub fn mix(a: &mut ModelDir, b: &mut ModelDir, beta: f64, only_llm: bool, out: &Path, choice: QuantChoice, shard_bytes: u64, tokenizer_json: Option<&[u8]>, replace: bool) -> Result<Manifest> {
    if a.config.llama_type != b.config.llama_type || a.config.llm != b.config.llm || a.config.vision != b.config.vision {
        return Err(Error::Config(format!(
            "cannot mix {} and {}: different architectures ({} vs {})",
            a.source.describe(),
            b.source.describe(),
            a.config.llama_type.name(),
            b.config.llama_type.name()
        )));
    }
    let (na, nb) = (a.source.names(), b.source.names());
    let only_a: Vec<&String> = na.iter().filter(|n| !nb.contains(n)).collect();
    let only_b: Vec<&String> = nb.iter().filter(|n| !na.contains(n)).collect();
    if !only_a.is_empty() || !only_b.is_empty() {
        return Err(Error::Weights(format!("cannot mix: tensors only in A: {only_a:?}; only in B: {only_b:?}")));
    }
    for n in &na {
        let (sa, sb) = (a.source.shape(n), b.source.shape(n));
        if sa != sb {
            return Err(Error::Weights(format!("cannot mix: tensor {n} is {sa:?} in A and {sb:?} in B")));
        }
    }
    let mut writer = ModelWriter::new(out, shard_bytes, replace)?;
    let (wa, wb) = (beta as f32, (1.0 - beta) as f32);
    for name in build_order(na) {
        let shape = a.source.shape(&name).expect("checked above");
        let (rows, cols) = matrix_of(&shape);
        let mut values = a.source.read_f32(&name)?;
        if !only_llm || group_of(&name) == Group::Llm {
            let other = b.source.read_f32(&name)?;
            for (x, y) in values.iter_mut().zip(&other) {
                *x = wa * *x + wb * *y;
            }
        }
        writer.add(&name, &shape, Packed::quantize(quant_for(&name, &shape, choice), &values, rows, cols))?;
    }
    a.source.finish()?;
    b.source.finish()?;
    writer.finish(&a.config, choice, tokenizer_json)
}

/// Deterministic normal samples (Box–Muller over a splitmix64 stream).
struct Normal(u64);

impl Normal {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn sample(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// A random-weight model of `config` with the golden data's initialisation (matrices N(0, 1/fan_in),
/// norms N(1, 0.1), biases N(0, 0.05), layer scales N(0.5, 0.1), tokens and positions N(0, 0.5),
/// image tags and embeddings N(0, 1)), written as a converted folder. A non-empty `out` is refused
/// unless `replace` and it holds a model this tool wrote, as for [`convert`].
pub fn demo_model(config: &ModelConfig, out: &Path, seed: u64, choice: QuantChoice, tokenizer_json: &[u8], replace: bool) -> Result<Manifest> {
    let mut rng = Normal(seed);
    let mut writer = ModelWriter::new(out, 64 << 20, replace)?;
    let params = parameter_shapes(config, (16, 77, 64, 16));
    let names = build_order(params.iter().map(|p| p.0.clone()).collect());
    for name in names {
        let shape = &params.iter().find(|p| p.0 == name).expect("listed").1;
        let n: usize = shape.iter().product();
        let (rows, cols) = matrix_of(shape);
        let (mean, std) = if name.ends_with("start_img") || name.ends_with("end_img") || name.contains("tok_embeddings") {
            (0.0, 1.0)
        } else if name.ends_with(".gamma") {
            (0.5, 0.1)
        } else if name.ends_with(".bias") || name.ends_with("in_proj_bias") {
            (0.0, 0.05)
        } else if name.contains("token") || name.contains("embedding") && !name.ends_with(".weight") || name.contains("pos_embed") || name.contains("positional") {
            (0.0, 0.5)
        } else if shape.len() == 1 {
            (1.0, 0.1)
        } else {
            (0.0, 1.0 / (cols.max(1) as f32).sqrt())
        };
        let values: Vec<f32> = (0..n).map(|_| mean + std * rng.sample()).collect();
        writer.add(&name, shape, Packed::quantize(quant_for(&name, shape, choice), &values, rows, cols))?;
    }
    writer.finish(config, choice, Some(tokenizer_json))
}

/// The sizes `demo-model` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoSize {
    /// The golden dev data's small widths (a few MB): the demo page and most tests.
    Tiny,
    /// Every real width of SPHINX-Tiny-1k, its real vocabulary and image size, but one block per
    /// ConvNeXt stage, one DINOv2 block and two LLM layers.
    Wide,
    /// SPHINX-Tiny-1k in full (3.09 B parameters).
    Full,
}

impl DemoSize {
    pub fn parse(s: &str) -> Result<DemoSize> {
        match s {
            "tiny" => Ok(DemoSize::Tiny),
            "wide" => Ok(DemoSize::Wide),
            "full" => Ok(DemoSize::Full),
            other => Err(Error::Config(format!("--size {other}: expected tiny, wide or full"))),
        }
    }

    /// The configuration of a demo model of this size.
    pub fn config(self) -> ModelConfig {
        match self {
            DemoSize::Tiny => demo_config(),
            DemoSize::Full => crate::models::params::preset(LlamaType::Ens5Light),
            DemoSize::Wide => {
                let mut c = crate::models::params::preset(LlamaType::Ens5Light);
                c.vision.convnext.depths.iter_mut().for_each(|d| *d = 1);
                c.vision.dinov2.depth = 1;
                c.llm.n_layers = 2;
                c
            }
        }
    }
}

/// The demo model's shapes: SPHINX-Tiny-1k's structure (every hard-coded size kept: 1024 px input,
/// 5 tiles, 16x16 grids, 257 tokens per tile) with the golden dev data's small widths.
pub fn demo_config() -> ModelConfig {
    use crate::config::{ConvNextConfig, Dinov2Config, LlmConfig, VisionConfig};
    ModelConfig {
        llama_type: LlamaType::Ens5Light,
        llm: LlmConfig {
            dim: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            ffn_hidden: 192,
            vocab_size: 32000,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
        },
        vision: VisionConfig {
            image_size: 1024,
            convnext: ConvNextConfig { depths: vec![1, 1, 2, 1], dims: vec![16, 32, 48, 64], norm_eps: 1e-5 },
            dinov2: Dinov2Config { embed_dim: 48, depth: 2, num_heads: 3, patch_size: 14, img_size: 518, ffn_hidden: 128, norm_eps: 1e-6, interpolate_offset: 0.1 },
            clip: None,
            qformer_vision: None,
            qformer: None,
        },
    }
}

/// Bytes of every tensor of a parameter list at a precision choice.
pub fn weight_bytes(params: &[(String, Vec<usize>)], choice: QuantChoice) -> u64 {
    params
        .iter()
        .map(|(n, s)| {
            let (r, c) = matrix_of(s);
            quant_for(n, s, choice).bytes(r, c) as u64
        })
        .sum()
}

/// Memory a configuration needs at a precision: (weights on the GPU, KV cache at `seq` positions,
/// largest activation working set, host peak while loading with `shard_bytes` shards).
pub struct MemoryEstimate {
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
    pub host_load_peak: u64,
}

impl MemoryEstimate {
    pub fn gpu_total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }
}

/// Beside the weights, (the KV cache of the run's positions, the largest working set besides it):
/// [`crate::models::memory`] replays the run's buffers through the pool — the image's towers
/// before the cache exists, the prompt of `prompt` text positions (plus the image's), then
/// decoding `answer` more.
fn run_bytes(config: &ModelConfig, prompt: usize, answer: usize, image: bool, f16: bool) -> (u64, u64) {
    use crate::models::memory::{image_words, kv_cache_bytes, run_peaks};
    let positions = prompt + answer + if image { image_words(config) } else { 0 };
    let kv = kv_cache_bytes(&config.llm, positions, f16);
    let (encode, decode) = run_peaks(config, prompt, image);
    (kv, encode.saturating_sub(kv).max(decode))
}

/// The GPU memory `inspect` predicts for running a converted model on a prompt of `prompt` text
/// tokens (and an image, when `image`) answered with up to `answer` tokens: its stored weights
/// (f32 matrices halved at f16 precision, which stores them as f16), the KV cache (f16 at f16
/// precision) and the largest activations.
pub fn predict_run(m: &Manifest, prompt: usize, answer: usize, image: bool, f16: bool) -> MemoryEstimate {
    let weights = m
        .tensors
        .iter()
        .map(|t| {
            let halved = f16 && t.quant == Quant::F32 && t.shape.len() >= 2 && t.shape[0] > 1 && !t.name.contains("tok_embeddings") && !t.name.contains("pos_embed");
            if halved {
                t.bytes / 2
            } else {
                t.bytes
            }
        })
        .sum();
    let (kv_cache, activations) = run_bytes(&m.model, prompt, answer, image, f16);
    MemoryEstimate { weights, kv_cache, activations, host_load_peak: 0 }
}

/// Memory of a configuration stored at `choice`, for an image and `seq` positions in all.
pub fn estimate(config: &ModelConfig, params: &[(String, Vec<usize>)], choice: QuantChoice, seq: usize) -> MemoryEstimate {
    let weights = weight_bytes(params, choice);
    let prompt = seq.saturating_sub(crate::models::memory::image_words(config));
    let (kv_cache, activations) = run_bytes(config, prompt, 0, true, false);
    let largest_tensor = params
        .iter()
        .map(|(n, s)| {
            let (r, c) = matrix_of(s);
            quant_for(n, s, choice).bytes(r, c) as u64
        })
        .max()
        .unwrap_or(0);
    MemoryEstimate { weights, kv_cache, activations, host_load_peak: 2 * largest_tensor }
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The `sphinx inspect` report of a manifest.
pub fn describe_manifest(m: &Manifest) -> String {
    let mut s = String::new();
    let c = &m.model;
    s += &format!("variant      {} ({})\n", c.llama_type.name(), c.llama_type.release());
    s += &format!(
        "llm          dim {}, {} layers, {} heads / {} kv heads (head_dim {}), ffn {}, vocab {}, norm_eps {}, rope_theta {}\n",
        c.llm.dim, c.llm.n_layers, c.llm.n_heads, c.llm.n_kv_heads, c.llm.head_dim, c.llm.ffn_hidden, c.llm.vocab_size, c.llm.norm_eps, c.llm.rope_theta
    );
    s += &format!("image        {} px, {} view(s)\n", c.vision.image_size, c.llama_type.views());
    s += &format!("convnext     dims {:?}, depths {:?}\n", c.vision.convnext.dims, c.vision.convnext.depths);
    let d = &c.vision.dinov2;
    s += &format!("dinov2       dim {}, depth {}, heads {}, ffn {}\n", d.embed_dim, d.depth, d.num_heads, d.ffn_hidden);
    if let Some(cl) = &c.vision.clip {
        s += &format!("clip         width {}, layers {}, heads {}, mlp {}\n", cl.width, cl.layers, cl.heads, cl.mlp_width);
    }
    if let (Some(v), Some(q)) = (&c.vision.qformer_vision, &c.vision.qformer) {
        s += &format!("qformer      vision {}x{} (heads {}), q-former {}x{} ({} queries)\n", v.hidden_size, v.num_hidden_layers, v.num_attention_heads, q.hidden_size, q.num_hidden_layers, q.num_query_tokens);
    }
    s += &format!("precision    llm {}, vision {} (norms, biases, small tensors f32)\n", m.quantization.llm, m.quantization.vision);
    let mut by: std::collections::BTreeMap<(&str, Quant), (usize, u64)> = Default::default();
    for t in &m.tensors {
        let g = if group_of(&t.name) == Group::Llm { "llm" } else { "vision" };
        let e = by.entry((g, t.quant)).or_default();
        e.0 += 1;
        e.1 += t.bytes;
    }
    for ((g, q), (n, b)) in by {
        s += &format!("  {g:<7} {q:<4} {n:>5} tensors {:>12}\n", mib(b));
    }
    s += &format!("shards       {} files, {} ({} bytes)\n", m.shards.len(), mib(m.weight_bytes()), m.weight_bytes());
    if let Some(t) = &m.tokenizer {
        s += &format!("tokenizer    {} ({} bytes)\n", t.file, t.bytes);
    }
    let params: Vec<(String, Vec<usize>)> = m.tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
    s += &memory_table(c, &params);
    s
}

/// Host and GPU memory at f16 / q8 / q4 (vision and LLM alike) for 4096 positions.
pub fn memory_table(c: &ModelConfig, params: &[(String, Vec<usize>)]) -> String {
    let mut s = String::from("memory at max_seq_len 4096 (weights + KV cache f32 + largest activations; host = streaming load peak):\n",
    );
    s += &format!("  {:<5} {:>12} {:>12} {:>12} {:>12} {:>12}\n", "", "weights", "kv cache", "activations", "GPU total", "host load");
    for q in [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4] {
        let e = estimate(c, params, QuantChoice { llm: q, vision: q }, 4096);
        s += &format!("  {:<5} {:>12} {:>12} {:>12} {:>12} {:>12}\n", q.name(), gib(e.weights), gib(e.kv_cache), gib(e.activations), gib(e.gpu_total()), mib(e.host_load_peak));
    }
    s
}
