//! Decoding to 8-bit RGB the way upstream's `Image.open(path).convert('RGB')` does (Pillow
//! `PngImagePlugin`/`JpegImagePlugin` + `Convert.c`), and browser canvas RGBA → RGB.
//!
//! Pillow semantics kept here: alpha is dropped, never composited onto a background; 16-bit PNG
//! colour samples keep their high byte (rawmode `RGB;16B`); a 16-bit grayscale PNG opens as mode
//! `I;16`, whose conversion to RGB saturates at 255. EXIF orientation is not applied (upstream does
//! not call `exif_transpose`). A JPEG that ends before its end-of-image marker is refused, as
//! Pillow refuses it ("image file is truncated"). Departure: JPEG goes through the `image` crate's
//! decoder, not libjpeg-turbo, so JPEG pixels can differ from Pillow's by a few levels (PNG is exact).
//!
//! Bounded memory: a file is read only when it starts like a PNG or JPEG and is at most
//! [`MAX_IMAGE_FILE_BYTES`]; the header's size is checked against [`MAX_IMAGE_SIDE`] and
//! [`MAX_IMAGE_PIXELS`] before any pixel is decoded; everything else the decoder allocates
//! (metadata such as a compressed iCCP profile, which Pillow's `convert` ignores anyway) is capped at
//! [`METADATA_ALLOC`]; the decoded buffer becomes the RGB image in place where the layouts allow.

use super::{check_dims, Rgb8, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE};
use crate::io::files::{open_regular, read_head};
use crate::{Error, Result};
use std::path::Path;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// What a decoder may allocate besides the decoded pixels (PNG metadata chunks, row buffers).
pub const METADATA_ALLOC: u64 = 16 << 20;

fn image_error(e: image::ImageError) -> Error {
    match e {
        image::ImageError::Limits(l) => Error::format(
            "image",
            format!("image too large ({l}); the limit is {MAX_IMAGE_SIDE} pixels per side (MAX_IMAGE_SIDE), {MAX_IMAGE_PIXELS} pixels in all (MAX_IMAGE_PIXELS) and {METADATA_ALLOC} bytes of metadata"),
        ),
        other => Error::format("image", format!("cannot decode image: {other}")),
    }
}

/// PNG or JPEG, from the first bytes of a file.
fn sniff(head: &[u8]) -> Result<ImageFormat> {
    image::guess_format(head).ok().filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg)).ok_or_else(|| {
        let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Error::format("image", format!("unrecognised image format (expected PNG or JPEG; the file starts with {})", if shown.is_empty() { "nothing: it is empty".into() } else { shown.join(" ") }))
    })
}

/// Decodes PNG or JPEG bytes to RGB8 (format sniffed from the bytes).
pub fn decode(bytes: &[u8]) -> Result<Rgb8> {
    let format = sniff(bytes)?;
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE as u32);
    limits.max_image_height = Some(MAX_IMAGE_SIDE as u32);
    // The PNG decoder takes this as its budget for everything but the output buffer.
    limits.max_alloc = Some(METADATA_ALLOC);
    reader.limits(limits);
    // Reads the headers only (PNG: up to the first IDAT, metadata within the budget).
    let decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    check_dims(w as usize, h as usize).map_err(|e| Error::format("image", e))?;
    let img = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    to_rgb8(img)
}

/// Largest image file read (a 64 Mpx photo is far smaller as a PNG or JPEG); a larger file is
/// refused before it is read, so a video or disk image passed by mistake costs nothing.
pub const MAX_IMAGE_FILE_BYTES: u64 = 128 << 20;

/// Reads and decodes an image file (`Image.open(path).convert('RGB')`): a regular file only
/// (a FIFO or device is refused without blocking on it), its format checked from the first bytes
/// and its size against [`MAX_IMAGE_FILE_BYTES`] before the rest is read.
pub fn read_file(path: &Path) -> Result<Rgb8> {
    use std::io::Read;
    let (mut f, len) = open_regular(path)?;
    let at = |e: Error| Error::format(path.display(), e);
    let mut head = [0u8; 16];
    let n = read_head(&mut f, path, &mut head)?;
    sniff(&head[..n]).map_err(at)?;
    if len > MAX_IMAGE_FILE_BYTES {
        return Err(Error::format(path.display(), format!("{len} bytes: larger than an image file may be ({MAX_IMAGE_FILE_BYTES} bytes, MAX_IMAGE_FILE_BYTES)")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&head[..n]);
    f.take(MAX_IMAGE_FILE_BYTES + 1 - n as u64).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
        return Err(Error::format(path.display(), format!("grew past {MAX_IMAGE_FILE_BYTES} bytes while being read")));
    }
    decode(&bytes).map_err(at)
}

/// The decoded image as Pillow's `convert('RGB')`, reusing the decoder's buffer for 8-bit layouts.
fn to_rgb8(img: DynamicImage) -> Result<Rgb8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let rgb = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        // [n, 4] -> [n, 3] in place: pixel i moves from 4i to 3i ≤ 4i
        DynamicImage::ImageRgba8(b) => {
            let mut v = b.into_raw();
            for i in 0..n {
                v.copy_within(4 * i..4 * i + 3, 3 * i);
            }
            v.truncate(3 * n);
            v
        }
        // [n, c] -> [n, 3] in place, last pixel first (3i ≥ c·i): grey sample repeated
        DynamicImage::ImageLuma8(b) => widen_grey(b.into_raw(), n, 1),
        DynamicImage::ImageLumaA8(b) => widen_grey(b.into_raw(), n, 2),
        // Pillow: mode "I;16", converted to RGB by clipping to 0..255 (not by scaling).
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().flat_map(|&l| [l.min(255) as u8; 3]).collect(),
        // Pillow opens 16-bit LA as RGBA with rawmode "LA;16B": high byte of each sample.
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).flat_map(|p| [(p[0] >> 8) as u8; 3]).collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) => b.as_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(|v| (v >> 8) as u8)).collect(),
        // Float images come only from formats this crate does not enable; convert generically.
        other => other.to_rgb8().into_raw(),
    };
    Rgb8::new(w, h, rgb)
}

/// Grey pixels of `channels` bytes (sample first) → RGB, in the same buffer.
fn widen_grey(mut v: Vec<u8>, n: usize, channels: usize) -> Vec<u8> {
    v.resize(3 * n, 0);
    for i in (0..n).rev() {
        let l = v[channels * i];
        v[3 * i..3 * i + 3].fill(l);
    }
    v
}

/// Refuses a JPEG that ends before its end-of-image marker (the `image` crate's decoder would fill
/// the missing rows with grey). Walks the markers: segments are skipped by their length, entropy-
/// coded data up to the next marker (stuffed `FF 00` and `RSTn` are not markers).
fn check_jpeg_complete(b: &[u8]) -> Result<()> {
    let truncated = |what: &str| Err(Error::format("image", format!("truncated JPEG ({} bytes): {what} before the end-of-image marker FFD9", b.len())));
    let mut i = 2; // after SOI
    loop {
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else { return truncated("the data ends") };
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            0x00 | 0x01 | 0xD0..=0xD8 => {} // stuffed byte, TEM, RSTn, SOI: no length
            _ => {
                let Some(len) = b.get(i..i + 2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize) else {
                    return truncated("a segment length is cut");
                };
                if len < 2 || i + len > b.len() {
                    return truncated(&format!("segment FF{marker:02X} at byte {} runs past the end", i - 2));
                }
                i += len;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_markers_must_reach_eoi() {
        // SOI, an APP0 segment, SOS header, entropy data with a stuffed FF00 and RST0, EOI
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 1, 2, 0xFF, 0xDA, 0x00, 0x02, 9, 0xFF, 0x00, 7, 0xFF, 0xD0, 5];
        assert!(check_jpeg_complete(&j).unwrap_err().to_string().contains("truncated JPEG"));
        j.extend_from_slice(&[0xFF, 0xD9, 0, 0]); // trailing bytes after EOI are fine (Pillow too)
        check_jpeg_complete(&j).unwrap();
        let cut = [0xFF, 0xD8, 0xFF, 0xE1, 0x10, 0x00, 0xFF, 0xD9]; // APP1 longer than the file
        assert!(check_jpeg_complete(&cut).unwrap_err().to_string().contains("runs past the end"));
    }

    #[test]
    fn grey_widens_in_place() {
        assert_eq!(widen_grey(vec![1, 2], 2, 1), vec![1, 1, 1, 2, 2, 2]);
        assert_eq!(widen_grey(vec![1, 9, 2, 9], 2, 2), vec![1, 1, 1, 2, 2, 2]);
    }
}
