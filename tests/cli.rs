//! The `sphinx` binary end to end: trace of the 2-way tensor-parallel upstream fixture against the
//! golden reference, run with the real tokenizer, convert/inspect/mix, and the errors a user sees.

use sphinx::testing::{check_close, fixtures_dir, golden_dir, json_ids, read_safetensor, reference_json, tolerance};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sphinx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sphinx")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("runs the sphinx binary")
}

fn ok(args: &[&str]) -> String {
    let out = sphinx(args);
    assert!(out.status.success(), "sphinx {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sphinx-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sphinx trace` on the 2-way sharded upstream folder reproduces the wide case's reference tensors.
#[test]
fn trace_of_the_two_way_sharded_checkpoint_matches_upstream() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let mp2 = fixtures_dir().join("sphinx-tiny-1k-dev-mp2");
    let reference = reference_json(&golden);
    let case = &reference["cases"]["wide"];
    let ids: Vec<String> = json_ids(&case["prompt_ids"]).iter().map(u32::to_string).collect();
    let out = tmp("mp2.safetensors");
    ok(&["trace", "--device", "cpu", "--model", s(&mp2), "--image", s(&golden.join("image_wide.png")), "--prompt-ids", &ids.join(","), "--steps", "8", "--out", s(&out)]);
    let ref_file = golden.join("reference.safetensors");
    for name in ["padded_resize", "convnext_feats", "dinov2_feats", "visual_proj_out", "image_tokens", "logits"] {
        let got = read_safetensor(&out, name).unwrap();
        let want = read_safetensor(&ref_file, &format!("wide.{name}")).unwrap();
        assert_eq!(got.shape, want.shape, "{name}");
        let r = check_close(name, &got.data, &want.data, tolerance(&reference, &format!("wide.{name}")));
        assert!(r.is_ok(), "{r:?}");
    }
    let greedy = read_safetensor(&out, "greedy_ids").unwrap().data.iter().map(|&v| v as u32).collect::<Vec<_>>();
    assert_eq!(greedy, json_ids(&case["greedy_ids"]));
}

#[test]
fn run_answers_with_the_golden_greedy_text() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let tok = fixtures_dir().join("../../assets/tokenizer-llama2.json");
    let out = ok(&[
        "run", "--device", "cpu", "--model", s(&golden), "--image", s(&golden.join("image_tall.png")), "--prompt", "What is in the image?",
        "--tokenizer", s(&tok), "--temperature", "0", "--max-tokens", "8",
    ]);
    let want = reference_json(&golden)["cases"]["tall"]["greedy_text"].as_str().unwrap().to_string();
    assert_eq!(out.trim_end_matches('\n'), want);
}

#[test]
fn convert_inspect_and_mix_from_the_command_line() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let tok = fixtures_dir().join("../../assets/tokenizer-llama2.json");
    let q = tmp("q4");
    let report = ok(&["convert", "--from", s(&golden), "--out", s(&q), "--quant", "q4", "--vision-quant", "q8", "--shard-mb", "1", "--tokenizer", s(&tok)]);
    assert!(report.contains("precision    llm q4, vision q8"), "{report}");
    let inspect = ok(&["inspect", s(&q)]);
    assert!(inspect.contains("llama_ens5_light") && inspect.contains("q4") && inspect.contains("GPU total"), "{inspect}");
    let preset = ok(&["inspect", "--preset", "llama_ens5"]);
    assert!(preset.contains("16462228609 parameters"), "{preset}");
    let m = tmp("mix");
    ok(&["mix", "--beta", "0.5", "--out", s(&m), "--tokenizer", s(&tok), s(&golden), s(&q)]);
    assert!(m.join("manifest.json").is_file());
}

#[test]
fn errors_name_what_is_wrong() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    // no adapter for --device gpu: an error, never a CPU fall-back (no DX12 on this platform)
    let out = Command::new(env!("CARGO_BIN_EXE_sphinx"))
        .args(["trace", "--device", "gpu", "--model", s(&golden), "--prompt-ids", "1,2", "--steps", "1", "--out", s(&tmp("x.safetensors"))])
        .env("WGPU_BACKEND", "dx12")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("no GPU adapter"), "{e}");
    let out = sphinx(&["run", "--device", "cpu", "--model", s(&golden), "--prompt", "hi"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("no tokenizer") && e.contains("--tokenizer"), "{e}");
    let out = sphinx(&["convert", "--from", s(&golden), "--out", s(&tmp("bad")), "--quant", "q3"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("q3"), "{e}");
    let out = sphinx(&["trace", "--device", "cpu", "--model", "/nonexistent", "--prompt-ids", "1", "--out", "/tmp/x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/nonexistent"));
}

/// A full-size SPHINX-Tiny-1k (3.09 B random parameters, q4 LLM + q8 vision, 2.75 GB) written
/// straight into the web format, run on a text prompt on a device holding WebGPU's default limits
/// (128 MiB per binding, 256 MiB per buffer): every buffer fits, and the peak of GPU memory the
/// runtime counts is within 10 % of what `inspect` predicts for the run.
#[test]
fn full_size_model_answers_under_the_default_limits_within_the_predicted_memory() {
    let dir = tmp("full");
    let out = ok(&["demo-model", "--size", "full", "--quant", "q4", "--vision-quant", "q8", "--out", s(&dir)]);
    assert!(out.contains("shards       47 files"), "{out}");
    let run = sphinx(&["run", "--model", s(&dir), "--device", "gpu", "--limits", "default", "--autotune", "off", "--temperature", "0", "--prompt", "What is the capital of France?", "--max-tokens", "2"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("2 tokens in"), "{err}");
    assert!(!String::from_utf8_lossy(&run.stdout).trim().is_empty(), "no answer text");
    let (peak, predicted, line) = gpu_memory(&err);
    assert!(peak > 1500.0, "{line}");
    assert!((peak - predicted).abs() <= 0.1 * predicted, "measured vs predicted: {line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// (Peak MiB, predicted MiB, the line) of `sphinx run`'s `GPU memory:` line.
fn gpu_memory(stderr: &str) -> (f64, f64, String) {
    let line = stderr.lines().find(|l| l.starts_with("GPU memory:")).unwrap_or_else(|| panic!("no GPU memory line:\n{stderr}"));
    let num = |after: &str| -> f64 { line.split(after).nth(1).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}")) };
    (num("peak "), num("predicts "), line.to_string())
}

/// The prediction replays the run's buffers through the pool's size classes (models/memory.rs), so
/// on the demo model with an image — every tower, the fusion, a 1.3 k-position prefill, decoding —
/// it matches the peak the runtime counts to within 2 %, at f32 and at f16 (f16 weights and KV).
#[test]
fn an_image_run_peaks_where_inspect_predicts() {
    let dir = tmp("memory");
    ok(&["demo-model", "--out", s(&dir)]);
    let image = format!("{}/../www/assets/demo.png", env!("CARGO_MANIFEST_DIR"));
    for precision in ["f32", "f16"] {
        let run = sphinx(&["run", "--model", s(&dir), "--device", "gpu", "--precision", precision, "--autotune", "off", "--image", &image, "--temperature", "0", "--prompt", "What is in the image?", "--max-tokens", "3"]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        let (peak, predicted, line) = gpu_memory(&err);
        assert!((peak - predicted).abs() <= 0.02 * predicted, "{precision}: measured vs predicted: {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sphinx bench --roofline --json` measures the device's limits in the same run and gives decode
/// against the bandwidth and prefill/encode against the GEMM peak (share = reached ÷ limit), on the
/// CPU backend and on the tests' GPU (lavapipe); every kernel row carries its shares.
#[test]
fn bench_roofline_gives_each_phase_against_the_devices_limits() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    for device in ["cpu", "gpu"] {
        let out = ok(&["bench", "--device", device, "--model", s(&golden), "--image", s(&golden.join("image_wide.png")), "--tokens", "2", "--json", "--roofline"]);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        let roof = &r["roofline"];
        for key in ["readGbps", "copyGbps", "gemmGflops"] {
            let v = roof[key].as_f64().unwrap_or(-1.0);
            assert!(v.is_finite() && v > 0.0, "{device}: roofline {key} = {v}");
        }
        // a texture of the same bytes read too, on a GPU only
        let texture = roof["textureReadGbps"].as_f64();
        assert_eq!(texture.is_some_and(|v| v.is_finite() && v > 0.0), device == "gpu", "{device}: texture read {texture:?}");
        let bw = roof["readGbps"].as_f64().unwrap().max(roof["copyGbps"].as_f64().unwrap());
        let eff = r["efficiency"].as_array().unwrap();
        let phases: Vec<&str> = eff.iter().map(|e| e["phase"].as_str().unwrap()).collect();
        assert_eq!(phases, ["decode", "prefill", "encode"], "{device}");
        for e in eff {
            let (reached, limit, share) = (e["reached"].as_f64().unwrap(), e["limit"].as_f64().unwrap(), e["share"].as_f64().unwrap());
            assert!(reached > 0.0 && (share - reached / limit).abs() <= 1e-9 * share, "{device}: {e}");
            let want = if e["phase"] == "decode" { bw } else { roof["gemmGflops"].as_f64().unwrap() };
            assert_eq!(limit, want, "{device}: {e}");
        }
        assert_eq!(eff[0]["reached"], r["decode"]["gbPerSecond"], "{device}");
        let kernels = r["kernels"].as_array().unwrap();
        assert!(device == "cpu" || !kernels.is_empty(), "the GPU's bench lists its linear shapes");
        for k in kernels {
            assert!(k["computeShare"].as_f64().is_some() && k["bandwidthShare"].as_f64().is_some(), "{device}: {k}");
        }
    }
}
