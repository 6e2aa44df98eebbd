//! The asynchronous consumers: [`AsyncConsumer`] (lossless, in place) and
//! [`AsyncLossyConsumer`].

use super::event_fd::EventFd;
use super::wait::{self, poll_wait, Prepared, WaitState};
use super::waiter::Kind;
use crate::error::{RecvError, TryRecvError};
use crate::ring::attach::RingConsumer;
use crate::ring::{ConsumerStats, Record};
use crate::{Consumer, Lag, LossyConsumer, Message};
use futures_core::Stream;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Announce a sleep on the data line of `ring` (the eventcount's sleeper side).
fn prepare_data(ring: &mut RingConsumer) -> Option<Prepared> {
    let region = Arc::clone(ring.region());
    let (word, seen) = ring.prepare_wait()?;
    Some((region, word, seen))
}

fn count_sleep(ring: &mut RingConsumer, _first: bool) {
    ring.stats.sleeps += 1;
}

/// A lossless [`Consumer`] whose receives can be awaited: `recv().await` returns the next
/// message in place (a [`Message`] guard, released when dropped); the handle is also a
/// [`Stream`] of owned messages. Runtime-agnostic (tested with tokio); every future is
/// cancel-safe: dropping it mid-wait loses nothing and leaves the handle usable. Made with
/// [`AsyncConsumer::new`] from any consumer (named, path, memfd or in-process segment).
///
/// See the [module docs](crate::asynch) for how it waits and what that costs.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut producer = shmcast::Producer::builder().create_in_process()?;
/// let mut consumer = shmcast::AsyncConsumer::new(
///     shmcast::Consumer::builder().attach_to(&producer)?,
/// );
/// let reader = tokio::spawn(async move {
///     let msg = consumer.recv().await?;
///     Ok::<_, shmcast::RecvError>(msg.to_vec())
/// });
/// producer.send(b"hello")?;
/// assert_eq!(reader.await??, b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncConsumer {
    consumer: Consumer,
    wait: WaitState,
    /// The stream ended (see the `Stream` impl).
    ended: bool,
}

impl AsyncConsumer {
    /// Wrap `consumer`. Its wait policy no longer matters: asynchronous receives never spin
    /// or block the thread.
    pub fn new(consumer: Consumer) -> AsyncConsumer {
        AsyncConsumer {
            consumer,
            wait: WaitState::default(),
            ended: false,
        }
    }

    /// The blocking handle back (any registered wait is withdrawn).
    pub fn into_inner(self) -> Consumer {
        self.consumer
    }

    /// The blocking handle, for its other operations (batches, lag).
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// The blocking handle.
    pub fn get_ref(&self) -> &Consumer {
        &self.consumer
    }

    /// Poll for the next record (it stays in the ring until its message guard drops).
    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Result<Record, RecvError>> {
        let Some(ring) = self.consumer.ring_if_owned() else {
            return Poll::Ready(Err(RecvError::Forked));
        };
        poll_wait(
            &mut self.wait,
            cx,
            ring,
            Kind::Data,
            |r, probe| r.try_recv_probing(probe),
            prepare_data,
            count_sleep,
        )
        .map_err(RecvError::from)
    }

    /// Receive the next message, in place: dropping it releases its space.
    ///
    /// Cancel-safe: a future dropped before it completed received nothing (the message
    /// stays first in line for the next receive).
    ///
    /// # Errors
    /// As [`Consumer::recv`]: [`RecvError::Disconnected`] once the producer closed the
    /// stream and everything was received, [`RecvError::ProducerDied`] (at once, from the
    /// producer's death notice; within 20 ms without one, as the blocking call), [`RecvError::Evicted`], [`RecvError::Corrupt`],
    /// [`RecvError::Forked`].
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::AsyncConsumer::new(shmcast::Consumer::builder().attach_to(&p)?);
    /// p.send(b"in place")?;
    /// let msg = c.recv().await?;
    /// assert_eq!((&*msg, msg.seq()), (&b"in place"[..], 0));
    /// drop(msg);
    /// drop(p);
    /// assert_eq!(c.recv().await.unwrap_err(), shmcast::RecvError::Disconnected);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        let rec = poll_fn(|cx| self.poll_record(cx)).await?;
        Ok(self.consumer.message_from(rec))
    }

    /// Receive the next message as an owned copy.
    ///
    /// # Errors
    /// As [`AsyncConsumer::recv`].
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::AsyncConsumer::new(shmcast::Consumer::builder().attach_to(&p)?);
    /// p.send(b"copy")?;
    /// assert_eq!(c.recv_vec().await?, b"copy");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv().await?.to_vec())
    }

    /// Receive the next message if one is available now (never waits). After an
    /// asynchronous wait that ended without a wake-up (see [`AsyncConsumer::arm`]), this
    /// probes the producer's liveness at once, so a dead producer is reported at this call.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], or as [`AsyncConsumer::recv`].
    pub fn try_recv(&mut self) -> Result<Message<'_>, TryRecvError> {
        let probe = self.wait.take_probe();
        let Some(ring) = self.consumer.ring_if_owned() else {
            return Err(TryRecvError::Forked);
        };
        match ring.try_recv_probing(probe)? {
            Some(rec) => Ok(self.consumer.message_from(rec)),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Readiness for manual polling: `Ready` when [`AsyncConsumer::try_recv`] may return
    /// something other than `Empty` (a message, or the end of the stream); otherwise the
    /// task of `cx` is woken when that may have changed.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(ring) = self.consumer.ring_if_owned() else {
            return Poll::Ready(());
        };
        wait::poll_ready(&mut self.wait, cx, ring, Kind::Data, prepare_data)
    }

    /// For event loops other than an async runtime (epoll, mio, poll): arm `fd` to become
    /// readable when this consumer may have something to receive. Returns `true` if it has
    /// something now (then do not wait: drain with [`AsyncConsumer::try_recv`] and arm
    /// again). The loop: wait for `fd`, [`EventFd::clear`] it, `try_recv` until `Empty`,
    /// `arm` again. One `EventFd` can serve many handles.
    ///
    /// # Examples
    /// ```
    /// use shmcast::{AsyncConsumer, Consumer, EventFd, Producer, TryRecvError};
    /// use std::os::fd::AsRawFd;
    ///
    /// let mut p = Producer::builder().create_in_process()?;
    /// let mut c = AsyncConsumer::new(Consumer::builder().attach_to(&p)?);
    /// let fd = EventFd::new()?;
    /// assert!(!c.arm(&fd)); // nothing yet: wait for fd
    /// p.send(b"wake up")?;
    /// let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    /// // SAFETY: one valid pollfd.
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1);
    /// fd.clear();
    /// assert_eq!(&*c.try_recv()?, b"wake up");
    /// assert_eq!(c.try_recv().unwrap_err(), TryRecvError::Empty);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn arm(&mut self, fd: &EventFd) -> bool {
        let waker = fd.waker();
        self.poll_ready(&mut Context::from_waker(&waker)).is_ready()
    }

    /// The consumer's counters (`sleeps` counts asynchronous waits).
    pub fn stats(&self) -> ConsumerStats {
        self.consumer.stats()
    }

    /// How far this consumer is behind the producer.
    pub fn lag(&self) -> Lag {
        self.consumer.lag()
    }
}

/// Owned copies of the messages. Ends after the producer closed the stream (and everything
/// was received); any other error is yielded once, then the stream ends (as
/// [`Consumer::iter`]). The handle's `recv` still works after the stream ended (e.g. to go
/// on after a new producer took over a dead one's segment).
impl Stream for AsyncConsumer {
    type Item = Result<Vec<u8>, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.poll_record(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(rec)) => Poll::Ready(Some(Ok(this.consumer.message_from(rec).to_vec()))),
            Poll::Ready(Err(e)) => {
                this.ended = true;
                Poll::Ready((e != RecvError::Disconnected).then_some(Err(e)))
            }
        }
    }
}

/// A [`LossyConsumer`] whose receives can be awaited: `recv_into(&mut buf).await` copies
/// the next message out; the handle is also a [`Stream`] of owned messages. Never slows
/// the producer down; when lapped, the next receive reports [`RecvError::Lagged`] with the
/// exact count and goes on at the oldest message still in the ring. Cancel-safe as
/// [`AsyncConsumer`].
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = shmcast::Producer::builder().capacity(256).create_in_process()?;
/// let mut lossy = shmcast::AsyncLossyConsumer::new(
///     shmcast::Consumer::builder().lossy().attach_to(&p)?,
/// );
/// for i in 0..100u8 {
///     p.try_send(&[i; 16])?; // laps the consumer
/// }
/// let mut buf = Vec::new();
/// let lost = match lossy.recv_into(&mut buf).await {
///     Err(shmcast::RecvError::Lagged(n)) => n,
///     other => panic!("{other:?}"),
/// };
/// assert_eq!(lossy.recv_into(&mut buf).await?, lost); // the oldest message still there
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncLossyConsumer {
    consumer: LossyConsumer,
    wait: WaitState,
    ended: bool,
}

impl AsyncLossyConsumer {
    /// Wrap `consumer`.
    pub fn new(consumer: LossyConsumer) -> AsyncLossyConsumer {
        AsyncLossyConsumer {
            consumer,
            wait: WaitState::default(),
            ended: false,
        }
    }

    /// The blocking handle back.
    pub fn into_inner(self) -> LossyConsumer {
        self.consumer
    }

    /// The blocking handle.
    pub fn get_mut(&mut self) -> &mut LossyConsumer {
        &mut self.consumer
    }

    /// The blocking handle.
    pub fn get_ref(&self) -> &LossyConsumer {
        &self.consumer
    }

    /// Poll for the next message, copied into `buf`; its sequence number.
    pub fn poll_recv_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<Result<u64, RecvError>> {
        let Some(ring) = self.consumer.ring_if_owned() else {
            return Poll::Ready(Err(RecvError::Forked));
        };
        poll_wait(
            &mut self.wait,
            cx,
            ring,
            Kind::Data,
            |r, probe| r.try_recv_lossy_probing(buf, probe),
            prepare_data,
            count_sleep,
        )
        .map_err(RecvError::from)
    }

    /// Copy the next message into `buf` (resized to fit); returns its sequence number.
    ///
    /// Cancel-safe: a future dropped before it completed consumed nothing (`buf` may have
    /// been written).
    ///
    /// # Errors
    /// [`RecvError::Lagged`] (the next receive goes on), or as [`AsyncConsumer::recv`].
    pub async fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        poll_fn(|cx| self.poll_recv_into(cx, buf)).await
    }

    /// Receive the next message as a new `Vec`.
    ///
    /// # Errors
    /// As [`AsyncLossyConsumer::recv_into`].
    pub async fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v).await?;
        Ok(v)
    }

    /// Copy the next message into `buf` if one is available now (see
    /// [`AsyncConsumer::try_recv`] for the liveness probe).
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Lagged`], or as [`AsyncConsumer::recv`].
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<u64, TryRecvError> {
        let probe = self.wait.take_probe();
        let Some(ring) = self.consumer.ring_if_owned() else {
            return Err(TryRecvError::Forked);
        };
        ring.try_recv_lossy_probing(buf, probe)
            .map_err(TryRecvError::from)?
            .ok_or(TryRecvError::Empty)
    }

    /// Readiness for manual polling (see [`AsyncConsumer::poll_ready`]).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(ring) = self.consumer.ring_if_owned() else {
            return Poll::Ready(());
        };
        wait::poll_ready(&mut self.wait, cx, ring, Kind::Data, prepare_data)
    }

    /// Arm `fd` for an event loop (see [`AsyncConsumer::arm`]); drain with
    /// [`AsyncLossyConsumer::try_recv_into`].
    pub fn arm(&mut self, fd: &EventFd) -> bool {
        let waker = fd.waker();
        self.poll_ready(&mut Context::from_waker(&waker)).is_ready()
    }

    /// The consumer's counters.
    pub fn stats(&self) -> ConsumerStats {
        self.consumer.stats()
    }

    /// How far this consumer is behind the producer.
    pub fn lag(&self) -> Lag {
        self.consumer.lag()
    }
}

/// Owned copies of the messages. [`RecvError::Lagged`] is yielded and the stream goes on;
/// it ends after the producer closed the stream; any other error is yielded once, then the
/// stream ends.
impl Stream for AsyncLossyConsumer {
    type Item = Result<Vec<u8>, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut v = Vec::new();
        match this.poll_recv_into(cx, &mut v) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(v))),
            Poll::Ready(Err(e @ RecvError::Lagged(_))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Err(e)) => {
                this.ended = true;
                Poll::Ready((e != RecvError::Disconnected).then_some(Err(e)))
            }
        }
    }
}

impl From<Consumer> for AsyncConsumer {
    fn from(c: Consumer) -> Self {
        AsyncConsumer::new(c)
    }
}

impl From<LossyConsumer> for AsyncLossyConsumer {
    fn from(c: LossyConsumer) -> Self {
        AsyncLossyConsumer::new(c)
    }
}
