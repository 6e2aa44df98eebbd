//! Shared (cross-process) futex wait and wake on an `AtomicU32` in the segment.
//!
//! `FUTEX_WAIT_BITSET` with an absolute `CLOCK_MONOTONIC` deadline, so a wait interrupted by
//! a signal (`EINTR`) retries with the same deadline instead of sleeping longer.

use crate::sync::atomic::AtomicU32;
use crate::wait::Wake;
use std::time::Duration;

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

fn deadline_after(timeout: Duration) -> libc::timespec {
    let now = monotonic_now();
    let mut sec = now
        .tv_sec
        .saturating_add(timeout.as_secs().min(i64::MAX as u64 / 2) as i64);
    let mut nsec = now.tv_nsec + i64::from(timeout.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Sleep while `*word == expected`, for at most `timeout`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) -> Wake {
    let deadline = deadline_after(timeout);
    loop {
        // SAFETY: `word` is a live, 4-byte-aligned AtomicU32 (the kernel only reads it);
        // `deadline` is a valid timespec that outlives the call. The operation is shared
        // (no FUTEX_PRIVATE_FLAG) because the word may live in memory mapped by several
        // processes; with FUTEX_WAIT_BITSET the timeout is absolute on CLOCK_MONOTONIC.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET,
                expected,
                &deadline as *const libc::timespec,
                core::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if r == 0 {
            return Wake::Woken;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // Interrupted by a signal: same absolute deadline.
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return Wake::TimedOut,
            // EAGAIN: the word changed before we slept. Anything else (which the kernel
            // does not return for a valid aligned address) is treated as a spurious wake:
            // every caller re-checks its condition and bounds its loop.
            _ => return Wake::Woken,
        }
    }
}

/// Wake every process sleeping on `word`. Returns how many were woken.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    // SAFETY: `word` is a live AtomicU32; FUTEX_WAKE only uses its address as a key.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            core::ptr::null::<libc::timespec>(),
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    usize::try_from(r).unwrap_or(0)
}

// membarrier(2) commands (linux/membarrier.h).
const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

fn membarrier(cmd: libc::c_long) -> libc::c_long {
    // SAFETY: membarrier takes two integer arguments and touches no user memory.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
}

/// Register this process for expedited global memory barriers: once registered, a
/// `heavy_barrier` issued by any process forces a full memory barrier on every CPU that is
/// running one of this process's threads. False if the kernel does not offer it.
pub(crate) fn register_for_heavy_barriers() -> bool {
    let supported = membarrier(MEMBARRIER_CMD_QUERY);
    supported >= 0
        && supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED != 0
        && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0
}

/// The heavy side of an asymmetric barrier: when it returns, every thread of every
/// registered process has executed a full memory barrier since it was called, so their
/// stores that precede their current point in program order are visible to us, and our
/// stores before the call are visible to their later loads. False if the call failed.
pub(crate) fn heavy_barrier() -> bool {
    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
}
