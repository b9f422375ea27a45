//! Strided block copy between tensors (concatenation, crops, KV-cache writes, sequence assembly);
//! `copy2d.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::shapes::Strided;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "copy2d", parts: &[include_str!("store_f32.wgsl"), include_str!("copy2d.wgsl")] };
/// Into f16 elements (the f16 KV cache).
const TO_F16: Kernel = Kernel { name: "copy2d/f16", parts: &[include_str!("store_f16.wgsl"), include_str!("copy2d.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    _pad: u32,
    src_offset: u32,
    src_row: u32,
    src_batch: u32,
    _pad1: u32,
    dst_offset: u32,
    dst_row: u32,
    dst_batch: u32,
    _pad2: u32,
}

fn extent(s: Strided, batch: usize, rows: usize, cols: usize) -> usize {
    if batch == 0 || rows == 0 || cols == 0 {
        return 0;
    }
    s.offset + (batch - 1) * s.batch + (rows - 1) * s.row + cols
}

/// Copies a [batch, rows, cols] block from `src` (laid out per `s`) into `dst` (per `d`).
pub fn copy2d(dst: &mut Tensor, d: Strided, src: &Tensor, s: Strided, batch: usize, rows: usize, cols: usize) -> Result<()> {
    copy_block(dst, d, src, s, [batch, rows, cols], false)
}

/// [`copy2d`] into f16: on the GPU `dst` holds two f16 values per element and `d` counts f16
/// values (the f16 KV cache; needs shader-f16); on the CPU `dst` holds the f16-rounded values.
pub fn copy2d_to_f16(dst: &mut Tensor, d: Strided, src: &Tensor, s: Strided, batch: usize, rows: usize, cols: usize) -> Result<()> {
    copy_block(dst, d, src, s, [batch, rows, cols], true)
}

fn copy_block(dst: &mut Tensor, d: Strided, src: &Tensor, s: Strided, [batch, rows, cols]: [usize; 3], to_f16: bool) -> Result<()> {
    let dst_len = dst.numel() * if to_f16 && dst.gpu().is_some() { 2 } else { 1 };
    if extent(s, batch, rows, cols) > src.numel() || extent(d, batch, rows, cols) > dst_len {
        return Err(Error::Shape(format!(
            "copy2d: block {batch}x{rows}x{cols} out of bounds (src {:?} {s:?}, dst {:?} {d:?})",
            src.shape(),
            dst.shape()
        )));
    }
    let n = batch * rows * cols;
    match gpu_of("copy2d", &[&*dst, src])? {
        Some(gpu) => {
            let p = Params {
                batch: u32_of("batch", batch)?,
                rows: u32_of("rows", rows)?,
                cols: u32_of("cols", cols)?,
                _pad: 0,
                src_offset: u32_of("src offset", s.offset)?,
                src_row: u32_of("src row stride", s.row)?,
                src_batch: u32_of("src batch stride", s.batch)?,
                _pad1: 0,
                dst_offset: u32_of("dst offset", d.offset)?,
                dst_row: u32_of("dst row stride", d.row)?,
                dst_batch: u32_of("dst batch stride", d.batch)?,
                _pad2: 0,
            };
            u32_of("copy2d elements", n)?;
            let groups = gpu.grid(n as u64, WG);
            gpu.dispatch(if to_f16 { &TO_F16 } else { &KERNEL }, &[("WG", WG as f64)], &p, &[buf(src), buf(dst)], groups)
        }
        None => {
            let sv = cpu(src).to_vec();
            let out = dst.cpu_mut().expect("cpu");
            copy2d_cpu(out, d, &sv, s, batch, rows, cols);
            if to_f16 {
                for b in 0..batch {
                    for r in 0..rows {
                        let at = d.offset + b * d.batch + r * d.row;
                        out[at..at + cols].iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
                    }
                }
            }
            Ok(())
        }
    }
}

/// CPU twin.
pub fn copy2d_cpu(dst: &mut [f32], d: Strided, src: &[f32], s: Strided, batch: usize, rows: usize, cols: usize) {
    for b in 0..batch {
        for r in 0..rows {
            let so = s.offset + b * s.batch + r * s.row;
            let dof = d.offset + b * d.batch + r * d.row;
            dst[dof..dof + cols].copy_from_slice(&src[so..so + cols]);
        }
    }
}

/// Rows `start..start+n` of a [rows, C] tensor, as a new [n, C] tensor.
pub fn slice_rows(x: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    let c = x.last_dim();
    let mut y = Tensor::empty(&x.device(), &[n, c])?;
    copy2d(&mut y, Strided::rows(0, c), x, Strided::rows(start * c, c), 1, n, c)?;
    Ok(y)
}

/// Concatenates [rows, C_i] tensors along the last dimension.
pub fn concat_cols(parts: &[&Tensor]) -> Result<Tensor> {
    let rows = parts.first().map(|t| t.rows()).unwrap_or(0);
    let total: usize = parts.iter().map(|t| t.last_dim()).sum();
    let dev = parts.first().map(|t| t.device()).ok_or_else(|| Error::Shape("concat of nothing".into()))?;
    let mut y = Tensor::empty(&dev, &[rows, total])?;
    let mut col = 0;
    for t in parts {
        if t.rows() != rows {
            return Err(Error::Shape(format!("concat_cols: {} rows vs {rows}", t.rows())));
        }
        let c = t.last_dim();
        copy2d(&mut y, Strided::rows(col, total), t, Strided::rows(0, c), 1, rows, c)?;
        col += c;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn copy2d_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(8);
        let (batch, rows, cols) = (3, 5, 7);
        let s = Strided { offset: 2, row: 9, batch: 50 };
        let d = Strided { offset: 3, row: 11, batch: 60 };
        let src = rng.vec(200, 1.0);
        let init = rng.vec(190, 1.0);
        let mut want = init.clone();
        copy2d_cpu(&mut want, d, &src, s, batch, rows, cols);
        let mut dg = guarded(&[190], &init);
        copy2d(&mut dg, d, &Tensor::from_vec(&dev, &[200], src).unwrap(), s, batch, rows, cols).unwrap();
        assert_eq!(read_guarded(&dg), want);
    }

    #[test]
    fn copy2d_refuses_out_of_bounds() {
        let dev = gpu_device();
        let src = Tensor::zeros(&dev, &[10]).unwrap();
        let mut dst = Tensor::zeros(&dev, &[10]).unwrap();
        assert!(copy2d(&mut dst, Strided::rows(0, 5), &src, Strided::rows(0, 5), 1, 3, 5).is_err());
    }
}
