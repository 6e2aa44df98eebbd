//! Publication: the producer's side of a ring. A message is planned at the tail, written,
//! and published by its own header's stamp (see the module docs of [`crate::ring`]).
//!
//! Every public send operation is one function here: [`RingProducer::try_send`],
//! [`RingProducer::send`], [`RingProducer::try_reserve`] / [`RingProducer::reserve`] with
//! [`RingProducer::reserved`] and [`RingProducer::commit`], [`RingProducer::send_batch`] and
//! [`RingProducer::close`]. Gating (how far the producer may write) is in `gate.rs`,
//! attaching in `takeover.rs`, waking in `eventcount.rs`.

use super::{eventcount, Dims, Probe, CHECKPOINTS, HDR};
use crate::error::{SendTimeoutError, TrySendError};
use crate::layout::{
    record_size, unpublished, KIND_MESSAGE, KIND_PADDING, MAX_POSITION, PRODUCER_CLOSED,
};
use crate::region::{Data, LockId, Region};
use crate::sync::atomic::Ordering::*;
use crate::wait::{Step, WaitPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The meta word of a record: payload length (low half) and kind (high half).
#[inline]
pub(super) fn meta(len: u64, kind: u32) -> u64 {
    len | (u64::from(kind) << 32)
}

/// A planned record: where its padding (if any), header and payload go. Made only by
/// [`RingProducer::try_reserve`] (and so always current: one reservation at a time, at the
/// producer's tail), consumed by [`RingProducer::commit`]; neither `Clone` nor `Copy`.
#[derive(Debug)]
pub(crate) struct Reservation {
    /// The producer's tail when planned (where the padding record goes, if any).
    start: u64,
    /// The record's stream position.
    pos: u64,
    /// Payload length.
    len: u64,
    /// Position of the record after this one.
    next: u64,
    /// A padding record fills `start..pos`.
    pad: bool,
}

impl Reservation {
    /// Payload length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// One past the last byte this reservation writes (the next record's stamp word).
    #[inline]
    pub(super) fn write_end(&self) -> u64 {
        self.next + 8
    }
}

/// The producer side of a ring.
pub(crate) struct RingProducer {
    pub(super) region: Arc<Region>,
    /// The data ring's view; `region` keeps it valid.
    pub(super) data: Data,
    pub(super) d: Dims,
    pub(super) max_consumers: u32,
    /// Claims grow by this much (an eighth of the ring) at a time.
    pub(super) claim_chunk: u64,
    /// `log2(claim_chunk)`.
    pub(super) chunk_shift: u32,
    /// Position of the next record: the end of everything written.
    pub(super) tail: u64,
    /// The end of what consumers can see (the tail last stored in the header). The gate
    /// never passes it: a batch must not lap its own first, still unpublished, record.
    pub(super) published: u64,
    /// Sequence number of the next message.
    pub(super) next_seq: u64,
    /// Writes below `limit` need no rescan.
    pub(super) limit: u64,
    /// The claim last published.
    pub(super) claim: u64,
    /// The first record position of each of the last `CHECKPOINTS` claim chunks written
    /// (a private ring indexed by chunk number): where `head` can point when the claim
    /// moves, without walking records on the hot path.
    pub(super) checkpoints: [u64; CHECKPOINTS],
    /// Start of the chunk after the last checkpoint taken (0 before the first): the next
    /// record at or past it takes a checkpoint.
    pub(super) next_chunk: u64,
    pub(super) probe: Probe,
    /// Opt-in: evict a live, evictable consumer that gates us for this long.
    pub(super) evict_after: Option<Duration>,
    /// Since when each slot (by index) has been gating us, for `evict_after`.
    pub(super) gated_since: Vec<Option<(u32, Instant)>>,
    /// Heap rings: a reservation is written here, then copied in with atomic stores by
    /// `commit` (lossy readers in this process may load the ring's words meanwhile). Words,
    /// so the bytes are 8-aligned as ring payloads are.
    staging: Vec<u64>,
    pub(crate) stats: super::ProducerStats,
}

impl std::fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingProducer")
            .field("tail", &self.tail)
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats)
            .finish()
    }
}

impl RingProducer {
    /// A producer at `tail` / `next_seq` with everything else fresh (see `takeover.rs`).
    pub(super) fn new(region: Arc<Region>, tail: u64, next_seq: u64, claim: u64) -> RingProducer {
        let d = Dims::of(&region);
        let chunk = d.cap / 8;
        RingProducer {
            max_consumers: region.geometry().max_consumers,
            // SAFETY: kept beside the `Arc` that keeps the region alive.
            data: unsafe { region.data() },
            region,
            d,
            claim_chunk: chunk,
            chunk_shift: chunk.trailing_zeros(),
            tail,
            published: tail,
            next_seq,
            limit: 0,
            claim,
            checkpoints: [u64::MAX; CHECKPOINTS],
            next_chunk: 0,
            probe: Probe::default(),
            evict_after: None,
            gated_since: Vec::new(),
            staging: Vec::new(),
            stats: super::ProducerStats::default(),
        }
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    pub(crate) fn max_message(&self) -> usize {
        self.d.max_message as usize
    }

    /// Sequence number of the next message.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Plan a record of `len` bytes at the tail.
    #[inline(always)]
    fn plan(&self, len: usize) -> Result<Reservation, TrySendError> {
        let len64 = len as u64;
        if len64 > self.d.max_message {
            return Err(TrySendError::TooLarge {
                len,
                max: self.max_message(),
            });
        }
        let rec = record_size(len64);
        let start = self.tail;
        let room = self.d.cap - (start & self.d.mask);
        let (pos, pad) = if room >= rec {
            (start, false)
        } else {
            (start + room, true)
        };
        Ok(Reservation {
            start,
            pos,
            len: len64,
            next: self.d.skip_short(pos + rec),
            pad,
        })
    }

    /// The common case of `try_reserve`, inlined into the send paths: a `len`-byte message
    /// that fits under the write limit, with its record and the next one's header before the
    /// ring's end (no padding, no skip). `None` for anything else (too large, the ring's end,
    /// a limit to refresh, the position ceiling): the caller then takes the full path, which
    /// decides.
    #[inline(always)]
    fn plan_fast(&self, len: usize) -> Option<Reservation> {
        let len64 = len as u64;
        if len64 > self.d.max_message {
            return None;
        }
        let rec = record_size(len64);
        let start = self.tail;
        let next = start + rec;
        // The limit never exceeds MAX_POSITION (see `gate.rs`): this also keeps the ceiling.
        if self.d.cap - (start & self.d.mask) < rec + HDR || next + 8 > self.limit {
            return None;
        }
        Some(Reservation {
            start,
            pos: start,
            len: len64,
            next,
            pad: false,
        })
    }

    /// Where a `len`-byte message planned now would end its writes.
    pub(super) fn plan_end(&self, len: usize) -> Result<u64, TrySendError> {
        let end = self.plan(len)?.write_end();
        if end > MAX_POSITION {
            return Err(TrySendError::Exhausted);
        }
        Ok(end)
    }

    /// Reserve space for a `len`-byte message without waiting.
    #[inline(always)]
    pub(crate) fn try_reserve(&mut self, len: usize) -> Result<Reservation, TrySendError> {
        let res = self.plan(len)?;
        let end = res.write_end();
        // The limit never exceeds MAX_POSITION (see `gate.rs`), so this one comparison also
        // catches the position ceiling.
        if end > self.limit {
            self.beyond_limit(end)?;
        }
        Ok(res)
    }

    /// The slow path of `try_reserve`: the position ceiling, or a gate refresh.
    #[cold]
    fn beyond_limit(&mut self, end: u64) -> Result<(), TrySendError> {
        // Positions stay below MAX_POSITION (they carry across takeovers): refuse at the
        // ceiling rather than let them overflow into the unpublished-stamp bit.
        if end > MAX_POSITION {
            return Err(TrySendError::Exhausted);
        }
        if self.refresh(end) {
            Ok(())
        } else {
            Err(TrySendError::Full)
        }
    }

    /// Reserve for a caller that fills the bytes itself ([`Self::reserved_mut`]): in a heap
    /// ring, size the staging buffer.
    fn stage(&mut self, res: Reservation) -> Reservation {
        if self.region.is_heap() {
            let words = res.len().div_ceil(8);
            if self.staging.len() < words {
                self.staging.resize(words, 0);
            }
        }
        res
    }

    /// [`Self::try_reserve`], for a caller that fills the bytes itself.
    pub(crate) fn try_reserve_staged(&mut self, len: usize) -> Result<Reservation, TrySendError> {
        self.try_reserve(len).map(|r| self.stage(r))
    }

    /// [`Self::reserve`], for a caller that fills the bytes itself.
    pub(crate) fn reserve_staged(
        &mut self,
        len: usize,
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<Reservation, SendTimeoutError> {
        self.reserve(len, policy, deadline).map(|r| self.stage(r))
    }

    /// Reserve space, waiting according to `policy` until `deadline`.
    pub(crate) fn reserve(
        &mut self,
        len: usize,
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<Reservation, SendTimeoutError> {
        let mut n = 0u32;
        loop {
            match self.try_reserve(len) {
                Ok(r) => return Ok(r),
                Err(TrySendError::Full) => {}
                Err(e) => return Err(e.into()),
            }
            if n == 0 {
                self.stats.full_waits += 1;
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(SendTimeoutError::Timeout),
                },
                None => None,
            };
            match policy.step(n) {
                Step::Spin => crate::sync::spin_loop(),
                Step::Yield => crate::sync::yield_now(),
                Step::Sleep => self.sleep_for_space(len, remaining),
            }
            n = n.saturating_add(1);
        }
    }

    /// The bytes of the current reservation `res`, to fill before [`Self::commit`]: in place
    /// in a mapped segment, a private 8-aligned staging buffer in a heap ring (sized by
    /// `try_reserve`).
    ///
    /// # Panics
    /// If `res` is not the current reservation (an internal invariant: a `Reservation` is
    /// made only at the tail and consumed by `commit`).
    pub(crate) fn reserved(&self, res: &Reservation) -> &[u8] {
        assert_eq!(res.start, self.tail, "a stale reservation");
        #[cfg(not(shmcast_loom))]
        if !self.region.is_heap() {
            // SAFETY: as in `reserved_mut`; a shared borrow of `self` keeps `reserved_mut`
            // and `commit` away for its lifetime.
            return unsafe { self.data.payload((res.pos + HDR) & self.d.mask, res.len()) };
        }
        &bytemuck::cast_slice(&self.staging)[..res.len()]
    }

    /// [`Self::reserved`], writable.
    ///
    /// # Panics
    /// As [`Self::reserved`].
    pub(crate) fn reserved_mut(&mut self, res: &Reservation) -> &mut [u8] {
        assert_eq!(res.start, self.tail, "a stale reservation");
        #[cfg(not(shmcast_loom))]
        if !self.region.is_heap() {
            let idx = (res.pos + HDR) & self.d.mask;
            // SAFETY: a mapped region. `res` is the current reservation (checked above), so
            // `len` bytes at `idx` lie inside the ring (no record crosses its end), the gate
            // keeps them clear of every unreleased record of every lossless consumer, and no
            // consumer reads them before `commit` publishes them; `&mut self` makes this the
            // only reference in this process. Lossy readers in other processes (or through
            // other mappings) validate what they copy and discard it if we wrote meanwhile.
            return unsafe { self.data.payload_mut(idx, res.len()) };
        }
        &mut bytemuck::cast_slice_mut(&mut self.staging)[..res.len()]
    }

    /// Publish the current reservation `res` (whose bytes [`Self::reserved`] gave out),
    /// then wake sleeping consumers if there are any.
    pub(crate) fn commit(&mut self, res: Reservation) {
        assert_eq!(res.start, self.tail, "a stale reservation");
        if self.region.is_heap() && res.len != 0 {
            let idx = (res.pos + HDR) & self.d.mask;
            let staged: &[u8] = bytemuck::cast_slice(&self.staging);
            // SAFETY: `res` is the current reservation: in bounds, exclusive (see
            // `reserved_mut`). Heap rings copy in with atomic stores.
            unsafe { self.data.copy_in(idx, &staged[..res.len()]) };
        }
        self.write_record(&res, true);
        self.store_tail();
    }

    /// Copy `msg` into the current reservation and commit it.
    #[inline(always)]
    fn write_commit(&mut self, res: Reservation, msg: &[u8]) {
        debug_assert_eq!(res.len(), msg.len());
        let idx = (res.pos + HDR) & self.d.mask;
        // SAFETY: `res` was just reserved for exactly `msg.len()` bytes: in bounds (no
        // record crosses the ring's end) and exclusive (gated clear of every unreleased
        // record, unpublished until `write_record` below).
        unsafe { self.data.copy_in(idx, msg) };
        self.write_record(&res, true);
        self.store_tail();
    }

    /// Send `msg` if there is room now.
    #[inline(always)]
    pub(crate) fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        match self.plan_fast(msg.len()) {
            Some(res) => {
                self.write_commit(res, msg);
                Ok(())
            }
            None => self.try_send_slow(msg),
        }
    }

    /// `try_send` beyond the common case (see [`Self::plan_fast`]).
    #[cold]
    #[inline(never)]
    fn try_send_slow(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let res = self.try_reserve(msg.len())?;
        self.write_commit(res, msg);
        Ok(())
    }

    /// Send `msg`, waiting for room according to `policy` until `deadline`.
    #[inline(always)]
    pub(crate) fn send(
        &mut self,
        msg: &[u8],
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError> {
        // The fast plan first (it accepts only what `try_reserve` would, with the same
        // result); `reserve` decides everything else, waiting if it must.
        match self.plan_fast(msg.len()) {
            Some(res) => {
                self.write_commit(res, msg);
                Ok(())
            }
            None => self.send_slow(msg, policy, deadline),
        }
    }

    /// `send` beyond the common case (see [`Self::plan_fast`]).
    #[cold]
    #[inline(never)]
    fn send_slow(
        &mut self,
        msg: &[u8],
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError> {
        let res = self.reserve(msg.len(), policy, deadline)?;
        self.write_commit(res, msg);
        Ok(())
    }

    /// Write `res`'s header, the padding before it and the unpublished stamp after it, and
    /// advance the private tail. With `publish`, also store its stamps (publication);
    /// without, the caller publishes it later with [`Self::publish_stamps`].
    #[inline(always)]
    fn write_record(&mut self, res: &Reservation, publish: bool) {
        // Locals, not fields: the compiler must assume that an atomic store may change
        // `self`'s fields, and would load them again after each store below.
        let (r, mask, seq) = (self.data, self.d.mask, self.next_seq);
        // SAFETY: `plan` placed the record where its header fits before the ring's end
        // (8-aligned, `room >= record_size >= RECORD_HEADER`).
        let h = unsafe { r.header(res.pos & mask) };
        // Relaxed (seq, meta, stamp ahead, padding header): published by the Release stamp
        // store in `publish_stamps`, which orders them before it.
        h.seq.store(seq, Relaxed);
        h.meta.store(meta(res.len, KIND_MESSAGE), Relaxed);
        // The next record's stamp word may hold payload bytes from an earlier lap; make
        // sure it cannot match the next position before that record is published (and tell
        // lossy readers which sequence number comes next).
        r.word(res.next)
            .store(unpublished(seq.wrapping_add(1)), Relaxed);
        if res.pad {
            // SAFETY: the tail is never in a fragment shorter than a header (`skip_short`),
            // so the padding record's header fits.
            let p = unsafe { r.header(res.start & mask) };
            p.seq.store(seq, Relaxed);
            p.meta.store(meta(0, KIND_PADDING), Relaxed);
        }
        if publish {
            Self::publish_stamps(&r, res);
        }
        // Positions only grow: the first record at or past the next chunk's start opens it.
        if res.pos >= self.next_chunk {
            let chunk = res.pos >> self.chunk_shift;
            self.next_chunk = (chunk + 1) << self.chunk_shift;
            self.checkpoints[chunk as usize % CHECKPOINTS] = res.pos;
        }
        self.tail = res.next;
        self.next_seq = seq.wrapping_add(1);
        self.stats.messages += 1;
    }

    /// Publication. Release pairs with the consumers' Acquire stamp loads (`cursor.rs`
    /// `poll`, `lossy.rs` `poll_lossy`, `attach.rs`): the payload, seq, meta and the
    /// unpublished stamp ahead (and, for the first record of a batch, every later record of
    /// the batch) are visible to whoever sees the stamp.
    #[inline(always)]
    fn publish_stamps(r: &Data, res: &Reservation) {
        if res.pad {
            r.word(res.start).store(res.start, Release);
        }
        r.word(res.pos).store(res.pos, Release);
    }

    /// Store the committed end for attaching consumers, monitors and a future takeover,
    /// then wake sleeping consumers if there are any (no syscall otherwise).
    #[inline(always)]
    fn store_tail(&mut self) {
        // Locals, as in `write_record`: the stores below would make the compiler reload
        // fields; one header reference serves the stores and the wake-up.
        let (tail, next_seq) = (self.tail, self.next_seq);
        let region = &*self.region;
        let h = region.header();
        // Release pairs with the Acquire tail / next_seq loads of attaching consumers
        // (`attach.rs`), of the end-of-stream check (`cursor.rs` `check_stuck`) and of a
        // takeover (`takeover.rs`): whoever sees this tail sees every stamp below it.
        h.producer.tail.store(tail, Release);
        // Defensive (redundant: the tail store publishes the records; next_seq is read by
        // monitors and by a takeover, which holds the lock taken after our unlock).
        h.producer.next_seq.store(next_seq, Release);
        self.published = tail;
        if eventcount::notify(region, &h.data) {
            self.stats.wake_syscalls += 1;
        }
    }

    /// Send the messages `msgs` (lengths checked by the caller) in batches: as many records
    /// as fit are written, then published by one release (the first record's stamp), one
    /// tail store and one wake-up decision; if the ring fills, wait for space per `policy`
    /// and go on. The gate never passes the batch's first record (it is not published, see
    /// `gate.rs`), so a batch never laps itself.
    pub(crate) fn send_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        policy: WaitPolicy,
    ) -> Result<(), SendTimeoutError> {
        let mut rest = msgs;
        while let Some((m, more)) = rest.split_first() {
            let msg = m.as_ref();
            // The fast plan first, as in `send`; `reserve` decides everything else.
            let first = match self.plan_fast(msg.len()) {
                Some(res) => res,
                None => self.reserve(msg.len(), policy, None)?,
            };
            self.write_batched(&first, msg, false);
            rest = more;
            let mut refused = None;
            while let Some((m, more)) = rest.split_first() {
                let msg = m.as_ref();
                // The fast plan's record is written here (no padding, known at compile
                // time); everything else is planned and written out of line.
                match self.plan_fast(msg.len()) {
                    Some(res) => self.write_batched(&res, msg, true),
                    None => match self.write_batched_slow(msg) {
                        Ok(()) => {}
                        Err(TrySendError::Full) => break,
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    },
                }
                rest = more;
            }
            Self::publish_stamps(&self.data, &first);
            self.store_tail();
            if let Some(e) = refused {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// A later record of a batch beyond the common case (see [`Self::plan_fast`]): reserve
    /// and write it as the batch loop does, out of that loop.
    #[cold]
    #[inline(never)]
    fn write_batched_slow(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let res = self.try_reserve(msg.len())?;
        self.write_batched(&res, msg, true);
        Ok(())
    }

    /// Copy one message of a batch in and write its record (`publish`: store its stamp, which
    /// no consumer reaches before the batch's first stamp is stored).
    #[inline(always)]
    fn write_batched(&mut self, res: &Reservation, msg: &[u8], publish: bool) {
        let idx = (res.pos + HDR) & self.d.mask;
        // SAFETY: `res` was just reserved for exactly `msg.len()` bytes (in bounds,
        // exclusive: gated and unpublished until the batch's first stamp is stored).
        unsafe { self.data.copy_in(idx, msg) };
        self.write_record(res, publish);
    }

    /// Die without closing, as a killed process does: only the producer lock goes (the
    /// kernel drops it).
    #[cfg(shmcast_loom)]
    pub(crate) fn die(self) {
        self.region.unlock(LockId::Producer);
    }

    /// Close the stream: consumers drain what was published, then see `Disconnected`.
    pub(crate) fn close(&mut self) {
        let h = self.region.header();
        // Release pairs with the consumers' Acquire state loads (`cursor.rs`
        // `check_ended`): everything published before is visible to a consumer that sees
        // CLOSED. Defensive (redundant: consumers believe CLOSED only once they see the
        // producer lock free, and the unlock's Release orders this store and all before).
        h.control.state.store(PRODUCER_CLOSED, Release);
        // Consumers believe CLOSED only once the producer lock is free (any consumer could
        // write the state word), so release it before waking them.
        self.region.unlock(LockId::Producer);
        eventcount::wake_all(&self.region, &h.data);
    }
}
