//! `Linear` (torch `nn.Linear`, fairscale Column/RowParallelLinear once merged): weight [out, in]
//! in any stored precision (f32, or f16/q8/q4 multiplied by the fused kernels) plus an optional
//! bias. A weight larger than the adapter's storage-binding limit is kept as row chunks, each
//! multiplied into its own column block of the output. At f16 precision an f32 weight is stored as
//! f16 and read as WGSL `f16`. Each chunk's shape is registered for autotuning.

use super::{Precision, Rows, Weights};
use crate::io::quant::{Packed, Quant};
use crate::kernels::linear::{linear_into_variant, Store, WeightFormat};
use crate::kernels::qlinear::{qlinear_into_variant, QWeight};
use crate::kernels::tune;
use crate::tensor::{Device, Tensor};
use crate::Result;

/// One row chunk of a weight, as the kernels take it.
pub enum WeightChunk {
    F32(Tensor),
    Packed(QWeight),
}

impl WeightChunk {
    pub fn rows(&self) -> usize {
        match self {
            WeightChunk::F32(t) => t.shape()[0],
            WeightChunk::Packed(q) => q.rows,
        }
    }

    pub fn format(&self) -> WeightFormat {
        match self {
            WeightChunk::F32(_) => WeightFormat::F32,
            WeightChunk::Packed(q) => q.format(),
        }
    }
}

/// Splits a stored [rows, cols] matrix into row chunks that each fit one storage binding; f16
/// chunks are read as WGSL `f16` when `native_f16`.
pub fn chunk_rows(device: &Device, packed: Packed, native_f16: bool) -> Result<Vec<(usize, WeightChunk)>> {
    let (rows, cols, quant) = (packed.rows, packed.cols, packed.quant);
    let row_bytes = (quant.bytes(1, cols) as u64).max(4);
    let per = ((max_binding(device) / row_bytes) as usize).clamp(1, rows.max(1));
    let mut out = Vec::new();
    let make = |part: Packed, n: usize| -> Result<WeightChunk> {
        Ok(if quant == Quant::F32 {
            WeightChunk::F32(Tensor::from_le_bytes(device, &[n, cols], &part.bytes)?)
        } else {
            WeightChunk::Packed(QWeight::with_native_f16(device, part, native_f16 && device.is_gpu())?)
        })
    };
    if per >= rows {
        // one chunk: hand the bytes over as they are (no copy on the host)
        out.push((0, make(packed, rows)?));
        return Ok(out);
    }
    for first in (0..rows).step_by(per) {
        let n = per.min(rows - first);
        out.push((first, make(packed.slice_rows(first, n), n)?));
    }
    Ok(out)
}

pub struct Linear {
    /// (first output row, weight rows [n, in], bias [n]) chunks.
    chunks: Vec<(usize, WeightChunk, Option<Tensor>)>,
    pub out_features: usize,
    pub in_features: usize,
    pub quant: Quant,
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
        Linear::load_reshaped(w, &[out_features, in_features], bias)
    }

    /// Loads a weight stored with more dimensions (a conv kernel [out, c, k, k]) as [out, prod(rest)].
    pub fn load_reshaped(w: &Weights, shape: &[usize], bias: bool) -> Result<Linear> {
        let mut packed = w.packed("weight", shape)?;
        let f16 = w.precision() == Precision::F16;
        if f16 && packed.quant == Quant::F32 {
            packed = Packed::quantize(Quant::F16, &packed.to_f32(), packed.rows, packed.cols);
        }
        let bias = if bias { Some(w.values("bias", &[shape[0]])?) } else { None };
        Linear::from_packed_at(w.device(), packed, bias, f16, w.rows())
    }

    /// A Linear from host f32 values (weight [out, in] row-major, bias [out]).
    pub fn from_values(device: &Device, values: Vec<f32>, out_features: usize, in_features: usize, bias: Option<Vec<f32>>) -> Result<Linear> {
        let packed = Packed::new(Quant::F32, out_features, in_features, bytemuck::cast_slice(&values).to_vec())?;
        drop(values);
        Linear::from_packed(device, packed, bias)
    }

    pub fn from_packed(device: &Device, packed: Packed, bias: Option<Vec<f32>>) -> Result<Linear> {
        Linear::from_packed_at(device, packed, bias, false, Rows::Both)
    }

    /// [`Linear::from_packed`]; f16 weights are read as WGSL `f16` when `native_f16`; `rows` say
    /// which row classes to autotune.
    fn from_packed_at(device: &Device, packed: Packed, bias: Option<Vec<f32>>, native_f16: bool, rows: Rows) -> Result<Linear> {
        let (out_features, in_features, quant) = (packed.rows, packed.cols, packed.quant);
        let chunks = chunk_rows(device, packed, native_f16)?;
        if let Device::Gpu(g) = device {
            for (_, w) in &chunks {
                tune::register(g, w.format(), w.rows(), in_features, rows);
            }
        }
        let chunks = chunks
            .into_iter()
            .map(|(first, w)| {
                let n = w.rows();
                let b = match &bias {
                    Some(b) => Some(Tensor::from_slice(device, &[n], &b[first..first + n])?),
                    None => None,
                };
                Ok((first, w, b))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Linear { chunks, out_features, in_features, quant })
    }

    /// Bytes of the stored weight.
    pub fn weight_bytes(&self) -> u64 {
        self.quant.bytes(self.out_features, self.in_features) as u64
    }

    /// The weight format and rows of the first row chunk (what a kernel sees).
    pub fn first_chunk(&self) -> (WeightFormat, usize) {
        self.chunks.first().map_or((WeightFormat::F32, 0), |(_, w, _)| (w.format(), w.rows()))
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

    /// The weight as one stored matrix on the CPU (with its bias), if it is one packed chunk there.
    fn cpu_packed(&self) -> Option<(&Packed, Option<&[f32]>)> {
        match self.chunks.as_slice() {
            [(0, WeightChunk::Packed(w), b)] => Some((crate::kernels::qlinear::cpu_packed(w)?, match b {
                Some(b) => Some(b.cpu()?),
                None => None,
            })),
            _ => None,
        }
    }

    /// Runs `linears`, which read the same input x, into consecutive column blocks of y (the first
    /// from column 0): on the CPU with packed weights one pass (the activations quantized once, one
    /// parallel region); elsewhere one after another.
    pub fn forward_cat(linears: &[&Linear], y: &mut Tensor, x: &Tensor) -> Result<()> {
        let (m, ny, width) = (x.rows(), y.last_dim(), linears.iter().map(|l| l.out_features).sum::<usize>());
        let fits = y.rows() == m && width <= ny && linears.iter().all(|l| l.in_features == x.last_dim());
        let parts: Option<Vec<(&Packed, Option<&[f32]>)>> = if fits && !x.device().is_gpu() { linears.iter().map(|l| l.cpu_packed()).collect() } else { None };
        if let (Some(parts), Some(xv)) = (parts, x.cpu()) {
            let mut col = 0;
            let mut list = Vec::new();
            for ((w, b), l) in parts.into_iter().zip(linears) {
                list.push((w, col, b));
                col += l.out_features;
            }
            let out = y.cpu_mut().ok_or_else(|| crate::Error::Shape("linear: output on the GPU, inputs on the CPU".into()))?;
            crate::kernels::qlinear::linear_packed_many_cpu(out, ny, xv, m, &list);
            return Ok(());
        }
        let mut col = 0;
        for l in linears {
            l.forward_into(y, col, x)?;
            col += l.out_features;
        }
        Ok(())
    }

    /// Writes x·wᵀ + b into columns `col .. col + out` of y.
    pub fn forward_into(&self, y: &mut Tensor, col: usize, x: &Tensor) -> Result<()> {
        self.store(y, col, x, Store::Set)
    }

    /// y += x·wᵀ + b (a residual added in the same pass); y is [.., out].
    pub fn forward_add(&self, y: &mut Tensor, x: &Tensor) -> Result<()> {
        if y.last_dim() != self.out_features {
            return Err(crate::Error::Shape(format!("linear: a residual of width {} for {} outputs", y.last_dim(), self.out_features)));
        }
        self.store(y, 0, x, Store::Add)
    }

    fn store(&self, y: &mut Tensor, col: usize, x: &Tensor, store: Store) -> Result<()> {
        for (first, w, b) in &self.chunks {
            match w {
                WeightChunk::F32(w) => linear_into_variant(y, col + first, x, w, b.as_ref(), None, store)?,
                WeightChunk::Packed(w) => qlinear_into_variant(y, col + first, x, w, b.as_ref(), None, store)?,
            }
        }
        Ok(())
    }
}
