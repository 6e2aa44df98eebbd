//! Shared pieces of the shmcast fuzz targets: a reference model of the ring's framing and
//! gating, message payloads, and checks that every target applies to what a consumer hands
//! out.
//!
//! # The model
//! [`RingModel`] knows where every record goes (records are 8-aligned, a 24-byte header
//! then the payload; a tail fragment shorter than a header is skipped; a record that does
//! not fit before the end of the ring is preceded by a padding record and starts the next
//! lap) and when the producer reports `Full`:
//!
//! * a reservation writes up to `write_end = next + 8` (its payload, and the next record's
//!   stamp word, which it marks unpublished);
//! * the gate `G` is the minimum cursor *published* by the attached lossless consumers, or
//!   the tail if there are none. Consumers publish lazily: after a receive that takes them
//!   at least `publish_every = max(capacity / 8, 8)` bytes past their last published
//!   cursor, and whenever a receive finds the ring empty;
//! * the reservation is refused (`Full`) exactly when `write_end > G + capacity`.
//!
//! The rule is exact: the producer caches a write limit and only rescans the slots when a
//! reservation passes it, but the cache never says "fits" when the rule says `Full` (a new
//! consumer's start is at least `claim - capacity`, and the cached limit is at most the
//! claim), and a rescan raises the claim to at least the reservation's end.
//!
//! Where a consumer attaching at [`StartAt::Oldest`] starts is the producer's choice within
//! documented bounds; targets read it from the consumer's slot and check it with
//! [`RingModel::check_oldest_start`].
//!
//! [`StartAt::Oldest`]: shmcast::StartAt::Oldest

use std::collections::BTreeMap;

pub use shmcast::fuzzing::layout::{max_message_for, record_size, RECORD_HEADER as HDR};

/// The number a lossless consumer must take after taking `seq`: the next one, except after
/// 2^64 - 2, a number no producer reaches (positions stop at 2^62, a record takes 24 bytes):
/// the library keeps 2^64 - 1 for "no message taken yet", so after a forged 2^64 - 2 it
/// takes any number, as it does for its first message.
pub fn taken_after(seq: u64) -> Option<u64> {
    Some(seq.wrapping_add(1)).filter(|&n| n != u64::MAX)
}

/// The payload of message `seq` with length `len`: every byte depends on the sequence
/// number, the position in the message and `fill`, so a message read from the wrong place
/// or a stale lap does not compare equal.
pub fn payload(seq: u64, len: usize, fill: u8) -> Vec<u8> {
    let s = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|i| {
            let x = s ^ (i as u64).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ u64::from(fill);
            (x ^ (x >> 29) ^ (x >> 47)) as u8
        })
        .collect()
}

/// A committed record as the producer wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rec {
    /// A message record.
    Message {
        /// Payload length.
        len: u64,
        /// Sequence number.
        seq: u64,
    },
    /// Padding from its position to the end of the lap.
    Padding {
        /// The sequence number the producer wrote into it (that of the message after it).
        seq: u64,
    },
}

/// Where a reservation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The tail when planned: where the padding record goes, if any.
    pub start: u64,
    /// The record's position.
    pub pos: u64,
    /// Payload length.
    pub len: u64,
    /// Position of the next record.
    pub next: u64,
    /// A padding record fills `start..pos`.
    pub pad: bool,
}

impl Plan {
    /// One past the last byte the reservation writes (the next record's stamp word).
    pub fn write_end(&self) -> u64 {
        self.next + 8
    }
}

/// The model's answer to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// It fits.
    Fits(Plan),
    /// `TrySendError::Full` (or a timeout for the waiting calls).
    Full,
    /// Longer than the segment's maximum message.
    TooLarge,
}

/// A committed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Its position.
    pub pos: u64,
    /// Position of the record after it (where its reader's cursor goes).
    pub next: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The producer side of the ring, as a model.
#[derive(Clone, Debug)]
pub struct RingModel {
    /// Ring capacity.
    pub cap: u64,
    /// Largest payload.
    pub max_message: u64,
    /// Position of the next record.
    pub tail: u64,
    /// Sequence number of the next message (= messages committed so far).
    pub next_seq: u64,
    /// The largest `write_end` of any reservation handed out (committed or aborted).
    pub max_write_end: u64,
    /// The tail at the last takeover: a new producer has no checkpoints of what its
    /// predecessor wrote, so `Oldest` starts (and lossy restarts) may skip everything below.
    pub oldest_floor: u64,
    records: BTreeMap<u64, Rec>,
    sent: Vec<Sent>,
}

impl RingModel {
    /// A model of an empty ring.
    pub fn new(cap: u64, max_message: u64) -> RingModel {
        RingModel {
            cap,
            max_message,
            tail: 0,
            next_seq: 0,
            max_write_end: 0,
            oldest_floor: 0,
            records: BTreeMap::new(),
            sent: Vec::new(),
        }
    }

    /// How often a consumer publishes its cursor while it keeps receiving.
    pub fn publish_every(&self) -> u64 {
        (self.cap / 8).max(8)
    }

    /// Bytes left in the lap at `pos`.
    pub fn room(&self, pos: u64) -> u64 {
        self.cap - (pos % self.cap)
    }

    /// `pos`, or the next lap if too little of this one is left for a record header.
    pub fn skip_short(&self, pos: u64) -> u64 {
        let room = self.room(pos);
        if room < HDR {
            pos + room
        } else {
            pos
        }
    }

    /// Where a `len`-byte message would go now.
    pub fn plan(&self, len: u64) -> Plan {
        self.plan_from(self.tail, len)
    }

    /// Where a `len`-byte message would go if the tail were `start`.
    pub fn plan_from(&self, start: u64, len: u64) -> Plan {
        let rec = record_size(len);
        let room = self.room(start);
        let (pos, pad) = if room >= rec {
            (start, false)
        } else {
            (start + room, true)
        };
        Plan {
            start,
            pos,
            len,
            next: self.skip_short(pos + rec),
            pad,
        }
    }

    /// A reservation of `len` bytes with the consumers' published gate `gate` (the minimum
    /// published lossless cursor, or the tail if none): `Full` exactly when its
    /// `write_end > gate + capacity`.
    pub fn try_reserve(&mut self, len: u64, gate: u64) -> Reserve {
        if len > self.max_message {
            return Reserve::TooLarge;
        }
        let plan = self.plan(len);
        let end = plan.write_end();
        if end > gate + self.cap {
            return Reserve::Full;
        }
        self.max_write_end = self.max_write_end.max(end);
        Reserve::Fits(plan)
    }

    /// Commit a reservation with its payload; returns its sequence number.
    pub fn commit(&mut self, plan: Plan, payload: Vec<u8>) -> u64 {
        assert_eq!(plan, self.plan(plan.len), "model: stale plan");
        assert_eq!(payload.len() as u64, plan.len);
        let seq = self.next_seq;
        if plan.pad {
            self.records.insert(plan.start, Rec::Padding { seq });
        }
        self.records
            .insert(plan.pos, Rec::Message { len: plan.len, seq });
        self.sent.push(Sent {
            pos: plan.pos,
            next: plan.next,
            payload,
        });
        self.tail = plan.next;
        self.next_seq += 1;
        // Records more than two laps old can matter to nobody.
        if self.tail > 2 * self.cap {
            let keep = self.records.split_off(&(self.tail - 2 * self.cap));
            self.records = keep;
        }
        seq
    }

    /// Message `seq`, if it was committed.
    pub fn sent(&self, seq: u64) -> Option<&Sent> {
        self.sent.get(usize::try_from(seq).ok()?)
    }

    /// The record the producer wrote at `pos`, if it is still in the window the model keeps.
    pub fn record_at(&self, pos: u64) -> Option<Rec> {
        self.records.get(&pos).copied()
    }

    /// Records at or above `from`, in position order.
    pub fn records_from(&self, from: u64) -> impl Iterator<Item = (u64, Rec)> + '_ {
        self.records.range(from..).map(|(p, r)| (*p, *r))
    }

    /// Is `pos` a place a reader can start: the tail, a record (message or padding), the
    /// end of a message (possibly a fragment too short for a header), or a lap start?
    pub fn is_boundary(&self, pos: u64) -> bool {
        pos == self.tail
            || pos.is_multiple_of(self.cap)
            || self.records.contains_key(&pos)
            || self.records.iter().any(|(p, r)| match r {
                Rec::Message { len, .. } => p + record_size(*len) == pos,
                Rec::Padding { .. } => false,
            })
    }

    /// The oldest data a reader may skip: positions below this are overwritten, or claimed
    /// for overwriting (the producer claims an eighth of the capacity at a time, and oldest
    /// starts are tracked per eighth, so up to a quarter of the capacity above what was
    /// overwritten, plus the record straddling that point).
    pub fn skippable_below(&self) -> u64 {
        (self.max_write_end.saturating_sub(self.cap)
            + self.cap / 4
            + record_size(self.max_message)
            + HDR)
            .max(self.oldest_floor)
    }

    /// A new producer took over at the tail: the stream goes on at the same position and
    /// sequence number; what came before may be skipped by `Oldest` starts (see
    /// [`RingModel::oldest_floor`]).
    pub fn takeover(&mut self) {
        self.oldest_floor = self.tail;
    }

    /// Is the record at `pos`, `size` bytes long, still intact (nothing written over it
    /// since)? Every reservation writes below its `write_end`, so what lies at or above
    /// `max_write_end - capacity` is what was last written there.
    pub fn intact(&self, pos: u64) -> bool {
        pos + self.cap >= self.max_write_end
    }

    /// Check the ring's contents against the model, as a peer reading the segment would
    /// see them after the producer returned: every intact record carries its header
    /// exactly (stamp = position, sequence number, length and kind), the payloads of the
    /// messages from `payloads_from` on are the bytes sent, and the word at the tail is
    /// the unpublished stamp carrying the next sequence number.
    ///
    /// # Panics
    /// At the first difference.
    pub fn audit(&self, seg: &shmcast::fuzzing::HostileSegment, payloads_from: u64) {
        use shmcast::fuzzing::layout::{
            KIND_MESSAGE, KIND_PADDING, RECORD_META, RECORD_SEQ, RECORD_STAMP,
        };
        let lo = self.max_write_end.saturating_sub(self.cap);
        for (pos, rec) in self.records.range(lo..) {
            let (seq, meta) = match *rec {
                Rec::Message { len, seq } => (seq, len | (u64::from(KIND_MESSAGE) << 32)),
                Rec::Padding { seq } => (seq, u64::from(KIND_PADDING) << 32),
            };
            let stamp = seg.ring_word(pos + RECORD_STAMP);
            assert_eq!(
                stamp, *pos,
                "record {rec:?} at {pos}: stamp {stamp:#x} (tail {}, written up to {})",
                self.tail, self.max_write_end
            );
            assert_eq!(
                seg.ring_word(pos + RECORD_SEQ),
                seq,
                "{rec:?} at {pos}: seq"
            );
            assert_eq!(
                seg.ring_word(pos + RECORD_META),
                meta,
                "{rec:?} at {pos}: meta"
            );
            if let Rec::Message { len, seq } = *rec {
                if seq >= payloads_from {
                    let sent = self.sent(seq).expect("a recorded message was sent");
                    assert_eq!(
                        seg.ring_bytes(pos + HDR, len as usize),
                        sent.payload,
                        "message {seq} at {pos}: payload changed after it was written"
                    );
                }
            }
        }
        let ahead = seg.ring_word(self.tail);
        assert_eq!(
            ahead,
            (1 << 63) | self.next_seq,
            "the stamp at the tail {} must be unpublished, carrying {}",
            self.tail,
            self.next_seq
        );
    }

    /// Check where a consumer attaching at `StartAt::Oldest` started, against the documented
    /// bounds: at or below the tail, on a record boundary, on nothing that was (or is being)
    /// overwritten, and skipping only data below [`RingModel::skippable_below`].
    ///
    /// # Panics
    /// If a bound does not hold.
    pub fn check_oldest_start(&self, start: u64) {
        assert!(
            start <= self.tail,
            "Oldest starts at {start}, past the tail {}",
            self.tail
        );
        assert!(
            self.is_boundary(start),
            "Oldest starts at {start}, not a record boundary"
        );
        let overwritten = self.max_write_end.saturating_sub(self.cap);
        assert!(
            start >= overwritten,
            "Oldest starts at {start}, overwritten below {overwritten}"
        );
        // Every message it skips lies below the skippable bound.
        if let Some((p, _)) = self
            .records
            .range(overwritten..start)
            .find(|(_, r)| matches!(r, Rec::Message { .. }))
        {
            assert!(
                *p < self.skippable_below(),
                "Oldest starts at {start}, skipping the intact message at {p} (overwritten \
                 below {overwritten})"
            );
        }
    }

    /// May message `seq` be reported lost by a lossy consumer now (overwritten, or in the
    /// part of the oldest data a restart may skip)?
    pub fn may_be_lost(&self, seq: u64) -> bool {
        self.sent(seq)
            .is_some_and(|s| s.pos < self.skippable_below())
    }

    /// Sequence number of the first message at or after position `pos`.
    pub fn first_seq_from(&self, pos: u64) -> u64 {
        self.records_from(pos)
            .find_map(|(_, r)| match r {
                Rec::Message { seq, .. } => Some(seq),
                Rec::Padding { .. } => None,
            })
            .unwrap_or(self.next_seq)
    }
}

/// A lossless consumer as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConsumer {
    /// Sequence number of the next message it must receive.
    pub next_seq: u64,
    /// Its private cursor.
    pub cursor: u64,
    /// The cursor it last published (what gates the producer).
    pub published: u64,
}

impl ModelConsumer {
    /// A consumer registered at `start`, whose first message is `next_seq`.
    pub fn new(start: u64, next_seq: u64) -> ModelConsumer {
        ModelConsumer {
            next_seq,
            cursor: start,
            published: start,
        }
    }

    /// It dropped message `next_seq`, which ends at `end`.
    pub fn released(&mut self, end: u64, model: &RingModel) {
        self.next_seq += 1;
        self.cursor = end;
        if end - self.published >= model.publish_every() {
            self.published = end;
        }
    }

    /// A receive found the ring empty: it skipped a short tail fragment, if it sat on one,
    /// and published its cursor.
    pub fn found_empty(&mut self, model: &RingModel) {
        self.cursor = model.skip_short(self.cursor);
        self.published = self.cursor;
    }
}

/// The gate of a set of lossless consumers: the minimum published cursor, or `tail`.
pub fn gate<'a>(consumers: impl IntoIterator<Item = &'a ModelConsumer>, tail: u64) -> u64 {
    consumers
        .into_iter()
        .map(|c| c.published)
        .min()
        .unwrap_or(tail)
}
