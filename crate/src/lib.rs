//! SPHINX (Alpha-VLLM/LLaMA2-Accessory) inference: image preprocessing, vision towers, LLaMA decoder,
//! tokenizer and generation, on our own WGSL kernels over wgpu (native and browser) with a CPU twin
//! for every kernel.
//!
//! Layers, bottom up: `runtime` (wgpu device, buffers, pipelines) → `kernels` (one `.wgsl` + CPU twin
//! each, dispatched on a [`tensor::Device`]) → `nn` (layers) → `models` (towers, decoder, the SPHINX
//! assembly) ; `io` (checkpoints), `image` (preprocessing), `text` (tokenizer, template) beside them.

pub mod bench;
pub mod config;
pub mod cpu;
pub mod convert;
pub mod error;
pub mod flops;
pub mod generate;
pub mod image;
pub mod io;
pub mod kernels;
pub mod load;
pub mod models;
pub mod nn;
pub mod runtime;
pub mod shapes;
pub mod tensor;
pub mod text;
pub mod trace;
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
pub use tensor::{Device, Tensor};
