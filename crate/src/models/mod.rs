//! The networks: vision towers, the LLaMA decoder, and `sphinx` which assembles a variant.

pub mod clip_vit;
pub mod convnext;
pub mod dinov2;
pub mod llama;
pub mod memory;
pub mod params;
pub mod qformer;
pub mod sphinx;
pub mod vit;
