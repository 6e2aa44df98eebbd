//! Sleeping and waking: an eventcount on each futex line (consumers sleep on `data` while the
//! ring is empty, the producer on `space` while it is full).
//!
//! Dekker-shaped, with `fence(SeqCst)` on both sides:
//! - sleeper ([`sleep`]): read the futex word; set the `sleepers` flag (a read-modify-write);
//!   fence; re-check the condition; only then `futex_wait(word, value read first)`;
//! - waker ([`notify`]): publish (a stamp, or a cursor); fence; only if the flag is set, clear
//!   it, bump the word and `FUTEX_WAKE` everyone.
//!
//! Either the sleeper's re-check sees the publication, or the waker's flag load sees the
//! sleeper (the fences forbid both missing each other). One wake-up serves every sleeper of
//! a generation: while woken sleepers are on their way back to a CPU (tens of microseconds
//! on an idle VM) later publications make no syscall, and a sleeper that died costs one
//! needless wake-up, not one per message. Bumping the word makes a sleeper that read the
//! old value return at once instead of sleeping. Sleeps are bounded so a sleeper re-checks
//! peer liveness even if a waker died between publishing and waking: a consumer that also
//! sleeps on the producer's death notice (`Region::wait_for_data`), which the kernel wakes
//! when the producer's process dies, by a 5 s backstop; every other sleep by `SLEEP_BOUND`.
//!
//! Both fences are real hardware fences in every mode: an asymmetric variant (a compiler
//! fence on the waker, `membarrier` on the sleeper) saves the waker's fence but interrupts
//! every CPU that runs a registered process whenever anyone sleeps, and was removed (see
//! the README's design notes for the measurements).

use super::attach::RingConsumer;
use super::writer::RingProducer;
use crate::layout::{FutexLine, PRODUCER_CLOSED};
use crate::region::{LockId, Region, Wake};
use crate::sync::atomic::{fence, Ordering::*};
use crate::wait::SLEEP_BOUND;
use std::sync::Arc;
use std::time::Duration;

/// The sleeper side: announce, fence, re-check with `ready`, and sleep for at most
/// `timeout` unless it said ready. `None` if it did not sleep.
fn sleep(
    region: &Region,
    futex: &FutexLine,
    timeout: Duration,
    ready: impl FnOnce() -> bool,
) -> Option<Wake> {
    let seen = announce(futex);
    if ready() {
        return None;
    }
    Some(region.wait(&futex.word, seen, timeout))
}

/// The sleeper's announcement: read the futex word, set the flag, fence. The caller then
/// re-checks its condition and, only if it still holds, waits while the word is the value
/// returned (a blocking futex wait here, or an asynchronous waiter elsewhere).
pub(crate) fn announce(futex: &FutexLine) -> u32 {
    // Read the futex word first: a wake after this point changes it, and the wait then
    // returns at once. Acquire pairs with the Release bump in `wake_generation`. Defensive
    // (redundant: only the kernel compares the value; the fence below orders the re-check).
    let seen = futex.word.load(Acquire);
    futex.sleepers.swap(1, Relaxed);
    // Dekker: orders the announcement before the re-check; pairs with the fence in
    // `notify` (publication, fence, flag load).
    fence(SeqCst);
    seen
}

/// The waker side, after a publication (a stamp or a cursor store): wake the sleepers of
/// `futex` if the flag says there may be any. True if it made a wake-up syscall.
#[inline]
pub(super) fn notify(region: &Region, futex: &FutexLine) -> bool {
    // Dekker: orders the caller's publication before the flag load; pairs with the fence in
    // `sleep` (flag RMW, fence, re-check).
    fence(SeqCst);
    if futex.sleepers.load(Relaxed) != 0 {
        wake_generation(region, futex);
        return true;
    }
    false
}

/// Wake every sleeper of the current generation of `futex` (the caller saw its flag set
/// after its fence). Clearing the flag first means later publications make no syscall
/// until someone announces a new sleep.
fn wake_generation(region: &Region, futex: &FutexLine) {
    futex.sleepers.store(0, Relaxed);
    wake_all(region, futex);
}

/// Wake every sleeper of `futex` unconditionally (closing the stream).
pub(super) fn wake_all(region: &Region, futex: &FutexLine) {
    // Release: a woken sleeper that reads the new word also sees what was published.
    futex.word.fetch_add(1, Release);
    region.wake_all(&futex.word);
}

/// The largest single sleep for a caller with `remaining` time.
fn bound(remaining: Option<Duration>) -> Duration {
    remaining.map_or(SLEEP_BOUND, |r| r.min(SLEEP_BOUND))
}

impl RingProducer {
    /// For waiters that do not block here (asynchronous ones): announce a sleep on the space
    /// futex and re-check for room for a `len`-byte message. `None` if there is room (or
    /// the message can never fit: the next `try_reserve` says why); otherwise the futex word
    /// to wait on and the value it must change from, for at most `SLEEP_BOUND`.
    #[cfg(all(not(shmcast_loom), feature = "tokio"))]
    pub(crate) fn prepare_wait_for_space(
        &mut self,
        len: usize,
    ) -> Option<(&crate::sync::atomic::AtomicU32, u32)> {
        let Ok(need) = self.plan_end(len) else {
            return None;
        };
        let region = Arc::clone(&self.region);
        let seen = announce(&region.header().space);
        if self.refresh(need) {
            return None;
        }
        Some((&self.region.header().space.word, seen))
    }

    /// Sleep on the space futex until a consumer releases enough for a `len`-byte message
    /// (or a bound passes).
    pub(super) fn sleep_for_space(&mut self, len: usize, remaining: Option<Duration>) {
        let Ok(need) = self.plan_end(len) else { return };
        let region = Arc::clone(&self.region);
        // The re-check rescans the slots: its cursor loads follow the fence.
        if sleep(&region, &region.header().space, bound(remaining), || {
            self.refresh(need)
        })
        .is_some()
        {
            self.stats.sleeps += 1;
        }
    }
}

impl RingConsumer {
    /// For waiters that do not block here (asynchronous ones): announce a sleep on the data
    /// futex and re-check. `None` if there is something to poll now (a record, a lap, or
    /// the end of the stream); otherwise the futex word to wait on and the value it must
    /// change from (the waiter watches the producer's liveness meanwhile).
    #[cfg(all(not(shmcast_loom), feature = "tokio"))]
    pub(crate) fn prepare_wait(&mut self) -> Option<(&crate::sync::atomic::AtomicU32, u32)> {
        let h = self.region.header();
        let seen = announce(&h.data);
        if self.ready()
            || (h.control.state.load(Relaxed) == PRODUCER_CLOSED
                && !self.region.held_by_other(LockId::Producer))
        {
            return None;
        }
        Some((&h.data.word, seen))
    }

    /// Sleep on the data futex until the producer publishes, or its death notice changes,
    /// or a bound passes (`TimedOut`: probe the producer's liveness now). See
    /// `Region::wait_for_data`: with the producer's death notice, the bound is 5 s (a
    /// backstop), else `SLEEP_BOUND`.
    pub(super) fn sleep(&mut self, remaining: Option<Duration>) -> Wake {
        let region = Arc::clone(&self.region);
        let h = region.header();
        let seen = announce(&h.data);
        // A stream closed for good (CLOSED stored and the producer lock free) ends the wait;
        // while the closing producer still holds its lock, sleep: its wake follows.
        if self.ready()
            || (h.control.state.load(Relaxed) == PRODUCER_CLOSED
                && !region.held_by_other(LockId::Producer))
        {
            return Wake::Woken;
        }
        self.stats.sleeps += 1;
        region.wait_for_data(&h.data.word, seen, remaining)
    }
}
