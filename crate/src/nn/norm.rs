//! `LayerNorm` (torch `nn.LayerNorm`, timm's channels-last LayerNorm) and `RmsNorm` (LLaMA).

use super::Weights;
use crate::kernels::{layer_norm::layer_norm, rms_norm::rms_norm};
use crate::tensor::Tensor;
use crate::Result;

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm { weight: w.tensor("weight", &[dim])?, bias: w.tensor("bias", &[dim])?, eps })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: w.tensor("weight", &[dim])?, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        rms_norm(x, &self.weight, self.eps)
    }
}
