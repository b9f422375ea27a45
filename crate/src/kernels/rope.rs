//! Rotary position embedding, Meta/LLaMA layout (adjacent pairs as complex numbers; upstream
//! `precompute_freqs_cis` + `apply_rotary_emb`); `rope.wgsl` + CPU twin.

use super::{buf, cpu, gpu_of, u32_of};
use crate::runtime::Kernel;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

const KERNEL: Kernel = Kernel { name: "rope", parts: &[include_str!("rope.wgsl")] };
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    heads: u32,
    head_dim: u32,
    pos0: u32,
    offset: u32,
    stride: u32,
    _pad: [u32; 2],
}

/// cos/sin of θ = t·freq_i for t < positions, i < head_dim/2 ([positions, head_dim/2] each).
pub struct RopeTable {
    pub head_dim: usize,
    pub positions: usize,
    cos: Tensor,
    sin: Tensor,
}

impl RopeTable {
    /// As upstream: freq_i = 1 / theta^(2i/d) in float32, t = position (times `scaling` when set),
    /// angle = t·freq in float32, then cos/sin (here correctly rounded from f64).
    pub fn new(device: &Device, head_dim: usize, theta: f64, positions: usize, scaling: Option<f64>) -> Result<RopeTable> {
        if head_dim % 2 != 0 {
            return Err(Error::Config(format!("RoPE needs an even head_dim, got {head_dim}")));
        }
        let half = head_dim / 2;
        let entries = positions
            .checked_mul(half)
            .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
            .ok_or_else(|| Error::Config(format!("RoPE table of {positions} positions × {half} frequencies does not fit in memory")))?;
        let freqs: Vec<f32> = (0..half)
            .map(|i| {
                let e = (2 * i) as f32 / head_dim as f32;
                1.0f32 / ((theta as f32) as f64).powf(e as f64) as f32
            })
            .collect();
        let mut cos = Vec::with_capacity(entries);
        let mut sin = Vec::with_capacity(entries);
        for t in 0..positions {
            let tf = match scaling {
                Some(s) => t as f32 * s as f32,
                None => t as f32,
            };
            for f in &freqs {
                let a = (tf * f) as f64;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Ok(RopeTable {
            head_dim,
            positions,
            cos: Tensor::from_vec(device, &[positions, half], cos)?,
            sin: Tensor::from_vec(device, &[positions, half], sin)?,
        })
    }

    /// Rotates, in place, `heads` heads starting at column `col` of every row of x ([rows, C]);
    /// row r is at position pos0 + r.
    pub fn apply_(&self, x: &mut Tensor, col: usize, heads: usize, pos0: usize) -> Result<()> {
        let (rows, c) = (x.rows(), x.last_dim());
        if heads.checked_mul(self.head_dim).and_then(|w| w.checked_add(col)).is_none_or(|end| end > c) {
            return Err(Error::Shape(format!("rope: {heads} heads of {} at column {col} in width {c}", self.head_dim)));
        }
        if pos0.checked_add(rows).is_none_or(|end| end > self.positions) {
            return Err(Error::Shape(format!(
                "rope: positions {pos0}+{rows} but the table holds {} (sequence too long for max_seq_len)",
                self.positions
            )));
        }
        match gpu_of("rope", &[&*x, &self.cos])? {
            Some(gpu) => {
                let p = Params {
                    rows: u32_of("rows", rows)?,
                    heads: u32_of("heads", heads)?,
                    head_dim: self.head_dim as u32,
                    pos0: u32_of("pos0", pos0)?,
                    offset: u32_of("offset", col)?,
                    stride: u32_of("stride", c)?,
                    _pad: [0; 2],
                };
                let groups = gpu.grid((rows * heads * self.head_dim / 2) as u64, WG);
                gpu.dispatch(&KERNEL, &[("WG", WG as f64)], &p, &[buf(x), buf(&self.cos), buf(&self.sin)], groups)
            }
            None => {
                // the tables are read in place (a copy of them was the largest memory traffic of a
                // CPU decode step after the weights)
                rope_cpu(x.cpu_mut().expect("cpu"), c, col, heads, self.head_dim, pos0, cpu(&self.cos), cpu(&self.sin));
                Ok(())
            }
        }
    }
}

/// CPU twin.
#[allow(clippy::too_many_arguments)]
pub fn rope_cpu(x: &mut [f32], stride: usize, col: usize, heads: usize, head_dim: usize, pos0: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    for (r, row) in x.chunks_mut(stride).enumerate() {
        for h in 0..heads {
            for j in 0..half {
                let t = (pos0 + r) * half + j;
                let at = col + h * head_dim + 2 * j;
                let (a, b) = (row[at], row[at + 1]);
                row[at] = a * cos[t] - b * sin[t];
                row[at + 1] = a * sin[t] + b * cos[t];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn rope_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(10);
        let (rows, c, hd, heads, col, pos0) = (7, 3 * 16 + 5, 16, 2, 16, 1300);
        let x = rng.vec(rows * c, 2.0);
        let table_cpu = RopeTable::new(&Device::Cpu, hd, 10000.0, 1400, None).unwrap();
        let mut xc = Tensor::from_slice(&Device::Cpu, &[rows, c], &x).unwrap();
        table_cpu.apply_(&mut xc, col, heads, pos0).unwrap();
        let table = RopeTable::new(&dev, hd, 10000.0, 1400, None).unwrap();
        let mut xg = guarded(&[rows, c], &x);
        table.apply_(&mut xg, col, heads, pos0).unwrap();
        assert_close("rope", &read_guarded(&xg), xc.cpu().unwrap(), 1e-6, 1e-6);
        assert!(table.apply_(&mut xg, col, heads, 1395).is_err(), "past the table");
    }
}
