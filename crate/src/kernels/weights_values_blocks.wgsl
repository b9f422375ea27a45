// Block dot of the accessors read value by value (f32, f16, f16_native), for matvec_rows.wgsl:
// block b of row n (values 32b..32b+31, all inside K) four values at a time through w4 (the
// block's x sum, which the block formats take, is not needed here).

fn block_dot(n: u32, b: u32, xs: array<vec4<f32>, 8>, xsum: f32) -> f32 {
    let k = b * 32u;
    var s = dot(w4(n, k), xs[0]) + dot(w4(n, k + 4u), xs[1]) + dot(w4(n, k + 8u), xs[2]) + dot(w4(n, k + 12u), xs[3]);
    s += dot(w4(n, k + 16u), xs[4]) + dot(w4(n, k + 20u), xs[5]) + dot(w4(n, k + 24u), xs[6]) + dot(w4(n, k + 28u), xs[7]);
    return s;
}
