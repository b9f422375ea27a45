// Scaled dot-product attention for one (query row, head, batch) per workgroup:
// o = softmax(q kᵀ * scale [+ causal mask]) v, with an online (running max) softmax over blocks of WG
// keys: each invocation scores one key of the block, then every invocation accumulates the block into
// the output dimensions it owns (d = lid, lid + WG, ... : head_dim ≤ 4 * WG).
// Grouped-query attention: query head h reads key/value head h / group.
// Causal: query row i sits at position q_pos0 + i and sees keys 0 ..= q_pos0 + i.
// q, k, v, o are addressed as offset + b*batch + row*stride + head*head_dim + d, so they can be column
// blocks of a fused qkv tensor or of the KV cache.
// Split (p.splits > 1, decode over a long cache on GPUs with more cores than query heads): the
// workgroups x = i * splits + s each take the s-th share of the row's keys and write their running
// max, sum and unnormalised output to `part` (one record of head_dim + 2 values per (b, i, h, s));
// attention_combine.wgsl merges the records into o.

// struct Params, q, o: attention_params.wgsl (attention.rs puts it before this body).

override WG: u32 = 64; // keys per block, at most 64
var<workgroup> qs: array<f32, 256>;
var<workgroup> scores: array<f32, 64>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x / p.splits;
    let split = wid.x % p.splits;
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
    let share = (n_keys + p.splits - 1u) / p.splits;
    let first = min(split * share, n_keys);
    let end = min(first + share, n_keys);
    let k_base = p.k_offset + b * p.k_batch + kvh * p.head_dim;
    let v_base = p.v_offset + b * p.v_batch + kvh * p.head_dim;
    var m = NEG;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = first; t0 < end; t0 += WG) {
        let t = t0 + lid;
        var s = NEG;
        if (t < end) {
            var dot = 0.0;
            let kr = k_base + t * p.k_stride;
            for (var d = 0u; d < p.head_dim; d++) {
                dot += qs[d] * kload(kr + d);
            }
            s = dot * p.scale;
        }
        scores[lid] = s;
        workgroupBarrier();
        let n = min(WG, end - t0);
        var bm = m;
        for (var j = 0u; j < n; j++) {
            bm = max(bm, scores[j]);
        }
        workgroupBarrier();
        // each invocation turns its own score into an (unnormalised) probability
        var pr = 0.0;
        if (t < end) {
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
    if (p.splits > 1u) {
        let r = (((b * p.q_len + i) * nwg.y + h) * p.splits + split) * (p.head_dim + 2u);
        if (lid == 0u) {
            part[r] = m;
            part[r + 1u] = l;
        }
        for (var e = 0u; e < 4u; e++) {
            let d = lid + e * WG;
            if (d < p.head_dim) {
                part[r + 2u + d] = acc[e];
            }
        }
        return;
    }
    let o_base = p.o_offset + b * p.o_batch + i * p.o_stride + h * p.head_dim;
    for (var e = 0u; e < 4u; e++) {
        let d = lid + e * WG;
        if (d < p.head_dim) {
            o[o_base + d] = acc[e] / l;
        }
    }
}
