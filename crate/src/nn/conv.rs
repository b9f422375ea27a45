//! `PatchConv`: a Conv2d whose stride equals its kernel (ViT patch embeddings, ConvNeXt stem and
//! downsampling) as im2col (`patchify`) + `Linear` over torch's [out, C, k, k] weight.

use super::{Linear, Weights};
use crate::kernels::patchify::{patchify, Layout};
use crate::tensor::Tensor;
use crate::Result;

pub struct PatchConv {
    pub linear: Linear,
    pub kernel: usize,
    pub in_channels: usize,
}

impl PatchConv {
    pub fn load(w: &Weights, out: usize, in_channels: usize, kernel: usize, bias: bool) -> Result<PatchConv> {
        let linear = Linear::load_reshaped(w, &[out, in_channels, kernel, kernel], bias)?;
        Ok(PatchConv { linear, kernel, in_channels })
    }

    /// x [C, H, W] or [H, W, C] → [(H/k)·(W/k), out] (patches row-major = a channels-last map).
    pub fn forward(&self, x: &Tensor, layout: Layout) -> Result<Tensor> {
        let cols = patchify(x, layout, self.kernel)?;
        self.linear.forward(&cols)
    }
}
