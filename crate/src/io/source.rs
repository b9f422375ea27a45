//! The source every loader reads tensors from, whatever the files.

use super::quant::{Packed, Quant};
use crate::{Error, Result};

/// Where tensors come from: an upstream `.pth` folder, a converted safetensors folder, ...
/// Reading is tensor by tensor, so a loader never holds more than one tensor on the host.
pub trait TensorSource {
    /// Where the tensors come from, for messages.
    fn describe(&self) -> String;
    /// Every tensor name, in file order.
    fn names(&self) -> Vec<String>;
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The values as f32 (row-major, merged across shards).
    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>>;
    /// How a tensor is stored (upstream checkpoints: f32 after widening).
    fn quant(&self, _name: &str) -> Quant {
        Quant::F32
    }
    /// The tensor as stored, viewed as a [shape[0], rest] matrix.
    fn read_packed(&mut self, name: &str) -> Result<Packed> {
        let shape = self.shape(name).ok_or_else(|| Error::Weights(format!("missing tensor {name} in {}", self.describe())))?;
        let (rows, cols) = super::converted::matrix_of(&shape);
        Packed::new(Quant::F32, rows, cols, bytemuck::cast_slice(&self.read_f32(name)?).to_vec())
    }
    /// Called after the last tensor is read: fails if the source's files were not what their
    /// listing promised (a converted folder compares each shard's SHA-256 here).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
