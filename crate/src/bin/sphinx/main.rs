//! The `sphinx` command line: run, trace, serve (and the weight tools). A thin shell over the library.

mod serve;

use clap::{Parser, Subcommand};
use sphinx::config::LlamaType;
use sphinx::convert::{convert, demo_model, describe_manifest, memory_table, mix, DemoSize};
use sphinx::generate::{generate, SamplingParams};
use sphinx::io::converted::{Manifest, QuantChoice};
use sphinx::io::quant::Quant;
use sphinx::models::params::{self, parameter_shapes, CLIP_TEXT_FULL};
use sphinx::image::{padded_resize, read_file};
use sphinx::io::outputs::{check_not_an_input, replaceable, Replaced};
use sphinx::kernels::tune::{autotune_with_file, AutotuneMode};
use sphinx::config::bounds::{MAX_HIDDEN, MAX_VOCAB, MAX_WIDTH};
use sphinx::load::{load_model_with, LoadOptions, DEFAULT_MAX_SEQ_LEN, MAX_SEQ_LEN};
use sphinx::nn::PrecisionChoice;
use sphinx::runtime::LimitsChoice;
use sphinx::tensor::Device;
use sphinx::text::{conversation, Message, Tokenizer};
use sphinx::trace::{trace, write_safetensors};
use sphinx::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "sphinx", version, about = "SPHINX multimodal LLM on wgpu: run, trace, convert")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ModelOpts {
    /// Model folder (upstream checkpoint or converted)
    #[arg(long)]
    model: PathBuf,
    /// Where to run: auto (the GPU unless there is none or only a software adapter such as
    /// llvmpipe: then the CPU backend), gpu (wgpu; an error when there is no adapter) or cpu
    #[arg(long, default_value = "auto")]
    device: String,
    /// Longest sequence (positions) the model may see, at most 65536; upstream's default is 4096
    #[arg(long, default_value_t = DEFAULT_MAX_SEQ_LEN, value_parser = sized(MAX_SEQ_LEN))]
    max_seq_len: usize,
    #[command(flatten)]
    gpu: GpuOpts,
}

/// How the GPU runs a model (run, trace, bench).
#[derive(clap::Args, Clone)]
struct GpuOpts {
    /// auto (f16 where the adapter has shader-f16), f32 or f16: f16 stores f32 weights as f16 and
    /// the KV cache in f16, with f32 arithmetic [default: auto; trace: f32]
    #[arg(long)]
    precision: Option<String>,
    /// Kernel autotuning on this device: cached (tune what the cache file lacks), fresh, off. The
    /// cache is $SPHINX_AUTOTUNE_CACHE or ~/.cache/sphinx/autotune.json [default: cached; trace: off]
    #[arg(long)]
    autotune: Option<String>,
    /// Device limits: adapter (all it offers) or default (WebGPU's defaults: 128 MiB per binding,
    /// 256 MiB per buffer, as many phones grant)
    #[arg(long, default_value = "adapter")]
    limits: String,
}

impl ModelOpts {
    /// Loads the model as the options say (`defaults`: precision and autotune when not given) and
    /// tunes its kernels; reports what it did on stderr.
    async fn load(&self, defaults: (&str, &str)) -> Result<(sphinx::models::sphinx::Sphinx, Device, Option<sphinx::kernels::tune::TuneReport>)> {
        let g = &self.gpu;
        let (device, why) = Device::choose(&self.device, LimitsChoice::parse(&g.limits)?).await?;
        eprintln!("device: {} ({why})", sphinx::bench::device_name(&device));
        let precision = PrecisionChoice::parse(g.precision.as_deref().unwrap_or(defaults.0))?;
        let mode = AutotuneMode::parse(g.autotune.as_deref().unwrap_or(defaults.1))?;
        let t0 = Instant::now();
        let m = load_model_with(&self.model, &device, &LoadOptions { max_seq_len: self.max_seq_len, precision })?;
        eprintln!("loaded {} ({}) on {device:?} at {:?} precision in {:.2?}", m.llama_type().release(), self.model.display(), m.precision(), t0.elapsed());
        let mut report = None;
        if let Device::Gpu(g) = &device {
            let r = autotune_with_file(g, mode).await?;
            if mode != AutotuneMode::Off {
                eprintln!("autotune ({}, {}): {} shapes, {} from the cache, {} timed, {} too small to time, {} past the budget, in {:.0} ms", r.mode, r.timer, r.shapes, r.cached, r.tuned, r.small, r.skipped, r.ms);
            }
            report = Some(r);
        }
        Ok((m, device, report))
    }
}

/// The model folder `convert` and `mix` write, and how.
#[derive(clap::Args)]
struct Written {
    #[arg(long)]
    out: PathBuf,
    /// Precision of the LLM weights: f32, f16, q8, q4
    #[arg(long, default_value = "f32")]
    quant: String,
    /// Precision of the vision towers (default: --quant)
    #[arg(long)]
    vision_quant: Option<String>,
    /// Largest shard in MiB (1..=4096)
    #[arg(long, default_value_t = 64, value_parser = shard_mb_value())]
    shard_mb: u64,
    /// tokenizer.json or sentencepiece tokenizer.model (default: the one in the input folder,
    /// A's before B's for mix)
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Replace a non-empty --out folder holding a model this tool wrote (any other non-empty
    /// folder is refused). The folder is written beside it and renamed into place last, so an
    /// interrupted run leaves the old one intact
    #[arg(long)]
    force: bool,
}

impl Written {
    /// Before anything is read: --out is none of the `inputs` (folders, and the --tokenizer file)
    /// and may be written; the precisions parse; the tokenizer, from --tokenizer or the folders.
    fn prepare(&self, inputs: &[(&str, &Path)]) -> Result<(Option<Replaced>, QuantChoice, Vec<u8>)> {
        let replacing = check_output_folder(&self.out, &inputs_of(inputs, self.tokenizer.as_deref()), self.force)?;
        let choice = quant_choice(&self.quant, self.vision_quant.as_deref())?;
        let dirs: Vec<&Path> = inputs.iter().map(|(_, p)| *p).collect();
        Ok((replacing, choice, tokenizer_json(&dirs, self.tokenizer.as_deref())?))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question (about an image), streaming the answer to stdout
    Run {
        #[command(flatten)]
        model: ModelOpts,
        /// Image file (PNG or JPEG)
        #[arg(long)]
        image: Option<PathBuf>,
        /// The question
        #[arg(long)]
        prompt: String,
        /// 0 = greedy (upstream SPHINXModel default 0.1); finite, ≥ 0
        #[arg(long, default_value_t = 0.1, value_parser = temperature_value)]
        temperature: f32,
        /// Nucleus mass, in (0, 1]
        #[arg(long, default_value_t = 0.5, value_parser = top_p_value)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Most tokens to generate (1..=65536; the context's end stops earlier)
        #[arg(long, default_value_t = 512, value_parser = sized(MAX_SEQ_LEN))]
        max_tokens: usize,
        /// tokenizer.json or tokenizer.model (default: the one in the model folder)
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Also print the generated token ids (a line "ids: 1,2,3" on stderr)
        #[arg(long)]
        print_ids: bool,
    },
    /// Prefill + greedy steps, writing every intermediate tensor to a safetensors file
    Trace {
        #[command(flatten)]
        model: ModelOpts,
        #[arg(long)]
        image: Option<PathBuf>,
        /// Prompt token ids, comma-separated (BOS first)
        #[arg(long, value_delimiter = ',', required = true)]
        prompt_ids: Vec<u32>,
        /// Logit rows to produce: prefill + steps-1 greedy decode steps (1..=65536, and prompt +
        /// image + steps within --max-seq-len)
        #[arg(long, default_value_t = 8, value_parser = sized(MAX_SEQ_LEN))]
        steps: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks. With --model: the phases of one question (load, image encode and each vision
    /// tower alone, prefill, decode with tokens/s against the bandwidth it implies) and every
    /// linear shape of the model with its kernel variant; without: kernels at SPHINX-Tiny-1k's
    /// LLM shapes (or --dim/--hidden/...)
    Bench {
        /// Model folder (optional: without it only the kernels are timed)
        #[arg(long)]
        model: Option<PathBuf>,
        /// auto, gpu or cpu (as for run)
        #[arg(long, default_value = "auto")]
        device: String,
        #[command(flatten)]
        gpu: GpuOpts,
        #[arg(long)]
        image: Option<PathBuf>,
        /// Decode steps to time
        #[arg(long, default_value_t = 16, value_parser = sized(MAX_SEQ_LEN))]
        tokens: usize,
        /// Prompt ids of the model bench's prefill (BOS, 101, 102, …)
        #[arg(long, default_value_t = 48, value_parser = sized(MAX_SEQ_LEN))]
        prompt_tokens: usize,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
        /// Also measure the device's limits (read and copy bandwidth, best f32 GEMM) in this run
        /// and give each phase and kernel as a share of them
        #[arg(long)]
        roofline: bool,
        #[arg(long, default_value_t = 2048, value_parser = sized(MAX_WIDTH))]
        dim: usize,
        #[arg(long, default_value_t = 5632, value_parser = sized(MAX_HIDDEN))]
        hidden: usize,
        #[arg(long, default_value_t = 32000, value_parser = sized(MAX_VOCAB))]
        vocab: usize,
        /// Attention heads (dividing --dim)
        #[arg(long, default_value_t = 32, value_parser = sized(MAX_WIDTH))]
        heads: usize,
        /// Key/value heads (dividing --heads)
        #[arg(long, default_value_t = 4, value_parser = sized(MAX_WIDTH))]
        kv_heads: usize,
        /// Repetitions (medians are reported) [default: 1 with --model, 5 for the kernels]
        #[arg(long, value_parser = sized(MAX_REPS))]
        reps: Option<usize>,
    },
    /// Convert an upstream checkpoint into the web format (manifest + safetensors shards)
    Convert {
        /// Upstream folder (consolidated.*.pth, config.json/params.json, meta.json [, vision.json])
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        written: Written,
    },
    /// Mix two checkpoints of one architecture: θ = β·θ_A + (1−β)·θ_B (the paper's weight mix)
    Mix {
        /// β, in [0, 1] (any finite value with --extrapolate)
        #[arg(long, value_parser = finite_f64)]
        beta: f64,
        /// Allow β outside [0, 1] (extrapolating past A or B)
        #[arg(long)]
        extrapolate: bool,
        /// `llm`: mix only the LLM weights (vision towers from A)
        #[arg(long)]
        only: Option<String>,
        #[command(flatten)]
        written: Written,
        /// Model folder A (upstream or converted)
        a: PathBuf,
        /// Model folder B (upstream or converted)
        b: PathBuf,
    },
    /// Describe a model folder: variant, sizes, per-group precision, bytes, memory needs
    Inspect {
        /// Model folder (converted or upstream)
        dir: Option<PathBuf>,
        /// Instead of a folder: the full-size release of a llama_type (llama_ens5_light, llama_ens_light, llama_ens, llama_ens5)
        #[arg(long)]
        preset: Option<String>,
    },
    /// Write the tiny random-weight demo model (SPHINX-Tiny-1k structure) in the web format
    DemoModel {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Precision of the LLM weights: f32, f16, q8, q4
        #[arg(long, default_value = "f32")]
        quant: String,
        /// Precision of the vision towers (default: --quant)
        #[arg(long)]
        vision_quant: Option<String>,
        /// tiny (the golden dev widths), wide (every real width, 1 block per ConvNeXt stage, 1
        /// DINOv2 block, 2 LLM layers) or full (SPHINX-Tiny-1k, 3.09 B parameters)
        #[arg(long, default_value = "tiny")]
        size: String,
        /// Replace a non-empty --out folder holding a model this tool wrote (refused otherwise);
        /// written beside it, renamed last
        #[arg(long)]
        force: bool,
    },
    /// Print SPHINX's task table (ids, names, fields, what an answer shows) as JSON: the package's
    /// `TASKS` is written from it when the package is built
    Tasks,
    /// Serve a folder over HTTP (byte ranges, CORS, application/wasm): the local stand-in for the
    /// CDN that hosts the browser build and converted models
    Serve {
        /// Folder to serve
        #[arg(long)]
        root: PathBuf,
        /// Port (0: any free port; the URL is printed)
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind (loopback unless you mean to share it)
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Open connections at most (one more is answered 503). Idle connections close after 20 s,
        /// a request must arrive within 10 s of its first byte, a client that takes no 64 KiB of a
        /// response in 20 s is dropped, and a connection serves at most 1000 requests
        #[arg(long, default_value_t = serve::ServeLimits::default().max_connections)]
        max_connections: usize,
        /// Test only: append one JSON line per request to this file
        #[arg(long)]
        log_requests: Option<PathBuf>,
        /// Test only: drop-after=PATH:BYTES[:TIMES], corrupt=PATH:OFFSET[:TIMES] or
        /// error-page=PATH:STATUS[:TIMES] (repeatable)
        #[arg(long)]
        fault: Vec<String>,
    },
}

/// Most timing repetitions of `bench`.
const MAX_REPS: usize = 10_000;
/// Largest `--shard-mb` (4 GiB: beyond what a browser can fetch into one buffer).
const MAX_SHARD_MB: u64 = 4096;

/// A size flag in 1..=max.
fn sized(max: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max as u64)
}

fn shard_mb_value() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::<u64>::new().range(1..=MAX_SHARD_MB)
}

fn finite_f64(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !v.is_finite() {
        return Err(format!("{v} is not a finite number"));
    }
    Ok(v)
}

fn temperature_value(s: &str) -> std::result::Result<f32, String> {
    let v = finite_f64(s)? as f32;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s}: must be finite and ≥ 0 (0 = greedy)"));
    }
    Ok(v)
}

fn top_p_value(s: &str) -> std::result::Result<f32, String> {
    let v = finite_f64(s)? as f32;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!("{s}: must be in (0, 1]"));
    }
    Ok(v)
}

/// `bench` without a model: the head counts must split the width.
fn check_bench_heads(dim: usize, heads: usize, kv_heads: usize) -> Result<()> {
    if !dim.is_multiple_of(heads) {
        return Err(Error::Config(format!("--heads {heads} does not divide --dim {dim}")));
    }
    if !heads.is_multiple_of(kv_heads) {
        return Err(Error::Config(format!("--kv-heads {kv_heads} does not divide --heads {heads}")));
    }
    Ok(())
}

/// The tokenizer: an explicit file, else `tokenizer.json` / `tokenizer.model` in the model folder.
fn open_tokenizer(model_dir: &Path, explicit: Option<&Path>) -> Result<Tokenizer> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![model_dir.join("tokenizer.json"), model_dir.join("tokenizer.model")],
    };
    for p in &candidates {
        if p.is_file() {
            return Tokenizer::from_file(p);
        }
    }
    Err(Error::Config(format!(
        "no tokenizer: looked for {}; pass --tokenizer FILE (tokenizer.json or tokenizer.model)",
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}

/// Reads and decodes `--image` (before the model loads: a wrong file is said at once).
fn read_image(path: Option<&Path>) -> Result<Option<sphinx::image::Rgb8>> {
    path.map(read_file).transpose()
}

/// Checks an output folder before anything is read or written: it is not, does not contain and
/// does not lie inside any of `inputs`, and it is absent, empty or (with `force`) a model this
/// tool wrote. Returns what `force` will remove, to be said once the new folder is in place.
fn check_output_folder(out: &Path, inputs: &[(&str, &Path)], force: bool) -> Result<Option<Replaced>> {
    check_not_an_input("--out", out, inputs)?;
    replaceable(out, force)
}

/// The inputs of a command that reads model folders and an optional tokenizer file.
fn inputs_of<'a>(folders: &[(&'a str, &'a Path)], tokenizer: Option<&'a Path>) -> Vec<(&'a str, &'a Path)> {
    folders.iter().copied().chain(tokenizer.map(|t| ("the --tokenizer file", t))).collect()
}


/// The LLaMA-2 tokenizer bundled for the demo model.
const DEMO_TOKENIZER: &[u8] = include_bytes!("../../../../assets/tokenizer-llama2.json");

fn quant_choice(quant: &str, vision: Option<&str>) -> Result<QuantChoice> {
    let llm = Quant::parse(quant)?;
    Ok(QuantChoice { llm, vision: vision.map(Quant::parse).transpose()?.unwrap_or(llm) })
}

/// tokenizer.json bytes for a converted folder: an explicit file (json or sentencepiece .model,
/// converted), else the source folder's own.
fn tokenizer_json(dirs: &[&Path], explicit: Option<&Path>) -> Result<Vec<u8>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => dirs.iter().flat_map(|d| [d.join("tokenizer.json"), d.join("tokenizer.model")]).find(|p| p.is_file()).ok_or_else(|| {
            Error::Config(format!(
                "no tokenizer.json or tokenizer.model in {}; pass --tokenizer FILE",
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let name = path.display().to_string();
    let json = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        bytes
    } else {
        sphinx::text::sentencepiece::convert_to_tokenizer_json(&bytes, &name)?.into_bytes()
    };
    // it must load as what the engine will use
    Tokenizer::from_json_bytes(&json, &name)?;
    Ok(json)
}

/// `sphinx run`: one answer streamed to stdout, its speed and (on a GPU) its memory peak against
/// `inspect`'s prediction on stderr.
async fn answer(model: ModelOpts, image: Option<PathBuf>, prompt: String, params: SamplingParams, tokenizer: Option<PathBuf>, print_ids: bool) -> Result<()> {
    let tok = open_tokenizer(&model.model, tokenizer.as_deref())?;
    let rgb = read_image(image.as_deref())?;
    let (m, device, _) = model.load(("auto", "cached")).await?;
    let text = conversation::prompt(&[Message::user(prompt)])?;
    let ids = tok.encode_prompt(&text)?;
    let img = match (image, rgb) {
        (Some(p), Some(rgb)) => {
            let t1 = Instant::now();
            let padded = padded_resize(&rgb, m.llama_type().image_size())?;
            let enc = m.encode_image(&padded, false)?;
            device.sync()?;
            eprintln!("encoded {} in {:.2?}", p.display(), t1.elapsed());
            Some(enc.tokens)
        }
        _ => None,
    };
    let t2 = Instant::now();
    let mut out = std::io::stdout();
    let g = generate(&m, &tok, &ids, img.as_ref(), params, &[], |_, delta| {
        let _ = out.write_all(delta.as_bytes());
        let _ = out.flush();
        true
    })
    .await?;
    println!();
    let secs = t2.elapsed().as_secs_f64();
    eprintln!("{} tokens in {secs:.2} s ({:.2} tokens/s), ended by {:?}", g.ids.len(), g.ids.len() as f64 / secs, g.finish);
    if print_ids {
        eprintln!("ids: {}", g.ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    }
    if let (Device::Gpu(gpu), true) = (&device, model.model.join("manifest.json").is_file()) {
        let f16 = m.precision() == sphinx::nn::Precision::F16;
        let e = sphinx::convert::predict_run(&Manifest::read(&model.model)?, ids.len(), params.max_tokens, img.is_some(), f16);
        let (_, peak) = gpu.memory();
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        eprintln!(
            "GPU memory: peak {:.1} MiB; inspect predicts {:.1} MiB (weights {:.1} + KV cache {:.1} + activations {:.1})",
            mib(peak),
            mib(e.gpu_total()),
            mib(e.weights),
            mib(e.kv_cache),
            mib(e.activations)
        );
    }
    Ok(())
}

/// `sphinx bench --model`: the phases of one question and every linear shape; the device it ran on.
async fn model_bench(opts: ModelOpts, image: Option<PathBuf>, plan: &sphinx::bench::BenchPlan, json: bool) -> Result<Device> {
    let rgb = read_image(image.as_deref())?;
    let t0 = Instant::now();
    let (m, device, tuning) = opts.load(("auto", "cached")).await?;
    device.sync()?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let padded = rgb.map(|rgb| padded_resize(&rgb, m.llama_type().image_size())).transpose()?;
    let ids = plan.prompt_ids(None)?;
    let report = sphinx::bench::model_bench(&m, padded.as_ref(), plan, &ids, Some(load_ms), tuning).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::Msg(e.to_string()))?);
    } else {
        print!("{}", sphinx::bench::format_text(&report));
    }
    Ok(device)
}

/// `sphinx bench` without a model: the kernels at the given LLM shapes ([dim, hidden, vocab,
/// heads, kv_heads]); the device it ran on.
async fn kernel_bench(device: &str, gpu: &GpuOpts, [dim, hidden, vocab, heads, kv_heads]: [usize; 5], reps: usize, roofline: bool, json: bool) -> Result<Device> {
    check_bench_heads(dim, heads, kv_heads)?;
    let device = Device::from_name_with(device, LimitsChoice::parse(&gpu.limits)?).await?;
    let mut rows = sphinx::bench::kernel_benches(&device, dim, hidden, vocab, heads, kv_heads, reps).await?;
    let roof = if roofline { Some(sphinx::bench::roofline::measure(&device, reps).await?) } else { None };
    rows.iter_mut().for_each(|r| roof.iter().for_each(|roof| r.against(roof)));
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "device": format!("{device:?}"), "kernels": rows, "roofline": roof })).map_err(|e| Error::Msg(e.to_string()))?);
    } else {
        let roof = roof.as_ref().map_or(String::new(), sphinx::bench::format_roofline);
        print!("device: {device:?}\n{roof}{}", sphinx::bench::format_kernels(&rows));
    }
    Ok(device)
}

/// The slowest GPU dispatches of a bench, where `SPHINX_PROFILE=1` recorded them.
fn print_profile(device: &Device) {
    if let Device::Gpu(gpu) = device {
        let rows = gpu.profile_report();
        if !rows.is_empty() {
            let total: f64 = rows.iter().map(|r| r.2).sum();
            println!("slowest dispatches (SPHINX_PROFILE=1; {total:.3} s in all):");
            for (name, calls, secs) in rows.iter().take(30) {
                println!("{secs:10.3} s {calls:6}×  {name}");
            }
        }
    }
}

/// `sphinx inspect`: a converted folder's manifest, an upstream checkpoint's tensors, or a preset's
/// full-size parameters, with the memory table.
fn inspect(dir: Option<PathBuf>, preset: Option<String>) -> Result<()> {
    match (dir, preset) {
        (Some(dir), None) => {
            if dir.join("manifest.json").is_file() {
                print!("{}", describe_manifest(&Manifest::read(&dir)?));
            } else {
                let m = sphinx::load::open(&dir)?;
                let params: Vec<(String, Vec<usize>)> = m.source.names().into_iter().filter_map(|n| m.source.shape(&n).map(|s| (n, s))).collect();
                println!("upstream checkpoint {} ({}), {} tensors", m.config.llama_type.name(), m.config.llama_type.release(), params.len());
                print!("{}", memory_table(&m.config, &params));
            }
        }
        (None, Some(p)) => {
            let t = LlamaType::parse(&p)?;
            let cfg = params::preset(t);
            let params = parameter_shapes(&cfg, CLIP_TEXT_FULL);
            let n: usize = params.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
            println!("{} ({}), full size: {} parameters in {} tensors", t.name(), t.release(), n, params.len());
            print!("{}", memory_table(&cfg, &params));
        }
        _ => return Err(Error::Config("inspect takes a folder or --preset LLAMA_TYPE".into())),
    }
    Ok(())
}

/// `sphinx mix`: two checkpoints' weights mixed (WiSE-FT style) into a converted folder.
fn mix_cmd(beta: f64, extrapolate: bool, only: Option<String>, w: Written, a: PathBuf, b: PathBuf) -> Result<()> {
    if !extrapolate && !(0.0..=1.0).contains(&beta) {
        return Err(Error::Config(format!("--beta {beta}: must be in [0, 1] (pass --extrapolate for a β outside it)")));
    }
    let only_llm = match only.as_deref() {
        None => false,
        Some("llm") => true,
        Some(other) => return Err(Error::Config(format!("--only {other}: the only group is llm"))),
    };
    let (replacing, choice, tok) = w.prepare(&[("model folder A", &a), ("model folder B", &b)])?;
    let (mut ma, mut mb) = (sphinx::load::open(&a)?, sphinx::load::open(&b)?);
    let manifest = mix(&mut ma, &mut mb, beta, only_llm, &w.out, choice, w.shard_mb << 20, Some(&tok), w.force)?;
    replacing.iter().for_each(|r| eprintln!("{r}"));
    print!("{}", describe_manifest(&manifest));
    Ok(())
}

async fn main_async(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { model, image, prompt, temperature, top_p, seed, max_tokens, tokenizer, print_ids } => {
            let params = SamplingParams { temperature, top_p, seed, max_tokens };
            answer(model, image, prompt, params, tokenizer, print_ids).await?;
        }
        Command::Trace { model, image, prompt_ids, steps, out } => {
            let inputs: Vec<(&str, &Path)> = [("the --model folder", model.model.as_path())].into_iter().chain(image.as_deref().map(|i| ("the --image file", i))).collect();
            check_not_an_input("--out", &out, &inputs)?;
            let rgb = read_image(image.as_deref())?;
            let (m, _device, _) = model.load(("f32", "off")).await?;
            let padded = rgb.map(|rgb| padded_resize(&rgb, m.llama_type().image_size())).transpose()?;
            let t1 = Instant::now();
            let traced = trace(&m, padded.as_ref(), &prompt_ids, steps).await?;
            eprintln!("traced in {:.2?}", t1.elapsed());
            write_safetensors(&out, &traced)?;
            let names: Vec<&str> = traced.iter().map(|t| t.name.as_str()).collect();
            eprintln!("wrote {} ({})", out.display(), names.join(", "));
        }
        Command::Convert { from, written: w } => {
            let (replacing, choice, tok) = w.prepare(&[("the --from folder", &from)])?;
            let mut m = sphinx::load::open(&from)?;
            let t0 = Instant::now();
            let manifest = convert(m.source.as_mut(), &m.config, &w.out, choice, w.shard_mb << 20, Some(&tok), w.force)?;
            eprintln!("converted {} in {:.2?}", from.display(), t0.elapsed());
            replacing.iter().for_each(|r| eprintln!("{r}"));
            print!("{}", describe_manifest(&manifest));
        }
        Command::Mix { beta, extrapolate, only, written, a, b } => mix_cmd(beta, extrapolate, only, written, a, b)?,
        Command::Inspect { dir, preset } => inspect(dir, preset)?,
        Command::DemoModel { out, seed, quant, vision_quant, size, force } => {
            let replacing = check_output_folder(&out, &[], force)?;
            let choice = quant_choice(&quant, vision_quant.as_deref())?;
            let t0 = Instant::now();
            let manifest = demo_model(&DemoSize::parse(&size)?.config(), &out, seed, choice, DEMO_TOKENIZER, force)?;
            eprintln!("{size} model written in {:.1?}", t0.elapsed());
            replacing.iter().for_each(|r| eprintln!("{r}"));
            eprintln!("wrote the random-weight demo model to {}", out.display());
            print!("{}", describe_manifest(&manifest));
        }
        Command::Tasks => println!("{}", serde_json::to_string(&sphinx::text::tasks::TASKS).map_err(|e| Error::Msg(e.to_string()))?),
        Command::Serve { root, port, host, max_connections, log_requests, fault } => {
            let faults = fault.iter().map(|f| serve::Fault::parse(f)).collect::<Result<Vec<_>>>()?;
            let limits = serve::ServeLimits { max_connections, ..Default::default() };
            let server = serve::Server::bind(serve::ServeOptions { root, host, port, log_requests, faults, limits })?;
            println!("serving {} at {}", server.root().display(), server.url()?);
            let _ = std::io::stdout().flush();
            server.run()?;
        }
        Command::Bench { model, device, gpu, image, tokens, prompt_tokens, json, roofline, dim, hidden, vocab, heads, kv_heads, reps } => {
            let plan = sphinx::bench::BenchPlan { tokens, prompt_tokens, reps: reps.unwrap_or(1), text: None, roofline };
            let device = match model {
                Some(dir) => model_bench(ModelOpts { model: dir, device, max_seq_len: DEFAULT_MAX_SEQ_LEN, gpu }, image, &plan, json).await?,
                None => kernel_bench(&device, &gpu, [dim, hidden, vocab, heads, kv_heads], reps.unwrap_or(5), roofline, json).await?,
            };
            print_profile(&device);
        }
    }
    Ok(())
}

fn main() {
    // a refused argument exits 1 like every other refused input (help and --version exit 0)
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 });
    });
    if let Err(e) = pollster::block_on(main_async(cli)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
