//! Column means over rows (ConvNeXt "gap as cls": mean of the 256 spatial tokens);
//! `mean_rows.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "mean_rows", parts: &[include_str!("mean_rows.wgsl")] };
const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    src_offset: u32,
    src_row: u32,
    dst_offset: u32,
    _pad: [u32; 3],
}

/// dst row `dst_row` ← mean of rows `src_row0 .. src_row0 + rows` of src (both [*, C]).
pub fn mean_rows_into(dst: &mut Tensor, dst_row: usize, src: &Tensor, src_row0: usize, rows: usize) -> Result<()> {
    let c = src.last_dim();
    if dst.last_dim() != c || dst_row >= dst.rows() || src_row0 + rows > src.rows() || rows == 0 {
        return Err(Error::Shape(format!(
            "mean_rows: rows {src_row0}..{} of {:?} into row {dst_row} of {:?}",
            src_row0 + rows,
            src.shape(),
            dst.shape()
        )));
    }
    match gpu_of("mean_rows", &[&*dst, src])? {
        Some(gpu) => {
            let p = Params {
                rows: u32_of("rows", rows)?,
                cols: u32_of("cols", c)?,
                src_offset: u32_of("offset", src_row0 * c)?,
                src_row: c as u32,
                dst_offset: u32_of("offset", dst_row * c)?,
                _pad: [0; 3],
            };
            gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(src), buf(dst)], [c.div_ceil(WG as usize) as u32, 1, 1])
        }
        None => {
            let s = cpu(src);
            let out = &mut dst.cpu_mut().expect("cpu")[dst_row * c..(dst_row + 1) * c];
            mean_rows_cpu(out, &s[src_row0 * c..(src_row0 + rows) * c], c);
            Ok(())
        }
    }
}

/// CPU twin (sums in f64).
pub fn mean_rows_cpu(out: &mut [f32], src: &[f32], c: usize) {
    let rows = src.len() / c;
    for (j, o) in out.iter_mut().enumerate() {
        let s: f64 = (0..rows).map(|r| src[r * c + j] as f64).sum();
        *o = (s / rows as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn mean_rows_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(11);
        let (rows, c) = (257, 67);
        let src = rng.vec(rows * c, 3.0);
        let init = rng.vec(3 * c, 1.0);
        let mut want = init.clone();
        mean_rows_cpu(&mut want[c..2 * c], &src[c..257 * c], c);
        let mut dst = guarded(&[3, c], &init);
        mean_rows_into(&mut dst, 1, &Tensor::from_vec(&dev, &[rows, c], src).unwrap(), 1, 256).unwrap();
        // f32 running sum of 256 terms vs f64.
        assert_close("mean_rows", &read_guarded(&dst), &want, 1e-6, 1e-5);
    }
}
