//! Row gather / embedding lookup (torch `nn.Embedding`, `ParallelEmbedding`): one body,
//! `gather_rows.wgsl`, over the weight accessor of the table's format (f32 here; f16, q8 and q4
//! tables through `qlinear::qgather_rows_into`) + CPU twin. Tables larger than one storage binding
//! come as row chunks, one dispatch each.

use super::linear::WeightFormat;
use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::{Gpu, Kernel};
use crate::tensor::{Data, Tensor};
use crate::{Error, Result};

macro_rules! gather_of {
    ($format:literal) => {
        Kernel { name: concat!("gather_rows/", $format), parts: &[include_str!(concat!("weights_", $format, ".wgsl")), include_str!("gather_rows.wgsl")] }
    };
}

const KERNELS: [Kernel; 4] = [gather_of!("f32"), gather_of!("f16"), gather_of!("q8"), gather_of!("q4")];
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    first: u32,
    chunk_rows: u32,
    dst_offset: u32,
    dst_row: u32,
    kp: u32,
    scales: u32,
}

/// One chunk of a table on the GPU: its buffer in `format`, the first id it holds, its rows and
/// (block formats) padded row length and first word of its scales.
pub(super) struct Chunk<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub format: WeightFormat,
    pub first: usize,
    pub rows: usize,
    pub kp: usize,
    pub scales: u32,
}

/// Records the gather of `ids` (uploaded in `id_buf`) from `chunk` into rows `row0..` of `dst`
/// ([rows, c]).
pub(super) fn dispatch(gpu: &Gpu, chunk: &Chunk, id_buf: &wgpu::Buffer, n_ids: usize, dst: &wgpu::Buffer, row0: usize, c: usize) -> Result<()> {
    let kernel = match chunk.format {
        WeightFormat::F32 => &KERNELS[0],
        WeightFormat::F16 | WeightFormat::F16Native => &KERNELS[1],
        WeightFormat::Q8 => &KERNELS[2],
        WeightFormat::Q4 => &KERNELS[3],
    };
    let p = Params {
        n: u32_of("ids", n_ids)?,
        k: u32_of("cols", c)?,
        first: u32_of("first id", chunk.first)?,
        chunk_rows: u32_of("chunk rows", chunk.rows)?,
        dst_offset: u32_of("dst offset", row0 * c)?,
        dst_row: u32_of("cols", c)?,
        kp: u32_of("padded cols", chunk.kp)?,
        scales: chunk.scales,
    };
    let groups = gpu.grid((n_ids * c) as u64, WG);
    gpu.dispatch(kernel, &[("WG", WG as f64)], &p, &[id_buf, chunk.buffer, dst], groups)
}

/// Writes rows `table[id]` for `ids` into rows `row0..` of `dst` ([rows, C]). `chunks` are
/// (first id, table rows [n, C]) pieces of one table.
pub fn gather_rows_into(dst: &mut Tensor, row0: usize, chunks: &[(usize, &Tensor)], ids: &[u32]) -> Result<()> {
    let c = dst.last_dim();
    let total: usize = chunks.iter().map(|(_, t)| t.rows()).sum();
    if row0 + ids.len() > dst.rows() {
        return Err(Error::Shape(format!("gather_rows: {} rows at {row0} into {:?}", ids.len(), dst.shape())));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= total) {
        return Err(Error::Shape(format!("token id {bad} outside the embedding table of {total} rows")));
    }
    for (_, t) in chunks {
        if t.last_dim() != c {
            return Err(Error::Shape(format!("gather_rows: table width {} vs output {c}", t.last_dim())));
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let mut all: Vec<&Tensor> = chunks.iter().map(|(_, t)| *t).collect();
    all.push(dst);
    match gpu_of("gather_rows", &all)? {
        Some(gpu) => {
            let id_buf = gpu.upload(bytemuck::cast_slice(ids))?;
            for (first, table) in chunks {
                let chunk = Chunk { buffer: buf(table), format: WeightFormat::F32, first: *first, rows: table.rows(), kp: 0, scales: 0 };
                dispatch(&gpu, &chunk, id_buf.buffer(), ids.len(), buf(dst), row0, c)?;
            }
            Ok(())
        }
        None => {
            let out = match dst.data_mut() {
                Data::Cpu(v) => v,
                Data::Gpu(_) => unreachable!("checked by gpu_of"),
            };
            for (first, table) in chunks {
                gather_rows_cpu(&mut out[row0 * c..], cpu(table), *first, table.rows(), ids, c);
            }
            Ok(())
        }
    }
}

/// CPU twin.
pub fn gather_rows_cpu(dst: &mut [f32], table: &[f32], first: usize, rows: usize, ids: &[u32], c: usize) {
    for (r, &id) in ids.iter().enumerate() {
        let id = id as usize;
        if id >= first && id - first < rows {
            dst[r * c..(r + 1) * c].copy_from_slice(&table[(id - first) * c..(id - first + 1) * c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn gather_rows_gpu_matches_cpu_across_chunks() {
        let dev = gpu_device();
        let mut rng = Rng::new(9);
        let (v, c) = (37, 5);
        let table = rng.vec(v * c, 1.0);
        let ids: Vec<u32> = (0..23).map(|_| rng.below(v) as u32).collect();
        let mut want = vec![0f32; 2 * c];
        want.extend(std::iter::repeat_n(0.0, ids.len() * c));
        gather_rows_cpu(&mut want[2 * c..], &table, 0, v, &ids, c);
        let a = Tensor::from_slice(&dev, &[20, c], &table[..20 * c]).unwrap();
        let b = Tensor::from_slice(&dev, &[17, c], &table[20 * c..]).unwrap();
        let mut out = guarded(&[ids.len() + 2, c], &vec![0.0; (ids.len() + 2) * c]);
        gather_rows_into(&mut out, 2, &[(0, &a), (20, &b)], &ids).unwrap();
        assert_eq!(read_guarded(&out), want);
        assert!(gather_rows_into(&mut out, 0, &[(0, &a)], &[25]).is_err(), "id past the table");
    }
}
