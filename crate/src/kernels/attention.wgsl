// Scaled dot-product attention for one (query row, head, batch) per workgroup:
// o = softmax(q kᵀ * scale [+ causal mask]) v, with an online (running max) softmax over blocks of WG
// keys: each invocation scores one key of the block, then every invocation accumulates the block into
// the output dimensions it owns (d = lid, lid + WG, ... : head_dim ≤ 4 * WG).
// Grouped-query attention: query head h reads key/value head h / group.
// Causal: query row i sits at position q_pos0 + i and sees keys 0 ..= q_pos0 + i.
// q, k, v, o are addressed as offset + b*batch + row*stride + head*head_dim + d, so they can be column
// blocks of a fused qkv tensor or of the KV cache.

// struct Params, q, o: attention_params.wgsl (attention.rs puts it before this body).

override WG: u32 = 64; // keys per block, at most 64
var<workgroup> qs: array<f32, 256>;
var<workgroup> scores: array<f32, 64>;

const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let h = wid.y;
    let b = wid.z;
    let kvh = h / p.group;
    let q_base = p.q_offset + b * p.q_batch + i * p.q_stride + h * p.head_dim;
    for (var d = lid; d < p.head_dim; d += WG) {
        qs[d] = q[q_base + d];
    }
    workgroupBarrier();
    var n_keys = p.kv_len;
    if (p.causal != 0u) {
        n_keys = min(p.kv_len, p.q_pos0 + i + 1u);
    }
    let k_base = p.k_offset + b * p.k_batch + kvh * p.head_dim;
    let v_base = p.v_offset + b * p.v_batch + kvh * p.head_dim;
    var m = NEG;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = 0u; t0 < n_keys; t0 += WG) {
        let t = t0 + lid;
        var s = NEG;
        if (t < n_keys) {
            var dot = 0.0;
            let kr = k_base + t * p.k_stride;
            for (var d = 0u; d < p.head_dim; d++) {
                dot += qs[d] * kload(kr + d);
            }
            s = dot * p.scale;
        }
        scores[lid] = s;
        workgroupBarrier();
        let n = min(WG, n_keys - t0);
        var bm = m;
        for (var j = 0u; j < n; j++) {
            bm = max(bm, scores[j]);
        }
        workgroupBarrier();
        // each invocation turns its own score into an (unnormalised) probability
        var pr = 0.0;
        if (t < n_keys) {
            pr = exp(s - bm);
        }
        scores[lid] = pr;
        workgroupBarrier();
        let corr = exp(m - bm);
        l *= corr;
        for (var e = 0u; e < 4u; e++) {
            acc[e] *= corr;
        }
        for (var j = 0u; j < n; j++) {
            let pj = scores[j];
            l += pj;
            let vr = v_base + (t0 + j) * p.v_stride;
            for (var e = 0u; e < 4u; e++) {
                let d = lid + e * WG;
                if (d < p.head_dim) {
                    acc[e] += pj * vload(vr + d);
                }
            }
        }
        m = bm;
        workgroupBarrier();
    }
    let o_base = p.o_offset + b * p.o_batch + i * p.o_stride + h * p.head_dim;
    for (var e = 0u; e < 4u; e++) {
        let d = lid + e * WG;
        if (d < p.head_dim) {
            o[o_base + d] = acc[e] / l;
        }
    }
}
