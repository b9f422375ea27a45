//! Hostile configs, command-line numbers and images against the real binary (issue 10, rows P1–P6,
//! S7 and the Q rows on configs, flags and images): each ends in exit 1 with a message naming the
//! field, flag, tensor or limit — or, for images, a success in bounded memory — never a panic, an
//! abort or a hang, and always under 1 GB of peak RSS. Every hostile file is made here.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use support::{fresh_dir, s, sphinx};

/// Peak resident memory every case must stay under.
const RSS_MIB: f64 = 1024.0;

/// A test's scratch folder, removed when the test passes (kept for a look when it fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Files of `src` in a fresh `name/leaf` folder: the json files copied (tests edit them), the rest
/// hard-linked (shards and checkpoints are never edited here).
fn clone_dir(src: &Path, name: &str, leaf: &str) -> (Scratch, PathBuf) {
    let root = fresh_dir(name);
    let dir = root.join(leaf);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let from = e.unwrap().path();
        let to = dir.join(from.file_name().unwrap());
        if from.extension().is_some_and(|x| x == "json") || std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    (Scratch(root), dir)
}

/// A tiny converted model (`demo-model`, made once per run) in a fresh folder.
fn demo(name: &str) -> (Scratch, PathBuf) {
    static BASE: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    let (_, base) = BASE.get_or_init(|| {
        let root = fresh_dir("demo-base");
        let dir = root.join("model");
        sphinx(&["demo-model", "--out", s(&dir)]).succeeded(RSS_MIB);
        (Scratch(root), dir)
    });
    clone_dir(base, name, "model")
}

/// The dev golden upstream checkpoint (pth + config/params/meta/vision json) in a fresh folder.
fn upstream(name: &str) -> (Scratch, PathBuf) {
    let src = sphinx::testing::golden_dir("sphinx-tiny-1k-dev");
    let root = fresh_dir(name);
    let dir = root.join("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "params.json", "meta.json", "vision.json", "consolidated.00-of-01.model.pth"] {
        let (from, to) = (src.join(f), dir.join(f));
        if f.ends_with(".json") || std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    (Scratch(root), dir)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Both LLM config files of an upstream folder (config.json wins when present).
fn edit_llm_args(dir: &Path, edit: impl Fn(&mut Value)) {
    edit_json(&dir.join("config.json"), &edit);
    edit_json(&dir.join("params.json"), &edit);
}

fn inspect_refused(dir: &Path, needle: &str) {
    sphinx(&["inspect", s(dir)]).refused(needle, RSS_MIB);
}

// ---- configs -----------------------------------------------------------------------------------

#[test]
fn p1_convnext_without_stages_is_refused_when_the_manifest_is_read() {
    let (_m, m) = demo("p1");
    edit_json(&m.join("manifest.json"), |v| v["model"]["vision"]["convnext"]["dims"] = json!([]));
    inspect_refused(&m, "convnext.dims [] and convnext.depths [1, 1, 2, 1]");
    sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi"]).refused("manifest.json", RSS_MIB);
}

#[test]
fn p2_dinov2_patch_size_zero_is_refused() {
    let (_d, d) = upstream("p2");
    edit_json(&d.join("vision.json"), |v| v["dinov2"]["patch_size"] = json!(0));
    inspect_refused(&d, "dinov2.patch_size 0: must be in 1..=224");
    let tok = sphinx::testing::shared_dir().join("golden/tokenizer-llama2/tokenizer.json");
    sphinx(&["run", "--model", s(&d), "--device", "cpu", "--prompt", "hi", "--tokenizer", s(&tok)]).refused("vision.json", RSS_MIB);
}

#[test]
fn p3_dinov2_num_heads_zero_is_refused() {
    let (_d, d) = upstream("p3");
    edit_json(&d.join("vision.json"), |v| v["dinov2"]["num_heads"] = json!(0));
    inspect_refused(&d, "dinov2.num_heads 0");
    let (_m, m) = demo("p3m");
    edit_json(&m.join("manifest.json"), |v| v["model"]["vision"]["dinov2"]["num_heads"] = json!(0));
    inspect_refused(&m, "dinov2.num_heads 0");
}

#[test]
fn p4_zero_dimensional_stem_weight_is_refused_naming_the_tensor() {
    let (_m, m) = demo("p4");
    edit_json(&m.join("manifest.json"), |v| {
        let t = v["tensors"].as_array_mut().unwrap().iter_mut().find(|t| t["name"] == "llma.openclip_convnext_xxl.stem.0.weight").unwrap();
        t["shape"] = json!([]);
        t["bytes"] = json!(4);
    });
    sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi"]).refused("llma.openclip_convnext_xxl.stem.0.weight", RSS_MIB);
}

#[test]
fn q_dinov2_heads_not_dividing_the_width_are_refused() {
    let (_d, d) = upstream("qheads");
    edit_json(&d.join("vision.json"), |v| v["dinov2"]["num_heads"] = json!(5));
    inspect_refused(&d, "dinov2.num_heads 5 does not divide dinov2.embed_dim 48");
    let (_m, m) = demo("qheadsm");
    edit_json(&m.join("manifest.json"), |v| v["model"]["vision"]["dinov2"]["num_heads"] = json!(5));
    sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi"]).refused("dinov2.num_heads 5 does not divide", RSS_MIB);
}

#[test]
fn q_negative_norm_eps_is_refused() {
    let (_d, d) = upstream("qeps");
    edit_llm_args(&d, |v| v["norm_eps"] = json!(-1.0));
    inspect_refused(&d, "llm.norm_eps -1: must be finite, > 0 and < 1");
    let (_m, m) = demo("qepsm");
    edit_json(&m.join("manifest.json"), |v| v["model"]["vision"]["convnext"]["norm_eps"] = json!(-1.0));
    inspect_refused(&m, "convnext.norm_eps -1");
}

#[test]
fn q_rope_theta_zero_is_refused() {
    let (_d, d) = upstream("qtheta");
    edit_llm_args(&d, |v| v["rope_theta"] = json!(0));
    inspect_refused(&d, "llm.rope_theta 0: must be finite and > 0");
    let (_m, m) = demo("qthetam");
    edit_json(&m.join("manifest.json"), |v| v["model"]["llm"]["rope_theta"] = json!(0.0));
    sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi"]).refused("llm.rope_theta 0", RSS_MIB);
}

#[test]
fn q_llm_heads_inconsistent_with_the_width_are_refused() {
    let (_d, d) = upstream("qllmheads");
    edit_llm_args(&d, |v| v["n_kv_heads"] = json!(3));
    inspect_refused(&d, "llm.n_kv_heads 3 does not divide llm.n_heads 4");
    let (_m, m) = demo("qllmheadsm");
    edit_json(&m.join("manifest.json"), |v| v["model"]["llm"]["head_dim"] = json!(15));
    inspect_refused(&m, "llm.head_dim 15");
}

#[test]
fn vision_json_of_the_wrong_type_is_refused_naming_the_file() {
    let (_d, d) = upstream("vjson");
    edit_json(&d.join("vision.json"), |v| v["convnext"]["depths"] = json!("four"));
    inspect_refused(&d, "vision.json");
}

// ---- command-line numbers ----------------------------------------------------------------------

#[test]
fn p6_trace_steps_beyond_any_context_are_refused() {
    let (_m, m) = demo("p6trace");
    let out = m.parent().unwrap().join("t.safetensors");
    let base = ["trace", "--model", s(&m), "--device", "cpu", "--prompt-ids", "1,2", "--out", s(&out)];
    sphinx(&[&base[..], &["--steps", "18446744073709551615"]].concat()).refused("--steps", RSS_MIB);
    sphinx(&[&base[..], &["--steps", "0"]].concat()).refused("--steps", RSS_MIB);
    // in range for the flag, past the context: the model says so
    sphinx(&[&base[..], &["--steps", "5000"]].concat()).refused("max_seq_len 4096", RSS_MIB);
}

#[test]
fn p6_bench_sizes_are_checked() {
    sphinx(&["bench", "--device", "cpu", "--heads", "0"]).refused("--heads", RSS_MIB);
    sphinx(&["bench", "--device", "cpu", "--kv-heads", "0"]).refused("--kv-heads", RSS_MIB);
    sphinx(&["bench", "--device", "cpu", "--dim", "0"]).refused("--dim", RSS_MIB);
    sphinx(&["bench", "--device", "cpu", "--reps", "0"]).refused("--reps", RSS_MIB);
    sphinx(&["bench", "--device", "cpu", "--vocab", "99999999999"]).refused("--vocab", RSS_MIB);
    sphinx(&["bench", "--device", "cpu", "--heads", "5"]).refused("--heads 5 does not divide --dim 2048", RSS_MIB);
    sphinx(&["bench", "--device", "cpu", "--kv-heads", "5"]).refused("--kv-heads 5 does not divide --heads 32", RSS_MIB);
}

#[test]
fn q_max_seq_len_is_bounded() {
    let (_m, m) = demo("qseq");
    for n in ["10000000000", "2305843009213693952", "0"] {
        sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi", "--max-seq-len", n]).refused("--max-seq-len", RSS_MIB);
    }
    sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi", "--max-tokens", "2", "--max-seq-len", "65536"]).succeeded(RSS_MIB);
}

#[test]
fn q_sampling_numbers_are_checked() {
    let (_m, m) = demo("qsample");
    let run = |flag: &str, v: &str| sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "hi", &format!("{flag}={v}")]);
    for v in ["NaN", "inf", "-0.5"] {
        run("--temperature", v).refused("--temperature", RSS_MIB);
    }
    for v in ["0", "1.5", "NaN", "-1"] {
        run("--top-p", v).refused("--top-p", RSS_MIB);
    }
    run("--max-tokens", "0").refused("--max-tokens", RSS_MIB);
}

#[test]
fn q_mix_beta_must_be_finite_and_within_0_1_unless_extrapolating() {
    let (_a, a) = demo("qbeta");
    let root = a.parent().unwrap().to_path_buf();
    for beta in ["NaN", "inf", "-inf"] {
        sphinx(&["mix", "--beta", beta, "--out", s(&root.join("o")), s(&a), s(&a)]).refused("--beta", RSS_MIB);
    }
    for beta in ["2", "-1"] {
        sphinx(&["mix", &format!("--beta={beta}"), "--out", s(&root.join("o")), s(&a), s(&a)]).refused("--beta", RSS_MIB).refused("--extrapolate", RSS_MIB);
    }
    assert!(!root.join("o").exists(), "a refused mix wrote nothing");
    let out = root.join("extrapolated");
    sphinx(&["mix", "--beta", "2", "--extrapolate", "--out", s(&out), s(&a), s(&a)]).succeeded(RSS_MIB);
    assert!(out.join("manifest.json").is_file());
}

#[test]
fn q_shard_size_is_in_range() {
    let (_d, d) = upstream("qshard");
    let out = d.parent().unwrap().join("out");
    for mb in ["1152921504606846976", "0", "5000"] {
        sphinx(&["convert", "--from", s(&d), "--out", s(&out), "--shard-mb", mb]).refused("--shard-mb", RSS_MIB);
    }
    let (_a, a) = demo("qshardmix");
    sphinx(&["mix", "--beta", "0.5", "--shard-mb", "1152921504606846976", "--out", s(&out), s(&a), s(&a)]).refused("--shard-mb", RSS_MIB);
}

// ---- images (S7, truncated JPEG) ---------------------------------------------------------------

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Deflate bits, least significant first; Huffman codes most significant first.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, n: u32) {
        self.acc |= value << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn code(&mut self, code: u64, n: u32) {
        self.put(code.reverse_bits() >> (64 - n), n);
    }
}

/// A zlib stream inflating to `len` zero bytes at ~1/1032 of that, the deflate maximum: one
/// dynamic-Huffman block where length 258 (code 285) and distance 1 have 1-bit codes, so each
/// 258-byte copy costs 2 bits (a zero literal first, zero literals for the remainder).
fn zlib_zeros(len: u64) -> Vec<u8> {
    let mut b = Bits { out: vec![0x78, 0x01], acc: 0, n: 0 };
    b.put(1, 1); // BFINAL
    b.put(2, 2); // dynamic Huffman
    b.put(286 - 257, 5); // HLIT: literal/length codes 0..=285
    b.put(0, 5); // HDIST: one distance code
    b.put(18 - 4, 4); // HCLEN: code-length code lengths up to symbol 1 in the permuted order
    // order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1: symbol 18 → 1 bit, 2 and 1 → 2 bits
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(len, 3);
    }
    // canonical code-length codes: 18 → 0, 1 → 10, 2 → 11
    let (one, two) = ((0b10, 2), (0b11, 2));
    let zeros = |b: &mut Bits, n: u64| {
        b.code(0, 1); // symbol 18: n (11..=138) zero lengths
        b.put(n - 11, 7);
    };
    b.code(two.0, two.1); // literal 0: length 2
    zeros(&mut b, 138); // literals 1..=255
    zeros(&mut b, 117);
    b.code(two.0, two.1); // 256 (end of block): length 2
    zeros(&mut b, 28); // 257..=284
    b.code(one.0, one.1); // 285 (length 258): length 1
    b.code(one.0, one.1); // distance code 0: length 1
    // canonical literal/length codes: 285 → 0, literal 0 → 10, end of block → 11; distance 0 → 0
    b.code(0b10, 2);
    for _ in 0..(len - 1) / 258 {
        b.code(0, 1);
        b.code(0, 1);
    }
    for _ in 0..(len - 1) % 258 {
        b.code(0b10, 2);
    }
    b.code(0b11, 2);
    if b.n > 0 {
        b.out.push(b.acc as u8);
    }
    let adler = (((len % 65521) as u32) << 16) | 1; // a = 1, b = len·1 for all-zero data
    b.out.extend_from_slice(&adler.to_be_bytes());
    b.out
}

/// A PNG: IHDR (8-bit, `colour` type), optional iCCP, IDAT of zeros, IEND.
fn png_of_zeros(w: u32, h: u32, colour: u8, channels: u64, iccp: Option<&[u8]>) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = [w.to_be_bytes(), h.to_be_bytes()].concat();
    ihdr.extend_from_slice(&[8, colour, 0, 0, 0]);
    png_chunk(&mut p, b"IHDR", &ihdr);
    if let Some(profile) = iccp {
        png_chunk(&mut p, b"iCCP", &[b"icc\0\0".as_slice(), profile].concat());
    }
    png_chunk(&mut p, b"IDAT", &zlib_zeros(h as u64 * (1 + w as u64 * channels)));
    png_chunk(&mut p, b"IEND", &[]);
    p
}

/// `run` with an image on the demo model (one greedy token).
fn run_image(name: &str, bytes: &[u8], ext: &str) -> support::Run {
    let (_scratch, m) = demo(name);
    let img = m.parent().unwrap().join(format!("image.{ext}"));
    std::fs::write(&img, bytes).unwrap();
    sphinx(&["run", "--model", s(&m), "--device", "cpu", "--prompt", "what is it?", "--image", s(&img), "--max-tokens", "1", "--temperature", "0"])
}

#[test]
fn s7_tiny_png_with_a_huge_compressed_icc_profile_decodes_in_bounded_memory() {
    // 4 MB of iCCP inflating to 4 GiB; Pillow's convert ignores the profile, and so do we
    let profile = zlib_zeros(4 << 30);
    assert!(profile.len() > 3 << 20 && profile.len() < 5 << 20);
    let png = png_of_zeros(1, 1, 2, 3, Some(&profile));
    let r = run_image("s7iccp", &png, "png");
    r.succeeded(RSS_MIB);
    assert!(r.stderr.contains("encoded"), "{}", r.stderr);
}

#[test]
fn s7_jpeg_whose_header_claims_16000_squared_is_refused_before_decoding() {
    let mut j = vec![0xFF, 0xD8];
    // DQT: table 0, all ones
    j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    j.extend_from_slice(&[1; 64]);
    // SOF0: 8-bit, 16000 x 16000, one component (id 1, 1x1 sampling, table 0)
    j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0x3E, 0x80, 0x3E, 0x80, 1, 1, 0x11, 0]);
    // DHT: DC table 0 and AC table 0, one 1-bit code each (symbol 0)
    for class in [0x00, 0x10] {
        j.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class, 1]);
        j.extend_from_slice(&[0; 15]);
        j.push(0);
    }
    // SOS, then 56 KB of entropy-coded zero bits (every block DC 0, EOB), EOI
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0]);
    j.extend(std::iter::repeat_n(0u8, 56 << 10));
    j.extend_from_slice(&[0xFF, 0xD9]);
    run_image("s7jpeg", &j, "jpg").refused("image too large (16000×16000); the limit is", RSS_MIB).refused("MAX_IMAGE_PIXELS", RSS_MIB);
}

#[test]
fn s7_png_of_16384_squared_zeros_is_refused_by_the_pixel_budget() {
    let png = png_of_zeros(16384, 16384, 2, 3, None);
    assert!(png.len() < 8 << 20, "{} bytes", png.len());
    run_image("s7zeros", &png, "png").refused("image too large (16384×16384); the limit is 16384 pixels per side (MAX_IMAGE_SIDE) and 67108864 pixels", RSS_MIB);
}

#[test]
fn a_large_image_within_the_budget_decodes_in_bounded_memory() {
    // 4096² grey: well inside the pixel budget; the decoder's metadata cap must not get in the way
    let png = png_of_zeros(4096, 4096, 0, 1, None);
    let r = run_image("bigok", &png, "png");
    r.succeeded(RSS_MIB);
    assert!(r.stderr.contains("encoded"), "{}", r.stderr);
}

#[test]
fn q_truncated_jpeg_is_refused_like_pillow() {
    let (w, h) = (64u32, 48u32);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode(&pixels, w, h, image::ExtendedColorType::Rgb8).unwrap();
    run_image("qjpegok", &jpeg, "jpg").succeeded(RSS_MIB);
    let cut = &jpeg[..jpeg.len() * 2 / 3];
    run_image("qjpegcut", cut, "jpg").refused("truncated JPEG", RSS_MIB);
    run_image("qjpegeoi", &jpeg[..jpeg.len() - 2], "jpg").refused("before the end-of-image marker", RSS_MIB);
}

// ---- image files that are not images (issue 18, rows H2 and H3) -------------------------------

/// `run` with `--image path` on the demo model, killed after a minute (a block is a failure).
fn run_image_path(m: &Path, img: &Path) -> support::Run {
    let args = ["run", "--model", s(m), "--device", "cpu", "--prompt", "what is it?", "--image", s(img), "--max-tokens", "1", "--temperature", "0"];
    support::sphinx_within(&args, std::time::Duration::from_secs(60))
}

// H2: a FIFO (no writer ever comes) or a socket named as the image: refused at once, never opened
// for a blocking read.
#[test]
fn h2_an_image_that_is_a_fifo_or_socket_is_refused_without_blocking() {
    let (_scratch, m) = demo("h2");
    let fifo = m.parent().unwrap().join("photo.png");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    run_image_path(&m, &fifo).refused(&format!("{}: is a device, FIFO or socket, not a regular file", fifo.display()), RSS_MIB);
    let sock = m.parent().unwrap().join("photo.jpg");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    run_image_path(&m, &sock).refused(&format!("{}: is a device, FIFO or socket", sock.display()), RSS_MIB);
    // trace and bench read --image the same way
    let base = ["--model", s(&m), "--device", "cpu", "--image", s(&fifo)];
    support::sphinx_within(&[&["trace"][..], &base, &["--prompt-ids", "1", "--steps", "1", "--out", s(&m.parent().unwrap().join("t.safetensors"))]].concat(), std::time::Duration::from_secs(60))
        .refused("is a device, FIFO or socket", RSS_MIB);
    support::sphinx_within(&[&["bench"][..], &base, &["--tokens", "1"]].concat(), std::time::Duration::from_secs(60)).refused("is a device, FIFO or socket", RSS_MIB);
}

// H3: /dev/zero, a 4 GB video and a 4 GB file that starts like a PNG: refused from their type, first
// bytes or size before the rest is read, in little memory.
#[test]
fn h3_an_endless_or_huge_image_file_is_refused_before_it_is_read() {
    let (_scratch, m) = demo("h3");
    let r = run_image_path(&m, Path::new("/dev/zero"));
    r.refused("/dev/zero: is a device, FIFO or socket, not a regular file", RSS_MIB);
    assert!(r.peak_rss_mib < 200.0, "peak RSS {:.0} MiB", r.peak_rss_mib);
    // sparse files of 4 GiB: an MP4 (ftyp box first) and a PNG signature followed by nothing
    let video = m.parent().unwrap().join("holiday.mp4");
    let mut head = vec![0, 0, 0, 0x18];
    head.extend_from_slice(b"ftypmp42");
    for (path, first) in [(&video, head), (&m.parent().unwrap().join("huge.png"), b"\x89PNG\r\n\x1a\n".to_vec())] {
        let f = std::fs::File::create(path).unwrap();
        std::io::Write::write_all(&mut &f, &first).unwrap();
        f.set_len(4 << 30).unwrap();
    }
    let r = run_image_path(&m, &video);
    r.refused(&format!("{}: image: unrecognised image format (expected PNG or JPEG; the file starts with 00 00 00 18 66 74 79 70)", video.display()), RSS_MIB);
    assert!(r.peak_rss_mib < 200.0, "peak RSS {:.0} MiB", r.peak_rss_mib);
    let png = m.parent().unwrap().join("huge.png");
    let r = run_image_path(&m, &png);
    r.refused(&format!("{}: 4294967296 bytes: larger than an image file may be (134217728 bytes, MAX_IMAGE_FILE_BYTES)", png.display()), RSS_MIB);
    assert!(r.peak_rss_mib < 200.0, "peak RSS {:.0} MiB", r.peak_rss_mib);
    // an empty file says so
    let empty = m.parent().unwrap().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    run_image_path(&m, &empty).refused("the file starts with nothing: it is empty", RSS_MIB);
}
