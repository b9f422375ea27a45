// Row gather (embedding lookup): dst[dst_offset + i*dst_row + c] = table[(ids[i] - first) * cols + c]
// for the ids that fall in this table chunk [first, first + chunk_rows); other rows are left as they are
// (a table larger than one storage binding is split into chunks, one dispatch each).

struct Params {
    n: u32,          // ids
    cols: u32,       // row length
    first: u32,      // first id held by this table chunk
    chunk_rows: u32, // rows in this chunk
    dst_offset: u32,
    dst_row: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

override WG: u32 = 256;

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
    dst[p.dst_offset + r * p.dst_row + c] = table[(id - p.first) * p.cols + c];
}
