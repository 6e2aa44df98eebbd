//! [`EventFd`]: readiness of shmcast handles as a pollable descriptor, for event loops that
//! are not an async runtime (epoll, mio, `poll`).

use super::sys;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// A Linux eventfd that the waiter makes readable when an armed handle may be ready
/// ([`AsyncConsumer::arm`](crate::AsyncConsumer::arm),
/// [`AsyncLossyConsumer::arm`](crate::AsyncLossyConsumer::arm),
/// [`AsyncProducer::arm`](crate::AsyncProducer::arm)). Register it with epoll or mio for
/// readability (level- or edge-triggered), and [`clear`](EventFd::clear) it when it fires.
/// Non-blocking and close-on-exec. One `EventFd` may serve any number of handles.
///
/// A shmcast ring cannot hand out a descriptor of its own: its producer wakes sleepers with
/// `FUTEX_WAKE` on a word in shared memory, which no descriptor can watch, and the producer
/// cannot write to an eventfd of another process it does not know. This one is signalled
/// by this process's waiter thread, which watches the futex word (see the
/// [module docs](crate::asynch)): one thread hop more than a descriptor the producer wrote
/// to itself.
///
/// # Examples
/// ```
/// let fd = shmcast::EventFd::new()?;
/// assert!(!fd.clear()); // not signalled
/// fd.waker().wake_by_ref();
/// assert!(fd.clear());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct EventFd {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
}

impl Wake for Inner {
    fn wake(self: Arc<Self>) {
        sys::eventfd_signal(&self.fd);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        sys::eventfd_signal(&self.fd);
    }
}

impl EventFd {
    /// A new eventfd, not signalled.
    ///
    /// # Errors
    /// The OS error (out of descriptors).
    pub fn new() -> io::Result<EventFd> {
        Ok(EventFd {
            inner: Arc::new(Inner {
                fd: sys::eventfd()?,
            }),
        })
    }

    /// Reset it to not readable; returns whether it was signalled.
    pub fn clear(&self) -> bool {
        sys::eventfd_clear(&self.inner.fd)
    }

    /// A waker that signals it: any future or handle polled with this waker makes the
    /// descriptor readable when it should be polled again.
    pub fn waker(&self) -> Waker {
        Waker::from(Arc::clone(&self.inner))
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }
}

impl fmt::Debug for EventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFd")
            .field("fd", &self.inner.fd.as_raw_fd())
            .finish()
    }
}
