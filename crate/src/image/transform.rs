//! `T_padded_resize(size)` of LLaMA2-Accessory `accessory/data/transform.py`: `PadToSquare` with the
//! CLIP mean colour, torchvision `Resize(size, BICUBIC)` (→ Pillow `Image.resize`), `ToTensor`
//! (`float32(u8) / 255`) and `Normalize(CLIP mean, std)` (`(x - mean) / std` in float32).

use super::pil_resize::{resample, RowSource};
use super::{check_dims, f32_of, ImageTensor, Rgb8, CLIP_MEAN, CLIP_STD};
use crate::Result;

/// `PadToSquare.bg_color = tuple(int(x*255) for x in clip_mean)` = (122, 116, 104): truncated.
pub(crate) fn pad_colour() -> [u8; 3] {
    [(CLIP_MEAN[0] * 255.0) as u8, (CLIP_MEAN[1] * 255.0) as u8, (CLIP_MEAN[2] * 255.0) as u8]
}

/// The image pasted onto a `side x side` square of the pad colour, read row by row.
struct Padded<'a> {
    img: &'a Rgb8,
    side: usize,
    /// Paste offset: wide images (x0 = 0, y0 = (w-h)//2), tall ones (x0 = (h-w)//2, y0 = 0).
    x0: usize,
    y0: usize,
    fill: [u8; 3],
}

impl<'a> Padded<'a> {
    fn new(img: &'a Rgb8) -> Padded<'a> {
        let (w, h) = (img.width(), img.height());
        let side = w.max(h);
        let (x0, y0) = if w > h { (0, (w - h) / 2) } else { ((h - w) / 2, 0) };
        Padded { img, side, x0, y0, fill: pad_colour() }
    }
}

impl RowSource for Padded<'_> {
    fn width(&self) -> usize {
        self.side
    }
    fn height(&self) -> usize {
        self.side
    }
    fn row(&self, y: usize, out: &mut [u8]) -> bool {
        let (w, h) = (self.img.width(), self.img.height());
        let inside = y >= self.y0 && y < self.y0 + h;
        for px in out.chunks_exact_mut(3) {
            px.copy_from_slice(&self.fill);
        }
        if inside {
            let src = &self.img.data()[(y - self.y0) * w * 3..(y - self.y0 + 1) * w * 3];
            out[self.x0 * 3..(self.x0 + w) * 3].copy_from_slice(src);
        }
        !inside
    }
}

/// `PadToSquare`: the image on a square of side max(w, h) filled with (122, 116, 104).
pub fn pad_to_square(img: &Rgb8) -> Result<Rgb8> {
    let p = Padded::new(img);
    let n = p.side * 3;
    let mut data = vec![0u8; p.side * n];
    for (y, row) in data.chunks_exact_mut(n).enumerate() {
        p.row(y, row);
    }
    Rgb8::new(p.side, p.side, data)
}

/// `ToTensor` + `Normalize(CLIP)`: `(float32(v) / 255 - mean[c]) / std[c]`, all in f32.
/// // [H, W, 3] u8 -> [3, H, W] f32
pub fn to_tensor_normalized(img: &Rgb8) -> Result<ImageTensor> {
    let (mean, std) = (f32_of(CLIP_MEAN), f32_of(CLIP_STD));
    // Every output is a function of (channel, byte): tabulate the 3 x 256 values.
    let mut lut = [[0f32; 256]; 3];
    for c in 0..3 {
        for (v, l) in lut[c].iter_mut().enumerate() {
            *l = (v as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    let n = img.width() * img.height();
    let mut data = vec![0f32; 3 * n];
    let (r, rest) = data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in img.data().chunks_exact(3).enumerate() {
        r[i] = lut[0][px[0] as usize];
        g[i] = lut[1][px[1] as usize];
        b[i] = lut[2][px[2] as usize];
    }
    ImageTensor::new(img.height(), img.width(), data)
}

/// `T_padded_resize(size)(img)`: pad to a square, Pillow-bicubic resize to `size x size`, to
/// tensor, CLIP-normalise. Bit-exact with upstream. // [H, W, 3] u8 -> [3, size, size] f32
pub fn padded_resize(img: &Rgb8, size: usize) -> Result<ImageTensor> {
    check_dims(size, size)?;
    let src = Padded::new(img);
    // Image.resize returns a copy when the size is unchanged; `resample` skips both passes then too.
    let bytes = resample(&src, size, size);
    to_tensor_normalized(&Rgb8::new(size, size, bytes)?)
}
