// Key/value accessor of the attention kernels: f32 keys and values (bindings 2 and 3).

@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;

fn kload(i: u32) -> f32 {
    return k[i];
}

fn vload(i: u32) -> f32 {
    return v[i];
}
