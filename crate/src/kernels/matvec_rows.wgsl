// Linear layer body for a few rows (decode) without workgroup barriers or branches in its loop, for
// software adapters (lavapipe, SwiftShader), which run a workgroup's invocations as SIMD lanes of
// one CPU thread. There every load whose address differs between lanes is a loop over the lanes, a
// load all lanes share costs a bounds check and a broadcast, and both sides of every `if` run under
// a mask. So: each invocation computes four outputs y[r, n] = x[r, :] · w[n, :] + bias[n] (rows n0,
// n0 + WG, n0 + 2 WG, n0 + 3 WG: neighbouring lanes read neighbouring rows), walking them a block of
// 32 values at a time; the block's 32 x values are loaded once for the four rows (x_block), and the
// accessor's block_dot reads the weights as wide as it can (weights_{values,q8,q4}_blocks.wgsl: two
// or one 16-byte loads of codes and one scale per block for q8 and q4). Full blocks have no bounds
// checks; the values past the last full block are summed one by one (tail_dot, through wval).
// Same parameters and addressing as linear_tiled.wgsl.

// p, bias, y, store_output: linear_params.wgsl; w, wval, block_dot: the accessor (linear.rs puts it first).

@group(0) @binding(1) var<storage, read> x: array<f32>;

override WG: u32 = 64u; // invocations per workgroup (4 WG outputs)

fn xin(i: u32) -> f32 {
    return x[i];
}

// Values k..k+31 of the x row at xr (k + 32 ≤ p.k).
fn x_block(xr: u32, k: u32) -> array<vec4<f32>, 8> {
    let i = xr + k;
    return array<vec4<f32>, 8>(
        vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]), vec4<f32>(x[i + 4u], x[i + 5u], x[i + 6u], x[i + 7u]),
        vec4<f32>(x[i + 8u], x[i + 9u], x[i + 10u], x[i + 11u]), vec4<f32>(x[i + 12u], x[i + 13u], x[i + 14u], x[i + 15u]),
        vec4<f32>(x[i + 16u], x[i + 17u], x[i + 18u], x[i + 19u]), vec4<f32>(x[i + 20u], x[i + 21u], x[i + 22u], x[i + 23u]),
        vec4<f32>(x[i + 24u], x[i + 25u], x[i + 26u], x[i + 27u]), vec4<f32>(x[i + 28u], x[i + 29u], x[i + 30u], x[i + 31u]));
}

// Σ of a block's 32 x values, once per block for its four rows (the block formats fold their
// code offsets into it: weights_{q8,q4}_blocks.wgsl).
fn block_sum(xs: array<vec4<f32>, 8>) -> f32 {
    return dot(((xs[0] + xs[1]) + (xs[2] + xs[3])) + ((xs[4] + xs[5]) + (xs[6] + xs[7])), vec4<f32>(1.0));
}

// Σ w[n, t] x[xr + t] for t in k..p.k.
fn tail_dot(n: u32, k: u32, xr: u32) -> f32 {
    var s = 0.0;
    for (var t = k; t < p.k; t++) {
        s += wval(n, t) * x[xr + t];
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.y;
    let n0 = wid.x * WG * 4u + lid.x;
    let ns = vec4<u32>(n0, n0 + WG, n0 + 2u * WG, n0 + 3u * WG);
    // rows past the last are computed as the last one and not stored: no branch in the loop
    let rows = min(ns, vec4<u32>(p.n - 1u));
    let xr = p.x_offset + r * p.x_stride;
    var acc = vec4<f32>(0.0);
    let full = p.k / 32u;
    for (var b = 0u; b < full; b++) {
        let xs = x_block(xr, b * 32u);
        let xsum = block_sum(xs); // once for the four rows
        acc += vec4<f32>(block_dot(rows.x, b, xs, xsum), block_dot(rows.y, b, xs, xsum), block_dot(rows.z, b, xs, xsum), block_dot(rows.w, b, xs, xsum));
    }
    for (var j = 0u; j < 4u; j++) {
        let n = ns[j];
        if (n < p.n) {
            store_output(r, n, acc[j] + tail_dot(n, full * 32u, xr));
        }
    }
}
