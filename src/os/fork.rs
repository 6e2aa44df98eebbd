//! Fork detection. A child forked without exec inherits every handle of its parent (memory)
//! and every descriptor (files), among them the private descriptions that carry the
//! parent's liveness locks. Two rules follow:
//!
//! - The child must not hold the parent's locks: it would keep a dead parent looking alive.
//!   A `pthread_atfork` child handler replaces every registered lock descriptor, in the
//!   child only, with `/dev/null` (`dup2`), which drops the child's reference to the locked
//!   description; the parent's locks are untouched.
//! - The child must not use the parent's handles: two producers would write one ring, two
//!   readers would move one cursor. Every handle remembers the fork [`generation`] it was
//!   made in; the child handler bumps it, and a handle from an earlier generation refuses
//!   every operation and does nothing when dropped.
//!
//! The handler runs in the child of a multi-threaded process, so it only does what is
//! async-signal-safe: atomic loads and stores, `open`, `dup2`, `close`.

use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering::*};
use std::sync::Once;

/// Bumped in every forked child.
static GENERATION: AtomicU32 = AtomicU32::new(0);

static INSTALL: Once = Once::new();

/// The fork generation of this process: 0 in a process that never forked since the first
/// handle was made, one more in each forked child. Cheap: one relaxed load (the handler is
/// installed by [`install`], which every handle constructor calls first).
#[inline]
pub(crate) fn generation() -> u32 {
    // Relaxed: the child handler runs before any code of the child, in the same thread.
    GENERATION.load(Relaxed)
}

/// Install the child handler (once per process); returns the current generation.
pub(crate) fn install() -> u32 {
    INSTALL.call_once(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that only makes async-signal-safe calls;
        // registering it cannot fail except with ENOMEM, in which case forked children keep
        // the inherited descriptors (documented behaviour of a failed registration: no
        // worse than before), so the result is deliberately ignored.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
    generation()
}

/// A registered descriptor: a node of a lock-free list that is never freed (nodes are
/// reused), so the child handler can walk it without taking a lock.
struct Node {
    /// The descriptor, or -1 when the node is free.
    fd: AtomicI32,
    next: AtomicPtr<Node>,
}

static HEAD: AtomicPtr<Node> = AtomicPtr::new(ptr::null_mut());

/// A descriptor that forked children must not keep open. Unregistered on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    node: &'static Node,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("fd", &self.fd).finish()
    }
}

/// Register `fd`: in every child forked from now on, it is replaced by `/dev/null`.
pub(crate) fn register(fd: c_int) -> Registration {
    install();
    // Reuse a free node.
    let mut p = HEAD.load(Acquire);
    while !p.is_null() {
        // SAFETY: nodes are leaked boxes, never freed: `p` stays valid for ever.
        let node: &'static Node = unsafe { &*p };
        // AcqRel: pairs with the Release store of -1 in `Registration::drop`.
        if node.fd.compare_exchange(-1, fd, AcqRel, Relaxed).is_ok() {
            return Registration { node };
        }
        p = node.next.load(Acquire);
    }
    let node: &'static Node = Box::leak(Box::new(Node {
        fd: AtomicI32::new(fd),
        next: AtomicPtr::new(ptr::null_mut()),
    }));
    let mut head = HEAD.load(Acquire);
    loop {
        node.next.store(head, Relaxed);
        // Release: the handler (Acquire loads of HEAD and `next`) sees the node's fields.
        match HEAD.compare_exchange(head, node as *const Node as *mut Node, Release, Acquire) {
            Ok(_) => return Registration { node },
            Err(now) => head = now,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Release: pairs with the AcqRel CAS that reuses the node.
        self.node.fd.store(-1, Release);
    }
}

/// The `pthread_atfork` child handler.
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Relaxed);
    // SAFETY: open, dup2 and close are async-signal-safe; the path is NUL-terminated.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if null < 0 {
        return;
    }
    let mut p = HEAD.load(Acquire);
    while !p.is_null() {
        // SAFETY: nodes are never freed.
        let node = unsafe { &*p };
        let fd = node.fd.load(Acquire);
        if fd >= 0 {
            // SAFETY: `fd` is a descriptor this process registered and has not closed (it
            // unregisters before closing); dup2 atomically makes it refer to /dev/null, so
            // the number stays valid for the owner's later close.
            unsafe { libc::dup2(null, fd) };
        }
        p = node.next.load(Acquire);
    }
    // SAFETY: `null` was opened above.
    unsafe { libc::close(null) };
}
