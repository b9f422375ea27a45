// Parameters shared by the linear kernels (linear, linear_small, matvec, linear_vec4); linear.rs
// prepends this file to each of them.

struct Params {
    m: u32,         // rows of x and y
    n: u32,         // output features (rows of w)
    k: u32,         // input features
    has_bias: u32,  // 1: add bias[n]
    x_offset: u32,  // first element of x
    x_stride: u32,  // elements between rows of x
    y_offset: u32,  // first element of y
    y_stride: u32,  // elements between rows of y
}
