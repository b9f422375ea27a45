// Weight accessor of the linear kernel bodies (linear_tiled, linear_vec4, linear_small, matvec):
// f32 [N, K] row-major (torch Linear layout). Every accessor gives the same four functions:
// wval(n, k) one value; w4(n, k) values k..k+3 (k a multiple of 4, k + 3 < K); units() the steps of
// a row for matvec and unit_dot(n, u, xr) the dot product of unit u of row n with x from xr
// (through the body's xin). Prepended with linear_params.wgsl to a body by linear.rs.

@group(0) @binding(2) var<storage, read> w: array<f32>;

const UNIT: u32 = 4u;

fn wval(n: u32, k: u32) -> f32 {
    return w[n * p.k + k];
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    let i = n * p.k + k;
    return vec4<f32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
}

// units, unit_dot: weights_units.wgsl (linear.rs puts it after this file).
