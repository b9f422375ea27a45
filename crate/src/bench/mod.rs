//! Benchmarks (`sphinx bench`, the bench page `www/bench.html`): a model's phases — load, image
//! encode (and each vision tower alone), prefill, decode with tokens/s against the bandwidth it
//! implies — and every linear shape the model multiplies, each with the kernel variant that runs
//! it, on the device in hand. One async code path natively and in the browser. Timings only: no
//! test asserts on them.

use crate::image::ImageTensor;
use crate::kernels::attention::attention_into;
use crate::shapes::Attn;
use crate::shapes::Strided;
use crate::kernels::tune::{self, median, TuneReport, TuningOf};
use crate::io::quant::{Packed, Quant};
use crate::models::sphinx::Sphinx;
use crate::nn::Linear;
use crate::tensor::{Device, Tensor};
use crate::Result;

pub mod roofline;
pub use roofline::Roofline;

/// A phase of a question: "load", "encode", "encode convnext", "prefill", "decode".
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub name: String,
    pub ms: f64,
    pub detail: String,
}

/// One kernel case.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelRow {
    pub name: String,
    pub variant: String,
    pub tuned: bool,
    pub ms: f64,
    pub gflops: f64,
    pub gbps: f64,
    /// With a roofline: gflops ÷ its GEMM peak, gbps ÷ its bandwidth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_share: Option<f64>,
}

impl KernelRow {
    /// This row as shares of `roof`.
    pub fn against(&mut self, roof: &Roofline) {
        (self.compute_share, self.bandwidth_share) = (Some(self.gflops / roof.gemm_gflops), Some(self.gbps / roof.bandwidth()));
    }
}

/// A phase against the device's limit: what it reached, in `unit`, and its share of `limit`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Efficiency {
    pub phase: String,
    pub unit: String,
    pub reached: f64,
    pub limit: f64,
    pub share: f64,
}

/// Decode speed against the bandwidth it implies.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecodeRate {
    pub tokens: usize,
    pub tokens_per_second: f64,
    /// Weights of the decoder read per token plus the mean KV cache read.
    pub bytes_per_token: f64,
    /// bytes_per_token × tokens_per_second.
    pub gb_per_second: f64,
}

/// Everything a bench run measured.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub device: String,
    pub precision: String,
    pub autotune: Option<TuneReport>,
    pub phases: Vec<Phase>,
    pub kernels: Vec<KernelRow>,
    pub decode: Option<DecodeRate>,
    pub gpu_peak_bytes: u64,
    /// Prompt ids of the prefill (the image's positions come on top).
    pub prompt_tokens: usize,
    /// prompt_tokens ÷ the median prefill time (text prompts: what llama-bench's pp reports).
    pub prefill_tokens_per_second: f64,
    pub reps: usize,
    /// The greedy ids of the last rep (the first from the prefill).
    pub ids: Vec<u32>,
    /// The operations (2 per multiply-add) of one image encode's matrix products and attention,
    /// in GFLOP.
    pub encode_gflop: Option<f64>,
    /// Likewise for one prefill.
    pub prefill_gflop: f64,
    /// The device's limits measured in this run (`roofline` in the plan) and each phase against them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roofline: Option<Roofline>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub efficiency: Vec<Efficiency>,
}

impl Report {
    /// Decode against the read bandwidth, prefill and encode against the GEMM peak, every kernel
    /// row against both.
    fn against(&mut self, roof: Roofline) {
        let phase = |name: &str| self.phases.iter().find(|p| p.name == name).map(|p| p.ms);
        let mut e = Vec::new();
        let mut push = |phase: &str, unit: &str, reached: f64, limit: f64| e.push(Efficiency { phase: phase.into(), unit: unit.into(), reached, limit, share: reached / limit });
        if let Some(d) = &self.decode {
            push("decode", "GB/s", d.gb_per_second, roof.bandwidth());
        }
        if let Some(ms) = phase("prefill") {
            push("prefill", "GFLOP/s", self.prefill_gflop / (ms / 1e3), roof.gemm_gflops);
        }
        if let (Some(ms), Some(g)) = (phase("encode"), self.encode_gflop) {
            push("encode", "GFLOP/s", g / (ms / 1e3), roof.gemm_gflops);
        }
        self.efficiency = e;
        for k in &mut self.kernels {
            k.against(&roof);
        }
        self.roofline = Some(roof);
    }
}

/// Waits until the device has done everything recorded.
async fn done(device: &Device) -> Result<()> {
    match device {
        Device::Gpu(g) => g.idle().await,
        Device::Cpu => Ok(()),
    }
}

/// Milliseconds `f` takes on the device, with its result.
async fn timed<T>(device: &Device, f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    done(device).await?;
    let t0 = web_time::Instant::now();
    let v = f()?;
    done(device).await?;
    Ok((t0.elapsed().as_secs_f64() * 1e3, v))
}

fn row(name: String, variant: &str, tuned: bool, secs: f64, flop: f64, bytes: f64) -> KernelRow {
    KernelRow { name, variant: variant.into(), tuned, ms: secs * 1e3, gflops: flop / secs / 1e9, gbps: bytes / secs / 1e9, compute_share: None, bandwidth_share: None }
}

/// What a model bench runs: `tokens` greedy decode steps after a prompt of `prompt_tokens` ids
/// ([`bench_prompt`]; or, when `text` is given, BOS and its tokens: what an engine with its own
/// tokenizer is given to compare), `reps` times (the phases report medians).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BenchPlan {
    pub tokens: usize,
    pub prompt_tokens: usize,
    pub reps: usize,
    pub text: Option<String>,
    /// Also measure the device's limits ([`roofline::measure`]) and report each phase against them.
    pub roofline: bool,
}

impl Default for BenchPlan {
    fn default() -> Self {
        BenchPlan { tokens: 16, prompt_tokens: 48, reps: 1, text: None, roofline: false }
    }
}

impl BenchPlan {
    /// The prompt ids: `text` through `tokenizer` (BOS first), else [`bench_prompt`].
    pub fn prompt_ids(&self, tokenizer: Option<&crate::text::Tokenizer>) -> Result<Vec<u32>> {
        match (&self.text, tokenizer) {
            (Some(text), Some(t)) => t.encode_prompt(text),
            (Some(_), None) => Err(crate::Error::Config("bench: a prompt text needs the model's tokenizer".into())),
            (None, _) => Ok(bench_prompt(self.prompt_tokens)),
        }
    }
}

/// The bench's prompt: BOS, then ids 101, 102, … (`n` ids in all; the same ids go to the peers).
pub fn bench_prompt(n: usize) -> Vec<u32> {
    (0..n.max(1) as u32).map(|i| if i == 0 { 1 } else { 100 + i }).collect()
}

/// The phases of one question about `padded` (or a text prompt) as `plan` says, and every linear
/// shape of the model with its variant. `load_ms`: the load time, if measured.
pub async fn model_bench(model: &Sphinx, padded: Option<&ImageTensor>, plan: &BenchPlan, ids: &[u32], load_ms: Option<f64>, autotune: Option<TuneReport>) -> Result<Report> {
    let device = model.device();
    let reps = plan.reps.max(1);
    let mut phases = Vec::new();
    if let Some(ms) = load_ms {
        phases.push(Phase { name: "load".into(), ms, detail: String::new() });
    }
    let mut image = None;
    let mut encode_gflop = None;
    if let Some(p) = padded {
        let mut times = Vec::new();
        let flops0 = crate::flops::total();
        for _ in 0..reps {
            let (ms, enc) = timed(&device, || model.encode_image(p, false)).await?;
            times.push(ms);
            image = Some(enc.tokens);
        }
        let words = image.as_ref().map_or(0, |t| t.rows());
        let ms = median(times);
        let gflop = (crate::flops::total() - flops0) as f64 / reps as f64 / 1e9;
        let detail = format!("{words} image tokens, {gflop:.1} GFLOP in matrix products and attention: {:.1} GFLOP/s", gflop / (ms / 1e3));
        encode_gflop = Some(gflop);
        phases.push(Phase { name: "encode".into(), ms, detail });
        for tower in model.towers() {
            let (ms, _) = timed(&device, || model.encode_tower(p, tower)).await?;
            phases.push(Phase { name: format!("encode {tower}"), ms, detail: "alone".into() });
        }
    }
    let (mut prefill, mut decode, mut out_ids, mut positions, mut flops) = (Vec::new(), Vec::new(), Vec::new(), 0, 0);
    // an untimed round first, the prompt and one step, as llama-bench does (first touches of
    // memory, pipeline compiles, the thread pool's start)
    for rep in 0..=reps {
        let steps = if rep == 0 { plan.tokens.min(1) } else { plan.tokens };
        let mut cache = model.llm.new_cache(ids.len() + image.as_ref().map_or(0, |t| t.rows()) + plan.tokens + 1)?;
        let flops0 = crate::flops::total();
        let (ms, logits) = timed(&device, || model.prefill(&mut cache, ids, image.as_ref())).await?;
        flops = crate::flops::total() - flops0;
        prefill.push(ms);
        positions = cache.len;
        let mut id = crate::generate::argmax(&logits.to_vec().await?);
        out_ids = vec![id];
        let t0 = web_time::Instant::now();
        for _ in 0..steps {
            id = crate::generate::argmax(&model.decode(&mut cache, id)?.to_vec().await?);
            out_ids.push(id);
        }
        out_ids.pop(); // the ids a generation of `tokens` tokens gives (the last step's is extra)
        decode.push(t0.elapsed().as_secs_f64() * 1e3);
        if rep == 0 {
            (prefill, decode) = (Vec::new(), Vec::new());
        }
    }
    let (prefill_ms, decode_ms) = (median(prefill), median(decode));
    phases.push(Phase { name: "prefill".into(), ms: prefill_ms, detail: format!("{positions} positions") });
    phases.push(Phase { name: "decode".into(), ms: decode_ms, detail: format!("{} tokens", plan.tokens) });
    let (kernels, peak) = match &device {
        Device::Gpu(g) => (shape_rows(g).await?, g.memory().1),
        Device::Cpu => (Vec::new(), 0),
    };
    let l = &model.config.llm;
    let kv_elem = if model.llm.kv_f16 { 2.0 } else { 4.0 };
    let kv_bytes = 2.0 * (l.n_layers * l.n_kv_heads * l.head_dim) as f64 * kv_elem * (positions as f64 + plan.tokens as f64 / 2.0);
    let decode = (plan.tokens > 0).then(|| {
        let tps = plan.tokens as f64 / (decode_ms / 1e3);
        let bpt = model.llm.decode_weight_bytes() as f64 + kv_bytes;
        DecodeRate { tokens: plan.tokens, tokens_per_second: tps, bytes_per_token: bpt, gb_per_second: bpt * tps / 1e9 }
    });
    let precision = format!("{:?}", model.precision()).to_lowercase();
    let prefill_tps = ids.len() as f64 / (prefill_ms / 1e3);
    let (prefill_gflop, roofline, efficiency) = (flops as f64 / 1e9, None, Vec::new());
    let mut report = Report { device: device_name(&device), precision, autotune, phases, kernels, decode, gpu_peak_bytes: peak, prompt_tokens: ids.len(), prefill_tokens_per_second: prefill_tps, reps, ids: out_ids, encode_gflop, prefill_gflop, roofline, efficiency };
    if plan.roofline {
        report.against(roofline::measure(&device, reps.max(3)).await?);
    }
    Ok(report)
}

/// The device in words: the adapter, or the CPU backend's SIMD level and threads.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({})", crate::cpu::describe()),
        Device::Gpu(_) => format!("{device:?}"),
    }
}

/// Every registered linear shape at its tuning rows, with the variant chosen for it.
async fn shape_rows(g: &std::sync::Arc<crate::runtime::Gpu>) -> Result<Vec<KernelRow>> {
    let shapes = g.tuning().shapes();
    let mut rows = Vec::new();
    for (s, count) in shapes {
        let (secs, variant, tuned) = tune::time_shape(g, s).await?;
        let m = s.rows(g);
        let bytes = tune::weight_bytes(&s) as f64 + 4.0 * (m * (s.k + s.n)) as f64;
        rows.push(row(format!("{} ×{count} ({m} rows)", s.key()), variant, tuned, secs, s.flops(g), bytes));
    }
    Ok(rows)
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Median milliseconds of `f` over `reps` runs after a warm-up.
async fn median_ms(device: &Device, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    timed(device, &mut f).await?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        times.push(timed(device, &mut f).await?.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The CPU backend's f32 GEMM at 1536³ (the `matrixmultiply` kernels split over the threads):
/// what this machine's f32 matrix products reach, for the efficiency of the others.
pub fn cpu_gemm_peak(reps: usize) -> Result<KernelRow> {
    let n = 1536;
    let (x, w) = (rand_vec(n * n, 7), rand_vec(n * n, 8));
    let mut y = vec![0f32; n * n];
    let mut times = Vec::new();
    for _ in 0..reps.max(1) + 1 {
        let t0 = web_time::Instant::now();
        crate::cpu::gemm::matmul(&mut y, n, 0, &x, n, crate::cpu::gemm::Weights::F32(&w), n, n, None);
        times.push(t0.elapsed().as_secs_f64());
    }
    let secs = median(times[1..].to_vec());
    Ok(row(format!("f32 GEMM {n}x{n}x{n} (peak)"), "matrixmultiply", false, secs, 2.0 * (n * n * n) as f64, 12.0 * (n * n) as f64))
}

/// Without a model: linear layers (f32 and the packed formats) and decode attention at the shapes
/// of a model with `dim`, `hidden`, `vocab`, `heads`/`kv_heads`.
pub async fn kernel_benches(device: &Device, dim: usize, hidden: usize, vocab: usize, heads: usize, kv_heads: usize, reps: usize) -> Result<Vec<KernelRow>> {
    if [dim, hidden, vocab, heads, kv_heads, reps].contains(&0) || !dim.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads) {
        return Err(crate::Error::Config(format!(
            "bench sizes: dim {dim}, hidden {hidden}, vocab {vocab}, heads {heads}, kv_heads {kv_heads}, reps {reps} must be ≥ 1, heads dividing dim and kv_heads dividing heads"
        )));
    }
    let mut rows = Vec::new();
    if !device.is_gpu() {
        rows.push(cpu_gemm_peak(reps)?);
    }
    let cases = [(1, hidden, dim, "decode ffn w1"), (1, vocab, dim, "decode output"), (256, hidden, dim, "prefill ffn w1")];
    for q in [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4] {
        for &(m, n, k, what) in &cases {
            let x = Tensor::from_vec(device, &[m, k], rand_vec(m * k, 1))?;
            // through nn::Linear: weights above the storage-binding limit are split into row chunks
            let w = Linear::from_packed(device, Packed::quantize(q, &rand_vec(n * k, 2), n, k), None)?;
            let ms = median_ms(device, reps, || w.forward(&x).map(|_| ())).await?;
            let (variant, tuned) = match device {
                Device::Gpu(g) => {
                    let (format, rows) = w.first_chunk();
                    tune::chosen_name(g, format, m, rows, k)
                }
                Device::Cpu => ("cpu", false),
            };
            rows.push(row(format!("linear {q} {what} {m}x{n}x{k}"), variant, tuned, ms / 1e3, 2.0 * (m * n * k) as f64, q.bytes(n, k) as f64 + 4.0 * (m * k) as f64));
        }
    }
    let hd = dim / heads.max(1);
    for &kv_len in &[64usize, 1344] {
        let q = Tensor::from_vec(device, &[1, heads * hd], rand_vec(heads * hd, 3))?;
        let kc = Tensor::from_vec(device, &[kv_len, kv_heads * hd], rand_vec(kv_len * kv_heads * hd, 4))?;
        let vc = Tensor::from_vec(device, &[kv_len, kv_heads * hd], rand_vec(kv_len * kv_heads * hd, 5))?;
        let mut o = Tensor::empty(device, &[1, heads * hd])?;
        let a = Attn { batch: 1, q_len: 1, kv_len, n_heads: heads, n_kv_heads: kv_heads, head_dim: hd, causal: true, q_pos0: kv_len - 1, scale: 0.125 };
        let (qs, ks) = (Strided::rows(0, heads * hd), Strided::rows(0, kv_heads * hd));
        let ms = median_ms(device, reps, || attention_into(&mut o, qs, &q, qs, &kc, ks, &vc, ks, &a)).await?;
        rows.push(row(format!("attention decode kv={kv_len} h={heads}/{kv_heads} d={hd}"), "attention", false, ms / 1e3, 4.0 * (kv_len * heads * hd) as f64, 8.0 * (kv_len * kv_heads * hd) as f64));
    }
    Ok(rows)
}

/// The report as text tables.
pub fn format_text(r: &Report) -> String {
    let mut s = format!("device: {}\nprecision: {}\n", r.device, r.precision);
    if let Some(a) = &r.autotune {
        s += &format!("autotune: {} ({}): {} shapes, {} cached, {} tuned, {} too small, {} past the budget, {:.0} ms\n", a.mode, a.timer, a.shapes, a.cached, a.tuned, a.small, a.skipped, a.ms);
    }
    for p in &r.phases {
        s += &format!("{:<20} {:>12.1} ms  {}\n", p.name, p.ms, p.detail);
    }
    s += &format!("prefill: {:.1} tokens/s ({} prompt tokens, median of {})\n", r.prefill_tokens_per_second, r.prompt_tokens, r.reps);
    if let Some(d) = &r.decode {
        s += &format!("decode: {:.2} tokens/s, {:.1} MB per token → {:.2} GB/s\n", d.tokens_per_second, d.bytes_per_token / 1e6, d.gb_per_second);
    }
    if let Some(roof) = &r.roofline {
        s += &format_roofline(roof);
        for e in &r.efficiency {
            s += &format!("  {:<8} {:>10.2} {:<8} = {:>5.1} % of {:.1}\n", e.phase, e.reached, e.unit, 100.0 * e.share, e.limit);
        }
    }
    if r.gpu_peak_bytes > 0 {
        s += &format!("GPU memory peak: {:.1} MiB\n", r.gpu_peak_bytes as f64 / (1u64 << 20) as f64);
    }
    s + &format_kernels(&r.kernels)
}

/// The device's limits in a line.
pub fn format_roofline(roof: &Roofline) -> String {
    let [m, n, k] = roof.gemm_shape;
    let texture = roof.texture_read_gbps.map_or(String::new(), |t| format!(", texture read {t:.1} GB/s"));
    format!(
        "roofline: read {:.1} GB/s{texture}, copy {:.1} GB/s (read + written, {} MiB), f32 GEMM {:.1} GFLOP/s ({} at {m}x{n}x{k})\n",
        roof.read_gbps,
        roof.copy_gbps,
        roof.bytes >> 20,
        roof.gemm_gflops,
        roof.gemm_kernel
    )
}

/// Kernel rows as a text table (with their shares of the roofline where measured).
pub fn format_kernels(rows: &[KernelRow]) -> String {
    let mut s = format!("{:<52} {:<14} {:>10} {:>10} {:>9} {:>8} {:>8}\n", "kernel", "variant", "ms", "GFLOP/s", "GB/s", "% GEMM", "% bw");
    let pct = |v: Option<f64>| v.map_or(String::new(), |v| format!("{:.1}", 100.0 * v));
    for k in rows {
        let v = format!("{}{}", k.variant, if k.tuned { " (tuned)" } else { "" });
        s += &format!("{:<52} {:<14} {:>10.3} {:>10.2} {:>9.2} {:>8} {:>8}\n", k.name, v, k.ms, k.gflops, k.gbps, pct(k.compute_share), pct(k.bandwidth_share));
    }
    s
}
