// Activation accessor of linear_vec4.wgsl: x in a storage buffer, read 4 values at a time (K,
// x_offset and x_stride multiples of 4; linear.rs checks). x_row(r) is where row r starts, x4 the
// 4 values kk·4 .. kk·4 + 3 of a row, xin one value by its index.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;

fn x_row(r: u32) -> u32 {
    return (p.x_offset + r * p.x_stride) / 4u;
}

fn x4(row: u32, kk: u32) -> vec4<f32> {
    return x[row + kk];
}

fn xin(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}
