//! Identifiers shared by both region implementations.

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
