//! The consumer handle, its builder, and the in-place message guard.

use crate::error::{OpenError, RecvError, RecvTimeoutError, TryRecvError};
use crate::ring::{ConsumerStats, Record, RingConsumer, StartAt};
use crate::segment::{self, OpenOptions, Source};
use crate::{Producer, WaitPolicy};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for attaching a consumer.
///
/// # Examples
/// ```
/// use shmcast::{Consumer, StartAt, WaitPolicy};
/// let producer = shmcast::Producer::builder().create_in_process()?;
/// let consumer = Consumer::builder()
///     .start_at(StartAt::Oldest)
///     .wait_policy(WaitPolicy::BusySpin)
///     .attach_to(&producer)
///     .unwrap();
/// # Ok::<(), shmcast::CreateError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConsumerBuilder {
    start: StartAt,
    wait: WaitPolicy,
    allow_foreign_owner: bool,
}

impl ConsumerBuilder {
    /// Where to start reading. Default [`StartAt::Next`].
    pub fn start_at(&mut self, start: StartAt) -> &mut Self {
        self.start = start;
        self
    }

    /// How `recv` waits while the ring is empty. Default [`WaitPolicy::default`].
    pub fn wait_policy(&mut self, policy: WaitPolicy) -> &mut Self {
        self.wait = policy;
        self
    }

    /// Accept a segment owned by another user. Default `false`: such a segment is refused.
    pub fn allow_foreign_owner(&mut self, allow: bool) -> &mut Self {
        self.allow_foreign_owner = allow;
        self
    }

    fn options(&self) -> OpenOptions {
        OpenOptions {
            allow_foreign_owner: self.allow_foreign_owner,
        }
    }

    pub(crate) fn finish(&self, region: Arc<crate::region::Region>) -> Result<Consumer, OpenError> {
        Ok(Consumer {
            ring: RingConsumer::attach(region, self.start)?,
            wait: self.wait,
        })
    }

    /// Attach to the named segment `name`.
    ///
    /// # Errors
    /// [`OpenError::NotFound`], [`OpenError::InvalidName`], [`OpenError::Segment`] if it
    /// fails validation, [`OpenError::NoFreeSlot`], [`OpenError::ForeignOwner`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("shmcast-doc-open-{}", std::process::id());
    /// let mut producer = shmcast::Producer::builder().create(&name)?;
    /// let mut consumer = shmcast::Consumer::builder().open(&name)?;
    /// producer.send(b"hi")?;
    /// assert_eq!(&*consumer.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<Consumer, OpenError> {
        let region = segment::open(Source::Name(name.into()), &self.options())?;
        self.finish(Arc::new(region))
    }

    /// Attach to the segment in the file at `path`.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// let path = std::env::temp_dir().join(format!("shmcast-doc-open-{}", std::process::id()));
    /// let producer = shmcast::Producer::builder().create_path(&path)?;
    /// let consumer = shmcast::Consumer::builder().open_path(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_path(&self, path: impl AsRef<Path>) -> Result<Consumer, OpenError> {
        let region = segment::open(Source::Path(path.as_ref().to_path_buf()), &self.options())?;
        self.finish(Arc::new(region))
    }

    /// Attach to the segment behind a descriptor (an anonymous segment handed over by its
    /// producer). The descriptor is reopened, not consumed.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// let producer = shmcast::Producer::builder().create_anonymous()?;
    /// let consumer = shmcast::Consumer::builder().open_fd(producer.fd().unwrap())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_fd(&self, fd: BorrowedFd<'_>) -> Result<Consumer, OpenError> {
        let region = segment::open_fd(fd, &self.options())?;
        self.finish(Arc::new(region))
    }

    /// Attach to `producer`'s ring from this process (any backing, in-process rings
    /// included).
    ///
    /// # Errors
    /// [`OpenError::NoFreeSlot`], or an OS error reopening the segment.
    ///
    /// # Examples
    /// ```
    /// let producer = shmcast::Producer::builder().create_in_process()?;
    /// let consumer = shmcast::Consumer::builder().attach_to(&producer).unwrap();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn attach_to(&self, producer: &Producer) -> Result<Consumer, OpenError> {
        match producer.region().mapped() {
            // A mapped segment: open our own description so our liveness lock is ours.
            Some(m) => self.open_fd(m.fd().as_fd()),
            None => self.finish(Arc::clone(producer.region())),
        }
    }
}

/// A reader of a ring. Receives every message published after its start, in order, once.
/// `Send`, not `Sync`.
///
/// # Examples
/// ```
/// let mut producer = shmcast::Producer::builder().create_in_process()?;
/// let mut consumer = shmcast::Consumer::builder().attach_to(&producer).unwrap();
/// producer.send(b"a").unwrap();
/// producer.send(b"b").unwrap();
/// drop(producer);
/// let all: Vec<Vec<u8>> = consumer.iter().collect::<Result<_, _>>().unwrap();
/// assert_eq!(all, [b"a".to_vec(), b"b".to_vec()]);
/// # Ok::<(), shmcast::CreateError>(())
/// ```
pub struct Consumer {
    ring: RingConsumer,
    wait: WaitPolicy,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stats", &self.ring.stats)
            .finish()
    }
}

impl Consumer {
    /// A builder with default options.
    ///
    /// # Examples
    /// ```
    /// let b = shmcast::Consumer::builder();
    /// ```
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    fn message(&mut self, rec: Record) -> Message<'_> {
        Message {
            consumer: self,
            rec,
        }
    }

    /// Receive the next message, waiting (per the wait policy) while the ring is empty.
    /// The message is read in place; dropping it releases its space.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once the producer closed the stream and everything was
    /// received; [`RecvError::ProducerDied`]; [`RecvError::Evicted`];
    /// [`RecvError::Corrupt`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send(b"in place").unwrap();
    /// let msg = c.recv().unwrap();
    /// assert_eq!(&*msg, b"in place");
    /// assert_eq!(msg.seq(), 0);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        match self.ring.recv(self.wait, None) {
            Ok(rec) => Ok(self.message(rec)),
            Err(e) => Err(match e {
                RecvTimeoutError::Disconnected => RecvError::Disconnected,
                RecvTimeoutError::ProducerDied => RecvError::ProducerDied,
                RecvTimeoutError::Evicted => RecvError::Evicted,
                RecvTimeoutError::Corrupt(c) => RecvError::Corrupt(c),
                RecvTimeoutError::Timeout => unreachable!("no deadline"),
            }),
        }
    }

    /// Receive the next message if one is available now.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] or as [`Consumer::recv`].
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// assert_eq!(c.try_recv().unwrap_err(), shmcast::TryRecvError::Empty);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Message<'_>, TryRecvError> {
        match self.ring.poll() {
            Ok(Some(rec)) => return Ok(self.message(rec)),
            Ok(None) => {}
            Err(c) => return Err(TryRecvError::Corrupt(c)),
        }
        let Some(ended) = self.ring.check_ended(false) else {
            return Err(TryRecvError::Empty);
        };
        match self.ring.poll() {
            Ok(Some(rec)) => Ok(self.message(rec)),
            Ok(None) => Err(match ended {
                crate::ring::Ended::Closed => TryRecvError::Disconnected,
                crate::ring::Ended::Died => TryRecvError::ProducerDied,
                crate::ring::Ended::Evicted => TryRecvError::Evicted,
            }),
            Err(c) => Err(TryRecvError::Corrupt(c)),
        }
    }

    /// Receive the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] or as [`Consumer::recv`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// let err = c.recv_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(err, shmcast::RecvTimeoutError::Timeout);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let rec = self.ring.recv(self.wait, deadline)?;
        Ok(self.message(rec))
    }

    /// Receive the next message as an owned copy.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send(b"copy").unwrap();
    /// assert_eq!(c.recv_vec().unwrap(), b"copy");
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        let msg = self.recv()?;
        let mut v = vec![0; msg.rec.len];
        msg.consumer.ring.copy_out(&msg.rec, &mut v);
        Ok(v)
    }

    /// Iterate over owned copies of the messages, waiting for each. Ends after the
    /// producer closes the stream; yields any other error once, then ends.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send(b"1").unwrap();
    /// drop(p);
    /// assert_eq!(c.iter().count(), 1);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            consumer: self,
            done: false,
        }
    }

    /// This handle's counters.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// assert_eq!(c.stats().messages, 0);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn stats(&self) -> ConsumerStats {
        self.ring.stats
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.ring.detach();
    }
}

/// A message read in place. Derefs to its bytes; dropping it releases its space in the
/// ring.
///
/// # Examples
/// ```
/// let mut p = shmcast::Producer::builder().create_in_process()?;
/// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
/// p.send(&[1, 2, 3]).unwrap();
/// let m = c.recv().unwrap();
/// assert_eq!(m.len(), 3);
/// assert_eq!(m[2], 3);
/// # Ok::<(), shmcast::CreateError>(())
/// ```
pub struct Message<'a> {
    consumer: &'a mut Consumer,
    rec: Record,
}

impl Message<'_> {
    /// The message's sequence number in the stream (0 for the first message ever sent).
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send(b"a").unwrap();
    /// p.send(b"b").unwrap();
    /// assert_eq!(c.recv().unwrap().seq(), 0);
    /// assert_eq!(c.recv().unwrap().seq(), 1);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn seq(&self) -> u64 {
        self.rec.seq
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.rec.seq)
            .field("len", &self.rec.len)
            .finish()
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let region = self.consumer.ring.region();
        // SAFETY: `poll` validated that `len` bytes at `idx` lie inside the ring. The record
        // is at or above this consumer's published cursor, so the producer (gated by that
        // cursor) does not write it while this guard lives.
        unsafe { std::slice::from_raw_parts(region.data_ptr(self.rec.idx), self.rec.len) }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        self.consumer.ring.release(self.rec.end);
    }
}

/// Iterator returned by [`Consumer::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    consumer: &'a mut Consumer,
    done: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Vec<u8>, RecvError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.consumer.recv_vec() {
            Ok(v) => Some(Ok(v)),
            Err(RecvError::Disconnected) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
