// Row gather from a q8 table (embedding lookup of a quantized tok_embeddings): dst[dst_offset + i*dst_row + c] =
// table[ids[i] - first, c] for the ids this table chunk [first, first + chunk_rows) holds.
// q8: signed byte codes [n, kp] then binary16 scales [n, kp / 32] (docs/format.md).

struct Params {
    n: u32,          // ids
    cols: u32,       // row length k
    first: u32,      // first id held by this table chunk
    chunk_rows: u32, // rows in this chunk
    dst_offset: u32,
    dst_row: u32,
    kp: u32,         // cols padded to whole blocks of 32 (block formats)
    scales: u32,     // first 32-bit word of the scales region (block formats)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

override WG: u32 = 256;

fn scale(n: u32, b: u32) -> f32 {
    let s = n * (p.kp / 32u) + b;
    return unpack2x16float(w[p.scales + s / 2u])[s % 2u];
}

fn wval(n: u32, k: u32) -> f32 {
    let word = w[(n * p.kp + k) / 4u];
    return f32(extractBits(i32(word), (k % 4u) * 8u, 8u)) * scale(n, k / 32u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.cols) {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    let id = ids[r];
    if (id < p.first || id - p.first >= p.chunk_rows) {
        return;
    }
    dst[p.dst_offset + r * p.dst_row + c] = wval(id - p.first, c);
}
