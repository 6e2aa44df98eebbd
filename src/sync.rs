//! The one place that chooses between `std` and `loom`. The ring algorithm imports its
//! atomics, fences and thread hints only from here, so `--cfg shmcast_loom` model-checks the
//! production code paths.

#[cfg(not(shmcast_loom))]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
}

#[cfg(shmcast_loom)]
pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
}

/// A busy-wait hint (under loom: a yield, so the model makes progress).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(shmcast_loom))]
    std::hint::spin_loop();
    #[cfg(shmcast_loom)]
    loom::thread::yield_now();
}

/// Give the CPU away.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(shmcast_loom))]
    std::thread::yield_now();
    #[cfg(shmcast_loom)]
    loom::thread::yield_now();
}
