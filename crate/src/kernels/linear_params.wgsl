// Parameters shared by every linear kernel: f32 (linear, linear_small, matvec, linear_vec4) and the
// packed formats (linear_/matvec_ f16, q8, q4); linear.rs and qlinear.rs prepend this file to each.

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
    _pad0: u32,
    _pad1: u32,
}
