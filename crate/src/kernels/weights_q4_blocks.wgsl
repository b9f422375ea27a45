// Block dot of the q4 accessor, for matvec_rows.wgsl: the 32 codes of block b of row n as one
// 16-byte load and one scale. Word t holds values 4t..4t+3 in its low nibbles and 16+4t..16+4t+3
// in its high nibbles.

// The weight buffer again, 16 bytes at a time (linear.rs binds it twice for this body).
@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn nibbles_dot(word: u32, lo_x: vec4<f32>, hi_x: vec4<f32>) -> f32 {
    let lo = vec4<f32>(f32(extractBits(word, 0u, 4u)), f32(extractBits(word, 8u, 4u)), f32(extractBits(word, 16u, 4u)), f32(extractBits(word, 24u, 4u)));
    let hi = vec4<f32>(f32(extractBits(word, 4u, 4u)), f32(extractBits(word, 12u, 4u)), f32(extractBits(word, 20u, 4u)), f32(extractBits(word, 28u, 4u)));
    return dot(lo - 8.0, lo_x) + dot(hi - 8.0, hi_x);
}

fn block_dot(n: u32, b: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let c = wv[n * (p.kp / 32u) + b];
    let s = nibbles_dot(c.x, xs[0], xs[4]) + nibbles_dot(c.y, xs[1], xs[5]) + nibbles_dot(c.z, xs[2], xs[6]) + nibbles_dot(c.w, xs[3], xs[7]);
    return s * scale(n, b);
}
