// Parameters, bias and output shared by every linear kernel (each body binds x at 1, each weight
// accessor w at 2): linear.rs puts this file before every body. A body ends each output through
// store_output.

struct Params {
    m: u32,         // rows of x and y
    n: u32,         // output features (rows of w)
    k: u32,         // input features
    has_bias: u32,  // 1: add bias[n]
    x_offset: u32,  // first element of x
    x_stride: u32,  // elements between rows of x
    y_offset: u32,  // first element of y
    y_stride: u32,  // elements between rows of y
    kp: u32,        // k padded to whole blocks of 32 (block formats)
    scales: u32,    // first 32-bit word of the scales region (block formats)
    add_to_y: u32,  // 1: add what y held (a residual)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// y[r, n] = s (+ bias[n]) (+ what y[r, n] held), in that order.
fn store_output(r: u32, n: u32, s: f32) {
    let i = p.y_offset + r * p.y_stride + n;
    var v = s;
    if (p.has_bias != 0u) {
        v += bias[n];
    }
    if (p.add_to_y != 0u) {
        v += y[i];
    }
    y[i] = v;
}
