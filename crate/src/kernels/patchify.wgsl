// im2col for a convolution whose stride equals its kernel (patch embeddings, ConvNeXt stem and
// downsampling): y[p, ci*k*k + ky*k + kx] = x[ci, oy*k + ky, ox*k + kx] for patch p = oy * (W/k) + ox.
// The columns follow torch's weight layout [out, C, k, k], so a Linear with that weight finishes the conv.
// x is channels-first [C, H, W] (an image) or channels-last [H, W, C] (a feature map), per `hwc`.

struct Params {
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    hwc: u32,     // 1: x is [H, W, C]
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // [(H/k)*(W/k), C*k*k]

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let kk = p.k * p.k;
    let cols = p.c * kk;
    let pw = p.w / p.k;
    let patches = (p.h / p.k) * pw;
    if (i >= patches * cols) {
        return;
    }
    let pi = i / cols;
    let j = i % cols;
    let ci = j / kk;
    let ky = (j % kk) / p.k;
    let kx = j % p.k;
    let iy = (pi / pw) * p.k + ky;
    let ix = (pi % pw) * p.k + kx;
    var src = (ci * p.h + iy) * p.w + ix;
    if (p.hwc != 0u) {
        src = (iy * p.w + ix) * p.c + ci;
    }
    y[i] = x[src];
}
