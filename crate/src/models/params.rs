//! The parameter list (names and shapes, upstream checkpoint layout) of every SPHINX variant for a
//! given configuration: used to size full-size models without their files (`sphinx inspect
//! --preset`) and to generate the random-weight demo model. Checked against the golden checkpoints.

use crate::config::{LlamaType, LlmConfig, ModelConfig, VisionConfig};

type Params = Vec<(String, Vec<usize>)>;

/// open_clip's text-tower leftovers in CLIP checkpoints: (width, context length, vocabulary, embed dim).
pub type ClipText = (usize, usize, usize, usize);

fn push(out: &mut Params, name: String, shape: &[usize]) {
    out.push((name, shape.to_vec()));
}

fn linear(out: &mut Params, p: &str, o: usize, i: usize, bias: bool) {
    push(out, format!("{p}.weight"), &[o, i]);
    if bias {
        push(out, format!("{p}.bias"), &[o]);
    }
}

fn norm(out: &mut Params, p: &str, d: usize) {
    push(out, format!("{p}.weight"), &[d]);
    push(out, format!("{p}.bias"), &[d]);
}

fn convnext(out: &mut Params, v: &VisionConfig) {
    let c = &v.convnext;
    let p = "llma.openclip_convnext_xxl";
    let (Some(&first), Some(&last)) = (c.dims.first(), c.dims.last()) else { return }; // refused by validate()
    push(out, format!("{p}.stem.0.weight"), &[first, 3, 4, 4]);
    push(out, format!("{p}.stem.0.bias"), &[first]);
    norm(out, &format!("{p}.stem.1"), first);
    for (s, (&d, &depth)) in c.dims.iter().zip(&c.depths).enumerate() {
        if s > 0 {
            norm(out, &format!("{p}.stages.{s}.downsample.0"), c.dims[s - 1]);
            push(out, format!("{p}.stages.{s}.downsample.1.weight"), &[d, c.dims[s - 1], 2, 2]);
            push(out, format!("{p}.stages.{s}.downsample.1.bias"), &[d]);
        }
        for b in 0..depth {
            let q = format!("{p}.stages.{s}.blocks.{b}");
            push(out, format!("{q}.gamma"), &[d]);
            push(out, format!("{q}.conv_dw.weight"), &[d, 1, 7, 7]);
            push(out, format!("{q}.conv_dw.bias"), &[d]);
            norm(out, &format!("{q}.norm"), d);
            linear(out, &format!("{q}.mlp.fc1"), 4 * d, d, true);
            linear(out, &format!("{q}.mlp.fc2"), d, 4 * d, true);
        }
    }
    norm(out, &format!("{p}.head.norm"), last);
}

fn dinov2(out: &mut Params, v: &VisionConfig) {
    let c = &v.dinov2;
    let (d, p) = (c.embed_dim, "llma.dinov2_vitg14");
    let g = c.img_size / c.patch_size;
    push(out, format!("{p}.cls_token"), &[1, 1, d]);
    push(out, format!("{p}.pos_embed"), &[1, 1 + g * g, d]);
    push(out, format!("{p}.mask_token"), &[1, d]);
    push(out, format!("{p}.patch_embed.proj.weight"), &[d, 3, c.patch_size, c.patch_size]);
    push(out, format!("{p}.patch_embed.proj.bias"), &[d]);
    for b in 0..c.depth {
        let q = format!("{p}.blocks.{b}");
        norm(out, &format!("{q}.norm1"), d);
        linear(out, &format!("{q}.attn.qkv"), 3 * d, d, true);
        linear(out, &format!("{q}.attn.proj"), d, d, true);
        push(out, format!("{q}.ls1.gamma"), &[d]);
        norm(out, &format!("{q}.norm2"), d);
        linear(out, &format!("{q}.mlp.w12"), 2 * c.ffn_hidden, d, true);
        linear(out, &format!("{q}.mlp.w3"), d, c.ffn_hidden, true);
        push(out, format!("{q}.ls2.gamma"), &[d]);
    }
    norm(out, &format!("{p}.norm"), d);
}

/// CLIP ViT-L (with open_clip's unused text leftovers, as the checkpoints carry them).
fn clip(out: &mut Params, v: &VisionConfig, text: ClipText) {
    let Some(c) = &v.clip else { return };
    let (w, p) = (c.width, "llma.clip");
    let (text_width, context, vocab, embed) = text;
    let g = 224 / c.patch_size;
    push(out, format!("{p}.visual.class_embedding"), &[w]);
    push(out, format!("{p}.visual.positional_embedding"), &[1 + g * g, w]);
    push(out, format!("{p}.visual.proj"), &[w, embed]);
    push(out, format!("{p}.visual.conv1.weight"), &[w, 3, c.patch_size, c.patch_size]);
    norm(out, &format!("{p}.visual.ln_pre"), w);
    for b in 0..c.layers {
        let q = format!("{p}.visual.transformer.resblocks.{b}");
        norm(out, &format!("{q}.ln_1"), w);
        push(out, format!("{q}.attn.in_proj_weight"), &[3 * w, w]);
        push(out, format!("{q}.attn.in_proj_bias"), &[3 * w]);
        linear(out, &format!("{q}.attn.out_proj"), w, w, true);
        norm(out, &format!("{q}.ln_2"), w);
        linear(out, &format!("{q}.mlp.c_fc"), c.mlp_width, w, true);
        linear(out, &format!("{q}.mlp.c_proj"), w, c.mlp_width, true);
    }
    norm(out, &format!("{p}.visual.ln_post"), w);
    push(out, format!("{p}.positional_embedding"), &[context, text_width]);
    push(out, format!("{p}.text_projection"), &[text_width, embed]);
    push(out, format!("{p}.logit_scale"), &[]);
    push(out, format!("{p}.token_embedding.weight"), &[vocab, text_width]);
    norm(out, &format!("{p}.ln_final"), text_width);
}

fn qformer(out: &mut Params, v: &VisionConfig) {
    let (Some(vis), Some(q)) = (&v.qformer_vision, &v.qformer) else { return };
    let p = "llma.qformer";
    let (w, h) = (vis.hidden_size, q.hidden_size);
    let g = 224 / vis.patch_size;
    push(out, format!("{p}.query_tokens"), &[1, q.num_query_tokens, h]);
    push(out, format!("{p}.vision_model.embeddings.class_embedding"), &[1, 1, w]);
    push(out, format!("{p}.vision_model.embeddings.patch_embedding.weight"), &[w, 3, vis.patch_size, vis.patch_size]);
    push(out, format!("{p}.vision_model.embeddings.patch_embedding.bias"), &[w]);
    push(out, format!("{p}.vision_model.embeddings.position_embedding"), &[1, 1 + g * g, w]);
    for b in 0..vis.num_hidden_layers {
        let l = format!("{p}.vision_model.encoder.layers.{b}");
        linear(out, &format!("{l}.self_attn.qkv"), 3 * w, w, true);
        linear(out, &format!("{l}.self_attn.projection"), w, w, true);
        norm(out, &format!("{l}.layer_norm1"), w);
        linear(out, &format!("{l}.mlp.fc1"), vis.intermediate_size, w, true);
        linear(out, &format!("{l}.mlp.fc2"), w, vis.intermediate_size, true);
        norm(out, &format!("{l}.layer_norm2"), w);
    }
    norm(out, &format!("{p}.vision_model.post_layernorm"), w);
    norm(out, &format!("{p}.qformer.layernorm"), h);
    for b in 0..q.num_hidden_layers {
        let l = format!("{p}.qformer.encoder.layer.{b}");
        let attn = |out: &mut Params, a: &str, kv_in: usize| {
            linear(out, &format!("{l}.{a}.attention.query"), h, h, true);
            linear(out, &format!("{l}.{a}.attention.key"), h, kv_in, true);
            linear(out, &format!("{l}.{a}.attention.value"), h, kv_in, true);
            linear(out, &format!("{l}.{a}.output.dense"), h, h, true);
            norm(out, &format!("{l}.{a}.output.LayerNorm"), h);
        };
        attn(out, "attention", h);
        if b % q.cross_attention_frequency == 0 {
            attn(out, "crossattention", q.encoder_hidden_size);
        }
        linear(out, &format!("{l}.intermediate_query.dense"), q.intermediate_size, h, true);
        linear(out, &format!("{l}.output_query.dense"), h, q.intermediate_size, true);
        norm(out, &format!("{l}.output_query.LayerNorm"), h);
    }
}

fn llm(out: &mut Params, c: &LlmConfig) {
    let (d, hd) = (c.dim, c.head_dim);
    push(out, "llma.tok_embeddings.weight".into(), &[c.vocab_size, d]);
    for i in 0..c.n_layers {
        let l = format!("llma.layers.{i}");
        linear(out, &format!("{l}.attention.wq"), c.n_heads * hd, d, false);
        linear(out, &format!("{l}.attention.wk"), c.n_kv_heads * hd, d, false);
        linear(out, &format!("{l}.attention.wv"), c.n_kv_heads * hd, d, false);
        linear(out, &format!("{l}.attention.wo"), d, c.n_heads * hd, false);
        linear(out, &format!("{l}.feed_forward.w1"), c.ffn_hidden, d, false);
        linear(out, &format!("{l}.feed_forward.w2"), d, c.ffn_hidden, false);
        linear(out, &format!("{l}.feed_forward.w3"), c.ffn_hidden, d, false);
        push(out, format!("{l}.attention_norm.weight"), &[d]);
        push(out, format!("{l}.ffn_norm.weight"), &[d]);
    }
    push(out, "llma.norm.weight".into(), &[d]);
    push(out, "llma.output.weight".into(), &[c.vocab_size, d]);
}

/// Every tensor of an upstream checkpoint of this configuration. `clip_text` gives the shapes of
/// open_clip's unused text leftovers (width, context length, vocabulary) for the CLIP variants.
pub fn parameter_shapes(cfg: &ModelConfig, clip_text: ClipText) -> Params {
    let mut out = Vec::new();
    let dim = cfg.llm.dim;
    push(&mut out, "llma.start_img".into(), &[1, 1, dim]);
    push(&mut out, "llma.end_img".into(), &[1, 1, dim]);
    llm(&mut out, &cfg.llm);
    clip(&mut out, &cfg.vision, clip_text);
    convnext(&mut out, &cfg.vision);
    dinov2(&mut out, &cfg.vision);
    qformer(&mut out, &cfg.vision);
    let v = &cfg.vision;
    let fused = v.clip.as_ref().map_or(0, |c| c.width) + v.convnext.dims.last().copied().unwrap_or(0) + v.dinov2.embed_dim;
    if let Some(q) = &v.qformer {
        linear(&mut out, "llma.qformer_proj.0", dim, q.hidden_size, true);
        norm(&mut out, "llma.qformer_proj.1", dim);
    }
    linear(&mut out, "llma.visual_proj.0", dim, fused, true);
    norm(&mut out, "llma.visual_proj.1", dim);
    out
}

/// open_clip ViT-L-14's text leftovers at full size (width 768, context 77, vocabulary 49408, embed 768).
pub const CLIP_TEXT_FULL: ClipText = (768, 77, 49408, 768);

/// Full-size LLM of each release: TinyLlama-1.1B for the Tiny variants, LLaMA-2-13B otherwise.
pub fn llm_preset(t: LlamaType) -> LlmConfig {
    let (dim, n_layers, n_heads, n_kv_heads, ffn_hidden) = match t {
        LlamaType::Ens5Light | LlamaType::EnsLight => (2048, 22, 32, 4, 5632),
        LlamaType::Ens | LlamaType::Ens5 => (5120, 40, 40, 40, 13824),
    };
    LlmConfig {
        dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim: dim / n_heads,
        ffn_hidden,
        vocab_size: 32000,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
    }
}

/// The full-size configuration of a release.
pub fn preset(t: LlamaType) -> ModelConfig {
    ModelConfig { llama_type: t, llm: llm_preset(t), vision: VisionConfig::preset(t) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::UpstreamCheckpoint;
    use crate::testing::golden_dir;
    use std::collections::BTreeMap;

    #[test]
    fn matches_the_golden_checkpoints_exactly() {
        for name in ["sphinx-tiny-1k-dev", "sphinx-1k-dev"] {
            let dir = golden_dir(name);
            let ckpt = UpstreamCheckpoint::open(&dir).unwrap();
            let cfg = crate::load::upstream_config(&dir, &ckpt).unwrap();
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("vision.json")).unwrap()).unwrap();
            let t = &v["clip"]["text_leftovers_shrunk_to"];
            let u = |k: &str| t[k].as_u64().unwrap_or(0) as usize;
            let text = (u("width"), u("context_length"), u("vocab_size"), u("embed_dim"));
            let ours: BTreeMap<String, Vec<usize>> = parameter_shapes(&cfg, text).into_iter().collect();
            let theirs: BTreeMap<String, Vec<usize>> = ckpt.tensors().iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
            let missing: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
            let extra: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
            assert!(missing.is_empty() && extra.is_empty(), "{name}: not listed {missing:?}, not in checkpoint {extra:?}");
            for (k, s) in &theirs {
                assert_eq!(&ours[k], s, "{name}: {k}");
            }
        }
    }

    #[test]
    fn full_size_counts_match_the_spec() {
        let count = |t, text| parameter_shapes(&preset(t), text).iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>();
        // spec §2.11
        assert_eq!(count(LlamaType::Ens5Light, (0, 0, 0, 0)), 3_089_374_592);
        assert_eq!(count(LlamaType::Ens5, CLIP_TEXT_FULL), 16_462_228_609);
    }
}
