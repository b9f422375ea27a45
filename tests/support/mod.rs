//! Running the `sphinx` binary from integration tests the way a user does, with what a hostile input
//! must not break: the exit status, the message, the peak resident memory, and a deadline (a hang
//! is a failure, not a stuck CI run).
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use sphinx::testing::shared_dir;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit status; `None` when a signal ended it (an abort, a stack overflow, the deadline).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size of the process, in MiB (`ru_maxrss` from `wait4`).
    pub peak_rss_mib: f64,
    pub wall: Duration,
}

impl Run {
    /// Asserts the run ended the way every refused input must: exit 1, no panic, no abort, under
    /// `max_rss_mib` of memory, and a message on stderr that contains `needle`.
    pub fn refused(&self, needle: &str, max_rss_mib: f64) -> &Run {
        assert_eq!(self.code, Some(1), "expected exit 1, got {:?}\nstderr: {}", self.code, self.stderr);
        assert!(!self.stderr.contains("panicked"), "panicked: {}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {}", self.stderr);
        assert!(self.peak_rss_mib < max_rss_mib, "peak RSS {:.0} MiB ≥ {max_rss_mib} MiB\nstderr: {}", self.peak_rss_mib, self.stderr);
        self
    }

    /// Asserts a successful run under `max_rss_mib`.
    pub fn succeeded(&self, max_rss_mib: f64) -> &Run {
        assert_eq!(self.code, Some(0), "expected exit 0, got {:?}\nstderr: {}", self.code, self.stderr);
        assert!(self.peak_rss_mib < max_rss_mib, "peak RSS {:.0} MiB ≥ {max_rss_mib} MiB", self.peak_rss_mib);
        self
    }
}

/// Runs `sphinx args…`, killing it after `deadline` (then `code` is `None` and the test fails
/// where it asserts on it).
pub fn sphinx_within(args: &[&str], deadline: Duration) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sphinx"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts the sphinx binary");
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_t = std::thread::spawn(move || { let mut s = String::new(); out.read_to_string(&mut s).ok(); s });
    let err_t = std::thread::spawn(move || { let mut s = String::new(); err.read_to_string(&mut s).ok(); s });
    let (status, rusage) = loop {
        let mut status = 0;
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut rusage) };
        if r == pid {
            break (status, rusage);
        }
        assert!(r == 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if start.elapsed() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
    Run {
        code,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        peak_rss_mib: rusage.ru_maxrss as f64 / 1024.0,
        wall: start.elapsed(),
    }
}

/// `sphinx_within` with a two-minute deadline.
pub fn sphinx(args: &[&str]) -> Run {
    sphinx_within(args, Duration::from_secs(120))
}

/// A fresh, empty folder for one test under the system's temp dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sphinx-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
