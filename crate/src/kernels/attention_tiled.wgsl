// Scaled dot-product attention for many queries (prefill, vision towers): one invocation per query
// row, QB query rows of one head per workgroup. Keys and values stream through workgroup memory in
// blocks of BK rows; each invocation keeps its query, its running max/sum and its output row in
// registers (online softmax), so there is no per-key barrier. Same addressing, grouped-query heads
// and causal rule as attention.wgsl; head_dim ≤ 128.

struct Params {
    q_len: u32,
    kv_len: u32,
    group: u32,     // query heads per key/value head
    head_dim: u32,
    causal: u32,
    q_pos0: u32,
    scale: f32,
    _pad0: u32,
    q_offset: u32,
    q_stride: u32,
    q_batch: u32,
    _pad1: u32,
    k_offset: u32,
    k_stride: u32,
    k_batch: u32,
    _pad2: u32,
    v_offset: u32,
    v_stride: u32,
    v_batch: u32,
    _pad3: u32,
    o_offset: u32,
    o_stride: u32,
    o_batch: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
// k, v (bindings 2, 3) and kload, vload: the key/value accessor (kv_f32.wgsl or kv_f16.wgsl,
// which attention.rs puts first).
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

const QB: u32 = 64u;      // query rows per workgroup (one per invocation)
const BK: u32 = 16u;      // key rows per block
const MAXD: u32 = 128u;   // largest head_dim
var<workgroup> ks: array<f32, 2048>; // [BK][MAXD]
var<workgroup> vs: array<f32, 2048>; // [BK][MAXD]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let b = wid.z;
    let kvh = h / p.group;
    let i = wid.x * QB + lid;          // this invocation's query row
    let hd = p.head_dim;
    let valid = i < p.q_len;
    // keys this workgroup needs at most (uniform): up to the last query's position
    let last_q = min(p.q_len, wid.x * QB + QB) - 1u;
    var n_keys = p.kv_len;
    if (p.causal != 0u) {
        n_keys = min(p.kv_len, p.q_pos0 + last_q + 1u);
    }
    var my_keys = n_keys;
    if (p.causal != 0u) {
        my_keys = min(n_keys, p.q_pos0 + i + 1u);
    }
    var qv: array<f32, 128>;
    var acc: array<f32, 128>;
    if (valid) {
        let qb = p.q_offset + b * p.q_batch + i * p.q_stride + h * hd;
        for (var d = 0u; d < hd; d++) {
            qv[d] = q[qb + d] * p.scale;
            acc[d] = 0.0;
        }
    }
    var m = -3.0e38;
    var l = 0.0;
    let k_base = p.k_offset + b * p.k_batch + kvh * hd;
    let v_base = p.v_offset + b * p.v_batch + kvh * hd;
    for (var t0 = 0u; t0 < n_keys; t0 += BK) {
        let n = min(BK, n_keys - t0);
        for (var e = lid; e < n * hd; e += 64u) {
            let j = e / hd;
            let d = e % hd;
            ks[j * MAXD + d] = kload(k_base + (t0 + j) * p.k_stride + d);
            vs[j * MAXD + d] = vload(v_base + (t0 + j) * p.v_stride + d);
        }
        workgroupBarrier();
        if (valid && t0 < my_keys) {
            let nj = min(n, my_keys - t0);
            var s: array<f32, 16>;
            var bm = m;
            for (var j = 0u; j < nj; j++) {
                var dot = 0.0;
                for (var d = 0u; d < hd; d++) {
                    dot += qv[d] * ks[j * MAXD + d];
                }
                s[j] = dot;
                bm = max(bm, dot);
            }
            let corr = exp(m - bm);
            l *= corr;
            for (var d = 0u; d < hd; d++) {
                acc[d] *= corr;
            }
            for (var j = 0u; j < nj; j++) {
                let pj = exp(s[j] - bm);
                l += pj;
                for (var d = 0u; d < hd; d++) {
                    acc[d] += pj * vs[j * MAXD + d];
                }
            }
            m = bm;
        }
        workgroupBarrier();
    }
    if (valid) {
        let ob = p.o_offset + b * p.o_batch + i * p.o_stride + h * hd;
        for (var d = 0u; d < hd; d++) {
            o[ob + d] = acc[d] / l;
        }
    }
}
