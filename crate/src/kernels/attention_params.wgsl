// The parameters and bindings of both attention bodies (attention.wgsl, attention_tiled.wgsl);
// attention.rs puts this file after the key/value accessor and before the body.

struct Params {
    q_len: u32,
    kv_len: u32,
    group: u32,     // query heads per key/value head
    head_dim: u32,
    causal: u32,
    q_pos0: u32,
    scale: f32,
    splits: u32,    // attention.wgsl: workgroups per query row and head, each over its share of the keys
    q_offset: u32,
    q_stride: u32,
    q_batch: u32,
    _pad1: u32,
    k_offset: u32,
    k_stride: u32,
    k_batch: u32,
    _pad2: u32,
    v_offset: u32,
    v_stride: u32,
    v_batch: u32,
    _pad3: u32,
    o_offset: u32,
    o_stride: u32,
    o_batch: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
// k, v (bindings 2, 3) and kload, vload: the key/value accessor (kv_f32.wgsl or kv_f16.wgsl,
// which attention.rs puts first).
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

