//! Hostile model files against the real `sphinx` binary (issue 10, rows S1–S6 and the file rows of
//! Q): each must end in exit 1 with a message naming the file, field or limit, without a panic, an
//! abort or a hang, under 1 GB of peak memory. The files are made here, from the dev golden
//! checkpoint and a `demo-model` folder.

mod support;

use serde_json::{json, Value};
use sphinx::testing::{fixtures_dir, golden_dir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{fresh_dir, s, sphinx, sphinx_within, Run};

/// Peak resident memory every hostile input must stay under, in MiB.
const MAX_RSS: f64 = 1024.0;

fn tokenizer() -> PathBuf {
    fixtures_dir().join("../../assets/tokenizer-llama2.json")
}

/// The dev golden checkpoint's config files beside a `consolidated.00-of-01.model.pth` that holds
/// only `a/data.pkl = pkl` (and whatever `storages` are given).
fn upstream_with_pickle(name: &str, pkl: &[u8], storages: &[(&str, &[u8])]) -> PathBuf {
    let dir = fresh_dir(name);
    let golden = golden_dir("sphinx-tiny-1k-dev");
    for f in ["config.json", "params.json", "meta.json", "vision.json"] {
        std::fs::copy(golden.join(f), dir.join(f)).unwrap();
    }
    let mut z = zip::ZipWriter::new(std::fs::File::create(dir.join("consolidated.00-of-01.model.pth")).unwrap());
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("a/data.pkl", opt).unwrap();
    z.write_all(pkl).unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("a/data/{key}"), opt).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
    dir
}

fn inspect(dir: &Path) -> Run {
    sphinx(&["inspect", s(dir)])
}

/// `sphinx run` on the CPU, one greedy token.
fn run(dir: &Path) -> Run {
    sphinx(&["run", "--model", s(dir), "--device", "cpu", "--prompt", "Hi", "--temperature", "0", "--max-tokens", "1"])
}

/// A fresh tiny demo model (f32, or `quant`).
fn demo(name: &str, quant: &str) -> PathBuf {
    let dir = fresh_dir(name).join("model");
    sphinx(&["demo-model", "--out", s(&dir), "--quant", quant]).succeeded(MAX_RSS);
    dir
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn shard0(dir: &Path) -> PathBuf {
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    dir.join(m["shards"][0]["file"].as_str().unwrap())
}

fn edit_shard0(dir: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let p = shard0(dir);
    let mut bytes = std::fs::read(&p).unwrap();
    f(&mut bytes);
    std::fs::write(&p, bytes).unwrap();
}

// S1: DUP/memo must share, not deep-copy.
#[test]
fn s1_dup_doubling_pickle_is_refused_quickly() {
    let pkl = [&b"\x80\x02N"[..], &b"2\x86".repeat(24), b"."].concat();
    let dir = upstream_with_pickle("s1", &pkl, &[]);
    inspect(&dir).refused("a/data.pkl): the pickled object is a tuple, expected a dict", MAX_RSS);
    // 60 doublings (2^60 leaves if copied) stop at the nesting limit, naming the byte.
    let pkl = [&b"\x80\x02N"[..], &b"2\x86".repeat(80), b"."].concat();
    let dir = upstream_with_pickle("s1b", &pkl, &[]);
    inspect(&dir).refused("pickle byte 132: nesting deeper than 64 levels", MAX_RSS);
}

#[test]
fn s1_one_string_duplicated_4096_times_stays_small() {
    let mut pkl = b"\x80\x02X\x00\x00\x10\x00".to_vec();
    pkl.extend(vec![b'x'; 1 << 20]);
    pkl.extend(b"2".repeat(4096));
    pkl.extend(b"(");
    pkl.extend(b"2".repeat(1000));
    pkl.extend(b"l.");
    let dir = upstream_with_pickle("s1c", &pkl, &[]);
    let r = inspect(&dir);
    r.refused("the pickled object is a list, expected a dict", MAX_RSS);
    assert!(r.peak_rss_mib < 200.0, "peak RSS {:.0} MiB for a 1 MB pickle", r.peak_rss_mib);
}

// S2: a million nested tuples: no stack overflow.
#[test]
fn s2_million_deep_nesting_is_refused_without_stack_overflow() {
    let pkl = [&b"\x80\x02)"[..], &vec![0x85u8; 1_000_000], b"."].concat();
    let dir = upstream_with_pickle("s2", &pkl, &[]);
    inspect(&dir).refused("pickle byte 66: nesting deeper than 64 levels", MAX_RSS);
    // lists nested by APPEND, and dicts by SETITEM, too
    let pkl = [&b"\x80\x02"[..], &b"]".repeat(500_000), &b"a".repeat(499_999), b"."].concat();
    let dir = upstream_with_pickle("s2b", &pkl, &[]);
    inspect(&dir).refused("nesting deeper than 64 levels", MAX_RSS);
}

// S3: the native loader verifies size, SHA-256 and the safetensors header.
#[test]
fn s3_wrong_sha256_is_refused() {
    let dir = demo("s3-sha", "f32");
    edit_manifest(&dir, |m| m["shards"][0]["sha256"] = json!("0".repeat(64)));
    run(&dir).refused("model-00001-of-00001.safetensors: SHA-256", MAX_RSS);
}

#[test]
fn s3_size_one_mb_off_is_refused() {
    let dir = demo("s3-bytes", "f32");
    edit_manifest(&dir, |m| {
        let b = m["shards"][0]["bytes"].as_u64().unwrap();
        m["shards"][0]["bytes"] = json!(b + (1 << 20));
    });
    run(&dir).refused("model-00001-of-00001.safetensors", MAX_RSS).refused("bytes, manifest says", MAX_RSS);
}

#[test]
fn s3_header_length_2_pow_60_is_refused() {
    let dir = demo("s3-hlen", "f32");
    edit_shard0(&dir, |b| b[..8].copy_from_slice(&(1u64 << 60).to_le_bytes()));
    run(&dir).refused("safetensors header: length 1152921504606846976 is larger than the file", MAX_RSS);
}

#[test]
fn s3_zeroed_header_is_refused() {
    let dir = demo("s3-zero", "f32");
    edit_shard0(&dir, |b| {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        b[8..8 + n].fill(0);
    });
    run(&dir).refused("model-00001-of-00001.safetensors: safetensors header:", MAX_RSS);
}

#[test]
fn s3_overlapping_offsets_are_refused() {
    let dir = demo("s3-overlap", "f32");
    edit_manifest(&dir, |m| {
        let off = m["tensors"][0]["offset"].clone();
        m["tensors"][1]["offset"] = off;
    });
    run(&dir).refused("overlap in model-00001-of-00001.safetensors", MAX_RSS);
}

#[test]
fn s3_wrong_dtype_is_refused() {
    let dir = demo("s3-dtype", "f32");
    edit_manifest(&dir, |m| m["tensors"][0]["dtype"] = json!("F16"));
    run(&dir).refused("dtype F16 does not store f32 (expected F32)", MAX_RSS);
}

#[test]
fn s3_quant_f16_on_f32_data_is_refused() {
    let dir = demo("s3-quant", "f32");
    let mut name = String::new();
    edit_manifest(&dir, |m| {
        let t = &mut m["tensors"][0];
        name = t["name"].as_str().unwrap().to_string();
        let b = t["bytes"].as_u64().unwrap();
        t["quant"] = json!("f16");
        t["dtype"] = json!("F16");
        t["bytes"] = json!(b / 2);
    });
    run(&dir).refused(&format!("tensor {name}: safetensors header has F32"), MAX_RSS);
}

#[test]
fn s3_one_flipped_data_byte_is_refused() {
    let dir = demo("s3-flip", "f32");
    edit_shard0(&dir, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
    });
    run(&dir).refused("model-00001-of-00001.safetensors: SHA-256", MAX_RSS);
    // the same check without loading a model
    let e = sphinx::io::converted::verify_folder(&dir, &sphinx::io::converted::Manifest::read(&dir).unwrap()).unwrap_err();
    assert!(e.to_string().contains("SHA-256"), "{e}");
}

fn convert_golden(out: &Path, quant: &str, extra: &[&str], abort_at: Option<&str>) -> Option<Run> {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let tok = tokenizer();
    let mut args = vec!["convert", "--from", s(&golden), "--out", s(out), "--quant", quant, "--shard-mb", "1", "--tokenizer", s(&tok)];
    args.extend(extra);
    match abort_at {
        // as a kill: the process ends at that point without any clean-up
        Some(at) => {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_sphinx"))
                .args(&args)
                .env("SPHINX_TEST_ABORT_WRITE", at)
                .env("XDG_RUNTIME_DIR", std::env::temp_dir())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), None, "the injected abort at {at} ends the run by a signal: {stderr}");
            assert!(stderr.contains(&format!("SPHINX_TEST_ABORT_WRITE={at}: aborting")), "{stderr}");
            None
        }
        None => Some(sphinx(&args)),
    }
}

// S3b: an interrupted convert never leaves a folder that loads as something else.
#[test]
fn s3b_interrupted_convert_leaves_nothing_that_loads() {
    let base = fresh_dir("s3b");
    let out = base.join("F");
    // killed (abort: no clean-up runs) after the first shard: no folder F at all
    convert_golden(&out, "q4", &[], Some("1"));
    assert!(!out.exists(), "an interrupted first convert left {}", out.display());
    inspect(&out).refused("not a folder", MAX_RSS);
    // a complete q4 convert, then an f32 re-convert killed after its shards, and again just
    // before the rename: F stays the complete q4 model
    convert_golden(&out, "q4", &[], None).unwrap().succeeded(MAX_RSS);
    for at in ["1", "rename"] {
        convert_golden(&out, "f32", &["--force"], Some(at));
        let m = sphinx::io::converted::Manifest::read(&out).unwrap();
        assert_eq!(m.quantization.llm, sphinx::io::quant::Quant::Q4, "after an abort at {at}");
        sphinx::io::converted::verify_folder(&out, &m).unwrap();
    }
    run(&out).succeeded(MAX_RSS);
}

#[test]
fn converting_into_a_non_empty_folder_needs_force_and_then_replaces_it() {
    let out = fresh_dir("nonempty");
    // a folder of anything but a model is never replaced, --force or not
    std::fs::write(out.join("model-00009-of-00009.safetensors"), b"old shard").unwrap();
    convert_golden(&out, "q8", &[], None).unwrap().refused("the output folder is not empty; pass --force", MAX_RSS);
    convert_golden(&out, "q8", &["--force"], None).unwrap().refused("no readable manifest.json", MAX_RSS);
    assert_eq!(std::fs::read(out.join("model-00009-of-00009.safetensors")).unwrap(), b"old shard", "a refused convert touched the folder");
    // a model this tool wrote (with a stale shard of an older write beside it) is
    std::fs::remove_dir_all(&out).unwrap();
    convert_golden(&out, "q4", &[], None).unwrap().succeeded(MAX_RSS);
    std::fs::write(out.join("model-00009-of-00009.safetensors"), b"old shard").unwrap();
    convert_golden(&out, "q8", &[], None).unwrap().refused("the output folder is not empty; pass --force", MAX_RSS);
    assert!(out.join("model-00009-of-00009.safetensors").exists(), "a refused convert touched the folder");
    let r = convert_golden(&out, "q8", &["--force"], None).unwrap();
    r.succeeded(MAX_RSS);
    assert!(r.stderr.contains(&format!("replaced the model that was in {}: removed", out.display())) && r.stderr.contains("model-00009-of-00009.safetensors"), "{}", r.stderr);
    assert!(!out.join("model-00009-of-00009.safetensors").exists(), "--force kept an old shard");
    let m = sphinx::io::converted::Manifest::read(&out).unwrap();
    sphinx::io::converted::verify_folder(&out, &m).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut want: Vec<String> = m.shards.iter().map(|s| s.file.clone()).chain(["manifest.json".into(), "tokenizer.json".into()]).collect();
    want.sort();
    assert_eq!(files, want);
    // mix refuses the same way
    let a = demo("nonempty-mix", "f32");
    sphinx(&["mix", "--beta", "0.5", "--out", s(&out), s(&a), s(&a)]).refused("not empty; pass --force", MAX_RSS);
}

// S4: manifest file names are plain names inside the folder.
#[test]
fn s4_foreign_paths_devices_and_fifos_are_refused() {
    let dir = demo("s4", "f32");
    let shard = shard0(&dir);
    let set_file = |name: &str| edit_manifest(&dir, |m| m["shards"][0]["file"] = json!(name));
    for (name, why) in [("/etc/passwd", "contains a path separator"), ("../../x", "contains a path separator"), ("/dev/zero", "contains a path separator"), ("..", "names a folder"), ("C:x", "contains ':'"), ("", "is empty")] {
        set_file(name);
        run(&dir).refused(&format!("file {name:?} {why}"), MAX_RSS);
    }
    // a FIFO in the folder: refused at once, never opened (opening would block)
    let fifo = dir.join("fifo.safetensors");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    set_file("fifo.safetensors");
    let r = sphinx_within(&["run", "--model", s(&dir), "--device", "cpu", "--prompt", "Hi", "--max-tokens", "1"], Duration::from_secs(60));
    r.refused("fifo.safetensors: is a device, FIFO or socket, not a regular file", MAX_RSS);
    // a symlink to a device, and one leaving the folder
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.safetensors")).unwrap();
    set_file("zero.safetensors");
    run(&dir).refused("zero.safetensors: is a symlink to /dev/zero, outside the model folder", MAX_RSS);
    let outside = dir.parent().unwrap().join("outside.safetensors");
    std::fs::copy(&shard, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("away.safetensors")).unwrap();
    set_file("away.safetensors");
    run(&dir).refused("outside the model folder", MAX_RSS);
    // the tokenizer entry is held to the same rule
    set_file(shard.file_name().unwrap().to_str().unwrap());
    edit_manifest(&dir, |m| m["tokenizer"]["file"] = json!("../tokenizer.json"));
    run(&dir).refused("tokenizer: file \"../tokenizer.json\" contains a path separator", MAX_RSS);
}

/// Rewrites the central-directory and local sizes of zip member `name` to `size`.
fn patch_zip_sizes(bytes: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for (sig, at_size, at_name_len, header) in [(0x02014b50u32, 20, 28, 46), (0x04034b50, 18, 26, 30)] {
        let sig = sig.to_le_bytes();
        let mut i = 0;
        while i + header <= bytes.len() {
            if bytes[i..i + 4] == sig {
                let n = u16::from_le_bytes([bytes[i + at_name_len], bytes[i + at_name_len + 1]]) as usize;
                if bytes.get(i + header..i + header + n) == Some(name.as_bytes()) {
                    bytes[i + at_size..i + at_size + 4].copy_from_slice(&size.to_le_bytes()); // compressed
                    bytes[i + at_size + 4..i + at_size + 8].copy_from_slice(&size.to_le_bytes()); // uncompressed
                    patched += 1;
                }
            }
            i += 1;
        }
    }
    assert_eq!(patched, 2, "member {name}");
}

/// `{"w": _rebuild_tensor_v2(('storage', torch.FloatStorage, '0', 'cpu', numel), 0, (numel,), (1,), False, OrderedDict())}`.
fn one_tensor_pickle(numel: i32) -> Vec<u8> {
    let mut p = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ".to_vec();
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00(J");
    p.extend(numel.to_le_bytes());
    p.extend(b"t(K\x01t\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

// S5: a zip directory claiming more bytes than the file holds.
#[test]
fn s5_zip_entry_larger_than_the_file_is_refused_before_allocating() {
    let numel = 0x3FFF_FFFC; // 4 GiB of f32, as the patched directory claims
    let dir = upstream_with_pickle("s5", &one_tensor_pickle(numel), &[("0", &[0u8; 16])]);
    let pth = dir.join("consolidated.00-of-01.model.pth");
    let mut bytes = std::fs::read(&pth).unwrap();
    patch_zip_sizes(&mut bytes, "a/data/0", (numel as u32) * 4);
    std::fs::write(&pth, &bytes).unwrap();
    let r = inspect(&dir);
    r.refused("storage entry a/data/0 claims 4294967280 bytes", MAX_RSS).refused("past the end of the", MAX_RSS);
    assert!(!r.stdout.contains("GiB"), "inspect reported sizes: {}", r.stdout);
    let out = fresh_dir("s5-out").join("x");
    sphinx(&["convert", "--from", s(&dir), "--out", s(&out), "--tokenizer", s(&tokenizer())]).refused("past the end of the", MAX_RSS);
}

// Q: a wrong zip CRC (one flipped byte in a storage member of the real golden checkpoint).
#[test]
fn a_wrong_zip_crc_is_refused_naming_the_member() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let dir = fresh_dir("crc");
    for f in ["config.json", "params.json", "meta.json", "vision.json", "consolidated.00-of-01.model.pth"] {
        std::fs::copy(golden.join(f), dir.join(f)).unwrap();
    }
    let pth = dir.join("consolidated.00-of-01.model.pth");
    let member = "consolidated.00-of-01.model/data/40";
    let at = {
        let mut z = zip::ZipArchive::new(std::fs::File::open(&pth).unwrap()).unwrap();
        let f = z.by_name(member).unwrap();
        f.data_start().unwrap() as usize + f.size() as usize / 2
    };
    let mut bytes = std::fs::read(&pth).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(&pth, &bytes).unwrap();
    let base = fresh_dir("crc-out");
    let out = base.join("x");
    sphinx(&["convert", "--from", s(&dir), "--out", s(&out), "--tokenizer", s(&tokenizer()), "--shard-mb", "1"])
        .refused(&format!("zip member {member}: CRC-32"), MAX_RSS);
    // a convert that fails midway (shards already written) leaves no output and no temporary folder
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0, "a failed convert left files in {}", base.display());
    sphinx(&["run", "--model", s(&dir), "--device", "cpu", "--prompt", "Hi", "--max-tokens", "1", "--tokenizer", s(&tokenizer())])
        .refused(&format!("zip member {member}: CRC-32"), MAX_RSS);
}

// S6: a vocabulary of 2^33 with matching shapes: a clear error, no 2 TiB allocation.
#[test]
fn s6_huge_vocab_with_matching_shapes_is_refused() {
    // 2^33 is past the config bound (validate()); 2^20 is inside it, and its tensors' claimed
    // bytes are checked against the shard
    for (vocab, want) in [(1u64 << 33, "llm.vocab_size 8589934592: must be in 1..=1048576"), (1u64 << 20, "do not fit inside")] {
        let dir = demo(&format!("s6-{vocab}"), "f32");
        huge_vocab(&dir, vocab);
        run(&dir).refused(want, MAX_RSS);
        sphinx(&["bench", "--model", s(&dir), "--device", "cpu", "--tokens", "1"]).refused(want, MAX_RSS);
    }
    // a shard claimed to hold 4 TiB is checked against the real file before anything is read
    let dir = demo("s6-shard", "f32");
    edit_manifest(&dir, |m| m["shards"][0]["bytes"] = json!(1u64 << 42));
    run(&dir).refused("bytes, manifest says 4398046511104", MAX_RSS);
}

/// Sets the LLM's vocabulary to `vocab` in the manifest, with matching embedding/output shapes.
fn huge_vocab(dir: &Path, vocab: u64) {
    edit_manifest(dir, |m| {
        m["model"]["llm"]["vocab_size"] = json!(vocab);
        for t in m["tensors"].as_array_mut().unwrap() {
            let name = t["name"].as_str().unwrap();
            if name.ends_with("tok_embeddings.weight") || name.ends_with("output.weight") {
                let cols = t["shape"][1].as_u64().unwrap();
                t["shape"] = json!([vocab, cols]);
                t["bytes"] = json!(vocab * cols * 4);
            }
        }
    });
}

// Q: a manifest offset that wraps u64.
#[test]
fn a_manifest_offset_that_wraps_u64_is_refused() {
    let dir = demo("wrap", "q4");
    edit_manifest(&dir, |m| m["tensors"][0]["offset"] = json!(u64::MAX - 10));
    run(&dir).refused("at offset 18446744073709551605 do not fit inside model-00001-of-00001.safetensors", MAX_RSS);
    inspect(&dir).refused("do not fit inside", MAX_RSS);
}

/// Where the zip64 end-of-central-directory record starts in a `torch.save` file (it precedes the
/// zip64 locator, which precedes the end record).
fn zip64_end_record(bytes: &[u8]) -> usize {
    let at = bytes.windows(4).rposition(|w| w == [0x50, 0x4b, 0x06, 0x06]).expect("torch.save writes a zip64 end record");
    assert_eq!(bytes[at + 76..at + 80], [0x50, 0x4b, 0x05, 0x06], "locator and end record follow it");
    at
}

// Z1: a zip64 end record whose central directory is larger than the file (or starts past it):
// refused as PyTorch's reader refuses it, naming the file; the file itself is left as it was.
#[test]
fn z1_zip64_central_directory_past_the_end_is_refused() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let good = std::fs::read(golden.join("consolidated.00-of-01.model.pth")).unwrap();
    let len = good.len() as u64;
    let rec = zip64_end_record(&good);
    let cdir_size = u64::from_le_bytes(good[rec + 40..rec + 48].try_into().unwrap());
    let cdir_ofs = u64::from_le_bytes(good[rec + 48..rec + 56].try_into().unwrap());
    for (name, field, value, want) in [
        ("size", 40, len * 2, format!("the central directory of {} bytes at offset {cdir_ofs} reaches past the end of the {len}-byte file", len * 2)),
        ("offset", 48, len + 10, format!("the central directory of {cdir_size} bytes at offset {} reaches past the end of the {len}-byte file", len + 10)),
        ("wrap", 48, u64::MAX - 5, format!("the central directory of {cdir_size} bytes at offset {} reaches past the end of the {len}-byte file", u64::MAX - 5)),
        ("small", 40, 46, "the central directory of 46 bytes cannot hold the".to_string()),
    ] {
        let dir = fresh_dir(&format!("z1-{name}"));
        for f in ["config.json", "params.json", "meta.json", "vision.json"] {
            std::fs::copy(golden.join(f), dir.join(f)).unwrap();
        }
        let mut bytes = good.clone();
        bytes[rec + field..rec + field + 8].copy_from_slice(&value.to_le_bytes());
        let pth = dir.join("consolidated.00-of-01.model.pth");
        std::fs::write(&pth, &bytes).unwrap();
        let r = inspect(&dir);
        r.refused(&format!("{}: not a torch.save zip archive: {want}", pth.display()), MAX_RSS);
        let out = fresh_dir(&format!("z1-{name}-out")).join("x");
        sphinx(&["convert", "--from", s(&dir), "--out", s(&out), "--tokenizer", s(&tokenizer())]).refused(&want, MAX_RSS);
        assert!(!out.exists(), "a refused convert wrote {}", out.display());
        sphinx(&["run", "--model", s(&dir), "--device", "cpu", "--prompt", "Hi", "--max-tokens", "1", "--tokenizer", s(&tokenizer())]).refused(&want, MAX_RSS);
        assert!(std::fs::read(&pth).unwrap() == bytes, "the checkpoint was modified");
        // the same folder with the original file loads
        std::fs::write(&pth, &good).unwrap();
        inspect(&dir).succeeded(MAX_RSS);
    }
}
