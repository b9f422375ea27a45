// LayerNorm over the last dimension for short rows (the first ConvNeXt stages: 16384+ rows of a few
// dozen channels per view): one invocation per row, no workgroup reductions or barriers. Same
// parameters and result as layer_norm.wgsl.

// Params and bindings: layer_norm_bindings.wgsl (layer_norm.rs puts it first).

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += x[base + c];
    }
    let mean = s / f32(p.cols);
    var s2 = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let d = x[base + c] - mean;
        s2 += d * d;
    }
    let rstd = 1.0 / sqrt(s2 / f32(p.cols) + p.eps);
    for (var c = 0u; c < p.cols; c++) {
        y[base + c] = (x[base + c] - mean) * rstd * weight[c] + bias[c];
    }
}
