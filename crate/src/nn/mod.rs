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
pub use weights::{TensorSource, Weights};
