//! Golden parity: the dev checkpoints of `../shared/golden/*` run through `sphinx::trace` must match
//! the upstream PyTorch reference tensor for tensor, within the tolerances of `reference.json`, with
//! identical greedy ids — on the GPU (lavapipe in CI) and on the CPU path.

use sphinx::image::{bicubic_fp16, decode, padded_resize, quadrants, views_for};
use sphinx::config::ModelConfig;
use sphinx::load::{load_model, load_model_with, open, LoadOptions, DEFAULT_MAX_SEQ_LEN};
use sphinx::nn::{Precision, PrecisionChoice};
use sphinx::io::TensorSource;
use sphinx::nn::Weights;
use sphinx::models::sphinx::Sphinx;
use sphinx::testing::{check_close, fixtures_dir, golden_dir, read_safetensor, reference_json, tolerance};
use sphinx::trace::{trace, TraceData};
use sphinx::tensor::Device;
use std::path::Path;

fn gpu() -> Device {
    pollster::block_on(Device::from_name("gpu")).unwrap_or_else(|e| panic!("the GPU golden tests need an adapter: {e}"))
}

/// Comparison results of one test: every line is printed, failures fail the test at the end.
struct Report<'a> {
    label: &'a str,
    reference: &'a serde_json::Value,
    /// The f16 path's tolerances (tests/fixtures/f16_tolerances.json) when checking that path.
    f16: Option<serde_json::Value>,
    lines: Vec<String>,
    failures: Vec<String>,
}

impl<'a> Report<'a> {
    fn new(label: &'a str, reference: &'a serde_json::Value) -> Self {
        Report { label, reference, f16: None, lines: Vec::new(), failures: Vec::new() }
    }

    /// Compares under the reference tolerance of `tensor` (the name `name` is only for messages),
    /// or the derived f16 one.
    fn check(&mut self, name: &str, tensor: &str, got: &[f32], want: &[f32]) {
        let mut tol = tolerance(self.reference, tensor);
        if let Some(abs) = self.f16.as_ref().and_then(|t| t[tensor]["abs"].as_f64()) {
            tol.abs = abs;
        }
        match check_close(name, got, want, tol) {
            Ok(s) => self.lines.push(format!("{} {s}", self.label)),
            Err(s) => self.failures.push(format!("{} {s}", self.label)),
        }
    }

    fn ids(&mut self, case: &str, got: &[i64], want: &[i64]) {
        if got != want {
            self.failures.push(format!("{} {case}: greedy ids {got:?}, reference {want:?}", self.label));
        }
    }

    fn finish(self) {
        println!("{}", self.lines.join("\n"));
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

/// Runs every case of a golden folder through `model` and checks every reference tensor (under the
/// f16 path's derived tolerances when the model runs at f16).
fn check_cases(golden: &Path, model: &Sphinx, label: &str) {
    let reference = reference_json(golden);
    let ref_file = golden.join("reference.safetensors");
    let mut report = Report::new(label, &reference);
    if model.precision() == Precision::F16 {
        let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join("f16_tolerances.json")).unwrap()).unwrap();
        let name = golden.file_name().unwrap().to_str().unwrap();
        let t = all["goldens"][name].clone();
        assert!(t.is_object(), "f16_tolerances.json has no {name}: run tests/fixtures/make_f16_tolerances.py");
        report.f16 = Some(t);
    }
    // the DINOv2 position embedding interpolated for 224 inputs
    let name = "dinov2_pos_embed_224";
    let want = read_safetensor(&ref_file, name).unwrap();
    report.check(name, name, model.dinov2_pos_embed(), &want.data);
    for (case, c) in reference["cases"].as_object().expect("cases") {
        let ids: Vec<u32> = c["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let greedy: Vec<i64> = c["greedy_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let padded = c["image"].as_str().map(|f| {
            let bytes = std::fs::read(golden.join(f)).unwrap();
            padded_resize(&decode(&bytes).unwrap(), model.llama_type().image_size()).unwrap()
        });
        // the fp16 bicubic global 224 view: every tower's sub-image 0 (llama_ens5), DINOv2's tile 0
        // before re-normalisation (llama_ens5_light)
        let name = format!("{case}.view_global_224");
        if let (Some(p), Some(_)) = (&padded, reference["tensors"].get(&name)) {
            let layout = model.llama_type();
            let view = if layout.has_clip_qformer() { views_for(layout, p).unwrap().clip.swap_remove(0) } else { bicubic_fp16(p, 224, 224).unwrap() };
            let want = read_safetensor(&ref_file, &name).unwrap();
            report.check(&name, &name, view.data(), &want.data);
        }
        let traced = pollster::block_on(trace(model, padded.as_ref(), &ids, greedy.len())).unwrap();
        for t in &traced {
            match &t.data {
                TraceData::I64(got) => {
                    assert_eq!(t.name, "greedy_ids");
                    report.ids(case, got, &greedy);
                }
                TraceData::F32(got) => {
                    let name = format!("{case}.{}", t.name);
                    if reference["tensors"].get(&name).is_none() {
                        continue; // traced but not in this reference (e.g. the text case's padded_resize)
                    }
                    let want = read_safetensor(&ref_file, &name).unwrap();
                    assert_eq!(t.shape, want.shape, "{label} {name}: shape");
                    report.check(&name, &name, got, &want.data);
                }
            }
        }
        // every reference tensor of this case was produced
        for name in reference["tensors"].as_object().unwrap().keys() {
            if let Some(short) = name.strip_prefix(&format!("{case}.")) {
                if short != "prefill_input_embeds" && short != "view_global_224" {
                    assert!(traced.iter().any(|t| t.name == short), "{label}: trace has no {name}");
                }
            }
        }
    }
    report.finish();
}

fn run(golden_name: &str, device: Device, label: &str) {
    let golden = golden_dir(golden_name);
    let model = load_model(&golden, &device, DEFAULT_MAX_SEQ_LEN).unwrap();
    check_cases(&golden, &model, label);
}

/// The f16 path (chosen by `auto` on an adapter with shader-f16, as lavapipe is): every tensor
/// within the derived f16 tolerances, greedy ids identical.
fn run_f16(golden_name: &str, label: &str) {
    let golden = golden_dir(golden_name);
    let device = gpu();
    let opts = LoadOptions { precision: PrecisionChoice::Auto, ..Default::default() };
    let model = load_model_with(&golden, &device, &opts).unwrap();
    assert_eq!(model.precision(), Precision::F16, "auto picks f16 on an adapter with shader-f16");
    check_cases(&golden, &model, label);
}

#[test]
fn tiny_1k_upstream_gpu_f16() {
    run_f16("sphinx-tiny-1k-dev", "tiny-1k gpu f16");
}

#[test]
fn sphinx_1k_upstream_gpu_f16() {
    run_f16("sphinx-1k-dev", "1k gpu f16");
}

#[test]
fn tiny_1k_upstream_gpu() {
    run("sphinx-tiny-1k-dev", gpu(), "gpu");
}

#[test]
fn tiny_1k_upstream_cpu() {
    run("sphinx-tiny-1k-dev", Device::Cpu, "cpu");
}

#[test]
fn sphinx_1k_upstream_gpu() {
    run("sphinx-1k-dev", gpu(), "gpu");
}

#[test]
fn sphinx_1k_upstream_cpu() {
    run("sphinx-1k-dev", Device::Cpu, "cpu");
}

#[test]
fn tiny_1k_text_prefill_embeds_exact() {
    text_prefill_embeds_exact("sphinx-tiny-1k-dev");
}

#[test]
fn sphinx_1k_text_prefill_embeds_exact() {
    text_prefill_embeds_exact("sphinx-1k-dev");
}

fn text_prefill_embeds_exact(golden_name: &str) {
    let golden = golden_dir(golden_name);
    let model = load_model(&golden, &Device::Cpu, DEFAULT_MAX_SEQ_LEN).unwrap();
    let reference = reference_json(&golden);
    let ids: Vec<u32> = reference["cases"]["text"]["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let x = pollster::block_on(model.input_embeds(&ids, None).unwrap().to_vec()).unwrap();
    let want = read_safetensor(&golden.join("reference.safetensors"), "text.prefill_input_embeds").unwrap();
    assert_eq!(x, want.data);
}

/// The SPHINX-Tiny (llama_ens_light, 512 px, one view) replica of `tests/fixtures/sphinx-tiny-replica`:
/// the Tiny-1k dev weights under llama_ens_light, checked against the independent PyTorch reference
/// of `make_sphinx_tiny_replica.py` (itself validated on the upstream Tiny-1k golden data). The model
/// folder is assembled in a temp dir: the fixture's meta/vision/config json + the golden `.pth`.
fn replica_dir(label: &str) -> std::path::PathBuf {
    let fixture = fixtures_dir().join("sphinx-tiny-replica");
    let dir = std::env::temp_dir().join(format!("sphinx-tiny-replica-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["meta.json", "vision.json", "config.json"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let pth = "consolidated.00-of-01.model.pth";
    let link = dir.join(pth);
    let _ = std::fs::remove_file(&link);
    let src = golden_dir("sphinx-tiny-1k-dev").join(pth);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&src, &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&src, &link).unwrap();
    dir
}

/// An F16 tensor of the replica's reference as f32.
fn read_f16(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F16, "{name}");
    t.data().chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

fn run_replica(device: Device, label: &str) {
    use sha2::{Digest, Sha256};
    let fixture = fixtures_dir().join("sphinx-tiny-replica");
    let reference = reference_json(&fixture);
    let ref_file = fixture.join("reference.safetensors");
    let dir = replica_dir(label);
    let model = load_model(&dir, &device, DEFAULT_MAX_SEQ_LEN).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(model.llama_type().name(), "llama_ens_light");
    assert_eq!(model.image_words(), 259);
    let images = golden_dir("sphinx-tiny-1k-dev");
    let mut report = Report::new(label, &reference);
    for (case, c) in reference["cases"].as_object().unwrap() {
        let ids: Vec<u32> = c["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let greedy: Vec<i64> = c["greedy_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let padded = c["image"].as_str().map(|f| padded_resize(&decode(&std::fs::read(images.join(f)).unwrap()).unwrap(), 512).unwrap());
        if let Some(p) = &padded {
            let bytes: Vec<u8> = p.data().iter().flat_map(|v| v.to_le_bytes()).collect();
            let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(sha, c["padded_resize_sha256"].as_str().unwrap(), "{label} {case}: padded_resize(512)");
            let name = format!("{case}.view_dinov2_224");
            report.check(&name, &name, bicubic_fp16(p, 224, 224).unwrap().data(), &read_f16(&ref_file, &name));
        }
        let traced = pollster::block_on(trace(&model, padded.as_ref(), &ids, greedy.len())).unwrap();
        let logit_ids = read_safetensor(&ref_file, &format!("{case}.logit_ids")).unwrap().data;
        for t in &traced {
            let name = format!("{case}.{}", t.name);
            match (&t.data, t.name.as_str()) {
                (TraceData::I64(got), _) => report.ids(case, got, &greedy),
                (TraceData::F32(got), "logits") => {
                    let vocab = t.shape[1];
                    let cols: Vec<f32> = (0..t.shape[0]).flat_map(|r| logit_ids.iter().map(move |&j| got[r * vocab + j as usize])).collect();
                    report.check(&name, &name, &cols, &read_safetensor(&ref_file, &name).unwrap().data);
                }
                (TraceData::F32(got), _) if reference["tensors"].get(&name).is_some() => {
                    let want = read_safetensor(&ref_file, &name).unwrap();
                    assert_eq!(t.shape.iter().product::<usize>(), want.shape.iter().product::<usize>(), "{label} {name}: shape {:?} vs {:?}", t.shape, want.shape);
                    report.check(&name, &name, got, &want.data);
                }
                _ => {}
            }
        }
        for name in reference["tensors"].as_object().unwrap().keys() {
            if let Some(short) = name.strip_prefix(&format!("{case}.")) {
                assert!(short == "view_dinov2_224" || traced.iter().any(|t| t.name == short), "{label}: trace has no {name}");
            }
        }
    }
    report.finish();
}

#[test]
fn tiny_replica_ens_light_gpu() {
    run_replica(gpu(), "gpu");
}

#[test]
fn tiny_replica_ens_light_cpu() {
    run_replica(Device::Cpu, "cpu");
}

/// SPHINX (llama_ens, 224 px, one view): the SPHINX-1k dev weights under llama_ens. Upstream's
/// llama_ens5 processes each 224 sub-image exactly as llama_ens processes its image, so encoding an
/// exact quadrant of the 448 input must reproduce that sub-image's block of the llama_ens5 golden
/// tensors (tolerances of sphinx-1k-dev/reference.json).
fn run_ens_single_view(device: Device, label: &str) {
    let golden = golden_dir("sphinx-1k-dev");
    let dir = std::env::temp_dir().join(format!("sphinx-ens-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(golden.join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("meta.json"), r#"{"llama_type": "llama_ens"}"#).unwrap();
    let mut vision: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(golden.join("vision.json")).unwrap()).unwrap();
    vision["llama_type"] = "llama_ens".into();
    vision["image"]["image_size"] = 224.into();
    std::fs::write(dir.join("vision.json"), vision.to_string()).unwrap();
    let pth = "consolidated.00-of-01.model.pth";
    #[cfg(unix)]
    std::os::unix::fs::symlink(golden.join(pth), dir.join(pth)).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(golden.join(pth), dir.join(pth)).unwrap();
    let model = load_model(&dir, &device, DEFAULT_MAX_SEQ_LEN).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(model.image_words(), 291);
    let reference = reference_json(&golden);
    let ref_file = golden.join("reference.safetensors");
    let mut report = Report::new(label, &reference);
    for case in ["wide", "tall"] {
        let img = decode(&std::fs::read(golden.join(format!("image_{case}.png"))).unwrap()).unwrap();
        let padded = padded_resize(&img, 448).unwrap();
        for (q, sub) in quadrants(&padded).unwrap().iter().enumerate() {
            let s = q + 1; // sub-image index in llama_ens5's order global, TL, TR, BL, BR
            let enc = model.encode_image(sub, true).unwrap();
            let mut outputs: Vec<(String, Vec<f32>)> =
                enc.intermediates.iter().map(|(n, _, t)| (n.to_string(), pollster::block_on(t.to_vec()).unwrap())).collect();
            outputs.push(("image_tokens".into(), pollster::block_on(enc.tokens.to_vec()).unwrap()));
            assert_eq!(outputs.len(), 8, "{label}: intermediates {:?}", outputs.iter().map(|o| &o.0).collect::<Vec<_>>());
            for (short, got) in outputs {
                let name = format!("{case}.{short}");
                let want = read_safetensor(&ref_file, &name).unwrap();
                let per = want.data.len() / 5; // one sub-image's block (291 rows of image_tokens)
                report.check(&format!("{name}[{s}]"), &name, &got, &want.data[s * per..(s + 1) * per]);
            }
        }
    }
    report.finish();
}

#[test]
fn sphinx_ens_single_view_gpu() {
    run_ens_single_view(gpu(), "gpu");
}

#[test]
fn sphinx_ens_single_view_cpu() {
    run_ens_single_view(Device::Cpu, "cpu");
}

/// A checkpoint with one more tensor than the model uses.
struct WithExtra {
    inner: Box<dyn TensorSource>,
    name: String,
}

impl TensorSource for WithExtra {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn names(&self) -> Vec<String> {
        let mut n = self.inner.names();
        n.push(self.name.clone());
        n
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if name == self.name {
            Some(vec![2])
        } else {
            self.inner.shape(name)
        }
    }
    fn read_f32(&mut self, name: &str) -> sphinx::Result<Vec<f32>> {
        if name == self.name {
            Ok(vec![0.0; 2])
        } else {
            self.inner.read_f32(name)
        }
    }
}

/// Loading proves coverage and checks sizes: an unexpected tensor beside the declared CLIP leftovers
/// fails, and so does a config that disagrees with a tensor shape (the error names the tensor).
#[test]
fn sphinx_1k_load_checks_coverage_and_shapes() {
    let golden = golden_dir("sphinx-1k-dev");
    let load = |edit: &dyn Fn(&mut ModelConfig), extra: Option<&str>| -> String {
        let m = open(&golden).unwrap();
        let mut config = m.config.clone();
        edit(&mut config);
        let source: Box<dyn TensorSource> = match extra {
            Some(name) => Box::new(WithExtra { inner: m.source, name: name.into() }),
            None => m.source,
        };
        match Sphinx::load(&Weights::new(source, Device::Cpu), &config, 64) {
            Ok(_) => "loaded".into(),
            Err(e) => e.to_string(),
        }
    };
    assert_eq!(load(&|_| {}, None), "loaded");
    let e = load(&|_| {}, Some("llma.clip.visual.bogus"));
    assert!(e.contains("unused") && e.contains("llma.clip.visual.bogus") && !e.contains("clip.logit_scale"), "{e}");
    let e = load(&|c| c.vision.clip.as_mut().unwrap().width = 40, None);
    assert!(e.contains("llma.clip.visual.conv1.weight"), "{e}");
    let e = load(&|c| c.vision.qformer.as_mut().unwrap().num_hidden_layers = 2, None);
    assert!(e.contains("llma.qformer.qformer.encoder.layer"), "{e}");
    let e = load(&|c| c.vision.qformer_vision.as_mut().unwrap().intermediate_size = 95, None);
    assert!(e.contains("llma.qformer.vision_model.encoder.layers.0.mlp.fc1.weight"), "{e}");
    let e = load(&|c| c.vision.qformer.as_mut().unwrap().cross_attention_frequency = 1, None);
    assert!(e.contains("llma.qformer.qformer.encoder.layer.1.crossattention"), "{e}");
    // the same weights read as a light variant: visual_proj has no CLIP columns there
    let e = load(&|c| c.llama_type = sphinx::config::LlamaType::Ens5Light, None);
    assert!(e.contains("llma.visual_proj.0.weight") && e.contains("[64, 112]") && e.contains("[64, 160]"), "{e}");
}
