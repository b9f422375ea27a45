// Rotary position embedding, Meta layout: adjacent pairs (2i, 2i+1) of each head vector are a complex
// number multiplied by (cos θ, sin θ), θ = pos * freq_i. In place on a column block of x.
// cos/sin come from a table [positions, head_dim / 2] computed on the host in float32 like upstream.

struct Params {
    rows: u32,      // tokens
    heads: u32,     // heads in the block
    head_dim: u32,
    pos0: u32,      // position of row 0
    offset: u32,    // first element of the block in x
    stride: u32,    // elements between rows of x
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let half_dim = p.head_dim / 2u;
    let per_row = p.heads * half_dim;
    if (i >= p.rows * per_row) {
        return;
    }
    let r = i / per_row;
    let h = (i % per_row) / half_dim;
    let j = i % half_dim;
    let t = (p.pos0 + r) * half_dim + j;
    let c = cos_t[t];
    let s = sin_t[t];
    let at = p.offset + r * p.stride + h * p.head_dim + 2u * j;
    let a = x[at];
    let b = x[at + 1u];
    x[at] = a * c - b * s;
    x[at + 1u] = a * s + b * c;
}
