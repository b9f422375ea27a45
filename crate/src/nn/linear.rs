//! `Linear` (torch `nn.Linear`, fairscale Column/RowParallelLinear once merged): weight [out, in]
//! plus optional bias. A weight larger than the adapter's storage-binding limit is kept as row
//! chunks, each multiplied into its own column block of the output.

use super::Weights;
use crate::kernels::linear::linear_into;
use crate::tensor::{Device, Tensor};
use crate::Result;

pub struct Linear {
    /// (first output row, weight rows [n, in], bias [n]) chunks.
    chunks: Vec<(usize, Tensor, Option<Tensor>)>,
    pub out_features: usize,
    pub in_features: usize,
}

/// The largest weight chunk, in bytes, one binding may hold on this device.
pub fn max_binding(device: &Device) -> u64 {
    match device {
        Device::Cpu => u64::MAX,
        Device::Gpu(g) => g.info.max_storage_binding.min(g.info.max_buffer_size),
    }
}

impl Linear {
    /// Loads `weight` [out, in] (and `bias` [out] when `bias`) from this scope.
    pub fn load(w: &Weights, out_features: usize, in_features: usize, bias: bool) -> Result<Linear> {
        let values = w.values("weight", &[out_features, in_features])?;
        let bias = if bias { Some(w.values("bias", &[out_features])?) } else { None };
        Linear::from_values(w.device(), values, out_features, in_features, bias)
    }

    /// Loads a weight stored with more dimensions (a conv kernel [out, c, k, k]) as [out, prod(rest)].
    pub fn load_reshaped(w: &Weights, shape: &[usize], bias: bool) -> Result<Linear> {
        let values = w.values("weight", shape)?;
        let out = shape[0];
        let inf = shape[1..].iter().product();
        let bias = if bias { Some(w.values("bias", &[out])?) } else { None };
        Linear::from_values(w.device(), values, out, inf, bias)
    }

    /// A Linear from host values (weight [out, in] row-major, bias [out]).
    pub fn from_values(device: &Device, values: Vec<f32>, out_features: usize, in_features: usize, bias: Option<Vec<f32>>) -> Result<Linear> {
        let row_bytes = (in_features * 4).max(4) as u64;
        let rows_per_chunk = ((max_binding(device) / row_bytes) as usize).clamp(1, out_features.max(1));
        let mut chunks = Vec::new();
        for first in (0..out_features).step_by(rows_per_chunk) {
            let n = rows_per_chunk.min(out_features - first);
            let part = &values[first * in_features..(first + n) * in_features];
            let b = match &bias {
                Some(b) => Some(Tensor::from_slice(device, &[n], &b[first..first + n])?),
                None => None,
            };
            chunks.push((first, Tensor::from_slice(device, &[n, in_features], part)?, b));
        }
        Ok(Linear { chunks, out_features, in_features })
    }

    /// x [.., in] → [.., out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.out_features;
        }
        let mut y = Tensor::empty(&x.device(), &shape)?;
        self.forward_into(&mut y, 0, x)?;
        Ok(y)
    }

    /// Writes x·wᵀ + b into columns `col .. col + out` of y.
    pub fn forward_into(&self, y: &mut Tensor, col: usize, x: &Tensor) -> Result<()> {
        for (first, w, b) in &self.chunks {
            linear_into(y, col + first, x, w, b.as_ref())?;
        }
        Ok(())
    }
}
