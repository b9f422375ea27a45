// Block dot of the q8 accessor, for matvec_rows.wgsl: the 32 codes of block b of row n as two
// 16-byte loads and one scale (software adapters pay per load, not per byte: see the body).

// The weight buffer again, 16 bytes at a time (linear.rs binds it twice for this body).
@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn codes_dot(word: u32, xs: vec4<f32>) -> f32 {
    return dot(codes4(word), xs);
}

fn block_dot(n: u32, b: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let i = (n * p.kp + b * 32u) / 16u;
    let lo = wv[i];
    let hi = wv[i + 1u];
    var s = codes_dot(lo.x, xs[0]) + codes_dot(lo.y, xs[1]) + codes_dot(lo.z, xs[2]) + codes_dot(lo.w, xs[3]);
    s += codes_dot(hi.x, xs[4]) + codes_dot(hi.y, xs[5]) + codes_dot(hi.z, xs[6]) + codes_dot(hi.w, xs[7]);
    return s * scale(n, b);
}
