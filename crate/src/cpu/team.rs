//! The pool's threads kept spinning through one unit of CPU work (a decode step, a prefill, an
//! image encode: what [`super::on_pool`] runs), so that each of its parallel regions starts at
//! once instead of waking sleeping threads through the kernel. Rayon's idle threads sleep after a
//! few dozen yields; between two matrix products of a decode step the caller's serial work
//! (norms, RoPE, attention) outlasts that, and on a virtual machine waking a halted vCPU costs tens
//! of microseconds — measured: a vCPU idle 14 % of a q4 decode. llama.cpp's pool spins the same way.
//!
//! One caller publishes a region (`chunks` and a job), runs chunks itself, and waits for the
//! last; helpers claim chunks with one atomic counter. The job is borrowed from the caller's
//! stack, so a helper may only touch it between registering (`busy`) and leaving: the caller makes
//! the generation odd before it replaces a job and waits until no helper is registered, and a
//! helper that registered re-checks the generation (the two sides' store-then-load on `gen` and
//! `busy` are sequentially consistent, so one of them sees the other).

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

/// A region's job: chunk index → work.
type Job<'a> = dyn Fn(usize) + Sync + 'a;

pub(super) struct Team {
    /// Even: the job in `job` may be worked on; odd: it is being replaced.
    gen: AtomicUsize,
    /// Helpers between registering for a generation and leaving it.
    busy: AtomicUsize,
    job: UnsafeCell<Option<*const Job<'static>>>,
    chunks: AtomicUsize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: `job` is written only by the caller while no helper is registered (see the module
// comment) and read only by registered helpers.
unsafe impl Sync for Team {}

thread_local! {
    /// The team the caller on this thread publishes its regions to (null: none).
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    pub(super) fn new() -> Team {
        Team { gen: AtomicUsize::new(0), busy: AtomicUsize::new(0), job: UnsafeCell::new(None), chunks: AtomicUsize::new(0), next: AtomicUsize::new(0), done: AtomicUsize::new(0), panicked: AtomicBool::new(false), stop: AtomicBool::new(false) }
    }

    /// Runs `f` with this team as the current thread's, then lets the helpers go.
    pub(super) fn lead<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Clears the thread's team and stops the helpers, also when `f` panics.
        struct Done<'a>(&'a Team);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(std::ptr::null()));
                self.0.stop.store(true, SeqCst);
            }
        }
        CURRENT.with(|c| c.set(self));
        let _done = Done(self);
        f()
    }

    /// A helper's loop: works on each generation it sees until the team stops.
    pub(super) fn help(&self) {
        let mut seen = 0;
        loop {
            let g = self.gen.load(SeqCst);
            if g % 2 == 0 && g != seen {
                self.busy.fetch_add(1, SeqCst);
                if self.gen.load(SeqCst) == g {
                    // SAFETY: registered under an unchanged even generation: the caller keeps the
                    // job alive and unchanged until `busy` drops to zero.
                    if let Some(job) = unsafe { *self.job.get() } {
                        self.work(unsafe { &*job });
                    }
                }
                self.busy.fetch_sub(1, SeqCst);
                seen = g;
            } else if self.stop.load(SeqCst) {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Claims and runs chunks of the current job until none is left.
    fn work(&self, job: &Job<'_>) {
        let chunks = self.chunks.load(Acquire);
        loop {
            let i = self.next.fetch_add(1, AcqRel);
            if i >= chunks {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.done.fetch_add(1, Release);
        }
    }

    /// Publishes `chunks` chunks of `job`, works on them and returns when all are done and no
    /// helper holds the job (a helper's panic is raised here).
    fn run(&self, chunks: usize, job: &Job<'_>) {
        self.gen.fetch_add(1, SeqCst);
        while self.busy.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // SAFETY: the generation is odd and no helper is registered: none reads `job` now. The
        // pointer's lifetime is erased; it is cleared before this call returns.
        unsafe { *self.job.get() = Some(std::mem::transmute::<&Job<'_>, &'static Job<'static>>(job) as *const Job<'static>) };
        self.chunks.store(chunks, Relaxed);
        self.next.store(0, Relaxed);
        self.done.store(0, Relaxed);
        self.gen.fetch_add(1, SeqCst);
        self.work(job);
        while self.done.load(Acquire) < chunks || self.busy.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        self.gen.fetch_add(1, SeqCst);
        // SAFETY: odd generation, no helper registered (waited above, and none registers under an
        // odd one).
        unsafe { *self.job.get() = None };
        self.gen.fetch_add(1, SeqCst);
        if self.panicked.swap(false, SeqCst) {
            panic!("a parallel CPU task panicked");
        }
    }
}

/// Runs `job` over `chunks` chunks on the current thread's team; false (nothing run) where this
/// thread leads none, or is inside one of its team's regions already (a region nested in a chunk
/// goes to rayon).
pub(super) fn run_on_current(chunks: usize, job: &Job<'_>) -> bool {
    let team = CURRENT.with(|c| c.replace(std::ptr::null()));
    if team.is_null() {
        return false;
    }
    /// Gives the thread its team back, also when the region panics.
    struct Restore(*const Team);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(team);
    // SAFETY: CURRENT pointed at the team whose `lead` is running further up this thread's stack.
    unsafe { &*team }.run(chunks, job);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::par_ranges;

    /// `f` led on a team of a 4-thread pool (what `on_pool` sets up on the global one).
    fn on_team(f: impl FnOnce() + Send) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let team = Team::new();
        pool.scope(|s| {
            for _ in 1..4 {
                s.spawn(|_| team.help());
            }
            team.lead(f);
        });
    }

    /// Hundreds of regions back to back, of 1 to 997 elements in chunks of 3, some with a region
    /// nested in a chunk: every element is worked on exactly once per region.
    #[test]
    fn every_chunk_of_every_region_runs_once() {
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let nested = AtomicUsize::new(0);
        let mut want = vec![0usize; 1000];
        for round in 0..300 {
            want.iter_mut().take(round * 37 % 997 + 1).for_each(|w| *w += 1);
        }
        on_team(|| {
            for round in 0..300 {
                par_ranges(round * 37 % 997 + 1, 3, |a, b| {
                    (a..b).for_each(|i| _ = hits[i].fetch_add(1, SeqCst));
                    if round % 50 == 0 && a == 0 {
                        par_ranges(8, 1, |_, _| _ = nested.fetch_add(1, SeqCst));
                    }
                });
            }
        });
        assert_eq!(hits.iter().map(|h| h.load(SeqCst)).collect::<Vec<_>>(), want);
        assert_eq!(nested.load(SeqCst), 6 * 8);
    }

    /// A chunk that panics (on whichever thread) panics the region's caller, and the team still
    /// lets its helpers go (the pool's scope ends).
    #[test]
    fn a_panicking_chunk_reaches_the_caller() {
        let r = catch_unwind(AssertUnwindSafe(|| {
            on_team(|| {
                par_ranges(64, 1, |a, _| assert!(a != 37, "chunk 37"));
            })
        }));
        assert!(r.is_err());
    }
}
