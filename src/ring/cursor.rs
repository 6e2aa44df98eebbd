//! Lossless reading: polling the stamp at the cursor, validating record headers, releasing
//! records (the cursor is the gate), and telling an empty ring from an ended stream.
//!
//! A consumer at cursor `c` loads the stamp at `c` with `Acquire` (pairs with the
//! producer's `Release` stamp store): `stamp == c` makes the record visible. Records are
//! released by storing the cursor with `Release` (pairs with the producer's `Acquire`
//! cursor loads before it overwrites), lazily: every eighth of the ring, or when the
//! consumer runs dry, so a consumer that keeps up writes its slot line rarely.
//!
//! A consumer reads in place (`Mode::InPlace`: the producer never evicts it while it lives,
//! so borrowed bytes never change) or, when the producer runs with `evict_after`, copies
//! each message out and validates the copy against the claim as a lossy reader does
//! (`Mode::Copy`: an eviction shows as `Evicted`, never as changed bytes).
//!
//! The end of the stream: CLOSED stored by the producer (believed only with the producer's
//! lock free: any consumer could write the word), the producer's lock free (it died), or our
//! slot evicted. Everything published before the end is still delivered. A cursor the
//! published tail has passed with no record at it is corruption, reported as such.

use super::attach::{Mode, RingConsumer};
use super::{HDR, SEQ_UNKNOWN};
use crate::error::{Corruption, RecvTimeoutError, TryRecvError};
use crate::layout::{record_size, KIND_MESSAGE, KIND_PADDING, MAX_POSITION, PRODUCER_CLOSED};
use crate::region::{LockId, Wake};
use crate::sync::atomic::{fence, Ordering::*};
use crate::wait::{Step, WaitPolicy, CHECK_EVERY, PROBE_INTERVAL};
use std::time::Instant;

/// A record a consumer holds, at its cursor: what its header said. Small (three words, so
/// the hot path passes it in registers); where its payload is and where the next record
/// starts follow from the cursor. Neither `Clone` nor `Copy`: made by `poll`, consumed by
/// `release`.
#[derive(Debug)]
pub(crate) struct Record {
    /// Stream position of the record (always the consumer's cursor).
    pos: u64,
    /// Payload length.
    pub(crate) len: usize,
    /// Message sequence number.
    pub(crate) seq: u64,
}

/// Why a consumer found nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Closed,
    Died,
    Evicted,
}

impl From<Ended> for RecvTimeoutError {
    fn from(e: Ended) -> Self {
        match e {
            Ended::Closed => RecvTimeoutError::Disconnected,
            Ended::Died => RecvTimeoutError::ProducerDied,
            Ended::Evicted => RecvTimeoutError::Evicted,
        }
    }
}

/// A validated record header.
#[derive(Clone, Copy, Debug)]
pub(super) enum Parsed {
    Message { len: u64, end: u64 },
    Padding { end: u64 },
}

impl RingConsumer {
    /// Validate the header words of a published record at `c` (index `idx`).
    #[inline(always)]
    pub(super) fn parse(&self, c: u64, idx: u64) -> Result<Parsed, Corruption> {
        let room = self.d.cap - idx;
        // Relaxed: ordered after the caller's Acquire stamp load.
        let m = self.data.word(idx + 16).load(Relaxed);
        let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
        let corrupt = |reason, value| Corruption {
            position: c,
            reason,
            value,
        };
        match kind {
            KIND_MESSAGE => {
                if len > self.d.max_message {
                    return Err(corrupt("length exceeds the maximum message size", len));
                }
                let rec = record_size(len);
                if rec > room {
                    return Err(corrupt("record crosses the end of the ring", len));
                }
                Ok(Parsed::Message {
                    len,
                    end: self.d.skip_short(c + rec),
                })
            }
            // A producer pads only when the largest record would not fit.
            KIND_PADDING if room < self.d.max_record => Ok(Parsed::Padding { end: c + room }),
            _ => Err(corrupt("invalid record kind", u64::from(kind))),
        }
    }

    /// The common case of `poll`, inlined into the handles: an in-place consumer whose next
    /// record is a published message. Anything else (nothing published, a padding record or
    /// a skip to the next lap, a copying consumer, a header that fails validation) says
    /// `None`, and the caller takes the full path, [`Self::poll`], which decides.
    #[inline(always)]
    pub(crate) fn poll_fast(&mut self) -> Option<Record> {
        self.spin_fast(0).ok()
    }

    /// [`Self::poll_fast`], spinning while nothing is published at the cursor, at most
    /// `spins` times: the first phase of a blocking wait of a consumer that asked for a
    /// tight spin (`ConsumerBuilder::tight_spin`; 0 spins otherwise), inlined into the
    /// handles, so that a record published while we spin is taken by the same few
    /// instructions that saw its stamp. `Err(n)` after `n` spins, or at once for anything
    /// the fast path does not take (the caller's full wait decides, counting those spins).
    #[inline(always)]
    pub(crate) fn spin_fast(&mut self, spins: u32) -> Result<Record, u32> {
        if self.mode != Mode::InPlace {
            return Err(0);
        }
        let c = self.cursor;
        let idx = c & self.d.mask;
        let room = self.d.cap - idx;
        if room < HDR {
            return Err(0);
        }
        // SAFETY: 8-aligned (positions are), and `room >= HDR`: the header fits.
        let h = unsafe { self.data.header(idx) };
        let mut n = 0;
        // Acquire pairs with the producer's Release stamp store in `writer.rs`
        // `publish_stamps`: the header words and the payload are visible.
        while h.stamp.load(Acquire) != c {
            if n == spins {
                return Err(n);
            }
            crate::sync::spin_loop();
            n += 1;
        }
        // Relaxed (meta, seq): ordered by the stamp load.
        let m = h.meta.load(Relaxed);
        let seq = h.seq.load(Relaxed);
        let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
        // The sequence number must be the one after the last message we took (`poll`
        // takes the first one, and reports a gap).
        if kind != KIND_MESSAGE
            || len > self.d.max_message
            || record_size(len) > room
            || seq != self.expected_seq
        {
            return Err(n);
        }
        Ok(Record {
            pos: c,
            len: len as usize,
            seq,
        })
    }

    /// [`Self::spin_fast`], with the record's payload: the handles keep the pointer in the
    /// message, found here where nothing is left to check (an in-place consumer, the record
    /// at its cursor) rather than at every access. The bytes stay valid while the record is
    /// held, as [`Self::payload`] says.
    #[cfg(not(shmcast_loom))]
    #[inline(always)]
    pub(crate) fn spin_fast_in_place(&mut self, spins: u32) -> Result<(Record, *const [u8]), u32> {
        let rec = self.spin_fast(spins)?;
        // SAFETY: as in `payload`: `spin_fast` made `rec` at our cursor for an in-place
        // consumer and validated that its `len` bytes lie inside the ring.
        let bytes = unsafe { self.data.payload((rec.pos + HDR) & self.d.mask, rec.len) };
        Ok((rec, bytes))
    }

    /// [`Self::poll_fast`], with the record's payload (see [`Self::spin_fast_in_place`]).
    #[cfg(not(shmcast_loom))]
    #[inline(always)]
    pub(crate) fn poll_fast_in_place(&mut self) -> Option<(Record, *const [u8])> {
        self.spin_fast_in_place(0).ok()
    }

    /// The next record, if it is published (lossless consumers): every case, with errors.
    ///
    /// An in-place consumer does not check its slot here: a live one is never evicted (the
    /// producer evicts live slots only if they registered as evictable), so the check
    /// belongs to the slow path (`check_ended`, and `not_published` when a later lap's
    /// stamp shows the producer passed us). A copying consumer checks, so that it learns of
    /// an eviction at its next call even while its next record is still intact.
    pub(crate) fn poll(&mut self) -> Result<Option<Record>, RecvTimeoutError> {
        debug_assert!(self.mode != Mode::Lossy);
        // Relaxed: our own slot; the producer's CAS is the only other writer.
        if self.mode == Mode::Copy && self.region.slot(self.slot).state.load(Relaxed) != self.state
        {
            return Err(RecvTimeoutError::Evicted);
        }
        // At most two rounds: a skip or a padding record moves the cursor to the start of
        // the next lap, where neither can occur again.
        for _ in 0..2 {
            let c = self.cursor;
            let idx = c & self.d.mask;
            let room = self.d.cap - idx;
            if room < HDR {
                self.cursor = c + room;
                continue;
            }
            // Acquire pairs with the producer's Release stamp store in `writer.rs`
            // `publish_stamps`.
            let stamp = self.data.word(idx).load(Acquire);
            if stamp != c {
                return self.not_published(c, stamp);
            }
            match self.parse(c, idx).map_err(RecvTimeoutError::Corrupt)? {
                Parsed::Message { len, .. } => {
                    // Relaxed: ordered by the stamp load.
                    let seq = self.data.word(idx + 8).load(Relaxed);
                    if seq != self.expected_seq && self.expected_seq != SEQ_UNKNOWN {
                        return Err(RecvTimeoutError::Corrupt(self.out_of_sequence(c, seq)));
                    }
                    let rec = Record {
                        pos: c,
                        len: len as usize,
                        seq,
                    };
                    if self.mode == Mode::Copy {
                        self.copy_validated(&rec)?;
                    }
                    return Ok(Some(rec));
                }
                Parsed::Padding { end } => self.cursor = end,
            }
        }
        Ok(None)
    }

    /// The message at `c` carries `seq`, not the number after the last one we took. A
    /// producer numbers its messages without gaps, and a takeover goes on from the last
    /// number committed (`takeover.rs`), so some other process wrote the ring: a message
    /// turned into padding, a forged header or stamp. Reported rather than delivered: the
    /// messages in between would be lost without a word.
    #[cold]
    fn out_of_sequence(&self, c: u64, seq: u64) -> Corruption {
        Corruption {
            position: c,
            reason: if seq < self.expected_seq {
                "sequence number went backwards: a record was forged"
            } else {
                "sequence number skips messages: a record was lost or forged"
            },
            value: seq,
        }
    }

    /// Data-ring index of the payload of the record at the cursor.
    #[inline(always)]
    fn payload_idx(&self) -> u64 {
        (self.cursor + HDR) & self.d.mask
    }

    /// `Mode::Copy`: copy `rec` out and check that the producer did not overwrite it
    /// meanwhile, which it can only do after evicting us.
    fn copy_validated(&mut self, rec: &Record) -> Result<(), RecvTimeoutError> {
        self.copy.resize(rec.len, 0);
        let idx = self.payload_idx();
        self.data.copy_out_atomic(idx, &mut self.copy);
        // Seqlock validation: pairs with the fence after the claim store in `gate.rs`
        // `refresh` (had any byte we copied been overwritten, we see the claim that
        // allowed it). Acquire on the claim load: then its eviction, which came first,
        // is visible too.
        fence(Acquire);
        if self.region.header().producer.claim.load(Acquire) > rec.pos + self.d.cap {
            // Relaxed: ordered by the Acquire claim load.
            return Err(
                if self.region.slot(self.slot).state.load(Relaxed) != self.state {
                    RecvTimeoutError::Evicted
                } else {
                    RecvTimeoutError::Corrupt(Corruption {
                        position: rec.pos,
                        reason: "the producer overwrote a record this consumer had not released",
                        value: rec.seq,
                    })
                },
            );
        }
        Ok(())
    }

    /// The stamp at our cursor `c` is not `c`. Normally the record is just not published
    /// yet; a later lap's position means the producer overran a record we never released,
    /// which only eviction (or a peer corrupting the slot table) can cause: say so rather
    /// than wait for ever.
    #[cold]
    fn not_published(&self, c: u64, stamp: u64) -> Result<Option<Record>, RecvTimeoutError> {
        if stamp > c && stamp <= MAX_POSITION && (stamp - c) % self.d.cap == 0 {
            // Relaxed: our own slot (see `poll`).
            if self.region.slot(self.slot).state.load(Relaxed) != self.state {
                return Err(RecvTimeoutError::Evicted);
            }
            return Err(RecvTimeoutError::Corrupt(Corruption {
                position: c,
                reason: "the producer overwrote a record this consumer had not released",
                value: stamp,
            }));
        }
        Ok(None)
    }

    /// The payload of `rec`, the record this consumer holds (made by its last `poll`).
    ///
    /// # Panics
    /// If `rec` is not the record at this consumer's cursor (an internal invariant).
    #[cfg(not(shmcast_loom))]
    #[inline]
    pub(crate) fn payload(&self, rec: &Record) -> &[u8] {
        assert_eq!(rec.pos, self.cursor, "not the record this consumer holds");
        if self.mode == Mode::Copy {
            return &self.copy[..rec.len];
        }
        // SAFETY: `poll` validated that `len` bytes at `idx` lie inside the ring. The record
        // is at our cursor, at or above the cursor we published, so the producer (in any
        // process), gated by it, does not write it until we release it, which needs `&mut
        // self`: a live `InPlace` consumer is never evicted (the producer evicts live slots
        // only if they registered as evictable, or if a peer corrupted the slot table,
        // outside the protocol).
        unsafe { self.data.payload(self.payload_idx(), rec.len) }
    }

    /// Copy the payload of `rec` (the record this consumer holds) into `dst`.
    pub(crate) fn copy_payload(&self, rec: &Record, dst: &mut [u8]) {
        assert_eq!(rec.pos, self.cursor, "not the record this consumer holds");
        assert_eq!(dst.len(), rec.len);
        if self.mode == Mode::Copy {
            dst.copy_from_slice(&self.copy[..rec.len]);
            return;
        }
        // SAFETY: as in `payload`: in bounds, and not written until we release it.
        unsafe { self.data.copy_out(self.payload_idx(), dst) }
    }

    /// Release `rec` (the record just read): the producer may overwrite it once the cursor
    /// is published (every eighth of the ring, or when we run dry).
    #[inline(always)]
    pub(crate) fn release(&mut self, rec: Record) {
        self.release_quiet(rec);
        if self.cursor - self.published >= self.publish_every {
            self.publish();
        }
    }

    /// Release without publishing (a batch publishes once, at its end).
    #[inline(always)]
    fn release_quiet(&mut self, rec: Record) {
        debug_assert_eq!(rec.pos, self.cursor);
        // `poll` validated that the record fits before the ring's end.
        self.cursor = self.d.skip_short(rec.pos + record_size(rec.len as u64));
        self.expected_seq = rec.seq.wrapping_add(1);
        self.stats.messages += 1;
    }

    /// Make our cursor visible to the producer, and wake it if it sleeps for space.
    pub(crate) fn publish(&mut self) {
        if self.mode == Mode::Lossy || self.published == self.cursor {
            return;
        }
        // Release pairs with the producer's Acquire cursor load in `gate.rs` `scan_gate`:
        // our reads of every record below the cursor happen-before it overwrites them.
        self.region
            .slot(self.slot)
            .cursor
            .store(self.cursor, Release);
        self.published = self.cursor;
        if super::eventcount::notify(&self.region, &self.region.header().space) {
            self.stats.wake_syscalls += 1;
        }
    }

    /// Called when polling found nothing: publish our progress, then tell whether the
    /// stream ended (closed, producer dead, or we were evicted), or is stuck on corruption.
    /// `force_probe` probes the producer's liveness lock now instead of at the rate limit.
    pub(super) fn check_ended(
        &mut self,
        force_probe: bool,
    ) -> Result<Option<Ended>, RecvTimeoutError> {
        self.publish();
        // Relaxed: our own slot (see `poll`).
        if self.region.slot(self.slot).state.load(Relaxed) != self.state {
            return Ok(Some(Ended::Evicted));
        }
        let probing = self.probe_due(force_probe);
        if probing {
            self.check_stuck()?;
        }
        let control = &self.region.header().control;
        // Acquire pairs with the producer's Release state stores (`takeover.rs`, `writer.rs`
        // `close`). CLOSED counts only once the producer lock is free: a consumer could have
        // written it (and a closing producer frees the lock before waking anyone). Defensive
        // (redundant: the lock probe's Acquire, which pairs with the producer's unlock,
        // orders everything the producer did before it closed).
        if control.state.load(Acquire) == PRODUCER_CLOSED
            && !self.region.held_by_other(LockId::Producer)
        {
            return self.check_final(Ended::Closed);
        }
        if probing && !self.region.held_by_other(LockId::Producer) {
            // Closed between our load and the probe? (Acquire: as above; defensive.)
            if control.state.load(Acquire) == PRODUCER_CLOSED {
                return self.check_final(Ended::Closed);
            }
            return self.check_final(Ended::Died);
        }
        Ok(None)
    }

    /// The producer is gone (`why`): its tail is final. Before saying so, make sure the end
    /// is not hiding a record (`check_stuck`), and, for a lossless consumer, that the tail is
    /// one a producer gated by our published cursor can have stored: with nobody left to
    /// overwrite it, an impossible tail is corruption, not a scribble the next commit mends.
    fn check_final(&self, why: Ended) -> Result<Option<Ended>, RecvTimeoutError> {
        // Relaxed: after the Acquire load of the producer's state (or the liveness probe,
        // which follows its death), any eviction the producer made is visible.
        if self.region.slot(self.slot).state.load(Relaxed) != self.state {
            return Ok(Some(Ended::Evicted));
        }
        self.check_stuck()?;
        if self.mode != Mode::Lossy {
            // Relaxed: only the value is compared, and it is the final one: the producer's
            // last tail store came before its close (or death), which we saw (the Acquire
            // state load above, or the liveness probe).
            let tail = self.region.header().producer.tail.load(Relaxed);
            if tail > self.published.saturating_add(self.d.cap) {
                return Err(RecvTimeoutError::Corrupt(Corruption {
                    position: self.d.skip_short(self.cursor),
                    reason: "the stream ended with a tail more than a ring past this \
                             consumer's published cursor, which no producer it gates can write",
                    value: tail,
                }));
            }
        }
        Ok(Some(why))
    }

    /// Corruption that would otherwise stall us silently: the producer's published tail is
    /// past our cursor, so a record must be there, but its stamp is not published (a stamp
    /// from an earlier lap, zero, an unpublished-looking stamp, garbage). A tail no producer
    /// can have stored (more than a ring ahead of what we released: it would have
    /// overwritten it) says nothing about our record: a peer scribbled the header, and the
    /// producer's next commit overwrites it.
    pub(super) fn check_stuck(&self) -> Result<(), RecvTimeoutError> {
        if self.mode == Mode::Lossy {
            self.check_within_claim()?;
        }
        let c = self.d.skip_short(self.cursor);
        // Acquire pairs with the Release tail store in `writer.rs` `store_tail`: every stamp
        // below this tail is visible.
        let tail = self.region.header().producer.tail.load(Acquire);
        let released = match self.mode {
            Mode::Lossy => c,
            _ => self.published,
        };
        if tail <= c || tail > released.saturating_add(self.d.cap) {
            return Ok(());
        }
        // Relaxed: ordered by the Acquire tail load.
        let stamp = self.data.word(c & self.d.mask).load(Relaxed);
        if stamp == c {
            return Ok(());
        }
        if self.mode == Mode::Lossy {
            // Overwritten since (we were lapped): the lossy poll recovers. Seqlock: pairs
            // with the fence after the claim store in `gate.rs` `refresh`.
            fence(Acquire);
            if self.lapped(c) {
                return Ok(());
            }
        }
        Err(RecvTimeoutError::Corrupt(Corruption {
            position: c,
            reason: "the producer's published tail is past this position, but no record is \
                     published here",
            value: stamp,
        }))
    }

    /// Corruption that would otherwise stall a lossy consumer silently: its cursor is past
    /// the producer's claim. No producer can have published a record there (the claim
    /// bounds every write), so forged positions moved it (a forged claim and tail it
    /// recovered to, forged padding); the messages sent meanwhile land behind it, and it
    /// would notice only when the producer passed it, up to a lap of traffic later. (A
    /// lossless cursor like that is the producer's to evict at its gate scan.)
    ///
    /// An honest cursor never is: it passes only records whose stamps it loaded with
    /// `Acquire`, each written after the claim store that covered it, or it recovers to a
    /// tail loaded with `Acquire`, stored after the claim that covered it; the claim never
    /// goes down (a takeover keeps it, clamped to the recovered tail and above).
    fn check_within_claim(&self) -> Result<(), RecvTimeoutError> {
        // Relaxed: ordered by the Acquire stamp or tail loads that moved our cursor (they
        // pair with Release stores the producer made after the claim store covering the
        // cursor, so that claim store happens-before this load, which by coherence reads it
        // or a later one).
        let claim = self.region.header().producer.claim.load(Relaxed);
        if self.cursor > claim {
            return Err(RecvTimeoutError::Corrupt(Corruption {
                position: self.cursor,
                reason: "this lossy consumer's position is past the producer's claim, which \
                         bounds every record it can have written: forged positions moved it",
                value: claim,
            }));
        }
        Ok(())
    }

    /// Every `PROBE_EVERY` empty polls, at most every `PROBE_INTERVAL` (a system call and
    /// a load of the producer's hot line each time); always when forced (a sleep timed
    /// out). In the model, every third empty poll: liveness stays visible to it without
    /// multiplying its interleavings.
    fn probe_due(&mut self, force: bool) -> bool {
        const PROBE_EVERY: u32 = if cfg!(shmcast_loom) { 3 } else { 256 };
        self.empty_polls = self.empty_polls.wrapping_add(1);
        if !force && self.empty_polls % PROBE_EVERY != 0 {
            return false;
        }
        self.probe.due(PROBE_INTERVAL, force)
    }

    /// Is a record published at the cursor, or have we been lapped? (A cheap re-check for
    /// sleepers.)
    pub(super) fn ready(&self) -> bool {
        let c = self.d.skip_short(self.cursor);
        // Relaxed: only a hint; the poll that follows loads with Acquire.
        self.data.word(c & self.d.mask).load(Relaxed) == c
            || (self.mode == Mode::Lossy && self.lapped(c))
    }

    /// Poll with `poll` until it yields, waiting according to `policy` until `deadline`.
    /// When the stream has ended, everything published before the end is still delivered
    /// (one more poll after the end is seen).
    ///
    /// `spun`: how many spins of the policy the caller made already (`spin_fast`).
    pub(super) fn wait_for<T>(
        &mut self,
        policy: WaitPolicy,
        deadline: Option<Instant>,
        spun: u32,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, RecvTimeoutError>,
    ) -> Result<T, RecvTimeoutError> {
        let mut n = spun;
        let mut force_probe = false;
        let mut remaining = None;
        loop {
            if let Some(r) = poll(self)? {
                return Ok(r);
            }
            let step = policy.step(n);
            // While spinning, the spin loop stays short (the poll alone): the end of the
            // stream, the deadline and our cursor publication are looked at on the first
            // empty poll and then every `CHECK_EVERY` spins; before every yield or sleep.
            if step != Step::Spin || n % CHECK_EVERY == 0 {
                if let Some(ended) = self.check_ended(force_probe)? {
                    if ended != Ended::Evicted {
                        if let Some(r) = poll(self)? {
                            return Ok(r);
                        }
                    }
                    return Err(ended.into());
                }
                force_probe = false;
                remaining = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(r) if !r.is_zero() => Some(r),
                        _ => return Err(RecvTimeoutError::Timeout),
                    },
                    None => None,
                };
            }
            match step {
                Step::Spin => crate::sync::spin_loop(),
                Step::Yield => crate::sync::yield_now(),
                Step::Sleep => {
                    // A sleep may last until the data word changes (seconds, with the
                    // producer's death notice): a stream stuck on a corrupt record, which
                    // no publication will mend, is reported before, not at a probe.
                    self.check_stuck()?;
                    force_probe = self.sleep(remaining) == Wake::TimedOut;
                }
            }
            n = n.saturating_add(1);
        }
    }

    /// One non-blocking poll with end-of-stream detection: after the end is seen, one more
    /// poll delivers anything published before it.
    pub(super) fn try_poll<T>(
        &mut self,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, RecvTimeoutError>,
    ) -> Result<Option<T>, TryRecvError> {
        if let Some(v) = poll(self)? {
            return Ok(Some(v));
        }
        let Some(ended) = self.check_ended(false)? else {
            return Ok(None);
        };
        if ended != Ended::Evicted {
            if let Some(v) = poll(self)? {
                return Ok(Some(v));
            }
        }
        Err(RecvTimeoutError::from(ended).into())
    }

    /// How far behind the producer's tail this consumer is: bytes, and messages if the
    /// record at our position is still there (always, for a lossless consumer).
    #[cfg(not(shmcast_loom))]
    pub(crate) fn lag(&self) -> (u64, Option<u64>) {
        let h = self.region.header();
        // Acquire pairs with the Release tail / next_seq stores (`writer.rs` `store_tail`):
        // the records below this tail are published. Defensive: a monitor's read.
        let tail = h.producer.tail.load(Acquire);
        let next_seq = h.producer.next_seq.load(Relaxed);
        crate::inspect::lag(&self.region, self.cursor, tail, next_seq)
    }

    /// The next record if one is published now (lossless consumers).
    #[inline(always)]
    pub(crate) fn try_recv(&mut self) -> Result<Option<Record>, TryRecvError> {
        match self.poll_fast() {
            Some(rec) => Ok(Some(rec)),
            None => self.try_recv_slow(),
        }
    }

    /// `try_recv` beyond the common case: the full poll, then end-of-stream detection and
    /// one more poll.
    #[cold]
    #[inline(never)]
    pub(crate) fn try_recv_slow(&mut self) -> Result<Option<Record>, TryRecvError> {
        self.try_poll(Self::poll)
    }

    /// Wait for the next record (lossless consumers), spinning first on the stamp alone at
    /// most `spins` times (`spin_fast`; 0 unless the consumer asked for a tight spin).
    #[inline(always)]
    pub(crate) fn recv(
        &mut self,
        policy: WaitPolicy,
        spins: u32,
        deadline: Option<Instant>,
    ) -> Result<Record, RecvTimeoutError> {
        match self.spin_fast(spins) {
            Ok(rec) => Ok(rec),
            Err(spun) => self.recv_slow(policy, deadline, spun),
        }
    }

    /// `recv` beyond its fast loop (`spin_fast`, which spun `spun` times).
    #[cold]
    #[inline(never)]
    pub(crate) fn recv_slow(
        &mut self,
        policy: WaitPolicy,
        deadline: Option<Instant>,
        spun: u32,
    ) -> Result<Record, RecvTimeoutError> {
        self.wait_for(policy, deadline, spun, Self::poll)
    }

    /// Hand every record available now, from `first` on and up to `max` in all, to
    /// `f(seq, bytes)`, then release them with one cursor store. Returns how many. An error
    /// met after the first record ends the batch; the next call reports it.
    ///
    /// Always inlined: out of line (as the compiler chose once the sequence check grew
    /// `release_quiet`) a consumer receiving one message per call streamed half as fast
    /// (pingpong, 8 B: 9.8 M msgs/s against 20.3 M inlined, alternated runs).
    #[inline(always)]
    pub(crate) fn drain(
        &mut self,
        first: Record,
        max: usize,
        f: &mut impl FnMut(u64, &[u8]),
    ) -> usize {
        let mut rec = first;
        let mut n = 0;
        loop {
            self.visit(&rec, f);
            self.release_quiet(rec);
            n += 1;
            // The common case: published messages at the cursor of an in-place consumer,
            // each handed out from the payload `poll_fast_in_place` found (no re-check of
            // the record against the cursor and the mode, as `visit` makes).
            #[cfg(not(shmcast_loom))]
            while n < max {
                let Some((next, bytes)) = self.poll_fast_in_place() else {
                    break;
                };
                // SAFETY: as in `payload`: `next` is the record at our cursor, validated
                // to lie inside the ring, and not written by the producer until we release
                // it below, after `f` (which cannot keep the borrow) has returned.
                f(next.seq, unsafe { &*bytes });
                self.release_quiet(next);
                n += 1;
            }
            if n == max {
                break;
            }
            match self.poll_fast() {
                Some(next) => rec = next,
                None => match self.poll() {
                    Ok(Some(next)) => rec = next,
                    _ => break,
                },
            }
        }
        self.publish();
        n
    }

    #[cfg(not(shmcast_loom))]
    fn visit(&self, rec: &Record, f: &mut impl FnMut(u64, &[u8])) {
        f(rec.seq, self.payload(rec));
    }

    /// Under loom the payload cells cannot be borrowed as a slice: copy (loom checks the
    /// copy against the producer's writes).
    #[cfg(shmcast_loom)]
    fn visit(&self, rec: &Record, f: &mut impl FnMut(u64, &[u8])) {
        let mut bytes = vec![0; rec.len];
        self.copy_payload(rec, &mut bytes);
        f(rec.seq, &bytes);
    }
}
