// Linear layer for a few rows (decode) with a f16 weight read directly in its packed form:
// y[r, n] = x[r, :] · w[n, :] + bias[n]. Each workgroup computes ROWS outputs of one x row; the
// 256 / ROWS invocations of an output stride over the row's 32-bit words and reduce in workgroup memory.
// f16: binary16 values [n, k], two per 32-bit word (no shader-f16 needed).

// struct Params: linear_params.wgsl (qlinear.rs puts it first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const ROWS: u32 = 8u;    // outputs per workgroup
const LANES: u32 = 32u;  // invocations per output
var<workgroup> part: array<f32, 256>;

// (no scales)

fn row_dot(n: u32, xr: u32, lane: u32) -> f32 {
    var s = 0.0;
    let base = n * p.k;
    for (var kk = lane; kk < p.k; kk += LANES) {
        let e = base + kk;
        s += unpack2x16float(w[e / 2u])[e % 2u] * x[xr + kk];
    }
    return s;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % LANES;
    let slot = li / LANES;
    let n = wid.x * ROWS + slot;
    let r = wid.y;
    var s = 0.0;
    if (n < p.n) {
        s = row_dot(n, p.x_offset + r * p.x_stride, lane);
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
        var v = part[li];
        if (p.has_bias != 0u) {
            v += bias[n];
        }
        y[p.y_offset + r * p.y_stride + n] = v;
    }
}
