//! Golden parity: the dev checkpoints of `../shared/golden/*` run through `sphinx::trace` must match
//! the upstream PyTorch reference tensor for tensor, within the tolerances of `reference.json`, with
//! identical greedy ids — on the GPU (lavapipe in CI) and on the CPU path.

use sphinx::image::{decode, padded_resize};
use sphinx::load::{load_model, DEFAULT_MAX_SEQ_LEN};
use sphinx::models::sphinx::Sphinx;
use sphinx::testing::{check_close, golden_dir, read_safetensor, reference_json, tolerance};
use sphinx::trace::{trace, TraceData};
use sphinx::tensor::Device;
use std::path::Path;

fn gpu() -> Device {
    pollster::block_on(Device::from_name("gpu")).unwrap_or_else(|e| panic!("the GPU golden tests need an adapter: {e}"))
}

/// Runs every case of a golden folder through `model` and checks every reference tensor.
fn check_cases(golden: &Path, model: &Sphinx, label: &str) {
    let reference = reference_json(golden);
    let ref_file = golden.join("reference.safetensors");
    let mut report = Vec::new();
    let mut failures = Vec::new();
    // the DINOv2 position embedding interpolated for 224 inputs
    let name = "dinov2_pos_embed_224";
    let want = read_safetensor(&ref_file, name).unwrap();
    match check_close(name, model.dinov2_pos_embed(), &want.data, tolerance(&reference, name)) {
        Ok(s) => report.push(s),
        Err(s) => failures.push(s),
    }
    for (case, c) in reference["cases"].as_object().expect("cases") {
        let ids: Vec<u32> = c["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let greedy: Vec<i64> = c["greedy_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let padded = c["image"].as_str().map(|f| {
            let bytes = std::fs::read(golden.join(f)).unwrap();
            padded_resize(&decode(&bytes).unwrap(), model.llama_type().image_size()).unwrap()
        });
        let traced = pollster::block_on(trace(model, padded.as_ref(), &ids, greedy.len())).unwrap();
        for t in &traced {
            match &t.data {
                TraceData::I64(got) => {
                    assert_eq!(t.name, "greedy_ids");
                    if got != &greedy {
                        failures.push(format!("{label} {case}: greedy ids {got:?}, reference {greedy:?}"));
                    }
                }
                TraceData::F32(got) => {
                    let name = format!("{case}.{}", t.name);
                    if reference["tensors"].get(&name).is_none() {
                        continue; // traced but not in this reference (e.g. the text case's padded_resize)
                    }
                    let want = read_safetensor(&ref_file, &name).unwrap();
                    assert_eq!(t.shape, want.shape, "{label} {name}: shape");
                    match check_close(&name, got, &want.data, tolerance(&reference, &name)) {
                        Ok(s) => report.push(format!("{label} {s}")),
                        Err(s) => failures.push(format!("{label} {s}")),
                    }
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
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run(golden_name: &str, device: Device, label: &str) {
    let golden = golden_dir(golden_name);
    let model = load_model(&golden, &device, DEFAULT_MAX_SEQ_LEN).unwrap();
    check_cases(&golden, &model, label);
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
fn tiny_1k_text_prefill_embeds_exact() {
    let golden = golden_dir("sphinx-tiny-1k-dev");
    let model = load_model(&golden, &Device::Cpu, DEFAULT_MAX_SEQ_LEN).unwrap();
    let reference = reference_json(&golden);
    let ids: Vec<u32> = reference["cases"]["text"]["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let x = pollster::block_on(model.input_embeds(&ids, None).unwrap().to_vec()).unwrap();
    let want = read_safetensor(&golden.join("reference.safetensors"), "text.prefill_input_embeds").unwrap();
    assert_eq!(x, want.data);
}
