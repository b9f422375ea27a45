// Weight accessor (see weights_f32.wgsl): q8, blocks of 32 signed bytes per row (rows padded to kp
// values with zero codes), then binary16 scales [N, kp / 32] from word p.scales (docs/format.md).

@group(0) @binding(2) var<storage, read> w: array<u32>;

const UNIT: u32 = 4u; // one 32-bit word of codes

fn scale(n: u32, b: u32) -> f32 {
    let s = n * (p.kp / 32u) + b;
    return unpack2x16float(w[p.scales + s / 2u])[s % 2u];
}

fn wval(n: u32, k: u32) -> f32 {
    let byte = n * p.kp + k;
    return f32(extractBits(i32(w[byte / 4u]), (byte % 4u) * 8u, 8u)) * scale(n, k / 32u);
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    let word = i32(w[(n * p.kp + k) / 4u]);
    let c = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)), f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u)));
    return c * scale(n, k / 32u);
}

fn units() -> u32 {
    return (p.k + UNIT - 1u) / UNIT;
}

fn unit_dot(n: u32, u: u32, xr: u32) -> f32 {
    let k0 = u * UNIT;
    let word = i32(w[(n * p.kp + k0) / 4u]);
    let c = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)), f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u)));
    // x past k reads as zero (the codes there are zero too, but x may hold anything)
    var xv = vec4<f32>(0.0);
    if (k0 + UNIT <= p.k) {
        xv = vec4<f32>(xin(xr + k0), xin(xr + k0 + 1u), xin(xr + k0 + 2u), xin(xr + k0 + 3u));
    } else {
        for (var t = 0u; k0 + t < p.k; t++) {
            xv[t] = xin(xr + k0 + t);
        }
    }
    return dot(c, xv) * scale(n, k0 / 32u);
}
