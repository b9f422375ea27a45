//! SwiGLU gate silu(a)·b over the two halves of a fused projection (LLaMA w1|w3, DINOv2
//! SwiGLUFFNFused w12); `swiglu.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "swiglu", parts: &[include_str!("swiglu.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    hidden: u32,
    _pad: [u32; 2],
}

/// x [.., 2h] → silu(x[.., :h]) * x[.., h:]  [.., h].
pub fn swiglu(x: &Tensor) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last /= 2;
    }
    let mut y = Tensor::empty(&x.device(), &shape)?;
    swiglu_into(&mut y, x)?;
    Ok(y)
}

/// [`swiglu`] into a caller's tensor [.., h] (only its elements are written).
pub fn swiglu_into(y: &mut Tensor, x: &Tensor) -> Result<()> {
    let (rows, two_h) = (x.rows(), x.last_dim());
    if two_h % 2 != 0 {
        return Err(Error::Shape(format!("swiglu: odd width {two_h}")));
    }
    let h = two_h / 2;
    if y.rows() != rows || y.last_dim() != h {
        return Err(Error::Shape(format!("swiglu: output {:?} for input {:?}", y.shape(), x.shape())));
    }
    match gpu_of("swiglu", &[x, &*y])? {
        Some(gpu) => {
            let p = Params { rows: u32_of("rows", rows)?, hidden: u32_of("hidden", h)?, _pad: [0; 2] };
            let groups = gpu.grid((rows * h) as u64, WG);
            gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x), buf(y)], groups)
        }
        None => {
            if crate::cpu::reference() {
                swiglu_cpu(y.cpu_mut().expect("cpu"), cpu(x), h);
            } else {
                crate::cpu::ops::swiglu(y.cpu_mut().expect("cpu"), cpu(x), h);
            }
            Ok(())
        }
    }
}

/// CPU twin.
pub fn swiglu_cpu(y: &mut [f32], x: &[f32], h: usize) {
    for (r, out) in y.chunks_mut(h).enumerate() {
        let row = &x[r * 2 * h..(r + 1) * 2 * h];
        for j in 0..h {
            let a = row[j];
            out[j] = a / (1.0 + (-a).exp()) * row[h + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn swiglu_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(6);
        for &(rows, h) in &[(1, 1), (3, 5), (257, 128), (2, 5632)] {
            let x = rng.vec(rows * 2 * h, 5.0);
            let mut want = vec![0f32; rows * h];
            swiglu_cpu(&mut want, &x, h);
            let mut g = guarded(&[rows, h], &vec![0.0; rows * h]);
            swiglu_into(&mut g, &Tensor::from_vec(&dev, &[rows, 2 * h], x).unwrap()).unwrap();
            // exp differs by a few ulp between the GPU and libm.
            assert_close(&format!("swiglu {rows}x{h}"), &read_guarded(&g), &want, 1e-6, 1e-5);
        }
    }
}
