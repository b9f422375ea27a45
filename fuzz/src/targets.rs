//! The fuzz targets: each is a set of seeds (from the real fixtures) and a function that hands one
//! input to a parser of the crate the way the CLI does. A target's `run` returns whatever the parser
//! returned; errors are the expected outcome for most inputs; only a panic, an abort, a hang or an
//! allocation over the guard is a failure.

use crate::mutate::Input;
use sphinx::io::converted::QuantChoice;
use sphinx::io::quant::Quant;
use std::path::{Path, PathBuf};

pub struct Target {
    pub name: &'static str,
    pub what: &'static str,
    /// Builds the seeds; `scratch` is a folder the target may write into.
    pub seeds: fn(scratch: &Path) -> Vec<Input>,
    /// Runs one input; `dir` is an empty folder for targets that read files.
    pub run: fn(input: &Input, dir: &Path),
    /// Tokens the mutator inserts (repeated): opcodes, JSON fragments.
    pub dict: &'static [&'static [u8]],
}

/// Pickle opcodes that build, nest, copy and memoise values.
const PICKLE_OPS: &[&[u8]] = &[b"2", b"\x85", b"\x86", b"\x87", b"(", b")", b"]", b"}", b"t", b"l", b"a", b"e", b"s", b"u", b"0", b"1", b"q\x00", b"h\x00", b"\x94", b"N", b"K\x01", b"X\x01\x00\x00\x00a", b"(]", b"2\x86", b")\x85"];
/// JSON fragments for the configuration files and manifests.
const JSON_TOKENS: &[&[u8]] = &[b"[", b"]", b"{", b"}", b"[]", b"{}", b"0", b"-1", b"null", b"\"\"", b",", b"1e400", b"\"../x\"", b"\"/etc/passwd\""];

pub const TARGETS: [Target; 6] = [
    Target { name: "pickle", what: "the pickle reader (data.pkl of a torch.save zip)", seeds: pickle_seeds, run: run_pickle, dict: PICKLE_OPS },
    Target { name: "pth", what: "a .pth zip: its directory, its pickle and every tensor's bytes", seeds: pth_seeds, run: run_pth, dict: PICKLE_OPS },
    Target { name: "config", what: "params.json/config.json/meta.json/vision.json, and a manifest's model", seeds: config_seeds, run: run_config, dict: JSON_TOKENS },
    Target { name: "converted", what: "a converted model folder (manifest.json + shards), loaded on the CPU", seeds: converted_seeds, run: run_converted, dict: JSON_TOKENS },
    Target { name: "image", what: "PNG/JPEG decoding", seeds: image_seeds, run: run_image, dict: &[] },
    Target { name: "sentencepiece", what: "a sentencepiece tokenizer.model, then encode/decode", seeds: spm_seeds, run: run_spm, dict: &[] },
];

/// Not in `all`: proves the guards. Its seeds panic, abort, allocate past the heap guard and hang.
pub const SELFTEST: Target = Target { name: "selftest", what: "the fuzzer's own guards (panic, abort, heap, hang)", seeds: selftest_seeds, run: run_selftest, dict: &[] };

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().chain(std::iter::once(&SELFTEST)).find(|t| t.name == name)
}

fn selftest_seeds(_: &Path) -> Vec<Input> {
    ["panic", "abort", "heap", "hang"].iter().map(|w| single("what", w.as_bytes().to_vec())).collect()
}

fn run_selftest(input: &Input, _: &Path) {
    match input.files[0].1.as_slice() {
        b"panic" => panic!("selftest panic"),
        b"abort" => std::process::abort(),
        b"heap" => {
            let v: Vec<u8> = Vec::with_capacity(crate::guard::HEAP_LIMIT + 1);
            std::hint::black_box(v);
        }
        b"hang" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        _ => {}
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The golden folders that exist here (the shared data may be absent on a bare checkout).
fn golden_folders() -> Vec<PathBuf> {
    let g = sphinx::testing::shared_dir().join("golden");
    ["sphinx-tiny-1k-dev", "sphinx-1k-dev"].iter().map(|n| g.join(n)).filter(|p| p.is_dir()).collect()
}

fn upstream_folders() -> Vec<PathBuf> {
    let f = sphinx::testing::fixtures_dir();
    let mut v = vec![f.join("sphinx-tiny-1k-dev-mp2"), f.join("sphinx-tiny-replica")];
    v.extend(golden_folders());
    v
}

fn pth_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["double.pth", "views.p4.pth"].iter().map(|n| sphinx::testing::fixtures_dir().join(n)).collect();
    for d in upstream_folders() {
        let mut in_dir: Vec<PathBuf> = std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "pth")).collect();
        in_dir.sort();
        v.extend(in_dir);
    }
    v
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()))
}

fn single(name: &str, bytes: Vec<u8>) -> Input {
    Input { files: vec![(name.to_string(), bytes)] }
}

/// Writes an input's files into `dir`.
fn write_files(input: &Input, dir: &Path) {
    for (name, bytes) in &input.files {
        std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("fuzz scratch {}: {e}", dir.display()));
    }
}

fn pickle_seeds(_: &Path) -> Vec<Input> {
    let mut seeds = Vec::new();
    for p in pth_files() {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(read(&p))).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()));
        for i in 0..z.len() {
            let mut f = z.by_index(i).unwrap();
            if f.name().is_ok_and(|n| n.ends_with("data.pkl")) {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut b).unwrap();
                seeds.push(single("data.pkl", b));
            }
        }
    }
    seeds
}

fn run_pickle(input: &Input, _: &Path) {
    let _ = sphinx::io::pickle::read_state_dict(&input.files[0].1, "fuzz data.pkl");
}

fn pth_seeds(_: &Path) -> Vec<Input> {
    pth_files().iter().map(|p| single("consolidated.00-of-01.model.pth", read(p))).collect()
}

fn run_pth(input: &Input, dir: &Path) {
    write_files(input, dir);
    let Ok(f) = sphinx::io::PthFile::open(dir.join(&input.files[0].0)) else { return };
    let names: Vec<String> = f.tensors().iter().map(|t| t.name.clone()).collect();
    for n in names {
        let _ = f.read_f32(&n);
    }
}

const CONFIG_FILES: [&str; 4] = ["meta.json", "params.json", "config.json", "vision.json"];

fn config_seeds(scratch: &Path) -> Vec<Input> {
    let mut seeds: Vec<Input> = upstream_folders()
        .iter()
        .map(|d| Input {
            files: CONFIG_FILES.iter().filter(|n| d.join(n).is_file()).map(|n| (n.to_string(), read(&d.join(n)))).collect(),
        })
        .collect();
    for (i, m) in demo_models(scratch).iter().enumerate() {
        if i < 2 {
            seeds.push(single("manifest.json", read(&m.join("manifest.json"))));
        }
    }
    seeds
}

/// What `inspect DIR` does with a configuration: read and resolve it (upstream files), or parse
/// the manifest and describe it (converted); then the memory it implies.
fn run_config(input: &Input, dir: &Path) {
    write_files(input, dir);
    let config = if input.files[0].0 == "manifest.json" {
        match sphinx::io::converted::Manifest::read(dir) {
            Ok(m) => {
                let _ = sphinx::convert::describe_manifest(&m);
                m.model
            }
            Err(_) => return,
        }
    } else {
        let Ok(llama_type) = sphinx::config::read_llama_type(dir) else { return };
        let Ok((args, source)) = sphinx::config::ModelArgs::read(dir) else { return };
        let vocab = args.vocab_size.map_or(1000, |v| v.max(0) as usize);
        let Ok(llm) = args.resolve(vocab, &source) else { return };
        let Ok(vision) = sphinx::config::VisionConfig::read(dir, llama_type) else { return };
        sphinx::config::ModelConfig { llama_type, llm, vision }
    };
    let _ = sphinx::convert::memory_table(&config, &[]);
}

/// Tiny demo models (f32, q8, q4, f16 towers) written once into `scratch`.
fn demo_models(scratch: &Path) -> Vec<PathBuf> {
    let tokenizer = include_bytes!("../../assets/tokenizer-llama2.json");
    let choices = [(Quant::F32, Quant::F32), (Quant::Q8, Quant::F16), (Quant::Q4, Quant::Q8)];
    choices
        .iter()
        .enumerate()
        .map(|(i, &(llm, vision))| {
            let out = scratch.join(format!("demo-{i}"));
            if !out.join("manifest.json").is_file() {
                let config = sphinx::convert::demo_config();
                sphinx::convert::demo_model(&config, &out, 1 + i as u64, QuantChoice { llm, vision }, tokenizer, true).unwrap_or_else(|e| panic!("demo model seed: {e}"));
            }
            out
        })
        .collect()
}

fn converted_seeds(scratch: &Path) -> Vec<Input> {
    demo_models(scratch)
        .iter()
        .map(|d| {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n == "manifest.json" || n.ends_with(".safetensors"))
                .collect();
            names.sort();
            Input { files: names.iter().map(|n| (n.clone(), read(&d.join(n)))).collect() }
        })
        .collect()
}

/// Opens and builds the model on the CPU, as `sphinx run --model DIR --device cpu` does.
fn run_converted(input: &Input, dir: &Path) {
    write_files(input, dir);
    let _ = sphinx::load::load_model(dir, &sphinx::Device::Cpu, 64);
}

fn image_seeds(_: &Path) -> Vec<Input> {
    let mut pngs = vec![repo().join("www/assets/demo.png")];
    for g in golden_folders() {
        pngs.push(g.join("image_wide.png"));
        pngs.push(g.join("image_tall.png"));
    }
    let mut seeds: Vec<Input> = pngs.iter().map(|p| single("image", read(p))).collect();
    // JPEG seeds, colour and grey, made from the demo picture.
    let img = image::load_from_memory(&seeds[0].files[0].1).expect("demo.png decodes");
    for grey in [false, true] {
        let mut jpeg = Vec::new();
        let pic = if grey { image::DynamicImage::ImageLuma8(img.to_luma8()) } else { image::DynamicImage::ImageRgb8(img.to_rgb8()) };
        pic.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("JPEG encodes");
        seeds.push(single("image", jpeg));
    }
    seeds
}

fn run_image(input: &Input, _: &Path) {
    let _ = sphinx::image::decode(&input.files[0].1);
}

fn spm_seeds(_: &Path) -> Vec<Input> {
    vec![single("tokenizer.model", read(&sphinx::testing::fixtures_dir().join("spm_tiny_bpe.model")))]
}

fn run_spm(input: &Input, _: &Path) {
    let bytes = &input.files[0].1;
    let _ = sphinx::text::sentencepiece::convert_to_tokenizer_json(bytes, "fuzz tokenizer.model");
    let Ok(tok) = sphinx::text::Tokenizer::from_sentencepiece_bytes(bytes, "fuzz tokenizer.model") else { return };
    if let Ok(ids) = tok.encode_prompt("Hello, world! 你好 ⁇ <s></s>\n  tabs\tand 123") {
        let _ = tok.decode(&ids);
        let mut stream = tok.decode_stream();
        for id in ids.iter().chain(&[0, 1, 2, tok.vocab_size() as u32, u32::MAX]) {
            let _ = stream.step(*id);
        }
        let _ = stream.finish();
    }
}
