//! Shared (cross-process) futex wait and wake on a 4-byte word of a mapping.
//!
//! `FUTEX_WAIT_BITSET` with an absolute `CLOCK_MONOTONIC` deadline, so a wait interrupted by
//! a signal (`EINTR`) retries with the same deadline instead of sleeping longer.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

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
                // The kernel reads `val3` as a u32; libc spells the mask as the c_int -1.
                libc::FUTEX_BITSET_MATCH_ANY as u32,
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

// ---- futex_waitv and private futexes (the asynchronous waiter, the death notice) ----

/// `futex_waitv(2)`: the same number on every architecture (the generic syscall table).
const SYS_FUTEX_WAITV: libc::c_long = 449;
/// A 32-bit futex word (`FUTEX2_SIZE_U32`).
const FUTEX2_SIZE_U32: u32 = 0x02;
#[cfg(feature = "tokio")]
/// A futex of this process only (`FUTEX2_PRIVATE`, the same bit as `FUTEX_PRIVATE_FLAG`).
const FUTEX2_PRIVATE: u32 = 128;
/// The kernel's limit on the words of one `futex_waitv` call (`FUTEX_WAITV_MAX`).
pub(crate) const WAITV_MAX: usize = 128;

/// One word of a `futex_waitv` call (`struct futex_waitv`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

impl FutexWaitv {
    /// Wait while the shared (cross-process) word at `word` holds `val`.
    pub(crate) fn shared(word: *const AtomicU32, val: u32) -> FutexWaitv {
        FutexWaitv {
            val: u64::from(val),
            uaddr: word as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }

    #[cfg(feature = "tokio")]
    /// Wait while the private (this process's) word at `word` holds `val`.
    pub(crate) fn private(word: *const AtomicU32, val: u32) -> FutexWaitv {
        FutexWaitv {
            flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
            ..FutexWaitv::shared(word, val)
        }
    }
}

/// Why a wait returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Woken, or a word did not hold its value (`EAGAIN`), or a signal: look again.
    Woken,
    /// The deadline passed.
    TimedOut,
    /// A word's address is not mapped (`EFAULT`): the caller's bookkeeping is wrong.
    Fault,
}

/// `deadline` as an absolute `CLOCK_MONOTONIC` time (what `Instant` measures on Linux;
/// converted through the distance from now, so the two clocks need not share an epoch).
fn absolute(deadline: Instant) -> libc::timespec {
    deadline_after(deadline.saturating_duration_since(Instant::now()))
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `futex_waitv` state of this process: unknown yet, usable, or not (missing, refused,
/// turned off with `SHMCAST_FUTEX_WAITV=0`, or by a test hook).
static WAITV: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(WAITV_UNKNOWN);
const WAITV_UNKNOWN: u8 = 0;
const WAITV_YES: u8 = 1;
const WAITV_NO: u8 = 2;

/// May this process sleep with `futex_waitv`? (Asked of the kernel once.)
pub(crate) fn waitv_usable() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    // Relaxed: a cached answer to a question whose every asker gets the same answer.
    match WAITV.load(Relaxed) {
        WAITV_YES => true,
        WAITV_NO => false,
        _ => {
            let allowed = std::env::var("SHMCAST_FUTEX_WAITV").map_or(true, |v| v != "0");
            let yes = allowed && has_futex_waitv();
            // A test hook that said "no" first wins.
            let _ = WAITV.compare_exchange(
                WAITV_UNKNOWN,
                if yes { WAITV_YES } else { WAITV_NO },
                Relaxed,
                Relaxed,
            );
            WAITV.load(Relaxed) == WAITV_YES
        }
    }
}

/// Test hook: this process does without `futex_waitv` from now on (as on a kernel without
/// it).
#[cfg(feature = "test-hooks")]
pub(crate) fn disable_waitv() {
    WAITV.store(WAITV_NO, std::sync::atomic::Ordering::Relaxed);
}

/// Does this kernel have `futex_waitv`? (Asked with an empty vector: `EINVAL` if it does,
/// `ENOSYS` if not, `EPERM` under a seccomp filter that refuses it.)
fn has_futex_waitv() -> bool {
    // SAFETY: an empty vector (no address is read), no timeout.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            core::ptr::null::<FutexWaitv>(),
            0u32,
            0u32,
            core::ptr::null::<libc::timespec>(),
            libc::CLOCK_MONOTONIC,
        )
    };
    r < 0 && errno() == libc::EINVAL
}

/// Sleep until a word of `words` no longer holds its value or is woken, or `deadline`.
///
/// # Safety
/// Every address in `words` points to a live, 4-byte-aligned `AtomicU32` for the whole
/// call (the caller keeps the memory mapped).
pub(crate) unsafe fn futex_waitv(words: &[FutexWaitv], deadline: Option<Instant>) -> Waited {
    debug_assert!(!words.is_empty() && words.len() <= WAITV_MAX);
    let ts = deadline.map(absolute);
    let ts_ptr = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `words` is a valid array of `words.len()` `struct futex_waitv`, whose
    // addresses the caller keeps valid; `ts_ptr` is null or a valid timespec that outlives
    // the call, absolute on CLOCK_MONOTONIC; flags must be 0.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            words.as_ptr(),
            words.len() as u32,
            0u32,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Waited::Woken;
    }
    match errno() {
        libc::ETIMEDOUT => Waited::TimedOut,
        libc::EFAULT => Waited::Fault,
        // EAGAIN (a value differed), EINTR (a signal): look again.
        _ => Waited::Woken,
    }
}

#[cfg(feature = "tokio")]
/// Sleep while the private word `word` holds `val`, until `deadline` if any.
pub(crate) fn futex_wait_private(word: &AtomicU32, val: u32, deadline: Option<Instant>) -> Waited {
    let ts = deadline.map(absolute);
    let ts_ptr = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live AtomicU32 of this process; `ts_ptr` is null or a valid
    // timespec (absolute on CLOCK_MONOTONIC with FUTEX_WAIT_BITSET) that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
            val,
            ts_ptr,
            core::ptr::null::<u32>(),
            // As in `wait`: `val3` is a u32 to the kernel.
            libc::FUTEX_BITSET_MATCH_ANY as u32,
        )
    };
    if r == 0 {
        return Waited::Woken;
    }
    match errno() {
        libc::ETIMEDOUT => Waited::TimedOut,
        _ => Waited::Woken,
    }
}

#[cfg(feature = "tokio")]
/// Wake the waiter sleeping on the private word `word`.
pub(crate) fn futex_wake_private(word: &AtomicU32) {
    // SAFETY: `word` is a live AtomicU32; FUTEX_WAKE only uses its address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
            core::ptr::null::<libc::timespec>(),
            core::ptr::null::<u32>(),
            0u32,
        );
    }
}
