//! A consumer attaching and detaching.
//!
//! Attaching takes a free slot (one whose liveness lock nobody holds) and registers a start
//! position. A lossless consumer must never be skipped by the gate: it stores its cursor and
//! state, issues `fence(SeqCst)`, then loads `claim`; the producer stores the claim, issues
//! `fence(SeqCst)`, then scans the slots (`gate.rs`). Either the producer's scan sees the
//! new slot, or the consumer sees a claim that may overrun its start and moves forward. A
//! lossy consumer never gates, so it needs no handshake, only its start position and the
//! sequence number there (read as a seqlock), so it can count exactly what it loses.
//!
//! Every error after the slot was marked frees it again: a failed attach leaves no ghost
//! for the producer to reclaim.

use super::{position, Dims, Probe, ATTACH_ATTEMPTS, HDR, SEQ_UNKNOWN};
use crate::error::{OpenError, SegmentError};
use crate::layout::{
    record_size, slot_generation, slot_state, unpublished_seq, KIND_MESSAGE, KIND_PADDING,
    MAX_POSITION, RECORD_ALIGN, SLOT_EVICTABLE, SLOT_FREE, SLOT_LOSSLESS, SLOT_LOSSY,
};
use crate::region::{Data, LockId, Region};
use crate::ring::{eventcount, ConsumerStats, StartAt};
use crate::sync::atomic::{fence, Ordering::*};
use std::sync::Arc;

/// How a consumer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Lossless, in place: gates the producer and is never evicted while alive, so the
    /// bytes it borrows never change.
    InPlace,
    /// Lossless, copying each message out and validating the copy (`SLOT_EVICTABLE`): the
    /// producer runs with `evict_after` and may evict it while alive.
    Copy,
    /// Lossy: never gates; copies and validates; counts what it loses.
    Lossy,
}

/// The consumer side of a ring: attached here; lossless reading in `cursor.rs`, lossy in
/// `lossy.rs`, sleeping in `eventcount.rs`.
pub(crate) struct RingConsumer {
    pub(super) region: Arc<Region>,
    /// The data ring's view; `region` keeps it valid.
    pub(super) data: Data,
    pub(super) d: Dims,
    pub(super) slot: u32,
    /// Our registration in the slot's state word.
    pub(super) state: u32,
    pub(super) mode: Mode,
    /// Next record position (private).
    pub(super) cursor: u64,
    /// Last cursor stored in the slot (lossless only).
    pub(super) published: u64,
    pub(super) publish_every: u64,
    /// The sequence number expected at `cursor`. Lossy: and the position where that
    /// expectation was last confirmed (a loss can be at most the records that fit between).
    /// Lossless: one more than the last message taken ([`SEQ_UNKNOWN`] before the first); a
    /// record with another number is corruption (`cursor.rs`).
    pub(super) expected_seq: u64,
    pub(super) expected_at: u64,
    /// The last message copied out (`Mode::Copy`).
    pub(super) copy: Vec<u8>,
    pub(super) empty_polls: u32,
    pub(super) probe: Probe,
    pub(crate) stats: ConsumerStats,
}

impl std::fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingConsumer")
            .field("slot", &self.slot)
            .field("mode", &self.mode)
            .field("cursor", &self.cursor)
            .field("stats", &self.stats)
            .finish()
    }
}

impl RingConsumer {
    /// Our stream position (for the fuzz oracles).
    #[cfg(all(not(shmcast_loom), any(feature = "test-hooks", fuzzing)))]
    pub(crate) fn position(&self) -> u64 {
        self.cursor
    }

    /// Attach to `region`: take a free slot and register a start position the producer
    /// cannot have overrun (lossless) or learn the sequence number at the start (lossy).
    pub(crate) fn attach(
        region: Arc<Region>,
        start: StartAt,
        lossy: bool,
    ) -> Result<RingConsumer, OpenError> {
        let max = region.geometry().max_consumers;
        for i in 0..max {
            match region.try_lock(LockId::Slot(i)) {
                Ok(true) => return Self::register(region, i, start, lossy),
                Ok(false) => continue,
                Err(source) => {
                    return Err(OpenError::Io {
                        context: "lock a consumer slot".into(),
                        source,
                    })
                }
            }
        }
        Err(OpenError::NoFreeSlot { max_consumers: max })
    }

    fn register(
        region: Arc<Region>,
        i: u32,
        start: StartAt,
        lossy: bool,
    ) -> Result<RingConsumer, OpenError> {
        let d = Dims::of(&region);
        // Advisory: whichever kind we register as, the producer evicts only evictable slots
        // while they live, so a stale flag cannot make it overwrite borrowed bytes.
        let evicting = region.header().control.evicting.load(Relaxed) != 0;
        let mode = match (lossy, evicting) {
            (true, _) => Mode::Lossy,
            (false, true) => Mode::Copy,
            (false, false) => Mode::InPlace,
        };
        // We hold the slot's lock, so whatever the slot says belongs to a dead owner; its
        // generation goes on (a stale eviction judged on an old registration must not match
        // a new one).
        let previous = region.slot(i).state.load(Relaxed);
        let mut c = RingConsumer {
            d,
            slot: i,
            state: slot_state(slot_generation(previous), SLOT_FREE),
            mode,
            cursor: 0,
            published: 0,
            publish_every: (d.cap / 8).max(8),
            expected_seq: SEQ_UNKNOWN,
            expected_at: 0,
            copy: Vec::new(),
            empty_polls: 0,
            probe: Probe::default(),
            stats: ConsumerStats::default(),
            // SAFETY: kept beside the `Arc` that keeps the region alive.
            data: unsafe { region.data() },
            region,
        };
        let generation = slot_generation(previous);
        // Relaxed: informational (monitoring).
        c.region.slot(i).pid.store(std::process::id(), Relaxed);
        c.region.header().control.hwm.fetch_max(i + 1, Relaxed);
        let result = if lossy {
            c.register_lossy(start, generation)
        } else {
            c.register_lossless(start, generation)
        };
        if let Err(e) = result {
            let slot = c.region.slot(i);
            // Release: as in `detach`. Defensive (redundant: a failed attach read no record
            // the producer could overwrite under it; mutation/expected.tsv).
            slot.state
                .store(slot_state(slot_generation(c.state), SLOT_FREE), Release);
            c.region.unlock(LockId::Slot(i));
            return Err(e);
        }
        Ok(c)
    }

    fn register_lossless(&mut self, start: StartAt, mut generation: u32) -> Result<(), OpenError> {
        let region = Arc::clone(&self.region);
        let slot = region.slot(self.slot);
        let kind = match self.mode {
            Mode::Copy => SLOT_EVICTABLE,
            _ => SLOT_LOSSLESS,
        };
        let (claim, tail) = self.claim_and_tail()?;
        let mut pos = self.start_position(start, claim, tail)?;
        for _ in 0..ATTACH_ATTEMPTS {
            // A new generation per attempt: an eviction judged on an earlier attempt's
            // cursor cannot hit this one.
            generation = generation.wrapping_add(1) & 0x00ff_ffff;
            self.state = slot_state(generation, kind);
            // Relaxed: published by the Release state store below.
            slot.cursor.store(pos, Relaxed);
            // Release pairs with the Acquire state load in `gate.rs` `scan_gate`, so a scan
            // that sees the state sees the cursor. Defensive for the ring (redundant: the
            // claim check after the fence below bounds every producer write by `pos +
            // capacity`, whatever cursor a scan read); it keeps monitors consistent.
            slot.state.store(self.state, Release);
            // Dekker with the producer's fence in `gate.rs` `refresh` (claim store, fence,
            // scan): either its scan sees this slot, or the claim below is its new one.
            fence(SeqCst);
            let (claim, tail) = self.claim_and_tail()?;
            if claim <= pos + self.d.cap {
                self.cursor = pos;
                self.published = pos;
                return Ok(());
            }
            pos = self.start_position(start, claim, tail)?;
        }
        Err(OpenError::AttachRace)
    }

    fn register_lossy(&mut self, start: StartAt, generation: u32) -> Result<(), OpenError> {
        let region = Arc::clone(&self.region);
        self.state = slot_state(generation.wrapping_add(1) & 0x00ff_ffff, SLOT_LOSSY);
        // Release: monitors that see the state see the pid. Defensive for the ring (lossy
        // slots never gate).
        region.slot(self.slot).state.store(self.state, Release);
        for _ in 0..ATTACH_ATTEMPTS {
            let (claim, tail) = self.claim_and_tail()?;
            let c = self.d.skip_short(self.start_position(start, claim, tail)?);
            let idx = c & self.d.mask;
            // The stamp at the start is either the record's position (published: its seq
            // word holds the number) or the unpublished stamp carrying the number. Acquire
            // pairs with the Release stamp store in `writer.rs` `publish_stamps`. Defensive
            // (redundant: the start is at or below the tail loaded with Acquire in
            // `claim_and_tail`, which already orders the record's words, and the seqlock
            // below validates the rest).
            let stamp = self.data.word(idx).load(Acquire);
            let seq = if stamp == c {
                // Relaxed: validated below.
                Some(self.data.word(idx + 8).load(Relaxed))
            } else {
                unpublished_seq(stamp)
            };
            // Seqlock validation: pairs with the fence after the claim store in `gate.rs`
            // `refresh`. Had the producer overwritten what we read, we see its claim.
            fence(Acquire);
            let intact = region.header().producer.claim.load(Relaxed) <= c + self.d.cap;
            if intact && seq.is_none() {
                // Neither a record nor the unpublished stamp every commit leaves: corrupt,
                // not a race to retry.
                return Err(SegmentError::BadStamp {
                    position: c,
                    found: stamp,
                }
                .into());
            }
            if let Some(seq) = seq {
                if intact {
                    self.cursor = c;
                    self.published = c;
                    self.expected_seq = seq;
                    self.expected_at = c;
                    // For monitors only (Relaxed: informational; lossy slots never gate).
                    region.slot(self.slot).cursor.store(c, Relaxed);
                    return Ok(());
                }
            }
        }
        Err(OpenError::AttachRace)
    }

    /// The claim and the published tail, loaded in this order: a claim beyond `tail +
    /// capacity` is impossible (the gate never passes the published tail, see `gate.rs`),
    /// so it is corruption, reported instead of chased.
    pub(super) fn claim_and_tail(&self) -> Result<(u64, u64), SegmentError> {
        let h = self.region.header();
        // Acquire pairs with the Release claim store (`gate.rs` `refresh`, `takeover.rs`):
        // the tail loaded next is at least the one this claim was derived from.
        let claim = h.producer.claim.load(Acquire);
        // Acquire pairs with the Release tail store (`writer.rs` `store_tail`,
        // `takeover.rs`).
        let tail = position("tail", h.producer.tail.load(Acquire))?;
        // Records are 8-aligned: a tail that is not cannot be a position a producer stored.
        if tail % RECORD_ALIGN as u64 != 0 {
            return Err(SegmentError::BadPosition {
                field: "tail",
                found: tail,
            });
        }
        if claim > tail + self.d.cap {
            return Err(SegmentError::BadPosition {
                field: "claim",
                found: claim,
            });
        }
        Ok((claim, tail))
    }

    fn start_position(&self, start: StartAt, claim: u64, tail: u64) -> Result<u64, OpenError> {
        Ok(match start {
            StartAt::Next => tail,
            StartAt::Oldest => self.oldest_start(claim, tail),
        })
    }

    /// The first published record at or above `claim - capacity`, walking from the
    /// producer's head; the tail if the walk meets anything unexpected. The result is
    /// always a record boundary the stamp confirms, or the tail.
    pub(super) fn oldest_start(&self, claim: u64, tail: u64) -> u64 {
        let h = self.region.header();
        let floor = claim.min(MAX_POSITION).saturating_sub(self.d.cap);
        // Acquire pairs with the Release head store in `gate.rs` `refresh`. Defensive
        // (redundant: head is advisory; every stamp walked from it is validated).
        let mut q = h
            .producer
            .head
            .load(Acquire)
            .clamp(tail.saturating_sub(self.d.cap), tail);
        for _ in 0..self.d.cap / HDR + 1 {
            q = self.d.skip_short(q);
            if q >= tail {
                return tail;
            }
            let idx = q & self.d.mask;
            // Acquire pairs with the Release stamp store in `writer.rs` `publish_stamps`.
            // Defensive (redundant: `q` is below the tail loaded with Acquire in
            // `claim_and_tail`, which already orders every record below it).
            if self.data.word(idx).load(Acquire) != q {
                return tail;
            }
            if q >= floor {
                return q;
            }
            // Relaxed: ordered by the stamp load.
            let m = self.data.word(idx + 16).load(Relaxed);
            let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
            let room = self.d.cap - idx;
            q = match kind {
                KIND_PADDING => q + room,
                KIND_MESSAGE if len <= self.d.max_message && record_size(len) <= room => {
                    q + record_size(len)
                }
                _ => return tail,
            };
        }
        tail
    }

    /// How this consumer reads.
    #[cfg(shmcast_loom)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Lossy: the sequence number expected next.
    #[cfg(shmcast_loom)]
    pub(crate) fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    /// Detach: free the slot, wake a producer that waits for us, release our lock.
    pub(crate) fn detach(&mut self) {
        let slot = self.region.slot(self.slot);
        if slot.state.load(Relaxed) == self.state {
            // Release pairs with the Acquire state load in `gate.rs` `scan_gate`: our reads
            // happen-before the producer ignores (and overwrites) us. Load-bearing, but no
            // test here can show it: the hazard is load buffering (our earlier reads seeing
            // the producer's later writes), which loom does not explore and x86 never does.
            slot.state
                .store(slot_state(slot_generation(self.state), SLOT_FREE), Release);
        }
        if self.mode != Mode::Lossy {
            // Wake a producer that sleeps for space we held (pairs with its fence in
            // `eventcount.rs` `sleep_for_space`).
            eventcount::notify(&self.region, &self.region.header().space);
        }
        self.region.unlock(LockId::Slot(self.slot));
    }

    /// Die without detaching, as a killed process does: only the liveness lock goes (the
    /// kernel drops it). The slot keeps saying it is attached.
    #[cfg(shmcast_loom)]
    pub(crate) fn die(self) {
        self.region.unlock(LockId::Slot(self.slot));
    }
}
