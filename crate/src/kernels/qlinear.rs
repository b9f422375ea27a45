//! Fused dequantize-and-multiply for weights stored as f16, q8 or q4 (docs/format.md): the WGSL
//! kernels read the packed words directly — matrix-vector (`matvec_*.wgsl`, decode) and tiled
//! matrix-matrix (`linear_*.wgsl`, prefill and vision) — and gather rows of a packed embedding table
//! (`gather_rows_*.wgsl`). The CPU twins dequantize a few rows at a time, never a whole matrix.

use super::linear::{Params, MATVEC_MAX_ROWS};
use super::{buf, cpu, gpu_of, u32_of};
use crate::io::quant::{padded_cols, Packed, Quant};
use crate::runtime::{GpuBuffer, Kernel};
use crate::tensor::{Data, Device, Tensor};
use crate::{Error, Result};

const MATVEC_F16: Kernel = Kernel { name: "matvec_f16", source: concat!(include_str!("linear_params.wgsl"), include_str!("matvec_f16.wgsl")) };
const MATVEC_Q8: Kernel = Kernel { name: "matvec_q8", source: concat!(include_str!("linear_params.wgsl"), include_str!("matvec_q8.wgsl")) };
const MATVEC_Q4: Kernel = Kernel { name: "matvec_q4", source: concat!(include_str!("linear_params.wgsl"), include_str!("matvec_q4.wgsl")) };
const LINEAR_F16: Kernel = Kernel { name: "linear_f16", source: concat!(include_str!("linear_params.wgsl"), include_str!("linear_f16.wgsl")) };
const LINEAR_Q8: Kernel = Kernel { name: "linear_q8", source: concat!(include_str!("linear_params.wgsl"), include_str!("linear_q8.wgsl")) };
const LINEAR_Q4: Kernel = Kernel { name: "linear_q4", source: concat!(include_str!("linear_params.wgsl"), include_str!("linear_q4.wgsl")) };
const GATHER_F16: Kernel = Kernel { name: "gather_rows_f16", source: include_str!("gather_rows_f16.wgsl") };
const GATHER_Q8: Kernel = Kernel { name: "gather_rows_q8", source: include_str!("gather_rows_q8.wgsl") };
const GATHER_Q4: Kernel = Kernel { name: "gather_rows_q4", source: include_str!("gather_rows_q4.wgsl") };
const WG: u32 = 256;

/// A packed weight matrix [rows, cols] on a device (f16, q8 or q4).
pub struct QWeight {
    pub quant: Quant,
    pub rows: usize,
    pub cols: usize,
    data: QData,
}

enum QData {
    Cpu(Packed),
    Gpu { buffer: GpuBuffer, scales_word: u32 },
}

impl QWeight {
    pub fn new(device: &Device, packed: Packed) -> Result<QWeight> {
        if packed.quant == Quant::F32 {
            return Err(Error::Shape("QWeight holds f16/q8/q4 weights; f32 ones are plain tensors".into()));
        }
        let (quant, rows, cols) = (packed.quant, packed.rows, packed.cols);
        let data = match device {
            Device::Cpu => QData::Cpu(packed),
            Device::Gpu(g) => {
                let scales_word = u32_of("scales offset", packed.scales_offset() / 4)?;
                QData::Gpu { buffer: g.upload(&packed.bytes)?, scales_word }
            }
        };
        Ok(QWeight { quant, rows, cols, data })
    }

    pub fn byte_len(&self) -> usize {
        self.quant.bytes(self.rows, self.cols)
    }
}


/// Writes x·wᵀ + b into columns `y_col .. y_col + rows(w)` of y ([M, Ny]); x is [M, cols(w)].
pub fn qlinear_into(y: &mut Tensor, y_col: usize, x: &Tensor, w: &QWeight, b: Option<&Tensor>) -> Result<()> {
    let (m, k, n) = (x.rows(), x.last_dim(), w.rows);
    if w.cols != k {
        return Err(Error::Shape(format!("linear: {} weight [{n}, {}] does not take inputs of width {k}", w.quant, w.cols)));
    }
    if let Some(b) = b {
        b.expect_shape("linear bias", &[n])?;
    }
    let ny = y.last_dim();
    if y.rows() != m || y_col + n > ny {
        return Err(Error::Shape(format!("linear: output {:?} cannot take {m} rows x columns {y_col}..{}", y.shape(), y_col + n)));
    }
    let mut all = vec![x, &*y];
    all.extend(b);
    match (gpu_of("qlinear", &all)?, &w.data) {
        (Some(gpu), QData::Gpu { buffer, scales_word }) => {
            let p = Params {
                m: u32_of("linear rows", m)?,
                n: u32_of("linear outputs", n)?,
                k: u32_of("linear inputs", k)?,
                has_bias: b.is_some() as u32,
                x_offset: 0,
                x_stride: k as u32,
                y_offset: u32_of("linear output offset", y_col)?,
                y_stride: u32_of("linear output stride", ny)?,
                kp: u32_of("padded inputs", padded_cols(k))?,
                scales: *scales_word,
                _pad: [0; 2],
            };
            let bias = b.map(buf).unwrap_or(buf(x));
            let bufs = [buf(x), buffer.buffer(), bias, buf(y)];
            let few = m <= MATVEC_MAX_ROWS;
            let kernel = match (w.quant, few) {
                (Quant::F16, true) => &MATVEC_F16,
                (Quant::Q8, true) => &MATVEC_Q8,
                (Quant::Q4, true) => &MATVEC_Q4,
                (Quant::F16, false) => &LINEAR_F16,
                (Quant::Q8, false) => &LINEAR_Q8,
                (Quant::Q4, false) => &LINEAR_Q4,
                (Quant::F32, _) => unreachable!("QWeight::new refuses f32"),
            };
            let groups = if few { [n.div_ceil(8) as u32, m as u32, 1] } else { [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1] };
            gpu.dispatch(kernel, &[], &p, &bufs, groups)
        }
        (None, QData::Cpu(packed)) => {
            let bv = b.map(cpu).map(<[f32]>::to_vec);
            let xv = cpu(x).to_vec();
            let out = y.cpu_mut().expect("cpu");
            qlinear_cpu(out, ny, y_col, &xv, packed, bv.as_deref(), m);
            Ok(())
        }
        _ => Err(Error::Shape("linear: weight and activations on different devices".into())),
    }
}

/// CPU twin: 64 weight rows dequantized at a time, then f32 dot products in order of k.
pub fn qlinear_cpu(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], w: &Packed, b: Option<&[f32]>, m: usize) {
    let k = w.cols;
    super::matmul_cpu(y, ny, y_col, x, b, m, w.rows, k, |j0, j1| {
        let mut rows = vec![0f32; (j1 - j0) * k];
        for j in j0..j1 {
            w.dequantize_row(j, &mut rows[(j - j0) * k..(j - j0 + 1) * k]);
        }
        std::borrow::Cow::Owned(rows)
    });
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    n: u32,
    cols: u32,
    first: u32,
    chunk_rows: u32,
    dst_offset: u32,
    dst_row: u32,
    kp: u32,
    scales: u32,
}

/// Writes rows `table[id]` for `ids` into rows `row0..` of `dst` ([rows, C]) from packed table
/// chunks (first id, rows).
pub fn qgather_rows_into(dst: &mut Tensor, row0: usize, chunks: &[(usize, &QWeight)], ids: &[u32]) -> Result<()> {
    let c = dst.last_dim();
    let total: usize = chunks.iter().map(|(_, t)| t.rows).sum();
    if row0 + ids.len() > dst.rows() {
        return Err(Error::Shape(format!("gather_rows: {} rows at {row0} into {:?}", ids.len(), dst.shape())));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= total) {
        return Err(Error::Shape(format!("token id {bad} outside the embedding table of {total} rows")));
    }
    if ids.is_empty() {
        return Ok(());
    }
    match dst.data_mut() {
        Data::Gpu(out) => {
            let gpu = out.gpu().clone();
            let id_buf = gpu.upload(bytemuck::cast_slice(ids))?;
            for (first, t) in chunks {
                let QData::Gpu { buffer, scales_word } = &t.data else {
                    return Err(Error::Shape("gather_rows: table on the CPU, output on the GPU".into()));
                };
                if t.cols != c {
                    return Err(Error::Shape(format!("gather_rows: table width {} vs output {c}", t.cols)));
                }
                let p = GatherParams {
                    n: u32_of("ids", ids.len())?,
                    cols: u32_of("cols", c)?,
                    first: u32_of("first id", *first)?,
                    chunk_rows: u32_of("chunk rows", t.rows)?,
                    dst_offset: u32_of("dst offset", row0 * c)?,
                    dst_row: c as u32,
                    kp: u32_of("padded cols", padded_cols(c))?,
                    scales: *scales_word,
                };
                let kernel = match t.quant {
                    Quant::F16 => &GATHER_F16,
                    Quant::Q8 => &GATHER_Q8,
                    Quant::Q4 => &GATHER_Q4,
                    Quant::F32 => unreachable!("QWeight::new refuses f32"),
                };
                let groups = gpu.grid((ids.len() * c) as u64, WG);
                gpu.dispatch(kernel, &[("WG", WG as f64)], &p, &[id_buf.buffer(), buffer.buffer(), out.buffer()], groups)?;
            }
            Ok(())
        }
        Data::Cpu(out) => {
            for (first, t) in chunks {
                let QData::Cpu(packed) = &t.data else {
                    return Err(Error::Shape("gather_rows: table on the GPU, output on the CPU".into()));
                };
                for (r, &id) in ids.iter().enumerate() {
                    let id = id as usize;
                    if id >= *first && id - first < t.rows {
                        let at = (row0 + r) * c;
                        packed.dequantize_row(id - first, &mut out[at..at + c]);
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn qlinear_gpu_matches_cpu_for_every_format_and_shape() {
        let dev = gpu_device();
        let mut rng = Rng::new(21);
        // rows ≤ 4 take matvec_*.wgsl, more the tiled linear_*.wgsl; k = 70 and 45 end in a partial block
        for quant in [Quant::F16, Quant::Q8, Quant::Q4] {
            for &(m, n, k, bias) in &[(1, 1, 32, false), (1, 13, 70, true), (3, 40, 45, true), (5, 17, 70, false), (70, 130, 96, true)] {
                let x = rng.vec(m * k, 1.0);
                let w = rng.vec(n * k, 0.5);
                let b = rng.vec(n, 0.5);
                let packed = Packed::quantize(quant, &w, n, k);
                let mut want = vec![0f32; m * n];
                qlinear_cpu(&mut want, n, 0, &x, &packed, bias.then_some(&b[..]), m);
                // the twin equals an f32 matmul with the dequantized matrix
                let mut plain = vec![0f32; m * n];
                crate::kernels::linear::linear_cpu(&mut plain, n, 0, &x, &packed.to_f32(), bias.then_some(&b[..]), m, n, k);
                assert_eq!(want, plain, "{quant} twin");
                let qw = QWeight::new(&dev, packed).unwrap();
                let bg = Tensor::from_vec(&dev, &[n], b).unwrap();
                let mut y = guarded(&[m, n], &vec![0.0; m * n]);
                qlinear_into(&mut y, 0, &Tensor::from_vec(&dev, &[m, k], x).unwrap(), &qw, bias.then_some(&bg)).unwrap();
                // scale applied per block of products instead of per product: a few ulp
                assert_close(&format!("{quant} {m}x{n}x{k}"), &read_guarded(&y), &want, 2e-5, 2e-5);
            }
        }
    }

    #[test]
    fn qgather_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(22);
        let (v, c) = (29, 45);
        let table = rng.vec(v * c, 1.0);
        let ids: Vec<u32> = (0..11).map(|_| rng.below(v) as u32).collect();
        for quant in [Quant::F16, Quant::Q8, Quant::Q4] {
            let a = Packed::quantize(quant, &table[..20 * c], 20, c);
            let b = Packed::quantize(quant, &table[20 * c..], 9, c);
            let mut want = Tensor::zeros(&Device::Cpu, &[ids.len() + 1, c]).unwrap();
            let (ac, bc) = (QWeight::new(&Device::Cpu, a.clone()).unwrap(), QWeight::new(&Device::Cpu, b.clone()).unwrap());
            qgather_rows_into(&mut want, 1, &[(0, &ac), (20, &bc)], &ids).unwrap();
            let (ag, bgw) = (QWeight::new(&dev, a).unwrap(), QWeight::new(&dev, b).unwrap());
            let mut out = guarded(&[ids.len() + 1, c], &vec![0.0; (ids.len() + 1) * c]);
            qgather_rows_into(&mut out, 1, &[(0, &ag), (20, &bgw)], &ids).unwrap();
            assert_eq!(read_guarded(&out), want.cpu().unwrap(), "{quant}");
        }
    }
}
