//! The asynchronous producer: [`AsyncProducer`].

use super::event_fd::EventFd;
use super::wait::{self, poll_wait, Prepared, WaitState};
use super::waiter::Kind;
use crate::error::{SendError, TrySendError};
use crate::ring::writer::RingProducer;
use crate::ring::{ProducerStats, Reservation};
use crate::{Producer, Reserved};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Announce a sleep on the space line of `ring` for a `len`-byte message.
fn prepare_space(ring: &mut RingProducer, len: usize) -> Option<Prepared> {
    let region = Arc::clone(ring.region());
    let (word, seen) = ring.prepare_wait_for_space(len)?;
    Some((region, word, seen))
}

fn count_sleep(ring: &mut RingProducer, first: bool) {
    ring.stats.sleeps += 1;
    if first {
        ring.stats.full_waits += 1;
    }
}

/// `try_send`'s outcome as a wait: `Full` is "not now".
fn not_full<T>(r: Result<T, TrySendError>) -> Result<Option<T>, SendError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(TrySendError::Full) => Ok(None),
        Err(TrySendError::TooLarge { len, max }) => Err(SendError::TooLarge { len, max }),
        Err(TrySendError::Exhausted) => Err(SendError::Exhausted),
        Err(TrySendError::Forked) => Err(SendError::Forked),
    }
}

/// A [`Producer`] whose sends can be awaited: `send(msg).await` and `reserve(len).await`
/// wait (without blocking the thread) while the slowest lossless consumer keeps the ring
/// full. Cancel-safe: a future dropped before it completed sent and reserved nothing. Dropping
/// the handle closes the stream, as dropping the producer does.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let producer = shmcast::Producer::builder().capacity(4096).create_in_process()?;
/// let mut consumer = shmcast::Consumer::builder().attach_to(&producer)?;
/// let mut producer = shmcast::AsyncProducer::new(producer);
/// // A blocking reader on another thread; the ring holds far less than 1000 messages.
/// let reader = std::thread::spawn(move || consumer.iter().count());
/// for i in 0..1000u32 {
///     producer.send(&i.to_le_bytes()).await?;
/// }
/// drop(producer); // closes the stream
/// assert_eq!(reader.join().unwrap(), 1000);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncProducer {
    producer: Producer,
    wait: WaitState,
}

impl AsyncProducer {
    /// Wrap `producer`. Its wait policy no longer matters: asynchronous sends never spin or
    /// block the thread.
    pub fn new(producer: Producer) -> AsyncProducer {
        AsyncProducer {
            producer,
            wait: WaitState::default(),
        }
    }

    /// The blocking handle back.
    pub fn into_inner(self) -> Producer {
        self.producer
    }

    /// The blocking handle, for its other operations (batches, snapshots).
    pub fn get_mut(&mut self) -> &mut Producer {
        &mut self.producer
    }

    /// The blocking handle.
    pub fn get_ref(&self) -> &Producer {
        &self.producer
    }

    /// Poll a send of `msg`: `Ready(Ok)` once it is published.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<(), SendError>> {
        let Some(ring) = self.producer.ring_if_owned() else {
            return Poll::Ready(Err(SendError::Forked));
        };
        poll_wait(
            &mut self.wait,
            cx,
            ring,
            Kind::Space,
            |r, _| not_full(r.try_send(msg)),
            |r| prepare_space(r, msg.len()),
            count_sleep,
        )
    }

    fn poll_reserve(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Poll<Result<Reservation, SendError>> {
        let Some(ring) = self.producer.ring_if_owned() else {
            return Poll::Ready(Err(SendError::Forked));
        };
        poll_wait(
            &mut self.wait,
            cx,
            ring,
            Kind::Space,
            |r, _| not_full(r.try_reserve_staged(len)),
            |r| prepare_space(r, len),
            count_sleep,
        )
    }

    /// Send `msg`, waiting while the ring is full.
    ///
    /// # Errors
    /// As [`Producer::send`]: [`SendError::TooLarge`], [`SendError::Exhausted`],
    /// [`SendError::Forked`].
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = shmcast::AsyncProducer::new(shmcast::Producer::builder().create_in_process()?);
    /// let mut c = shmcast::Consumer::builder().attach_to(p.get_ref())?;
    /// p.send(b"hi").await?;
    /// assert_eq!(&*c.recv()?, b"hi");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        poll_fn(|cx| self.poll_send(cx, msg)).await
    }

    /// Send a plain-old-data value (its bytes), waiting while the ring is full.
    ///
    /// # Errors
    /// As [`AsyncProducer::send`].
    pub async fn send_value<T: bytemuck::NoUninit>(&mut self, value: &T) -> Result<(), SendError> {
        self.send(bytemuck::bytes_of(value)).await
    }

    /// Reserve `len` bytes in the ring, waiting while it is full; fill the guard in place
    /// and [`commit`](Reserved::commit) it (dropping it aborts).
    ///
    /// # Errors
    /// As [`AsyncProducer::send`].
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = shmcast::AsyncProducer::new(shmcast::Producer::builder().create_in_process()?);
    /// let mut c = shmcast::Consumer::builder().attach_to(p.get_ref())?;
    /// let mut slot = p.reserve(5).await?;
    /// slot.copy_from_slice(b"zero!");
    /// slot.commit();
    /// assert_eq!(&*c.recv()?, b"zero!");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve(&mut self, len: usize) -> Result<Reserved<'_>, SendError> {
        let res = poll_fn(|cx| self.poll_reserve(cx, len)).await?;
        Ok(self.producer.reserved_from(res))
    }

    /// Send `msg` if there is room now (never waits).
    ///
    /// # Errors
    /// As [`Producer::try_send`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        self.producer.try_send(msg)
    }

    /// Readiness for manual polling: `Ready` when a `len`-byte
    /// [`try_send`](AsyncProducer::try_send) may succeed (or report an error other than
    /// `Full`); otherwise the task of `cx` is woken when that may have changed.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<()> {
        let Some(ring) = self.producer.ring_if_owned() else {
            return Poll::Ready(());
        };
        wait::poll_ready(&mut self.wait, cx, ring, Kind::Space, |r| {
            prepare_space(r, len)
        })
    }

    /// For event loops: arm `fd` to become readable when a `len`-byte message may fit.
    /// Returns `true` if it may fit now (see [`AsyncConsumer::arm`](crate::AsyncConsumer::arm)
    /// for the loop).
    pub fn arm(&mut self, fd: &EventFd, len: usize) -> bool {
        let waker = fd.waker();
        self.poll_ready(&mut Context::from_waker(&waker), len)
            .is_ready()
    }

    /// The producer's counters (`sleeps` counts asynchronous waits for space).
    pub fn stats(&self) -> ProducerStats {
        self.producer.stats()
    }
}

impl From<Producer> for AsyncProducer {
    fn from(p: Producer) -> Self {
        AsyncProducer::new(p)
    }
}
