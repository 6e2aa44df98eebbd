//! What the loom model checks (`loom-tests/`) drive, compiled only under
//! `--cfg shmcast_loom`. Thin, safe wrappers over the production ring ([`crate::ring`]) on
//! the loom heap region (`region_model.rs`): every method below is the same composition of
//! ring calls that `Producer` / `Consumer` / `LossyConsumer` make, so the model checks the
//! real algorithm, not a copy of it.
//!
//! Blocking calls use [`WaitPolicy::Adaptive`], which under loom sleeps on the futex model
//! at the first unsuccessful check.

use crate::layout::{max_message_for, Geometry};
use crate::region::Region;
use crate::ring::{Ended, Record, Reservation, RingConsumer, RingProducer};
use std::fmt;
use std::sync::Arc;

pub use crate::error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
pub use crate::ring::StartAt;
pub use crate::wait::WaitPolicy;

/// The policy of every blocking call here: sleep on the futex model at once.
const BLOCK: WaitPolicy = WaitPolicy::Adaptive {
    spins: 0,
    yields: 0,
};

/// A heap ring under loom, shared by the model's threads.
#[derive(Clone)]
pub struct Ring {
    region: Arc<Region>,
}

// SAFETY: the model region holds loom atomics, a loom mutex/condvar and loom `UnsafeCell`
// payload bytes. The cells are accessed only through `Region::copy_in` / `copy_out`, whose
// exclusivity is the ring protocol under test: loom reports any racing access instead of
// letting it happen. The real `Region` is `Send + Sync` on the same grounds.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("geometry", self.region.geometry())
            .finish()
    }
}

impl Ring {
    /// A ring of `capacity` bytes (a power of two, at least 256) with the largest message
    /// the layout allows (`capacity / 4 - 24`: 40 bytes for 256) and `max_consumers` slots.
    pub fn new(capacity: u64, max_consumers: u32) -> Ring {
        let max_message = max_message_for(capacity);
        crate::layout::check_config(capacity, max_message, u64::from(max_consumers))
            .expect("a valid loom geometry");
        let geo = Geometry::new(capacity, max_message as u32, max_consumers);
        // The model region is not `Sync` (loom's `UnsafeCell` is not); `Ring` and the
        // handles assert it instead (see their `Send` / `Sync` impls).
        #[allow(clippy::arc_with_non_send_sync)]
        let region = Arc::new(Region::heap(geo));
        Ring { region }
    }

    /// Become the ring's producer (`RingProducer::attach`). Panics if there is one.
    pub fn producer(&self) -> Producer {
        Producer {
            ring: RingProducer::attach(Arc::clone(&self.region)).expect("no other producer"),
        }
    }

    /// Attach a lossless consumer (`RingConsumer::attach`). Panics if it cannot.
    pub fn consumer(&self, start: StartAt) -> Consumer {
        Consumer {
            ring: RingConsumer::attach(Arc::clone(&self.region), start, false)
                .expect("a free slot"),
            held: None,
        }
    }

    /// Attach a lossy consumer (`RingConsumer::attach`). Panics if it cannot.
    pub fn lossy_consumer(&self, start: StartAt) -> LossyConsumer {
        LossyConsumer {
            ring: RingConsumer::attach(Arc::clone(&self.region), start, true).expect("a free slot"),
        }
    }
}

/// The producer side: `RingProducer` driven as `Producer` drives it.
pub struct Producer {
    ring: RingProducer,
}

// SAFETY: see `Ring`; the handle itself is process-private state plus the region.
unsafe impl Send for Producer {}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("stats", &self.ring.stats)
            .finish()
    }
}

impl Producer {
    /// Send without waiting, as `Producer::try_send`: `try_reserve`, copy in, `commit`,
    /// `wake_consumers`.
    ///
    /// # Errors
    /// [`TrySendError::Full`] while the slowest consumer gates the write;
    /// [`TrySendError::TooLarge`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let res = self.ring.try_reserve(msg.len())?;
        self.write_commit(res, msg);
        Ok(())
    }

    /// Send, sleeping on the space futex while the ring is full, as `Producer::send`:
    /// `reserve`, copy in, `commit`, `wake_consumers`.
    ///
    /// # Errors
    /// [`SendTimeoutError::TooLarge`] (there is no deadline).
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendTimeoutError> {
        let res = self.ring.reserve(msg.len(), BLOCK, None)?;
        self.write_commit(res, msg);
        Ok(())
    }

    /// Send several messages in batches (`RingProducer::send_batch`, as
    /// `Producer::send_batch` calls it), sleeping on the space futex while the ring is full.
    /// Panics if a message is too large.
    pub fn send_batch(&mut self, msgs: &[&[u8]]) {
        let max = self.ring.max_message();
        assert!(msgs.iter().all(|m| m.len() <= max), "message too large");
        self.ring.send_batch(
            msgs.len(),
            |i| msgs[i].len(),
            BLOCK,
            |i, region, idx| {
                // SAFETY: `idx` is the payload index of a reservation of exactly this
                // length (inside the ring, unpublished, gated clear of unreleased records).
                unsafe { region.copy_in(idx, msgs[i]) }
            },
        );
    }

    /// As `Producer::write_commit`.
    fn write_commit(&mut self, res: Reservation, msg: &[u8]) {
        let idx = res.payload_idx(self.ring.region().geometry().mask);
        // SAFETY: the reservation lies inside the ring and is ours alone until `commit`
        // (the property the model checks: loom fails on a racing access).
        unsafe { self.ring.region().copy_in(idx, msg) };
        self.ring.commit(res);
        self.ring.wake_consumers();
    }

    /// Close the stream (`RingProducer::close`), as dropping a `Producer` does.
    pub fn close(mut self) {
        self.ring.close();
    }
}

/// A message a consumer copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub data: Vec<u8>,
}

/// A lossless consumer: `RingConsumer` driven as `Consumer` drives it.
pub struct Consumer {
    ring: RingConsumer,
    /// A record copied out by [`Consumer::peek`] and not released yet.
    held: Option<Record>,
}

// SAFETY: see `Ring`.
unsafe impl Send for Consumer {}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stats", &self.ring.stats)
            .field("held", &self.held)
            .finish()
    }
}

impl Consumer {
    fn read(&self, rec: &Record) -> Msg {
        let mut data = vec![0; rec.len];
        self.ring.copy_out(rec, &mut data);
        Msg { seq: rec.seq, data }
    }

    /// Copy out and release, as `Consumer::recv_vec` (dropping the `Message`) does.
    fn take(&mut self, rec: Record) -> Msg {
        let msg = self.read(&rec);
        self.held = None;
        self.ring.release(rec.end);
        msg
    }

    /// Receive without waiting, as `Consumer::try_recv`.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Disconnected`], and the other ends.
    pub fn try_recv(&mut self) -> Result<Msg, TryRecvError> {
        let rec = self
            .ring
            .try_poll(RingConsumer::poll)?
            .ok_or(TryRecvError::Empty)?;
        Ok(self.take(rec))
    }

    /// Receive, sleeping on the data futex while the ring is empty, as `Consumer::recv`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Disconnected`] after the last message of a closed stream, and
    /// the other ends (never `Timeout`: there is no deadline).
    pub fn recv(&mut self) -> Result<Msg, RecvTimeoutError> {
        let rec = self.ring.recv(BLOCK, None)?;
        Ok(self.take(rec))
    }

    /// Copy out the next record without releasing it (as holding a `Message`); the
    /// producer must not overwrite it until [`Consumer::release`] or
    /// [`Consumer::detach`]. `None` if nothing is published.
    ///
    /// # Errors
    /// As `RingConsumer::poll`: evicted, or a corrupt record header.
    pub fn peek(&mut self) -> Result<Option<Msg>, RecvTimeoutError> {
        let Some(rec) = self.ring.poll()? else {
            return Ok(None);
        };
        self.held = Some(rec);
        Ok(Some(self.read(&rec)))
    }

    /// Release the record [`Consumer::peek`] returned.
    pub fn release(&mut self) {
        if let Some(rec) = self.held.take() {
            self.ring.release(rec.end);
        }
    }

    /// Store the cursor now (and wake a producer waiting for space), as `check_ended`
    /// does when the ring is empty.
    pub fn publish(&mut self) {
        self.ring.publish();
    }

    /// Detach (`RingConsumer::detach`), as dropping a `Consumer` does.
    pub fn detach(mut self) {
        self.ring.detach();
    }
}

/// A lossy consumer: `RingConsumer` (lossy) driven as `LossyConsumer` drives it.
pub struct LossyConsumer {
    ring: RingConsumer,
}

// SAFETY: see `Ring`.
unsafe impl Send for LossyConsumer {}

impl fmt::Debug for LossyConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossyConsumer")
            .field("stats", &self.ring.stats)
            .finish()
    }
}

impl LossyConsumer {
    /// Receive a copy without waiting, as `LossyConsumer::try_recv_into`.
    ///
    /// # Errors
    /// [`TryRecvError::Lagged`] with the number of messages overwritten before we could
    /// copy them; [`TryRecvError::Empty`]; [`TryRecvError::Disconnected`]; the other ends.
    pub fn try_recv(&mut self) -> Result<Msg, TryRecvError> {
        let mut data = Vec::new();
        let seq = self
            .ring
            .try_poll(|r| r.poll_lossy(&mut data))?
            .ok_or(TryRecvError::Empty)?;
        Ok(Msg { seq, data })
    }

    /// Receive a copy, sleeping on the data futex while the ring is empty, as
    /// `LossyConsumer::recv_into`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Lagged`], [`RecvTimeoutError::Disconnected`], the other ends.
    pub fn recv(&mut self) -> Result<Msg, RecvTimeoutError> {
        let mut data = Vec::new();
        let seq = self
            .ring
            .wait_for(BLOCK, None, |r| r.poll_lossy(&mut data))?;
        Ok(Msg { seq, data })
    }

    /// Detach (`RingConsumer::detach`), as dropping a `LossyConsumer` does.
    pub fn detach(mut self) {
        self.ring.detach();
    }
}
