// Column means over a block of rows: dst[dst_offset + c] = mean_r src[src_offset + r*src_row + c]
// (ConvNeXt's "gap as cls" token).

struct Params {
    rows: u32,
    cols: u32,
    src_offset: u32,
    src_row: u32,
    dst_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.cols) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        s += src[p.src_offset + r * p.src_row + c];
    }
    dst[p.dst_offset + c] = s / f32(p.rows);
}
