enable f16;
// Key/value accessor of the attention kernels: an f16 KV cache (`enable f16`, adapters with
// shader-f16), widened to f32 for the arithmetic.

@group(0) @binding(2) var<storage, read> k: array<f16>;
@group(0) @binding(3) var<storage, read> v: array<f16>;

fn kload(i: u32) -> f32 {
    return f32(k[i]);
}

fn vload(i: u32) -> f32 {
    return f32(v[i]);
}
