// The second pass of a split decode attention (attention.wgsl with p.splits > 1): for each
// (query row i, head h, batch b) — one workgroup — merges the splits' records (running max m_s,
// sum l_s, unnormalised output a_s; head_dim + 2 values each) into
// o = Σ a_s e^(m_s − M) / Σ l_s e^(m_s − M), M = max m_s. A split without keys holds m = −3e38 and
// weighs nothing.

struct Params {
    q_len: u32,
    head_dim: u32,
    splits: u32,
    _pad0: u32,
    o_offset: u32,
    o_stride: u32,
    o_batch: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let h = wid.y;
    let b = wid.z;
    let width = p.head_dim + 2u;
    let first = ((b * p.q_len + i) * nwg.y + h) * p.splits;
    var mx = -3.0e38;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, part[(first + s) * width]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let r = (first + s) * width;
        l += part[r + 1u] * exp(part[r] - mx);
    }
    let o_base = p.o_offset + b * p.o_batch + i * p.o_stride + h * p.head_dim;
    for (var d = lid; d < p.head_dim; d += WG) {
        var a = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            let r = (first + s) * width;
            a += part[r + 2u + d] * exp(part[r] - mx);
        }
        o[o_base + d] = a / l;
    }
}
