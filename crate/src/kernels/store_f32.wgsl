// Destination accessor of copy2d.wgsl: f32 elements (binding 2).

@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn store(i: u32, value: f32) {
    dst[i] = value;
}
