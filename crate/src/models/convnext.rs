//! ConvNeXt trunk as SPHINX uses it: open_clip `convnext_xxlarge` → `.visual.trunk` (timm
//! `ConvNeXt`) with `head.global_pool`/`head.flatten` replaced by identities and `head.fc` already
//! an identity, so the output is `head.norm` applied at every position (spec §2.3). Activations stay
//! channels-last ([H·W, C], row-major positions) throughout, which makes every LayerNorm a row norm.

use crate::config::ConvNextConfig;
use crate::kernels::copy2d::copy2d;
use crate::shapes::Strided;
use crate::kernels::dwconv7::dwconv7;
use crate::kernels::gather_rows::gather_rows_into;
use crate::kernels::gelu::gelu_;
use crate::kernels::mean_rows::mean_rows_into;
use crate::kernels::patchify::Layout;
use crate::kernels::add::add_;
use crate::nn::{linear::max_binding, LayerNorm, Linear, PatchConv, Weights};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Hidden activations of one MLP pass are kept below this many bytes by splitting the rows.
const MLP_CHUNK_BYTES: u64 = 64 << 20;

/// Rows per MLP pass: as few equal passes as keep the [rows, hidden] activations under
/// `MLP_CHUNK_BYTES` and one binding (equal passes reuse one set of pooled buffers).
pub fn mlp_chunk_rows(rows: usize, hidden: usize, max_binding: u64) -> usize {
    let limit = MLP_CHUNK_BYTES.min(max_binding);
    let most = ((limit / (hidden as u64 * 4)) as usize).clamp(1, rows.max(1));
    rows.div_ceil(rows.div_ceil(most).max(1)).max(1)
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

struct Block {
    conv_dw_weight: Tensor, // [C, 1, 7, 7]
    conv_dw_bias: Tensor,   // [C]
    norm: LayerNorm,
    mlp: Mlp,
    gamma: Tensor, // [C]
}

struct Stage {
    downsample: Option<(LayerNorm, PatchConv)>,
    blocks: Vec<Block>,
}

pub struct ConvNext {
    stem_conv: PatchConv,
    stem_norm: LayerNorm,
    stages: Vec<Stage>,
    head_norm: LayerNorm,
    pub dims: Vec<usize>,
}

impl Block {
    fn load(w: &Weights, c: usize, eps: f64) -> Result<Block> {
        let hidden = w.pp("mlp").pp("fc1").leading_dim("weight")?;
        Ok(Block {
            conv_dw_weight: w.pp("conv_dw").tensor("weight", &[c, 1, 7, 7])?,
            conv_dw_bias: w.pp("conv_dw").tensor("bias", &[c])?,
            norm: LayerNorm::load(&w.pp("norm"), c, eps)?,
            mlp: Mlp { fc1: Linear::load(&w.pp("mlp").pp("fc1"), hidden, c, true)?, fc2: Linear::load(&w.pp("mlp").pp("fc2"), c, hidden, true)? },
            gamma: w.tensor("gamma", &[c])?,
        })
    }

    /// x [H, W, C] ← x + gamma · fc2(gelu(fc1(norm(dwconv(x))))).
    fn forward(&self, x: &mut Tensor) -> Result<()> {
        let (rows, c) = (x.shape()[0] * x.shape()[1], x.shape()[2]);
        let dw = dwconv7(x, &self.conv_dw_weight, &self.conv_dw_bias)?.reshape(&[rows, c])?;
        let h = self.norm.forward(&dw)?; // [rows, C]
        drop(dw);
        let chunk = mlp_chunk_rows(rows, self.mlp.fc1.out_features, max_binding(&x.device()));
        let y = if chunk >= rows {
            let mut a = self.mlp.fc1.forward(&h)?;
            gelu_(&mut a)?;
            self.mlp.fc2.forward(&a)?
        } else {
            let mut y = Tensor::empty(&x.device(), &[rows, c])?;
            for r0 in (0..rows).step_by(chunk) {
                let n = chunk.min(rows - r0);
                let part = crate::kernels::copy2d::slice_rows(&h, r0, n)?;
                let mut a = self.mlp.fc1.forward(&part)?;
                gelu_(&mut a)?;
                let out = self.mlp.fc2.forward(&a)?;
                copy2d(&mut y, Strided::rows(r0 * c, c), &out, Strided::rows(0, c), 1, n, c)?;
            }
            y
        };
        let shape = x.shape().to_vec();
        add_(x, &y.reshape(&shape)?, Some(&self.gamma))
    }
}

impl ConvNext {
    /// Loads `stem`, `stages.S.{downsample,blocks}`, `head.norm`; widths and depths come from the
    /// tensor shapes and must agree with `cfg`.
    pub fn load(w: &Weights, cfg: &ConvNextConfig) -> Result<ConvNext> {
        let eps = cfg.norm_eps;
        let n_stages = w.count("stages")?;
        if n_stages != cfg.dims.len() || n_stages != cfg.depths.len() {
            return Err(Error::Weights(format!("{}: {n_stages} stages, config has {:?}", w.path("stages"), cfg.depths)));
        }
        let c0 = w.pp("stem").pp("0").leading_dim("weight")?;
        let stem_conv = PatchConv::load(&w.pp("stem").pp("0"), c0, 3, 4, true)?;
        let stem_norm = LayerNorm::load(&w.pp("stem").pp("1"), c0, eps)?;
        let mut dims = Vec::new();
        let mut stages = Vec::new();
        let mut c_prev = c0;
        for s in 0..n_stages {
            let sw = w.pp("stages").pp(s);
            let downsample = if sw.pp("downsample").pp("1").contains("weight") {
                let c = sw.pp("downsample").pp("1").leading_dim("weight")?;
                let norm = LayerNorm::load(&sw.pp("downsample").pp("0"), c_prev, eps)?;
                let conv = PatchConv::load(&sw.pp("downsample").pp("1"), c, c_prev, 2, true)?;
                c_prev = c;
                Some((norm, conv))
            } else {
                None
            };
            let c = c_prev;
            if c != cfg.dims[s] {
                return Err(Error::Weights(format!("{}: width {c}, config says {}", sw.path(""), cfg.dims[s])));
            }
            let depth = sw.count("blocks")?;
            if depth != cfg.depths[s] {
                return Err(Error::Weights(format!("{}: {depth} blocks, config says {}", sw.path("blocks"), cfg.depths[s])));
            }
            let blocks = (0..depth).map(|b| Block::load(&sw.pp("blocks").pp(b), c, eps)).collect::<Result<Vec<_>>>()?;
            dims.push(c);
            stages.push(Stage { downsample, blocks });
        }
        let head_norm = LayerNorm::load(&w.pp("head").pp("norm"), c_prev, eps)?;
        Ok(ConvNext { stem_conv, stem_norm, stages, head_norm, dims })
    }

    pub fn out_dim(&self) -> usize {
        *self.dims.last().expect("≥ 1 stage")
    }

    /// image [3, S, S] → head-normed map [S/32 · S/32, C] (channels-last, row-major) and its side.
    pub fn forward(&self, image: &Tensor) -> Result<(Tensor, usize)> {
        let [_, h, w] = image.shape() else {
            return Err(Error::Shape(format!("convnext input {:?} is not [3, H, W]", image.shape())));
        };
        let (mut h, mut w) = (h / 4, w / 4);
        // [h·w, C0]; the stem conv's output is dropped at the end of the statement
        let mut x = self.stem_norm.forward(&self.stem_conv.forward(image, Layout::Chw)?)?.reshape(&[h, w, self.dims[0]])?;
        for (stage, &c) in self.stages.iter().zip(&self.dims) {
            if let Some((norm, conv)) = &stage.downsample {
                let cin = x.shape()[2];
                let n = norm.forward(&x.reshape(&[h * w, cin])?)?.reshape(&[h, w, cin])?;
                h /= 2;
                w /= 2;
                x = conv.forward(&n, Layout::Hwc)?.reshape(&[h, w, c])?;
            }
            for block in &stage.blocks {
                block.forward(&mut x)?;
            }
            x.device().release_idle();
        }
        let c = self.out_dim();
        if h != w {
            return Err(Error::Shape(format!("convnext output {h}x{w} is not square")));
        }
        Ok((self.head_norm.forward(&x.reshape(&[h * w, c])?)?, h))
    }
}

/// SPHINX's ConvNeXt tokens: the side×side map, each cell repeated `repeat`×`repeat` (ens: 8x8 → 16x16
/// by repeat_interleave on both axes; 1 = as is), row-major, with their mean prepended ("gap as cls")
/// → [1 + (side·repeat)², C].
pub fn gap_tokens(map: &Tensor, side: usize, repeat: usize) -> Result<Tensor> {
    let c = map.last_dim();
    let full = side * repeat;
    let mut out = Tensor::empty(&map.device(), &[1 + full * full, c])?;
    if repeat == 1 {
        copy2d(&mut out, Strided::rows(c, c), map, Strided::rows(0, c), 1, side * side, c)?;
    } else {
        let ids: Vec<u32> = (0..full * full).map(|i| ((i / full / repeat) * side + (i % full) / repeat) as u32).collect();
        gather_rows_into(&mut out, 1, &[(0, map)], &ids)?;
    }
    let src = out.try_clone()?;
    mean_rows_into(&mut out, 0, &src, 1, full * full)?;
    Ok(out)
}
