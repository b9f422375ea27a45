//! im2col for stride = kernel convolutions (patch embeddings, ConvNeXt stem/downsample): the
//! patches become rows in torch's weight order, so a Linear finishes the Conv2d; `patchify.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "patchify", parts: &[include_str!("patchify.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    hwc: u32,
    _pad: [u32; 3],
}

/// Memory layout of a feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// [C, H, W] (images)
    Chw,
    /// [H, W, C] (channels-last feature maps)
    Hwc,
}

/// x ([C, H, W] or [H, W, C]) → [(H/k)·(W/k), C·k·k].
pub fn patchify(x: &Tensor, layout: Layout, k: usize) -> Result<Tensor> {
    let (c, h, w) = match (layout, x.shape()) {
        (Layout::Chw, [c, h, w]) => (*c, *h, *w),
        (Layout::Hwc, [h, w, c]) => (*c, *h, *w),
        _ => return Err(Error::Shape(format!("patchify: input {:?} does not match {layout:?}", x.shape()))),
    };
    if k == 0 || h % k != 0 || w % k != 0 {
        return Err(Error::Shape(format!("patchify: {h}x{w} is not a multiple of the kernel {k}")));
    }
    let patches = (h / k) * (w / k);
    let mut y = Tensor::empty(&x.device(), &[patches, c * k * k])?;
    patchify_into(&mut y, x, layout, k)?;
    Ok(y)
}

/// [`patchify`] into a caller's tensor [(H/k)·(W/k), C·k·k] (only its elements are written).
pub fn patchify_into(y: &mut Tensor, x: &Tensor, layout: Layout, k: usize) -> Result<()> {
    let (c, h, w) = match (layout, x.shape()) {
        (Layout::Chw, [c, h, w]) => (*c, *h, *w),
        (Layout::Hwc, [h, w, c]) => (*c, *h, *w),
        _ => return Err(Error::Shape(format!("patchify: input {:?} does not match {layout:?}", x.shape()))),
    };
    if k == 0 || h % k != 0 || w % k != 0 {
        return Err(Error::Shape(format!("patchify: {h}x{w} is not a multiple of the kernel {k}")));
    }
    let patches = (h / k) * (w / k);
    y.expect_shape("patchify output", &[patches, c * k * k])?;
    match gpu_of("patchify", &[x, &*y])? {
        Some(gpu) => {
            let p = Params {
                c: u32_of("c", c)?,
                h: u32_of("h", h)?,
                w: u32_of("w", w)?,
                k: u32_of("k", k)?,
                hwc: (layout == Layout::Hwc) as u32,
                _pad: [0; 3],
            };
            u32_of("patchify elements", patches * c * k * k)?;
            let groups = gpu.grid((patches * c * k * k) as u64, WG);
            gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x), buf(y)], groups)?;
        }
        None => patchify_cpu(y.cpu_mut().expect("cpu"), cpu(x), layout, c, h, w, k),
    }
    Ok(())
}

/// CPU twin.
pub fn patchify_cpu(y: &mut [f32], x: &[f32], layout: Layout, c: usize, h: usize, w: usize, k: usize) {
    let pw = w / k;
    let cols = c * k * k;
    for (pi, row) in y.chunks_mut(cols).enumerate() {
        let (oy, ox) = (pi / pw, pi % pw);
        for ci in 0..c {
            for ky in 0..k {
                for kx in 0..k {
                    let (iy, ix) = (oy * k + ky, ox * k + kx);
                    let src = match layout {
                        Layout::Chw => (ci * h + iy) * w + ix,
                        Layout::Hwc => (iy * w + ix) * c + ci,
                    };
                    row[ci * k * k + ky * k + kx] = x[src];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn patchify_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(13);
        for &(layout, c, h, w, k) in &[(Layout::Chw, 3, 28, 42, 14), (Layout::Hwc, 5, 6, 4, 2), (Layout::Chw, 3, 8, 8, 4)] {
            let x = rng.vec(c * h * w, 1.0);
            let shape = if layout == Layout::Chw { [c, h, w] } else { [h, w, c] };
            let mut want = vec![0f32; c * h * w];
            patchify_cpu(&mut want, &x, layout, c, h, w, k);
            let rows = (h / k) * (w / k);
            let mut y = guarded(&[rows, c * k * k], &vec![0.0; c * h * w]);
            patchify_into(&mut y, &Tensor::from_vec(&dev, &shape, x).unwrap(), layout, k).unwrap();
            assert_eq!(read_guarded(&y), want, "{layout:?} {c}x{h}x{w}/{k}");
        }
    }
}
