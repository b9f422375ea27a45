//! LayerNorm over the last dimension (torch `nn.LayerNorm`); `layer_norm.wgsl` + CPU twin.

use super::{buf, cpu, for_rows, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "layer_norm", parts: &[include_str!("layer_norm_bindings.wgsl"), include_str!("reduce.wgsl"), include_str!("layer_norm.wgsl")] };
/// Rows of at most this many columns take `layer_norm_rows.wgsl` (one invocation per row).
const ROWS: Kernel = Kernel { name: "layer_norm_rows", parts: &[include_str!("layer_norm_bindings.wgsl"), include_str!("layer_norm_rows.wgsl")] };
const ROWS_MAX_COLS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

/// (x - mean) / sqrt(var + eps) * w + b over the last dimension of x.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mut y = Tensor::empty(&x.device(), x.shape())?;
    layer_norm_into(&mut y, x, w, b, eps)?;
    Ok(y)
}

/// [`layer_norm`] into a caller's tensor of the output shape (only its elements are written).
pub fn layer_norm_into(y: &mut Tensor, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<()> {
    let (rows, cols) = (x.rows(), x.last_dim());
    w.expect_shape("layer_norm weight", &[cols])?;
    b.expect_shape("layer_norm bias", &[cols])?;
    y.expect_shape("layer_norm output", x.shape())?;
    match gpu_of("layer_norm", &[x, w, b, &*y])? {
        Some(gpu) => {
            let p = Params { rows: u32_of("rows", rows)?, cols: u32_of("cols", cols)?, eps: eps as f32, _pad: 0 };
            let bufs = [buf(x), buf(w), buf(b), buf(y)];
            if cols <= ROWS_MAX_COLS {
                gpu.dispatch(&ROWS, &[("WG", 64.0)], &p, &bufs, gpu.grid(rows as u64, 64))?;
            } else {
                // One workgroup per row, no wider than the row needs: ConvNeXt normalises 16384+ rows
                // of 16..3072 channels per view, and idle lanes still pay for every barrier (6x
                // slower image encoding on SwiftShader with a fixed 256).
                gpu.dispatch(&KERNEL, &[("WG", super::row_workgroup(cols) as f64)], &p, &bufs, gpu.grid(rows as u64, 1))?;
            }
        }
        None => {
            let out = y.cpu_mut().ok_or_else(|| Error::Shape("layer_norm output".into()))?;
            if crate::cpu::reference() {
                layer_norm_cpu(out, cpu(x), cpu(w), cpu(b), cols, eps);
            } else {
                crate::cpu::ops::layer_norm(out, cpu(x), cpu(w), cpu(b), cols, eps);
            }
        }
    }
    Ok(())
}

/// CPU twin (statistics in f64).
pub fn layer_norm_cpu(y: &mut [f32], x: &[f32], w: &[f32], b: &[f32], cols: usize, eps: f64) {
    for_rows(y, cols, |r, out| {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for c in 0..cols {
            out[c] = ((row[c] as f64 - mean) * rstd) as f32 * w[c] + b[c];
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;
    use crate::tensor::Device;

    #[test]
    fn layer_norm_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(3);
        for &(rows, cols) in &[(1, 1), (3, 7), (17, 257), (5, 3072), (70000, 3), (4099, 64), (33, 65)] {
            let x: Vec<f32> = rng.vec(rows * cols, 3.0).iter().map(|v| v + 2.0).collect();
            let w = rng.vec(cols, 1.0);
            let b = rng.vec(cols, 1.0);
            let cpu_out = layer_norm(
                &Tensor::from_slice(&Device::Cpu, &[rows, cols], &x).unwrap(),
                &Tensor::from_slice(&Device::Cpu, &[cols], &w).unwrap(),
                &Tensor::from_slice(&Device::Cpu, &[cols], &b).unwrap(),
                1e-5,
            )
            .unwrap();
            let mut g = guarded(&[rows, cols], &vec![0.0; rows * cols]);
            layer_norm_into(
                &mut g,
                &Tensor::from_vec(&dev, &[rows, cols], x).unwrap(),
                &Tensor::from_vec(&dev, &[cols], w).unwrap(),
                &Tensor::from_vec(&dev, &[cols], b).unwrap(),
                1e-5,
            )
            .unwrap();
            // f32 two-pass statistics on the GPU vs f64 on the CPU: relative error ~1e-6 per term.
            assert_close(&format!("layer_norm {rows}x{cols}"), &read_guarded(&g), cpu_out.cpu().unwrap(), 2e-5, 2e-5);
        }
    }
}
