//! The `sphinx` command line: run, trace (and the weight tools). A thin shell over the library.

use clap::{Parser, Subcommand};
use sphinx::generate::{generate, SamplingParams};
use sphinx::image::{decode, padded_resize};
use sphinx::load::{load_model, DEFAULT_MAX_SEQ_LEN};
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
    /// Where to run: gpu (wgpu; an error when there is no adapter) or cpu
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Longest sequence (positions) the model may see; upstream's default is 4096
    #[arg(long, default_value_t = DEFAULT_MAX_SEQ_LEN)]
    max_seq_len: usize,
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
        /// 0 = greedy (upstream SPHINXModel default 0.1)
        #[arg(long, default_value_t = 0.1)]
        temperature: f32,
        #[arg(long, default_value_t = 0.5)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// tokenizer.json or tokenizer.model (default: the one in the model folder)
        #[arg(long)]
        tokenizer: Option<PathBuf>,
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
        /// Logit rows to produce: prefill + steps-1 greedy decode steps
        #[arg(long, default_value_t = 8)]
        steps: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time the kernels at SPHINX shapes (defaults: SPHINX-Tiny-1k's LLM) and, with --model, a
    /// whole question: load, image encode, prefill, decode
    Bench {
        #[arg(long, default_value = "gpu")]
        device: String,
        #[arg(long, default_value_t = 2048)]
        dim: usize,
        #[arg(long, default_value_t = 5632)]
        hidden: usize,
        #[arg(long, default_value_t = 32000)]
        vocab: usize,
        #[arg(long, default_value_t = 32)]
        heads: usize,
        #[arg(long, default_value_t = 4)]
        kv_heads: usize,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Also time a model end to end
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        tokens: usize,
    },
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

fn read_image(path: &Path, size: usize) -> Result<sphinx::image::ImageTensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let rgb = decode(&bytes).map_err(|e| Error::format(path.display(), e))?;
    padded_resize(&rgb, size)
}

async fn main_async(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { model, image, prompt, temperature, top_p, seed, max_tokens, tokenizer } => {
            let device = Device::from_name(&model.device).await?;
            let tok = open_tokenizer(&model.model, tokenizer.as_deref())?;
            let t0 = Instant::now();
            let m = load_model(&model.model, &device, model.max_seq_len)?;
            eprintln!("loaded {} ({}) on {device:?} in {:.2?}", m.llama_type().release(), model.model.display(), t0.elapsed());
            let text = conversation::prompt(&[Message::user(prompt)])?;
            let ids = tok.encode_prompt(&text)?;
            let img = match image {
                Some(p) => {
                    let t1 = Instant::now();
                    let padded = read_image(&p, m.llama_type().image_size())?;
                    let enc = m.encode_image(&padded, false)?;
                    device.sync()?;
                    eprintln!("encoded {} in {:.2?}", p.display(), t1.elapsed());
                    Some(enc.tokens)
                }
                None => None,
            };
            let params = SamplingParams { temperature, top_p, seed, max_tokens };
            let t2 = Instant::now();
            let mut out = std::io::stdout();
            let g = generate(&m, &tok, &ids, img.as_ref(), params, |_, delta| {
                let _ = out.write_all(delta.as_bytes());
                let _ = out.flush();
                true
            })
            .await?;
            println!();
            let secs = t2.elapsed().as_secs_f64();
            eprintln!("{} tokens in {secs:.2} s ({:.2} tokens/s), ended by {:?}", g.ids.len(), g.ids.len() as f64 / secs, g.finish);
        }
        Command::Trace { model, image, prompt_ids, steps, out } => {
            let device = Device::from_name(&model.device).await?;
            let t0 = Instant::now();
            let m = load_model(&model.model, &device, model.max_seq_len)?;
            eprintln!("loaded {} on {device:?} in {:.2?}", m.llama_type().release(), t0.elapsed());
            let padded = match image {
                Some(p) => Some(read_image(&p, m.llama_type().image_size())?),
                None => None,
            };
            let t1 = Instant::now();
            let traced = trace(&m, padded.as_ref(), &prompt_ids, steps).await?;
            eprintln!("traced in {:.2?}", t1.elapsed());
            write_safetensors(&out, &traced)?;
            let names: Vec<&str> = traced.iter().map(|t| t.name.as_str()).collect();
            eprintln!("wrote {} ({})", out.display(), names.join(", "));
        }
        Command::Bench { device, dim, hidden, vocab, heads, kv_heads, reps, model, image, tokens } => {
            let device = Device::from_name(&device).await?;
            println!("device: {device:?}");
            for row in sphinx::bench::kernel_benches(&device, dim, hidden, vocab, heads, kv_heads, reps)? {
                println!("{row}");
            }
            if let Some(dir) = model {
                let t0 = Instant::now();
                let m = load_model(&dir, &device, DEFAULT_MAX_SEQ_LEN)?;
                device.sync()?;
                println!("load {}: {:.3} s", dir.display(), t0.elapsed().as_secs_f64());
                let img = match image {
                    Some(p) => {
                        let padded = read_image(&p, m.llama_type().image_size())?;
                        let t1 = Instant::now();
                        let enc = m.encode_image(&padded, false)?;
                        device.sync()?;
                        println!("image encode: {:.3} s", t1.elapsed().as_secs_f64());
                        Some(enc.tokens)
                    }
                    None => None,
                };
                let ids: Vec<u32> = (0..48).map(|i| if i == 0 { 1 } else { 100 + i }).collect();
                let mut cache = m.llm.new_cache(ids.len() + img.as_ref().map_or(0, |t| t.rows()) + tokens)?;
                let t2 = Instant::now();
                let logits = m.prefill(&mut cache, &ids, img.as_ref())?.to_vec().await?;
                println!("prefill {} positions: {:.3} s", cache.len, t2.elapsed().as_secs_f64());
                let mut id = sphinx::generate::argmax(&logits);
                let t3 = Instant::now();
                for _ in 0..tokens {
                    id = sphinx::generate::argmax(&m.decode(&mut cache, id)?.to_vec().await?);
                }
                let s = t3.elapsed().as_secs_f64();
                println!("decode {tokens} tokens: {s:.3} s ({:.2} tokens/s)", tokens as f64 / s);
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = pollster::block_on(main_async(cli)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
