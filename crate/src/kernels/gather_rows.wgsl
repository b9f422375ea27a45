// Row gather (embedding lookup) for every table format: dst[dst_offset + i*dst_row + c] =
// table[ids[i] - first, c], read through the weight accessor prepended to this body
// (weights_{f32,f16,q8,q4}.wgsl: its wval), for the ids that fall in this table chunk
// [first, first + chunk_rows); other rows are left as they are (a table larger than one storage
// binding is split into chunks, one dispatch each).

struct Params {
    n: u32,          // ids
    k: u32,          // row length (the accessors' name for it)
    first: u32,      // first id held by this table chunk
    chunk_rows: u32, // rows in this chunk
    dst_offset: u32,
    dst_row: u32,
    kp: u32,         // block formats: k padded to whole blocks of 32
    scales: u32,     // block formats: first 32-bit word of the scales region
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.k) {
        return;
    }
    let r = i / p.k;
    let c = i % p.k;
    let id = ids[r];
    if (id < p.first || id - p.first >= p.chunk_rows) {
        return;
    }
    dst[p.dst_offset + r * p.dst_row + c] = wval(id - p.first, c);
}
