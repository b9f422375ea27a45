enable f16;
// Weight accessor (see weights_f32.wgsl): f16 [N, K] read as WGSL f16 values (`enable f16`: only on
// adapters with shader-f16), widened to f32 for the arithmetic. Same bytes as weights_f16.wgsl.

@group(0) @binding(2) var<storage, read> w: array<f16>;

const UNIT: u32 = 4u;

fn wval(n: u32, k: u32) -> f32 {
    return f32(w[n * p.k + k]);
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    let i = n * p.k + k;
    return vec4<f32>(vec4<f16>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
}

// units, unit_dot: weights_values_units.wgsl (linear.rs puts it after this file).
