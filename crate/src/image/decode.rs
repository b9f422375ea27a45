//! Decoding to 8-bit RGB the way upstream's `Image.open(path).convert('RGB')` does (Pillow
//! `PngImagePlugin`/`JpegImagePlugin` + `Convert.c`), and browser canvas RGBA → RGB.
//!
//! Pillow semantics kept here: alpha is dropped, never composited onto a background; 16-bit PNG
//! colour samples keep their high byte (rawmode `RGB;16B`); a 16-bit grayscale PNG opens as mode
//! `I;16`, whose conversion to RGB saturates at 255. EXIF orientation is not applied (upstream does
//! not call `exif_transpose`). Departure: JPEG goes through the `image` crate's decoder, not
//! libjpeg-turbo, so JPEG pixels can differ from Pillow's by a few levels (PNG is exact).

use super::{check_dims, Rgb8, MAX_IMAGE_SIDE};
use crate::{Error, Result};
use image::{DynamicImage, ImageReader, Limits};

/// Decodes PNG or JPEG bytes to RGB8 (format sniffed from the bytes).
pub fn decode(bytes: &[u8]) -> Result<Rgb8> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::format("image", format!("cannot read image bytes: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::format("image", "unrecognised image format (expected PNG or JPEG)"));
    }
    let mut reader = reader;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE as u32);
    limits.max_image_height = Some(MAX_IMAGE_SIDE as u32);
    // Room for the largest allowed image as 16-bit RGBA (8 bytes per pixel).
    limits.max_alloc = Some((MAX_IMAGE_SIDE * MAX_IMAGE_SIDE * 8) as u64);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => Error::format(
            "image",
            format!("image exceeds the limit of {MAX_IMAGE_SIDE} pixels per side (MAX_IMAGE_SIDE): {l}"),
        ),
        other => Error::format("image", format!("cannot decode image: {other}")),
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    check_dims(w, h)?;
    let n = w * h;
    let mut rgb = Vec::with_capacity(n * 3);
    match &img {
        DynamicImage::ImageRgb8(b) => rgb.extend_from_slice(b.as_raw()),
        DynamicImage::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                rgb.extend_from_slice(&p[..3]);
            }
        }
        DynamicImage::ImageLuma8(b) => {
            for &l in b.as_raw() {
                rgb.extend_from_slice(&[l, l, l]);
            }
        }
        DynamicImage::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                rgb.extend_from_slice(&[p[0], p[0], p[0]]);
            }
        }
        // Pillow: mode "I;16", converted to RGB by clipping to 0..255 (not by scaling).
        DynamicImage::ImageLuma16(b) => {
            for &l in b.as_raw() {
                let v = l.min(255) as u8;
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        // Pillow opens 16-bit LA as RGBA with rawmode "LA;16B": high byte of each sample.
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let v = (p[0] >> 8) as u8;
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageRgb16(b) => rgb.extend(b.as_raw().iter().map(|&v| (v >> 8) as u8)),
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                rgb.extend(p[..3].iter().map(|&v| (v >> 8) as u8));
            }
        }
        // Float images come only from formats this crate does not enable; convert generically.
        other => rgb.extend_from_slice(other.to_rgb8().as_raw()),
    }
    Rgb8::new(w, h, rgb)
}

/// Browser canvas pixels (`ImageData.data`: RGBA, 8 bits, rows top to bottom) → RGB, as Pillow's
/// `Image.frombytes('RGBA', ...).convert('RGB')`: the alpha byte is dropped, colours are kept as
/// stored (a canvas stores un-premultiplied values). // [H, W, 4] -> [H, W, 3]
pub fn from_rgba(rgba: &[u8], width: usize, height: usize) -> Result<Rgb8> {
    check_dims(width, height)?;
    if rgba.len() != width * height * 4 {
        return Err(Error::Shape(format!(
            "RGBA pixels for {width}x{height} need {} bytes, got {}",
            width * height * 4,
            rgba.len()
        )));
    }
    let mut rgb = Vec::with_capacity(width * height * 3);
    for p in rgba.chunks_exact(4) {
        rgb.extend_from_slice(&p[..3]);
    }
    Rgb8::new(width, height, rgb)
}
