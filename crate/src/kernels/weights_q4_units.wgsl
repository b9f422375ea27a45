// The matvec units of the q4 accessor (prepended after weights_q4.wgsl): one 32-bit word, values
// k0..k0+3 (low nibbles) and k0+16..k0+19 (high nibbles), per step.

const UNIT: u32 = 8u;

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
