// Weight accessor (see weights_f32.wgsl): q4, 16 bytes per block of 32 (value j in the low nibble of
// byte j, value j + 16 in the high nibble, code u means (u - 8) · scale; rows padded to kp values
// with code 8), then binary16 scales [N, kp / 32] from word p.scales (docs/format.md). A matvec unit
// is one 32-bit word: values k0..k0+3 (low nibbles) and k0+16..k0+19 (high nibbles).

@group(0) @binding(2) var<storage, read> w: array<u32>;

const UNIT: u32 = 8u;

fn scale(n: u32, b: u32) -> f32 {
    let s = n * (p.kp / 32u) + b;
    return unpack2x16float(w[p.scales + s / 2u])[s % 2u];
}

fn wval(n: u32, k: u32) -> f32 {
    let j = k % 32u;
    let byte = n * (p.kp / 2u) + (k / 32u) * 16u + j % 16u;
    let u = extractBits(w[byte / 4u], (byte % 4u) * 8u + select(0u, 4u, j >= 16u), 4u);
    return (f32(u) - 8.0) * scale(n, k / 32u);
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    let j = k % 32u;
    let word = w[(n * (p.kp / 2u) + (k / 32u) * 16u + j % 16u) / 4u];
    let sh = select(0u, 4u, j >= 16u);
    let c = vec4<f32>(f32(extractBits(word, sh, 4u)), f32(extractBits(word, 8u + sh, 4u)), f32(extractBits(word, 16u + sh, 4u)), f32(extractBits(word, 24u + sh, 4u)));
    return (c - 8.0) * scale(n, k / 32u);
}

fn units() -> u32 {
    return p.kp / UNIT;
}

fn unit_dot(n: u32, u: u32, xr: u32) -> f32 {
    let b = u / 4u;
    let k0 = b * 32u + (u % 4u) * 4u;
    if (k0 >= p.k) {
        return 0.0;
    }
    let word = w[n * (p.kp / 8u) + u];
    var s = 0.0;
    for (var t = 0u; t < 4u; t++) {
        if (k0 + t < p.k) {
            s += (f32(extractBits(word, t * 8u, 4u)) - 8.0) * xin(xr + k0 + t);
        }
        if (k0 + 16u + t < p.k) {
            s += (f32(extractBits(word, t * 8u + 4u, 4u)) - 8.0) * xin(xr + k0 + 16u + t);
        }
    }
    return s * scale(n, b);
}
