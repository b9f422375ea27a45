//! The bench's read-bandwidth probes: every 16-byte word of a tensor (`read_sum.wgsl`) or texel of
//! a texture (`read_texels.wgsl`) read once, summed as u32 (the roofline a decode step, which
//! reads its weights once, is measured against); CPU twins and tests.

use super::{buf, gpu_of, u32_of};
use crate::runtime::{Bound, Gpu, Kernel, Texels};
use crate::tensor::Tensor;
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "read_sum", parts: &[include_str!("read_sum.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    words: u32,
    threads: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Records out[t] = Σ (wrapping, as u32) of the 16-byte words t, t + T, … of x (its f32 bits),
/// T = out's length, a multiple of 256; x's length a multiple of 4. GPU tensors only (the CPU
/// backend measures its bandwidth with its own loop).
pub fn read_sum(x: &Tensor, out: &mut Tensor) -> Result<()> {
    let (n, threads) = (x.numel(), out.numel());
    if !n.is_multiple_of(4) || threads == 0 || !threads.is_multiple_of(WG as usize) {
        return Err(Error::Shape(format!("read_sum: {n} elements (a multiple of 4) over {threads} invocations (a multiple of {WG})")));
    }
    let Some(gpu) = gpu_of("read_sum", &[x, &*out])? else {
        return Err(Error::Shape("read_sum: a GPU probe, the tensors are on the CPU".into()));
    };
    let p = Params { words: u32_of("read_sum words", n / 4)?, threads: u32_of("read_sum invocations", threads)?, _pad0: 0, _pad1: 0 };
    gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x), buf(out)], [threads as u32 / WG, 1, 1])
}

const TEXELS: Kernel = Kernel { name: "read_texels", parts: &[include_str!("read_texels.wgsl")] };
const TEXELS_WG: u32 = 64;

/// Records out[t] = Σ (wrapping, as u32) of the 4 words of texels t·per .. (t+1)·per of `x` in
/// row-major order, T = out's length; `per` divides the width and T · per is every texel.
pub fn read_texels(gpu: &Gpu, x: &Texels, per: usize, out: &mut Tensor) -> Result<()> {
    let threads = out.numel();
    let texels = x.width as usize * x.height as usize;
    if per == 0 || !(x.width as usize).is_multiple_of(per) || threads * per != texels {
        return Err(Error::Shape(format!("read_texels: {}x{} texels in spans of {per} (dividing the width) over {threads} invocations", x.width, x.height)));
    }
    if !matches!(out.device(), crate::tensor::Device::Gpu(_)) {
        return Err(Error::Shape("read_texels: a GPU probe, the output is on the CPU".into()));
    }
    let p = [x.width, u32_of("read_texels span", per)?, u32_of("read_texels invocations", threads)?, 0];
    let groups = u32_of("read_texels workgroups", threads.div_ceil(TEXELS_WG as usize))?;
    gpu.dispatch_bound(&TEXELS, &[("WG", TEXELS_WG as f64)], &p, &[Bound::Texture(x), Bound::Buffer(buf(out))], [groups, 1, 1])
}

/// CPU twin of [`read_texels`] over the texture's bytes as u32 words (4 per texel).
pub fn read_texels_cpu(words: &[u32], per: usize) -> Vec<u32> {
    words.chunks(4 * per).map(|span| span.iter().fold(0u32, |a, v| a.wrapping_add(*v))).collect()
}

/// CPU twin: what [`read_sum`] writes, for the f32 bits of x.
pub fn read_sum_cpu(x: &[f32], threads: usize) -> Vec<u32> {
    let words = x.len() / 4;
    (0..threads)
        .map(|t| (t..words).step_by(threads).flat_map(|i| &x[4 * i..4 * i + 4]).fold(0u32, |a, v| a.wrapping_add(v.to_bits())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn read_sum_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(41);
        // fewer words than invocations, a partial last sweep, many sweeps
        for &(n, threads) in &[(4, 256), (4 * 1000, 512), (4 * 70_001, 1024)] {
            let x = rng.vec(n, 3.0);
            let xg = Tensor::from_vec(&dev, &[n], x.clone()).unwrap();
            let mut out = Tensor::zeros(&dev, &[threads]).unwrap();
            read_sum(&xg, &mut out).unwrap();
            let got: Vec<u32> = pollster::block_on(out.to_vec()).unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, read_sum_cpu(&x, threads), "{n} over {threads}");
        }
        let bad = Tensor::from_vec(&dev, &[6], vec![0.0; 6]).unwrap();
        let mut out = Tensor::zeros(&dev, &[256]).unwrap();
        assert!(read_sum(&bad, &mut out).unwrap_err().to_string().contains("multiple of 4"));
    }

    #[test]
    fn read_texels_gpu_matches_cpu() {
        let dev = gpu_device();
        let crate::tensor::Device::Gpu(gpu) = &dev else { unreachable!() };
        // one span per row, several per row, over rows of 16 and 64 texels
        for &(width, height, per) in &[(16u32, 8u32, 16usize), (64, 5, 8), (64, 3, 1)] {
            let words: Vec<u32> = (0..4 * width * height).map(|i| i.wrapping_mul(2_654_435_761).rotate_left(11)).collect();
            let x = gpu.texels(width, height, bytemuck::cast_slice(&words)).unwrap();
            let threads = (width * height) as usize / per;
            let mut out = Tensor::zeros(&dev, &[threads]).unwrap();
            read_texels(gpu, &x, per, &mut out).unwrap();
            let got: Vec<u32> = pollster::block_on(out.to_vec()).unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, read_texels_cpu(&words, per), "{width}x{height} in spans of {per}");
        }
        let x = gpu.texels(16, 2, &[0u8; 16 * 16 * 2]).unwrap();
        let mut out = Tensor::zeros(&dev, &[4]).unwrap();
        assert!(read_texels(gpu, &x, 3, &mut out).unwrap_err().to_string().contains("spans of 3"));
        assert!(gpu.texels(15, 2, &[0u8; 15 * 16 * 2]).is_err(), "rows of 240 bytes");
    }
}
