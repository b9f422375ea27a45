// Activation accessor of linear_vec4.wgsl (same functions as x_vec4.wgsl): x copied into a texture
// of 16-byte texels, row r of x in texel row r (linear.rs copies it in before the dispatch). On
// software adapters a texture fetch is a gather without a branch per SIMD lane, where a storage
// load is a loop over the lanes with a bounds check each: the q8 64-row products of the wide
// model ran 1.4x faster on lavapipe with x read this way, the weights read as before.

@group(0) @binding(1) var xt: texture_2d<u32>;

fn x_row(r: u32) -> u32 {
    return r;
}

fn x4(row: u32, kk: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(textureLoad(xt, vec2<u32>(kk, row), 0));
}

fn xin(i: u32) -> f32 {
    let j = i - p.x_offset;
    let k = j % p.x_stride;
    return x4(j / p.x_stride, k / 4u)[k % 4u];
}
