//! Residual add x += y (optionally y scaled per channel: DINOv2 LayerScale, ConvNeXt gamma);
//! `add.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "add", parts: &[include_str!("add.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    channels: u32,
    has_gamma: u32,
    _pad: u32,
}

/// x ← x + y ⊙ gamma (gamma over the last dimension, or 1).
pub fn add_(x: &mut Tensor, y: &Tensor, gamma: Option<&Tensor>) -> Result<()> {
    if x.shape() != y.shape() {
        return Err(Error::Shape(format!("add: {:?} + {:?}", x.shape(), y.shape())));
    }
    let c = x.last_dim();
    if let Some(g) = gamma {
        g.expect_shape("add gamma", &[c])?;
    }
    let n = x.numel();
    let mut all = vec![&*x, y];
    all.extend(gamma);
    match gpu_of("add", &all)? {
        Some(gpu) => {
            let p = Params { n: u32_of("add elements", n)?, channels: c.max(1) as u32, has_gamma: gamma.is_some() as u32, _pad: 0 };
            let groups = gpu.grid(n as u64, WG);
            let g = gamma.map(buf).unwrap_or(buf(y));
            gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x), buf(y), g], groups)
        }
        None => {
            let g = gamma.map(cpu);
            let out = x.cpu_mut().expect("cpu");
            if crate::cpu::reference() {
                add_cpu(out, cpu(y), g, c);
            } else {
                crate::cpu::ops::add(out, cpu(y), g, c);
            }
            Ok(())
        }
    }
}

/// CPU twin.
pub fn add_cpu(x: &mut [f32], y: &[f32], gamma: Option<&[f32]>, c: usize) {
    match gamma {
        Some(g) => x.iter_mut().zip(y).enumerate().for_each(|(i, (a, b))| *a += b * g[i % c]),
        None => x.iter_mut().zip(y).for_each(|(a, b)| *a += b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn add_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(7);
        for &(rows, c, with_gamma) in &[(1, 1, false), (3, 7, true), (300, 65, true), (1000, 3, false)] {
            let x = rng.vec(rows * c, 1.0);
            let y = rng.vec(rows * c, 1.0);
            let g = rng.vec(c, 1.0);
            let mut want = x.clone();
            add_cpu(&mut want, &y, with_gamma.then_some(&g[..]), c);
            let mut xg = guarded(&[rows, c], &x);
            let gg = Tensor::from_vec(&dev, &[c], g).unwrap();
            add_(&mut xg, &Tensor::from_vec(&dev, &[rows, c], y).unwrap(), with_gamma.then_some(&gg)).unwrap();
            // one multiply-add: at most one rounding apart (fma).
            assert_close("add", &read_guarded(&xg), &want, 1e-7, 1e-7);
        }
    }
}
