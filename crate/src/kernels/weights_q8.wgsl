// Weight accessor (see weights_f32.wgsl): q8, blocks of 32 signed bytes per row (rows padded to kp
// values with zero codes), then binary16 scales [N, kp / 32] from word p.scales (docs/format.md).

@group(0) @binding(2) var<storage, read> w: array<u32>;

// The four signed codes of a word as f32, exactly: unpack4x8unorm of the codes offset to unsigned,
// rounded back to integers (a few vector operations where four bit-field extracts and conversions
// cost 1.4x more in matvec_rows.wgsl on SwiftShader).
fn codes4(word: u32) -> vec4<f32> {
    return round(unpack4x8unorm(word ^ 0x80808080u) * 255.0) - 128.0;
}

fn scale(n: u32, b: u32) -> f32 {
    let s = n * (p.kp / 32u) + b;
    return unpack2x16float(w[p.scales + s / 2u])[s % 2u];
}

fn wval(n: u32, k: u32) -> f32 {
    let byte = n * p.kp + k;
    return f32(extractBits(i32(w[byte / 4u]), (byte % 4u) * 8u, 8u)) * scale(n, k / 32u);
}

fn w4(n: u32, k: u32) -> vec4<f32> {
    return codes4(w[(n * p.kp + k) / 4u]) * scale(n, k / 32u);
}

// units, unit_dot: weights_q8_units.wgsl (linear.rs puts it after this file).
