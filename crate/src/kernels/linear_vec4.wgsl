// Linear layer, y = x · wᵀ + bias, without workgroup memory: each invocation computes a 4x4 block
// of outputs from vec4 loads of 4 rows of x and 4 rows of w (16 dot products per 8 loads). No
// barriers: CPU-backed adapters (lavapipe, SwiftShader) pay dearly for them, and GPUs serve the
// repeated loads from cache. Needs K, x_offset and x_stride multiples of 4 (linear.rs checks).
// Same parameters and addressing as linear.wgsl.

// struct Params: linear_params.wgsl (linear.rs puts it first).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_n = (p.n + 3u) / 4u;
    let tiles_m = (p.m + 3u) / 4u;
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= tiles_m * tiles_n) {
        return;
    }
    let r0 = (t / tiles_n) * 4u;
    let c0 = (t % tiles_n) * 4u;
    let k4 = p.k / 4u;
    // Rows and columns past the end read the last valid one; their sums are not written.
    let x0 = (p.x_offset + min(r0, p.m - 1u) * p.x_stride) / 4u;
    let x1 = (p.x_offset + min(r0 + 1u, p.m - 1u) * p.x_stride) / 4u;
    let x2 = (p.x_offset + min(r0 + 2u, p.m - 1u) * p.x_stride) / 4u;
    let x3 = (p.x_offset + min(r0 + 3u, p.m - 1u) * p.x_stride) / 4u;
    let w0 = min(c0, p.n - 1u) * k4;
    let w1 = min(c0 + 1u, p.n - 1u) * k4;
    let w2 = min(c0 + 2u, p.n - 1u) * k4;
    let w3 = min(c0 + 3u, p.n - 1u) * k4;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < k4; kk++) {
        let b = mat4x4<f32>(w[w0 + kk], w[w1 + kk], w[w2 + kk], w[w3 + kk]);
        // row · b: the 4 dot products of one x row with the 4 w rows
        a0 += x[x0 + kk] * b;
        a1 += x[x1 + kk] * b;
        a2 += x[x2 + kk] * b;
        a3 += x[x3 + kk] * b;
    }
    var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var i = 0u; i < 4u; i++) {
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
