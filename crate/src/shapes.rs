//! What an operation is, for both backends (the CPU kernels and the GPU's): the strided views its
//! operands are read and written through, and the sizes of an attention call. Plain data; the
//! operations themselves are in `cpu` and `kernels`.

/// One side of a copy: element offset, then strides between rows and between batches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Strided {
    pub offset: usize,
    pub row: usize,
    pub batch: usize,
}

impl Strided {
    /// Rows of width `row` starting at `offset`, one batch.
    pub fn rows(offset: usize, row: usize) -> Strided {
        Strided { offset, row, batch: 0 }
    }
}

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Causal mask: query row i (at position q_pos0 + i) sees keys 0..=q_pos0 + i.
    pub causal: bool,
    pub q_pos0: usize,
    pub scale: f32,
}

impl Attn {
    /// Operations of the scores and the weighted sum (2 per multiply-add), the causal keys a
    /// query sees bounded by the last query's.
    pub fn flops(&self) -> usize {
        let keys = if self.causal { self.kv_len.min(self.q_pos0 + self.q_len) } else { self.kv_len };
        4 * self.batch * self.q_len * keys * self.n_heads * self.head_dim
    }
}
