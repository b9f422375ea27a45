// LayerNorm over the last dimension for short rows (the first ConvNeXt stages: 16384+ rows of a few
// dozen channels per view): one invocation per row, no workgroup reductions or barriers. Same
// parameters and result as layer_norm.wgsl.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;      // [rows, cols]
@group(0) @binding(2) var<storage, read> weight: array<f32>; // [cols]
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // [cols]
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // [rows, cols]

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
