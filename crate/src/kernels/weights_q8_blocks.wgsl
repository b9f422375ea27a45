// Block dot of the q8 accessor, for matvec_rows.wgsl: the 32 codes of block b of row n as two
// 16-byte loads and one scale (software adapters pay per load, not per byte: see the body). The
// codes, offset to unsigned (c + 128), are read by unpack4x8unorm as (c + 128) / 255, so that
// Σ c·x = 255 · Σ unorm·x − 128 · Σ x: three vector operations per four values where bit-field
// extracts, conversions and the exact rounding back (codes4) cost 1.36x more on SwiftShader; the
// result is the exact one to within f32 rounding of the two sums.

// The weight buffer again, 16 bytes at a time (linear.rs binds it twice for this body).
@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn block_dot(n: u32, b: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let i = (n * p.kp + b * 32u) / 16u;
    let lo = wv[i] ^ vec4<u32>(0x80808080u);
    let hi = wv[i + 1u] ^ vec4<u32>(0x80808080u);
    var s = dot(unpack4x8unorm(lo.x), xs[0]) + dot(unpack4x8unorm(lo.y), xs[1]) + dot(unpack4x8unorm(lo.z), xs[2]) + dot(unpack4x8unorm(lo.w), xs[3]);
    s += dot(unpack4x8unorm(hi.x), xs[4]) + dot(unpack4x8unorm(hi.y), xs[5]) + dot(unpack4x8unorm(hi.z), xs[6]) + dot(unpack4x8unorm(hi.w), xs[7]);
    return (s * 255.0 - 128.0 * xsum) * scale(n, b);
}
