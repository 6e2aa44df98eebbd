//! Shared (cross-process) futex wait and wake on a 4-byte word of a mapping.
//!
//! `FUTEX_WAIT_BITSET` with an absolute `CLOCK_MONOTONIC` deadline, so a wait interrupted by
//! a signal (`EINTR`) retries with the same deadline instead of sleeping longer.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Why a futex wait returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word no longer held the expected value (`EAGAIN`).
    Woken,
    /// The timeout elapsed.
    TimedOut,
}

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
        // SAFETY: `word` is a live, 4-byte-aligned AtomicU32 (the kernel only reads it, and
        // other processes may write it at any time, which is what a futex is for);
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
