//! On-device autotuning of the linear kernels: for each weight shape a model uses (registered as its
//! Linear layers are uploaded), every variant that can take the problem is timed on this device —
//! with GPU timestamp queries where the adapter has `timestamp-query`, else fenced wall time — at a
//! decode size (1 row) and a batch size ([`BATCH_ROWS`] rows; fewer on software adapters), and the
//! fastest is kept. Problems too small for the choice to matter ([`MIN_FLOPS`]) keep the default
//! without being timed, and once the time budget is spent the rest keep theirs too. Choices are
//! cached keyed by adapter, engine version (crate version + a hash of the kernel sources) and shape
//! ([`TuneCache`], a JSON file natively and in the browser's storage), so a later load only looks
//! them up. Untuned shapes run [`default_variant`].

use super::linear::{default_variant, kernel_sources, linear_into_variant, Body, Store, Variant, WeightFormat, MATVEC_MAX_ROWS, VARIANTS};
use super::qlinear::{qlinear_into_variant, QWeight};
use crate::io::quant::{Packed, Quant};
use crate::runtime::Gpu;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Which row counts a layer's matrix products see: decode steps (a few rows), batches (prefill,
/// the vision towers), or both. Autotuning tunes only those classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Both,
    Decode,
    Batch,
}

/// Rows of the batch-class problem a shape is tuned at (prefill and vision run thousands of rows;
/// the relative speed of the variants settles well before that), and on software adapters.
pub const BATCH_ROWS: usize = 256;
const SOFTWARE_BATCH_ROWS: usize = 64;
/// Problems of fewer floating-point operations keep the default variant untimed: launch and
/// synchronisation costs swamp the differences between variants.
pub const MIN_FLOPS: f64 = 1e6;
/// Timed runs per variant (after one warm-up).
const REPS: usize = 3;
/// Timing stops after this much wall time on one load, checked before each candidate and after its
/// pipeline compiles; the remaining shapes run the default variants for this load and are not
/// cached, so a later load times them. Software adapters at full size would otherwise take minutes.
pub const BUDGET_S: f64 = 3.0;
/// A variant replaces the default only when its median over [`ROUNDS`] alternating timings beats
/// the default's by this fraction: a choice within the timing noise could make a phase slower.
pub const MARGIN: f64 = 0.10;
/// Alternating timing rounds of the best candidate against the default.
const ROUNDS: usize = 3;

/// What autotuning does at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutotuneMode {
    /// Use cached choices; tune (and cache) only the shapes not in the cache.
    Cached,
    /// Tune every shape again.
    Fresh,
    /// Run the default variants.
    Off,
}

impl AutotuneMode {
    pub fn parse(s: &str) -> Result<AutotuneMode> {
        match s {
            "cached" => Ok(AutotuneMode::Cached),
            "fresh" => Ok(AutotuneMode::Fresh),
            "off" => Ok(AutotuneMode::Off),
            other => Err(Error::Config(format!("autotune {other:?}: expected cached, fresh or off"))),
        }
    }
}

/// A linear problem class: weight format, decode (≤ 4 rows) or batch rows, outputs n, inputs k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    pub format: WeightFormat,
    pub decode: bool,
    pub n: usize,
    pub k: usize,
}

impl Shape {
    pub fn of(format: WeightFormat, m: usize, n: usize, k: usize) -> Shape {
        Shape { format, decode: m <= MATVEC_MAX_ROWS, n, k }
    }

    /// The cache key: "q4 decode 5632x2048".
    pub fn key(&self) -> String {
        let f = serde_json::to_value(self.format).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        format!("{f} {} {}x{}", if self.decode { "decode" } else { "batch" }, self.n, self.k)
    }

    /// Rows of the problem this shape is tuned and benchmarked at.
    pub fn rows(&self, gpu: &Gpu) -> usize {
        match (self.decode, gpu.info.software) {
            (true, _) => 1,
            (false, true) => SOFTWARE_BATCH_ROWS,
            (false, false) => BATCH_ROWS,
        }
    }

    pub fn flops(&self, gpu: &Gpu) -> f64 {
        2.0 * (self.rows(gpu) * self.n * self.k) as f64
    }

    /// The variants worth timing: the decode class's matvec shapes, the batch class's tiles and
    /// register blocks, and one invocation per output for short rows; each one that takes the
    /// problem. Software adapters (lavapipe, SwiftShader) compile a pipeline in about a second, so
    /// they time a short list: no tiles (2–5x slower there), the register blocks that read x from
    /// a texture or by 16 rows, one or two of each other kind, and the default.
    fn candidates(&self, gpu: &Gpu) -> Vec<&'static Variant> {
        const SOFTWARE: [&str; 6] = ["texels16", "texels8", "vec4r16", "small64", "matvec8x32", "rows8"];
        let m = self.rows(gpu);
        let default = default_variant(gpu, self.format, m, self.n, self.k);
        VARIANTS
            .iter()
            .filter(|v| match v.body {
                Body::Matvec | Body::Rows | Body::Subgroup => self.decode,
                Body::Tiled => !self.decode,
                Body::Vec4 | Body::Vec4Texels => !self.decode,
                Body::Small => self.k <= 128 || (!self.decode && self.n < 64),
            })
            .filter(|v| !gpu.info.software || SOFTWARE.contains(&v.name) || *v == default)
            .filter(|v| v.takes(gpu, self.format, m, self.n, self.k))
            .collect()
    }
}

/// The tuning state of one device: the shapes its models use (with how many weights have each)
/// and the chosen variants.
#[derive(Default)]
pub struct Tuning {
    shapes: BTreeMap<Shape, usize>,
    chosen: HashMap<Shape, &'static Variant>,
}

/// The tuner's state on a device, kept by the runtime ([`Gpu::state`]).
pub trait TuningOf {
    fn tuning(&self) -> std::sync::MutexGuard<'_, Tuning>;
}

impl TuningOf for Gpu {
    fn tuning(&self) -> std::sync::MutexGuard<'_, Tuning> {
        // a panic while holding the lock leaves plain data behind; keep going
        self.state::<std::sync::Mutex<Tuning>>().lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Tuning {
    /// The registered shapes with their weight counts.
    pub fn shapes(&self) -> Vec<(Shape, usize)> {
        self.shapes.iter().map(|(s, n)| (*s, *n)).collect()
    }
}

/// Notes that a weight of this format and size will be multiplied on `gpu` with `rows`.
pub fn register(gpu: &Gpu, format: WeightFormat, n: usize, k: usize, rows: Rows) {
    let mut t = gpu.tuning();
    if rows != Rows::Batch {
        *t.shapes.entry(Shape { format, decode: true, n, k }).or_default() += 1;
    }
    if rows != Rows::Decode {
        *t.shapes.entry(Shape { format, decode: false, n, k }).or_default() += 1;
    }
}

/// The variant for a problem: the tuned choice, else the default.
pub fn choose(gpu: &Gpu, format: WeightFormat, m: usize, n: usize, k: usize) -> &'static Variant {
    let tuned = gpu.tuning().chosen.get(&Shape::of(format, m, n, k)).copied();
    match tuned {
        Some(v) if v.takes(gpu, format, m, n, k) => v,
        _ => default_variant(gpu, format, m, n, k),
    }
}

/// The variant chosen for a shape (tuned or default), by name: for reports.
pub fn chosen_name(gpu: &Gpu, format: WeightFormat, m: usize, n: usize, k: usize) -> (&'static str, bool) {
    let tuned = gpu.tuning().chosen.contains_key(&Shape::of(format, m, n, k));
    (choose(gpu, format, m, n, k).name, tuned)
}

/// The engine version the cache is valid for: crate version and a hash of the kernel sources.
pub fn engine_version() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for s in kernel_sources() {
        for b in s.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{}+{h:016x}", env!("CARGO_PKG_VERSION"))
}

/// The adapter part of the cache key: vendor, architecture, device and driver as the adapter
/// reports them.
pub fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!("{} | {} | {} | {}", i.vendor, i.name, i.backend, i.driver)
}

/// Tuned choices, as stored: engine version → adapter → shape key → variant name. Entries of
/// another engine version are dropped on load.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TuneCache {
    pub engine: String,
    pub adapters: BTreeMap<String, BTreeMap<String, String>>,
}

impl TuneCache {
    /// Parses a stored cache (empty or invalid text, or another engine version: an empty cache).
    pub fn parse(text: &str) -> TuneCache {
        let engine = engine_version();
        match serde_json::from_str::<TuneCache>(text) {
            Ok(c) if c.engine == engine => c,
            _ => TuneCache { engine, adapters: BTreeMap::new() },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What a tuning pass did (reported in the load info).
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TuneReport {
    pub mode: String,
    /// Shape classes of the model.
    pub shapes: usize,
    /// Taken from the cache.
    pub cached: usize,
    /// Timed on this device now.
    pub tuned: usize,
    /// Decided now without timing: too small to matter ([`MIN_FLOPS`]).
    pub small: usize,
    /// Left at the default for this load because the time budget was spent (not cached: a later
    /// load times them).
    pub skipped: usize,
    /// Wall time spent timing kernels, in milliseconds (0 when everything was cached).
    pub ms: f64,
    /// "timestamp-query" or "wall-clock".
    pub timer: String,
    /// Each shape timed now: its key, the variant chosen, the default, their times in
    /// microseconds, and the wall time the shape took to tune.
    pub timed: Vec<Timed>,
}

/// One shape timed by [`autotune`].
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timed {
    pub shape: String,
    pub chosen: String,
    pub chosen_us: f64,
    pub default: String,
    pub default_us: f64,
    pub wall_ms: f64,
    /// Every candidate was timed (else the budget ran out within the shape and nothing is kept).
    #[serde(skip)]
    pub complete: bool,
}

/// Tunes the registered shapes of `gpu` as `mode` says, using and updating `cache`.
pub async fn autotune(gpu: &Arc<Gpu>, mode: AutotuneMode, cache: &mut TuneCache) -> Result<TuneReport> {
    autotune_within(gpu, mode, cache, BUDGET_S).await
}

/// [`autotune`] with a time budget of `budget_s` seconds.
pub async fn autotune_within(gpu: &Arc<Gpu>, mode: AutotuneMode, cache: &mut TuneCache, budget_s: f64) -> Result<TuneReport> {
    let shapes: Vec<Shape> = gpu.tuning().shapes.keys().copied().collect();
    let mut report = TuneReport { mode: format!("{mode:?}").to_lowercase(), shapes: shapes.len(), timer: gpu.timer_name().into(), ..Default::default() };
    if mode == AutotuneMode::Off {
        return Ok(report);
    }
    let adapter = adapter_key(gpu);
    let entries = cache.adapters.entry(adapter).or_default();
    let t0 = web_time::Instant::now();
    for s in shapes {
        let key = s.key();
        let cached = if mode == AutotuneMode::Cached { entries.get(&key).and_then(|n| super::linear::variant(n)) } else { None };
        if let Some(v) = cached {
            gpu.tuning().chosen.insert(s, v);
            report.cached += 1;
            continue;
        }
        let m = s.rows(gpu);
        if s.flops(gpu) < MIN_FLOPS {
            report.small += 1;
            let v = default_variant(gpu, s.format, m, s.n, s.k);
            gpu.tuning().chosen.insert(s, v);
            entries.insert(key, v.name.to_string());
            continue;
        }
        let t1 = web_time::Instant::now();
        let found = if t0.elapsed().as_secs_f64() <= budget_s { Some(fastest(gpu, s, t0, budget_s).await?) } else { None };
        match found {
            Some((v, mut timed)) if timed.complete => {
                report.tuned += 1;
                timed.wall_ms = t1.elapsed().as_secs_f64() * 1e3;
                report.timed.push(timed);
                gpu.tuning().chosen.insert(s, v);
                entries.insert(key, v.name.to_string());
            }
            // the budget ran out before or during this shape: the default for now, timed by a
            // later load (nothing cached)
            _ => {
                report.skipped += 1;
                gpu.tuning().chosen.insert(s, default_variant(gpu, s.format, m, s.n, s.k));
                entries.remove(&key);
            }
        }
    }
    if report.tuned + report.small + report.skipped > 0 {
        report.ms = t0.elapsed().as_secs_f64() * 1e3;
    }
    gpu.check_error()?;
    Ok(report)
}

/// Where the native cache lives: `$SPHINX_AUTOTUNE_CACHE`, else `$XDG_CACHE_HOME/sphinx/autotune.json`,
/// else `~/.cache/sphinx/autotune.json`.
#[cfg(not(target_arch = "wasm32"))]
pub fn cache_path() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("SPHINX_AUTOTUNE_CACHE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sphinx").join("autotune.json"))
}

/// [`autotune`] with the native cache file: read (a missing or unreadable one is empty), and
/// written back (through a temporary file and a rename) when anything was tuned.
#[cfg(not(target_arch = "wasm32"))]
pub async fn autotune_with_file(gpu: &Arc<Gpu>, mode: AutotuneMode) -> Result<TuneReport> {
    let path = cache_path();
    let text = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let mut cache = TuneCache::parse(&text);
    let report = autotune(gpu, mode, &mut cache).await?;
    if let (Some(p), true) = (&path, report.tuned + report.small + report.skipped > 0) {
        let tmp = p.with_extension("json.tmp");
        let written = p.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| std::fs::write(&tmp, cache.to_json())).and_then(|_| std::fs::rename(&tmp, p));
        // A cache that cannot be written only costs the next load its tuning time.
        if let Err(e) = written {
            eprintln!("autotune: could not write {}: {e}", p.display());
        }
    }
    Ok(report)
}

/// A weight of a shape's format with random values.
enum TestWeight {
    F32(Tensor),
    Packed(QWeight),
}

/// Random-valued inputs of a shape: x [rows, k], the weight in its format, y [rows, n]; the values
/// follow from `seed`.
struct Problem {
    shape: Shape,
    seed: u32,
    x: Tensor,
    w: TestWeight,
    y: Tensor,
}

fn quant_of(format: WeightFormat) -> Quant {
    match format {
        WeightFormat::F32 => Quant::F32,
        WeightFormat::F16 | WeightFormat::F16Native => Quant::F16,
        WeightFormat::Q8 => Quant::Q8,
        WeightFormat::Q4 => Quant::Q4,
    }
}

impl Problem {
    fn new(gpu: &Arc<Gpu>, s: Shape) -> Result<Problem> {
        Problem::sized(gpu, s, s.rows(gpu), 0)
    }

    /// A problem of `m` rows; `seed` varies the values.
    fn sized(gpu: &Arc<Gpu>, s: Shape, m: usize, seed: u32) -> Result<Problem> {
        let dev = Device::Gpu(gpu.clone());
        let x = Tensor::from_vec(&dev, &[m, s.k], values(m * s.k, 1 + 2 * seed))?;
        let y = Tensor::empty(&dev, &[m, s.n])?;
        let wv = values(s.n * s.k, 2 + 2 * seed);
        let w = match s.format {
            WeightFormat::F32 => TestWeight::F32(Tensor::from_vec(&dev, &[s.n, s.k], wv)?),
            f => {
                let packed = Packed::quantize(quant_of(f), &wv, s.n, s.k);
                TestWeight::Packed(QWeight::with_native_f16(&dev, packed, f == WeightFormat::F16Native)?)
            }
        };
        Ok(Problem { shape: s, seed, x, w, y })
    }

    fn run(&mut self, v: &Variant) -> Result<()> {
        match &self.w {
            TestWeight::F32(w) => linear_into_variant(&mut self.y, 0, &self.x, w, None, Some(v), Store::Set),
            TestWeight::Packed(w) => qlinear_into_variant(&mut self.y, 0, &self.x, w, None, Some(v), Store::Set),
        }
    }

    /// y by the CPU twin: the same values, the weight dequantized, f32 sums in order of k.
    fn cpu_reference(&self) -> Vec<f32> {
        let (m, Shape { n, k, format, .. }) = (self.x.rows(), self.shape);
        let xv = values(m * k, 1 + 2 * self.seed);
        let mut wv = values(n * k, 2 + 2 * self.seed);
        if format != WeightFormat::F32 {
            wv = Packed::quantize(quant_of(format), &wv, n, k).to_f32();
        }
        let mut y = vec![0f32; m * n];
        super::linear::linear_cpu(&mut y, n, 0, &xv, &wv, None, m, n, k);
        y
    }
}

/// Deterministic values in [-1, 1) (timings must not run on zeros).
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut st = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            st ^= st << 13;
            st ^= st >> 17;
            st ^= st << 5;
            (st as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Times every candidate of `s`: one warm-up (which compiles its pipeline), one timed run, and —
/// unless that run is already half again slower than the best so far — REPS more in one
/// submission. Stops once `deadline` (seconds of `t0`) has passed, before a candidate or after its
/// compile (`complete` false then). The best is then timed against the default in alternating
/// rounds and kept only if its median beats the default's by [`MARGIN`]; else the default.
async fn fastest(gpu: &Arc<Gpu>, s: Shape, t0: web_time::Instant, deadline: f64) -> Result<(&'static Variant, Timed)> {
    let mut p = Problem::new(gpu, s)?;
    let default = default_variant(gpu, s.format, s.rows(gpu), s.n, s.k);
    let mut best: Option<(f64, &'static Variant)> = None;
    let mut timed = Timed { shape: s.key(), default: default.name.into(), complete: true, ..Default::default() };
    let late = || t0.elapsed().as_secs_f64() > deadline;
    // the default first: it is the one to beat
    let mut candidates = s.candidates(gpu);
    candidates.sort_by_key(|v| *v != default);
    for v in candidates {
        if late() {
            timed.complete = false;
            break;
        }
        p.run(v)?;
        if late() {
            timed.complete = false;
            break;
        }
        let mut t = gpu.time(|| p.run(v)).await?;
        if best.is_none_or(|(bt, _)| t < 1.5 * bt) {
            t = gpu.time(|| (0..REPS).try_for_each(|_| p.run(v))).await? / REPS as f64;
        }
        if v == default {
            timed.default_us = t * 1e6;
        }
        if best.is_none_or(|(bt, _)| t < bt) {
            best = Some((t, v));
        }
    }
    let mut chosen = (timed.default_us / 1e6, default);
    if let (Some((_, v)), true) = (best, timed.complete) {
        if v != default {
            let (mut tv, mut td) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                td.push(gpu.time(|| (0..REPS).try_for_each(|_| p.run(default))).await? / REPS as f64);
                tv.push(gpu.time(|| (0..REPS).try_for_each(|_| p.run(v))).await? / REPS as f64);
            }
            let (mv, md) = (median(tv), median(td));
            timed.default_us = md * 1e6;
            if mv < (1.0 - MARGIN) * md {
                chosen = (mv, v);
            } else {
                chosen = (md, default);
            }
        }
    }
    timed.chosen = chosen.1.name.into();
    timed.chosen_us = chosen.0 * 1e6;
    Ok((chosen.1, timed))
}

/// The median of `v` (the upper one of an even count; 0 when empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One shape run with the variant chosen for it (tuned or default): (median seconds of REPS runs
/// after a warm-up, the variant, whether it was tuned). For benchmarks.
pub async fn time_shape(gpu: &Arc<Gpu>, s: Shape) -> Result<(f64, &'static str, bool)> {
    let m = s.rows(gpu);
    let mut p = Problem::new(gpu, s)?;
    let (name, tuned) = chosen_name(gpu, s.format, m, s.n, s.k);
    let v = super::linear::variant(name).unwrap_or(&VARIANTS[0]);
    p.run(v)?;
    let t = gpu.time(|| (0..REPS).try_for_each(|_| p.run(v))).await? / REPS as f64;
    Ok((t, name, tuned))
}

/// Bytes of a weight of this shape in its format.
pub fn weight_bytes(s: &Shape) -> u64 {
    quant_of(s.format).bytes(s.n, s.k) as u64
}

/// The outcome of [`self_test`]: every variant the tuner may pick, run on this device against the
/// CPU twin.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfTest {
    /// (format, variant) pairs run.
    pub runs: usize,
    /// Largest |GPU - CPU| over all of them.
    pub max_abs_error: f64,
    /// "format variant shape: error" for each run over the tolerance (none when the kernels work).
    pub failures: Vec<String>,
}

/// Runs every variant on every weight format this device can read, on small random problems that
/// reach every body (decode rows, short rows, partial tiles and blocks), against the CPU twin with
/// the kernel tests' tolerance (a few ulp of the sums). In the browser this checks the kernels as
/// the page's WebGPU compiles them.
pub async fn self_test(gpu: &Arc<Gpu>) -> Result<SelfTest> {
    const CASES: [(usize, usize, usize); 4] = [(1, 13, 70), (3, 40, 96), (9, 66, 200), (70, 20, 64)];
    let mut out = SelfTest::default();
    for format in WeightFormat::ALL.into_iter().filter(|f| f.runs_on(gpu)) {
        for (i, &(m, n, k)) in CASES.iter().enumerate() {
            let s = Shape::of(format, m, n, k);
            let mut p = Problem::sized(gpu, s, m, i as u32)?;
            let want = p.cpu_reference();
            for v in VARIANTS.iter().filter(|v| v.takes(gpu, format, m, n, k)) {
                p.run(v)?;
                let got = p.y.to_vec().await?;
                let err = got.iter().zip(&want).map(|(g, w)| (*g as f64 - *w as f64).abs()).fold(0.0, f64::max);
                let scale = want.iter().fold(1f64, |a, w| a.max(w.abs() as f64));
                if !(err <= 2e-5 * scale) {
                    out.failures.push(format!("{} {} {m}x{n}x{k}: |gpu - cpu| = {err:e}", s.key(), v.name));
                }
                out.max_abs_error = out.max_abs_error.max(err);
                out.runs += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunes_then_reuses_the_cache_and_retunes_for_another_engine() {
        // A device of its own: the choices made here must not leak into other tests' devices.
        let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe)");
        // shapes of ≥ MIN_FLOPS at the tuning rows are timed (the batch ones here), the rest not
        for (format, n, k) in [(WeightFormat::F32, 640, 160), (WeightFormat::Q4, 384, 256), (WeightFormat::F32, 7, 300)] {
            register(&gpu, format, n, k, Rows::Both);
        }
        let mut cache = TuneCache::parse("");
        let first = pollster::block_on(autotune(&gpu, AutotuneMode::Cached, &mut cache)).expect("tune");
        assert_eq!((first.shapes, first.tuned, first.small, first.cached, first.skipped), (6, 2, 4, 0, 0), "{first:?}");
        assert!(first.ms > 0.0);
        let entries = &cache.adapters[&adapter_key(&gpu)];
        assert_eq!(entries.len(), 6);
        for (key, name) in entries {
            let v = super::super::linear::variant(name).unwrap_or_else(|| panic!("{key}: unknown variant {name}"));
            // a decode shape gets a decode-capable variant and a choice that takes the shape
            let s = gpu.tuning().shapes.keys().copied().find(|s| &s.key() == key).expect("registered");
            assert!(v.takes(&gpu, s.format, s.rows(&gpu), s.n, s.k), "{key}: {name}");
            assert_eq!(choose(&gpu, s.format, s.rows(&gpu), s.n, s.k).name, name.as_str());
            assert!(s.flops(&gpu) < MIN_FLOPS || s.candidates(&gpu).contains(&v), "{key}: {name} is no candidate");
        }
        // Stored and read back: everything comes from the cache, no time spent.
        let mut stored = TuneCache::parse(&cache.to_json());
        assert_eq!(stored, cache);
        let again = pollster::block_on(autotune(&gpu, AutotuneMode::Cached, &mut stored)).expect("cached");
        assert_eq!((again.tuned, again.cached, again.ms), (0, 6, 0.0), "{again:?}");
        // `fresh` times everything again; `off` does nothing.
        let fresh = pollster::block_on(autotune(&gpu, AutotuneMode::Fresh, &mut stored)).expect("fresh");
        assert_eq!(fresh.tuned + fresh.small, 6);
        let off = pollster::block_on(autotune(&gpu, AutotuneMode::Off, &mut stored)).expect("off");
        assert_eq!((off.tuned, off.cached), (0, 0));
        // A cache written by another engine version is not used.
        let mut other = cache.clone();
        other.engine = "0.0.0+0000000000000000".into();
        assert!(TuneCache::parse(&other.to_json()).adapters.is_empty());
        assert!(TuneCache::parse("not json").adapters.is_empty());
        assert_eq!(AutotuneMode::parse("fresh").ok(), Some(AutotuneMode::Fresh));
        assert!(AutotuneMode::parse("sometimes").is_err());
    }

    #[test]
    fn shapes_skipped_for_the_budget_are_not_cached_and_are_timed_by_a_later_load() {
        let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe)");
        for (format, n, k) in [(WeightFormat::F32, 640, 160), (WeightFormat::Q4, 384, 256), (WeightFormat::F32, 7, 300)] {
            register(&gpu, format, n, k, Rows::Both);
        }
        let mut cache = TuneCache::parse("");
        // no time at all: the two timed shapes run their defaults and are left out of the cache
        let first = pollster::block_on(autotune_within(&gpu, AutotuneMode::Cached, &mut cache, 0.0)).expect("tune");
        assert_eq!((first.tuned, first.small, first.skipped), (0, 4, 2), "{first:?}");
        let entries = &cache.adapters[&adapter_key(&gpu)];
        assert_eq!(entries.len(), 4, "{entries:?}");
        let shapes: Vec<Shape> = gpu.tuning().shapes.keys().copied().collect();
        for s in shapes.into_iter().filter(|s| !entries.contains_key(&s.key())) {
            assert_eq!(choose(&gpu, s.format, s.rows(&gpu), s.n, s.k).name, default_variant(&gpu, s.format, s.rows(&gpu), s.n, s.k).name);
        }
        // the next load times exactly those, and the one after times nothing
        let mut stored = TuneCache::parse(&cache.to_json());
        let second = pollster::block_on(autotune(&gpu, AutotuneMode::Cached, &mut stored)).expect("second");
        assert_eq!((second.cached, second.tuned, second.skipped), (4, 2, 0), "{second:?}");
        for t in &second.timed {
            // a variant other than the default is kept only when it beat it by the margin
            assert!(t.chosen == t.default || t.chosen_us < (1.0 - MARGIN) * t.default_us, "{t:?}");
        }
        let third = pollster::block_on(autotune(&gpu, AutotuneMode::Cached, &mut stored)).expect("third");
        assert_eq!((third.cached, third.tuned, third.ms), (6, 0, 0.0), "{third:?}");
    }

    #[test]
    fn self_test_passes_every_variant_on_every_format() {
        let gpu = crate::kernels::test_util::gpu();
        let r = pollster::block_on(self_test(&gpu)).expect("self test");
        // 5 formats on lavapipe (shader-f16), 4 shapes, most variants take each
        assert!(r.runs >= 5 * 4 * 8, "{r:?}");
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(r.max_abs_error > 0.0 && r.max_abs_error < 1e-3, "{r:?}");
    }
}
