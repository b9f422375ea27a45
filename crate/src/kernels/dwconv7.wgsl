// Depthwise 7x7 convolution, padding 3, stride 1, with bias, on a channels-last map [H, W, C]
// (ConvNeXt conv_dw). weight is torch's [C, 1, 7, 7].

struct Params {
    h: u32,
    w: u32,
    c: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;      // [H, W, C]
@group(0) @binding(2) var<storage, read> weight: array<f32>; // [C, 49]
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // [C]
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // [H, W, C]

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.h * p.w * p.c) {
        return;
    }
    let ch = i % p.c;
    let ox = (i / p.c) % p.w;
    let oy = i / (p.c * p.w);
    var s = 0.0;
    for (var ky = 0u; ky < 7u; ky++) {
        let iy = i32(oy) + i32(ky) - 3;
        if (iy < 0 || iy >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < 7u; kx++) {
            let ix = i32(ox) + i32(kx) - 3;
            if (ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            s += x[(u32(iy) * p.w + u32(ix)) * p.c + ch] * weight[ch * 49u + ky * 7u + kx];
        }
    }
    y[i] = s + bias[ch];
}
