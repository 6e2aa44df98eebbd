//! The consumer handles (lossless and lossy), their builders, and the message guard: thin
//! calls of one ring operation each (`ring/cursor.rs`, `ring/lossy.rs`).

use crate::error::{OpenError, RecvError, RecvTimeoutError, RecvValueError, TryRecvError};
use crate::os::fork;
use crate::os::segment::{MapOptions, Source};
use crate::region::Region;
use crate::ring::attach::RingConsumer;
use crate::ring::{ConsumerStats, Record, StartAt};
use crate::{Producer, WaitPolicy};
use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for attaching a consumer.
///
/// # Examples
/// ```
/// use shmcast::{Consumer, StartAt, WaitPolicy};
/// let producer = shmcast::Producer::builder().create_in_process()?;
/// let _consumer = Consumer::builder()
///     .start_at(StartAt::Oldest)
///     .wait_policy(WaitPolicy::BusySpin)
///     .attach_to(&producer)
///     .unwrap();
/// # Ok::<(), shmcast::CreateError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ConsumerBuilder {
    start: StartAt,
    wait: WaitPolicy,
    allow_foreign_owner: bool,
    wait_for_segment: Option<Duration>,
    prefault: Option<bool>,
    lock_memory: bool,
    tight_spin: bool,
}

impl Default for ConsumerBuilder {
    fn default() -> ConsumerBuilder {
        ConsumerBuilder {
            start: StartAt::default(),
            wait: WaitPolicy::default(),
            allow_foreign_owner: false,
            wait_for_segment: None,
            prefault: None,
            lock_memory: false,
            tight_spin: true,
        }
    }
}

/// How far a consumer is behind the producer.
///
/// # Examples
/// ```
/// let mut p = shmcast::Producer::builder().create_in_process()?;
/// let c = shmcast::Consumer::builder().attach_to(&p).unwrap();
/// p.send(&[0; 8]).unwrap();
/// let lag = c.lag();
/// assert_eq!((lag.bytes, lag.messages), (32, Some(1)));
/// # Ok::<(), shmcast::CreateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// Bytes of the ring between this consumer's position and the producer's tail.
    pub bytes: u64,
    /// Messages between them, if the record at this consumer's position is still in the
    /// ring (a lossy consumer that was lapped gets `None`: it learns the loss on its next
    /// receive).
    pub messages: Option<u64>,
}

impl ConsumerBuilder {
    /// Where to start reading. Default [`StartAt::Next`].
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// How `recv` waits while the ring is empty. Default [`WaitPolicy::default`].
    pub fn wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.wait = policy;
        self
    }

    /// While a blocking receive spins (per the wait policy, up to 64 spins at a time), poll
    /// the next record's stamp alone and take the record straight from that loop. Default
    /// `true`. Lossless consumers only.
    ///
    /// `false` runs every spin through the full poll (the end-of-stream and stuck-stream
    /// checks, the cursor publish); nothing else changes. Measured (`bench/README.md`,
    /// `pingpong`: 16 alternated pairs of builds, pinned, same-die 64 B busy-spin against
    /// ringfire in the same runs): the round trip at a median 1.26x ringfire's on, 1.51x
    /// off; the single-message stream at 0.58x and 0.56x of the streaming floor.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let c = shmcast::Consumer::builder()
    ///     .wait_policy(shmcast::WaitPolicy::BusySpin)
    ///     .tight_spin(false)
    ///     .attach_to(&p)
    ///     .unwrap();
    /// # let _ = c;
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn tight_spin(mut self, on: bool) -> Self {
        self.tight_spin = on;
        self
    }

    /// Accept a segment owned by another user. Default `false`: such a segment is refused.
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.allow_foreign_owner = allow;
        self
    }

    /// Fault every page of the segment in when attaching, so the first lap takes no page
    /// fault. Default `true`.
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = Some(prefault);
        self
    }

    /// Lock the segment's pages in memory (`mlock`) in this process. Default `false`; needs
    /// `RLIMIT_MEMLOCK` of at least the segment's size.
    pub fn lock_memory(mut self, lock: bool) -> Self {
        self.lock_memory = lock;
        self
    }

    fn map_options(&self) -> MapOptions {
        MapOptions {
            populate: self.prefault.unwrap_or(true),
            lock: self.lock_memory,
        }
    }

    /// When opening by name or path, wait up to `timeout` for the segment to exist and to
    /// finish initializing (a consumer started before, or while, its producer creates the
    /// segment). Default: no waiting (`NotFound` at once).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let name = format!("shmcast-doc-wait-{}", std::process::id());
    /// let opener = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || {
    ///         shmcast::Consumer::builder()
    ///             .wait_for_segment(Duration::from_secs(10))
    ///             .open(&name)
    ///     }
    /// });
    /// let mut producer = shmcast::Producer::builder().create(&name)?;
    /// let mut consumer = opener.join().unwrap()?;
    /// producer.send(b"late")?;
    /// assert_eq!(&*consumer.recv()?, b"late");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_segment(mut self, timeout: Duration) -> Self {
        self.wait_for_segment = Some(timeout);
        self
    }

    pub(crate) fn finish(&self, region: Arc<Region>) -> Result<Consumer, OpenError> {
        Ok(Consumer {
            ring: RingConsumer::attach(region, self.start, false)?,
            wait: self.wait,
            spins: if self.tight_spin {
                self.wait.fast_spins()
            } else {
                0
            },
            fork_generation: fork::install(),
        })
    }

    /// The same options for a lossy consumer: one that never slows the producer down and
    /// learns how many messages it lost when it falls behind.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(256).create_in_process()?;
    /// let mut lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// for i in 0..100u8 {
    ///     p.try_send(&[i; 16]).unwrap(); // never Full: nobody gates the producer
    /// }
    /// let mut buf = Vec::new();
    /// let lost = match lossy.try_recv_into(&mut buf) {
    ///     Err(shmcast::TryRecvError::Lagged(n)) => n,
    ///     other => panic!("{other:?}"),
    /// };
    /// let seq = lossy.try_recv_into(&mut buf).unwrap();
    /// assert_eq!(seq, lost); // continues at the oldest message still in the ring
    /// assert_eq!(buf, [seq as u8; 16]);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn lossy(&self) -> LossyConsumerBuilder {
        LossyConsumerBuilder {
            options: self.clone(),
        }
    }

    fn region(&self, target: Target<'_>) -> Result<Arc<Region>, OpenError> {
        let Some(timeout) = self.wait_for_segment else {
            return self.region_once(&target);
        };
        let deadline = Instant::now().checked_add(timeout);
        let mut pause = Duration::from_millis(1);
        loop {
            match self.region_once(&target) {
                // Not created yet, or its creator has not finished writing the header.
                Err(e) if e.not_there_yet() && deadline.is_none_or(|d| Instant::now() < d) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn region_once(&self, target: &Target<'_>) -> Result<Arc<Region>, OpenError> {
        let foreign = self.allow_foreign_owner;
        let how = self.map_options();
        Ok(Arc::new(match target {
            Target::Name(name) => Region::open(Source::Name((*name).into()), foreign, how)?,
            Target::Path(path) => Region::open(Source::Path(path.to_path_buf()), foreign, how)?,
            Target::Fd(fd) => Region::open_fd(*fd, foreign, how)?,
            Target::Producer(p) => match p.region().fd() {
                // A mapped segment: open our own description so our liveness lock is ours.
                Some(fd) => Region::open_fd(fd, foreign, how)?,
                None => return Ok(Arc::clone(p.region())),
            },
        }))
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
        self.finish(self.region(Target::Name(name))?)
    }

    /// Attach to the segment in the file at `path`.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// let path = std::env::temp_dir().join(format!("shmcast-doc-open-{}", std::process::id()));
    /// let _producer = shmcast::Producer::builder().create_path(&path)?;
    /// let _consumer = shmcast::Consumer::builder().open_path(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_path(&self, path: impl AsRef<Path>) -> Result<Consumer, OpenError> {
        self.finish(self.region(Target::Path(path.as_ref()))?)
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
    /// let _consumer = shmcast::Consumer::builder().open_fd(producer.fd().unwrap())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_fd(&self, fd: BorrowedFd<'_>) -> Result<Consumer, OpenError> {
        self.finish(self.region(Target::Fd(fd))?)
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
    /// let _consumer = shmcast::Consumer::builder().attach_to(&producer).unwrap();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn attach_to(&self, producer: &Producer) -> Result<Consumer, OpenError> {
        self.finish(self.region(Target::Producer(producer))?)
    }
}

/// What a consumer attaches to.
enum Target<'a> {
    Name(&'a str),
    Path(&'a Path),
    Fd(BorrowedFd<'a>),
    Producer(&'a Producer),
}

/// A reader of a ring. Receives every message published after its start, in order, once.
///
/// `Send` and `Sync`: every operation that reads or releases takes `&mut self`. A process
/// forked from the owner may not use the handle (its calls return `Forked`, and dropping it
/// there leaves the parent's slot alone).
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
    /// How many first spins of a wait poll the stamp alone (`tight_spin`; 0 when off).
    spins: u32,
    /// The fork generation this handle was made in (see `os/fork.rs`).
    fork_generation: u32,
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
    /// let _b = shmcast::Consumer::builder();
    /// ```
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// The message guard for `rec`, the record the last poll of this consumer's ring made.
    #[inline]
    fn message(&mut self, rec: Record) -> Message<'_> {
        let bytes: *const [u8] = self.ring.payload(&rec);
        Message {
            consumer: self,
            rec: Some(rec),
            bytes,
        }
    }

    /// Is this handle usable here (not inherited across `fork`)?
    #[inline]
    fn owned(&self) -> bool {
        fork::generation() == self.fork_generation
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
    #[inline]
    pub fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        if !self.owned() {
            return Err(RecvError::Forked);
        }
        let spun = match self.ring.spin_fast_in_place(self.spins) {
            Ok((rec, bytes)) => {
                return Ok(Message {
                    consumer: self,
                    rec: Some(rec),
                    bytes,
                })
            }
            Err(spun) => spun,
        };
        let rec = self.ring.recv_slow(self.wait, None, spun)?;
        Ok(self.message(rec))
    }

    /// Receive the next message if one is available now.
    ///
    /// A closed stream is reported at once. A *dead* producer is detected by probing its
    /// liveness lock (a syscall), which `try_recv` does at most every 5 ms and every 256th
    /// empty poll: a loop of `try_recv` calls sees [`TryRecvError::ProducerDied`] within a
    /// few milliseconds, a single call may say `Empty`.
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
    #[inline(always)]
    pub fn try_recv(&mut self) -> Result<Message<'_>, TryRecvError> {
        if !self.owned() {
            return Err(TryRecvError::Forked);
        }
        if let Some((rec, bytes)) = self.ring.poll_fast_in_place() {
            return Ok(Message {
                consumer: self,
                rec: Some(rec),
                bytes,
            });
        }
        self.try_recv_slow()
    }

    /// `try_recv` beyond the common case (see `RingConsumer::poll_fast`).
    #[cold]
    #[inline(never)]
    fn try_recv_slow(&mut self) -> Result<Message<'_>, TryRecvError> {
        match self.ring.try_recv_slow()? {
            Some(rec) => Ok(self.message(rec)),
            None => Err(TryRecvError::Empty),
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
        if !self.owned() {
            return Err(RecvTimeoutError::Forked);
        }
        let deadline = Instant::now().checked_add(timeout);
        let rec = self.ring.recv(self.wait, self.spins, deadline)?;
        Ok(self.message(rec))
    }

    /// Receive every message available now, up to `max`, calling `f(seq, bytes)` on each in
    /// place; their space is released once, at the end (one cursor store and one wake-up
    /// decision for the batch).
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if no message is available, or as [`Consumer::try_recv`].
    /// An error met after the first message ends the batch; the next call reports it.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send_batch(&[b"a", b"b", b"c"]).unwrap();
    /// let mut got = Vec::new();
    /// let n = c.try_recv_batch(16, |seq, bytes| got.push((seq, bytes.to_vec()))).unwrap();
    /// assert_eq!(n, 3);
    /// assert_eq!(got[2], (2, b"c".to_vec()));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(u64, &[u8]),
    ) -> Result<usize, TryRecvError> {
        if !self.owned() {
            return Err(TryRecvError::Forked);
        }
        if max == 0 {
            return Ok(0);
        }
        let Some(first) = self.ring.try_recv()? else {
            return Err(TryRecvError::Empty);
        };
        Ok(self.ring.drain(first, max, &mut f))
    }

    /// Wait for at least one message, then receive every message available, up to `max`,
    /// as [`Consumer::try_recv_batch`] does.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send_batch(&[[1u8; 8], [2u8; 8]]).unwrap();
    /// let mut sum = 0u64;
    /// c.recv_batch(64, |_, bytes| sum += u64::from(bytes[0])).unwrap();
    /// assert_eq!(sum, 3);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(u64, &[u8]),
    ) -> Result<usize, RecvError> {
        if !self.owned() {
            return Err(RecvError::Forked);
        }
        if max == 0 {
            return Ok(0);
        }
        let first = self.ring.recv(self.wait, self.spins, None)?;
        Ok(self.ring.drain(first, max, &mut f))
    }

    /// Receive the next message as a plain-old-data value. The payload is 8-byte aligned
    /// in the ring; the value is copied out.
    ///
    /// # Errors
    /// [`RecvValueError::WrongSize`] if the message is not exactly `size_of::<T>()` bytes:
    /// it is left in the ring (read it with [`Consumer::recv`]); otherwise as
    /// [`Consumer::recv`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send_value(&[1.5f64, 2.5]).unwrap();
    /// assert_eq!(c.recv_value::<[f64; 2]>().unwrap(), [1.5, 2.5]);
    /// p.send(b"odd").unwrap();
    /// assert!(c.recv_value::<u64>().is_err());
    /// assert_eq!(&*c.recv().unwrap(), b"odd");
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_value<T: bytemuck::AnyBitPattern>(&mut self) -> Result<T, RecvValueError> {
        let mut msg = self.recv()?;
        let expected = std::mem::size_of::<T>();
        if msg.len() != expected {
            let found = msg.len();
            // Leave it in the ring (not released): nothing is lost.
            msg.rec = None;
            return Err(RecvValueError::WrongSize { expected, found });
        }
        Ok(bytemuck::pod_read_unaligned(&msg))
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
        let rec = msg
            .rec
            .as_ref()
            .expect("a received message holds its record");
        let mut v = vec![0; rec.len];
        msg.consumer.ring.copy_payload(rec, &mut v);
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

    /// How far this consumer is behind the producer (see [`Lag`]).
    pub fn lag(&self) -> Lag {
        let (bytes, messages) = self.ring.lag();
        Lag { bytes, messages }
    }
}

/// Hooks for the asynchronous handles (`crate::asynch`).
#[cfg(feature = "tokio")]
impl Consumer {
    /// The ring, unless this handle was inherited across `fork` (then `None`: `Forked`).
    pub(crate) fn ring_if_owned(&mut self) -> Option<&mut RingConsumer> {
        if self.owned() {
            Some(&mut self.ring)
        } else {
            None
        }
    }

    /// The message guard for `rec`, the record the last poll of this consumer's ring made.
    pub(crate) fn message_from(&mut self, rec: Record) -> Message<'_> {
        self.message(rec)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.owned() {
            self.ring.detach();
        }
    }
}

/// A message received by a [`Consumer`]. Derefs to its bytes, read in place (or, when the
/// producer runs with `evict_after`, a validated copy); dropping it releases its space in
/// the ring.
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
    /// `None` once given back unreleased (`recv_value` of the wrong size).
    rec: Option<Record>,
    /// The payload, found once when the message was received (in the ring, or in the
    /// consumer's copy of it): valid for as long as `consumer` is borrowed, since the record
    /// is held (see `RingConsumer::payload`) and the copy changes only at the next receive.
    bytes: *const [u8],
}

// SAFETY: `bytes` points into memory the borrowed consumer keeps alive and nobody writes
// while the message lives; sending or sharing the message is sending or sharing that borrow.
unsafe impl<'a> Send for Message<'a> where &'a mut Consumer: Send {}
// SAFETY: as above.
unsafe impl<'a> Sync for Message<'a> where &'a mut Consumer: Sync {}

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
        self.record().seq
    }

    #[inline]
    fn record(&self) -> &Record {
        self.rec
            .as_ref()
            .expect("a received message holds its record")
    }

    /// The message as a reference to a plain-old-data value, in place. Payloads are 8-byte
    /// aligned, so any `T` with alignment up to 8 fits.
    ///
    /// # Errors
    /// [`RecvValueError::WrongSize`] if the message is not exactly `size_of::<T>()` bytes,
    /// [`RecvValueError::Misaligned`] if `T` needs more than 8-byte alignment.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send_value(&[7u64, 8]).unwrap();
    /// let msg = c.recv().unwrap();
    /// assert_eq!(msg.value::<[u64; 2]>().unwrap(), &[7, 8]);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn value<T: bytemuck::AnyBitPattern>(&self) -> Result<&T, RecvValueError> {
        bytemuck::try_from_bytes(self).map_err(|e| match e {
            bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned => {
                RecvValueError::Misaligned {
                    align: std::mem::align_of::<T>(),
                }
            }
            _ => RecvValueError::WrongSize {
                expected: std::mem::size_of::<T>(),
                found: self.len(),
            },
        })
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.record().seq)
            .field("len", &self.record().len)
            .finish()
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: see `bytes`: the message borrows its consumer, so the record stays held
        // (not released, the cursor unmoved) and the bytes unwritten for this `&self`.
        unsafe { &*self.bytes }
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            if self.consumer.owned() {
                self.consumer.ring.release(rec);
            }
        }
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

/// Options for attaching a [`LossyConsumer`]; made by [`ConsumerBuilder::lossy`].
///
/// # Examples
/// ```
/// let p = shmcast::Producer::builder().create_in_process()?;
/// let _lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
/// # Ok::<(), shmcast::CreateError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LossyConsumerBuilder {
    options: ConsumerBuilder,
}

impl LossyConsumerBuilder {
    pub(crate) fn finish(&self, region: Arc<Region>) -> Result<LossyConsumer, OpenError> {
        Ok(LossyConsumer {
            ring: RingConsumer::attach(region, self.options.start, true)?,
            wait: self.options.wait,
            fork_generation: fork::install(),
        })
    }

    /// Attach to the named segment `name`.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("shmcast-doc-lossy-{}", std::process::id());
    /// let _producer = shmcast::Producer::builder().create(&name)?;
    /// let _lossy = shmcast::Consumer::builder().lossy().open(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<LossyConsumer, OpenError> {
        self.finish(self.options.region(Target::Name(name))?)
    }

    /// Attach to the segment in the file at `path`.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// let path = std::env::temp_dir().join(format!("shmcast-doc-lossy-{}", std::process::id()));
    /// let _producer = shmcast::Producer::builder().create_path(&path)?;
    /// let _lossy = shmcast::Consumer::builder().lossy().open_path(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_path(&self, path: impl AsRef<Path>) -> Result<LossyConsumer, OpenError> {
        self.finish(self.options.region(Target::Path(path.as_ref()))?)
    }

    /// Attach to the segment behind a descriptor.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// let producer = shmcast::Producer::builder().create_anonymous()?;
    /// let _lossy = shmcast::Consumer::builder().lossy().open_fd(producer.fd().unwrap())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_fd(&self, fd: BorrowedFd<'_>) -> Result<LossyConsumer, OpenError> {
        self.finish(self.options.region(Target::Fd(fd))?)
    }

    /// Attach to `producer`'s ring from this process.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::attach_to`].
    ///
    /// # Examples
    /// ```
    /// let producer = shmcast::Producer::builder().create_in_process()?;
    /// let _lossy = shmcast::Consumer::builder().lossy().attach_to(&producer).unwrap();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn attach_to(&self, producer: &Producer) -> Result<LossyConsumer, OpenError> {
        self.finish(self.options.region(Target::Producer(producer))?)
    }
}

/// A consumer that never slows the producer down. It copies each message out and checks
/// after the copy that the producer did not overwrite it meanwhile; if the producer laps it,
/// the next receive reports exactly how many messages were lost
/// ([`TryRecvError::Lagged`]) and it goes on at the oldest message still in the ring.
///
/// It never hands out a reference into the ring. `Send` and `Sync`, as [`Consumer`].
///
/// # Examples
/// ```
/// let mut p = shmcast::Producer::builder().create_in_process()?;
/// let mut lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
/// p.send(b"tick").unwrap();
/// assert_eq!(lossy.recv_vec().unwrap(), b"tick");
/// # Ok::<(), shmcast::CreateError>(())
/// ```
pub struct LossyConsumer {
    ring: RingConsumer,
    wait: WaitPolicy,
    /// The fork generation this handle was made in (see `os/fork.rs`).
    fork_generation: u32,
}

impl fmt::Debug for LossyConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossyConsumer")
            .field("stats", &self.ring.stats)
            .finish()
    }
}

impl LossyConsumer {
    /// Copy the next message into `buf` (resized to fit) if one is available now; returns
    /// its sequence number.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Lagged`], or as [`Consumer::try_recv`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// let mut buf = Vec::new();
    /// assert_eq!(lossy.try_recv_into(&mut buf), Err(shmcast::TryRecvError::Empty));
    /// p.send(b"x").unwrap();
    /// assert_eq!(lossy.try_recv_into(&mut buf), Ok(0));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<u64, TryRecvError> {
        if !self.owned() {
            return Err(TryRecvError::Forked);
        }
        self.ring.try_recv_lossy(buf)?.ok_or(TryRecvError::Empty)
    }

    /// Is this handle usable here (not inherited across `fork`)?
    #[inline]
    fn owned(&self) -> bool {
        fork::generation() == self.fork_generation
    }

    /// Copy the next message into `buf`, waiting (per the wait policy) while the ring is
    /// empty; returns its sequence number.
    ///
    /// # Errors
    /// [`RecvError::Lagged`], or as [`Consumer::recv`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// p.send(b"x").unwrap();
    /// let mut buf = Vec::new();
    /// assert_eq!(lossy.recv_into(&mut buf), Ok(0));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        if !self.owned() {
            return Err(RecvError::Forked);
        }
        Ok(self.ring.recv_lossy(buf, self.wait, None)?)
    }

    /// As [`LossyConsumer::recv_into`], waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], or as [`LossyConsumer::recv_into`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let mut lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// let mut buf = Vec::new();
    /// let err = lossy.recv_timeout_into(&mut buf, Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(err, shmcast::RecvTimeoutError::Timeout);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_timeout_into(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, RecvTimeoutError> {
        if !self.owned() {
            return Err(RecvTimeoutError::Forked);
        }
        let deadline = Instant::now().checked_add(timeout);
        self.ring.recv_lossy(buf, self.wait, deadline)
    }

    /// Receive the next message as a new `Vec`.
    ///
    /// # Errors
    /// As [`LossyConsumer::recv_into`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// p.send(b"v").unwrap();
    /// assert_eq!(lossy.recv_vec().unwrap(), b"v");
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v)?;
        Ok(v)
    }

    /// This handle's counters.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// assert_eq!(lossy.stats().messages, 0);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn stats(&self) -> ConsumerStats {
        self.ring.stats
    }

    /// How far this consumer is behind the producer (see [`Lag`]).
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let lossy = shmcast::Consumer::builder().lossy().attach_to(&p).unwrap();
    /// p.send(b"x").unwrap();
    /// assert_eq!(lossy.lag().messages, Some(1));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn lag(&self) -> Lag {
        let (bytes, messages) = self.ring.lag();
        Lag { bytes, messages }
    }
}

/// For the fuzz oracles (`crate::fuzzing`).
#[cfg(all(not(shmcast_loom), any(feature = "test-hooks", fuzzing)))]
impl LossyConsumer {
    /// This consumer's stream position (where its next receive looks).
    pub(crate) fn position(&self) -> u64 {
        self.ring.position()
    }
}

/// Hooks for the asynchronous handles (`crate::asynch`).
#[cfg(feature = "tokio")]
impl LossyConsumer {
    /// The ring, unless this handle was inherited across `fork` (then `None`: `Forked`).
    pub(crate) fn ring_if_owned(&mut self) -> Option<&mut RingConsumer> {
        if self.owned() {
            Some(&mut self.ring)
        } else {
            None
        }
    }
}

impl Drop for LossyConsumer {
    fn drop(&mut self) {
        if self.owned() {
            self.ring.detach();
        }
    }
}
