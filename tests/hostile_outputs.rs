//! Outputs never destroy inputs (issue 18, rows L1–L5) against the real `sphinx` binary: a writing
//! command whose output is, contains or lies inside one of its inputs — named directly, through a
//! symlink, or with `--force` — ends in exit 1 naming the path and why, before anything is read or
//! written; every input is byte-for-byte what it was and still loads. `--force` replaces only a
//! folder holding a model this tool wrote (saying what it removed), or an empty one.

mod support;

use sphinx::testing::{fixtures_dir, golden_dir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::{fresh_dir, s, sphinx, Run};

/// Peak resident memory of every run, in MiB.
const MAX_RSS: f64 = 1024.0;

/// Every file under `dir` (recursively, symlinks as their targets' paths) and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p);
            } else if meta.file_type().is_symlink() {
                out.insert(p.clone(), std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Asserts `dir` holds exactly what `before` recorded.
fn intact(dir: &Path, before: &BTreeMap<PathBuf, Vec<u8>>) {
    let now = snapshot(dir);
    assert_eq!(now.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "the files of {} changed", dir.display());
    for (p, bytes) in before {
        assert!(now[p] == *bytes, "{} changed", p.display());
    }
}

fn tokenizer() -> PathBuf {
    fixtures_dir().join("../../assets/tokenizer-llama2.json")
}

/// A copy of the dev golden upstream checkpoint (config files and the .pth) in `dir`.
fn upstream_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let golden = golden_dir("sphinx-tiny-1k-dev");
    for f in ["config.json", "params.json", "meta.json", "vision.json", "consolidated.00-of-01.model.pth"] {
        std::fs::copy(golden.join(f), dir.join(f)).unwrap();
    }
    dir.to_path_buf()
}

/// A fresh tiny demo model at `dir`.
fn demo_at(dir: &Path, seed: &str) -> PathBuf {
    sphinx(&["demo-model", "--out", s(dir), "--seed", seed]).succeeded(MAX_RSS);
    dir.to_path_buf()
}

/// The model in `dir` loads and answers one greedy token on the CPU.
fn answers(dir: &Path) {
    sphinx(&["run", "--model", s(dir), "--device", "cpu", "--prompt", "Hi", "--temperature", "0", "--max-tokens", "1", "--tokenizer", s(&tokenizer())]).succeeded(MAX_RSS);
}

/// The upstream checkpoint in `dir` still reads as one.
fn inspects(dir: &Path) {
    let r = sphinx(&["inspect", s(dir)]);
    r.succeeded(MAX_RSS);
    assert!(r.stdout.contains("upstream checkpoint llama_ens5_light"), "{}", r.stdout);
}

fn convert(from: &Path, out: &Path, force: bool) -> Run {
    let tok = tokenizer();
    let mut args = vec!["convert", "--from", s(from), "--out", s(out), "--tokenizer", s(&tok), "--shard-mb", "4"];
    if force {
        args.push("--force");
    }
    sphinx(&args)
}

// L1: demo-model into a folder of the user's files: refused with and without --force.
#[test]
fn l1_demo_model_never_wipes_a_folder_of_user_files() {
    let dir = fresh_dir("l1").join("mine");
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    std::fs::write(dir.join("notes.txt"), b"my notes\n").unwrap();
    std::fs::write(dir.join("photos/cat.jpg"), b"\xff\xd8\xff not really a cat").unwrap();
    let before = snapshot(&dir);
    sphinx(&["demo-model", "--out", s(&dir)]).refused(&format!("{}: the output folder is not empty; pass --force", dir.display()), MAX_RSS);
    intact(&dir, &before);
    sphinx(&["demo-model", "--out", s(&dir), "--force"]).refused("--force replaces only a folder holding a model this tool wrote, or an empty one; this one has no readable manifest.json", MAX_RSS);
    intact(&dir, &before);
    // --force replaces a model this tool wrote, and says what it removed …
    let model = demo_at(&dir.parent().unwrap().join("model"), "1");
    let r = sphinx(&["demo-model", "--out", s(&model), "--seed", "2", "--force"]);
    r.succeeded(MAX_RSS);
    assert!(r.stderr.contains(&format!("replaced the model that was in {}: removed 3 files", model.display())), "{}", r.stderr);
    assert!(r.stderr.contains("manifest.json, model-00001-of-00001.safetensors, tokenizer.json"), "{}", r.stderr);
    answers(&model);
    // … but not when the user's files sit beside it
    std::fs::write(model.join("notes.txt"), b"mine too").unwrap();
    let before = snapshot(&model);
    sphinx(&["demo-model", "--out", s(&model), "--force"]).refused("this one also holds notes.txt", MAX_RSS);
    intact(&model, &before);
    answers(&model);
    // an empty folder needs no --force
    let empty = fresh_dir("l1-empty");
    demo_at(&empty, "3");
    answers(&empty);
}

// L2: convert --from X --out X (--force or not, directly or through a symlink).
#[test]
fn l2_convert_never_writes_over_its_input() {
    let base = fresh_dir("l2");
    let x = upstream_in(&base.join("X"));
    std::os::unix::fs::symlink(&x, base.join("alias")).unwrap();
    let before = snapshot(&x);
    for (out, force) in [(x.clone(), true), (x.clone(), false), (base.join("alias"), true), (x.join("."), true)] {
        convert(&x, &out, force).refused(&format!("is the --from folder {}", x.display()), MAX_RSS).refused("choose another --out", MAX_RSS);
        intact(&x, &before);
    }
    // a folder inside the input is refused too (a model written into the checkpoint's folder)
    convert(&x, &x.join("web"), false).refused("lies inside the --from folder", MAX_RSS);
    intact(&x, &before);
    inspects(&x);
    answers(&x);
}

// L3: convert --out P --force, P a parent of --from.
#[test]
fn l3_convert_never_replaces_a_folder_that_holds_its_input() {
    let p = fresh_dir("l3");
    let x = upstream_in(&p.join("checkpoints/X"));
    std::fs::write(p.join("unrelated.txt"), b"keep me").unwrap();
    let before = snapshot(&p);
    for out in [p.clone(), p.join("checkpoints")] {
        convert(&x, &out, true).refused(&format!("{}: contains the --from folder {}", out.display(), x.display()), MAX_RSS);
        intact(&p, &before);
    }
    // the tokenizer is an input as well
    let tok_dir = fresh_dir("l3-tok");
    let tok = tok_dir.join("tokenizer.json");
    std::fs::copy(tokenizer(), &tok).unwrap();
    sphinx(&["convert", "--from", s(&x), "--out", s(&tok_dir), "--tokenizer", s(&tok), "--force"]).refused("contains the --tokenizer file", MAX_RSS);
    assert_eq!(std::fs::read(&tok).unwrap(), std::fs::read(tokenizer()).unwrap());
    inspects(&x);
}

// L4: mix --out A --force A B, and an output inside B.
#[test]
fn l4_mix_never_overwrites_an_input() {
    let base = fresh_dir("l4");
    let a = demo_at(&base.join("A"), "1");
    let b = demo_at(&base.join("B"), "2");
    let (before_a, before_b) = (snapshot(&a), snapshot(&b));
    let mix = |out: &Path| sphinx(&["mix", "--beta", "0.5", "--out", s(out), "--force", s(&a), s(&b)]);
    mix(&a).refused(&format!("{}: is model folder A {}", a.display(), a.display()), MAX_RSS);
    mix(&b).refused("is model folder B", MAX_RSS);
    mix(&b.join("mixed")).refused("lies inside model folder B", MAX_RSS);
    mix(&base).refused("contains model folder A", MAX_RSS);
    intact(&a, &before_a);
    intact(&b, &before_b);
    answers(&a);
    answers(&b);
    // elsewhere, the mix is written
    mix(&base.join("M")).succeeded(MAX_RSS);
    answers(&base.join("M"));
}

// L5: trace --out naming one of the model's shards (directly, or through a symlink outside it).
#[test]
fn l5_trace_never_writes_into_the_model() {
    let base = fresh_dir("l5");
    let model = demo_at(&base.join("model"), "1");
    let shard = model.join("model-00001-of-00001.safetensors");
    std::os::unix::fs::symlink(&shard, base.join("trace.safetensors")).unwrap();
    let image = base.join("image.png");
    std::fs::copy(golden_dir("sphinx-tiny-1k-dev").join("image_wide.png"), &image).unwrap();
    let before = snapshot(&base);
    let trace = |out: &Path| sphinx(&["trace", "--model", s(&model), "--device", "cpu", "--image", s(&image), "--prompt-ids", "1,319", "--steps", "1", "--out", s(out)]);
    trace(&shard).refused(&format!("--out {}: lies inside the --model folder {}", shard.display(), model.display()), MAX_RSS);
    trace(&base.join("trace.safetensors")).refused(&format!("(resolved: {}): lies inside the --model folder", shard.display()), MAX_RSS);
    trace(&model.join("new.safetensors")).refused("lies inside the --model folder", MAX_RSS);
    trace(&image).refused(&format!("is the --image file {}", image.display()), MAX_RSS);
    intact(&base, &before);
    answers(&model);
    // elsewhere, the trace is written
    trace(&base.join("elsewhere.safetensors")).succeeded(MAX_RSS);
    assert!(base.join("elsewhere.safetensors").is_file());
}
