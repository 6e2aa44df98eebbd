//! Gating and the claim: how far the producer may write.
//!
//! The producer caches `limit = min(claim, gate + capacity)`; a reservation that would end
//! past it calls [`RingProducer::refresh`], which rescans the consumer slots for the gate
//! (the slowest live lossless cursor, never above the published tail) and raises the
//! claim an eighth of the ring at a time.
//!
//! - The claim is published (`Release`, then `fence(SeqCst)`) *before* any write past the
//!   old one: a lossy reader or an attaching consumer that loads the claim after its own
//!   fence knows whether the producer may have overwritten a position (a seqlock).
//! - Cursors are untrusted input: a cursor outside `[tail - capacity, tail]` or misaligned
//!   gets its slot evicted; a consumer whose liveness lock is free (it died) and that gates
//!   the producer gets its slot reclaimed; with `evict_after`, an evictable consumer that
//!   gated the producer for that long is evicted. Evicting is a compare-and-swap of the slot
//!   state, so a newer registration of the same slot is never hit.

use super::writer::RingProducer;
use crate::layout::{
    slot_gates, slot_generation, slot_kind, slot_state, MAX_POSITION, SLOT_EVICTABLE, SLOT_EVICTED,
};
use crate::region::LockId;
use crate::sync::atomic::{fence, Ordering::*};
use crate::wait::PROBE_INTERVAL;
use std::time::Instant;

impl RingProducer {
    /// Re-derive the write limit; true if a write ending at `need` fits under it.
    pub(super) fn refresh(&mut self, need: u64) -> bool {
        let mut gate = self.scan_gate(need);
        let cap = self.d.cap;
        // Never claim what the gate forbids: a refused reservation must not make readers
        // believe intact records are being overwritten.
        if need > gate + cap {
            self.limit = self.claim.min(gate + cap).min(MAX_POSITION);
            return false;
        }
        if need > self.claim {
            let h = self.region.header();
            let claim = need.max((self.claim + self.claim_chunk).min(gate + cap));
            // The oldest record this claim leaves intact: the first checkpoint at or above
            // `claim - capacity` (advisory: readers validate every stamp they walk).
            let floor = claim.saturating_sub(cap);
            let head = self
                .checkpoints
                .iter()
                .copied()
                .filter(|&p| p >= floor && p <= self.tail)
                .min()
                .unwrap_or(self.tail);
            // Release pairs with the Acquire head load in `attach.rs` `oldest_start`.
            // Defensive (redundant: head is advisory, readers validate what they walk).
            h.producer.head.store(head, Release);
            // Release pairs with the Acquire claim loads of attaching consumers and lossy
            // readers: one that sees this claim also sees the tail it was derived from.
            h.producer.claim.store(claim, Release);
            // Seqlock and Dekker: orders the claim before every later write into the ring
            // (pairs with the readers' fence(Acquire) before their claim load: a reader that
            // copied a byte we write after this sees this claim), and before the slot scan
            // below (pairs with an attaching consumer's fence between its registration and
            // its claim load: either we see its slot, or it sees this claim).
            fence(SeqCst);
            self.claim = claim;
            gate = self.scan_gate(need);
        }
        // Never above MAX_POSITION: `try_reserve` relies on it to catch the ceiling.
        self.limit = self.claim.min(gate + cap).min(MAX_POSITION);
        need <= self.limit
    }

    /// The minimum cursor of the live lossless consumers, never above the published tail.
    /// Evicts slots with impossible cursors, and reclaims slots of dead consumers (and, with
    /// `evict_after`, stuck evictable ones) that gate `need`.
    fn scan_gate(&mut self, need: u64) -> u64 {
        self.stats.rescans += 1;
        let tail = self.published;
        let floor = tail.saturating_sub(self.d.cap);
        let mut gate = tail;
        let mut probe: Option<bool> = None;
        // Every slot: a consumer-writable high-water mark could hide others. Free slots are
        // read-shared lines: cheap to skip.
        for i in 0..self.max_consumers {
            let slot = self.region.slot(i);
            // Acquire pairs with the consumer's Release state stores in `attach.rs`
            // (`register_lossless`: its cursor store before it is visible; `detach`: its reads
            // before we overwrite). Load-bearing for `detach`, but a load-buffering hazard
            // that neither loom nor x86 can show; for attach the claim handshake suffices.
            let state = slot.state.load(Acquire);
            if !slot_gates(state) {
                continue;
            }
            // Acquire pairs with the consumer's Release cursor store in `cursor.rs`
            // `publish`: its reads of every record below the cursor happen-before we
            // overwrite them.
            let c = slot.cursor.load(Acquire);
            if c > tail || c < floor || c % crate::layout::RECORD_ALIGN as u64 != 0 {
                self.evict(i, state);
                continue;
            }
            if c + self.d.cap < need {
                let due = *probe.get_or_insert_with(|| self.probe.due(PROBE_INTERVAL, false));
                if due && !self.region.held_by_other(LockId::Slot(i)) {
                    // Gated by a consumer whose process is gone: reclaim its slot.
                    self.evict(i, state);
                    continue;
                }
                if due && slot_kind(state) == SLOT_EVICTABLE && self.stuck_too_long(i, state) {
                    self.evict(i, state);
                    continue;
                }
            } else if let Some(g) = self.gated_since.get_mut(i as usize) {
                *g = None;
            }
            gate = gate.min(c);
        }
        gate
    }

    /// `evict_after`: has slot `i` (registration `state`) gated us for too long?
    fn stuck_too_long(&mut self, i: u32, state: u32) -> bool {
        let Some(after) = self.evict_after else {
            return false;
        };
        if self.gated_since.len() <= i as usize {
            self.gated_since.resize(i as usize + 1, None);
        }
        let now = Instant::now();
        match self.gated_since[i as usize] {
            Some((s, since)) if s == state => now.duration_since(since) >= after,
            _ => {
                self.gated_since[i as usize] = Some((state, now));
                false
            }
        }
    }

    /// Evict slot `i` if it still holds `state` (a newer registration is left alone).
    fn evict(&mut self, i: u32, state: u32) {
        let evicted = slot_state(slot_generation(state), SLOT_EVICTED);
        // AcqRel: the CAS succeeds only on the exact registration we judged (Acquire: after
        // the owner's last state store); the consumer's Relaxed state loads learn of it. An
        // evicted consumer's copies are protected by the claim (see `refresh`), not by this.
        if self
            .region
            .slot(i)
            .state
            .compare_exchange(state, evicted, AcqRel, Relaxed)
            .is_ok()
        {
            self.stats.evictions += 1;
        }
    }
}
