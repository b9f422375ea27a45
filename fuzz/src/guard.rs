//! What a case may use: a counting global allocator (live heap over [`HEAP_LIMIT`] fails the
//! allocation, which aborts the worker, which the supervisor reports as a crash) and a watchdog that
//! aborts a case running past its time limit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Live heap allowed to a worker (seeds included): every input must be handled in well under 1 GB.
pub const HEAP_LIMIT: usize = 1 << 30;

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn take(size: usize) -> bool {
        let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        if now > HEAP_LIMIT {
            LIVE.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        PEAK.fetch_max(now, Ordering::Relaxed);
        true
    }

    /// A fresh allocation of `size` bytes by `alloc`, counted (and refused past the limit).
    fn counted(size: usize, alloc: impl FnOnce() -> *mut u8) -> *mut u8 {
        if !Counting::take(size) {
            return std::ptr::null_mut();
        }
        let p = alloc();
        if p.is_null() {
            LIVE.fetch_sub(size, Ordering::Relaxed);
        }
        p
    }
}

// SAFETY: forwards to the system allocator; only refuses (null) what would pass the limit.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::counted(layout.size(), || System.alloc(layout))
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::counted(layout.size(), || System.alloc_zeroed(layout))
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Counting::take(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Highest live heap so far, in bytes.
pub fn peak_heap() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Milliseconds since the watchdog started at which the running case began (0: none running).
static CASE_START_MS: AtomicU64 = AtomicU64::new(0);

pub struct Watchdog {
    origin: Instant,
}

impl Watchdog {
    /// Starts a thread that aborts the process when one case runs longer than `limit`.
    pub fn start(limit: Duration) -> Watchdog {
        let origin = Instant::now();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let start = CASE_START_MS.load(Ordering::Relaxed);
            let now = origin.elapsed().as_millis() as u64;
            if start != 0 && now.saturating_sub(start) > limit.as_millis() as u64 {
                eprintln!("sphinx-fuzz: a case ran past the {limit:?} time limit (a hang)");
                std::process::abort();
            }
        });
        Watchdog { origin }
    }

    pub fn begin(&self) {
        CASE_START_MS.store(self.origin.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }

    pub fn end(&self) {
        CASE_START_MS.store(0, Ordering::Relaxed);
    }
}
