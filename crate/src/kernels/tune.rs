//! On-device autotuning of the linear kernels: for each weight shape a model uses (registered as its
//! Linear layers are uploaded), every variant that can take the problem is timed on this device —
//! with GPU timestamp queries where the adapter has `timestamp-query`, else fenced wall time — at a
//! decode size (1 row) and a batch size ([`BATCH_ROWS`] rows), and the fastest is kept. Choices are
//! cached keyed by adapter, engine version (crate version + a hash of the kernel sources) and shape
//! ([`TuneCache`], a JSON file natively and in the browser's storage), so a later load only looks
//! them up. Untuned shapes run [`default_variant`].

use super::linear::{default_variant, kernel_sources, linear_into_variant, Variant, WeightFormat, MATVEC_MAX_ROWS, VARIANTS};
use super::qlinear::{qlinear_into_variant, QWeight};
use crate::io::quant::{Packed, Quant};
use crate::runtime::Gpu;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Rows of the batch-class problem a shape is tuned at (prefill and vision run thousands of rows;
/// the relative speed of the variants settles well before that).
pub const BATCH_ROWS: usize = 256;
/// Timed runs per variant (after one warm-up).
const REPS: usize = 3;
/// Tuning stops after this much wall time on one load; the rest keeps the default variants (and is
/// tuned by a later load). Software adapters at full size would otherwise take minutes.
pub const BUDGET_S: f64 = 3.0;

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

    fn rows(&self) -> usize {
        if self.decode {
            1
        } else {
            BATCH_ROWS
        }
    }
}

/// The tuning state of one device: the shapes its models use and the chosen variants.
#[derive(Default)]
pub struct Tuning {
    shapes: BTreeSet<Shape>,
    chosen: HashMap<Shape, &'static Variant>,
}

/// Notes that a weight of this format and size will be multiplied on `gpu` (decode and batch).
pub fn register(gpu: &Gpu, format: WeightFormat, n: usize, k: usize) {
    let mut t = gpu.tuning();
    t.shapes.insert(Shape { format, decode: true, n, k });
    t.shapes.insert(Shape { format, decode: false, n, k });
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
    /// Left at the default (budget spent).
    pub skipped: usize,
    /// Wall time spent timing kernels, in milliseconds (0 when everything was cached).
    pub ms: f64,
    /// "timestamp-query" or "wall-clock".
    pub timer: String,
}

/// Tunes the registered shapes of `gpu` as `mode` says, using and updating `cache`.
pub async fn autotune(gpu: &Arc<Gpu>, mode: AutotuneMode, cache: &mut TuneCache) -> Result<TuneReport> {
    let shapes: Vec<Shape> = gpu.tuning().shapes.iter().copied().collect();
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
        if t0.elapsed().as_secs_f64() > BUDGET_S {
            report.skipped += 1;
            continue;
        }
        let v = fastest(gpu, s).await?;
        gpu.tuning().chosen.insert(s, v);
        entries.insert(key, v.name.to_string());
        report.tuned += 1;
    }
    if report.tuned > 0 {
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
    if let (Some(p), true) = (&path, report.tuned > 0) {
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

/// Random-valued inputs of a shape: x [rows, k], the weight in its format, y [rows, n].
struct Problem {
    x: Tensor,
    w: TestWeight,
    y: Tensor,
}

impl Problem {
    fn new(gpu: &Arc<Gpu>, s: Shape) -> Result<Problem> {
        let dev = Device::Gpu(gpu.clone());
        let m = s.rows();
        let x = Tensor::from_vec(&dev, &[m, s.k], values(m * s.k, 1))?;
        let y = Tensor::empty(&dev, &[m, s.n])?;
        let wv = values(s.n * s.k, 2);
        let w = match s.format {
            WeightFormat::F32 => TestWeight::F32(Tensor::from_vec(&dev, &[s.n, s.k], wv)?),
            f => {
                let quant = match f {
                    WeightFormat::Q8 => Quant::Q8,
                    WeightFormat::Q4 => Quant::Q4,
                    _ => Quant::F16,
                };
                let packed = Packed::quantize(quant, &wv, s.n, s.k);
                TestWeight::Packed(QWeight::with_native_f16(&dev, packed, f == WeightFormat::F16Native)?)
            }
        };
        Ok(Problem { x, w, y })
    }

    fn run(&mut self, v: &Variant) -> Result<()> {
        match &self.w {
            TestWeight::F32(w) => linear_into_variant(&mut self.y, 0, &self.x, w, None, Some(v)),
            TestWeight::Packed(w) => qlinear_into_variant(&mut self.y, 0, &self.x, w, None, Some(v)),
        }
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

/// Times every variant that takes `s` (one warm-up, then REPS runs) and returns the fastest.
async fn fastest(gpu: &Arc<Gpu>, s: Shape) -> Result<&'static Variant> {
    let m = s.rows();
    let mut p = Problem::new(gpu, s)?;
    let mut best: Option<(f64, &'static Variant)> = None;
    for v in VARIANTS.iter().filter(|v| v.takes(gpu, s.format, m, s.n, s.k)) {
        p.run(v)?; // warm-up: compiles the pipeline
        let t = gpu.time(|| (0..REPS).try_for_each(|_| p.run(v))).await? / REPS as f64;
        if best.is_none_or(|(bt, _)| t < bt) {
            best = Some((t, v));
        }
    }
    Ok(best.map_or_else(|| default_variant(gpu, s.format, m, s.n, s.k), |b| b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunes_then_reuses_the_cache_and_retunes_for_another_engine() {
        // A device of its own: the choices made here must not leak into other tests' devices.
        let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter (lavapipe)");
        for (format, n, k) in [(WeightFormat::F32, 40, 64), (WeightFormat::Q4, 24, 96), (WeightFormat::F32, 7, 300)] {
            register(&gpu, format, n, k);
        }
        let mut cache = TuneCache::parse("");
        let first = pollster::block_on(autotune(&gpu, AutotuneMode::Cached, &mut cache)).expect("tune");
        assert_eq!((first.shapes, first.tuned, first.cached, first.skipped), (6, 6, 0, 0), "{first:?}");
        assert!(first.ms > 0.0);
        let entries = &cache.adapters[&adapter_key(&gpu)];
        assert_eq!(entries.len(), 6);
        for (key, name) in entries {
            let v = super::super::linear::variant(name).unwrap_or_else(|| panic!("{key}: unknown variant {name}"));
            // a decode shape gets a decode-capable variant and a choice that takes the shape
            let s = gpu.tuning().shapes.iter().copied().find(|s| &s.key() == key).expect("registered");
            assert!(v.takes(&gpu, s.format, s.rows(), s.n, s.k), "{key}: {name}");
            assert_eq!(choose(&gpu, s.format, s.rows(), s.n, s.k).name, name.as_str());
        }
        // Stored and read back: everything comes from the cache, no time spent.
        let mut stored = TuneCache::parse(&cache.to_json());
        assert_eq!(stored, cache);
        let again = pollster::block_on(autotune(&gpu, AutotuneMode::Cached, &mut stored)).expect("cached");
        assert_eq!((again.tuned, again.cached, again.ms), (0, 6, 0.0), "{again:?}");
        // `fresh` times everything again; `off` does nothing.
        let fresh = pollster::block_on(autotune(&gpu, AutotuneMode::Fresh, &mut stored)).expect("fresh");
        assert_eq!(fresh.tuned, 6);
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
}
