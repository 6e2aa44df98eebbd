//! The shared-memory layout: what lives where in a segment, and how a segment that another
//! process wrote is validated before anything trusts it.
//!
//! A segment is one mapped region:
//!
//! ```text
//! +----------------------+ 0
//! | Header (5 lines)     |  layout | producer | data futex | space futex | slot table
//! +----------------------+ HEADER_SIZE
//! | Slot 0 (1 line)      |  cursor, state, pid of one consumer
//! | ...                  |
//! | Slot max_consumers-1 |
//! +----------------------+ data_offset (page aligned)
//! | data ring            |  `capacity` bytes of records
//! +----------------------+ total_size
//! ```
//!
//! Every hot field owns a 128-byte line ([`Line`]), so the producer's position, each
//! consumer's cursor and each futex word never share a cache line (128 bytes covers the
//! adjacent-line prefetcher on x86). Shared structs hold only integers and atomics; nothing
//! in shared memory is a pointer. Offsets and sizes are recorded in the header and
//! re-derived from first principles on open ([`Geometry::validate`]).
//!
//! A record in the data ring is a [`RECORD_HEADER`]-byte header followed by the payload,
//! padded to [`RECORD_ALIGN`]:
//!
//! ```text
//! word 0: stamp  - the record's own stream position, stored last with Release (publication)
//! word 1: seq    - the message sequence number (messages, not bytes)
//! word 2: meta   - payload length (low 32 bits) | kind (high 32 bits: message or padding)
//! ```

use crate::sync::atomic::{AtomicU32, AtomicU64};

/// First word of every segment: `"SHMCAST"` followed by a format byte.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMCAST\x01");
/// Layout version this build reads and writes. 3: the control line's `alive` word. 2: the
/// control line's `evicting` flag and the evictable slot kind (1 had an `asymmetric` flag
/// there).
pub(crate) const VERSION: u32 = 3;
/// Size of one line: every hot field owns one.
pub(crate) const LINE: usize = 128;
/// Size of a record header in the data ring.
pub(crate) const RECORD_HEADER: usize = 24;
/// Alignment of every record, and so of every payload.
pub(crate) const RECORD_ALIGN: usize = 8;
/// Smallest ring capacity in bytes.
pub(crate) const MIN_CAPACITY: u64 = 256;
/// Largest ring capacity in bytes (1 TiB).
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;
/// Largest consumer slot table.
pub(crate) const MAX_CONSUMERS: u32 = 4096;
/// A record (header + payload + alignment) is at most `capacity / MAX_RECORD_FRACTION`.
pub(crate) const MAX_RECORD_FRACTION: u64 = 4;
/// Data ring alignment inside the segment.
pub(crate) const DATA_ALIGN: u64 = 4096;

/// Stream positions stay below this (2^62 bytes: decades at any real rate), so position
/// arithmetic never overflows and the top bit is free to mark unpublished stamps. A
/// position read from shared memory above it is corruption.
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// Marks a stamp word as "not published": the producer writes `unpublished(seq)` at the
/// next record position before publishing the current record, `seq` being the sequence
/// number the next record will carry. It never equals a position.
const UNPUBLISHED: u64 = 1 << 63;

/// The stamp written ahead of the next record, which will carry sequence number `seq`.
#[inline]
pub(crate) const fn unpublished(seq: u64) -> u64 {
    UNPUBLISHED | (seq & !UNPUBLISHED)
}

/// The sequence number carried by an unpublished stamp, if `stamp` is one.
#[inline]
pub(crate) const fn unpublished_seq(stamp: u64) -> Option<u64> {
    if stamp & UNPUBLISHED != 0 {
        Some(stamp & !UNPUBLISHED)
    } else {
        None
    }
}

/// Record kinds (high half of the meta word).
pub(crate) const KIND_MESSAGE: u32 = 1;
/// Padding to the end of the ring: skip to the next lap.
pub(crate) const KIND_PADDING: u32 = 2;

/// Producer states (`ControlLine::state`).
pub(crate) const PRODUCER_NONE: u32 = 0;
/// A producer is attached and publishing.
pub(crate) const PRODUCER_LIVE: u32 = 1;
/// The producer dropped its handle: the stream is closed.
pub(crate) const PRODUCER_CLOSED: u32 = 2;

/// Consumer slot kinds (low 8 bits of `Slot::state`; the upper 24 bits are a generation
/// that changes on every attach, so a stale compare-and-swap cannot hit a new owner).
pub(crate) const SLOT_FREE: u32 = 0;
/// A lossless consumer that reads messages in place: it gates the producer, and a live one
/// is never evicted (the producer would overwrite bytes it borrows).
pub(crate) const SLOT_LOSSLESS: u32 = 2;
/// A lossy consumer: never gates the producer.
pub(crate) const SLOT_LOSSY: u32 = 3;
/// The producer evicted this slot (dead owner or impossible cursor).
pub(crate) const SLOT_EVICTED: u32 = 4;
/// A lossless consumer that copies each message out and validates the copy: it gates the
/// producer, and may be evicted while alive (`evict_after`) without anything changing
/// under a reference it handed out.
pub(crate) const SLOT_EVICTABLE: u32 = 5;

/// Does a slot of this kind gate the producer?
#[inline]
pub(crate) fn slot_gates(state: u32) -> bool {
    matches!(slot_kind(state), SLOT_LOSSLESS | SLOT_EVICTABLE)
}

/// Kind of a slot state word.
#[inline]
pub(crate) fn slot_kind(state: u32) -> u32 {
    state & 0xff
}

/// A slot state word with the generation of `state` and kind `kind`.
#[inline]
pub(crate) fn slot_state(generation: u32, kind: u32) -> u32 {
    (generation << 8) | (kind & 0xff)
}

/// Generation of a slot state word.
#[inline]
pub(crate) fn slot_generation(state: u32) -> u32 {
    state >> 8
}

/// One 128-byte line holding `T` (at most 128 bytes).
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Line 0: the layout. Written once by the creator, magic last (Release).
#[repr(C)]
pub(crate) struct LayoutLine {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) header_size: AtomicU32,
    pub(crate) slot_size: AtomicU32,
    pub(crate) max_consumers: AtomicU32,
    pub(crate) max_message: AtomicU32,
    pub(crate) record_header: AtomicU32,
    pub(crate) slots_offset: AtomicU64,
    pub(crate) data_offset: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) total_size: AtomicU64,
}

/// Line 1: the producer's published state. Written only by the producer.
#[repr(C)]
pub(crate) struct ProducerLine {
    /// End of the committed stream (position of the next record).
    pub(crate) tail: AtomicU64,
    /// Upper bound of every position the producer may have written: it raises `claim`
    /// (then `fence(SeqCst)`, then rescans the slots) before writing past it.
    pub(crate) claim: AtomicU64,
    /// Position of the oldest record the producer has not started to overwrite.
    pub(crate) head: AtomicU64,
    /// Sequence number of the next message (the one at `tail`).
    pub(crate) next_seq: AtomicU64,
}

/// Lines 2 and 3: a futex word and the flag that says someone may sleep on it (an
/// eventcount: one wake-up per sleep generation, however many sleepers, and none at all
/// while nobody sleeps).
#[repr(C)]
pub(crate) struct FutexLine {
    /// The futex word: bumped by a waker before `FUTEX_WAKE`.
    pub(crate) word: AtomicU32,
    /// Non-zero while someone may be asleep on `word`: a sleeper sets it (a read-modify-
    /// write) before its last re-check; a waker clears it when it wakes everyone. A sleeper
    /// that dies leaves it set, which costs exactly one needless wake-up.
    pub(crate) sleepers: AtomicU32,
}

/// Line 4: rarely written control state, kept off the producer's hot line so that
/// consumers can poll it while spinning without bouncing the line the producer writes on
/// every message.
#[repr(C)]
pub(crate) struct ControlLine {
    /// One past the highest slot index ever attached. Advisory, for monitoring tools: any
    /// consumer can write it, so the producer does not trust it and scans every slot.
    pub(crate) hwm: AtomicU32,
    /// `PRODUCER_*`.
    pub(crate) state: AtomicU32,
    /// Incremented by every producer that attaches (creation or takeover).
    pub(crate) epoch: AtomicU32,
    /// 1 if the live producer evicts live lossless consumers that gate it too long
    /// (`evict_after`): lossless consumers attaching then register as `SLOT_EVICTABLE` and
    /// copy messages out. Set by each producer when it attaches, before `state`.
    pub(crate) evicting: AtomicU32,
    /// Process id of the producer that attached last (informational only: liveness uses
    /// the producer lock).
    pub(crate) pid: AtomicU32,
    /// The producer's death notice: a robust futex word (`os/robust.rs`) owned by a thread
    /// of the live producer's process, which the kernel marks `OWNER_DIED` and wakes when
    /// that process dies. 0 while no producer owns it (none, closed, or one that could not
    /// start the thread). Waiters sleep on it beside the data word instead of polling the
    /// producer lock; a hint only (any process can write it): the lock decides.
    pub(crate) alive: AtomicU32,
}

/// The segment header.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) layout: Line<LayoutLine>,
    pub(crate) producer: Line<ProducerLine>,
    /// Consumers sleep here when the ring is empty; the producer wakes them.
    pub(crate) data: Line<FutexLine>,
    /// The producer sleeps here when the ring is full; consumers wake it.
    pub(crate) space: Line<FutexLine>,
    pub(crate) control: Line<ControlLine>,
}

/// One consumer slot. Written by its consumer (cursor, state on attach/detach) and by the
/// producer (state, on eviction only).
#[repr(C, align(128))]
pub(crate) struct Slot {
    /// Everything before this position has been released by the consumer.
    pub(crate) cursor: AtomicU64,
    /// `slot_state(generation, SLOT_*)`.
    pub(crate) state: AtomicU32,
    /// Process id of the owner (informational only: liveness uses locks).
    pub(crate) pid: AtomicU32,
}

/// Size of the header in bytes.
pub(crate) const HEADER_SIZE: usize = 5 * LINE;
/// Size of one consumer slot in bytes.
pub(crate) const SLOT_SIZE: usize = LINE;

#[cfg(not(shmcast_loom))]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<LayoutLine>() <= LINE);
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(align_of::<Header>() == LINE);
    assert!(offset_of!(Header, layout) == 0);
    assert!(offset_of!(Header, producer) == LINE);
    assert!(offset_of!(Header, data) == 2 * LINE);
    assert!(offset_of!(Header, space) == 3 * LINE);
    assert!(offset_of!(Header, control) == 4 * LINE);
    assert!(offset_of!(LayoutLine, magic) == 0);
    assert!(offset_of!(LayoutLine, version) == 8);
    assert!(offset_of!(LayoutLine, header_size) == 12);
    assert!(offset_of!(LayoutLine, slot_size) == 16);
    assert!(offset_of!(LayoutLine, max_consumers) == 20);
    assert!(offset_of!(LayoutLine, max_message) == 24);
    assert!(offset_of!(LayoutLine, record_header) == 28);
    assert!(offset_of!(LayoutLine, slots_offset) == 32);
    assert!(offset_of!(LayoutLine, data_offset) == 40);
    assert!(offset_of!(LayoutLine, capacity) == 48);
    assert!(offset_of!(LayoutLine, total_size) == 56);
    assert!(size_of::<Slot>() == SLOT_SIZE);
    assert!(offset_of!(Slot, cursor) == 0);
    assert!(offset_of!(Slot, state) == 8);
    assert!(offset_of!(Slot, pid) == 12);
    // Futex words must be 4-byte aligned.
    assert!(offset_of!(FutexLine, word) % 4 == 0);
};

/// Round `n` up to a multiple of `align` (a power of two). `None` on overflow.
#[inline]
pub(crate) const fn align_up(n: u64, align: u64) -> Option<u64> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Size of the record that carries a payload of `len` bytes.
#[inline]
pub(crate) const fn record_size(len: u64) -> u64 {
    (len + RECORD_HEADER as u64 + RECORD_ALIGN as u64 - 1) & !(RECORD_ALIGN as u64 - 1)
}

/// Largest payload for a ring of `capacity` bytes.
pub(crate) const fn max_message_for(capacity: u64) -> u64 {
    capacity / MAX_RECORD_FRACTION - RECORD_HEADER as u64
}

/// The process-private copy of a segment's geometry. Built from a configuration
/// ([`Geometry::new`]) or from a validated header ([`Geometry::validate`]); never re-read from
/// shared memory afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) mask: u64,
    pub(crate) max_message: u32,
    pub(crate) max_consumers: u32,
    pub(crate) slots_offset: u64,
    pub(crate) data_offset: u64,
    pub(crate) total_size: u64,
}

/// Why a configuration was refused (see [`crate::CreateError::InvalidConfig`]).
pub(crate) fn check_config(
    capacity: u64,
    max_message: u64,
    max_consumers: u64,
) -> Result<(), String> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(format!(
            "capacity {capacity} must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY} bytes"
        ));
    }
    let limit = max_message_for(capacity).min(u64::from(u32::MAX));
    if max_message > limit {
        return Err(format!(
            "max_message {max_message} exceeds the limit for a {capacity}-byte ring: {limit} bytes \
             (a record may use at most 1/{MAX_RECORD_FRACTION} of the capacity, and at most \
             u32::MAX bytes); raise the capacity or lower max_message"
        ));
    }
    if max_consumers == 0 || max_consumers > u64::from(MAX_CONSUMERS) {
        return Err(format!(
            "max_consumers {max_consumers} must be between 1 and {MAX_CONSUMERS}"
        ));
    }
    Ok(())
}

impl Geometry {
    /// The geometry of a new segment. Callers validate with [`check_config`] first.
    pub(crate) fn new(capacity: u64, max_message: u32, max_consumers: u32) -> Geometry {
        let slots_offset = HEADER_SIZE as u64;
        let slots_end = slots_offset + u64::from(max_consumers) * SLOT_SIZE as u64;
        let data_offset = align_up(slots_end, DATA_ALIGN).expect("bounded by MAX_CONSUMERS");
        Geometry {
            capacity,
            mask: capacity - 1,
            max_message,
            max_consumers,
            slots_offset,
            data_offset,
            total_size: data_offset + capacity,
        }
    }

    /// Validate a header snapshot read from a segment of `file_size` bytes. Every field is
    /// checked against the value this build derives from the capacity and slot count, so a
    /// segment that passes has exactly the layout this build would have written.
    pub(crate) fn validate(raw: &RawLayout, file_size: u64) -> Result<Geometry, SegmentError> {
        if file_size < HEADER_SIZE as u64 {
            return Err(SegmentError::Truncated {
                size: file_size,
                needed: HEADER_SIZE as u64,
            });
        }
        if raw.magic == 0 {
            return Err(SegmentError::Uninitialized);
        }
        if raw.magic != MAGIC {
            return Err(SegmentError::BadMagic { found: raw.magic });
        }
        if raw.version != VERSION {
            return Err(SegmentError::VersionMismatch {
                found: raw.version,
                expected: VERSION,
            });
        }
        let field = |field: &'static str, found: u64, expected: u64| {
            if found == expected {
                Ok(())
            } else {
                Err(SegmentError::LayoutMismatch {
                    field,
                    found,
                    expected,
                })
            }
        };
        field("header_size", raw.header_size.into(), HEADER_SIZE as u64)?;
        field("slot_size", raw.slot_size.into(), SLOT_SIZE as u64)?;
        field(
            "record_header",
            raw.record_header.into(),
            RECORD_HEADER as u64,
        )?;
        let cap = raw.capacity;
        if !cap.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
            return Err(SegmentError::BadCapacity { found: cap });
        }
        if raw.max_consumers == 0 || raw.max_consumers > MAX_CONSUMERS {
            return Err(SegmentError::BadMaxConsumers {
                found: raw.max_consumers,
            });
        }
        if u64::from(raw.max_message) > max_message_for(cap) {
            return Err(SegmentError::BadMaxMessage {
                found: raw.max_message,
                capacity: cap,
            });
        }
        let geo = Geometry::new(cap, raw.max_message, raw.max_consumers);
        field("slots_offset", raw.slots_offset, geo.slots_offset)?;
        field("data_offset", raw.data_offset, geo.data_offset)?;
        field("total_size", raw.total_size, geo.total_size)?;
        if file_size < geo.total_size {
            return Err(SegmentError::Truncated {
                size: file_size,
                needed: geo.total_size,
            });
        }
        Ok(geo)
    }
}

/// A plain snapshot of the layout line, read once with atomic loads (or parsed from bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawLayout {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) header_size: u32,
    pub(crate) slot_size: u32,
    pub(crate) max_consumers: u32,
    pub(crate) max_message: u32,
    pub(crate) record_header: u32,
    pub(crate) slots_offset: u64,
    pub(crate) data_offset: u64,
    pub(crate) capacity: u64,
    pub(crate) total_size: u64,
}

impl RawLayout {
    /// The layout a creator writes for `geo`.
    pub(crate) fn for_geometry(geo: &Geometry) -> RawLayout {
        RawLayout {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            slot_size: SLOT_SIZE as u32,
            max_consumers: geo.max_consumers,
            max_message: geo.max_message,
            record_header: RECORD_HEADER as u32,
            slots_offset: geo.slots_offset,
            data_offset: geo.data_offset,
            capacity: geo.capacity,
            total_size: geo.total_size,
        }
    }

    /// Read the layout line. The magic is loaded first with `Acquire`: it pairs with the
    /// creator's `Release` store of the magic in [`RawLayout::store`], so once the magic is
    /// seen every other field is the creator's value (or something a hostile peer wrote
    /// since, which validation catches).
    pub(crate) fn load(line: &LayoutLine) -> RawLayout {
        use crate::sync::atomic::Ordering::{Acquire, Relaxed};
        let magic = line.magic.load(Acquire);
        RawLayout {
            magic,
            version: line.version.load(Relaxed),
            header_size: line.header_size.load(Relaxed),
            slot_size: line.slot_size.load(Relaxed),
            max_consumers: line.max_consumers.load(Relaxed),
            max_message: line.max_message.load(Relaxed),
            record_header: line.record_header.load(Relaxed),
            slots_offset: line.slots_offset.load(Relaxed),
            data_offset: line.data_offset.load(Relaxed),
            capacity: line.capacity.load(Relaxed),
            total_size: line.total_size.load(Relaxed),
        }
    }

    /// Write the layout line; the magic goes last with `Release` (pairs with the `Acquire`
    /// load in [`RawLayout::load`]) so a half-written header is never accepted.
    pub(crate) fn store(&self, line: &LayoutLine) {
        use crate::sync::atomic::Ordering::{Relaxed, Release};
        line.version.store(self.version, Relaxed);
        line.header_size.store(self.header_size, Relaxed);
        line.slot_size.store(self.slot_size, Relaxed);
        line.max_consumers.store(self.max_consumers, Relaxed);
        line.max_message.store(self.max_message, Relaxed);
        line.record_header.store(self.record_header, Relaxed);
        line.slots_offset.store(self.slots_offset, Relaxed);
        line.data_offset.store(self.data_offset, Relaxed);
        line.capacity.store(self.capacity, Relaxed);
        line.total_size.store(self.total_size, Relaxed);
        line.magic.store(self.magic, Release);
    }

    /// Parse the layout line from raw little-endian bytes (at least 64 of them).
    #[cfg(any(test, feature = "test-hooks", fuzzing))]
    pub(crate) fn from_bytes(b: &[u8]) -> Option<RawLayout> {
        let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
        let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
        Some(RawLayout {
            magic: u64_at(0)?,
            version: u32_at(8)?,
            header_size: u32_at(12)?,
            slot_size: u32_at(16)?,
            max_consumers: u32_at(20)?,
            max_message: u32_at(24)?,
            record_header: u32_at(28)?,
            slots_offset: u64_at(32)?,
            data_offset: u64_at(40)?,
            capacity: u64_at(48)?,
            total_size: u64_at(56)?,
        })
    }
}

pub use crate::error::SegmentError;

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> (RawLayout, Geometry) {
        let geo = Geometry::new(1 << 16, 1024, 8);
        (RawLayout::for_geometry(&geo), geo)
    }

    #[test]
    fn a_layout_this_build_wrote_validates_to_the_same_geometry() {
        let (raw, geo) = valid();
        assert_eq!(Geometry::validate(&raw, geo.total_size), Ok(geo));
    }

    #[test]
    fn record_sizes_are_aligned_and_include_the_header() {
        assert_eq!(record_size(0), 24);
        assert_eq!(record_size(1), 32);
        assert_eq!(record_size(8), 32);
        assert_eq!(record_size(9), 40);
        assert_eq!(record_size(64), 88);
    }

    #[test]
    fn the_largest_message_always_fits_a_quarter_of_the_ring() {
        for shift in 8..30 {
            let cap = 1u64 << shift;
            assert!(record_size(max_message_for(cap)) <= cap / MAX_RECORD_FRACTION);
        }
    }

    #[test]
    fn from_bytes_reads_what_store_would_write() {
        let (raw, _) = valid();
        let mut b = vec![0u8; 64];
        b[0..8].copy_from_slice(&raw.magic.to_le_bytes());
        b[8..12].copy_from_slice(&raw.version.to_le_bytes());
        b[12..16].copy_from_slice(&raw.header_size.to_le_bytes());
        b[16..20].copy_from_slice(&raw.slot_size.to_le_bytes());
        b[20..24].copy_from_slice(&raw.max_consumers.to_le_bytes());
        b[24..28].copy_from_slice(&raw.max_message.to_le_bytes());
        b[28..32].copy_from_slice(&raw.record_header.to_le_bytes());
        b[32..40].copy_from_slice(&raw.slots_offset.to_le_bytes());
        b[40..48].copy_from_slice(&raw.data_offset.to_le_bytes());
        b[48..56].copy_from_slice(&raw.capacity.to_le_bytes());
        b[56..64].copy_from_slice(&raw.total_size.to_le_bytes());
        assert_eq!(RawLayout::from_bytes(&b), Some(raw));
        assert_eq!(RawLayout::from_bytes(&b[..63]), None);
    }
}
