enable f16;
// Destination accessor of copy2d.wgsl: f16 elements (the f16 KV cache; `enable f16`), rounded to
// nearest even like the CPU twin's conversion.

@group(0) @binding(2) var<storage, read_write> dst: array<f16>;

fn store(i: u32, value: f32) {
    dst[i] = f16(value);
}
