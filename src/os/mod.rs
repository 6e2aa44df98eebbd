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
