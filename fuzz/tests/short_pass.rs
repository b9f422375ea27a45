//! The short fuzz pass of `make test`: every target for a few seconds with a fixed seed (so a
//! failure reproduces), and not one crash. `make fuzz` runs the long passes.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Seconds per target: six targets, about 15 s in all.
const SECONDS: &str = "2.5";

/// Runs sphinx-fuzz with `args`, its crash inputs in a fresh temporary folder named after `what`:
/// (that folder, the output, its stdout, its stderr).
fn fuzz(what: &str, args: &[&str]) -> (PathBuf, Output, String, String) {
    let crashes = std::env::temp_dir().join(format!("sphinx-fuzz-{what}-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_sphinx-fuzz")).args(args).arg("--crashes").arg(&crashes).output().expect("runs sphinx-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (crashes, out, stdout, stderr)
}

#[test]
fn every_target_runs_without_a_crash() {
    let (crashes, out, stdout, stderr) = fuzz("short", &["--target", "all", "--seconds", SECONDS, "--seed", "20240611", "--case-seconds", "20"]);
    assert!(out.status.success(), "fuzz pass failed ({}); inputs under {}\n{stdout}\n{stderr}", out.status, crashes.display());
    for t in ["pickle", "pth", "config", "converted", "image", "sentencepiece"] {
        let line = stdout.lines().find(|l| l.starts_with(t)).unwrap_or_else(|| panic!("no report for {t}:\n{stdout}"));
        let cases: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        // More cases than seeds: the pass mutated, not only replayed the fixtures.
        assert!(cases > 20, "{t} ran only {cases} cases: {line}");
        assert!(line.contains(" 0 crashes"), "{line}");
    }
    let _ = std::fs::remove_dir_all(&crashes);
}

#[test]
fn panics_aborts_the_heap_guard_and_hangs_are_caught_and_saved() {
    let (crashes, out, stdout, stderr) = fuzz("selftest", &["--target", "selftest", "--seconds", "4", "--seed", "5", "--case-seconds", "1"]);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Cases 0..4 are the seeds themselves: panic, abort, heap, hang; each saved with its reason.
    for (case, what, reason) in [(0, "panic", "panic: selftest panic"), (1, "abort", "worker died"), (2, "heap", "worker died"), (3, "hang", "worker died")] {
        let dir = crashes.join(format!("selftest-seed5-case{case}"));
        assert_eq!(std::fs::read(dir.join("what")).unwrap_or_default(), what.as_bytes(), "{stdout}\n{stderr}");
        let why = std::fs::read_to_string(dir.join("why.txt")).unwrap();
        assert!(why.contains(reason) && why.contains("--replay"), "{why}");
    }
    assert!(stderr.contains("time limit"), "{stderr}");
    assert!(stderr.contains("memory allocation"), "{stderr}");
    // The run went on after every crash and mutated past the seeds (splices remake the seeds'
    // words, so more cases crash).
    let line = stdout.lines().find(|l| l.starts_with("selftest")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let (cases, crashed): (u64, u64) = (words[1].parse().unwrap(), words[words.iter().position(|w| *w == "crashes,").unwrap() - 1].parse().unwrap());
    assert!(cases > 4 && crashed >= 4, "{line}");
    let _ = std::fs::remove_dir_all(&crashes);
}

#[test]
fn replay_runs_one_saved_input() {
    let dir = std::env::temp_dir().join(format!("sphinx-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.pkl"), b"\x80\x02}q\x00.").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sphinx-fuzz")).args(["--target", "pickle", "--replay"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pickle: no crash"));
    let _ = std::fs::remove_dir_all(&dir);
}
