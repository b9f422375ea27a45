//! Streaming load: building a model from a converted folder reads tensor by tensor, so the peak
//! host (Rust heap) memory while loading onto the GPU stays below 2 × the largest shard.

use sphinx::convert::convert;
use sphinx::io::converted::{Manifest, QuantChoice};
use sphinx::io::quant::Quant;
use sphinx::load::{load_model, open};
use sphinx::tensor::Device;
use sphinx::testing::golden_dir;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live heap bytes and their peak.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn load_peak_host_memory_stays_below_twice_the_largest_shard() {
    let device = pollster::block_on(Device::from_name("gpu")).unwrap_or_else(|e| panic!("needs a GPU adapter: {e}"));
    let golden = golden_dir("sphinx-tiny-1k-dev");
    for (q, shard_mb) in [(Quant::F32, 1), (Quant::Q4, 1), (Quant::Q8, 4)] {
        let out = std::env::temp_dir().join(format!("sphinx-loadmem-{}-{q}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut m = open(&golden).unwrap();
        convert(m.source.as_mut(), &m.config, &out, QuantChoice { llm: q, vision: q }, shard_mb << 20, None, false).unwrap();
        drop(m);
        let largest = Manifest::read(&out).unwrap().shards.iter().map(|s| s.bytes).max().unwrap() as usize;
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let model = load_model(&out, &device, 2048).unwrap();
        device.sync().unwrap();
        let peak = PEAK.load(Ordering::Relaxed) - base;
        println!("{q}: load peak {:.2} MiB over baseline, largest shard {:.2} MiB ({:.2}x)", peak as f64 / 1048576.0, largest as f64 / 1048576.0, peak as f64 / largest as f64);
        assert!(peak < 2 * largest, "{q}: loading peaked at {peak} bytes, largest shard {largest}");
        drop(model);
    }
}
