//! Liveness locks: open-file-description (OFD) locks on single bytes of a file, taken on a
//! private description of the object. The kernel drops them when the last descriptor of the
//! description closes, which happens when the owning process dies (even by `SIGKILL`), and
//! pid reuse cannot fool them.
//!
//! Locks belong to a description, not to a process: were they taken on a descriptor that a
//! child inherited (or that was handed to another process), that holder would keep them
//! alive after the owner died. Hence a private description per handle, never handed out,
//! `O_CLOEXEC`, and registered with [`crate::os::fork`] so a forked child drops it.

use super::cvt;
use super::fork::{self, Registration};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// A private open file description of a shared-memory object, for its owner's locks.
#[derive(Debug)]
pub(crate) struct Locks {
    /// Unregistered (dropped) before `file` closes, so a fork in between never touches a
    /// reused descriptor number: fields drop in declaration order, so it comes first.
    _fork: Registration,
    file: File,
}

impl Locks {
    /// A new open file description of the object behind `file`; `read_only` for one that
    /// only probes others' locks (inspection).
    pub(crate) fn open(file: &File, read_only: bool) -> io::Result<Locks> {
        let path = format!("/proc/self/fd/{}\0", file.as_raw_fd());
        let access = if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        // SAFETY: NUL-terminated path. No O_NOFOLLOW: /proc fd entries are magic links.
        let raw = cvt(unsafe { libc::open(path.as_ptr().cast(), access | libc::O_CLOEXEC) })?;
        // SAFETY: freshly opened descriptor, owned here.
        let file = unsafe { File::from_raw_fd(raw) };
        let _fork = fork::register(raw);
        Ok(Locks { _fork, file })
    }

    fn op(&self, cmd: libc::c_int, kind: libc::c_short, byte: i64) -> io::Result<libc::flock> {
        // SAFETY: flock is plain old data; all-zero is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = byte;
        fl.l_len = 1;
        // l_pid must be 0 for OFD locks.
        fl.l_pid = 0;
        // SAFETY: `file` is an open descriptor; `fl` is a valid flock for the duration of
        // the call.
        cvt(unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl) })?;
        Ok(fl)
    }

    /// Take the lock on `byte` without blocking: `Ok(false)` if another description holds it.
    pub(crate) fn try_lock(&self, byte: i64) -> io::Result<bool> {
        match self.op(libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short, byte) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Release the lock on `byte`.
    pub(crate) fn unlock(&self, byte: i64) {
        // Unlocking a lock we hold cannot fail for a valid descriptor; if it did, closing
        // the descriptor on drop releases it anyway.
        let _ = self.op(libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short, byte);
    }

    /// Does another description hold the lock on `byte`? Errors count as held: never
    /// presume a peer dead on a doubt.
    pub(crate) fn held_by_other(&self, byte: i64) -> bool {
        match self.op(libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, byte) {
            Ok(fl) => fl.l_type != libc::F_UNLCK as libc::c_short,
            Err(_) => true,
        }
    }
}
