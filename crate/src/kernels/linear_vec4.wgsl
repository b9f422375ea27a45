// Linear layer body, y = x · wᵀ + bias, without workgroup memory: each invocation computes RM rows
// x 4 columns of outputs from 4-value loads of x (the activation accessor's x4: x_vec4.wgsl, a
// storage buffer, or x_texels.wgsl, a texture) and of w (the weight accessor's w4). No barriers:
// CPU-backed adapters (lavapipe, SwiftShader) pay dearly for them, and GPUs serve the repeated
// loads from cache. Up to 16 rows per invocation: on the software adapters each load costs far
// more than a multiply-add, and 16 rows of x per 4 weight rows halve the loads of the 4-row
// blocking (q8, 64 rows, lavapipe and SwiftShader: 1.4–2x). Needs K, x_offset and x_stride
// multiples of 4 (linear.rs checks). Same parameters and addressing as linear_tiled.wgsl.

// p, bias, y, store_output: linear_params.wgsl; w, w4: the weight accessor; x_row, x4: the
// activation accessor (linear.rs puts them first).

override WG: u32 = 64u;
override RM: u32 = 4u; // rows per invocation (≤ 16)

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_n = (p.n + 3u) / 4u;
    let tiles_m = (p.m + RM - 1u) / RM;
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= tiles_m * tiles_n) {
        return;
    }
    let r0 = (t / tiles_n) * RM;
    let c0 = (t % tiles_n) * 4u;
    // Rows and columns past the end read the last valid one; their sums are not written.
    var xrow: array<u32, 16>;
    for (var i = 0u; i < RM; i++) {
        xrow[i] = x_row(min(r0 + i, p.m - 1u));
    }
    let n0 = min(c0, p.n - 1u);
    let n1 = min(c0 + 1u, p.n - 1u);
    let n2 = min(c0 + 2u, p.n - 1u);
    let n3 = min(c0 + 3u, p.n - 1u);
    var acc: array<vec4<f32>, 16>;
    for (var kk = 0u; kk < p.k / 4u; kk++) {
        let b = mat4x4<f32>(w4(n0, kk * 4u), w4(n1, kk * 4u), w4(n2, kk * 4u), w4(n3, kk * 4u));
        for (var i = 0u; i < RM; i++) {
            acc[i] += x4(xrow[i], kk) * b; // one x row · the 4 w rows
        }
    }
    for (var i = 0u; i < RM; i++) {
        let r = r0 + i;
        if (r >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + j;
            if (c < p.n) {
                store_output(r, c, acc[i][j]);
            }
        }
    }
}
