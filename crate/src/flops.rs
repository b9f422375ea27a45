//! The count of floating-point (or integer multiply-add) operations the matrix products and
//! attention have done (or, on a GPU, recorded) so far in this process, on either device (2 per
//! multiply-add): the bench divides a phase's share by its time.

static FLOPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The operations counted so far.
pub fn total() -> u64 {
    FLOPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Adds `ops` to [`total`] (the CPU backend's products and attention, the GPU's dispatches).
pub(crate) fn count(ops: usize) {
    FLOPS.fetch_add(ops as u64, std::sync::atomic::Ordering::Relaxed);
}
