// Parameters and bindings shared by layer_norm.wgsl and layer_norm_rows.wgsl; layer_norm.rs
// prepends this file to each.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;      // [rows, cols]
@group(0) @binding(2) var<storage, read> weight: array<f32>; // [cols]
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // [cols]
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // [rows, cols]
