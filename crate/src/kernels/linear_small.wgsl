// Linear layer for narrow problems (few outputs or short rows, e.g. the first ConvNeXt stages):
// one invocation per output element, a plain dot product over K. Tiling would leave most of a 64x64
// tile idle there. Outputs are numbered row-major over [m, n] and the grid is folded into x/y, so
// every lane of a workgroup has work even when n is 16. Same addressing as linear.wgsl.

// struct Params: linear_params.wgsl (linear.rs puts it first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.m * p.n) {
        return;
    }
    let r = i / p.n;
    let n = i % p.n;
    let xr = p.x_offset + r * p.x_stride;
    let wr = n * p.k;
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += x[xr + k] * w[wr + k];
    }
    if (p.has_bias != 0u) {
        s += bias[n];
    }
    y[p.y_offset + r * p.y_stride + n] = s;
}
