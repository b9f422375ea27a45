//! Weights stored as f16, q8 or q4 (docs/format.md) on a device (`QWeight`), multiplied by the
//! linear kernel bodies through their packed-format accessors (`linear.rs`: the kernels read the
//! packed words directly, never a dequantized copy of the matrix), and rows of a packed embedding
//! table gathered (`gather_rows.wgsl` over the same accessors). The CPU twins dequantize a few rows at a time.

use super::gather_rows::Chunk;
use super::linear::{check_shapes, dispatch, Store, Variant, WeightFormat, WeightRef};
use super::{cpu, u32_of};
use crate::io::quant::{padded_cols, Packed, Quant};
use crate::runtime::GpuBuffer;
use crate::tensor::{Data, Device, Tensor};
use crate::{Error, Result};


/// A packed weight matrix [rows, cols] on a device (f16, q8 or q4).
pub struct QWeight {
    pub quant: Quant,
    pub rows: usize,
    pub cols: usize,
    /// f16 weights read as WGSL `f16` (the f16 precision path) rather than unpacked from words.
    pub native_f16: bool,
    data: QData,
}

enum QData {
    Cpu(Packed),
    Gpu { buffer: GpuBuffer, scales_word: u32 },
}

impl QWeight {
    pub fn new(device: &Device, packed: Packed) -> Result<QWeight> {
        QWeight::with_native_f16(device, packed, false)
    }

    /// [`QWeight::new`]; f16 weights are read as WGSL `f16` when `native_f16` (the adapter must have
    /// shader-f16).
    pub fn with_native_f16(device: &Device, packed: Packed, native_f16: bool) -> Result<QWeight> {
        if let (Device::Gpu(g), true) = (device, native_f16) {
            if !g.info.shader_f16 {
                return Err(Error::Gpu(format!("adapter {} has no shader-f16 for native f16 weights", g.info.name)));
            }
        }
        if packed.quant == Quant::F32 {
            return Err(Error::Shape("QWeight holds f16/q8/q4 weights; f32 ones are plain tensors".into()));
        }
        let (quant, rows, cols) = (packed.quant, packed.rows, packed.cols);
        let data = match device {
            Device::Cpu => QData::Cpu(crate::cpu::hold(packed)),
            Device::Gpu(g) => {
                let scales_word = u32_of("scales offset", packed.scales_offset() / 4)?;
                QData::Gpu { buffer: g.upload(&packed.bytes)?, scales_word }
            }
        };
        Ok(QWeight { quant, rows, cols, native_f16: native_f16 && quant == Quant::F16, data })
    }

    /// The accessor the kernels read this weight with.
    pub fn format(&self) -> WeightFormat {
        match self.quant {
            Quant::F16 if self.native_f16 => WeightFormat::F16Native,
            Quant::F16 => WeightFormat::F16,
            Quant::Q8 => WeightFormat::Q8,
            Quant::Q4 => WeightFormat::Q4,
            Quant::F32 => WeightFormat::F32,
        }
    }

    pub fn byte_len(&self) -> usize {
        self.quant.bytes(self.rows, self.cols)
    }
}


/// Writes x·wᵀ + b into columns `y_col .. y_col + rows(w)` of y ([M, Ny]); x is [M, cols(w)].
pub fn qlinear_into(y: &mut Tensor, y_col: usize, x: &Tensor, w: &QWeight, b: Option<&Tensor>) -> Result<()> {
    qlinear_into_variant(y, y_col, x, w, b, None, Store::Set)
}

/// [`qlinear_into`] through a given variant (`None`: the tuned or default one) and [`Store`].
pub fn qlinear_into_variant(y: &mut Tensor, y_col: usize, x: &Tensor, w: &QWeight, b: Option<&Tensor>, variant: Option<&Variant>, store: Store) -> Result<()> {
    let (m, _, ny) = check_shapes(y, y_col, x, w.rows, w.cols, b)?;
    let mut all = vec![x, &*y];
    all.extend(b);
    let gpu = super::gpu_of("qlinear", &all)?;
    match (gpu, &w.data) {
        (Some(gpu), QData::Gpu { buffer, scales_word }) => {
            let kp = if w.quant.is_block() { padded_cols(w.cols) } else { 0 };
            let wr = WeightRef { buffer: buffer.buffer(), format: w.format(), n: w.rows, kp, scales: *scales_word };
            dispatch(&gpu, y, y_col, x, &wr, b, variant, store)
        }
        (None, QData::Cpu(packed)) => {
            let out = y.cpu_mut().ok_or_else(|| Error::Shape("linear: output on the GPU, inputs on the CPU".into()))?;
            store.cpu(out, ny, y_col, (m, w.rows), |out| linear_packed_cpu(out, ny, y_col, cpu(x), m, packed, b.map(cpu)));
            Ok(())
        }
        _ => Err(Error::Shape("linear: weight and activations on different devices".into())),
    }
}

/// The CPU backend's y[.., y_col..] = x · wᵀ + b for a stored weight: its fast kernel
/// (`crate::cpu`), or the scalar twin ([`qlinear_cpu`]) under `cpu::set_reference`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_packed_cpu(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], m: usize, w: &Packed, b: Option<&[f32]>) {
    crate::flops::count(2 * m * w.rows * w.cols);
    if crate::cpu::reference() {
        qlinear_cpu(y, ny, y_col, x, w, b, m)
    } else {
        crate::cpu::linear_packed(y, ny, y_col, x, m, w, b)
    }
}

/// [`linear_packed_cpu`] for several weights that read the same x, each into its column block of
/// y (`(weight, y_col, bias)`): one quantization of x and one parallel region where they share a
/// block format and width (`cpu::linear_packed_many`).
pub fn linear_packed_many_cpu(y: &mut [f32], ny: usize, x: &[f32], m: usize, parts: &[(&Packed, usize, Option<&[f32]>)]) {
    for (w, _, _) in parts {
        crate::flops::count(2 * m * w.rows * w.cols);
    }
    if crate::cpu::reference() {
        for &(w, col, b) in parts {
            qlinear_cpu(y, ny, col, x, w, b, m);
        }
    } else {
        crate::cpu::linear_packed_many(y, ny, x, m, parts)
    }
}

/// The stored matrix of a weight that lives on the CPU.
pub fn cpu_packed(w: &QWeight) -> Option<&Packed> {
    match &w.data {
        QData::Cpu(p) => Some(p),
        QData::Gpu { .. } => None,
    }
}

/// CPU twin: 64 weight rows dequantized at a time, then f32 dot products in order of k.
pub fn qlinear_cpu(y: &mut [f32], ny: usize, y_col: usize, x: &[f32], w: &Packed, b: Option<&[f32]>, m: usize) {
    let k = w.cols;
    super::matmul_cpu(y, ny, y_col, x, b, m, w.rows, k, |j0, j1| {
        let mut rows = vec![0f32; (j1 - j0) * k];
        for j in j0..j1 {
            w.dequantize_row(j, &mut rows[(j - j0) * k..(j - j0 + 1) * k]);
        }
        std::borrow::Cow::Owned(rows)
    });
}

/// Writes rows `table[id]` for `ids` into rows `row0..` of `dst` ([rows, C]) from packed table
/// chunks (first id, rows).
pub fn qgather_rows_into(dst: &mut Tensor, row0: usize, chunks: &[(usize, &QWeight)], ids: &[u32]) -> Result<()> {
    let c = dst.last_dim();
    let total: usize = chunks.iter().map(|(_, t)| t.rows).sum();
    if row0 + ids.len() > dst.rows() {
        return Err(Error::Shape(format!("gather_rows: {} rows at {row0} into {:?}", ids.len(), dst.shape())));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= total) {
        return Err(Error::Shape(format!("token id {bad} outside the embedding table of {total} rows")));
    }
    if ids.is_empty() {
        return Ok(());
    }
    match dst.data_mut() {
        Data::Gpu(out) => {
            let gpu = out.gpu().clone();
            let id_buf = gpu.upload(bytemuck::cast_slice(ids))?;
            for (first, t) in chunks {
                let QData::Gpu { buffer, scales_word } = &t.data else {
                    return Err(Error::Shape("gather_rows: table on the CPU, output on the GPU".into()));
                };
                if t.cols != c {
                    return Err(Error::Shape(format!("gather_rows: table width {} vs output {c}", t.cols)));
                }
                let chunk = Chunk { buffer: buffer.buffer(), format: t.format(), first: *first, rows: t.rows, kp: padded_cols(c), scales: *scales_word };
                super::gather_rows::dispatch(&gpu, &chunk, id_buf.buffer(), ids.len(), out.buffer(), row0, c)?;
            }
            Ok(())
        }
        Data::Cpu(out) => {
            for (first, t) in chunks {
                let QData::Cpu(packed) = &t.data else {
                    return Err(Error::Shape("gather_rows: table on the GPU, output on the CPU".into()));
                };
                for (r, &id) in ids.iter().enumerate() {
                    let id = id as usize;
                    if id >= *first && id - first < t.rows {
                        let at = (row0 + r) * c;
                        packed.dequantize_row(id - first, &mut out[at..at + c]);
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::*;

    #[test]
    fn every_variant_matches_cpu_for_every_packed_format() {
        use crate::kernels::linear::VARIANTS;
        let dev = gpu_device();
        let gpu = gpu();
        let mut rng = Rng::new(21);
        // k = 70 and 45 end in a partial block; 96 and 72 are whole blocks / multiples of 4; 128
        // takes the texel variants
        let cases = [(1, 1, 32, false), (1, 13, 70, true), (3, 40, 45, true), (5, 17, 72, false), (70, 130, 96, true), (9, 66, 200, false), (20, 33, 128, true)];
        for (quant, native) in [(Quant::F16, false), (Quant::F16, true), (Quant::Q8, false), (Quant::Q4, false)] {
            // WGSL f16 needs shader-f16: lavapipe, the tests' adapter, has it
            assert!(!native || gpu.info.shader_f16, "the tests' adapter ({}) has no shader-f16", gpu.info.name);
            for &(m, n, k, bias) in &cases {
                let x = rng.vec(m * k, 1.0);
                let w = rng.vec(n * k, 0.5);
                let b = rng.vec(n, 0.5);
                let packed = Packed::quantize(quant, &w, n, k);
                let mut want = vec![0f32; m * n];
                qlinear_cpu(&mut want, n, 0, &x, &packed, bias.then_some(&b[..]), m);
                // the twin equals an f32 matmul with the dequantized matrix
                let mut plain = vec![0f32; m * n];
                crate::kernels::linear::linear_cpu(&mut plain, n, 0, &x, &packed.to_f32(), bias.then_some(&b[..]), m, n, k);
                assert_eq!(want, plain, "{quant} twin");
                let qw = QWeight::with_native_f16(&dev, packed, native).unwrap();
                let (xg, bg) = (Tensor::from_vec(&dev, &[m, k], x).unwrap(), Tensor::from_vec(&dev, &[n], b).unwrap());
                // and added to what y held (a residual)
                let held = rng.vec(m * n, 1.0);
                let want_added: Vec<f32> = want.iter().zip(&held).map(|(a, h)| a + h).collect();
                for v in VARIANTS.iter().filter(|v| v.takes(&gpu, qw.format(), m, n, k)) {
                    for (store, init, want) in [(Store::Set, vec![0.0; m * n], &want), (Store::Add, held.clone(), &want_added)] {
                        let mut y = guarded(&[m, n], &init);
                        qlinear_into_variant(&mut y, 0, &xg, &qw, bias.then_some(&bg), Some(v), store).unwrap();
                        // scale applied per block of products instead of per product: a few ulp
                        assert_close(&format!("{:?} {} {store:?} {m}x{n}x{k}", qw.format(), v.name), &read_guarded(&y), want, 2e-5, 2e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn qgather_gpu_matches_cpu() {
        let dev = gpu_device();
        let mut rng = Rng::new(22);
        let (v, c) = (29, 45);
        let table = rng.vec(v * c, 1.0);
        let ids: Vec<u32> = (0..11).map(|_| rng.below(v) as u32).collect();
        for quant in [Quant::F16, Quant::Q8, Quant::Q4] {
            let a = Packed::quantize(quant, &table[..20 * c], 20, c);
            let b = Packed::quantize(quant, &table[20 * c..], 9, c);
            let mut want = Tensor::zeros(&Device::Cpu, &[ids.len() + 1, c]).unwrap();
            let (ac, bc) = (QWeight::new(&Device::Cpu, a.clone()).unwrap(), QWeight::new(&Device::Cpu, b.clone()).unwrap());
            qgather_rows_into(&mut want, 1, &[(0, &ac), (20, &bc)], &ids).unwrap();
            let (ag, bgw) = (QWeight::new(&dev, a).unwrap(), QWeight::new(&dev, b).unwrap());
            let mut out = guarded(&[ids.len() + 1, c], &vec![0.0; (ids.len() + 1) * c]);
            qgather_rows_into(&mut out, 1, &[(0, &ag), (20, &bgw)], &ids).unwrap();
            assert_eq!(read_guarded(&out), want.cpu().unwrap(), "{quant}");
        }
    }
}
