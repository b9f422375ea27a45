// The bench's texture-read probe (`sphinx bench --roofline`): invocation t of T sums, as u32
// wrapping adds, the `per` texels that follow texel t · per in row-major order (a span never
// crosses a row: `per` divides the width) and writes the four lanes' sum to out[t]. Texture
// fetches are the one read a CPU-based adapter (llvmpipe) gathers without a branch per lane, so
// this probe bounds what any of its shaders can read.

struct Params {
    width: u32,    // texels per row
    per: u32,      // texels per invocation
    threads: u32,  // T
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var x: texture_2d<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.threads) {
        return;
    }
    let first = t * p.per;
    let row = first / p.width;
    let col = first % p.width;
    var acc = vec4<u32>(0u);
    for (var j = 0u; j < p.per; j = j + 1u) {
        acc = acc + textureLoad(x, vec2<u32>(col + j, row), 0);
    }
    out[t] = acc.x + acc.y + acc.z + acc.w;
}
