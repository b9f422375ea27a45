// Strided copy of a [batch, rows, cols] block: dst[dst_offset + b*dst_batch + r*dst_row + c] =
// src[src_offset + b*src_batch + r*src_row + c]. Concatenation, crops, KV-cache writes and sequence
// assembly are all this kernel. The destination's element type comes from the accessor prepended
// to it (store_f32.wgsl, or store_f16.wgsl for the f16 KV cache).

struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    _pad: u32,
    src_offset: u32,
    src_row: u32,
    src_batch: u32,
    _pad1: u32,
    dst_offset: u32,
    dst_row: u32,
    dst_batch: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let per_batch = p.rows * p.cols;
    if (i >= p.batch * per_batch) {
        return;
    }
    let b = i / per_batch;
    let r = (i % per_batch) / p.cols;
    let c = i % p.cols;
    store(p.dst_offset + b * p.dst_batch + r * p.dst_row + c, src[p.src_offset + b * p.src_batch + r * p.src_row + c]);
}
