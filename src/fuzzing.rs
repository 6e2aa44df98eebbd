//! Entry points for the fuzz targets and hostile-segment tests: a segment given as raw
//! bytes (as a peer could have written it) goes through the same validation and the same
//! ring code as a mapped one. Not part of the API: compiled only with the `test-hooks`
//! feature or under `cargo fuzz`.
//!
//! Besides opening hostile bytes, a [`HostileSegment`] can be made fresh (a valid, empty
//! segment as a creator writes it), snapshotted back to bytes (seed corpora), read and
//! scribbled at segment offsets or at stream positions of the data ring (the header words of
//! records), and shared with an in-process producer ([`HostileSegment::of_producer`]). The
//! [`layout`] module exposes the offsets and constants a model of the format needs, so fuzz
//! targets never hard-code them.

use crate::layout::{check_config, Geometry, Header, Slot, HEADER_SIZE, SLOT_SIZE};
use crate::region::Region;
use crate::{Consumer, ConsumerBuilder, OpenError, Producer, SegmentError, StartAt, WaitPolicy};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Offsets and constants of the segment format, for models in fuzz targets and tests.
pub mod layout {
    use crate::layout as l;
    use core::mem::offset_of;

    /// Size of a record header in the data ring.
    pub const RECORD_HEADER: u64 = l::RECORD_HEADER as u64;
    /// Alignment of every record.
    pub const RECORD_ALIGN: u64 = l::RECORD_ALIGN as u64;
    /// Record kind of a message (high half of the meta word).
    pub const KIND_MESSAGE: u32 = l::KIND_MESSAGE;
    /// Record kind of padding to the end of the ring.
    pub const KIND_PADDING: u32 = l::KIND_PADDING;
    /// Byte offset of the stamp word inside a record header.
    pub const RECORD_STAMP: u64 = 0;
    /// Byte offset of the sequence-number word inside a record header.
    pub const RECORD_SEQ: u64 = 8;
    /// Byte offset of the meta word (length | kind << 32) inside a record header.
    pub const RECORD_META: u64 = 16;
    /// Size of the segment header (the consumer slot table follows it).
    pub const HEADER_SIZE: u64 = l::HEADER_SIZE as u64;
    /// Size of one consumer slot.
    pub const SLOT_SIZE: u64 = l::SLOT_SIZE as u64;
    /// Smallest ring capacity.
    pub const MIN_CAPACITY: u64 = l::MIN_CAPACITY;
    /// Stream positions stay below this; a stamp above it is never a position.
    pub const MAX_POSITION: u64 = l::MAX_POSITION;

    /// Size of the layout line (magic, version, sizes and offsets): the part of the header
    /// that validation checks; everything after it is run-time state.
    pub const LAYOUT_LINE: u64 = offset_of!(l::Header, producer) as u64;
    /// Segment offset of the producer's committed tail.
    pub const PRODUCER_TAIL: u64 =
        (offset_of!(l::Header, producer) + offset_of!(l::ProducerLine, tail)) as u64;
    /// Segment offset of the producer's claim.
    pub const PRODUCER_CLAIM: u64 =
        (offset_of!(l::Header, producer) + offset_of!(l::ProducerLine, claim)) as u64;
    /// Segment offset of the producer's head.
    pub const PRODUCER_HEAD: u64 =
        (offset_of!(l::Header, producer) + offset_of!(l::ProducerLine, head)) as u64;
    /// Segment offset of the producer's next sequence number.
    pub const PRODUCER_NEXT_SEQ: u64 =
        (offset_of!(l::Header, producer) + offset_of!(l::ProducerLine, next_seq)) as u64;
    /// Segment offset of the data futex word (consumers sleep on it).
    pub const DATA_WORD: u64 =
        (offset_of!(l::Header, data) + offset_of!(l::FutexLine, word)) as u64;
    /// Segment offset of the data futex's sleeper count (consumers write it).
    pub const DATA_SLEEPERS: u64 =
        (offset_of!(l::Header, data) + offset_of!(l::FutexLine, sleepers)) as u64;
    /// Segment offset of the space futex word (consumers bump it to wake the producer).
    pub const SPACE_WORD: u64 =
        (offset_of!(l::Header, space) + offset_of!(l::FutexLine, word)) as u64;
    /// Segment offset of the space futex's sleeper count.
    pub const SPACE_SLEEPERS: u64 =
        (offset_of!(l::Header, space) + offset_of!(l::FutexLine, sleepers)) as u64;
    /// Segment offset of the slot high-water mark (consumers raise it on attach).
    pub const HWM: u64 = (offset_of!(l::Header, control) + offset_of!(l::ControlLine, hwm)) as u64;
    /// Segment offset of the producer state (`PRODUCER_*`).
    pub const CONTROL_STATE: u64 =
        (offset_of!(l::Header, control) + offset_of!(l::ControlLine, state)) as u64;
    /// Segment offset of the flag that says the producer evicts live consumers.
    pub const CONTROL_EVICTING: u64 =
        (offset_of!(l::Header, control) + offset_of!(l::ControlLine, evicting)) as u64;
    /// Segment offset of the producer's process id (informational).
    pub const PRODUCER_PID: u64 =
        (offset_of!(l::Header, control) + offset_of!(l::ControlLine, pid)) as u64;
    /// Offset of the cursor inside a consumer slot.
    pub const SLOT_CURSOR: u64 = offset_of!(l::Slot, cursor) as u64;
    /// Offset of the state word (generation << 8 | kind) inside a consumer slot.
    pub const SLOT_STATE: u64 = offset_of!(l::Slot, state) as u64;
    /// Offset of the owner's pid inside a consumer slot.
    pub const SLOT_PID: u64 = offset_of!(l::Slot, pid) as u64;
    /// Slot kind of a lossless consumer (low byte of the state word).
    pub const SLOT_LOSSLESS: u32 = l::SLOT_LOSSLESS;
    /// Slot kind of a slot the producer evicted.
    pub const SLOT_EVICTED: u32 = l::SLOT_EVICTED;
    /// Slot kind of a lossless consumer that copies messages out (its producer evicts).
    pub const SLOT_EVICTABLE: u32 = l::SLOT_EVICTABLE;
    /// Slot kind of a lossy consumer.
    pub const SLOT_LOSSY: u32 = l::SLOT_LOSSY;

    /// Size of the record that carries a `len`-byte payload (header, payload, alignment).
    pub const fn record_size(len: u64) -> u64 {
        l::record_size(len)
    }

    /// The largest payload a ring of `capacity` bytes accepts.
    pub const fn max_message_for(capacity: u64) -> u64 {
        l::max_message_for(capacity)
    }
}

/// The atomic fields of the header, as (offset, size). A peer's scribble goes through the
/// field's own width (a read-modify-write of the field), so the scribble never makes a
/// mixed-size atomic access, which the Rust memory model (and Miri) does not allow.
const HEADER_FIELDS: [(usize, usize); 24] = {
    use crate::layout::{ControlLine, FutexLine, LayoutLine, ProducerLine};
    use core::mem::offset_of;
    let (p, d, s, c) = (
        offset_of!(Header, producer),
        offset_of!(Header, data),
        offset_of!(Header, space),
        offset_of!(Header, control),
    );
    [
        (offset_of!(LayoutLine, magic), 8),
        (offset_of!(LayoutLine, version), 4),
        (offset_of!(LayoutLine, header_size), 4),
        (offset_of!(LayoutLine, slot_size), 4),
        (offset_of!(LayoutLine, max_consumers), 4),
        (offset_of!(LayoutLine, max_message), 4),
        (offset_of!(LayoutLine, record_header), 4),
        (offset_of!(LayoutLine, slots_offset), 8),
        (offset_of!(LayoutLine, data_offset), 8),
        (offset_of!(LayoutLine, capacity), 8),
        (offset_of!(LayoutLine, total_size), 8),
        (p + offset_of!(ProducerLine, tail), 8),
        (p + offset_of!(ProducerLine, claim), 8),
        (p + offset_of!(ProducerLine, head), 8),
        (p + offset_of!(ProducerLine, next_seq), 8),
        (d + offset_of!(FutexLine, word), 4),
        (d + offset_of!(FutexLine, sleepers), 4),
        (s + offset_of!(FutexLine, word), 4),
        (s + offset_of!(FutexLine, sleepers), 4),
        (c + offset_of!(ControlLine, hwm), 4),
        (c + offset_of!(ControlLine, state), 4),
        (c + offset_of!(ControlLine, epoch), 4),
        (c + offset_of!(ControlLine, evicting), 4),
        (c + offset_of!(ControlLine, pid), 4),
    ]
};

/// The slot's atomic fields, as (offset, size).
const SLOT_FIELDS: [(usize, usize); 3] = {
    use core::mem::offset_of;
    [
        (offset_of!(Slot, cursor), 8),
        (offset_of!(Slot, state), 4),
        (offset_of!(Slot, pid), 4),
    ]
};

/// The atomic that holds one byte of the segment.
enum Cell<'a> {
    U64(&'a AtomicU64),
    U32(&'a AtomicU32),
    /// Padding in the header or a slot, or the gap between the slot table and the data
    /// ring: nothing reads it.
    Unused,
}

/// A heap segment: hostile bytes that passed validation, a fresh segment, or the ring of an
/// in-process producer.
#[derive(Clone)]
pub struct HostileSegment {
    region: Arc<Region>,
}

impl std::fmt::Debug for HostileSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileSegment")
            .field("geometry", self.region.geometry())
            .finish()
    }
}

impl HostileSegment {
    /// Validate `bytes` as a segment (exactly as opening a mapped segment does).
    ///
    /// # Errors
    /// The validation error.
    pub fn new(bytes: &[u8]) -> Result<HostileSegment, SegmentError> {
        Ok(HostileSegment {
            region: Arc::new(Region::heap_from_bytes(bytes)?),
        })
    }

    /// A valid, empty segment with no producer, as a creator initializes it.
    ///
    /// # Errors
    /// The reason the configuration is refused (as `CreateError::InvalidConfig`).
    pub fn fresh(
        capacity: usize,
        max_message: usize,
        max_consumers: u32,
    ) -> Result<HostileSegment, String> {
        check_config(capacity as u64, max_message as u64, max_consumers.into())?;
        let geo = Geometry::new(capacity as u64, max_message as u32, max_consumers);
        Ok(HostileSegment {
            region: Arc::new(Region::heap(geo).map_err(|e| e.to_string())?),
        })
    }

    /// The ring of `producer`, to inspect or scribble. Only heap rings
    /// (`create_in_process`) are shared this way; a mapped segment gives `None`.
    pub fn of_producer(producer: &Producer) -> Option<HostileSegment> {
        let region = producer.region();
        region.is_heap().then(|| HostileSegment {
            region: Arc::clone(region),
        })
    }

    /// Attach a consumer (never blocks: use `try_recv` on it).
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    pub fn consumer(&self, start: StartAt) -> Result<Consumer, OpenError> {
        ConsumerBuilder::default()
            .start_at(start)
            .wait_policy(WaitPolicy::BusySpin)
            .finish(Arc::clone(&self.region))
    }

    /// Attach a lossy consumer (never blocks: use `try_recv_into` on it).
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    pub fn lossy_consumer(&self, start: StartAt) -> Result<crate::LossyConsumer, OpenError> {
        ConsumerBuilder::default()
            .start_at(start)
            .wait_policy(WaitPolicy::BusySpin)
            .lossy()
            .finish(Arc::clone(&self.region))
    }

    /// Where `consumer` (a lossy consumer of this ring) looks next: its stream position,
    /// which a forged claim or tail may have moved anywhere.
    pub fn lossy_position(consumer: &crate::LossyConsumer) -> u64 {
        consumer.position()
    }

    /// Take over as the producer.
    ///
    /// # Errors
    /// As [`ProducerBuilder::open`](crate::ProducerBuilder::open).
    pub fn producer(&self) -> Result<Producer, OpenError> {
        self.producer_with(WaitPolicy::BusySpin)
    }

    /// Take over as the producer, waiting for space (`send_timeout`) per `policy`.
    ///
    /// # Errors
    /// As [`ProducerBuilder::open`](crate::ProducerBuilder::open).
    pub fn producer_with(&self, policy: WaitPolicy) -> Result<Producer, OpenError> {
        Producer::from_region(Arc::clone(&self.region), policy, None)
    }

    /// Take over as a producer that evicts live consumers gating it for `after`
    /// (`evict_after`).
    ///
    /// # Errors
    /// As [`ProducerBuilder::open`](crate::ProducerBuilder::open).
    pub fn evicting_producer(&self, after: std::time::Duration) -> Result<Producer, OpenError> {
        Producer::from_region(Arc::clone(&self.region), WaitPolicy::BusySpin, Some(after))
    }

    /// Overwrite segment bytes at `offset` (wrapping into the segment) with `bytes`, as a
    /// misbehaving peer would: each byte through a read-modify-write of the atomic field
    /// that holds it.
    ///
    /// # Safety
    /// No message of this ring that a consumer of this process holds in place (a live
    /// [`Message`](crate::Message)) covers these bytes: changing bytes behind a `&[u8]` is
    /// undefined behaviour.
    pub unsafe fn scribble(&self, offset: u64, bytes: &[u8]) {
        let total = self.region.geometry().total_size;
        for (i, b) in bytes.iter().enumerate() {
            self.set_byte((offset + i as u64) % total, *b);
        }
    }

    /// Overwrite data-ring bytes from stream position `position` on (wrapping around the
    /// ring), e.g. the header words of a published record.
    ///
    /// # Safety
    /// As [`HostileSegment::scribble`].
    pub unsafe fn scribble_ring(&self, position: u64, bytes: &[u8]) {
        let geo = self.region.geometry();
        for (i, b) in bytes.iter().enumerate() {
            let idx = position.wrapping_add(i as u64) & geo.mask;
            self.set_byte(geo.data_offset + idx, *b);
        }
    }

    /// The data-ring word at stream position `position` (rounded down to 8 bytes).
    pub fn ring_word(&self, position: u64) -> u64 {
        self.region.word(position).load(Relaxed)
    }

    /// `len` data-ring bytes from stream position `position` on (wrapping around the ring),
    /// read with word loads.
    pub fn ring_bytes(&self, position: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let at = position.wrapping_add(i);
                self.region.word(at).load(Relaxed).to_ne_bytes()[(at % 8) as usize]
            })
            .collect()
    }

    /// The atomic holding segment byte `at` (`< total_size`), and the byte's index in it.
    fn cell(&self, at: u64) -> (Cell<'_>, usize) {
        let geo = self.region.geometry();
        let slots_end = geo.slots_offset + u64::from(geo.max_consumers) * SLOT_SIZE as u64;
        let (base, fields, rel): (*const u8, &[(usize, usize)], usize) = if at < HEADER_SIZE as u64
        {
            let h: *const Header = self.region.header();
            (h.cast(), &HEADER_FIELDS, at as usize)
        } else if at >= geo.slots_offset && at < slots_end {
            let rel = at - geo.slots_offset;
            let s: *const Slot = self.region.slot((rel / SLOT_SIZE as u64) as u32);
            (s.cast(), &SLOT_FIELDS, (rel % SLOT_SIZE as u64) as usize)
        } else if at >= geo.data_offset {
            let idx = at - geo.data_offset;
            return (Cell::U64(self.region.word(idx)), (idx % 8) as usize);
        } else {
            return (Cell::Unused, 0);
        };
        let field = fields
            .iter()
            .find(|&&(off, size)| (off..off + size).contains(&rel));
        match field {
            // SAFETY: `base` points to a `Header` or `Slot` (which hold only atomics and
            // padding) and `off` is the offset of an atomic field of that size in it.
            Some(&(off, 8)) => (Cell::U64(unsafe { &*base.add(off).cast() }), rel - off),
            // SAFETY: as above.
            Some(&(off, _)) => (Cell::U32(unsafe { &*base.add(off).cast() }), rel - off),
            None => (Cell::Unused, 0),
        }
    }

    /// Set segment byte `at` (`< total_size`) through the atomic that holds it.
    fn set_byte(&self, at: u64, value: u8) {
        match self.cell(at) {
            (Cell::U64(w), i) => {
                let mut b = w.load(Relaxed).to_ne_bytes();
                b[i] = value;
                w.store(u64::from_ne_bytes(b), Relaxed);
            }
            (Cell::U32(w), i) => {
                let mut b = w.load(Relaxed).to_ne_bytes();
                b[i] = value;
                w.store(u32::from_ne_bytes(b), Relaxed);
            }
            (Cell::Unused, _) => self.region.scribble_byte(at, value),
        }
    }

    /// Byte `at` of the segment (offsets past the end wrap), read through the atomic that
    /// holds it. Bytes that nothing reads (padding in the header and the slots, the gap
    /// before the data ring) read as 0.
    pub fn byte(&self, at: u64) -> u8 {
        match self.cell(at % self.region.geometry().total_size) {
            (Cell::U64(w), i) => w.load(Relaxed).to_ne_bytes()[i],
            (Cell::U32(w), i) => w.load(Relaxed).to_ne_bytes()[i],
            (Cell::Unused, _) => 0,
        }
    }

    /// Native-endian `u64` at segment offset `at`.
    pub fn load_u64(&self, at: u64) -> u64 {
        u64::from_ne_bytes(std::array::from_fn(|i| self.byte(at + i as u64)))
    }

    /// Native-endian `u32` at segment offset `at`.
    pub fn load_u32(&self, at: u64) -> u32 {
        u32::from_ne_bytes(std::array::from_fn(|i| self.byte(at + i as u64)))
    }

    /// The whole segment as bytes (a snapshot that [`HostileSegment::new`] accepts).
    pub fn to_bytes(&self) -> Vec<u8> {
        (0..self.len()).map(|at| self.byte(at)).collect()
    }

    /// Segment offset of consumer slot `i`.
    pub fn slot_offset(&self, i: u32) -> u64 {
        self.region.geometry().slots_offset + u64::from(i) * SLOT_SIZE as u64
    }

    /// Is `bytes` (a received message) inside this segment's data ring?
    pub fn ring_contains(&self, bytes: &[u8]) -> bool {
        let geo = self.region.geometry();
        // SAFETY: the view lives only in this call, while `self.region` does.
        let start = unsafe { self.region.data() }.start();
        let end = start + geo.capacity as usize;
        let p = bytes.as_ptr() as usize;
        p >= start && p <= end && bytes.len() <= end - p
    }

    /// Data-ring capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.region.geometry().capacity
    }

    /// The largest message the segment accepts.
    pub fn max_message(&self) -> usize {
        self.region.geometry().max_message as usize
    }

    /// Size of the consumer slot table.
    pub fn max_consumers(&self) -> u32 {
        self.region.geometry().max_consumers
    }

    /// Total size of the segment in bytes.
    pub fn len(&self) -> u64 {
        self.region.geometry().total_size
    }

    /// Never true: a valid segment has a header.
    pub fn is_empty(&self) -> bool {
        false
    }
}
