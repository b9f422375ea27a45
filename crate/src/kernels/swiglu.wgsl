// SwiGLU gate: y[r, j] = silu(x[r, j]) * x[r, hidden + j], x = [rows, 2 * hidden] (the fused
// w1|w3 output of LLaMA, or DINOv2's w12), y = [rows, hidden]. silu(a) = a / (1 + exp(-a)).

struct Params {
    rows: u32,
    hidden: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.rows * p.hidden) {
        return;
    }
    let r = i / p.hidden;
    let j = i % p.hidden;
    let a = x[r * 2u * p.hidden + j];
    let b = x[r * 2u * p.hidden + p.hidden + j];
    y[i] = a / (1.0 + exp(-a)) * b;
}
