// Scaled dot-product attention for many queries (prefill, vision towers): one invocation per query
// row, QB query rows of one head per workgroup. Keys and values stream through workgroup memory in
// blocks of BK rows, stored transposed ([d][j]) so that one step of a loop reads four dimensions of
// sixteen keys as 4×4 matrices; each invocation keeps its query, its running max/sum and its output
// row in registers (online softmax), so there is no per-key barrier. Same addressing, grouped-query
// heads and causal rule as attention.wgsl; head_dim a multiple of 4, at most 128.
//
// Loop steps per invocation are ~(3·head_dim/4 + 2) per block of 16 keys: llvmpipe (lavapipe) ends
// every loop of an invocation once 65535 steps are spent in total (gallivm's loop limiter), so the
// loops step four dimensions at a time; attention.rs refuses a call past that budget on llvmpipe.

// struct Params, q, o: attention_params.wgsl (attention.rs puts it before this body).

const QB: u32 = 64u;      // query rows per workgroup (one per invocation)
const BK: u32 = 16u;      // key rows per block
const MAXD: u32 = 128u;   // largest head_dim
var<workgroup> kt: array<f32, 2048>; // [MAXD][BK]: key j's dimension d at d * BK + j
var<workgroup> vt: array<f32, 2048>; // [MAXD][BK]

/// Four consecutive keys' (or values') entries of one dimension, from index `i` of `kt` / `vt`.
fn k4(i: u32) -> vec4<f32> {
    return vec4<f32>(kt[i], kt[i + 1u], kt[i + 2u], kt[i + 3u]);
}

fn v4(i: u32) -> vec4<f32> {
    return vec4<f32>(vt[i], vt[i + 1u], vt[i + 2u], vt[i + 3u]);
}

/// Σ_j p_j · v[j][d] over the block's 16 keys.
fn pv(d: u32, p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>, p3: vec4<f32>) -> f32 {
    let b = d * BK;
    return dot(p0, v4(b)) + dot(p1, v4(b + 4u)) + dot(p2, v4(b + 8u)) + dot(p3, v4(b + 12u));
}

/// Keys j ≥ n of a block get no weight.
fn masked(s: vec4<f32>, j0: u32, n: u32) -> vec4<f32> {
    return select(s, vec4<f32>(-3.0e38), vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) >= vec4<u32>(n));
}

fn max4(s: vec4<f32>) -> f32 {
    return max(max(s.x, s.y), max(s.z, s.w));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let b = wid.z;
    let kvh = h / p.group;
    let i = wid.x * QB + lid;          // this invocation's query row
    let hd = p.head_dim;
    let hd4 = hd / 4u;
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
    var qv: array<vec4<f32>, 32>;
    var acc: array<vec4<f32>, 32>;
    if (valid) {
        let qb = p.q_offset + b * p.q_batch + i * p.q_stride + h * hd;
        for (var d4 = 0u; d4 < hd4; d4++) {
            let e = qb + 4u * d4;
            qv[d4] = vec4<f32>(q[e], q[e + 1u], q[e + 2u], q[e + 3u]) * p.scale;
            acc[d4] = vec4<f32>(0.0);
        }
    }
    var m = -3.0e38;
    var l = 0.0;
    let k_base = p.k_offset + b * p.k_batch + kvh * hd;
    let v_base = p.v_offset + b * p.v_batch + kvh * hd;
    for (var t0 = 0u; t0 < n_keys; t0 += BK) {
        let n = min(BK, n_keys - t0);
        // the block, transposed; rows past its end read as zeros (their weight is 0)
        for (var e = lid; e < BK * hd; e += 64u) {
            let j = e / hd;
            let d = e % hd;
            var kx = 0.0;
            var vx = 0.0;
            if (j < n) {
                kx = kload(k_base + (t0 + j) * p.k_stride + d);
                vx = vload(v_base + (t0 + j) * p.v_stride + d);
            }
            kt[d * BK + j] = kx;
            vt[d * BK + j] = vx;
        }
        workgroupBarrier();
        if (valid && t0 < my_keys) {
            let nj = min(n, my_keys - t0);
            // scores of keys 4c..4c+3 in s_c: four dimensions per step as 4×4 matrices
            var s0 = vec4<f32>(0.0);
            var s1 = vec4<f32>(0.0);
            var s2 = vec4<f32>(0.0);
            var s3 = vec4<f32>(0.0);
            for (var d4 = 0u; d4 < hd4; d4++) {
                let x = qv[d4];
                let r = 4u * d4 * BK; // rows d = 4·d4 … 4·d4 + 3 start at r, r + BK, r + 2BK, r + 3BK
                s0 += mat4x4<f32>(k4(r), k4(r + BK), k4(r + 2u * BK), k4(r + 3u * BK)) * x;
                s1 += mat4x4<f32>(k4(r + 4u), k4(r + BK + 4u), k4(r + 2u * BK + 4u), k4(r + 3u * BK + 4u)) * x;
                s2 += mat4x4<f32>(k4(r + 8u), k4(r + BK + 8u), k4(r + 2u * BK + 8u), k4(r + 3u * BK + 8u)) * x;
                s3 += mat4x4<f32>(k4(r + 12u), k4(r + BK + 12u), k4(r + 2u * BK + 12u), k4(r + 3u * BK + 12u)) * x;
            }
            s0 = masked(s0, 0u, nj);
            s1 = masked(s1, 4u, nj);
            s2 = masked(s2, 8u, nj);
            s3 = masked(s3, 12u, nj);
            let bm = max(m, max(max(max4(s0), max4(s1)), max(max4(s2), max4(s3))));
            let corr = exp(m - bm);
            let p0 = exp(s0 - bm);
            let p1 = exp(s1 - bm);
            let p2 = exp(s2 - bm);
            let p3 = exp(s3 - bm);
            l = l * corr + dot(p0 + p1 + p2 + p3, vec4<f32>(1.0));
            for (var d4 = 0u; d4 < hd4; d4++) {
                let d = 4u * d4;
                acc[d4] = acc[d4] * corr + vec4<f32>(pv(d, p0, p1, p2, p3), pv(d + 1u, p0, p1, p2, p3), pv(d + 2u, p0, p1, p2, p3), pv(d + 3u, p0, p1, p2, p3));
            }
            m = bm;
        }
        workgroupBarrier();
    }
    if (valid) {
        let ob = p.o_offset + b * p.o_batch + i * p.o_stride + h * hd;
        for (var d4 = 0u; d4 < hd4; d4++) {
            let a = acc[d4] / l;
            let e = ob + 4u * d4;
            o[e] = a.x;
            o[e + 1u] = a.y;
            o[e + 2u] = a.z;
            o[e + 3u] = a.w;
        }
    }
}
