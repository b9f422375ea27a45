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

fn units() -> u32 {
    return (p.k + UNIT - 1u) / UNIT;
}

fn unit_dot(n: u32, u: u32, xr: u32) -> f32 {
    let k0 = u * UNIT;
    var s = 0.0;
    for (var t = 0u; t < UNIT; t++) {
        if (k0 + t < p.k) {
            s += f32(w[n * p.k + k0 + t]) * xin(xr + k0 + t);
        }
    }
    return s;
}
