//! RMSNorm (LLaMA `RMSNorm`, computed in float32 like upstream); `rms_norm.wgsl` + CPU twin.

use super::{buf, cpu, for_rows, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "rms_norm", parts: &[include_str!("reduce.wgsl"), include_str!("rms_norm.wgsl")] };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

/// x * rsqrt(mean(x²) + eps) * w over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let mut y = Tensor::empty(&x.device(), x.shape())?;
    rms_norm_into(&mut y, x, w, eps)?;
    Ok(y)
}

/// [`rms_norm`] into a caller's tensor of the output shape (only its elements are written).
pub fn rms_norm_into(y: &mut Tensor, x: &Tensor, w: &Tensor, eps: f64) -> Result<()> {
    let (rows, cols) = (x.rows(), x.last_dim());
    w.expect_shape("rms_norm weight", &[cols])?;
    y.expect_shape("rms_norm output", x.shape())?;
    match gpu_of("rms_norm", &[x, w, &*y])? {
        Some(gpu) => {
            let p = Params { rows: u32_of("rows", rows)?, cols: u32_of("cols", cols)?, eps: eps as f32, _pad: 0 };
            let groups = gpu.grid(rows as u64, 1);
            gpu.dispatch(&KERNEL, &[("WG", super::row_workgroup(cols) as f64)], &p, &[buf(x), buf(w), buf(y)], groups)?;
        }
        None => {
            let out = y.cpu_mut().ok_or_else(|| Error::Shape("rms_norm output".into()))?;
            if crate::cpu::reference() {
                rms_norm_cpu(out, cpu(x), cpu(w), cols, eps);
            } else {
                crate::cpu::ops::rms_norm(out, cpu(x), cpu(w), cols, eps);
            }
        }
    }
    Ok(())
}

/// CPU twin (mean of squares in f64).
pub fn rms_norm_cpu(y: &mut [f32], x: &[f32], w: &[f32], cols: usize, eps: f64) {
    for_rows(y, cols, |r, out| {
        let row = &x[r * cols..(r + 1) * cols];
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / cols as f64;
        let rs = (1.0 / (ms + eps as f32 as f64).sqrt()) as f32;
        for c in 0..cols {
            out[c] = row[c] * rs * w[c];
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;
    use crate::tensor::Device;

    #[test]
    fn rms_norm_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(4);
        for &(rows, cols) in &[(1, 1), (3, 7), (51, 64), (2, 2048), (66000, 5)] {
            let x = rng.vec(rows * cols, 2.0);
            let w = rng.vec(cols, 1.0);
            let cpu_out = rms_norm(
                &Tensor::from_slice(&Device::Cpu, &[rows, cols], &x).unwrap(),
                &Tensor::from_slice(&Device::Cpu, &[cols], &w).unwrap(),
                1e-5,
            )
            .unwrap();
            let mut g = guarded(&[rows, cols], &vec![0.0; rows * cols]);
            rms_norm_into(&mut g, &Tensor::from_vec(&dev, &[rows, cols], x).unwrap(), &Tensor::from_vec(&dev, &[cols], w).unwrap(), 1e-5).unwrap();
            // f32 sum of squares on the GPU vs f64 on the CPU, inverseSqrt within 2 ulp.
            assert_close(&format!("rms_norm {rows}x{cols}"), &read_guarded(&g), cpu_out.cpu().unwrap(), 1e-5, 1e-5);
        }
    }
}
