// Linear layer body for short rows or few outputs: one invocation per output y[r, n] = x[r, :] ·
// w[n, :] + bias[n], outputs numbered flat over [M, N] (no idle invocations when N is small).
// Weights through the accessor's wval. Same parameters and addressing as linear_tiled.wgsl.

// p, bias, y, store_output: linear_params.wgsl; w, wval: the accessor (linear.rs puts both first).

@group(0) @binding(1) var<storage, read> x: array<f32>;

override WG: u32 = 64u;

fn xin(i: u32) -> f32 {
    return x[i];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.m * p.n) {
        return;
    }
    let r = idx / p.n;
    let c = idx % p.n;
    let xr = p.x_offset + r * p.x_stride;
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += x[xr + k] * wval(c, k);
    }
    store_output(r, c, s);
}
