// Linear layer with a q8 weight, dequantized while it is loaded into the tiles (never a
// dequantized copy of the matrix): y = x · wᵀ + bias.
// q8: signed byte codes [n, kp] then binary16 scales [n, kp / 32] (docs/format.md).
// x: [M, K] rows at x_offset + r * x_stride; w: [N, K] contiguous (torch Linear layout);
// y: [M, N] written at y_offset + r * y_stride + n (so it can fill a column block of a wider tensor).
// Each 16x16 workgroup computes a 64x64 output tile, 4x4 outputs per invocation, K in steps of 16.

// struct Params: linear_params.wgsl (qlinear.rs puts it first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> xs: array<f32, 1024>; // [BK][BM]
var<workgroup> ws: array<f32, 1024>; // [BK][BN]

fn scale(n: u32, b: u32) -> f32 {
    let s = n * (p.kp / 32u) + b;
    return unpack2x16float(w[p.scales + s / 2u])[s % 2u];
}

fn wval(n: u32, k: u32) -> f32 {
    let word = w[(n * p.kp + k) / 4u];
    return f32(extractBits(i32(word), (k % 4u) * 8u, 8u)) * scale(n, k / 32u);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * 256u;
            let r = e / BK;
            let kk = e % BK;
            let gk = k0 + kk;
            var xv = 0.0;
            if (row0 + r < p.m && gk < p.k) {
                xv = x[p.x_offset + (row0 + r) * p.x_stride + gk];
            }
            xs[kk * BM + r] = xv;
            var wv = 0.0;
            if (col0 + r < p.n && gk < p.k) {
                wv = wval(col0 + r, gk);
            }
            ws[kk * BN + r] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = xs[kk * BM + lid.y * 4u + i];
                b[i] = ws[kk * BN + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x * 4u + j;
            if (r < p.m && c < p.n) {
                var v = acc[i * 4u + j];
                if (p.has_bias != 0u) {
                    v += bias[c];
                }
                y[p.y_offset + r * p.y_stride + c] = v;
            }
        }
    }
}
