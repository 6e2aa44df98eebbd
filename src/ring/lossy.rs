//! Lossy reading: a consumer that never gates the producer.
//!
//! It copies a record out with atomic loads, then issues `fence(Acquire)` and checks that
//! `claim <= position + capacity`: the producer raises `claim` and issues `fence(SeqCst)`
//! before it writes past the old claim, so a copy that saw any overwritten byte also sees
//! the raised claim (a seqlock). A lapped consumer restarts at the oldest intact record and
//! reports exactly how many messages it lost, by sequence numbers. Numbers from shared
//! memory are checked: they never go backwards, and a loss is at most the records that fit
//! between the last confirmed position and the new one (each takes a record header at
//! least); anything else is corruption, not an absurd `Lagged`.

use super::attach::{Mode, RingConsumer};
use super::cursor::Parsed;
use super::HDR;
use crate::error::{Corruption, RecvTimeoutError, SegmentError, TryRecvError};
use crate::layout::unpublished_seq;
use crate::sync::atomic::{fence, Ordering::*};
use crate::wait::WaitPolicy;
use std::time::Instant;

impl RingConsumer {
    /// Has the producer possibly overwritten position `c`? (Conservative: `claim` bounds
    /// what it may have written.) Call after `fence(Acquire)` when validating a copy.
    #[inline]
    pub(super) fn lapped(&self, c: u64) -> bool {
        // Relaxed: ordered by the caller's fence(Acquire) (seqlock read side).
        self.region.header().producer.claim.load(Relaxed) > c + self.d.cap
    }

    /// A lapped lossy consumer restarts at the oldest record still intact.
    fn recover(&mut self) -> Result<(), RecvTimeoutError> {
        let (claim, tail) = self.claim_and_tail().map_err(|e| {
            let value = match e {
                SegmentError::BadPosition { found, .. } => found,
                _ => 0,
            };
            RecvTimeoutError::Corrupt(Corruption {
                position: self.cursor,
                reason: "impossible producer position (claim or tail)",
                value,
            })
        })?;
        self.cursor = self.oldest_start(claim, tail).max(self.cursor);
        Ok(())
    }

    /// The next message, copied into `dst` (lossy consumers). `Err(Lagged(n))` when the
    /// producer overwrote `n` messages before we could copy them; the next call goes on at
    /// the oldest message still present.
    pub(super) fn poll_lossy(
        &mut self,
        dst: &mut Vec<u8>,
    ) -> Result<Option<u64>, RecvTimeoutError> {
        debug_assert_eq!(self.mode, Mode::Lossy);
        // Each round either returns, skips to the next lap, or recovers from a lap; a
        // producer lapping us on every round makes us report `Lagged` soon after.
        for _ in 0..8 {
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
                // Seqlock: pairs with the fence after the claim store in `gate.rs` `refresh`.
                fence(Acquire);
                if self.lapped(c) {
                    self.recover()?;
                    continue;
                }
                // Nothing published at `c`: the unpublished stamp there says which number
                // comes next. Past what we expect, the stream moved on without us (we were
                // lapped, then recovered to a tail, e.g. after a takeover): report the loss
                // now, not at the next message, which may never come.
                if let Some(next) = unpublished_seq(stamp) {
                    if next > self.expected_seq {
                        return Err(self.lost(c, next));
                    }
                }
                return Ok(None);
            }
            // Relaxed: ordered by the stamp load, validated below.
            let seq = self.data.word(idx + 8).load(Relaxed);
            let parsed = self.parse(c, idx);
            if let Ok(Parsed::Message { len, .. }) = parsed {
                dst.resize(len as usize, 0);
                self.data.copy_out_atomic(idx + HDR, dst);
            }
            // Seqlock validation: pairs with the producer's fence after it raised `claim`
            // (in `gate.rs` `refresh`): had any byte we read been overwritten, we would see
            // the claim that allowed it.
            fence(Acquire);
            if self.lapped(c) {
                self.recover()?;
                continue;
            }
            match parsed.map_err(RecvTimeoutError::Corrupt)? {
                Parsed::Padding { end } => self.cursor = end,
                Parsed::Message { end, .. } => {
                    if seq != self.expected_seq {
                        return Err(self.lost(c, seq));
                    }
                    self.cursor = end;
                    self.expected_seq = seq.wrapping_add(1);
                    self.expected_at = end;
                    self.stats.messages += 1;
                    if end - self.published >= self.publish_every {
                        // For monitors only (inspection shows lossy lag): a lossy slot never
                        // gates the producer. Relaxed: informational.
                        self.region.slot(self.slot).cursor.store(end, Relaxed);
                        self.published = end;
                    }
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// The message at `c` carries `seq`, not the number we expected: report the gap (the
    /// message itself is read again next time), or corruption if the gap is impossible.
    #[cold]
    fn lost(&mut self, c: u64, seq: u64) -> RecvTimeoutError {
        let corrupt = |reason| {
            RecvTimeoutError::Corrupt(Corruption {
                position: c,
                reason,
                value: seq,
            })
        };
        if seq < self.expected_seq {
            return corrupt("sequence number went backwards");
        }
        let lost = seq - self.expected_seq;
        // Every lost message took at least a record header between the position where the
        // expected number was confirmed and here.
        if lost > c.saturating_sub(self.expected_at) / HDR {
            return corrupt("sequence number jumps past what the ring could have held");
        }
        self.expected_seq = seq;
        self.expected_at = c;
        RecvTimeoutError::Lagged(lost)
    }

    /// The next message copied into `dst`, if one is available now (lossy consumers).
    pub(crate) fn try_recv_lossy(
        &mut self,
        dst: &mut Vec<u8>,
    ) -> Result<Option<u64>, TryRecvError> {
        self.try_poll(|r| r.poll_lossy(dst))
    }

    /// Wait for the next message and copy it into `dst` (lossy consumers).
    pub(crate) fn recv_lossy(
        &mut self,
        dst: &mut Vec<u8>,
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<u64, RecvTimeoutError> {
        self.wait_for(policy, deadline, 0, |r| r.poll_lossy(dst))
    }
}
