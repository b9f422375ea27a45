//! Weight I/O: the upstream `torch.save` checkpoints (`consolidated.RR-of-NN.model.pth`) read safely and
//! tensor by tensor, with model-parallel ranks merged back into whole tensors.

pub mod pickle;
pub mod pth;

pub use pickle::DType;
pub use pth::{split_rule, MergedInfo, PthFile, Split, TensorInfo, UpstreamCheckpoint};
