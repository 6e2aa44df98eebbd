//! A ring's memory: the one module that touches shared memory. Everything the ring reads or
//! writes in a segment goes through a [`Region`]: references to the header and slot atomics,
//! the 8-byte words of the data ring, payload copies in and out, and the payload slices
//! handed to users; plus the liveness locks and futexes that belong to the same segment.
//!
//! Two implementations with one method set, chosen here and nowhere else:
//! - `memory.rs`: a mapped segment shared between processes (named object, file or memfd,
//!   through [`crate::os`]) or a heap allocation shared between threads (in-process rings,
//!   Miri). Liveness locks are OFD locks or, on the heap, flags.
//! - `model.rs` (`--cfg shmcast_loom`): the same bytes as loom atomics and loom cells,
//!   liveness locks as model-visible flags, the futex as a loom mutex and condition
//!   variable, so the model checks run the production ring on it.

#[cfg(not(shmcast_loom))]
mod memory;
#[cfg(shmcast_loom)]
mod model;

#[cfg(not(shmcast_loom))]
pub(crate) use memory::{Data, DeathNotice, Region, Wake};
#[cfg(shmcast_loom)]
pub(crate) use model::{Data, Region, Wake};

/// A liveness lock: one per producer and per consumer slot. Held by a live owner for as
/// long as it is attached; released by the kernel when the owner dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockId {
    /// The producer's lock.
    Producer,
    /// Consumer slot `n`'s lock.
    Slot(u32),
}

impl LockId {
    /// The byte of the segment file that this lock covers.
    pub(crate) fn byte(self) -> i64 {
        match self {
            LockId::Producer => 0,
            LockId::Slot(n) => 1 + i64::from(n),
        }
    }
}
