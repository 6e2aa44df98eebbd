//! # shmcast
//!
//! Lock-free single-producer / multi-consumer broadcast messaging through shared memory.
//!
//! One [`Producer`] writes variable-length messages into a ring that lives in a shared
//! memory segment; any number of [`Consumer`]s, in any process, read every message in
//! order, in place. Positions are atomics in the segment, idle processes sleep on futexes,
//! and the hot path makes no syscall: a wake-up syscall happens only while someone sleeps.
//!
//! ```
//! use shmcast::{Consumer, Producer};
//!
//! let name = format!("shmcast-doc-{}", std::process::id());
//! let mut producer = Producer::builder().capacity(1 << 16).create(&name)?;
//! // Usually in another process:
//! let mut consumer = Consumer::builder().open(&name)?;
//!
//! producer.send(b"hello")?;
//! let mut slot = producer.reserve(5)?; // zero-copy write
//! slot.copy_from_slice(b"world");
//! slot.commit();
//!
//! assert_eq!(&*consumer.recv()?, b"hello"); // read in place
//! assert_eq!(&*consumer.recv()?, b"world");
//! drop(producer); // closes the stream and removes the name
//! assert_eq!(consumer.recv().unwrap_err(), shmcast::RecvError::Disconnected);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Guarantees
//! - **Broadcast, lossless:** every consumer sees every message published after its start,
//!   in order, exactly once, unmodified. The producer never overwrites a message a lossless
//!   consumer has not released: `try_send` reports [`TrySendError::Full`], `send` waits.
//! - **Lossy consumers** ([`ConsumerBuilder::lossy`]) never slow the producer down; when it
//!   laps one, the next receive says exactly how many messages were lost
//!   ([`RecvError::Lagged`]) and it goes on at the oldest message still in the ring.
//! - **Close:** dropping the producer closes the stream; consumers drain, then get
//!   [`RecvError::Disconnected`].
//! - **Zero copy:** a received [`Message`] is read in place (one `&[u8]` into the ring) and
//!   a reservation ([`Producer::reserve`]) is filled in place.
//!
//! ## Failure model
//! - **A consumer dies** (even `SIGKILL`, holding a message, or asleep in the kernel): each
//!   handle holds an open-file-description lock on its byte of the segment file, which the
//!   kernel drops when the process dies. A producer gated by a dead consumer reclaims its
//!   slot (within a few milliseconds of needing the space); nothing else is lost.
//! - **A consumer stops reading but lives** (stopped, stuck): it gates the producer, by
//!   design. [`inspect`] (or `shmcast stat`) shows which one; opt into
//!   [`ProducerBuilder::evict_after`] to evict such consumers (they then read copies, so
//!   an eviction never changes bytes they hold, and learn of it as [`RecvError::Evicted`]).
//! - **The producer dies:** consumers drain what was committed (a reservation that was not
//!   committed is never visible), then get [`RecvError::ProducerDied`]. A new producer takes
//!   the segment over and continues the stream where the committed data ends, without a gap
//!   or a duplicate: [`ProducerBuilder::open_or_create`] (creates the segment if absent,
//!   takes it over if its producer is gone, refuses if it lives). A consumer that keeps
//!   calling `recv` after `ProducerDied` goes on with the new producer's messages.
//! - **`fork` without `exec`:** a child inherits its parent's handles but may not use them
//!   (they return `Forked`), and neither keeps the parent looking alive nor closes its
//!   stream when it drops them.
//! - **Untrusted segments:** opening validates every header field; record headers are
//!   validated on every read; consumer cursors are clamped and misbehaving slots evicted;
//!   positions a peer could have forged are cross-checked. Bad input is an error
//!   ([`SegmentError`], `Corrupt`), never a panic, a silent stall or a made-up message.
//!
//! ## Starting and restarting
//! ```no_run
//! use shmcast::{Consumer, Producer, RecvError};
//! use std::time::Duration;
//!
//! // Producer service: the same code for the first start and for every restart.
//! let mut producer = Producer::builder()
//!     .capacity(1 << 20)
//!     .remove_on_drop(false) // keep the segment across restarts
//!     .open_or_create("ticks")?;
//! producer.wait_for_consumers(1, Duration::from_secs(5)).ok(); // optional
//! # let _ = &mut producer;
//!
//! // Consumer service: may start first; survives producer restarts.
//! let mut consumer = Consumer::builder()
//!     .wait_for_segment(Duration::from_secs(30))
//!     .open("ticks")?;
//! loop {
//!     match consumer.recv() {
//!         Ok(msg) => println!("#{}: {} bytes", msg.seq(), msg.len()),
//!         // The producer crashed: wait for its replacement to take over.
//!         Err(RecvError::ProducerDied) => std::thread::sleep(Duration::from_millis(100)),
//!         Err(RecvError::Disconnected) => break, // closed for good
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Choosing a wait policy
//! [`WaitPolicy::BusySpin`] for a dedicated core and the lowest latency (100% CPU while
//! idle); the default [`WaitPolicy::Adaptive`] spins briefly, yields, then sleeps on a futex
//! (an idle consumer costs nothing; the first message after a sleep pays a wake-up, tens of
//! microseconds on a VM); [`WaitPolicy::SpinYield`] never sleeps but gives the CPU away.
//! The producer wakes sleepers only while someone sleeps: no syscall while everyone keeps up.
//!
//! ## Security and sharing
//! - Named segments live in `/dev/shm`, are created exclusively (`O_EXCL`) with mode `0600`
//!   and opened without following links; names are checked (no `/`, no leading `.`).
//!   Opening a segment owned by another user is refused unless
//!   [`ConsumerBuilder::allow_foreign_owner`].
//! - Consumers need **read and write** access (they publish their cursor and take a lock in
//!   the segment): to share with another user, create with
//!   [`ProducerBuilder::mode`]`(0o660)` and a common group.
//! - Anyone who can write the segment can disturb its stream (consumers evicted, messages
//!   reported corrupt) but not the processes: every shared value is validated before use.
//!   One thing validation cannot prevent: a process that truncates a named or path-backed
//!   segment file makes the others' accesses beyond the new end raise `SIGBUS`. Share
//!   segments only with trusted users, or use an anonymous segment
//!   ([`ProducerBuilder::create_anonymous`]), whose size is sealed.
//!
//! ## Inspection
//! [`inspect`] takes a read-only snapshot of a segment without attaching: producer state and
//! position, every consumer's lag and liveness, and which consumer gates the producer. The
//! `shmcast` command-line tool (`cargo install --path cli`) shows it (`list`, `stat`,
//! `top`, `tail`, `rm`).
//!
//! Linux only (futex, memfd, OFD locks).

#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]
// The loom build compiles out segments, handles and time-based probes: what only they use
// is dead there.
#![cfg_attr(
    shmcast_loom,
    allow(dead_code, unused_imports, clippy::needless_return)
)]

#[cfg(not(target_os = "linux"))]
compile_error!("shmcast supports Linux only: it needs futex, memfd and OFD locks");

mod error;
mod layout;
mod region;
mod ring;
mod sync;
mod wait;

#[cfg(all(not(shmcast_loom), feature = "tokio"))]
pub mod asynch;
#[cfg(not(shmcast_loom))]
mod consumer;
#[cfg(not(shmcast_loom))]
mod inspect;
#[cfg(not(shmcast_loom))]
mod os;
#[cfg(not(shmcast_loom))]
mod producer;

/// Hostile-segment helpers for the fuzz targets and the tests: not part of the API, and
/// compiled only with the `test-hooks` feature or under `cargo fuzz` (`--cfg fuzzing`).
#[cfg(all(not(shmcast_loom), any(feature = "test-hooks", fuzzing)))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(all(test, shmcast_loom))]
mod loom_tests;

pub use error::{
    Corruption, CreateError, OpenError, RecvError, RecvTimeoutError, RecvValueError, RemoveError,
    SegmentError, SendError, SendTimeoutError, TryRecvError, TrySendError, WaitTimeout,
};
pub use ring::{ConsumerStats, ProducerStats, StartAt};
pub use wait::WaitPolicy;

#[cfg(all(not(shmcast_loom), feature = "tokio"))]
pub use asynch::{AsyncConsumer, AsyncLossyConsumer, AsyncProducer, EventFd};
#[cfg(not(shmcast_loom))]
pub use consumer::{
    Consumer, ConsumerBuilder, Iter, Lag, LossyConsumer, LossyConsumerBuilder, Message,
};
#[cfg(not(shmcast_loom))]
pub use inspect::{
    inspect, inspect_fd, inspect_path, ProducerInfo, ProducerState, SlotInfo, SlotKind, Snapshot,
};
#[cfg(not(shmcast_loom))]
pub use os::segment::MAX_NAME_LEN;
#[cfg(not(shmcast_loom))]
pub use producer::{Producer, ProducerBuilder, Reserved, ReservedValue};

/// Remove a named segment whose producer is gone (it died, or exited with
/// `remove_on_drop(false)`). Processes that have it mapped keep using it; new ones cannot
/// open it. A segment with a live producer is refused: a new producer could then create
/// the name again and split the stream, the live one writing into the unlinked segment.
/// Prefer [`ProducerBuilder::open_or_create`], which takes a dead producer's segment over
/// and needs no removal at all.
///
/// # Errors
/// [`RemoveError::ProducerAlive`]; [`RemoveError::Segment`] if the object is not a valid
/// segment (use [`force_remove`] for leftovers); [`RemoveError::NotFound`];
/// [`RemoveError::InvalidName`]; the OS error.
///
/// # Examples
/// ```
/// let name = format!("shmcast-doc-remove-{}", std::process::id());
/// let producer = shmcast::Producer::builder().remove_on_drop(false).create(&name)?;
/// assert!(matches!(shmcast::remove(&name), Err(shmcast::RemoveError::ProducerAlive { .. })));
/// drop(producer);
/// shmcast::remove(&name)?;
/// assert!(matches!(shmcast::remove(&name), Err(shmcast::RemoveError::NotFound(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmcast_loom))]
pub fn remove(name: &str) -> Result<(), RemoveError> {
    remove_source(os::segment::Source::Name(name.into()), &format!("'{name}'"))
}

/// [`remove`] for a segment in a file at `path` (tmpfs, hugetlbfs): the same checks.
///
/// # Errors
/// As [`remove`].
///
/// # Examples
/// ```
/// let path = std::env::temp_dir().join(format!("shmcast-doc-rmpath-{}", std::process::id()));
/// drop(shmcast::Producer::builder().remove_on_drop(false).create_path(&path)?);
/// shmcast::remove_path(&path)?;
/// assert!(!path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmcast_loom))]
pub fn remove_path(path: impl AsRef<std::path::Path>) -> Result<(), RemoveError> {
    let path = path.as_ref();
    remove_source(
        os::segment::Source::Path(path.to_path_buf()),
        &path.display().to_string(),
    )
}

#[cfg(not(shmcast_loom))]
fn remove_source(source: os::segment::Source, what: &str) -> Result<(), RemoveError> {
    let region = match region::Region::open_read_only(source, None) {
        Ok(r) => r,
        Err(OpenError::InvalidName { name, reason }) => {
            return Err(RemoveError::InvalidName { name, reason })
        }
        Err(OpenError::NotFound(_)) => return Err(RemoveError::NotFound(what.into())),
        Err(OpenError::Segment(error)) => {
            return Err(RemoveError::Segment {
                name: what.into(),
                error,
            })
        }
        Err(OpenError::Io { context, source }) => return Err(RemoveError::Io { context, source }),
        Err(other) => {
            return Err(RemoveError::Io {
                context: other.to_string(),
                source: std::io::ErrorKind::Other.into(),
            })
        }
    };
    if region.held_by_other(region::LockId::Producer) {
        return Err(RemoveError::ProducerAlive {
            name: what.into(),
            // Relaxed: informational.
            pid: region
                .header()
                .control
                .pid
                .load(sync::atomic::Ordering::Relaxed),
        });
    }
    // Only the object we checked: a successor that replaced the name meanwhile keeps it.
    match region.unlink_if_ours() {
        Ok(_) => Ok(()),
        Err(source) => Err(RemoveError::Io {
            context: format!("remove {what}"),
            source,
        }),
    }
}

/// Remove a named object whatever it holds, without checking for a live producer or even
/// for a shmcast segment: for leftovers [`remove`] refuses (a corrupt or half-created
/// segment), or when you know better.
///
/// # Errors
/// An invalid name, or the OS error (`NotFound` if there is no such object).
///
/// # Examples
/// ```
/// let err = shmcast::force_remove("shmcast-doc-no-such-segment").unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
/// ```
#[cfg(not(shmcast_loom))]
pub fn force_remove(name: &str) -> std::io::Result<()> {
    os::segment::unlink(&os::segment::Source::Name(name.to_string()))
}
