// Linear layer body for a few rows (decode) on adapters with subgroups (natively, where wgpu
// offers them): y[r, n] = x[r, :] · w[n, :] + bias[n] as in matvec.wgsl, but each output is summed
// by one subgroup and reduced with subgroupAdd — no workgroup memory and no barrier, which on a
// software adapter (lavapipe: subgroups of 8 SIMD lanes) is a horizontal add instead of a
// coroutine switch per invocation. The workgroup's subgroups take its ROWS outputs in turn; a
// subgroup's lanes stride over the row's units (the accessor's natural step; coalesced reads of
// the weight row). Any subgroup size and layout: the builtins say which subgroup and lane this is.
// Naga 30 takes the subgroup builtins without `enable subgroups;` (it rejects the directive); the
// browser will want it once wgpu can ask the web for subgroups.

// p, bias, y, store_output: linear_params.wgsl; w, units, unit_dot: the accessor (linear.rs puts both first).

@group(0) @binding(1) var<storage, read> x: array<f32>;

override ROWS: u32 = 8u; // outputs per workgroup
override WG: u32 = 64u;  // invocations per workgroup

fn xin(i: u32) -> f32 {
    return x[i];
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) sgs: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let r = wid.y;
    let xr = p.x_offset + r * p.x_stride;
    for (var j = sg; j < ROWS; j += sgs) {
        let n = wid.x * ROWS + j;
        var s = 0.0;
        if (n < p.n) {
            for (var u = lane; u < units(); u += lanes) {
                s += unit_dot(n, u, xr);
            }
        }
        let total = subgroupAdd(s);
        if (lane == 0u && n < p.n) {
            store_output(r, n, total);
        }
    }
}
