//! GELU, exact erf form (torch `nn.GELU()`), in place; `gelu.wgsl` + CPU twin.

use super::{buf, cpu_mut, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::Tensor;
use crate::Result;

const KERNEL: Kernel = Kernel { name: "gelu", parts: &[include_str!("gelu.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// x ← 0.5·x·(1 + erf(x/√2)).
pub fn gelu_(x: &mut Tensor) -> Result<()> {
    let n = x.numel();
    match gpu_of("gelu", &[x])? {
        Some(gpu) => {
            let p = Params { n: u32_of("gelu elements", n)?, _pad: [0; 3] };
            let groups = gpu.grid(n as u64, WG);
            gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x)], groups)
        }
        None => {
            if crate::cpu::reference() {
                gelu_cpu(cpu_mut(x));
            } else {
                crate::cpu::ops::gelu(cpu_mut(x));
            }
            Ok(())
        }
    }
}

/// CPU twin, with libm's erf in f64.
pub fn gelu_cpu(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v as f64;
        *v = (0.5 * a * (1.0 + libm::erf(a * std::f64::consts::FRAC_1_SQRT_2))) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn gelu_gpu_matches_cpu() {
        let mut rng = Rng::new(5);
        for &n in &[1usize, 7, 1000, 70001] {
            let mut x = rng.vec(n, 6.0);
            x[0] = -0.0;
            if n > 3 {
                x[1] = -12.0;
                x[2] = 9.0;
            }
            let mut want = x.clone();
            gelu_cpu(&mut want);
            let mut g = guarded(&[n], &x);
            gelu_(&mut g).unwrap();
            // The kernel's erfc fit has fractional error < 1.2e-7; exp adds a few ulp.
            assert_close(&format!("gelu {n}"), &read_guarded(&g), &want, 1e-6, 1e-6);
        }
    }
}
