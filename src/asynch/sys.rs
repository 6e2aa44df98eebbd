//! The system calls of the asynchronous handles: the futex calls of the waiter threads
//! (`FUTEX_WAITV`, Linux 5.16+, and a private futex for the waiter's control word, in
//! [`crate::os::futex`]) and `eventfd` for other event loops.

pub(crate) use crate::os::futex::{
    futex_wait_private, futex_waitv, futex_wake_private, FutexWaitv, Waited, WAITV_MAX,
};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
