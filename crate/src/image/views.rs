//! The encoder inputs `Transformer.encode_image` builds from the padded-resized image, per
//! `llama_type`: LLaMA2-Accessory `accessory/model/LLM/llama_ens5_light.py` (SPHINX-Tiny-1k),
//! `llama_ens_light.py` (SPHINX-Tiny), `llama_ens.py` (SPHINX) and `llama_ens5.py` (SPHINX-1k).
//!
//! Everything here works on one image in the f32 working dtype (the golden data's); upstream in
//! bf16 would also round each view to bf16 when casting back with `.to(image)`.

use super::resample::{bicubic_fp16, nearest_fp16, quadrants};
use super::{f32_of, ImageTensor, CLIP_MEAN, CLIP_STD, DINOV2_MEAN, DINOV2_STD};
use crate::{Error, Result};

/// How a `llama_type` turns its input image into tower inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewLayout {
    /// `llama_ens5_light` (SPHINX-Tiny-1k): 1024 input, 5 tiles, ConvNeXt 512 + DINOv2 224.
    Ens5Light,
    /// `llama_ens_light` (SPHINX-Tiny): 512 input, 1 view, ConvNeXt 512 + DINOv2 224.
    EnsLight,
    /// `llama_ens` (SPHINX): 224 input, 1 view, CLIP/Q-Former 224 + ConvNeXt 256 + DINOv2 224.
    Ens,
    /// `llama_ens5` (SPHINX-1k): 448 input, 5 sub-images of 224, each as in `Ens`.
    Ens5,
}

impl ViewLayout {
    /// From upstream's `llama_type` string.
    pub fn from_llama_type(name: &str) -> Result<ViewLayout> {
        Ok(match name {
            "llama_ens5_light" => ViewLayout::Ens5Light,
            "llama_ens_light" => ViewLayout::EnsLight,
            "llama_ens" => ViewLayout::Ens,
            "llama_ens5" => ViewLayout::Ens5,
            other => {
                return Err(Error::Config(format!(
                    "llama_type {other:?} has no image views (expected llama_ens5_light, llama_ens_light, llama_ens or llama_ens5)"
                )))
            }
        })
    }

    pub fn llama_type(self) -> &'static str {
        match self {
            ViewLayout::Ens5Light => "llama_ens5_light",
            ViewLayout::EnsLight => "llama_ens_light",
            ViewLayout::Ens => "llama_ens",
            ViewLayout::Ens5 => "llama_ens5",
        }
    }

    /// `Transformer.image_size`: the side `padded_resize` must produce.
    pub fn image_size(self) -> usize {
        match self {
            ViewLayout::Ens5Light => 1024,
            ViewLayout::EnsLight => 512,
            ViewLayout::Ens => 224,
            ViewLayout::Ens5 => 448,
        }
    }

    /// Tiles (sub-images) per image, in the order global, TL, TR, BL, BR.
    pub fn tiles(self) -> usize {
        match self {
            ViewLayout::Ens5Light | ViewLayout::Ens5 => 5,
            ViewLayout::EnsLight | ViewLayout::Ens => 1,
        }
    }

    /// Side of each ConvNeXt input.
    pub fn convnext_size(self) -> usize {
        match self {
            ViewLayout::Ens5Light | ViewLayout::EnsLight => 512,
            ViewLayout::Ens | ViewLayout::Ens5 => 256,
        }
    }

    /// Side of each DINOv2 (and CLIP / Q-Former, where present) input.
    pub fn dinov2_size(self) -> usize {
        224
    }

    /// Whether the layout feeds CLIP ViT-L and the BLIP-2 Q-Former.
    pub fn has_clip(self) -> bool {
        matches!(self, ViewLayout::Ens | ViewLayout::Ens5)
    }
}

/// All tower inputs of one image. Each list has `layout.tiles()` entries in upstream order
/// (global, top-left, top-right, bottom-left, bottom-right); stack them with [`super::stack`].
#[derive(Debug, Clone)]
pub struct Views {
    pub layout: ViewLayout,
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
pub fn views_for(layout: ViewLayout, image: &ImageTensor) -> Result<Views> {
    let s = layout.image_size();
    if image.shape() != [3, s, s] {
        return Err(Error::Shape(format!(
            "{} views need the padded image [3, {s}, {s}], got {:?}",
            layout.llama_type(),
            image.shape()
        )));
    }
    let d = layout.dinov2_size();
    let views = match layout {
        ViewLayout::Ens5Light => {
            // ConvNeXt: global bicubic 1024->512, then the exact 512 quadrants of the 1024 image.
            let mut convnext = vec![bicubic_fp16(image, 512, 512)?];
            convnext.extend(quadrants(image)?);
            // DINOv2: global bicubic 1024->224, then the 224 quadrants of bicubic 1024->448.
            let mut dino = vec![bicubic_fp16(image, d, d)?];
            dino.extend(quadrants(&bicubic_fp16(image, 2 * d, 2 * d)?)?);
            let dinov2 = dino.iter().map(|t| renormalize_for_dinov2(t, Renorm::ScaleShift)).collect::<Result<_>>()?;
            Views { layout, convnext, dinov2, clip: Vec::new() }
        }
        ViewLayout::EnsLight => {
            // ConvNeXt: F.interpolate(image.half(), (512, 512)) — nearest, an fp16 round trip.
            let convnext = vec![nearest_fp16(image, 512, 512)?];
            let dinov2 = vec![renormalize_for_dinov2(&bicubic_fp16(image, d, d)?, Renorm::ScaleShift)?];
            Views { layout, convnext, dinov2, clip: Vec::new() }
        }
        ViewLayout::Ens | ViewLayout::Ens5 => {
            let subs = if layout == ViewLayout::Ens5 {
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
