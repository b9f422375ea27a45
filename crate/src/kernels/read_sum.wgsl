// The bench's read-bandwidth probe (`sphinx bench --roofline`): invocation t of T sums, as u32
// wrapping adds, the 16-byte words t, t + T, t + 2T, … of x (neighbouring invocations read
// neighbouring words) and writes the four lanes' sum to out[t], so that every byte is read once
// and nothing but T words is written.

struct Params {
    words: u32,    // 16-byte words of x
    threads: u32,  // T: invocations in the grid
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.threads) {
        return;
    }
    var acc = vec4<u32>(0u);
    for (var i = t; i < p.words; i = i + p.threads) {
        acc = acc + x[i];
    }
    out[t] = acc.x + acc.y + acc.z + acc.w;
}
