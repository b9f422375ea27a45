//! `Embedding` (upstream `ParallelEmbedding`, merged): a [vocab, dim] table in any stored
//! precision, split into row chunks that fit one storage binding; lookups gather rows.

use super::linear::{chunk_rows, WeightChunk};
use super::Weights;
use crate::kernels::gather_rows::gather_rows_into;
use crate::kernels::qlinear::qgather_rows_into;
use crate::tensor::Tensor;
use crate::{Error, Result};

pub struct Embedding {
    chunks: Vec<(usize, WeightChunk)>,
    pub dim: usize,
}

impl Embedding {
    pub fn load(w: &Weights, vocab: usize, dim: usize) -> Result<Embedding> {
        let packed = w.packed("weight", &[vocab, dim])?;
        Ok(Embedding { chunks: chunk_rows(w.device(), packed, false)?, dim })
    }

    /// Writes the rows of `ids` into rows `row0..` of `dst` ([rows, dim]).
    pub fn forward_into(&self, dst: &mut Tensor, row0: usize, ids: &[u32]) -> Result<()> {
        let f32_chunks: Vec<(usize, &Tensor)> = self.chunks.iter().filter_map(|(f, c)| if let WeightChunk::F32(t) = c { Some((*f, t)) } else { None }).collect();
        if f32_chunks.len() == self.chunks.len() {
            return gather_rows_into(dst, row0, &f32_chunks, ids);
        }
        let q_chunks: Vec<(usize, &crate::kernels::qlinear::QWeight)> = self.chunks.iter().filter_map(|(f, c)| if let WeightChunk::Packed(q) = c { Some((*f, q)) } else { None }).collect();
        if q_chunks.len() != self.chunks.len() {
            return Err(Error::Shape("embedding chunks of mixed precision".into()));
        }
        qgather_rows_into(dst, row0, &q_chunks, ids)
    }
}
