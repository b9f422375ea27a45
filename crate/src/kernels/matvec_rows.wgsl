// Linear layer body for a few rows (decode) without workgroup barriers: one invocation per output
// y[r, n] = x[r, :] · w[n, :] + bias[n], walking the weight row a unit at a time (the accessor's
// unit_dot, as matvec.wgsl: 4 f32 values, one 32-bit word of q8 or q4 codes). Software adapters
// (lavapipe, SwiftShader) run a workgroup's invocations as SIMD lanes of one CPU thread and pay for
// every barrier and every workgroup-memory round trip of matvec.wgsl's reduction; here there are
// none, and the x values every lane reads at a step are the same. Same parameters and addressing as
// linear_tiled.wgsl.

// struct Params: linear_params.wgsl; w, units, unit_dot: the accessor (linear.rs puts both first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u; // outputs per workgroup

fn xin(i: u32) -> f32 {
    return x[i];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    let r = wid.y;
    if (n >= p.n) {
        return;
    }
    let xr = p.x_offset + r * p.x_stride;
    var s = 0.0;
    let count = units();
    for (var u = 0u; u < count; u++) {
        s += unit_dot(n, u, xr);
    }
    if (p.has_bias != 0u) {
        s += bias[n];
    }
    y[p.y_offset + r * p.y_stride + n] = s;
}
