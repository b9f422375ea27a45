//! DINOv2 ViT as SPHINX uses it: facebookresearch/dinov2 hub `dinov2_vitg14` (vit_giant2,
//! SwiGLUFFNFused, LayerScale, no register tokens) → `x_norm_clstoken` + `x_norm_patchtokens`
//! (spec §2.4). The position embedding is interpolated once at load for the fixed input grid.

use crate::config::Dinov2Config;
use crate::image::ImageTensor;
use crate::kernels::add::add_;
use crate::kernels::attention::attention_into;
use crate::shapes::Attn;
use crate::shapes::Strided;
use crate::kernels::swiglu::swiglu;
use super::vit::PatchEmbedding;
use crate::nn::{LayerNorm, Linear, PatchConv, Weights};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Tensor,
    norm2: LayerNorm,
    w12: Linear,
    w3: Linear,
    ls2: Tensor,
}

pub struct Dinov2 {
    /// patch_embed, cls_token, pos_embed interpolated to the input grid.
    embedding: PatchEmbedding,
    /// Position embedding interpolated to the input grid, [1 + g², D] (host copy for traces).
    pub pos_embed: Vec<f32>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pub cfg: Dinov2Config,
}

impl Dinov2 {
    /// Loads the tower for inputs of `input_side` pixels (224 in every SPHINX variant).
    pub fn load(w: &Weights, cfg: &Dinov2Config, input_side: usize) -> Result<Dinov2> {
        let d = cfg.embed_dim;
        let have = w.shape("cls_token")?;
        if have != [1, 1, d] {
            return Err(Error::Weights(format!("{}: shape {have:?}, config embed_dim {d}", w.path("cls_token"))));
        }
        let p = cfg.patch_size;
        let src_grid = cfg.img_size / p;
        let pos_full = w.values("pos_embed", &[1, 1 + src_grid * src_grid, d])?;
        w.ignore("mask_token");
        let grid = input_side / p;
        let pos_embed = interpolate_pos_embed(&pos_full, d, src_grid, grid, cfg.interpolate_offset);
        let depth = w.count("blocks")?;
        if depth != cfg.depth {
            return Err(Error::Weights(format!("{}: {depth} blocks, config says {}", w.path("blocks"), cfg.depth)));
        }
        let hidden = cfg.ffn_hidden;
        let blocks = (0..depth)
            .map(|i| {
                let b = w.pp("blocks").pp(i);
                Ok(Block {
                    norm1: LayerNorm::load(&b.pp("norm1"), d, cfg.norm_eps)?,
                    qkv: Linear::load(&b.pp("attn").pp("qkv"), 3 * d, d, true)?,
                    proj: Linear::load(&b.pp("attn").pp("proj"), d, d, true)?,
                    ls1: b.pp("ls1").tensor("gamma", &[d])?,
                    norm2: LayerNorm::load(&b.pp("norm2"), d, cfg.norm_eps)?,
                    w12: Linear::load(&b.pp("mlp").pp("w12"), 2 * hidden, d, true)?,
                    w3: Linear::load(&b.pp("mlp").pp("w3"), d, hidden, true)?,
                    ls2: b.pp("ls2").tensor("gamma", &[d])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dev = w.device();
        Ok(Dinov2 {
            embedding: PatchEmbedding {
                conv: PatchConv::load(&w.pp("patch_embed").pp("proj"), d, 3, p, true)?,
                class: w.tensor("cls_token", &[1, 1, d])?.reshape(&[1, d])?,
                pos: Tensor::from_slice(dev, &[1 + grid * grid, d], &pos_embed)?,
                grid,
            },
            pos_embed,
            blocks,
            norm: LayerNorm::load(&w.pp("norm"), d, cfg.norm_eps)?,
            cfg: cfg.clone(),
        })
    }

    /// Tokens per view: cls + grid².
    pub fn tokens(&self) -> usize {
        self.embedding.tokens()
    }

    /// views: each [3, side, side] (already DINOv2-normalised) → [views · tokens, D].
    pub fn forward(&self, device: &Device, views: &[ImageTensor]) -> Result<Tensor> {
        let d = self.cfg.embed_dim;
        let t = self.tokens();
        let b = views.len();
        let mut x = self.embedding.forward(device, views)?;
        let heads = self.cfg.num_heads;
        let hd = d / heads;
        for blk in &self.blocks {
            // x += ls1 · proj(attn(norm1(x)))
            let qkv = blk.qkv.forward(&blk.norm1.forward(&x)?)?; // [b·t, 3D] = (3, heads, hd) per row
            let mut a = Tensor::empty(device, &[b * t, d])?;
            let s = Strided { offset: 0, row: 3 * d, batch: t * 3 * d };
            attention_into(
                &mut a,
                Strided { offset: 0, row: d, batch: t * d },
                &qkv,
                s,
                &qkv,
                Strided { offset: d, ..s },
                &qkv,
                Strided { offset: 2 * d, ..s },
                &Attn { batch: b, q_len: t, kv_len: t, n_heads: heads, n_kv_heads: heads, head_dim: hd, causal: false, q_pos0: 0, scale: (hd as f32).powf(-0.5) },
            )?;
            drop(qkv);
            add_(&mut x, &blk.proj.forward(&a)?, Some(&blk.ls1))?;
            // x += ls2 · w3(silu(x1) · x2), [x1 | x2] = w12(norm2(x))
            let h = swiglu(&blk.w12.forward(&blk.norm2.forward(&x)?)?)?;
            add_(&mut x, &blk.w3.forward(&h)?, Some(&blk.ls2))?;
        }
        self.norm.forward(&x)
    }
}

/// `interpolate_pos_encoding`: the cls row unchanged; the src_grid² patch rows resized to grid²
/// with torch bicubic (A = -0.75, align_corners=False, no antialias, border-clamped taps) at
/// scale_factor (grid + offset)/src_grid, i.e. source coordinate (dst + 0.5)·src_grid/(grid + offset) − 0.5.
/// Upstream computes in float32; here in f64, rounded once.
pub fn interpolate_pos_embed(pos: &[f32], d: usize, src_grid: usize, grid: usize, offset: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity((1 + grid * grid) * d);
    out.extend_from_slice(&pos[..d]);
    if grid == src_grid {
        out.extend_from_slice(&pos[d..]);
        return out;
    }
    let ratio = src_grid as f64 / (grid as f64 + offset);
    let cubic = |x: f64| -> [f64; 4] {
        let a = -0.75;
        let c1 = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        let c2 = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
        [c2(x + 1.0), c1(x), c1(1.0 - x), c2(2.0 - x)]
    };
    let taps = |dst: usize| -> ([usize; 4], [f64; 4]) {
        let s = (dst as f64 + 0.5) * ratio - 0.5;
        let f = s.floor();
        let wts = cubic(s - f);
        let idx = [-1i64, 0, 1, 2].map(|k| (f as i64 + k).clamp(0, src_grid as i64 - 1) as usize);
        (idx, wts)
    };
    let grid_src = &pos[d..];
    for oy in 0..grid {
        let (iy, wy) = taps(oy);
        for ox in 0..grid {
            let (ix, wx) = taps(ox);
            for c in 0..d {
                let mut s = 0f64;
                for a in 0..4 {
                    let mut row = 0f64;
                    for b in 0..4 {
                        row += wx[b] * grid_src[(iy[a] * src_grid + ix[b]) * d + c] as f64;
                    }
                    s += wy[a] * row;
                }
                out.push(s as f32);
            }
        }
    }
    out
}
