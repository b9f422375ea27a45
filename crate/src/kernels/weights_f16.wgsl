// Weight accessor (see weights_f32.wgsl): f16, binary16 values [N, K], two per 32-bit word,
// unpacked with unpack2x16float (no shader-f16 needed).

@group(0) @binding(2) var<storage, read> w: array<u32>;

const UNIT: u32 = 2u;

fn wval(n: u32, k: u32) -> f32 {
    let e = n * p.k + k;
    return unpack2x16float(w[e / 2u])[e % 2u];
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    let e = n * p.k + k;
    if (e % 2u == 0u) {
        return vec4<f32>(unpack2x16float(w[e / 2u]), unpack2x16float(w[e / 2u + 1u]));
    }
    return vec4<f32>(wval(n, k), wval(n, k + 1u), wval(n, k + 2u), wval(n, k + 3u));
}

// units, unit_dot: weights_values_units.wgsl (linear.rs puts it after this file).
