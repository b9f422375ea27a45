// RMSNorm (LLaMA): y = x * rsqrt(mean(x²) + eps) * weight, one workgroup per row.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;      // [rows, cols]
@group(0) @binding(2) var<storage, read> weight: array<f32>; // [cols]
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // [rows, cols]

// WG, reduce: reduce.wgsl (rms_norm.rs puts it first).

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
        let v = x[base + c];
        s += v * v;
    }
    let r = inverseSqrt(reduce(lid, s) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += WG) {
        y[base + c] = x[base + c] * r * weight[c];
    }
}
