// Linear layer body for a few rows (decode): y[r, n] = x[r, :] · w[n, :] + bias[n]. Each workgroup
// computes ROWS outputs of one x row; the LANES invocations of an output stride over the row's units
// (the accessor's natural step: 4 f32 values, one 32-bit word of q8 or q4 codes; coalesced reads of
// the weight row) and reduce their partial sums in workgroup memory. LANES is a power of two.
// Same parameters and addressing as linear_tiled.wgsl.

// p, bias, y, store_output: linear_params.wgsl; w, units, unit_dot: the accessor (linear.rs puts both first).

@group(0) @binding(1) var<storage, read> x: array<f32>;

override ROWS: u32 = 8u;   // outputs per workgroup
override LANES: u32 = 32u; // invocations per output

var<workgroup> part: array<f32, ROWS * LANES>;

fn xin(i: u32) -> f32 {
    return x[i];
}

@compute @workgroup_size(ROWS * LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % LANES;
    let n = wid.x * ROWS + li / LANES;
    let r = wid.y;
    var s = 0.0;
    if (n < p.n) {
        let xr = p.x_offset + r * p.x_stride;
        for (var u = lane; u < units(); u += LANES) {
            s += unit_dot(n, u, xr);
        }
    }
    part[li] = s;
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h >>= 1u) {
        if (lane < h) {
            part[li] += part[li + h];
        }
        workgroupBarrier();
    }
    if (lane == 0u && n < p.n) {
        store_output(r, n, part[li]);
    }
}
