// Linear layer for a few rows (decode): y[r, n] = x[r, :] · w[n, :] + bias[n].
// Each workgroup computes ROWS outputs of one x row; the 256 / ROWS invocations of an output stride
// over K (coalesced reads of the weight row) and reduce their partial sums in workgroup memory.
// Same addressing as linear.wgsl.

// struct Params: linear_params.wgsl (linear.rs puts it first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const ROWS: u32 = 8u;    // outputs per workgroup
const LANES: u32 = 32u;  // invocations per output
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % LANES;
    let slot = li / LANES;
    let n = wid.x * ROWS + slot;
    let r = wid.y;
    var s = 0.0;
    if (n < p.n) {
        let xr = p.x_offset + r * p.x_stride;
        let wr = n * p.k;
        for (var k = lane; k < p.k; k += LANES) {
            s += x[xr + k] * w[wr + k];
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
        var v = part[li];
        if (p.has_bias != 0u) {
            v += bias[n];
        }
        y[p.y_offset + r * p.y_stride + n] = v;
    }
}
