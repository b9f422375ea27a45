// Block dot of the q4 accessor, for matvec_rows.wgsl: the 32 codes of block b of row n as one
// 16-byte load and one scale. Word t holds values 4t..4t+3 in its low nibbles and 16+4t..16+4t+3
// in its high nibbles; each nibble u, masked into a byte, is read by unpack4x8unorm as u / 255, so
// that Σ (u − 8)·x = 255 · Σ unorm·x − 8 · Σ x (as weights_q8_blocks.wgsl).

// The weight buffer again, 16 bytes at a time (linear.rs binds it twice for this body).
@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn nibbles_dot(word: u32, lo_x: vec4<f32>, hi_x: vec4<f32>) -> f32 {
    return dot(unpack4x8unorm(word & 0x0f0f0f0fu), lo_x) + dot(unpack4x8unorm((word >> 4u) & 0x0f0f0f0fu), hi_x);
}

fn block_dot(n: u32, b: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let c = wv[n * (p.kp / 32u) + b];
    let s = nibbles_dot(c.x, xs[0], xs[4]) + nibbles_dot(c.y, xs[1], xs[5]) + nibbles_dot(c.z, xs[2], xs[6]) + nibbles_dot(c.w, xs[3], xs[7]);
    return (s * 255.0 - 8.0 * xsum) * scale(n, b);
}
