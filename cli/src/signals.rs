//! Signals: Ctrl-C (and SIGTERM) ask `tail` and `top` to stop at their next check, so a
//! consumer detaches from its slot and buffered output is written; a second one exits at
//! once. SIGBUS (a mapped segment truncated by another process) gets a message instead of
//! a silent death.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

/// Has the user asked to stop?
pub(crate) fn stop_requested() -> bool {
    // Relaxed: a flag polled in a loop; it publishes no other data.
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_stop(signal: libc::c_int) {
    // Relaxed: see `stop_requested`. Async-signal-safe: an atomic swap, then `_exit`.
    if STOP.swap(true, Ordering::Relaxed) {
        // SAFETY: `_exit` is async-signal-safe; the user asked twice, we end now.
        unsafe { libc::_exit(128 + signal) };
    }
}

extern "C" fn on_bus(_signal: libc::c_int) {
    const MESSAGE: &[u8] = b"shmcast: bus error (SIGBUS) while reading a shared-memory segment: \
        another process truncated it while it was mapped\n";
    // SAFETY: `write` and `_exit` are async-signal-safe; `MESSAGE` is a valid buffer of
    // that length. Nothing can be done if the write fails.
    unsafe {
        libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::_exit(1);
    }
}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty mask) that the
    // fields set below complete.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as libc::sighandler_t;
    // Interrupted system calls resume; the loops poll `stop_requested` between waits.
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid signal set to initialize.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialized and its handler only does async-signal-safe
    // things; a null old-action pointer is allowed.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Is `signal` ignored (as the shell sets SIGINT for a background job of a script)?
fn ignored(signal: libc::c_int) -> io::Result<bool> {
    // SAFETY: an all-zero `sigaction` is a valid value for the kernel to overwrite.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `current` is valid for writing.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(current.sa_sigaction == libc::SIG_IGN)
}

/// Make SIGINT and SIGTERM request a stop (see [`stop_requested`]), except where they are
/// ignored: a process started with a signal ignored keeps ignoring it, as shells expect.
pub(crate) fn catch_stop() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        if !ignored(signal)? {
            install(signal, on_stop)?;
        }
    }
    Ok(())
}

/// Report SIGBUS on standard error and exit 1, instead of dying silently. Best effort: if
/// the handler cannot be installed the default action remains.
pub(crate) fn report_bus_errors() {
    let _ = install(libc::SIGBUS, on_bus);
}
