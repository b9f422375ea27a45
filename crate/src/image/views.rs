//! The encoder inputs `Transformer.encode_image` builds from the padded-resized image, per
//! `llama_type`: LLaMA2-Accessory `accessory/model/LLM/llama_ens5_light.py` (SPHINX-Tiny-1k),
//! `llama_ens_light.py` (SPHINX-Tiny), `llama_ens.py` (SPHINX) and `llama_ens5.py` (SPHINX-1k).
//!
//! Everything here works on one image in the f32 working dtype (the golden data's); upstream in
//! bf16 would also round each view to bf16 when casting back with `.to(image)`.

use super::resample::{bicubic_fp16, nearest_fp16, quadrants};
use super::{f32_of, ImageTensor, CLIP_MEAN, CLIP_STD, DINOV2_MEAN, DINOV2_STD};
use crate::config::LlamaType;
use crate::{Error, Result};

/// All tower inputs of one image. Each list has `layout.views()` entries in upstream order
/// (global, top-left, top-right, bottom-left, bottom-right); stack them with [`super::stack`].
#[derive(Debug, Clone)]
pub struct Views {
    pub layout: LlamaType,
    /// ConvNeXt inputs. // tiles x [3, convnext_size, convnext_size]
    pub convnext: Vec<ImageTensor>,
    /// DINOv2 inputs, already re-normalised to DINOv2's mean/std. // tiles x [3, 224, 224]
    pub dinov2: Vec<ImageTensor>,
    /// CLIP ViT-L and Q-Former inputs (CLIP-normalised, identical for both towers); empty for the
    /// light layouts. // tiles x [3, 224, 224]
    pub clip: Vec<ImageTensor>,
}

/// The two ways upstream writes the CLIP → DINOv2 re-normalisation (same maths, different f32
/// rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renorm {
    /// `x * (clip_std / dinov2_std) + (clip_mean - dinov2_mean) / dinov2_std`
    /// (llama_ens5_light, llama_ens_light): two per-channel constants, then a multiply and an add.
    ScaleShift,
    /// `(x * clip_std + clip_mean - dinov2_mean) / dinov2_std` (llama_ens, llama_ens5), evaluated
    /// left to right.
    Unnormalize,
}

/// Re-normalises a CLIP-normalised image for DINOv2, elementwise in f32 as torch does.
/// // [3, H, W] -> [3, H, W]
pub fn renormalize_for_dinov2(x: &ImageTensor, formula: Renorm) -> Result<ImageTensor> {
    let (cm, cs) = (f32_of(CLIP_MEAN), f32_of(CLIP_STD));
    let (dm, ds) = (f32_of(DINOV2_MEAN), f32_of(DINOV2_STD));
    let mut out = Vec::with_capacity(x.data().len());
    for c in 0..3 {
        let plane = x.plane(c);
        match formula {
            Renorm::ScaleShift => {
                let scale = cs[c] / ds[c];
                let shift = (cm[c] - dm[c]) / ds[c];
                out.extend(plane.iter().map(|&v| v * scale + shift));
            }
            Renorm::Unnormalize => out.extend(plane.iter().map(|&v| (v * cs[c] + cm[c] - dm[c]) / ds[c])),
        }
    }
    ImageTensor::new(x.height(), x.width(), out)
}

/// Builds every tower input of `layout` from the `padded_resize` output. // [3, S, S] -> Views
pub fn views_for(layout: LlamaType, image: &ImageTensor) -> Result<Views> {
    let s = layout.image_size();
    if image.shape() != [3, s, s] {
        return Err(Error::Shape(format!(
            "{} views need the padded image [3, {s}, {s}], got {:?}",
            layout.name(),
            image.shape()
        )));
    }
    let d = layout.dinov2_size();
    let views = match layout {
        LlamaType::Ens5Light => {
            // ConvNeXt: global bicubic 1024->512, then the exact 512 quadrants of the 1024 image.
            let mut convnext = vec![bicubic_fp16(image, 512, 512)?];
            convnext.extend(quadrants(image)?);
            // DINOv2: global bicubic 1024->224, then the 224 quadrants of bicubic 1024->448.
            let mut dino = vec![bicubic_fp16(image, d, d)?];
            dino.extend(quadrants(&bicubic_fp16(image, 2 * d, 2 * d)?)?);
            let dinov2 = dino.iter().map(|t| renormalize_for_dinov2(t, Renorm::ScaleShift)).collect::<Result<_>>()?;
            Views { layout, convnext, dinov2, clip: Vec::new() }
        }
        LlamaType::EnsLight => {
            // ConvNeXt: F.interpolate(image.half(), (512, 512)) — nearest, an fp16 round trip.
            let convnext = vec![nearest_fp16(image, 512, 512)?];
            let dinov2 = vec![renormalize_for_dinov2(&bicubic_fp16(image, d, d)?, Renorm::ScaleShift)?];
            Views { layout, convnext, dinov2, clip: Vec::new() }
        }
        LlamaType::Ens | LlamaType::Ens5 => {
            let subs = if layout == LlamaType::Ens5 {
                // Global bicubic 448->224, then the exact 224 quadrants of the 448 image.
                let mut v = vec![bicubic_fp16(image, d, d)?];
                v.extend(quadrants(image)?);
                v
            } else {
                vec![image.clone()]
            };
            let n = layout.convnext_size();
            let convnext = subs.iter().map(|t| nearest_fp16(t, n, n)).collect::<Result<_>>()?;
            let dinov2 = subs.iter().map(|t| renormalize_for_dinov2(t, Renorm::Unnormalize)).collect::<Result<_>>()?;
            Views { layout, convnext, dinov2, clip: subs }
        }
    };
    Ok(views)
}
