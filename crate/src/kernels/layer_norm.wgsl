// LayerNorm over the last dimension: y = (x - mean) / sqrt(var + eps) * weight + bias.
// One workgroup per row; mean and (biased) variance by two reductions in workgroup memory.

// Params and bindings: layer_norm_bindings.wgsl (layer_norm.rs puts it first).

// WG, reduce: reduce.wgsl (layer_norm.rs puts it before this body).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        s += x[base + c];
    }
    let mean = reduce(lid, s) / f32(p.cols);
    var s2 = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        let d = x[base + c] - mean;
        s2 += d * d;
    }
    let rstd = 1.0 / sqrt(reduce(lid, s2) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += WG) {
        y[base + c] = (x[base + c] - mean) * rstd * weight[c] + bias[c];
    }
}
