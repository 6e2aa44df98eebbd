//! The producer handle and its builder.

use crate::error::{CreateError, OpenError, SendError, SendTimeoutError, TrySendError};
use crate::layout::{check_config, max_message_for, Geometry};
use crate::region::Region;
use crate::ring::{ProducerStats, Reservation, RingProducer};
use crate::segment::{self, CreateOptions, OpenOptions, Source};
use crate::WaitPolicy;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for creating a segment and its producer.
///
/// # Examples
/// ```
/// use shmcast::{Producer, WaitPolicy};
/// let producer = Producer::builder()
///     .capacity(1 << 16)
///     .max_message(1024)
///     .max_consumers(8)
///     .wait_policy(WaitPolicy::BusySpin)
///     .create_anonymous()?;
/// assert_eq!(producer.max_message(), 1024);
/// # Ok::<(), shmcast::CreateError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ProducerBuilder {
    capacity: u64,
    max_message: Option<u64>,
    max_consumers: u32,
    mode: u32,
    wait: WaitPolicy,
    remove_on_drop: bool,
}

impl Default for ProducerBuilder {
    fn default() -> Self {
        ProducerBuilder {
            capacity: 1 << 20,
            max_message: None,
            max_consumers: 16,
            mode: 0o600,
            wait: WaitPolicy::default(),
            remove_on_drop: true,
        }
    }
}

impl ProducerBuilder {
    /// Ring capacity in bytes: a power of two from 256 bytes to 1 TiB. Default 1 MiB.
    pub fn capacity(&mut self, bytes: usize) -> &mut Self {
        self.capacity = bytes as u64;
        self
    }

    /// Largest message in bytes. Default and maximum: a quarter of the capacity minus a
    /// 24-byte record header.
    pub fn max_message(&mut self, bytes: usize) -> &mut Self {
        self.max_message = Some(bytes as u64);
        self
    }

    /// Size of the consumer slot table (1 to 4096). Default 16.
    pub fn max_consumers(&mut self, n: u32) -> &mut Self {
        self.max_consumers = n;
        self
    }

    /// Permission bits of a named or path-backed segment. Default `0o600`.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode & 0o777;
        self
    }

    /// How `send` waits while the ring is full. Default [`WaitPolicy::default`].
    pub fn wait_policy(&mut self, policy: WaitPolicy) -> &mut Self {
        self.wait = policy;
        self
    }

    /// Remove the segment's name (or file) when the producer is dropped. Default `true`.
    /// Set `false` to let a new producer take over the segment after this one exits.
    pub fn remove_on_drop(&mut self, remove: bool) -> &mut Self {
        self.remove_on_drop = remove;
        self
    }

    fn geometry(&self) -> Result<Geometry, CreateError> {
        let max_message = self
            .max_message
            .unwrap_or_else(|| max_message_for(self.capacity.max(1).next_power_of_two().max(256)));
        check_config(self.capacity, max_message, u64::from(self.max_consumers))
            .map_err(CreateError::InvalidConfig)?;
        Ok(Geometry::new(
            self.capacity,
            max_message as u32,
            self.max_consumers,
        ))
    }

    fn finish(&self, region: Region) -> Result<Producer, CreateError> {
        let ring = RingProducer::attach(Arc::new(region)).map_err(|e| match e {
            OpenError::Io { context, source } => CreateError::Io { context, source },
            other => CreateError::InvalidConfig(other.to_string()),
        })?;
        Ok(Producer {
            ring,
            wait: self.wait,
            remove_on_drop: self.remove_on_drop,
        })
    }

    /// Create a named POSIX shared-memory segment (`/dev/shm/<name>`) and become its
    /// producer. The name is 1 to 200 bytes of `[A-Za-z0-9._-]`, not starting with `.`.
    ///
    /// # Errors
    /// [`CreateError::InvalidName`], [`CreateError::InvalidConfig`],
    /// [`CreateError::AlreadyExists`] if the name is taken, or the OS error.
    ///
    /// # Examples
    /// ```
    /// let name = format!("shmcast-doc-create-{}", std::process::id());
    /// let producer = shmcast::Producer::builder().create(&name)?;
    /// assert!(matches!(
    ///     shmcast::Producer::builder().create(&name),
    ///     Err(shmcast::CreateError::AlreadyExists(_))
    /// ));
    /// drop(producer); // removes the name
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn create(&self, name: &str) -> Result<Producer, CreateError> {
        let geo = self.geometry()?;
        let region = segment::create(Source::Name(name.into()), geo, &self.create_options())?;
        self.finish(region)
    }

    /// Create a segment in a new file at `path` (on tmpfs or hugetlbfs, typically).
    ///
    /// # Errors
    /// As [`ProducerBuilder::create`].
    ///
    /// # Examples
    /// ```
    /// let path = std::env::temp_dir().join(format!("shmcast-doc-{}", std::process::id()));
    /// let producer = shmcast::Producer::builder().capacity(4096).create_path(&path)?;
    /// drop(producer); // removes the file
    /// assert!(!path.exists());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn create_path(&self, path: impl AsRef<Path>) -> Result<Producer, CreateError> {
        let geo = self.geometry()?;
        let source = Source::Path(path.as_ref().to_path_buf());
        let region = segment::create(source, geo, &self.create_options())?;
        self.finish(region)
    }

    /// Create an anonymous, sealed memfd segment. Hand [`Producer::fd`] to other processes
    /// (inheritance or `SCM_RIGHTS`) and open it with [`ConsumerBuilder::open_fd`](crate::ConsumerBuilder::open_fd).
    ///
    /// # Errors
    /// [`CreateError::InvalidConfig`] or the OS error.
    ///
    /// # Examples
    /// ```
    /// let producer = shmcast::Producer::builder().create_anonymous()?;
    /// assert!(producer.fd().is_some());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn create_anonymous(&self) -> Result<Producer, CreateError> {
        let geo = self.geometry()?;
        let region = segment::create(Source::Anonymous, geo, &self.create_options())?;
        self.finish(region)
    }

    /// Create a ring on the heap, for threads of this process (no segment, no syscalls but
    /// futex). Consumers attach with [`ConsumerBuilder::attach_to`](crate::ConsumerBuilder::attach_to).
    ///
    /// # Errors
    /// [`CreateError::InvalidConfig`].
    ///
    /// # Examples
    /// ```
    /// let mut producer = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// let mut consumer = shmcast::Consumer::builder().attach_to(&producer).unwrap();
    /// producer.send(b"hi").unwrap();
    /// assert_eq!(&*consumer.recv().unwrap(), b"hi");
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn create_in_process(&self) -> Result<Producer, CreateError> {
        let geo = self.geometry()?;
        self.finish(Region::heap(geo))
    }

    /// Take over an existing named segment whose producer died (or exited with
    /// `remove_on_drop(false)`): the stream continues where its committed data ends.
    ///
    /// # Errors
    /// [`OpenError::ProducerAlive`] if its producer is still alive; validation errors.
    ///
    /// # Examples
    /// ```
    /// let name = format!("shmcast-doc-takeover-{}", std::process::id());
    /// let mut first = shmcast::Producer::builder().remove_on_drop(false).create(&name)?;
    /// first.send(b"one").unwrap();
    /// drop(first);
    /// let second = shmcast::Producer::builder().open(&name)?;
    /// drop(second);
    /// shmcast::remove(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<Producer, OpenError> {
        let region = segment::open(
            Source::Name(name.into()),
            &OpenOptions {
                allow_foreign_owner: false,
            },
        )?;
        let ring = RingProducer::attach(Arc::new(region))?;
        Ok(Producer {
            ring,
            wait: self.wait,
            remove_on_drop: self.remove_on_drop,
        })
    }

    fn create_options(&self) -> CreateOptions {
        CreateOptions { mode: self.mode }
    }
}

/// The single writer of a ring. `Send`, not `Sync`: one thread writes at a time.
///
/// Dropping it closes the stream: consumers drain what was published, then receive
/// `Disconnected`.
///
/// # Examples
/// ```
/// let mut producer = shmcast::Producer::builder().capacity(4096).create_in_process()?;
/// let mut consumer = shmcast::Consumer::builder().attach_to(&producer).unwrap();
/// producer.send(b"hello").unwrap();
/// let mut slot = producer.reserve(5).unwrap();
/// slot.copy_from_slice(b"world");
/// slot.commit();
/// assert_eq!(&*consumer.recv().unwrap(), b"hello");
/// assert_eq!(&*consumer.recv().unwrap(), b"world");
/// drop(producer);
/// assert_eq!(consumer.recv().unwrap_err(), shmcast::RecvError::Disconnected);
/// # Ok::<(), shmcast::CreateError>(())
/// ```
pub struct Producer {
    ring: RingProducer,
    wait: WaitPolicy,
    remove_on_drop: bool,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .field("stats", &self.ring.stats)
            .finish()
    }
}

impl Producer {
    /// A builder with default options.
    ///
    /// # Examples
    /// ```
    /// let producer = shmcast::Producer::builder().capacity(1 << 12).create_in_process()?;
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Send a message, waiting (per the wait policy) while the ring is full.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] if `msg` exceeds [`Producer::max_message`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// p.send(b"tick").unwrap();
    /// assert!(p.send(&[0; 2000]).is_err());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let res = self
            .ring
            .reserve(msg.len(), self.wait, None)
            .map_err(|e| match e {
                SendTimeoutError::TooLarge { len, max } => SendError::TooLarge { len, max },
                SendTimeoutError::Timeout => unreachable!("no deadline"),
            })?;
        self.write_commit(res, msg);
        Ok(())
    }

    /// Send a message if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if the slowest lossless consumer has not released enough
    /// space, [`TrySendError::TooLarge`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(256).create_in_process()?;
    /// let _c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// while p.try_send(b"x").is_ok() {}
    /// assert_eq!(p.try_send(b"x"), Err(shmcast::TrySendError::Full));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let res = self.ring.try_reserve(msg.len())?;
        self.write_commit(res, msg);
        Ok(())
    }

    /// Send a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], [`SendTimeoutError::TooLarge`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let mut p = shmcast::Producer::builder().capacity(256).create_in_process()?;
    /// let _c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// while p.try_send(b"x").is_ok() {}
    /// let err = p.send_timeout(b"x", Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(err, shmcast::SendTimeoutError::Timeout);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let res = self.ring.reserve(msg.len(), self.wait, deadline)?;
        self.write_commit(res, msg);
        Ok(())
    }

    #[inline]
    fn write_commit(&mut self, res: Reservation, msg: &[u8]) {
        let idx = res.payload_idx(self.ring.region().geometry().mask);
        // SAFETY: the reservation covers `len` payload bytes at `idx` (inside the ring: no
        // record crosses its end), gated so no consumer reads them until `commit`.
        unsafe { self.ring.region().copy_in(idx, msg) };
        self.ring.commit(res);
        self.ring.wake_consumers();
    }

    /// Reserve `len` bytes in the ring, waiting while it is full. Fill the returned guard in
    /// place and [`commit`](Reserved::commit) it; dropping it aborts (nothing is published).
    ///
    /// # Errors
    /// [`SendError::TooLarge`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// let mut r = p.reserve(8).unwrap();
    /// r.copy_from_slice(&42u64.to_le_bytes());
    /// r.commit();
    /// drop(p.reserve(3).unwrap()); // aborted: never seen
    /// assert_eq!(&*c.recv().unwrap(), &42u64.to_le_bytes());
    /// assert!(c.try_recv().is_err());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Reserved<'_>, SendError> {
        let res = self
            .ring
            .reserve(len, self.wait, None)
            .map_err(|e| match e {
                SendTimeoutError::TooLarge { len, max } => SendError::TooLarge { len, max },
                SendTimeoutError::Timeout => unreachable!("no deadline"),
            })?;
        Ok(Reserved {
            producer: self,
            res,
        })
    }

    /// Reserve `len` bytes if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::TooLarge`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// let mut r = p.try_reserve(4).unwrap();
    /// r.fill(7);
    /// r.commit();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<Reserved<'_>, TrySendError> {
        let res = self.ring.try_reserve(len)?;
        Ok(Reserved {
            producer: self,
            res,
        })
    }

    /// The largest message this segment accepts.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// assert_eq!(p.max_message(), 4096 / 4 - 24);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.ring.max_message()
    }

    /// Ring capacity in bytes.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// assert_eq!(p.capacity(), 4096);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.region().geometry().capacity as usize
    }

    /// This handle's counters: messages, wake syscalls, full waits.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// p.send(b"x").unwrap();
    /// assert_eq!(p.stats().messages, 1);
    /// assert_eq!(p.stats().wake_syscalls, 0); // nobody sleeps
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn stats(&self) -> ProducerStats {
        self.ring.stats
    }

    /// The segment's descriptor (for a memfd: hand it to consumer processes), or `None` for
    /// an in-process ring.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_anonymous()?;
    /// let consumer = shmcast::Consumer::builder().open_fd(p.fd().unwrap()).unwrap();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.ring.region().mapped().map(|m| m.fd())
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        self.ring.region()
    }

    /// Become the producer of an already validated region.
    pub(crate) fn from_region(
        region: Arc<Region>,
        wait: WaitPolicy,
    ) -> Result<Producer, OpenError> {
        Ok(Producer {
            ring: RingProducer::attach(region)?,
            wait,
            remove_on_drop: false,
        })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.ring.close();
        if self.remove_on_drop {
            if let Some(m) = self.ring.region().mapped() {
                let _ = segment::remove_backing(m);
            }
        }
    }
}

/// Space reserved in the ring for one message: derefs to the payload bytes in place.
/// [`commit`](Reserved::commit) publishes it; dropping it aborts.
///
/// # Examples
/// ```
/// let mut p = shmcast::Producer::builder().create_in_process()?;
/// let mut r = p.reserve(3).unwrap();
/// r.copy_from_slice(b"abc");
/// r.commit();
/// # Ok::<(), shmcast::CreateError>(())
/// ```
pub struct Reserved<'a> {
    producer: &'a mut Producer,
    res: Reservation,
}

impl fmt::Debug for Reserved<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reserved")
            .field("len", &self.res.len)
            .finish()
    }
}

impl Reserved<'_> {
    /// Publish the message to every consumer.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// p.reserve(0).unwrap().commit();
    /// assert_eq!(p.stats().messages, 1);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn commit(self) {
        self.producer.ring.commit(self.res);
        self.producer.ring.wake_consumers();
    }
}

impl std::ops::Deref for Reserved<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let region = self.producer.ring.region();
        let idx = self.res.payload_idx(region.geometry().mask);
        // SAFETY: `len` bytes at `idx` lie inside the ring and belong to this reservation
        // alone until it is committed: the gate keeps them clear of every lossless
        // consumer's unreleased records and no consumer reads past the unpublished stamp.
        unsafe { std::slice::from_raw_parts(region.data_ptr(idx), self.res.len as usize) }
    }
}

impl std::ops::DerefMut for Reserved<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let region = self.producer.ring.region();
        let idx = self.res.payload_idx(region.geometry().mask);
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(region.data_ptr(idx), self.res.len as usize) }
    }
}
