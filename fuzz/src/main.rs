//! `sphinx-fuzz`: mutation fuzzing of the crate's file parsers on stable Rust. Each target runs in a
//! worker process (this binary with `--worker`) under a supervisor: a panic is caught in the worker
//! (`catch_unwind`), which saves the input and goes on; an abort (a stack overflow, an allocation
//! over the 1 GiB heap guard, a case past its time limit) kills the worker, and the supervisor
//! rebuilds that case's input from (seed, target, case number), saves it and starts a new worker
//! at the next case. Crash inputs go to `fuzz/crashes/TARGET-seedS-caseI/` with a `why.txt`.
//!
//! ```text
//! sphinx-fuzz [--target NAME|all] [--seconds N] [--seed S] [--case-seconds N] [--crashes DIR]
//! sphinx-fuzz --target NAME --replay DIR     # one saved input, in this process
//! sphinx-fuzz --list
//! ```

mod guard;
mod mutate;
mod targets;

use mutate::{make_case, Input};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use targets::{Target, TARGETS};

#[global_allocator]
static ALLOC: guard::Counting = guard::Counting;

/// At most this many crash folders are written per target and run (all are counted).
const MAX_SAVED: usize = 20;

struct Args {
    target: String,
    seconds: f64,
    seed: u64,
    case_seconds: f64,
    crashes: PathBuf,
    replay: Option<PathBuf>,
    list: bool,
    /// Internal (a worker): the first case, the progress file, the scratch folder.
    worker: Option<(u64, PathBuf, PathBuf)>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: "all".into(),
        seconds: 60.0,
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
        case_seconds: 10.0,
        crashes: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes"),
        replay: None,
        list: false,
        worker: None,
    };
    let mut it = std::env::args().skip(1);
    let mut start = 0u64;
    let (mut progress, mut scratch) = (None, None);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0).ok_or(format!("{flag}: not a positive number: {v}"));
        match flag.as_str() {
            "--target" => a.target = value()?,
            "--seconds" => a.seconds = num(value()?)?,
            "--seed" => a.seed = value()?.parse().map_err(|_| "--seed: not an unsigned integer".to_string())?,
            "--case-seconds" => a.case_seconds = num(value()?)?,
            "--crashes" => a.crashes = value()?.into(),
            "--replay" => a.replay = Some(value()?.into()),
            "--list" => a.list = true,
            "--worker-start" => start = value()?.parse().map_err(|_| "--worker-start".to_string())?,
            "--worker-progress" => progress = Some(PathBuf::from(value()?)),
            "--worker-scratch" => scratch = Some(PathBuf::from(value()?)),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if let (Some(p), Some(s)) = (progress, scratch) {
        a.worker = Some((start, p, s));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: sphinx-fuzz [--target NAME|all] [--seconds N] [--seed S] [--case-seconds N] [--crashes DIR] | --target NAME --replay DIR | --list");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for t in &TARGETS {
            println!("{:<14} {}", t.name, t.what);
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<&'static Target> = if args.target == "all" {
        TARGETS.iter().collect()
    } else {
        match targets::find(&args.target) {
            Some(t) => vec![t],
            None => {
                eprintln!("unknown target {}; --list shows them", args.target);
                return ExitCode::from(2);
            }
        }
    };
    if let Some((start, progress, scratch)) = &args.worker {
        return worker(chosen[0], &args, *start, progress, scratch);
    }
    if let Some(dir) = &args.replay {
        return replay(chosen[0], dir, &args);
    }
    println!("sphinx-fuzz: seed {}, {} s per target, {} s per case, crashes to {}", args.seed, args.seconds, args.case_seconds, args.crashes.display());
    let mut crashed = 0;
    for t in chosen {
        let r = supervise(t, &args);
        println!(
            "{:<14} {:>9} cases in {:>7.1} s ({:.0}/s), {} crashes, peak heap {:.0} MiB",
            t.name,
            r.cases,
            r.wall.as_secs_f64(),
            r.cases as f64 / r.wall.as_secs_f64().max(1e-9),
            r.crashes,
            r.peak_heap as f64 / (1 << 20) as f64
        );
        crashed += r.crashes;
    }
    if crashed > 0 {
        println!("sphinx-fuzz: {crashed} crashes; inputs under {}", args.crashes.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn scratch_dir(t: &Target) -> PathBuf {
    std::env::temp_dir().join(format!("sphinx-fuzz-{}-{}", std::process::id(), t.name))
}

/// Empties (or makes) the folder a case writes its files into.
fn clear_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    } else {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
}

fn save_crash(t: &Target, args: &Args, case: u64, input: &Input, why: &str, saved: &mut usize) -> PathBuf {
    let dir = args.crashes.join(format!("{}-seed{}-case{case}", t.name, args.seed));
    if *saved >= MAX_SAVED {
        return dir;
    }
    *saved += 1;
    let _ = std::fs::create_dir_all(&dir);
    for (name, bytes) in &input.files {
        let _ = std::fs::write(dir.join(name), bytes);
    }
    let note = format!(
        "target: {} ({})\nseed: {}, case {case}\nwhat happened: {why}\nreplay: cargo run --release -p sphinx-fuzz -- --target {} --replay {}\n",
        t.name,
        t.what,
        args.seed,
        t.name,
        dir.display()
    );
    let _ = std::fs::write(dir.join("why.txt"), note);
    dir
}

/// A worker: runs cases from `start` until the time is up, reporting each case's number in the
/// progress file before it starts; prints `done NEXT PANICS PEAK` at the end.
fn worker(t: &Target, args: &Args, start: u64, progress: &Path, scratch: &Path) -> ExitCode {
    let seeds = (t.seeds)(scratch);
    assert!(!seeds.is_empty(), "target {} has no seeds", t.name);
    let progress = std::fs::OpenOptions::new().write(true).open(progress).expect("progress file");
    let case_dir = scratch.join("case");
    let watchdog = guard::Watchdog::start(Duration::from_secs_f64(args.case_seconds));
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let (mut i, mut panics, mut saved) = (start, 0u64, 0usize);
    while Instant::now() < until {
        progress.write_at(&i.to_le_bytes(), 0).expect("progress file");
        let input = make_case(&seeds, t.dict, args.seed, t.name, i);
        clear_dir(&case_dir);
        watchdog.begin();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(&input, &case_dir)));
        watchdog.end();
        if let Err(p) = r {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            let dir = save_crash(t, args, i, &input, &format!("panic: {msg}"), &mut saved);
            eprintln!("sphinx-fuzz: {} case {i} panicked: {msg} (input in {})", t.name, dir.display());
            panics += 1;
        }
        i += 1;
    }
    println!("done {i} {panics} {}", guard::peak_heap());
    ExitCode::SUCCESS
}

struct Outcome {
    cases: u64,
    crashes: u64,
    wall: Duration,
    peak_heap: usize,
}

/// Runs `t` in worker processes for `args.seconds`, restarting after a worker dies.
fn supervise(t: &Target, args: &Args) -> Outcome {
    let t0 = Instant::now();
    let scratch = scratch_dir(t);
    clear_dir(&scratch);
    let seeds = (t.seeds)(&scratch); // also writes shared seed files (demo models) for the workers
    let progress = scratch.join("progress");
    let mut out = Outcome { cases: 0, crashes: 0, wall: Duration::ZERO, peak_heap: 0 };
    let (mut start, mut saved) = (0u64, 0usize);
    let deadline = t0 + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline {
        std::fs::write(&progress, u64::MAX.to_le_bytes()).expect("progress file");
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64().max(0.01);
        let child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--target", t.name, "--seed", &args.seed.to_string(), "--seconds", &left.to_string()])
            .args(["--case-seconds", &args.case_seconds.to_string(), "--crashes", &args.crashes.display().to_string()])
            .args(["--worker-start", &start.to_string(), "--worker-progress", &progress.display().to_string()])
            .args(["--worker-scratch", &scratch.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .expect("starts a worker");
        let stdout = String::from_utf8_lossy(&child.stdout);
        if let Some(done) = stdout.lines().find_map(|l| l.strip_prefix("done ")) {
            let n: Vec<u64> = done.split(' ').filter_map(|x| x.parse().ok()).collect();
            out.cases += n[0] - start;
            out.crashes += n[1];
            out.peak_heap = out.peak_heap.max(n[2] as usize);
            break;
        }
        let bytes = std::fs::read(&progress).expect("progress file");
        let case = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if case == u64::MAX {
            eprintln!("sphinx-fuzz: the {} worker died before its first case ({})", t.name, child.status);
            out.crashes += 1;
            break;
        }
        let input = make_case(&seeds, t.dict, args.seed, t.name, case);
        let why = format!("the worker died ({}): an abort, a stack overflow, the 1 GiB heap guard or the {} s case limit; its stderr says which", child.status, args.case_seconds);
        let dir = save_crash(t, args, case, &input, &why, &mut saved);
        eprintln!("sphinx-fuzz: {} case {case}: {why} (input in {})", t.name, dir.display());
        out.cases += case + 1 - start;
        out.crashes += 1;
        start = case + 1;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    out.wall = t0.elapsed();
    out
}

/// Runs one saved input in this process (a panic shows its backtrace; the guards still apply).
fn replay(t: &Target, dir: &Path, args: &Args) -> ExitCode {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(r) => r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "why.txt").collect(),
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    names.sort();
    let input = Input { files: names.iter().map(|n| (n.clone(), std::fs::read(dir.join(n)).expect("readable"))).collect() };
    let scratch = scratch_dir(t);
    clear_dir(&scratch);
    let _watchdog = guard::Watchdog::start(Duration::from_secs_f64(args.case_seconds));
    let t0 = Instant::now();
    (t.run)(&input, &scratch);
    println!("{}: no crash ({:.2?}, peak heap {:.0} MiB)", t.name, t0.elapsed(), guard::peak_heap() as f64 / (1 << 20) as f64);
    let _ = std::fs::remove_dir_all(&scratch);
    ExitCode::SUCCESS
}
