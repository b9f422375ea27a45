// Weight accessor of the linear kernel bodies (linear_tiled, linear_vec4, linear_small, matvec,
// matvec_rows) and of the row gather (gather_rows): f32 [N, K] row-major (torch Linear layout).
// Every accessor reads binding 2 (w) through the parameters p.k, p.kp and p.scales and gives
// wval(n, k), one value, and w4(n, k), values k..k+3 (k a multiple of 4, k + 3 < K). The matvec
// bodies also take a units file after it: units() the steps of a row and unit_dot(n, u, xr) the
// dot product of unit u of row n with x from xr, through the body's xin (weights_values_units.wgsl
// for the value-by-value formats, weights_q8_units.wgsl, weights_q4_units.wgsl); matvec_rows takes
// a blocks file (weights_{values,q8,q4}_blocks.wgsl). Put together by linear.rs and gather_rows.rs.

@group(0) @binding(2) var<storage, read> w: array<f32>;

const UNIT: u32 = 4u;

fn wval(n: u32, k: u32) -> f32 {
    return w[n * p.k + k];
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    let i = n * p.k + k;
    return vec4<f32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
}

// units, unit_dot: weights_values_units.wgsl (linear.rs puts it after this file).
