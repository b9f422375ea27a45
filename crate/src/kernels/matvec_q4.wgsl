// Linear layer for a few rows (decode) with a q4 weight read directly in its packed form:
// y[r, n] = x[r, :] · w[n, :] + bias[n]. Each workgroup computes ROWS outputs of one x row; the
// 256 / ROWS invocations of an output stride over the row's 32-bit words and reduce in workgroup memory.
// q4: 16 bytes per block of 32 (value j in the low nibble of byte j, value j + 16 in the high
// nibble, code u means (u - 8) · scale), then binary16 scales [n, kp / 32] (docs/format.md).

// struct Params: linear_params.wgsl (qlinear.rs puts it first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const ROWS: u32 = 8u;    // outputs per workgroup
const LANES: u32 = 32u;  // invocations per output
var<workgroup> part: array<f32, 256>;

fn scale(n: u32, b: u32) -> f32 {
    let s = n * (p.kp / 32u) + b;
    return unpack2x16float(w[p.scales + s / 2u])[s % 2u];
}

fn row_dot(n: u32, xr: u32, lane: u32) -> f32 {
    var s = 0.0;
    let words = p.kp / 8u;
    for (var wi = lane; wi < words; wi += LANES) {
        let b = wi / 4u;
        let k0 = b * 32u + (wi % 4u) * 4u; // values k0..k0+3 (low nibbles) and k0+16.. (high)
        if (k0 >= p.k) {
            break;
        }
        let word = w[n * words + wi];
        var dot = 0.0;
        for (var t = 0u; t < 4u; t++) {
            if (k0 + t < p.k) {
                dot += (f32(extractBits(word, t * 8u, 4u)) - 8.0) * x[xr + k0 + t];
            }
            if (k0 + 16u + t < p.k) {
                dot += (f32(extractBits(word, t * 8u + 4u, 4u)) - 8.0) * x[xr + k0 + 16u + t];
            }
        }
        s += dot * scale(n, b);
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
