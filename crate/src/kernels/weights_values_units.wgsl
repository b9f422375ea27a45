// The matvec units of the accessors whose values are read one by one (weights_f32, weights_f16,
// weights_f16_native): UNIT values per step through wval; prepended after the accessor.

fn units() -> u32 {
    return (p.k + UNIT - 1u) / UNIT;
}

fn unit_dot(n: u32, u: u32, xr: u32) -> f32 {
    let k0 = u * UNIT;
    var s = 0.0;
    for (var t = 0u; t < UNIT; t++) {
        if (k0 + t < p.k) {
            s += wval(n, k0 + t) * xin(xr + k0 + t);
        }
    }
    return s;
}
