// The matvec units of the q8 accessor (prepended after weights_q8.wgsl): one 32-bit word of codes,
// four values, per step.

const UNIT: u32 = 4u; // one 32-bit word of codes

fn units() -> u32 {
    return (p.k + UNIT - 1u) / UNIT;
}

fn unit_dot(n: u32, u: u32, xr: u32) -> f32 {
    let k0 = u * UNIT;
    let c = codes4(w[(n * p.kp + k0) / 4u]);
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
