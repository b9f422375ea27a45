//! Layers built from the kernels: weight scoping (`Weights`), `Linear`, `LayerNorm`, `RmsNorm`,
//! `PatchConv`. Each has a `load(weights, ...)` constructor and a `forward`.

pub mod conv;
pub mod embedding;
pub mod linear;
pub mod norm;
pub mod weights;

pub use conv::PatchConv;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{LayerNorm, RmsNorm};
pub use weights::Weights;

use crate::tensor::Device;
use crate::{Error, Result};

/// The compute precision of a loaded model. `F16` is the f16 path: f32 weights are stored as f16
/// (read as WGSL `f16` on the GPU), and the KV cache holds f16; activations and all sums stay f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
}

/// The precision a user asks for: `auto` is f16 where the adapter has shader-f16, else f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionChoice {
    Auto,
    F32,
    F16,
}

impl PrecisionChoice {
    pub fn parse(s: &str) -> Result<PrecisionChoice> {
        match s {
            "auto" => Ok(PrecisionChoice::Auto),
            "f32" => Ok(PrecisionChoice::F32),
            "f16" => Ok(PrecisionChoice::F16),
            other => Err(Error::Config(format!("precision {other:?}: expected auto, f32 or f16"))),
        }
    }

    /// The precision on `device`. On the CPU, f16 means the same roundings as the GPU's f16 path
    /// (the CPU twin of that path); `auto` is f32 there.
    pub fn resolve(self, device: &Device) -> Result<Precision> {
        let f16 = match device {
            Device::Gpu(g) => g.info.shader_f16,
            Device::Cpu => false,
        };
        match (self, device) {
            (PrecisionChoice::F32, _) => Ok(Precision::F32),
            (PrecisionChoice::Auto, _) => Ok(if f16 { Precision::F16 } else { Precision::F32 }),
            (PrecisionChoice::F16, Device::Gpu(g)) if !f16 => Err(Error::Gpu(format!("precision f16: the adapter {} has no shader-f16", g.info.name))),
            (PrecisionChoice::F16, _) => Ok(Precision::F16),
        }
    }
}

/// Which row counts a layer's matrix products see (the tuner's classes, defined beside it).
pub use crate::kernels::tune::Rows;
