//! The operating-system layer: shared-memory objects and their mappings, liveness locks,
//! futexes and fork detection. Nothing here knows the ring or the segment layout; the
//! region (`crate::region`) puts them together.

pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod lock;
pub(crate) mod robust;
pub(crate) mod segment;

use std::io;

/// `Err(last_os_error)` for a negative return value.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Spawn a helper thread of the library (the death notice's owner, the asynchronous
/// waiter) with every signal blocked, so that no process-directed signal (`SIGINT`,
/// `SIGTERM`, a `sigwait` design's signals) is ever delivered to it instead of to the
/// application's own threads. The mask is set on the calling thread around the spawn (the
/// new thread inherits it from its first instruction) and restored before returning.
pub(crate) fn spawn_quiet<F>(
    builder: std::thread::Builder,
    f: F,
) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    // SAFETY: sigset_t is plain old data; sigfillset initializes it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `all` is a valid sigset_t to fill.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: valid sets; changes only this thread's mask, restored below.
    let masked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) } == 0;
    let spawned = builder.spawn(f);
    if masked {
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    spawned
}
