//! One poll of an asynchronous operation: try it; if it cannot complete, announce a sleep
//! on the ring's futex line, register the task with the waiter and return `Pending`. Shared
//! by every asynchronous handle; the handle keeps the [`WaitState`] between polls, so a
//! future dropped mid-wait leaves nothing behind but a registration the next poll reuses.

use super::waiter::{self, Fired, Kind, Registered, Registration};
use crate::region::Region;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Consecutive operations completed without waiting before a poll yields to the executor
/// once (returns `Pending` after waking its own task), so a flooded handle does not starve
/// the other tasks of its thread. tokio's cooperative budget is 128 as well.
pub(crate) const BUDGET: u32 = 128;

/// How many times one poll tries again when the re-check after the announcement says
/// there is something to do, before it yields to the executor.
const ROUNDS: u32 = 4;

/// A handle's waiting state, kept between polls.
#[derive(Debug, Default)]
pub(crate) struct WaitState {
    /// The registered wait, if any (possibly fired already).
    reg: Option<Registration>,
    /// The last wait ended without a wake-up: probe the peers' liveness at the next try.
    pub(crate) probe: bool,
    /// Operations completed since the last `Pending`.
    streak: u32,
    /// Waiting since the last completed operation (counts one "full wait" per send).
    waiting: bool,
}

/// A futex word to wait on: the region it lives in, its address, the value seen.
pub(crate) type Prepared = (Arc<Region>, *const AtomicU32, u32);

impl WaitState {
    /// Is an earlier registration still waiting (then keep waiting, with `cx`'s waker)?
    /// If it ended without a wake-up, remember to probe.
    pub(crate) fn still_waiting(&mut self, cx: &Context<'_>) -> bool {
        let Some(reg) = &mut self.reg else {
            return false;
        };
        reg.set_waker(cx.waker());
        match reg.fired() {
            None if !reg.word_changed() => return true,
            None | Some(Fired::Changed) => {}
            Some(Fired::Unchanged) => self.probe = true,
        }
        self.reg = None;
        false
    }

    /// For a non-waiting try: should it probe the peers' liveness? (Yes if the last wait
    /// ended without a wake-up; a wait still registered stays registered.)
    pub(crate) fn take_probe(&mut self) -> bool {
        if let Some(reg) = &self.reg {
            match reg.fired() {
                None => {}
                Some(Fired::Changed) => self.reg = None,
                Some(Fired::Unchanged) => {
                    self.reg = None;
                    self.probe = true;
                }
            }
        }
        std::mem::take(&mut self.probe)
    }
}

/// Poll an operation on `ring`: `attempt(ring, probe)` tries it (`Ok(None)`: not now;
/// `probe`: check the peers' liveness now); `prepare(ring)` announces a sleep and re-checks
/// (`None`: try again now); `slept(ring, first)` counts a registration (`first`: the first
/// of this operation).
pub(crate) fn poll_wait<R, T, E>(
    w: &mut WaitState,
    cx: &mut Context<'_>,
    ring: &mut R,
    kind: Kind,
    mut attempt: impl FnMut(&mut R, bool) -> Result<Option<T>, E>,
    mut prepare: impl FnMut(&mut R) -> Option<Prepared>,
    mut slept: impl FnMut(&mut R, bool),
) -> Poll<Result<T, E>> {
    if w.still_waiting(cx) {
        return Poll::Pending;
    }
    if w.streak >= BUDGET {
        w.streak = 0;
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    for _ in 0..ROUNDS {
        match attempt(ring, std::mem::take(&mut w.probe)) {
            Ok(Some(v)) => {
                w.streak += 1;
                w.waiting = false;
                return Poll::Ready(Ok(v));
            }
            Err(e) => {
                w.waiting = false;
                return Poll::Ready(Err(e));
            }
            Ok(None) => {}
        }
        let Some((region, word, seen)) = prepare(ring) else {
            continue;
        };
        // SAFETY: `prepare` returns a futex word of `region` (its header's futex lines).
        match unsafe { waiter::register(region, word, seen, kind, cx.waker()) } {
            Registered::Waiting(reg) => {
                slept(ring, !w.waiting);
                w.waiting = true;
                w.reg = Some(reg);
                w.streak = 0;
                return Poll::Pending;
            }
            Registered::Changed => continue,
            Registered::NoThread => break,
        }
    }
    // Something keeps changing (or no waiter thread could be started): let the executor
    // run other tasks, then poll again.
    w.streak = 0;
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Poll for readiness only (for event loops): `Ready` when the operation may complete now
/// or report an error, without performing it.
pub(crate) fn poll_ready<R>(
    w: &mut WaitState,
    cx: &mut Context<'_>,
    ring: &mut R,
    kind: Kind,
    mut prepare: impl FnMut(&mut R) -> Option<Prepared>,
) -> Poll<()> {
    if w.still_waiting(cx) {
        return Poll::Pending;
    }
    if w.probe {
        // A wait ended without a wake-up: the next try probes (and may report the end).
        return Poll::Ready(());
    }
    let Some((region, word, seen)) = prepare(ring) else {
        return Poll::Ready(());
    };
    // SAFETY: as in `poll_wait`.
    match unsafe { waiter::register(region, word, seen, kind, cx.waker()) } {
        Registered::Waiting(reg) => {
            w.reg = Some(reg);
            Poll::Pending
        }
        Registered::Changed | Registered::NoThread => Poll::Ready(()),
    }
}
