//! The system calls of the waiter threads: `FUTEX_WAITV` (Linux 5.16+), a private futex for
//! the waiter's control word, and `eventfd` for other event loops.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// `futex_waitv(2)`: the same number on every architecture (the generic syscall table).
const SYS_FUTEX_WAITV: libc::c_long = 449;
/// A 32-bit futex word (`FUTEX2_SIZE_U32`).
const FUTEX2_SIZE_U32: u32 = 0x02;
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

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// `deadline` as an absolute `CLOCK_MONOTONIC` time (what `Instant` measures on Linux;
/// converted through the distance from now, so the two clocks need not share an epoch).
fn absolute(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let now = monotonic_now();
    let left = left.min(Duration::from_secs(1 << 30));
    let mut sec = now.tv_sec + left.as_secs() as libc::time_t;
    let mut nsec = now.tv_nsec + libc::c_long::from(left.subsec_nanos() as i32);
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec += 1;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Does this kernel have `futex_waitv`? (Asked with an empty vector: `EINVAL` if it does,
/// `ENOSYS` if not, `EPERM` under a seccomp filter that refuses it.)
pub(crate) fn has_futex_waitv() -> bool {
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
            libc::FUTEX_BITSET_MATCH_ANY,
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

/// A new non-blocking, close-on-exec eventfd with a zero counter.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new descriptor that we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Add one to an eventfd's counter (it becomes readable). A counter at its maximum
/// (`EAGAIN`) is readable already.
pub(crate) fn eventfd_signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to a descriptor we own.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Reset an eventfd's counter to zero; true if it was signalled.
pub(crate) fn eventfd_clear(fd: &OwnedFd) -> bool {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a non-blocking descriptor we own.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    r == 8
}
