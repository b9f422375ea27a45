// Weight accessor (see weights_f32.wgsl): q4, 16 bytes per block of 32 (value j in the low nibble of
// byte j, value j + 16 in the high nibble, code u means (u - 8) · scale; rows padded to kp values
// with code 8), then binary16 scales [N, kp / 32] from word p.scales (docs/format.md).

@group(0) @binding(2) var<storage, read> w: array<u32>;

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

// units, unit_dot: weights_q4_units.wgsl (linear.rs puts it after this file).
