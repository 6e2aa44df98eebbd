//! Errors: one enum per operation, each with a message that says what to do.

use std::fmt;
use std::io;

/// A segment failed validation on open: it is not a shmcast segment of this layout, it was
/// not fully initialized, or it was truncated. Nothing was read from its data ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentError {
    /// The header is all zeros: the creator has not finished initializing it (retry), or
    /// the object is not a segment at all.
    Uninitialized,
    /// The first word is not the shmcast magic number: a foreign object.
    BadMagic {
        /// The word found.
        found: u64,
    },
    /// The segment was written by another layout version.
    VersionMismatch {
        /// The version in the segment.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The object is smaller than its header says (or than a header).
    Truncated {
        /// Its size in bytes.
        size: u64,
        /// The size it needs.
        needed: u64,
    },
    /// The recorded capacity is not a supported power of two.
    BadCapacity {
        /// The recorded capacity.
        found: u64,
    },
    /// The recorded maximum message size does not fit the capacity.
    BadMaxMessage {
        /// The recorded maximum.
        found: u32,
        /// The recorded capacity.
        capacity: u64,
    },
    /// The recorded slot count is out of range.
    BadMaxConsumers {
        /// The recorded count.
        found: u32,
    },
    /// A stream position in the header is beyond any position a producer can reach.
    BadPosition {
        /// The header field.
        field: &'static str,
        /// Its value.
        found: u64,
    },
    /// The object is not a regular file (a FIFO, a directory, a device): not a segment.
    NotAFile,
    /// A record's stamp is neither its stream position nor an unpublished stamp, where the
    /// producer leaves one or the other.
    BadStamp {
        /// Stream position of the record.
        position: u64,
        /// The stamp found there.
        found: u64,
    },
    /// A size or offset differs from the layout this build derives from the capacity and
    /// slot count.
    LayoutMismatch {
        /// The header field.
        field: &'static str,
        /// Its recorded value.
        found: u64,
        /// The value this build expects.
        expected: u64,
    },
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SegmentError::Uninitialized => write!(
                f,
                "segment header is all zeros: its creator has not finished initializing it \
                 (retry shortly) or it is not a shmcast segment"
            ),
            SegmentError::BadMagic { found } => write!(
                f,
                "not a shmcast segment (magic {found:#018x}); check the name or path"
            ),
            SegmentError::VersionMismatch { found, expected } => write!(
                f,
                "segment was created by layout version {found}, this build reads {expected}; \
                 use matching shmcast versions on both sides"
            ),
            SegmentError::Truncated { size, needed } => write!(
                f,
                "segment is truncated: {size} bytes, its layout needs {needed}"
            ),
            SegmentError::BadCapacity { found } => {
                write!(f, "segment header records an invalid capacity {found}")
            }
            SegmentError::BadMaxMessage { found, capacity } => write!(
                f,
                "segment header records max message {found}, too large for capacity {capacity}"
            ),
            SegmentError::BadMaxConsumers { found } => {
                write!(f, "segment header records an invalid slot count {found}")
            }
            SegmentError::BadPosition { field, found } => write!(
                f,
                "segment header field {field} holds the impossible stream position {found}: \
                 the segment is corrupt"
            ),
            SegmentError::NotAFile => write!(
                f,
                "not a shmcast segment: the object is not a regular file (a FIFO, a directory \
                 or a device); check the name or path"
            ),
            SegmentError::BadStamp { position, found } => write!(
                f,
                "the record at stream position {position} has the stamp {found:#x}, neither its \
                 position nor an unpublished stamp: the segment is corrupt"
            ),
            SegmentError::LayoutMismatch {
                field,
                found,
                expected,
            } => write!(
                f,
                "segment header field {field} is {found}, this layout needs {expected}: \
                 the segment is corrupt"
            ),
        }
    }
}

impl std::error::Error for SegmentError {}

impl SegmentError {
    /// Was the object recognised as a shmcast segment (its magic number matched) before it
    /// failed validation? True for a damaged or incompatible segment, false for a foreign
    /// object (or one too small, or too new, to tell).
    ///
    /// # Examples
    /// ```
    /// use shmcast::SegmentError;
    /// assert!(SegmentError::VersionMismatch { found: 1, expected: 2 }.has_shmcast_magic());
    /// assert!(!SegmentError::BadMagic { found: 0x1234 }.has_shmcast_magic());
    /// ```
    pub fn has_shmcast_magic(&self) -> bool {
        !matches!(
            self,
            SegmentError::Uninitialized | SegmentError::BadMagic { .. } | SegmentError::NotAFile
        ) && !matches!(self, SegmentError::Truncated { needed, .. } if *needed == crate::layout::HEADER_SIZE as u64)
    }

    /// Could a creator still be writing this segment? True when the file exists but its
    /// size (`Truncated`) or its header (`Uninitialized`) is not written yet: opening it
    /// again a little later may succeed, as `wait_for_segment` does. A segment that stays
    /// this way was never finished (its creator died), which only the caller's patience
    /// can tell.
    ///
    /// # Examples
    /// ```
    /// use shmcast::SegmentError;
    /// assert!(SegmentError::Uninitialized.may_be_in_creation());
    /// assert!(!SegmentError::BadMagic { found: 0x1234 }.may_be_in_creation());
    /// ```
    pub fn may_be_in_creation(&self) -> bool {
        matches!(
            self,
            SegmentError::Uninitialized | SegmentError::Truncated { .. }
        )
    }
}

/// Creating a segment failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// The shared-memory name is not acceptable.
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The configuration (capacity, maximum message, consumer count) is invalid.
    InvalidConfig(String),
    /// A segment with this name or path exists already. Remove it (`shmcast::remove`) if
    /// it is stale, or open it instead.
    AlreadyExists(String),
    /// The operating system refused.
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            CreateError::InvalidConfig(why) => write!(f, "invalid ring configuration: {why}"),
            CreateError::AlreadyExists(what) => write!(
                f,
                "segment {what} already exists; remove it if it is stale, or open it instead"
            ),
            CreateError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Opening a segment (attaching a consumer, or taking over as producer) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The shared-memory name is not acceptable.
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No segment with this name or path exists.
    NotFound(String),
    /// The segment belongs to another user; opening it was not explicitly allowed.
    ForeignOwner {
        /// The owner's uid.
        owner: u32,
        /// This process's effective uid.
        uid: u32,
    },
    /// The segment failed validation.
    Segment(SegmentError),
    /// Every consumer slot is taken by a live consumer.
    NoFreeSlot {
        /// The size of the slot table.
        max_consumers: u32,
    },
    /// Another live process is the producer of this segment.
    ProducerAlive,
    /// The producer kept lapping the start position while the consumer registered.
    AttachRace,
    /// Taking a segment over: an option set explicitly on the builder differs from what
    /// the segment was created with (a segment's geometry cannot change).
    OptionMismatch {
        /// The builder option.
        option: &'static str,
        /// What the builder asked for.
        requested: u64,
        /// What the segment has.
        found: u64,
    },
    /// `open_or_create` had to create the segment, and its configuration is invalid.
    InvalidConfig(String),
    /// The operating system refused.
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            OpenError::NotFound(what) => {
                write!(f, "segment {what} does not exist; start the producer first")
            }
            OpenError::ForeignOwner { owner, uid } => write!(
                f,
                "segment is owned by uid {owner}, not by this process (uid {uid}); \
                 use allow_foreign_owner(true) if that is intended"
            ),
            OpenError::Segment(e) => write!(f, "{e}"),
            OpenError::NoFreeSlot { max_consumers } => write!(
                f,
                "all {max_consumers} consumer slots are taken by live consumers; \
                 create the segment with a larger max_consumers"
            ),
            OpenError::ProducerAlive => write!(
                f,
                "the segment already has a live producer; only one producer may attach"
            ),
            OpenError::AttachRace => write!(
                f,
                "the producer overran the start position repeatedly while attaching; retry"
            ),
            OpenError::OptionMismatch {
                option,
                requested,
                found,
            } => write!(
                f,
                "the segment was created with {option} {found}, not the {requested} asked \
                 for; leave {option} unset to take it over as it is, or remove the segment \
                 (shmcast::remove) to create it anew"
            ),
            OpenError::InvalidConfig(why) => write!(f, "invalid ring configuration: {why}"),
            OpenError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            OpenError::Segment(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CreateError> for OpenError {
    /// For `open_or_create`: the creation half's errors (`AlreadyExists` never reaches it).
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::InvalidName { name, reason } => OpenError::InvalidName { name, reason },
            CreateError::InvalidConfig(why) => OpenError::InvalidConfig(why),
            CreateError::AlreadyExists(what) => OpenError::Io {
                context: format!("create {what}"),
                source: io::ErrorKind::AlreadyExists.into(),
            },
            CreateError::Io { context, source } => OpenError::Io { context, source },
        }
    }
}

/// [`remove`](crate::remove) refused, or failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoveError {
    /// The name is not acceptable.
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No segment with this name exists.
    NotFound(String),
    /// The segment's producer is alive: removing the name would let a new producer split
    /// the stream (the live one keeps writing into the unlinked segment).
    ProducerAlive {
        /// The segment.
        name: String,
        /// The producer's process id, as the segment records it (informational).
        pid: u32,
    },
    /// The object is not a valid shmcast segment of this layout (or is still being
    /// created): nothing says whose it is.
    Segment {
        /// The segment.
        name: String,
        /// What validation found.
        error: SegmentError,
    },
    /// The operating system refused.
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveError::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            RemoveError::NotFound(what) => write!(f, "segment {what} does not exist"),
            RemoveError::ProducerAlive { name, pid } => write!(
                f,
                "segment {name} has a live producer (pid {pid}); stop it first, or remove \
                 the segment by force ({}) if you know better",
                by_force(name)
            ),
            RemoveError::Segment { name, error } => write!(
                f,
                "{name} is not a usable shmcast segment ({error}); remove it by force \
                 ({}) if it is a leftover",
                by_force(name)
            ),
            RemoveError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

/// How to remove `what` (a name, or a path: it then holds a `/`) without the checks.
fn by_force(what: &str) -> &'static str {
    if what.contains('/') {
        "delete the file: std::fs::remove_file"
    } else {
        "shmcast::force_remove"
    }
}

impl std::error::Error for RemoveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RemoveError::Io { source, .. } => Some(source),
            RemoveError::Segment { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// [`Producer::wait_for_consumers`](crate::Producer::wait_for_consumers) timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeout {
    /// How many consumers were attached at the deadline.
    pub attached: usize,
    /// How many were awaited.
    pub wanted: usize,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out with {} of the {} awaited consumers attached",
            self.attached, self.wanted
        )
    }
}

impl std::error::Error for WaitTimeout {}

impl OpenError {
    /// Is the segment not created yet, or may its creator still be writing it (`NotFound`,
    /// or a [`SegmentError::may_be_in_creation`])? What `wait_for_segment` waits out.
    ///
    /// # Examples
    /// ```
    /// use shmcast::{OpenError, SegmentError};
    /// assert!(OpenError::Segment(SegmentError::Uninitialized).not_there_yet());
    /// assert!(!OpenError::AttachRace.not_there_yet());
    /// ```
    pub fn not_there_yet(&self) -> bool {
        match self {
            OpenError::NotFound(_) => true,
            OpenError::Segment(e) => e.may_be_in_creation(),
            _ => false,
        }
    }
}

impl From<SegmentError> for OpenError {
    fn from(e: SegmentError) -> Self {
        OpenError::Segment(e)
    }
}

/// A record header in the data ring failed validation: the segment is corrupt (a peer
/// wrote into it outside the protocol). The consumer's position is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Stream position of the record.
    pub position: u64,
    /// What was wrong.
    pub reason: &'static str,
    /// The offending value.
    pub value: u64,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corrupt record at stream position {}: {} ({})",
            self.position, self.reason, self.value
        )
    }
}

impl std::error::Error for Corruption {}

macro_rules! too_large_doc {
    () => {
        "The message is larger than the segment's maximum message size."
    };
}

macro_rules! exhausted_doc {
    () => {
        "The stream reached the largest position a segment supports (2^62 bytes written \
         over its lifetime, across takeovers): create a new segment."
    };
}

macro_rules! forked_doc {
    () => {
        "This handle was inherited by a process forked from its owner: it belongs to the \
         parent, and the child may not use it. Open a new handle in the child."
    };
}

/// [`Producer::try_send`](crate::Producer::try_send) failed; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrySendError {
    /// The ring is full: the slowest lossless consumer has not released enough space.
    Full,
    #[doc = too_large_doc!()]
    TooLarge {
        /// The message length.
        len: usize,
        /// The segment's maximum.
        max: usize,
    },
    #[doc = exhausted_doc!()]
    Exhausted,
    #[doc = forked_doc!()]
    Forked,
}

/// [`Producer::send`](crate::Producer::send) failed; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    #[doc = too_large_doc!()]
    TooLarge {
        /// The message length.
        len: usize,
        /// The segment's maximum.
        max: usize,
    },
    #[doc = exhausted_doc!()]
    Exhausted,
    #[doc = forked_doc!()]
    Forked,
}

/// [`Producer::send_timeout`](crate::Producer::send_timeout) failed; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendTimeoutError {
    /// The ring stayed full until the deadline.
    Timeout,
    #[doc = too_large_doc!()]
    TooLarge {
        /// The message length.
        len: usize,
        /// The segment's maximum.
        max: usize,
    },
    #[doc = exhausted_doc!()]
    Exhausted,
    #[doc = forked_doc!()]
    Forked,
}

impl From<SendError> for SendTimeoutError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::TooLarge { len, max } => SendTimeoutError::TooLarge { len, max },
            SendError::Exhausted => SendTimeoutError::Exhausted,
            SendError::Forked => SendTimeoutError::Forked,
        }
    }
}

const EXHAUSTED: &str = "the stream reached the largest position a segment supports (2^62 \
                         bytes over its lifetime); create a new segment";
const FORKED: &str = "this handle belongs to the process that forked this one; open a new \
                      handle in this process";

impl From<TrySendError> for SendTimeoutError {
    /// `Full` at the deadline is a timeout.
    fn from(e: TrySendError) -> Self {
        match e {
            TrySendError::Full => SendTimeoutError::Timeout,
            TrySendError::TooLarge { len, max } => SendTimeoutError::TooLarge { len, max },
            TrySendError::Exhausted => SendTimeoutError::Exhausted,
            TrySendError::Forked => SendTimeoutError::Forked,
        }
    }
}

fn too_large(f: &mut fmt::Formatter<'_>, len: usize, max: usize) -> fmt::Result {
    write!(
        f,
        "message of {len} bytes exceeds the segment's maximum of {max} bytes; \
         create the segment with a larger max_message (and capacity)"
    )
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TrySendError::Full => write!(f, "ring is full: the slowest consumer is behind"),
            TrySendError::TooLarge { len, max } => too_large(f, len, max),
            TrySendError::Exhausted => f.write_str(EXHAUSTED),
            TrySendError::Forked => f.write_str(FORKED),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SendError::TooLarge { len, max } => too_large(f, len, max),
            SendError::Exhausted => f.write_str(EXHAUSTED),
            SendError::Forked => f.write_str(FORKED),
        }
    }
}

impl fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SendTimeoutError::Timeout => write!(f, "timed out waiting for space in the ring"),
            SendTimeoutError::TooLarge { len, max } => too_large(f, len, max),
            SendTimeoutError::Exhausted => f.write_str(EXHAUSTED),
            SendTimeoutError::Forked => f.write_str(FORKED),
        }
    }
}

impl std::error::Error for TrySendError {}
impl std::error::Error for SendError {}
impl std::error::Error for SendTimeoutError {}

/// [`Consumer::try_recv`](crate::Consumer::try_recv) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No message is available now.
    Empty,
    /// The producer closed the stream and every message has been received.
    Disconnected,
    /// The producer died without closing the stream; every committed message has been
    /// received. A new producer may take over the segment.
    ProducerDied,
    /// The producer evicted this consumer (its cursor was impossible, or it was presumed
    /// dead). Attach again.
    Evicted,
    /// Lossy consumers only: the producer overwrote this many messages before they were
    /// read. The next receive goes on at the oldest message still in the ring.
    Lagged(u64),
    /// A record in the ring is corrupt.
    Corrupt(Corruption),
    #[doc = forked_doc!()]
    Forked,
}

/// [`Consumer::recv`](crate::Consumer::recv) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The producer closed the stream and every message has been received.
    Disconnected,
    /// The producer died without closing the stream; every committed message has been
    /// received.
    ProducerDied,
    /// The producer evicted this consumer. Attach again.
    Evicted,
    /// Lossy consumers only: the producer overwrote this many messages before they were
    /// read. The next receive goes on at the oldest message still in the ring.
    Lagged(u64),
    /// A record in the ring is corrupt.
    Corrupt(Corruption),
    #[doc = forked_doc!()]
    Forked,
}

/// [`Consumer::recv_timeout`](crate::Consumer::recv_timeout) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No message arrived before the deadline.
    Timeout,
    /// The producer closed the stream and every message has been received.
    Disconnected,
    /// The producer died without closing the stream; every committed message has been
    /// received.
    ProducerDied,
    /// The producer evicted this consumer. Attach again.
    Evicted,
    /// Lossy consumers only: the producer overwrote this many messages before they were
    /// read. The next receive goes on at the oldest message still in the ring.
    Lagged(u64),
    /// A record in the ring is corrupt.
    Corrupt(Corruption),
    #[doc = forked_doc!()]
    Forked,
}

const DISCONNECTED: &str = "the producer closed the stream and every message was received";
const DIED: &str = "the producer died without closing the stream; every committed message \
                    was received (a new producer may take over the segment)";
const EVICTED: &str = "this consumer was evicted by the producer; attach again";

fn lagged(f: &mut fmt::Formatter<'_>, n: u64) -> fmt::Result {
    write!(
        f,
        "this lossy consumer fell behind and lost {n} messages; it continues at the oldest one \
         still in the ring"
    )
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => write!(f, "no message is available"),
            TryRecvError::Disconnected => f.write_str(DISCONNECTED),
            TryRecvError::ProducerDied => f.write_str(DIED),
            TryRecvError::Evicted => f.write_str(EVICTED),
            TryRecvError::Lagged(n) => lagged(f, *n),
            TryRecvError::Corrupt(c) => write!(f, "{c}"),
            TryRecvError::Forked => f.write_str(FORKED),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => f.write_str(DISCONNECTED),
            RecvError::ProducerDied => f.write_str(DIED),
            RecvError::Evicted => f.write_str(EVICTED),
            RecvError::Lagged(n) => lagged(f, *n),
            RecvError::Corrupt(c) => write!(f, "{c}"),
            RecvError::Forked => f.write_str(FORKED),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => write!(f, "timed out waiting for a message"),
            RecvTimeoutError::Disconnected => f.write_str(DISCONNECTED),
            RecvTimeoutError::ProducerDied => f.write_str(DIED),
            RecvTimeoutError::Evicted => f.write_str(EVICTED),
            RecvTimeoutError::Lagged(n) => lagged(f, *n),
            RecvTimeoutError::Corrupt(c) => write!(f, "{c}"),
            RecvTimeoutError::Forked => f.write_str(FORKED),
        }
    }
}

impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvError {}
impl std::error::Error for RecvTimeoutError {}

impl From<RecvTimeoutError> for RecvError {
    /// For calls without a deadline (`Timeout` cannot occur; it maps to `Disconnected`
    /// rather than panicking).
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => RecvError::Disconnected,
            RecvTimeoutError::ProducerDied => RecvError::ProducerDied,
            RecvTimeoutError::Evicted => RecvError::Evicted,
            RecvTimeoutError::Lagged(n) => RecvError::Lagged(n),
            RecvTimeoutError::Corrupt(c) => RecvError::Corrupt(c),
            RecvTimeoutError::Forked => RecvError::Forked,
        }
    }
}

/// [`Consumer::recv_value`](crate::Consumer::recv_value) or
/// [`Message::value`](crate::Message::value) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvValueError {
    /// Receiving failed.
    Recv(RecvError),
    /// The message is not the size of the requested type (it stays in the ring).
    WrongSize {
        /// `size_of` the requested type.
        expected: usize,
        /// The message length.
        found: usize,
    },
    /// The requested type needs more than the 8-byte alignment payloads have.
    Misaligned {
        /// Its alignment.
        align: usize,
    },
}

impl fmt::Display for RecvValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvValueError::Recv(e) => write!(f, "{e}"),
            RecvValueError::WrongSize { expected, found } => write!(
                f,
                "message of {found} bytes is not a value of the requested type ({expected} \
                 bytes); it was left in the ring"
            ),
            RecvValueError::Misaligned { align } => write!(
                f,
                "the requested type needs {align}-byte alignment; payloads are 8-byte aligned"
            ),
        }
    }
}

impl std::error::Error for RecvValueError {}

impl From<RecvError> for RecvValueError {
    fn from(e: RecvError) -> Self {
        RecvValueError::Recv(e)
    }
}

impl From<TryRecvError> for RecvTimeoutError {
    /// `Empty` at the deadline is a timeout.
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => RecvTimeoutError::Timeout,
            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            TryRecvError::ProducerDied => RecvTimeoutError::ProducerDied,
            TryRecvError::Evicted => RecvTimeoutError::Evicted,
            TryRecvError::Lagged(n) => RecvTimeoutError::Lagged(n),
            TryRecvError::Corrupt(c) => RecvTimeoutError::Corrupt(c),
            TryRecvError::Forked => RecvTimeoutError::Forked,
        }
    }
}

impl From<RecvTimeoutError> for TryRecvError {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
            RecvTimeoutError::ProducerDied => TryRecvError::ProducerDied,
            RecvTimeoutError::Evicted => TryRecvError::Evicted,
            RecvTimeoutError::Lagged(n) => TryRecvError::Lagged(n),
            RecvTimeoutError::Corrupt(c) => TryRecvError::Corrupt(c),
            RecvTimeoutError::Forked => TryRecvError::Forked,
        }
    }
}
