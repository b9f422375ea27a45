//! What the ViT towers share (DINOv2, CLIP ViT-L, the Q-Former's BLIP-2 vision model): the patch
//! embedding — patches through a strided convolution, a class token before them, learned
//! positions added, one view after another — and self-attention over fused [q | k | v] rows.

use crate::image::ImageTensor;
use crate::kernels::add::add_;
use crate::kernels::attention::attention_into;
use crate::shapes::Attn;
use crate::kernels::copy2d::copy2d;
use crate::shapes::Strided;
use crate::kernels::patchify::Layout;
use crate::nn::PatchConv;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// A ViT's embedding of its input views.
pub struct PatchEmbedding {
    /// The patch convolution (kernel = stride = patch size), to width W.
    pub conv: PatchConv,
    /// The class token, [1, W].
    pub class: Tensor,
    /// The positions of the class token and every patch, [1 + grid², W].
    pub pos: Tensor,
    /// Patches per side of the input.
    pub grid: usize,
}

impl PatchEmbedding {
    /// Tokens per view: class + grid².
    pub fn tokens(&self) -> usize {
        1 + self.grid * self.grid
    }

    /// views, each [3, side, side] (normalised for the tower) → [views · tokens, W].
    pub fn forward(&self, device: &Device, views: &[ImageTensor]) -> Result<Tensor> {
        let (d, t, b) = (self.class.last_dim(), self.tokens(), views.len());
        let side = self.grid * self.conv.kernel;
        let mut x = Tensor::empty(device, &[b * t, d])?;
        for (i, v) in views.iter().enumerate() {
            let img = Tensor::from_slice(device, &[3, side, side], v.data())?;
            let patches = self.conv.forward(&img, Layout::Chw)?; // [grid², W], row-major patches
            copy2d(&mut x, Strided::rows((i * t + 1) * d, d), &patches, Strided::rows(0, d), 1, t - 1, d)?;
        }
        // class token first, then + positions for every view (source batch stride 0 repeats them)
        copy2d(&mut x, Strided { offset: 0, row: d, batch: t * d }, &self.class, Strided::default(), b, 1, d)?;
        let mut pos = Tensor::empty(device, &[b * t, d])?;
        copy2d(&mut pos, Strided { offset: 0, row: d, batch: t * d }, &self.pos, Strided { offset: 0, row: d, batch: 0 }, b, t, d)?;
        add_(&mut x, &pos, None)?;
        Ok(x)
    }
}

/// Self-attention over `b` sequences of `t` tokens whose rows hold [q | k | v] (each `heads` ×
/// head_dim): qkv [b·t, 3D] → [b·t, D], softmax(q kᵀ · head_dim^-0.5) v.
pub(crate) fn fused_self_attention(qkv: &Tensor, b: usize, t: usize, heads: usize) -> Result<Tensor> {
    let d = qkv.last_dim() / 3;
    if heads == 0 || !d.is_multiple_of(heads) || qkv.shape() != [b * t, 3 * d] {
        return Err(Error::Shape(format!("self-attention: qkv {:?} for {b}x{t} tokens, {heads} heads", qkv.shape())));
    }
    let hd = d / heads;
    let mut o = Tensor::empty(&qkv.device(), &[b * t, d])?;
    let s = Strided { offset: 0, row: 3 * d, batch: t * 3 * d };
    let a = Attn { batch: b, q_len: t, kv_len: t, n_heads: heads, n_kv_heads: heads, head_dim: hd, causal: false, q_pos0: 0, scale: (hd as f32).powf(-0.5) };
    attention_into(&mut o, Strided { offset: 0, row: d, batch: t * d }, qkv, s, qkv, Strided { offset: d, ..s }, qkv, Strided { offset: 2 * d, ..s }, &a)?;
    Ok(o)
}
