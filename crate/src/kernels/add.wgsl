// Residual add in place, with an optional per-channel scale (layer scale / ConvNeXt gamma):
// x[i] += y[i] * gamma[i % channels]   (gamma ≡ 1 when has_gamma = 0).

struct Params {
    n: u32,         // elements
    channels: u32,  // period of gamma
    has_gamma: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n) {
        return;
    }
    var v = y[i];
    if (p.has_gamma != 0u) {
        v = v * gamma[i % p.channels];
    }
    x[i] = x[i] + v;
}
