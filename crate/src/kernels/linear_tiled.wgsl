// Linear layer body, y = x · wᵀ + bias, tiled through workgroup memory: a WGX x WGY workgroup
// computes a BM x BN output tile (BM = WGY·TM, BN = WGX·TN), TM x TN outputs per invocation, K in
// steps of BK. Weights come through the accessor prepended to this body (weights_*.wgsl: wval), so
// one body serves f32, f16, q8 and q4 (dequantized while loaded into the tile). Override constants
// pick the variant (linear.rs VARIANTS).
// x: [M, K] rows at x_offset + r * x_stride; w: [N, K] (torch Linear layout);
// y: [M, N] written at y_offset + r * y_stride + n (so it can fill a column block of a wider tensor).

// p, bias, y, store_output: linear_params.wgsl; w, wval: the accessor (linear.rs puts both first).

@group(0) @binding(1) var<storage, read> x: array<f32>;

override WGX: u32 = 16u;
override WGY: u32 = 16u;
override TM: u32 = 4u; // rows per invocation (≤ 8)
override TN: u32 = 4u; // columns per invocation (≤ 8, TM·TN ≤ 32)
override BK: u32 = 16u;

var<workgroup> xs: array<f32, BK * WGY * TM>; // [BK][BM]
var<workgroup> ws: array<f32, BK * WGX * TN>; // [BK][BN]

fn xin(i: u32) -> f32 {
    return x[i];
}

fn load_tiles(row0: u32, col0: u32, k0: u32, li: u32) {
    let bm = WGY * TM;
    let bn = WGX * TN;
    let wg = WGX * WGY;
    for (var e = li; e < BK * bm; e += wg) {
        let r = e / BK;
        let kk = e % BK;
        var v = 0.0;
        if (row0 + r < p.m && k0 + kk < p.k) {
            v = x[p.x_offset + (row0 + r) * p.x_stride + k0 + kk];
        }
        xs[kk * bm + r] = v;
    }
    for (var e = li; e < BK * bn; e += wg) {
        let c = e / BK;
        let kk = e % BK;
        var v = 0.0;
        if (col0 + c < p.n && k0 + kk < p.k) {
            v = wval(col0 + c, k0 + kk);
        }
        ws[kk * bn + c] = v;
    }
}

@compute @workgroup_size(WGX, WGY)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let bm = WGY * TM;
    let bn = WGX * TN;
    let row0 = wid.y * bm;
    let col0 = wid.x * bn;
    var acc: array<f32, 32>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        load_tiles(row0, col0, k0, li);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 8>;
            var b: array<f32, 8>;
            for (var i = 0u; i < TM; i++) {
                a[i] = xs[kk * bm + lid.y * TM + i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = ws[kk * bn + lid.x * TN + j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let r = row0 + lid.y * TM + i;
        for (var j = 0u; j < TN; j++) {
            let c = col0 + lid.x * TN + j;
            if (r < p.m && c < p.n) {
                store_output(r, c, acc[i * TN + j]);
            }
        }
    }
}
