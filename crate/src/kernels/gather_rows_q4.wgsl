// Row gather from a q4 table (embedding lookup of a quantized tok_embeddings): dst[dst_offset + i*dst_row + c] =
// table[ids[i] - first, c] for the ids this table chunk [first, first + chunk_rows) holds.
// q4: 16 bytes per block of 32 (value j in the low nibble of byte j, value j + 16 in the high
// nibble, code u means (u - 8) · scale), then binary16 scales [n, kp / 32] (docs/format.md).

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
    let j = k % 32u;
    let byte = n * (p.kp / 2u) + (k / 32u) * 16u + j % 16u;
    let u = extractBits(w[byte / 4u], (byte % 4u) * 8u + select(0u, 4u, j >= 16u), 4u);
    return (f32(u) - 8.0) * scale(n, k / 32u);
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
