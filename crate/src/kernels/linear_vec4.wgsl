// Linear layer body, y = x · wᵀ + bias, without workgroup memory: each invocation computes RM rows
// x 4 columns of outputs from vec4 loads of x and 4-value loads of w (the accessor's w4). No
// barriers: CPU-backed adapters (lavapipe, SwiftShader) pay dearly for them, and GPUs serve the
// repeated loads from cache. Needs K, x_offset and x_stride multiples of 4 (linear.rs checks).
// Same parameters and addressing as linear_tiled.wgsl.

// struct Params: linear_params.wgsl; w, w4: the accessor (linear.rs puts both first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;
override RM: u32 = 4u; // rows per invocation (≤ 4)

fn xin(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}

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
    var xrow: array<u32, 4>;
    for (var i = 0u; i < RM; i++) {
        xrow[i] = (p.x_offset + min(r0 + i, p.m - 1u) * p.x_stride) / 4u;
    }
    let n0 = min(c0, p.n - 1u);
    let n1 = min(c0 + 1u, p.n - 1u);
    let n2 = min(c0 + 2u, p.n - 1u);
    let n3 = min(c0 + 3u, p.n - 1u);
    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k / 4u; kk++) {
        let b = mat4x4<f32>(w4(n0, kk * 4u), w4(n1, kk * 4u), w4(n2, kk * 4u), w4(n3, kk * 4u));
        for (var i = 0u; i < RM; i++) {
            acc[i] += x[xrow[i] + kk] * b; // one x row · the 4 w rows
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
                var v = acc[i][j];
                if (p.has_bias != 0u) {
                    v += bias[c];
                }
                y[p.y_offset + r * p.y_stride + c] = v;
            }
        }
    }
}
