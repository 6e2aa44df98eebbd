//! A producer attaching: to a fresh segment (creation) or to one whose producer died or
//! left (takeover). It takes the producer lock, recovers where the committed stream ends
//! and which sequence number comes next, and marks the stream live.
//!
//! Nothing in the header is trusted: a peer may have written any of it while no producer
//! was alive. The committed end is the stored tail, moved forward over records published
//! after it (a producer may die between publishing and storing its tail). The next
//! sequence number is cross-checked with the records: every commit leaves the next
//! number in the unpublished stamp at the tail, and the records from `head` to the tail
//! carry consecutive numbers. A number is taken when two of these three witnesses (the
//! header, the stamp at the tail, the records) agree, or when the one against it cannot be
//! true; a header that the other two contradict is overruled, and a contradiction that
//! cannot be resolved (one against one) is an error, never a silent jump. The claim is
//! clamped into `[tail, tail + capacity]`, the only values a producer can leave.

use super::writer::RingProducer;
use super::{position, Dims, HDR};
use crate::error::{OpenError, SegmentError};
use crate::layout::{
    record_size, unpublished, unpublished_seq, KIND_MESSAGE, KIND_PADDING, MAX_POSITION,
    PRODUCER_LIVE, RECORD_ALIGN,
};
use crate::region::{LockId, Region};
use crate::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Duration;

/// At most this many records are walked to cross-check a sequence number.
const WALK_LIMIT: u64 = 1 << 20;

/// A published, well-formed record at `pos`: (len, kind, seq).
fn record_at(region: &Region, d: &Dims, pos: u64) -> Option<(u64, u32, u64)> {
    let idx = pos & d.mask;
    if d.cap - idx < HDR {
        return None;
    }
    // Acquire pairs with the Release stamp store in `writer.rs` `publish_stamps` (of a
    // previous producer): its header words are visible. Defensive (redundant: the producer
    // lock this takeover holds was taken after the previous producer's unlock).
    if region.word(idx).load(Acquire) != pos {
        return None;
    }
    // Relaxed: ordered by the stamp load above.
    let m = region.word(idx + 16).load(Relaxed);
    let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
    let ok = match kind {
        KIND_MESSAGE => len <= d.max_message && record_size(len) <= d.cap - idx,
        KIND_PADDING => d.cap - idx < d.max_record,
        _ => false,
    };
    // Relaxed: as above.
    ok.then(|| (len, kind, region.word(idx + 8).load(Relaxed)))
}

/// The position after the record at `pos` of kind `kind` and length `len`.
fn after(d: &Dims, pos: u64, len: u64, kind: u32) -> u64 {
    if kind == KIND_PADDING {
        pos + (d.cap - (pos & d.mask))
    } else {
        d.skip_short(pos + record_size(len))
    }
}

/// The sequence number the records say comes at `tail`: walk from `head` to `tail` over
/// records with consecutive numbers. `None` if the walk does not land exactly on `tail`.
fn walked_seq(region: &Region, d: &Dims, head: u64, tail: u64) -> Option<u64> {
    let mut q = d.skip_short(head.clamp(tail.saturating_sub(d.cap), tail));
    let mut last: Option<u64> = None;
    for _ in 0..(d.cap / HDR).min(WALK_LIMIT) {
        if q >= tail {
            return if q == tail {
                last.map(|s| s.wrapping_add(1))
            } else {
                None
            };
        }
        let (len, kind, seq) = record_at(region, d, q)?;
        if kind == KIND_MESSAGE {
            if last.is_some_and(|l| seq != l.wrapping_add(1)) {
                return None;
            }
            last = Some(seq);
        }
        q = after(d, q, len, kind);
    }
    None
}

/// What the stream looks like: the committed end, the next sequence number, the claim.
fn recover(region: &Region, d: &Dims) -> Result<(u64, u64, u64), SegmentError> {
    let h = region.header();
    let bad = |field, found| SegmentError::BadPosition { field, found };
    // Acquire pairs with a previous producer's Release stores of tail / next_seq
    // (`writer.rs` `store_tail`) and claim (`gate.rs` `refresh`). Defensive, with the lock
    // (each alone orders the previous producer's stores; see mutation/expected.tsv).
    let stored = position("tail", h.producer.tail.load(Acquire))?;
    if stored % RECORD_ALIGN as u64 != 0 {
        return Err(bad("tail", stored));
    }
    let claim = position("claim", h.producer.claim.load(Acquire))?;
    let header_seq = h.producer.next_seq.load(Acquire);
    let tail = d.skip_short(stored);
    // The number the records give at the tail: the published record there (its producer
    // died before storing the tail past it) or the unpublished stamp every commit leaves.
    // Acquire pairs with the Release stamp store in `publish_stamps`. Defensive, with the
    // lock (see `record_at`).
    let stamp = region.word(tail & d.mask).load(Acquire);
    let at_tail = if stamp == tail && d.cap - (tail & d.mask) >= HDR {
        // Relaxed: ordered by the stamp load.
        Some(region.word((tail & d.mask) + 8).load(Relaxed))
    } else {
        unpublished_seq(stamp)
    };
    // Every message takes at least a record header.
    let possible = |seq: u64| seq <= tail / HDR;
    // The header, the word at the tail and the records are three witnesses: a number one of
    // them gives is taken only when another agrees (or the other cannot be true), so no
    // single forged word outvotes an honest one.
    let mut next_seq = if at_tail == Some(header_seq) {
        header_seq
    } else {
        // Acquire pairs with the Release head store in `gate.rs` `refresh`. Defensive
        // (head is advisory; the walk validates every record; and the lock orders it).
        let head = h.producer.head.load(Acquire);
        match (walked_seq(region, d, head, tail), at_tail) {
            // The records up to the tail agree with each other, and the word at the tail
            // is not a stamp: it was scribbled; the takeover rewrites it. The records are
            // believed only if the header agrees or cannot be true (a zeroed stamp and a
            // forged record must not outvote an honest header).
            (Some(w), None) if w == header_seq || !possible(header_seq) => w,
            (Some(w), Some(s)) if w == s || w == header_seq => w,
            // Nothing confirms this tail: no record ends there, and the word there is
            // neither a record nor the unpublished stamp every commit leaves.
            (None, None) => {
                return Err(SegmentError::BadStamp {
                    position: tail,
                    found: stamp,
                })
            }
            _ => return Err(bad("next_seq", header_seq)),
        }
    };
    if !possible(next_seq) {
        return Err(bad("next_seq", next_seq));
    }
    // Walk forward over records published after the stored tail, numbered in sequence.
    let mut tail = tail;
    for _ in 0..d.cap / HDR {
        match record_at(region, d, tail) {
            Some((len, KIND_PADDING, _)) => tail = after(d, tail, len, KIND_PADDING),
            Some((len, _, seq)) if seq == next_seq => {
                next_seq = seq.wrapping_add(1);
                tail = after(d, tail, len, KIND_MESSAGE);
            }
            _ => break,
        }
        if tail > MAX_POSITION {
            return Err(bad("tail", tail));
        }
    }
    // The claim bounds what the previous producer may have written; it never goes down,
    // and a producer never leaves it outside [tail, tail + capacity].
    Ok((tail, next_seq, claim.clamp(tail, tail + d.cap)))
}

impl RingProducer {
    /// Become the producer of `region` (creation or takeover), evicting live evictable
    /// consumers that gate it for `evict_after`, if set.
    pub(crate) fn attach(
        region: Arc<Region>,
        evict_after: Option<Duration>,
    ) -> Result<RingProducer, OpenError> {
        let got = region
            .try_lock(LockId::Producer)
            .map_err(|source| OpenError::Io {
                context: "lock the producer byte".into(),
                source,
            })?;
        if !got {
            return Err(OpenError::ProducerAlive);
        }
        let d = Dims::of(&region);
        let (tail, next_seq, claim) = match recover(&region, &d) {
            Ok(v) => v,
            Err(e) => {
                region.unlock(LockId::Producer);
                return Err(e.into());
            }
        };
        let h = region.header();
        // Whatever the word at the tail holds (the walk stopped there: not a valid published
        // record), make it the unpublished stamp, as every commit leaves it; consumers then
        // wait there instead of reporting a leftover as corruption. The previous producer
        // wrote this word already, so it lies inside its claim. Relaxed: published by the
        // Release tail store below.
        region.word(tail).store(unpublished(next_seq), Relaxed);
        // No checkpoints yet: consumers starting at the oldest message start at the tail
        // until a chunk has been written. Release pairs with the Acquire head load in
        // `attach.rs` `oldest_start`. Defensive (redundant: head is advisory).
        h.producer.head.store(tail, Release);
        // Release pairs with the Acquire tail loads (`attach.rs`, `cursor.rs`). Defensive,
        // as the next_seq and claim stores below (redundant: these re-publish positions the
        // previous producer published, whose own Release stores ordered what lies below).
        h.producer.tail.store(tail, Release);
        h.producer.next_seq.store(next_seq, Release);
        // After the tail: a consumer that sees this claim sees a tail it bounds (see
        // `attach.rs` `claim_and_tail`). Release pairs with the consumers' Acquire claim
        // loads (`attach.rs`, `lossy.rs`).
        h.producer.claim.store(claim, Release);
        // Relaxed: informational (monitoring).
        h.control.epoch.fetch_add(1, Relaxed);
        h.control.pid.store(std::process::id(), Relaxed);
        // Only a producer sleeps for space, and holding the producer lock proves the one
        // before us is gone: a flag it left set would only cost consumers a wake-up.
        h.space.sleepers.store(0, Relaxed);
        // Before LIVE: a consumer that sees us live registers by our rules (Relaxed: ordered
        // by the Release state store below, which consumers load with Acquire).
        h.control
            .evicting
            .store(u32::from(evict_after.is_some()), Relaxed);
        // Release pairs with the consumers' Acquire state loads (`attach.rs`, `cursor.rs`).
        h.control.state.store(PRODUCER_LIVE, Release);
        let mut p = RingProducer::new(region, tail, next_seq, claim);
        p.evict_after = evict_after;
        Ok(p)
    }
}
