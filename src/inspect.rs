//! Inspection: a read-only snapshot of a segment, taken without attaching, gating or
//! writing anything: geometry, the producer's state and position, and every attached
//! consumer slot with its position, lag and liveness (a probe of its liveness lock).
//!
//! Everything is read from shared memory that peers write concurrently, so a snapshot is a
//! set of loads, not an atomic picture; values a peer could have corrupted are reported as
//! found (positions are clamped only where arithmetic needs it). Lag in messages is exact
//! where the record at the consumer's position is still published (its header carries its
//! sequence number), and `None` where it is not (a lossy consumer that was lapped).

use crate::error::OpenError;
use crate::layout::{
    slot_kind, PRODUCER_CLOSED, PRODUCER_LIVE, RECORD_HEADER, SLOT_EVICTABLE, SLOT_EVICTED,
    SLOT_FREE, SLOT_LOSSLESS, SLOT_LOSSY,
};
use crate::os::segment::Source;
use crate::region::{LockId, Region};
use crate::sync::atomic::Ordering::{Acquire, Relaxed};
use std::os::fd::BorrowedFd;
use std::path::Path;

/// What a segment looks like at one moment. Made by [`inspect`], [`inspect_path`],
/// [`inspect_fd`] or [`Producer::snapshot`](crate::Producer::snapshot).
///
/// # Examples
/// ```
/// let name = format!("shmcast-doc-inspect-{}", std::process::id());
/// let mut p = shmcast::Producer::builder().capacity(4096).create(&name)?;
/// let _c = shmcast::Consumer::builder().open(&name)?;
/// p.send(b"hello")?;
/// let s = shmcast::inspect(&name)?;
/// assert_eq!(s.capacity, 4096);
/// assert_eq!(s.producer.state, shmcast::ProducerState::Live);
/// assert_eq!(s.consumers.len(), 1);
/// assert!(s.consumers[0].alive);
/// assert_eq!(s.consumers[0].lag_messages, Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Ring capacity in bytes.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u32,
    /// Size of the consumer slot table.
    pub max_consumers: u32,
    /// Size of the whole segment in bytes.
    pub segment_size: u64,
    /// The owner's user id, for a mapped segment (consumers need read and write access).
    pub owner_uid: Option<u32>,
    /// The permission bits of a named or path-backed segment.
    pub mode: Option<u32>,
    /// The producer.
    pub producer: ProducerInfo,
    /// Every slot that is not free, by index.
    pub consumers: Vec<SlotInfo>,
}

/// The producer's side of a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerInfo {
    /// Live, closed, died, or never attached.
    pub state: ProducerState,
    /// Process id of the last producer that attached (informational: liveness is the
    /// lock probe behind `state`).
    pub pid: u32,
    /// End of the committed stream (stream position in bytes).
    pub tail: u64,
    /// Sequence number of the next message.
    pub next_seq: u64,
    /// Upper bound of every position the producer may have written.
    pub claim: u64,
    /// How many producers have attached (creation and takeovers).
    pub epoch: u32,
    /// Does the producer evict live consumers that gate it too long (`evict_after`)?
    pub evicting: bool,
}

/// Whether a segment has a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProducerState {
    /// A producer holds the segment's producer lock.
    Live,
    /// The producer closed the stream.
    Closed,
    /// The producer died without closing (its lock is free): a new one may take over.
    Died,
    /// No producer ever attached (the segment is being created, or its creator died first).
    None,
}

/// How a consumer slot is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotKind {
    /// A lossless consumer reading in place: it gates the producer.
    Lossless,
    /// A lossless consumer that copies each message out (its producer evicts stuck
    /// consumers): it gates the producer until evicted.
    LosslessCopying,
    /// A lossy consumer: it never gates the producer.
    Lossy,
    /// The producer evicted this consumer (dead, stuck, or an impossible cursor).
    Evicted,
    /// A value no consumer writes: the slot table is corrupt.
    Unknown(u32),
}

/// One consumer slot of a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotInfo {
    /// Slot index.
    pub index: u32,
    /// How it is used.
    pub kind: SlotKind,
    /// Process id of its owner (informational).
    pub pid: u32,
    /// Does a live process hold the slot's liveness lock? A dead owner's slot is reclaimed
    /// by the producer when it needs the space.
    pub alive: bool,
    /// The position the consumer has released up to (lossless consumers publish it every
    /// eighth of the ring and whenever they run dry; lossy ones as often, for monitoring).
    pub cursor: u64,
    /// Bytes between `cursor` and the producer's tail.
    pub lag_bytes: u64,
    /// Messages between `cursor` and the tail, if the record at `cursor` is still there.
    pub lag_messages: Option<u64>,
    /// Is this the consumer that holds the producer back: lossless, the slowest, and so far
    /// behind that the largest message no longer fits ahead of the tail?
    pub gating: bool,
}

/// A snapshot of the named segment `name`, opened for reading only.
///
/// # Errors
/// As opening a segment: [`OpenError::NotFound`], [`OpenError::InvalidName`], validation
/// errors ([`OpenError::Segment`]), the OS error.
pub fn inspect(name: &str) -> Result<Snapshot, OpenError> {
    Ok(snapshot_of(&Region::open_read_only(
        Source::Name(name.into()),
        None,
    )?))
}

/// A snapshot of the segment in the file at `path`.
///
/// # Errors
/// As [`inspect`].
pub fn inspect_path(path: impl AsRef<Path>) -> Result<Snapshot, OpenError> {
    Ok(snapshot_of(&Region::open_read_only(
        Source::Path(path.as_ref().to_path_buf()),
        None,
    )?))
}

/// A snapshot of the segment behind a descriptor (duplicated, not consumed).
///
/// # Errors
/// As [`inspect`].
pub fn inspect_fd(fd: BorrowedFd<'_>) -> Result<Snapshot, OpenError> {
    Ok(snapshot_of(&Region::open_read_only(
        Source::Anonymous,
        Some(fd),
    )?))
}

/// The sequence number of the message published at `pos`, if one is.
pub(crate) fn seq_at(region: &Region, pos: u64) -> Option<u64> {
    let geo = region.geometry();
    let mut p = pos;
    let room = geo.capacity - (p & geo.mask);
    if room < RECORD_HEADER as u64 {
        p += room;
    }
    // Acquire pairs with the producer's Release stamp store (`ring/writer.rs`
    // `publish_stamps`): the seq word is the record's. Defensive: a monitor reads one word.
    if region.word(p).load(Acquire) != p {
        return None;
    }
    Some(region.word(p + 8).load(Relaxed))
}

/// Lag from `cursor` to the producer's `tail` / `next_seq`: bytes, and messages if the
/// record at `cursor` is still there.
pub(crate) fn lag(region: &Region, cursor: u64, tail: u64, next_seq: u64) -> (u64, Option<u64>) {
    let bytes = tail.saturating_sub(cursor);
    let messages = if bytes == 0 {
        Some(0)
    } else {
        seq_at(region, cursor).map(|s| next_seq.saturating_sub(s))
    };
    (bytes, messages)
}

/// How many consumer slots a live process holds.
pub(crate) fn attached(region: &Region) -> usize {
    (0..region.geometry().max_consumers)
        .filter(|&i| {
            // Relaxed: a monitor's read; the lock probe is the answer.
            let kind = slot_kind(region.slot(i).state.load(Relaxed));
            matches!(kind, SLOT_LOSSLESS | SLOT_EVICTABLE | SLOT_LOSSY)
                && region.held_by_other(LockId::Slot(i))
        })
        .count()
}

/// A snapshot taken from outside (a read-only region of its own).
fn snapshot_of(region: &Region) -> Snapshot {
    snapshot(region, false)
}

/// `own_producer`: the snapshot is taken through the live producer's own region (its
/// `Producer::snapshot`), whose lock probe cannot see its own lock: a description's lock
/// never conflicts with itself.
pub(crate) fn snapshot(region: &Region, own_producer: bool) -> Snapshot {
    let geo = *region.geometry();
    let h = region.header();
    // Relaxed throughout: a monitor's reads of values peers write concurrently; nothing is
    // concluded from their order (see the module docs).
    let state = h.control.state.load(Relaxed);
    let alive = own_producer || region.held_by_other(LockId::Producer);
    let tail = h.producer.tail.load(Relaxed);
    let next_seq = h.producer.next_seq.load(Relaxed);
    let producer = ProducerInfo {
        state: match (alive, state) {
            (true, _) => ProducerState::Live,
            (false, PRODUCER_CLOSED) => ProducerState::Closed,
            (false, PRODUCER_LIVE) => ProducerState::Died,
            _ => ProducerState::None,
        },
        pid: h.control.pid.load(Relaxed),
        tail,
        next_seq,
        claim: h.producer.claim.load(Relaxed),
        epoch: h.control.epoch.load(Relaxed),
        evicting: h.control.evicting.load(Relaxed) != 0,
    };
    let max_record = crate::layout::record_size(u64::from(geo.max_message));
    let mut consumers: Vec<SlotInfo> = (0..geo.max_consumers)
        .filter_map(|i| {
            let slot = region.slot(i);
            let state = slot.state.load(Relaxed);
            let kind = match slot_kind(state) {
                SLOT_FREE => return None,
                SLOT_LOSSLESS => SlotKind::Lossless,
                SLOT_EVICTABLE => SlotKind::LosslessCopying,
                SLOT_LOSSY => SlotKind::Lossy,
                SLOT_EVICTED => SlotKind::Evicted,
                other => SlotKind::Unknown(other),
            };
            let cursor = slot.cursor.load(Relaxed);
            let (lag_bytes, lag_messages) = lag(region, cursor, tail, next_seq);
            Some(SlotInfo {
                index: i,
                kind,
                pid: slot.pid.load(Relaxed),
                alive: region.held_by_other(LockId::Slot(i)),
                cursor,
                lag_bytes,
                lag_messages,
                gating: false,
            })
        })
        .collect();
    let slowest = consumers
        .iter()
        .filter(|c| matches!(c.kind, SlotKind::Lossless | SlotKind::LosslessCopying))
        .map(|c| c.cursor)
        .min();
    for c in &mut consumers {
        c.gating = matches!(c.kind, SlotKind::Lossless | SlotKind::LosslessCopying)
            && Some(c.cursor) == slowest
            && c.lag_bytes + max_record > geo.capacity;
    }
    Snapshot {
        capacity: geo.capacity,
        max_message: geo.max_message,
        max_consumers: geo.max_consumers,
        segment_size: geo.total_size,
        owner_uid: region.owner_uid(),
        mode: region.mode(),
        producer,
        consumers,
    }
}
