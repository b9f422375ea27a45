// GELU, exact (erf) form, in place: x = 0.5 * x * (1 + erf(x / sqrt(2))).
// erfc by the Chebyshev fit of Numerical Recipes (fractional error < 1.2e-7): WGSL has no erf.

struct Params {
    n: u32, // elements
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

override WG: u32 = 256;

fn erfc_pos(z: f32) -> f32 { // z >= 0
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + poly);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n) {
        return;
    }
    let v = x[i];
    let z = abs(v) * 0.70710678118654752;
    let c = erfc_pos(z);
    // 1 + erf(v/√2) = 2 - erfc(z) for v ≥ 0, erfc(z) for v < 0
    var one_plus_erf = c;
    if (v >= 0.0) {
        one_plus_erf = 2.0 - c;
    }
    x[i] = 0.5 * v * one_plus_erf;
}
