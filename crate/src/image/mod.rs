//! Image preprocessing on the CPU, bit-exact with upstream: decoding to RGB8 (PIL `convert('RGB')`),
//! `padded_resize` (LLaMA2-Accessory `accessory/data/transform.py` over Pillow `Resample.c`), and the
//! per-variant encoder views that `encode_image` builds with `F.interpolate` (`llama_ens*.py`).
//!
//! Pipeline: bytes or canvas RGBA → [`Rgb8`] → [`padded_resize`] → [`ImageTensor`] `[3, S, S]` →
//! [`views_for`] → [`Views`] (the input tensors of every vision tower).
//!
//! Files: `decode.rs` (PIL open/convert), `pil_resize.rs` (Pillow BICUBIC), `transform.rs`
//! (PadToSquare + Resize + ToTensor + Normalize), `resample.rs` (torch bicubic/nearest with fp16
//! round trips), `views.rs` (tiles per `llama_type`).

mod decode;
mod pil_resize;
mod resample;
mod transform;
mod views;

pub use decode::{decode, from_rgba, read_file, MAX_IMAGE_FILE_BYTES};
pub use pil_resize::pil_resize_bicubic;
pub use resample::{bicubic_fp16, crop, nearest_fp16, quadrants, round_fp16};
pub use transform::{pad_to_square, padded_resize, to_tensor_normalized};
pub use views::{renormalize_for_dinov2, views_for, Renorm, Views};

use crate::{Error, Result};

/// Largest accepted image side in pixels, for decoded files and canvas pixels alike. Pillow has no
/// such limit; ours keeps a hostile file from asking for gigabytes (a 16384² RGB image is 805 MB).
pub const MAX_IMAGE_SIDE: usize = 16384;
/// Largest accepted image in pixels (64 Mpx, e.g. 8192²; a 48 MP photo fits). Decoding keeps the
/// decoder's buffer (at most 8 bytes per pixel, 16-bit RGBA) and the RGB result (3), so an image
/// at this budget peaks well under 1 GB; Pillow refuses twice its 89.5 Mpx warning threshold.
pub const MAX_IMAGE_PIXELS: usize = 1 << 26;

/// CLIP normalisation (open_clip `OPENAI_DATASET_MEAN/STD`), written as the Python floats upstream
/// passes to `torch.Tensor`, i.e. rounded once from f64 to f32 (see [`f32_of`]).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
/// DINOv2 (ImageNet) normalisation used by `encode_image` when re-normalising for DINOv2.
pub const DINOV2_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const DINOV2_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The float32 tensor value of a Python float constant: Python holds an f64, `torch.Tensor([...])`
/// rounds it to f32. (Parsing the decimal straight to f32 could differ by double rounding.)
pub(crate) fn f32_of(v: [f64; 3]) -> [f32; 3] {
    [v[0] as f32, v[1] as f32, v[2] as f32]
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B`. // [H, W, 3]
#[derive(Clone, PartialEq, Eq)]
pub struct Rgb8 {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for Rgb8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rgb8({}x{})", self.width, self.height)
    }
}

impl Rgb8 {
    /// Wraps interleaved RGB bytes; checks the dimensions (1..=[`MAX_IMAGE_SIDE`]) and the length.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Rgb8> {
        check_dims(width, height)?;
        if data.len() != width * height * 3 {
            return Err(Error::Shape(format!(
                "RGB image {width}x{height} needs {} bytes, got {}",
                width * height * 3,
                data.len()
            )));
        }
        Ok(Rgb8 { width, height, data })
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// Interleaved RGB bytes. // [H, W, 3]
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// Rejects empty and oversized images with a message naming the limit.
pub(crate) fn check_dims(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::Msg(format!("image has zero size ({width}x{height})")));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width.saturating_mul(height) > MAX_IMAGE_PIXELS {
        return Err(Error::Msg(format!(
            "image too large ({width}×{height}); the limit is {MAX_IMAGE_SIDE} pixels per side (MAX_IMAGE_SIDE) and {MAX_IMAGE_PIXELS} pixels in all (MAX_IMAGE_PIXELS)"
        )));
    }
    Ok(())
}

/// A 3-channel float image, channel-first like a torch tensor without its batch axis. // [3, H, W]
#[derive(Clone, PartialEq)]
pub struct ImageTensor {
    height: usize,
    width: usize,
    data: Vec<f32>,
}

impl std::fmt::Debug for ImageTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageTensor[3, {}, {}]", self.height, self.width)
    }
}

impl ImageTensor {
    /// Wraps channel-first data; `data.len()` must be `3 * height * width`.
    pub fn new(height: usize, width: usize, data: Vec<f32>) -> Result<ImageTensor> {
        if height == 0 || width == 0 || data.len() != 3 * height * width {
            return Err(Error::Shape(format!(
                "image tensor [3, {height}, {width}] needs {} values, got {}",
                3 * height * width,
                data.len()
            )));
        }
        Ok(ImageTensor { height, width, data })
    }

    pub fn height(&self) -> usize {
        self.height
    }
    pub fn width(&self) -> usize {
        self.width
    }
    /// `[3, height, width]`, ready for `Tensor::from_vec`.
    pub fn shape(&self) -> [usize; 3] {
        [3, self.height, self.width]
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// One channel plane. // [H, W]
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
}

/// Stacks same-sized images into one batch. // N x [3, H, W] -> [N, 3, H, W]
pub fn stack(images: &[ImageTensor]) -> Result<(Vec<usize>, Vec<f32>)> {
    let first = images.first().ok_or_else(|| Error::Shape("stack: no images".into()))?;
    let mut data = Vec::with_capacity(images.len() * first.data.len());
    for (i, im) in images.iter().enumerate() {
        if im.shape() != first.shape() {
            return Err(Error::Shape(format!(
                "stack: image {i} has shape {:?}, image 0 has {:?}",
                im.shape(),
                first.shape()
            )));
        }
        data.extend_from_slice(&im.data);
    }
    Ok((vec![images.len(), 3, first.height, first.width], data))
}

#[cfg(test)]
mod tests;
