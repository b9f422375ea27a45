//! The GPU bytes a run needs beside its weights, predicted from the configuration alone (for
//! `inspect` and the `GPU memory` line of `sphinx run`): every phase's buffers are replayed, in the
//! order the forward code allocates and drops them, through a model of the runtime's pool (the
//! same size classes, reuse by class, idle buffers freed between phases by
//! [`crate::tensor::Device::release_idle`]). Each replay mirrors one forward function, named in its
//! doc; a forward that holds a buffer longer or allocates one more moves the real peak, which the
//! memory tests (`tests/cli.rs`, `tests/web/slow/wide.test.js`) measure against this.

use std::collections::HashMap;

use crate::config::{ConvNextConfig, LlamaType, LlmConfig, ModelConfig};
use crate::models::convnext::mlp_chunk_rows;
use crate::runtime::size_class;

/// The runtime's pool as the replay sees it: bytes of buffers that exist (in use or idle) and the
/// most that ever existed at once.
#[derive(Default)]
struct Pool {
    total: u64,
    peak: u64,
    idle: HashMap<u64, usize>,
}

/// A pooled buffer the replay holds (its size class).
#[derive(Clone, Copy)]
struct Buf(u64);

impl Pool {
    /// `Tensor::empty(&[rows, cols])`: an idle buffer of the class, or a new one.
    fn empty(&mut self, rows: usize, cols: usize) -> Buf {
        let class = size_class((rows * cols * 4) as u64);
        match self.idle.get_mut(&class) {
            Some(n) if *n > 0 => *n -= 1,
            _ => self.grow(class),
        }
        Buf(class)
    }

    /// A dropped tensor: its buffer goes idle.
    fn drop(&mut self, b: Buf) {
        *self.idle.entry(b.0).or_default() += 1;
    }

    fn grow(&mut self, bytes: u64) {
        self.total += bytes;
        self.peak = self.peak.max(self.total);
    }

    /// `Tensor::from_slice`: an exactly sized upload, freed (not pooled) when dropped.
    fn upload(&mut self, floats: usize) -> u64 {
        let bytes = (floats * 4) as u64;
        self.grow(bytes);
        bytes
    }

    fn free_upload(&mut self, bytes: u64) {
        self.total -= bytes;
    }

    /// `Device::release_idle`.
    fn release_idle(&mut self) {
        let idle: u64 = self.idle.drain().map(|(class, n)| class * n as u64).sum();
        self.total -= idle;
    }
}

/// One ConvNeXt block on a [rows, c] map (`Block::forward`): dwconv, norm, the MLP in row chunks.
fn convnext_block(p: &mut Pool, rows: usize, c: usize) {
    let hidden = 4 * c;
    let dw = p.empty(rows, c);
    let h = p.empty(rows, c);
    p.drop(dw);
    // every adapter binds ≥ 128 MiB (WebGPU's minimum), above the 64 MiB MLP chunk
    let chunk = mlp_chunk_rows(rows, hidden, u64::MAX);
    let y = if chunk >= rows {
        let a = p.empty(rows, hidden);
        let y = p.empty(rows, c);
        p.drop(a);
        y
    } else {
        let y = p.empty(rows, c);
        for r0 in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - r0);
            let (part, a, out) = (p.empty(n, c), p.empty(n, hidden), p.empty(n, c));
            p.drop(out);
            p.drop(a);
            p.drop(part);
        }
        y
    };
    p.drop(y);
    p.drop(h);
}

/// `ConvNext::forward` on one [3, s, s] view plus `gap_tokens` (`t` tokens).
fn convnext_view(p: &mut Pool, cfg: &ConvNextConfig, s: usize, t: usize) {
    let img = p.upload(3 * s * s);
    let mut side = s / 4;
    let c0 = cfg.dims.first().copied().unwrap_or(0);
    let (cols, stem) = (p.empty(side * side, 3 * 16), p.empty(side * side, c0));
    p.drop(cols);
    let mut x = p.empty(side * side, c0);
    p.drop(stem);
    for (i, (&c, &depth)) in cfg.dims.iter().zip(&cfg.depths).enumerate() {
        if i > 0 {
            let cin = cfg.dims[i - 1];
            let n = p.empty(side * side, cin);
            p.drop(x);
            side /= 2;
            let cols = p.empty(side * side, 4 * cin);
            x = p.empty(side * side, c);
            p.drop(cols);
            p.drop(n);
        }
        for _ in 0..depth {
            convnext_block(p, side * side, c);
        }
        p.release_idle();
    }
    let c = cfg.dims.last().copied().unwrap_or(0);
    let map = p.empty(side * side, c);
    p.drop(x);
    let (toks, src) = (p.empty(t, c), p.empty(t, c));
    p.drop(src);
    p.drop(toks);
    p.drop(map);
    p.free_upload(img);
}

/// A ViT on `b` views of `side` px (`Dinov2::forward`, `ClipVit::forward`, the Q-Former's
/// `VisionModel::forward`): patch embedding, then blocks of attention and an MLP of `hidden`
/// (`2·hidden` wide before SwiGLU when `swiglu`); returns its output [b·t, d].
fn vit(p: &mut Pool, b: usize, side: usize, patch: usize, d: usize, hidden: usize, depth: usize, swiglu: bool) -> Buf {
    let grid = side / patch.max(1);
    let t = 1 + grid * grid;
    let x = p.empty(b * t, d);
    for _ in 0..b {
        let img = p.upload(3 * side * side);
        let (cols, patches) = (p.empty(grid * grid, 3 * patch * patch), p.empty(grid * grid, d));
        p.drop(cols);
        p.drop(patches);
        p.free_upload(img);
    }
    let pos = p.empty(b * t, d);
    p.drop(pos);
    for _ in 0..depth {
        let (n1, qkv) = (p.empty(b * t, d), p.empty(b * t, 3 * d));
        p.drop(n1);
        let a = p.empty(b * t, d);
        p.drop(qkv);
        let proj = p.empty(b * t, d);
        p.drop(proj);
        let n2 = p.empty(b * t, d);
        let h = if swiglu {
            let (g, h) = (p.empty(b * t, 2 * hidden), p.empty(b * t, hidden));
            p.drop(g);
            p.drop(n2);
            h
        } else {
            let h = p.empty(b * t, hidden);
            p.drop(n2);
            h
        };
        let out = p.empty(b * t, d);
        p.drop(out);
        p.drop(h);
        p.drop(a);
    }
    let y = p.empty(b * t, d);
    p.drop(x);
    y
}

/// `Sphinx::encode_image`: the towers, the fusion and projection, the image tokens (returned).
fn encode_image(p: &mut Pool, config: &ModelConfig) -> Buf {
    let (v, dim) = (&config.vision, config.llm.dim);
    let (layout, t) = views_of(config);
    let (nv, dino) = (layout.views(), &v.dinov2);
    let mut nq = 0;
    let mut held = Vec::new();
    let mut width = 0;
    if let (Some(clip), Some(bv), Some(qf)) = (&v.clip, &v.qformer_vision, &v.qformer) {
        let side = layout.dinov2_size();
        held.push(vit(p, nv, side, clip.patch_size, clip.width, clip.mlp_width, clip.layers, false));
        let vision = vit(p, nv, side, bv.patch_size, bv.hidden_size, bv.intermediate_size, bv.num_hidden_layers, false);
        nq = qf.num_query_tokens;
        let (queries, x, kv, qf_out) = (p.empty(nv * nq, qf.hidden_size), p.empty(nv * nq, qf.hidden_size), p.empty(nv * t, 2 * qf.hidden_size), p.empty(nv * nq, qf.hidden_size));
        let (proj, qp) = (p.empty(nv * nq, dim), p.empty(nv * nq, dim));
        p.drop(proj);
        held.push(qp);
        for b in [kv, x, queries, qf_out, vision] {
            p.drop(b);
        }
        width = clip.width;
    }
    let c = v.convnext.dims.last().copied().unwrap_or(0);
    let conv = p.empty(nv * t, c);
    for _ in 0..nv {
        p.release_idle();
        convnext_view(p, &v.convnext, layout.convnext_size(), t);
    }
    p.release_idle();
    let dino_out = vit(p, nv, layout.dinov2_size(), dino.patch_size, dino.embed_dim, dino.ffn_hidden, dino.depth, true);
    p.release_idle();
    let fused = p.empty(nv * t, width + c + dino.embed_dim);
    let (lin, proj) = (p.empty(nv * t, dim), p.empty(nv * t, dim));
    p.drop(lin);
    p.drop(fused);
    let tokens = p.empty(nv * (nq + t + 2), dim);
    for b in held.into_iter().chain([proj, dino_out, conv]) {
        p.drop(b);
    }
    p.release_idle();
    tokens
}

/// `Llama::forward` over `l` positions (the prompt's input embeddings `x` are dropped at its end).
fn decoder(p: &mut Pool, llm: &LlmConfig, l: usize, x: Buf) {
    let (dim, qd, kvd) = (llm.dim, llm.n_heads * llm.head_dim, llm.n_kv_heads * llm.head_dim);
    for _ in 0..llm.n_layers {
        let (h, qkv) = (p.empty(l, dim), p.empty(l, qd + 2 * kvd));
        p.drop(h);
        let o = p.empty(l, qd);
        p.drop(qkv);
        let wo = p.empty(l, dim);
        p.drop(wo);
        p.drop(o);
        let (h, g, a, w2) = (p.empty(l, dim), p.empty(l, 2 * llm.ffn_hidden), p.empty(l, llm.ffn_hidden), p.empty(l, dim));
        for b in [w2, a, g, h] {
            p.drop(b);
        }
    }
    let (last, norm, logits) = (p.empty(1, dim), p.empty(1, dim), p.empty(1, llm.vocab_size));
    for b in [norm, last, x, logits] {
        p.drop(b);
    }
}

/// The view layout of the configuration's variant and the DINOv2 tokens of one view (257).
fn views_of(config: &ModelConfig) -> (LlamaType, usize) {
    let layout = config.llama_type;
    (layout, 1 + (layout.dinov2_size() / config.vision.dinov2.patch_size.max(1)).pow(2))
}

/// The KV cache of `positions` (K and V per layer, f16 halves a row's words on the GPU).
pub fn kv_cache_bytes(llm: &LlmConfig, positions: usize, f16: bool) -> u64 {
    let width = llm.n_kv_heads * llm.head_dim / if f16 { 2 } else { 1 };
    2 * llm.n_layers as u64 * size_class((positions * width * 4) as u64)
}

/// Image positions one image takes in the prompt: views · (queries + DINOv2 tokens + 2).
pub fn image_words(config: &ModelConfig) -> usize {
    let (layout, t) = views_of(config);
    let nq = config.vision.qformer.as_ref().map_or(0, |q| q.num_query_tokens);
    layout.views() * (nq + t + 2)
}

/// (The most bytes beside the weights a run holds while encoding its image — the KV cache does
/// not exist yet —, the most beside the weights and the KV cache while prefilling `text` prompt
/// positions (plus the image's) and decoding.)
pub fn run_peaks(config: &ModelConfig, text: usize, image: bool) -> (u64, u64) {
    let mut p = Pool::default();
    let (tokens, words) = if image { (Some(encode_image(&mut p, config)), image_words(config)) } else { (None, 0) };
    let encode = std::mem::take(&mut p.peak);
    p.peak = p.total;
    let l = text.max(1) + words;
    let x = p.empty(l, config.llm.dim);
    decoder(&mut p, &config.llm, l, x);
    p.release_idle();
    let x = p.empty(1, config.llm.dim);
    decoder(&mut p, &config.llm, 1, x);
    if let Some(t) = tokens {
        p.drop(t);
    }
    (encode, p.peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPHINX-Tiny-1k's image: ConvNeXt-XXL's first stage on a 512 px view dominates (its map, norm,
    /// the dwconv/output buffer, two 8192-row MLP passes of 48 MiB, the stem's image and patches).
    #[test]
    fn the_first_convnext_stage_bounds_the_tiny_1k_image() {
        let config = crate::models::params::preset(LlamaType::Ens5Light);
        let (encode, text) = run_peaks(&config, 40, true);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let map = 24.0; // 128² × 384 × 4 bytes
        let stage0 = 3.0 * map + 12.0 + 48.0 + 12.0 + 3.0 + 3.0;
        let conv = mib(size_class(5 * 257 * 3072 * 4));
        assert!((mib(encode) - (stage0 + conv)).abs() < 1.0, "encode {:.1} MiB vs {:.1}", mib(encode), stage0 + conv);
        // prefill of 40 + 1295 positions: [L, 2·5632] gate, [L, 5632], the image tokens, ...
        assert!(mib(text) > 100.0 && mib(text) < mib(encode), "text {:.1} MiB", mib(text));
        assert_eq!(image_words(&config), 1295);
    }
}
