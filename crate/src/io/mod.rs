//! Weight I/O: the converted format (`converted`, `quant`: manifest + safetensors shards, q8/q4
//! blocks), the upstream `torch.save` checkpoints (`consolidated.RR-of-NN.model.pth`) read safely and
//! tensor by tensor, with model-parallel ranks merged back into whole tensors; inputs opened without blocking
//! (`files`) and outputs that never touch inputs (`outputs`).

pub mod converted;
pub mod files;
pub mod outputs;
pub mod pickle;
pub mod pth;
pub mod quant;
mod source;

pub use source::TensorSource;

pub use pickle::DType;
pub use pth::{split_rule, MergedInfo, PthFile, Split, TensorInfo, UpstreamCheckpoint};
