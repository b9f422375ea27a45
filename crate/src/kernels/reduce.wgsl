// The sum of one value per invocation across a workgroup, by a tree in workgroup memory (every
// invocation gets the total): the row reductions of layer_norm.wgsl and rms_norm.wgsl (their .rs
// files prepend it). Call it from uniform control flow (it has barriers).

override WG: u32 = 256; // power of two, at most 256
var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

