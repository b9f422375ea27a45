//! Test support: where the golden data lives, reading its reference tensors, and comparing with the
//! tolerances that `reference.json` gives. Used by unit and integration tests only (no Python, no
//! network). The shared folder is `$SPHINX_SHARED` or `<repo>/../shared`.

use crate::{Error, Result};
use std::path::PathBuf;

/// `../shared` beside the repository (or `$SPHINX_SHARED`).
pub fn shared_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SPHINX_SHARED") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// A golden folder, e.g. `golden_dir("sphinx-tiny-1k-dev")`. Panics with a clear message when absent:
/// the golden tests must fail, never skip, when their data is missing.
pub fn golden_dir(name: &str) -> PathBuf {
    let p = shared_dir().join("golden").join(name);
    assert!(p.is_dir(), "golden data folder {} is missing (set SPHINX_SHARED)", p.display());
    p
}

/// The repository's own test fixtures (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A reference tensor as f32 (F32 or I64 → f32 for ids), with its shape.
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads one tensor of a safetensors file as f32.
pub fn read_safetensor(path: &std::path::Path, name: &str) -> Result<RefTensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path.display(), e))?;
    let t = st
        .tensor(name)
        .map_err(|e| Error::format(path.display(), format!("tensor {name}: {e}")))?;
    let raw = t.data();
    let data: Vec<f32> = match t.dtype() {
        safetensors::Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        safetensors::Dtype::I64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => return Err(Error::format(path.display(), format!("tensor {name}: dtype {other:?} not handled"))),
    };
    Ok(RefTensor { shape: t.shape().to_vec(), data })
}

/// Tolerance of one reference tensor, from `reference.json` → `tensors.<name>.tolerance`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub abs: f64,
    /// Fraction of elements allowed to exceed `abs` (fp16 views); 0 when absent.
    pub mismatch_fraction_max: f64,
}

pub fn reference_json(golden: &std::path::Path) -> serde_json::Value {
    let p = golden.join("reference.json");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn tolerance(reference: &serde_json::Value, name: &str) -> Tolerance {
    let t = &reference["tensors"][name]["tolerance"];
    assert!(t.is_object(), "reference.json has no tolerance for {name}");
    Tolerance {
        abs: t["abs"].as_f64().expect("tolerance.abs"),
        mismatch_fraction_max: t["mismatch_fraction_max"].as_f64().unwrap_or(0.0),
    }
}

/// Compares `got` with `want` under `tol`; returns a message describing the first failure.
pub fn check_close(name: &str, got: &[f32], want: &[f32], tol: Tolerance) -> std::result::Result<String, String> {
    if got.len() != want.len() {
        return Err(format!("{name}: {} elements, reference has {}", got.len(), want.len()));
    }
    let mut max_abs = 0f64;
    let mut worst = 0usize;
    let mut over = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !g.is_finite() {
            return Err(format!("{name}: element {i} is {g}"));
        }
        let d = (g as f64 - w as f64).abs();
        if d > tol.abs {
            over += 1;
        }
        if d > max_abs {
            max_abs = d;
            worst = i;
        }
    }
    let frac = over as f64 / got.len().max(1) as f64;
    let summary = format!(
        "{name}: max |Δ| {max_abs:.3e} at {worst} (got {}, want {}), {over} over abs {:.3e} ({frac:.2e} of {})",
        got[worst], want[worst], tol.abs, got.len()
    );
    if frac > tol.mismatch_fraction_max {
        Err(summary)
    } else {
        Ok(summary)
    }
}

/// Runs every case of a golden folder through `model` (`sphinx::trace`) and compares every
/// reference tensor the trace produces, and the greedy ids. Returns (report lines, failures).
pub async fn golden_check(golden: &std::path::Path, model: &crate::models::sphinx::Sphinx, label: &str) -> Result<(Vec<String>, Vec<String>)> {
    use crate::trace::{trace, TraceData};
    let reference = reference_json(golden);
    let ref_file = golden.join("reference.safetensors");
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let name = "dinov2_pos_embed_224";
    let want = read_safetensor(&ref_file, name)?;
    match check_close(name, model.dinov2_pos_embed(), &want.data, tolerance(&reference, name)) {
        Ok(s) => report.push(format!("{label} {s}")),
        Err(s) => failures.push(format!("{label} {s}")),
    }
    let cases = reference["cases"].as_object().ok_or_else(|| Error::Msg("reference.json has no cases".into()))?;
    for (case, c) in cases {
        let ids = json_ids(&c["prompt_ids"]);
        let greedy: Vec<i64> = json_ids(&c["greedy_ids"]).into_iter().map(i64::from).collect();
        let padded = match c["image"].as_str() {
            Some(f) => {
                let bytes = std::fs::read(golden.join(f)).map_err(|e| Error::io(golden.join(f), e))?;
                Some(crate::image::padded_resize(&crate::image::decode(&bytes)?, model.llama_type().image_size())?)
            }
            None => None,
        };
        let traced = trace(model, padded.as_ref(), &ids, greedy.len()).await?;
        for t in &traced {
            match &t.data {
                TraceData::I64(got) => {
                    if got != &greedy {
                        failures.push(format!("{label} {case}: greedy ids {got:?}, reference {greedy:?}"));
                    } else {
                        report.push(format!("{label} {case}: greedy ids identical {got:?}"));
                    }
                }
                TraceData::F32(got) => {
                    let name = format!("{case}.{}", t.name);
                    if reference["tensors"].get(&name).is_none() {
                        continue;
                    }
                    let want = read_safetensor(&ref_file, &name)?;
                    if t.shape != want.shape {
                        failures.push(format!("{label} {name}: shape {:?}, reference {:?}", t.shape, want.shape));
                        continue;
                    }
                    match check_close(&name, got, &want.data, tolerance(&reference, &name)) {
                        Ok(s) => report.push(format!("{label} {s}")),
                        Err(s) => failures.push(format!("{label} {s}")),
                    }
                }
            }
        }
        for name in reference["tensors"].as_object().into_iter().flat_map(|o| o.keys()) {
            if let Some(short) = name.strip_prefix(&format!("{case}.")) {
                if short != "prefill_input_embeds" && short != "view_global_224" && !traced.iter().any(|t| t.name == short) {
                    failures.push(format!("{label}: the trace has no {name}"));
                }
            }
        }
    }
    Ok((report, failures))
}

/// Token ids of a JSON array.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect()).unwrap_or_default()
}
