//! Depthwise 7x7 convolution (timm ConvNeXt `conv_dw`: groups = C, padding 3, bias) on a
//! channels-last map; `dwconv7.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "dwconv7", parts: &[include_str!("dwconv7.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    h: u32,
    w: u32,
    c: u32,
    _pad: u32,
}

/// x [H, W, C], weight [C, 1, 7, 7], bias [C] → [H, W, C].
pub fn dwconv7(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let mut y = Tensor::empty(&x.device(), x.shape())?;
    dwconv7_into(&mut y, x, weight, bias)?;
    Ok(y)
}

/// [`dwconv7`] into a caller's tensor of the output shape (only its elements are written).
pub fn dwconv7_into(y: &mut Tensor, x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<()> {
    let [h, w, c] = x.shape() else {
        return Err(Error::Shape(format!("dwconv7: input {:?} is not [H, W, C]", x.shape())));
    };
    let (h, w, c) = (*h, *w, *c);
    weight.expect_shape("conv_dw.weight", &[c, 1, 7, 7])?;
    bias.expect_shape("conv_dw.bias", &[c])?;
    y.expect_shape("dwconv7 output", x.shape())?;
    match gpu_of("dwconv7", &[x, weight, bias, &*y])? {
        Some(gpu) => {
            let p = Params { h: u32_of("h", h)?, w: u32_of("w", w)?, c: u32_of("c", c)?, _pad: 0 };
            u32_of("dwconv7 elements", h * w * c)?;
            let groups = gpu.grid((h * w * c) as u64, WG);
            gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x), buf(weight), buf(bias), buf(y)], groups)?;
        }
        None if crate::cpu::reference() => dwconv7_cpu(y.cpu_mut().expect("cpu"), cpu(x), cpu(weight), cpu(bias), h, w, c),
        None => crate::cpu::ops::dwconv7(y.cpu_mut().expect("cpu"), cpu(x), cpu(weight), cpu(bias), h, w, c),
    }
    Ok(())
}

/// CPU twin.
pub fn dwconv7_cpu(y: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32], h: usize, w: usize, c: usize) {
    super::for_rows(y, w * c, |oy, row| {
        for ox in 0..w {
            for ch in 0..c {
                let mut s = 0f32;
                for ky in 0..7 {
                    let iy = oy as isize + ky as isize - 3;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..7 {
                        let ix = ox as isize + kx as isize - 3;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        s += x[(iy as usize * w + ix as usize) * c + ch] * weight[ch * 49 + ky * 7 + kx];
                    }
                }
                row[ox * c + ch] = s + bias[ch];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn dwconv7_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(12);
        for &(h, w, c) in &[(1, 1, 1), (5, 9, 3), (16, 16, 17)] {
            let x = rng.vec(h * w * c, 1.0);
            let wt = rng.vec(c * 49, 0.3);
            let b = rng.vec(c, 0.1);
            let mut want = vec![0f32; h * w * c];
            dwconv7_cpu(&mut want, &x, &wt, &b, h, w, c);
            let mut y = guarded(&[h, w, c], &vec![0.0; h * w * c]);
            dwconv7_into(
                &mut y,
                &Tensor::from_vec(&dev, &[h, w, c], x).unwrap(),
                &Tensor::from_vec(&dev, &[c, 1, 7, 7], wt).unwrap(),
                &Tensor::from_vec(&dev, &[c], b).unwrap(),
            )
            .unwrap();
            assert_close(&format!("dwconv7 {h}x{w}x{c}"), &read_guarded(&y), &want, 1e-6, 1e-6);
        }
    }
}
