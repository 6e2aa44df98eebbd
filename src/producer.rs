//! The producer handle and its builder: options, segment creation and takeover, and the
//! public send operations, each a thin call of one ring operation (`ring/writer.rs`).

use crate::error::{
    CreateError, OpenError, SendError, SendTimeoutError, TrySendError, WaitTimeout,
};
use crate::layout::{check_config, max_message_for, Geometry};
use crate::os::fork;
use crate::os::segment::{MapOptions, Source};
use crate::region::{DeathNotice, Region};
use crate::ring::writer::RingProducer;
use crate::ring::{ProducerStats, Reservation};
use crate::WaitPolicy;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for creating a segment and its producer. Methods take and return the builder by
/// value, so it can be kept in a variable and reused.
///
/// # Examples
/// ```
/// use shmcast::{Producer, WaitPolicy};
/// let builder = Producer::builder()
///     .capacity(1 << 16)
///     .max_message(1024)
///     .max_consumers(8)
///     .wait_policy(WaitPolicy::BusySpin);
/// let producer = builder.create_anonymous()?;
/// assert_eq!(producer.max_message(), 1024);
/// # Ok::<(), shmcast::CreateError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ProducerBuilder {
    // Geometry and mode: `None` unless set explicitly. A new segment takes the default of
    // what is unset; taking a segment over checks what is set against the segment.
    capacity: Option<u64>,
    max_message: Option<u64>,
    max_consumers: Option<u32>,
    mode: Option<u32>,
    wait: WaitPolicy,
    remove_on_drop: bool,
    evict_after: Option<Duration>,
    prefault: bool,
    lock_memory: bool,
}

/// Defaults of a new segment.
const DEFAULT_CAPACITY: u64 = 1 << 20;
const DEFAULT_MAX_CONSUMERS: u32 = 16;
const DEFAULT_MODE: u32 = 0o600;

/// How long `open_or_create` waits for a segment that another process is creating.
const INIT_WAIT: Duration = Duration::from_secs(2);

impl Default for ProducerBuilder {
    fn default() -> Self {
        ProducerBuilder {
            capacity: None,
            max_message: None,
            max_consumers: None,
            mode: None,
            wait: WaitPolicy::default(),
            remove_on_drop: true,
            evict_after: None,
            prefault: true,
            lock_memory: false,
        }
    }
}

impl ProducerBuilder {
    /// Ring capacity in bytes: a power of two from 256 bytes to 1 TiB. Default 1 MiB.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = Some(bytes as u64);
        self
    }

    /// Largest message in bytes. Default and maximum: a quarter of the capacity minus a
    /// 24-byte record header, and at most `u32::MAX`.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes as u64);
        self
    }

    /// Size of the consumer slot table (1 to 4096). Default 16.
    pub fn max_consumers(mut self, n: u32) -> Self {
        self.max_consumers = Some(n);
        self
    }

    /// Permission bits of a named or path-backed segment. Default `0o600`. Consumers need
    /// read *and* write access (they store their cursor and take a lock in the segment): to
    /// share a segment with another user, give their group `0o660` and a common group.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode & 0o777);
        self
    }

    /// How `send` waits while the ring is full. Default [`WaitPolicy::default`].
    pub fn wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.wait = policy;
        self
    }

    /// Remove the segment's name (or file) when the producer is dropped, if the name still
    /// refers to this segment. Default `true`. Set `false` to let a new producer take over
    /// the segment after this one exits.
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = remove;
        self
    }

    /// Opt-in: evict a *live* lossless consumer that has kept the producer waiting for space
    /// for longer than `after` (dead consumers are always reclaimed, whatever this says).
    /// Lossless consumers that attach while such a producer is live copy each message out
    /// instead of reading it in place, so an eviction never changes bytes they hold; the
    /// evicted consumer's next call returns [`RecvError::Evicted`](crate::RecvError::Evicted).
    /// Consumers that attached in place under an earlier producer are never evicted while
    /// they live. Default: never.
    pub fn evict_after(mut self, after: Duration) -> Self {
        self.evict_after = Some(after);
        self
    }

    /// Fault every page of the segment in when it is created or taken over, so the first
    /// lap through the ring takes no page fault (a fault costs microseconds: it would show
    /// in the tail latency of the first lap). Default `true`; creating a large ring then
    /// takes longer (about 0.1 s per GiB of 4 KiB pages).
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// Lock the segment's pages in memory (`mlock`), so they are never paged out. Default
    /// `false`. Needs `RLIMIT_MEMLOCK` (`ulimit -l`) of at least the segment's size, or
    /// `CAP_IPC_LOCK`; creating fails with [`CreateError::Io`] otherwise.
    pub fn lock_memory(mut self, lock: bool) -> Self {
        self.lock_memory = lock;
        self
    }

    fn map_options(&self) -> MapOptions {
        MapOptions {
            populate: self.prefault,
            lock: self.lock_memory,
        }
    }

    fn geometry(&self) -> Result<Geometry, CreateError> {
        let capacity = self.capacity.unwrap_or(DEFAULT_CAPACITY);
        let max_consumers = self.max_consumers.unwrap_or(DEFAULT_MAX_CONSUMERS);
        let max_message = match self.max_message {
            Some(m) => m,
            None => {
                let cap = capacity
                    .max(256)
                    .checked_next_power_of_two()
                    .unwrap_or(u64::MAX / 2 + 1);
                max_message_for(cap).min(u64::from(u32::MAX))
            }
        };
        check_config(capacity, max_message, u64::from(max_consumers))
            .map_err(CreateError::InvalidConfig)?;
        Ok(Geometry::new(capacity, max_message as u32, max_consumers))
    }

    /// Taking `region` over: every option set explicitly must match the segment.
    fn check_existing(&self, region: &Region) -> Result<(), OpenError> {
        let geo = region.geometry();
        let checks = [
            ("capacity", self.capacity, geo.capacity),
            ("max_message", self.max_message, u64::from(geo.max_message)),
            (
                "max_consumers",
                self.max_consumers.map(u64::from),
                u64::from(geo.max_consumers),
            ),
            (
                "mode",
                self.mode.map(u64::from),
                u64::from(region.mode().unwrap_or(0)),
            ),
        ];
        for (option, requested, found) in checks {
            if let Some(requested) = requested {
                if requested != found {
                    return Err(OpenError::OptionMismatch {
                        option,
                        requested,
                        found,
                    });
                }
            }
        }
        Ok(())
    }

    /// Become the producer of a region just created; on failure, remove what was created.
    fn finish(&self, region: Region) -> Result<Producer, CreateError> {
        let region = Arc::new(region);
        match RingProducer::attach(Arc::clone(&region), self.evict_after) {
            Ok(ring) => Ok(self.producer(ring, false)),
            Err(e) => {
                let _ = region.unlink_if_ours();
                Err(match e {
                    OpenError::Io { context, source } => CreateError::Io { context, source },
                    other => CreateError::InvalidConfig(other.to_string()),
                })
            }
        }
    }

    fn producer(&self, ring: RingProducer, took_over: bool) -> Producer {
        Producer {
            _death_notice: ring.region().own_death_notice(),
            ring,
            wait: self.wait,
            remove_on_drop: self.remove_on_drop,
            took_over,
            fork_generation: fork::install(),
        }
    }

    fn create_source(&self, source: Source) -> Result<Producer, CreateError> {
        let geo = self.geometry()?;
        self.finish(Region::create(
            source,
            geo,
            self.mode.unwrap_or(DEFAULT_MODE),
            self.map_options(),
        )?)
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
        self.create_source(Source::Name(name.into()))
    }

    /// Create a segment in a new file at `path` (on tmpfs or hugetlbfs, typically). On
    /// hugetlbfs the file is sized up to whole huge pages (the ring then lives in huge
    /// pages: fewer TLB misses for large rings).
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
        self.create_source(Source::Path(path.as_ref().to_path_buf()))
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
        self.create_source(Source::Anonymous)
    }

    /// Create a ring on the heap, for threads of this process (no segment, no syscalls but
    /// futex). Consumers attach with [`ConsumerBuilder::attach_to`](crate::ConsumerBuilder::attach_to).
    ///
    /// # Errors
    /// [`CreateError::InvalidConfig`]; [`CreateError::Io`] if the memory cannot be
    /// allocated.
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
        self.finish(Region::heap(geo)?)
    }

    /// Take over an existing named segment whose producer died (or exited with
    /// `remove_on_drop(false)`): the stream continues where its committed data ends. Options
    /// that describe the segment (capacity, maximum message, consumer slots, mode) are
    /// checked if they were set explicitly, and a mismatch is an error: a segment's
    /// geometry cannot change. The others (wait policy, `remove_on_drop`, `evict_after`)
    /// apply to the new producer.
    ///
    /// # Errors
    /// [`OpenError::ProducerAlive`] if its producer is still alive;
    /// [`OpenError::OptionMismatch`]; [`OpenError::NotFound`]; validation errors.
    ///
    /// # Examples
    /// ```
    /// let name = format!("shmcast-doc-takeover-{}", std::process::id());
    /// let mut first = shmcast::Producer::builder().remove_on_drop(false).create(&name)?;
    /// first.send(b"one").unwrap();
    /// drop(first);
    /// let mut second = shmcast::Producer::builder().open(&name)?;
    /// assert!(second.took_over());
    /// second.send(b"two")?;
    /// drop(second); // removes the name: remove_on_drop defaults to true
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<Producer, OpenError> {
        let region = Region::open(Source::Name(name.into()), false, self.map_options())?;
        self.check_existing(&region)?;
        Ok(self.producer(
            RingProducer::attach(Arc::new(region), self.evict_after)?,
            true,
        ))
    }

    /// The restart-safe way to start a producer: create the named segment if it does not
    /// exist, or take it over if its producer is gone (died, or exited with
    /// `remove_on_drop(false)`), continuing the stream. Never a second producer: if the
    /// segment's producer lives, [`OpenError::ProducerAlive`]. A segment another process is
    /// still creating is waited for (up to two seconds). [`Producer::took_over`] tells
    /// which happened.
    ///
    /// # Errors
    /// [`OpenError::ProducerAlive`]; [`OpenError::OptionMismatch`] if an explicitly set
    /// option differs from the existing segment; [`OpenError::InvalidConfig`] if it had to
    /// create one and the configuration is invalid; validation and OS errors.
    ///
    /// # Examples
    /// ```
    /// let name = format!("shmcast-doc-ooc-{}", std::process::id());
    /// let builder = shmcast::Producer::builder().capacity(1 << 16).remove_on_drop(false);
    /// let first = builder.open_or_create(&name)?;
    /// assert!(!first.took_over());
    /// // A second producer while the first lives: refused.
    /// assert!(matches!(builder.open_or_create(&name), Err(shmcast::OpenError::ProducerAlive)));
    /// drop(first); // a restart: the segment stays (remove_on_drop(false))
    /// let second = builder.open_or_create(&name)?;
    /// assert!(second.took_over());
    /// # shmcast::force_remove(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(&self, name: &str) -> Result<Producer, OpenError> {
        let deadline = Instant::now() + INIT_WAIT;
        loop {
            match self.create(name) {
                Ok(p) => return Ok(p),
                Err(CreateError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            match self.open(name) {
                Ok(p) => return Ok(p),
                // Removed since our create failed, or still being created by another
                // process (its header or size not written yet): try again.
                Err(e) if e.not_there_yet() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The single writer of a ring.
///
/// `Send` and `Sync`: every operation that writes takes `&mut self`, so one thread writes
/// at a time; `&Producer` only reads process-private state. A process forked from the
/// owner may not use the handle (its calls return `Forked`, and dropping it there does not
/// close the stream).
///
/// Dropping it closes the stream: consumers drain what was published, then receive
/// `Disconnected`.
///
/// A producer of a mapped segment (not an in-process ring) keeps one thread of its own,
/// `shmcast-alive`, asleep for the handle's life (no CPU, no system call, every signal
/// blocked, so signals go to the application's threads): it owns the segment's *death
/// notice*, a robust futex word that the kernel marks, and wakes waiters on, when this
/// process dies, so sleeping consumers (blocking and asynchronous) learn of the death
/// without polling: an idle consumer wakes only every 5 s (a backstop) instead of every
/// 20 ms. It is joined when the handle drops. Where the thread cannot be started, or the
/// kernel refuses robust futex lists (or lacks `futex_waitv`, Linux < 5.16), the producer
/// works the same and consumers fall back to probing its liveness lock every 20 ms.
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
    /// The producer's death notice for waiting consumers (mapped segments), owned by a
    /// thread of this process. Declared first: dropped (its thread joined, the word
    /// cleared) before anything else of the handle.
    _death_notice: Option<DeathNotice>,
    ring: RingProducer,
    wait: WaitPolicy,
    remove_on_drop: bool,
    /// Became the producer of an existing segment (takeover), rather than a new one.
    took_over: bool,
    /// The fork generation this handle was made in (see `os/fork.rs`).
    fork_generation: u32,
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

/// `SendTimeoutError` of a call without a deadline, as a `SendError`.
fn untimed(e: SendTimeoutError) -> SendError {
    match e {
        SendTimeoutError::TooLarge { len, max } => SendError::TooLarge { len, max },
        SendTimeoutError::Exhausted => SendError::Exhausted,
        SendTimeoutError::Forked => SendError::Forked,
        // No deadline: the ring cannot stay full past it.
        SendTimeoutError::Timeout => unreachable!("a send without a deadline timed out"),
    }
}

impl Producer {
    /// A builder with default options.
    ///
    /// # Examples
    /// ```
    /// let _producer = shmcast::Producer::builder().capacity(1 << 12).create_in_process()?;
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Is this handle usable here (not inherited across `fork`)?
    #[inline]
    fn owned(&self) -> bool {
        fork::generation() == self.fork_generation
    }

    /// Send a message, waiting (per the wait policy) while the ring is full.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] if `msg` exceeds [`Producer::max_message`];
    /// [`SendError::Exhausted`], [`SendError::Forked`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(4096).create_in_process()?;
    /// p.send(b"tick").unwrap();
    /// assert!(p.send(&[0; 2000]).is_err());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if !self.owned() {
            return Err(SendError::Forked);
        }
        self.ring.send(msg, self.wait, None).map_err(untimed)
    }

    /// Send a message if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if the slowest lossless consumer has not released enough
    /// space, [`TrySendError::TooLarge`], [`TrySendError::Exhausted`],
    /// [`TrySendError::Forked`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().capacity(256).create_in_process()?;
    /// let _c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// while p.try_send(b"x").is_ok() {}
    /// assert_eq!(p.try_send(b"x"), Err(shmcast::TrySendError::Full));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    #[inline(always)]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        if !self.owned() {
            return Err(TrySendError::Forked);
        }
        self.ring.try_send(msg)
    }

    /// Send a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`], or as [`Producer::send`].
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
        if !self.owned() {
            return Err(SendTimeoutError::Forked);
        }
        self.ring
            .send(msg, self.wait, Instant::now().checked_add(timeout))
    }

    /// Send several messages with one publication (one release, one tail store, one
    /// wake-up decision) per ring-full, waiting while the ring is full. All lengths are
    /// checked first: if any message is too large, nothing is sent.
    ///
    /// # Errors
    /// [`SendError::TooLarge`]; [`SendError::Exhausted`] (the messages before the one that
    /// reached the ceiling were sent); [`SendError::Forked`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send_batch(&["one", "two", "three"]).unwrap();
    /// assert_eq!(c.iter().take(3).count(), 3);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<(), SendError> {
        if !self.owned() {
            return Err(SendError::Forked);
        }
        let max = self.max_message();
        // The longest length first (a branch-free reduction), the offender only if there is
        // one.
        if msgs.iter().fold(0, |l, m| l.max(m.as_ref().len())) > max {
            let len = msgs
                .iter()
                .map(|m| m.as_ref().len())
                .find(|&l| l > max)
                .unwrap_or(max + 1);
            return Err(SendError::TooLarge { len, max });
        }
        self.ring.send_batch(msgs, self.wait).map_err(untimed)
    }

    /// Send a plain-old-data value (its bytes), waiting while the ring is full. Consumers
    /// read it with [`Consumer::recv_value`](crate::Consumer::recv_value) or
    /// [`Message::value`](crate::Message::value); payloads are 8-byte aligned in the ring.
    ///
    /// # Errors
    /// As [`Producer::send`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send_value(&42u32).unwrap();
    /// assert_eq!(c.recv_value::<u32>().unwrap(), 42);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn send_value<T: bytemuck::NoUninit>(&mut self, value: &T) -> Result<(), SendError> {
        self.send(bytemuck::bytes_of(value))
    }

    /// Reserve room for a plain-old-data value and fill it in place (zero-copy), waiting
    /// while the ring is full. `T` may need at most 8-byte alignment (checked at compile
    /// time). The value starts with unspecified bytes.
    ///
    /// # Errors
    /// As [`Producer::send`].
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let mut c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// let mut v = p.reserve_value::<[u64; 4]>().unwrap();
    /// *v = [1, 2, 3, 4];
    /// v.commit();
    /// assert_eq!(c.recv().unwrap().value::<[u64; 4]>().unwrap(), &[1, 2, 3, 4]);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn reserve_value<T: bytemuck::Pod>(&mut self) -> Result<ReservedValue<'_, T>, SendError> {
        const {
            assert!(
                std::mem::align_of::<T>() <= 8,
                "payloads are 8-byte aligned: T may need at most 8-byte alignment"
            )
        };
        Ok(ReservedValue {
            inner: self.reserve(std::mem::size_of::<T>())?,
            _value: std::marker::PhantomData,
        })
    }

    /// Reserve `len` bytes in the ring, waiting while it is full. Fill the returned guard in
    /// place and [`commit`](Reserved::commit) it; dropping it aborts (nothing is published).
    /// The bytes start unspecified. (In a mapped segment they are the ring's own bytes; in
    /// an in-process ring, a private buffer copied in at commit, because lossy consumer
    /// threads may read the ring's words meanwhile.)
    ///
    /// # Errors
    /// As [`Producer::send`].
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
        if !self.owned() {
            return Err(SendError::Forked);
        }
        let res = self
            .ring
            .reserve_staged(len, self.wait, None)
            .map_err(untimed)?;
        Ok(Reserved {
            producer: self,
            res,
        })
    }

    /// Reserve `len` bytes if there is room now.
    ///
    /// # Errors
    /// As [`Producer::try_send`].
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
        if !self.owned() {
            return Err(TrySendError::Forked);
        }
        let res = self.ring.try_reserve_staged(len)?;
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

    /// The sequence number the next message will carry.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// p.send(b"x").unwrap();
    /// assert_eq!(p.next_seq(), 1);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn next_seq(&self) -> u64 {
        self.ring.next_seq()
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
    /// let _consumer = shmcast::Consumer::builder().open_fd(p.fd().unwrap()).unwrap();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.ring.region().fd()
    }

    /// Did this producer take an existing segment over (`open`, or `open_or_create` of a
    /// segment that existed), rather than create it?
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// assert!(!p.took_over());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn took_over(&self) -> bool {
        self.took_over
    }

    /// How many consumers (lossless and lossy) are attached and alive now.
    ///
    /// # Examples
    /// ```
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// assert_eq!(p.consumers(), 0);
    /// let _c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// assert_eq!(p.consumers(), 1);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn consumers(&self) -> usize {
        crate::inspect::attached(self.ring.region())
    }

    /// Wait until at least `n` consumers are attached (start-up: a producer that should not
    /// publish into the void), at most `timeout`. Returns how many are attached.
    ///
    /// # Errors
    /// [`WaitTimeout`] with the count at the deadline.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let p = shmcast::Producer::builder().create_in_process()?;
    /// let _c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// assert_eq!(p.wait_for_consumers(1, Duration::from_secs(1)), Ok(1));
    /// assert!(p.wait_for_consumers(2, Duration::from_millis(10)).is_err());
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn wait_for_consumers(&self, n: usize, timeout: Duration) -> Result<usize, WaitTimeout> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pause = Duration::from_micros(500);
        loop {
            let attached = self.consumers();
            if attached >= n {
                return Ok(attached);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(WaitTimeout {
                    attached,
                    wanted: n,
                });
            }
            let left = deadline.map_or(pause, |d| d - now);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// A snapshot of the segment: geometry, the producer's state and position, and every
    /// attached consumer with its lag and liveness (see [`inspect`](crate::inspect)).
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// let _c = shmcast::Consumer::builder().attach_to(&p).unwrap();
    /// p.send(b"x").unwrap();
    /// let s = p.snapshot();
    /// assert_eq!(s.producer.next_seq, 1);
    /// assert_eq!(s.consumers[0].lag_messages, Some(1));
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn snapshot(&self) -> crate::Snapshot {
        crate::inspect::snapshot(self.ring.region(), true)
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        self.ring.region()
    }

    /// Become the producer of an already validated region (test hooks).
    #[cfg(any(feature = "test-hooks", fuzzing))]
    pub(crate) fn from_region(
        region: Arc<Region>,
        wait: WaitPolicy,
        evict_after: Option<Duration>,
    ) -> Result<Producer, OpenError> {
        let ring = RingProducer::attach(region, evict_after)?;
        Ok(Producer {
            _death_notice: ring.region().own_death_notice(),
            ring,
            wait,
            remove_on_drop: false,
            took_over: true,
            fork_generation: fork::install(),
        })
    }
}

/// Hooks for the asynchronous handle (`crate::asynch`).
#[cfg(feature = "tokio")]
impl Producer {
    /// The ring, unless this handle was inherited across `fork` (then `None`: `Forked`).
    pub(crate) fn ring_if_owned(&mut self) -> Option<&mut RingProducer> {
        if self.owned() {
            Some(&mut self.ring)
        } else {
            None
        }
    }

    /// The guard for `res`, the reservation just made (staged) on this producer's ring.
    pub(crate) fn reserved_from(&mut self, res: Reservation) -> Reserved<'_> {
        Reserved {
            producer: self,
            res,
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if !self.owned() {
            // Inherited across fork: the stream and the name belong to the parent.
            return;
        }
        self.ring.close();
        if self.remove_on_drop {
            let _ = self.ring.region().unlink_if_ours();
        }
    }
}

/// Space reserved in the ring for one message: derefs to the payload bytes.
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
            .field("len", &self.res.len())
            .finish()
    }
}

impl Reserved<'_> {
    /// Publish the message to every consumer. (In a process forked from the producer's
    /// owner, where the reservation was inherited, this publishes nothing.)
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// p.reserve(0).unwrap().commit();
    /// assert_eq!(p.stats().messages, 1);
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn commit(self) {
        if self.producer.owned() {
            self.producer.ring.commit(self.res);
        }
    }
}

impl std::ops::Deref for Reserved<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.producer.ring.reserved(&self.res)
    }
}

impl std::ops::DerefMut for Reserved<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.producer.ring.reserved_mut(&self.res)
    }
}

/// Room reserved in the ring for one plain-old-data value: derefs to `T`.
/// [`commit`](ReservedValue::commit) publishes it; dropping it aborts.
///
/// # Examples
/// ```
/// let mut p = shmcast::Producer::builder().create_in_process()?;
/// let mut v = p.reserve_value::<u64>().unwrap();
/// *v = 7;
/// v.commit();
/// # Ok::<(), shmcast::CreateError>(())
/// ```
pub struct ReservedValue<'a, T> {
    inner: Reserved<'a>,
    _value: std::marker::PhantomData<T>,
}

impl<T> fmt::Debug for ReservedValue<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReservedValue")
            .field("size", &std::mem::size_of::<T>())
            .finish()
    }
}

impl<T: bytemuck::Pod> ReservedValue<'_, T> {
    /// Publish the value to every consumer.
    ///
    /// # Examples
    /// ```
    /// let mut p = shmcast::Producer::builder().create_in_process()?;
    /// p.reserve_value::<u32>().unwrap().commit();
    /// # Ok::<(), shmcast::CreateError>(())
    /// ```
    pub fn commit(self) {
        self.inner.commit();
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for ReservedValue<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Size is exact and the bytes are 8-aligned (ring payloads, or the 8-aligned
        // staging buffer) with align_of::<T>() <= 8 (checked at compile time in
        // `reserve_value`), so the cast cannot fail.
        bytemuck::from_bytes(&self.inner)
    }
}

impl<T: bytemuck::Pod> std::ops::DerefMut for ReservedValue<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        bytemuck::from_bytes_mut(&mut self.inner)
    }
}
