// An image file decoded and its pixels read, one way for every caller (the OpenAI-shaped call, the
// chat element's image panel, the bench page): no colour-space conversion and no premultiplied
// alpha — the engine drops alpha as PIL's convert('RGB') does, so premultiplying would darken
// translucent pixels.

/** A Blob, File or video frame → ImageBitmap (rejects when it cannot be decoded). */
export function decodeImage(source) {
  return createImageBitmap(source, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
}

/** An ImageBitmap's RGBA pixels (sRGB) as ImageData. */
export function pixelsOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}
