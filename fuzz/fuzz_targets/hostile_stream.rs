//! A live stream whose shared words a peer scribbles between operations: the producer line
//! (`claim`, `tail`, `head`, `next_seq`) and the stamp and sequence-number words of records
//! in the ring (published ones, and the unpublished stamp at the tail). This is the
//! hostile-segment target's live half: `hostile_segment` feeds arbitrary bytes to the
//! open/validate path and a takeover; here the stream is valid and running, the model knows
//! every message, and the oracle says which outcomes each scribble allows.
//!
//! # Oracle
//! Acceptable outcomes are exact messages, `Corrupt`, `Evicted` and documented errors where
//! a scribble explains them; never
//! * a message that was not sent (bytes, or an order the records do not have), unless the
//!   record's own sequence-number word was scribbled (the format cannot tell: the bytes are
//!   still exact, the number is what the header says), and even then never a lossless
//!   consumer taking a number other than the one after the last it took (producers number
//!   without gaps: a gap is `Corrupt`, whatever the scribbles);
//! * `Empty` from a lossless consumer whose next record is published and intact, or from a
//!   lossy one while the claim is impossible (`> tail + capacity`) and a message is there;
//! * a lossy reader whose `recv_timeout` runs out while it sits past the producer's claim
//!   (where nothing can be published: forged positions moved it there);
//! * an `Empty` that lasts (`recv_timeout` runs out, or `Disconnected` after the close)
//!   while the producer's published tail proves a record exists at the consumer's cursor:
//!   then the consumer must report `Corrupt` (a closed stream's tail is final, so one more
//!   than a ring past a lossless consumer's cursor is corruption too; only a stamp and a
//!   tail forged together to look like an empty end pass unnoticed);
//! * a `Lagged(n)` larger than what was ever sent, unless a sequence number was scribbled
//!   (a record's, or the one an unpublished stamp carries);
//! * a takeover whose `next_seq` is not the stream's (unless `next_seq` *and* another witness
//!   the takeover cross-checks were forged together), or that fails without a scribble to
//!   explain it; a lossless attach that fails with `AttachRace` (nothing races it here).
//!
//! Scribbles of the producer line last one operation (the harness puts the old value back
//! if nobody rewrote it): a peer that keeps the line wrong is one the producer overwrites on
//! its next commit anyway. The claim is only ever raised: a peer that lowers it defeats the
//! lossy readers' seqlock, which no format without checksums can detect. Record words stay
//! scribbled until the producer writes the record again. A stamp is never set to its own
//! position (that forges a publication, undetectable by design; see `framing`).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmcast::fuzzing::layout::{
    PRODUCER_CLAIM, PRODUCER_HEAD, PRODUCER_NEXT_SEQ, PRODUCER_TAIL, RECORD_SEQ, SLOT_CURSOR,
    SLOT_STATE,
};
use shmcast::fuzzing::HostileSegment;
use shmcast::{
    Consumer, LossyConsumer, OpenError, Producer, RecvTimeoutError, SegmentError, StartAt,
    TryRecvError, TrySendError,
};
use shmcast_fuzz::{max_message_for, payload, taken_after, ModelConsumer, Rec, RingModel, HDR};
use std::collections::BTreeSet;
use std::time::Duration;

const MAX_OPS: usize = 300;
/// `recv_timeout` calls per input.
const MAX_WAITS: u32 = 4;
/// A hang guard, not a deadline: a consumer probes the producer's tail every 5 ms at most
/// and reports corruption at once; an honest `recv_timeout` here returns in milliseconds,
/// and only a consumer that stays silent waits this long.
const WAIT: Duration = Duration::from_secs(2);

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Claim,
    Tail,
    Head,
    NextSeq,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    /// The current value plus `8 * d` (positions) or `d` (sequence numbers).
    Delta(i16),
    /// The current value plus `k` laps (positions) or `k * capacity / 24` (sequence numbers).
    Laps(i8),
    Zero,
    /// 2^62 (past every position).
    Huge,
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum StampValue {
    /// The same index, `k + 1` laps earlier (a stale record).
    EarlierLap(u8),
    /// The same index, `k + 1` laps later (an overrun).
    LaterLap(u8),
    Zero,
    /// An unpublished-looking stamp carrying `seq`.
    Unpublished(u16),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Who {
    /// The lossless consumer attached at the start.
    A,
    /// The lossy consumer attached at the start.
    B,
    /// The consumer attached last by `Attach`.
    C,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Send {
        len: u16,
        fill: u8,
    },
    Recv {
        who: Who,
        n: u8,
    },
    /// `recv_timeout`: a lossless consumer whose next record the tail proves must get it or
    /// report corruption; a lossy one past the producer's claim must report corruption.
    Wait {
        who: Who,
    },
    /// Scribble a word of the producer line, for the next operation.
    Header {
        field: Field,
        value: Value,
    },
    /// Scribble the stamp of a record in the ring (`back` records from the newest; 0 is the
    /// unpublished stamp at the tail).
    Stamp {
        back: u8,
        value: StampValue,
    },
    /// Scribble a record's sequence number (`back` from the newest message).
    Seq {
        back: u8,
        delta: i16,
    },
    /// Drop the producer (closing the stream) and take the ring over.
    Takeover,
    /// Attach C (replacing the previous one).
    Attach {
        oldest: bool,
        lossy: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_shift: u8,
    max_message: u16,
    ops: Vec<Op>,
}

enum Handle {
    Lossless(Consumer),
    Lossy(LossyConsumer),
}

/// What the oracle knows of a consumer.
#[derive(Clone, Copy, Debug)]
enum Follow {
    /// Lossless: where it is and which message comes next.
    Exact(ModelConsumer),
    /// Lossy: the message it must deliver next (unknown for `Oldest` until it reports).
    Lossy(Option<u64>),
    /// A scribble made its position unknowable: only safety is checked.
    Safety,
}

struct Reader {
    handle: Handle,
    slot: u32,
    follow: Follow,
    /// A lossy reader that restarted (or attached) where forged producer words put it: its
    /// position can be anywhere up to the position ceiling, and a loss it reports is bounded
    /// only by how far it moved (which the library checks), not by what was sent.
    moved: bool,
    /// Lossless: the number after the last message it took, the only one it may take next
    /// (producers number messages without gaps); `None` before the first.
    taken: Option<u64>,
}

/// One receive's result, without the borrow.
#[derive(Debug)]
enum Got {
    Msg(u64, Vec<u8>),
    Err(RecvTimeoutError),
}

struct Harness {
    seg: HostileSegment,
    producer: Option<Producer>,
    model: RingModel,
    /// A (lossless), B (lossy), C (attached last).
    readers: [Option<Reader>; 3],
    /// Ring words (positions rounded down to 8) scribbled since the producer wrote them.
    dirty: BTreeSet<u64>,
    /// Record words whose scribble was a sequence number.
    dirty_seq: BTreeSet<u64>,
    /// Producer-line fields scribbled for the current operation: (field, value before).
    header: Vec<(Field, u64, u64)>,
    /// The claim was raised by a peer and a takeover adopted it: lossy losses are no longer
    /// checked against the model.
    claim_forged: bool,
    /// A takeover moved the stream (a forged tail or sequence number it could not refute):
    /// positions are no longer the model's.
    derailed: bool,
    waits: u32,
    /// Messages the producers accepted (the model stops counting once derailed).
    sends: u64,
    /// A takeover adopted a forged sequence number (with a forged witness): losses can be
    /// anything.
    seq_forged: bool,
}

/// A `try_recv` error as the `recv_timeout` one (`Empty` as `Timeout`).
fn timed(e: TryRecvError) -> RecvTimeoutError {
    match e {
        TryRecvError::Empty => RecvTimeoutError::Timeout,
        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        TryRecvError::ProducerDied => RecvTimeoutError::ProducerDied,
        TryRecvError::Evicted => RecvTimeoutError::Evicted,
        TryRecvError::Lagged(n) => RecvTimeoutError::Lagged(n),
        TryRecvError::Corrupt(c) => RecvTimeoutError::Corrupt(c),
        e => panic!("unexpected {e:?}"),
    }
}

fn field_offset(f: Field) -> u64 {
    match f {
        Field::Claim => PRODUCER_CLAIM,
        Field::Tail => PRODUCER_TAIL,
        Field::Head => PRODUCER_HEAD,
        Field::NextSeq => PRODUCER_NEXT_SEQ,
    }
}

impl Harness {
    fn reader(&mut self, who: Who) -> Option<&mut Reader> {
        self.readers[who as usize].as_mut()
    }

    fn header_dirty(&self, f: Field) -> bool {
        self.header.iter().any(|h| h.0 == f)
    }

    fn scribble(&mut self, position: u64, word: u64, seq: bool) {
        // SAFETY: every consumer copies what it checks before the next scribble (the
        // harness holds no `Message` across operations).
        unsafe { self.seg.scribble_ring(position, &word.to_ne_bytes()) }
        self.dirty.insert(position & !7);
        if seq {
            self.dirty_seq.insert(position & !7);
        }
    }

    fn touched(&self, from: u64, to: u64) -> bool {
        self.dirty.range(from & !7..to).next().is_some()
    }

    fn any_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.header.is_empty()
    }

    /// Records still in the ring (not overwritten), newest first.
    fn window(&self) -> Vec<(u64, Rec)> {
        let m = &self.model;
        let lo = m.max_write_end.saturating_sub(m.cap);
        let mut v: Vec<_> = m.records_from(lo).collect();
        v.reverse();
        v
    }

    fn scribble_header(&mut self, field: Field, value: Value) {
        if self.header_dirty(field) {
            return;
        }
        let off = field_offset(field);
        let cur = self.seg.load_u64(off);
        let cap = self.model.cap;
        let unit = if field == Field::NextSeq { 1 } else { 8 };
        let lap = if field == Field::NextSeq {
            cap / HDR
        } else {
            cap
        };
        let mut v = match value {
            Value::Delta(d) => cur.wrapping_add((i64::from(d) * unit) as u64),
            Value::Laps(k) => cur.wrapping_add((i64::from(k) * lap as i64) as u64),
            Value::Zero => 0,
            Value::Huge => 1 << 62,
            Value::Raw(r) => r,
        };
        if field == Field::Claim {
            // Only raised (see the module docs).
            v = v.max(cur);
        }
        if v == cur {
            return;
        }
        // SAFETY: no message of this ring is held in place while it is scribbled on.
        unsafe { self.seg.scribble(off, &v.to_ne_bytes()) }
        self.header.push((field, cur, v));
    }

    /// After an operation: put back the producer-line words nobody rewrote.
    fn restore_header(&mut self, took_over: bool) {
        for (field, before, forged) in std::mem::take(&mut self.header) {
            let off = field_offset(field);
            if took_over {
                // A new producer derived its state from what it found: leave it. (A refused
                // takeover wrote nothing: the peer's words are put back.)
                if field == Field::Claim {
                    self.claim_forged = true;
                }
                continue;
            }
            if self.seg.load_u64(off) == forged {
                // SAFETY: as in `scribble`.
                unsafe { self.seg.scribble(off, &before.to_ne_bytes()) }
            }
        }
    }

    fn stamp(&mut self, back: u8, value: StampValue) {
        let cap = self.model.cap;
        let window = self.window();
        let k = usize::from(back) % (window.len() + 1);
        let pos = if k == 0 {
            self.model.tail
        } else {
            window[k - 1].0
        };
        let mut v = match value {
            StampValue::EarlierLap(k) => pos.saturating_sub(cap * (1 + u64::from(k % 3))),
            StampValue::LaterLap(k) => pos + cap * (1 + u64::from(k % 3)),
            StampValue::Zero => 0,
            StampValue::Unpublished(s) => (1 << 63) | u64::from(s),
            StampValue::Raw(r) => r,
        };
        if v == pos {
            v ^= 8; // never forge the publication itself
        }
        // An unpublished-looking stamp carries the number of the next message (lossy
        // readers trust it for their loss count): forging one forges a sequence number.
        self.scribble(pos, v, v >> 63 == 1);
    }

    fn seq(&mut self, back: u8, delta: i16) {
        let msgs: Vec<(u64, u64)> = self
            .window()
            .into_iter()
            .filter_map(|(p, r)| match r {
                Rec::Message { seq, .. } => Some((p, seq)),
                Rec::Padding { .. } => None,
            })
            .collect();
        if msgs.is_empty() || delta == 0 {
            return;
        }
        let (pos, seq) = msgs[usize::from(back) % msgs.len()];
        self.scribble(pos + RECORD_SEQ, seq.wrapping_add(delta as u64), true);
    }

    /// Does a live lossless consumer gate a write ending at `end`? (From the slots: the
    /// cursors the producer reads.)
    fn gated(&self, end: u64) -> bool {
        self.readers.iter().flatten().any(|r| {
            matches!(r.handle, Handle::Lossless(_))
                && self
                    .seg
                    .load_u64(self.seg.slot_offset(r.slot) + SLOT_CURSOR)
                    .saturating_add(self.model.cap)
                    < end
        })
    }

    fn send(&mut self, len: u16, fill: u8) {
        let Some(p) = self.producer.as_mut() else {
            return;
        };
        let m = &self.model;
        let len = u64::from(len) % (m.max_message + 1);
        let data = payload(m.next_seq, len as usize, fill);
        let plan = m.plan(len);
        match p.try_send(&data) {
            Ok(()) => {
                self.sends += 1;
                if !self.derailed {
                    // The producer wrote the padding, the record and the stamp ahead.
                    let gone: Vec<u64> = self
                        .dirty
                        .range(plan.start..plan.next + 8)
                        .copied()
                        .collect();
                    for w in gone {
                        self.dirty.remove(&w);
                        self.dirty_seq.remove(&w);
                    }
                    self.model.try_reserve(len, u64::MAX / 2);
                    self.model.commit(plan, data);
                }
            }
            Err(TrySendError::Full) => assert!(
                self.derailed || self.gated(plan.write_end()),
                "Full at tail {} for a write ending at {}, but no consumer gates it",
                self.model.tail,
                plan.write_end()
            ),
            // A forged tail that a forged record confirms can still move the stream up to the
            // position ceiling (a takeover refuses one that nothing confirms).
            Err(TrySendError::Exhausted) if self.derailed => {}
            Err(e) => panic!("try_send({len}): {e:?}"),
        }
    }

    fn receive(&mut self, who: Who, wait: bool) -> Option<Got> {
        let r = self.reader(who)?;
        let mut buf = Vec::new();
        Some(match &mut r.handle {
            Handle::Lossless(c) => {
                let got = if wait {
                    c.recv_timeout(WAIT).map_err(Some)
                } else {
                    c.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => None,
                        e => Some(timed(e)),
                    })
                };
                match got {
                    Ok(m) => Got::Msg(m.seq(), m.to_vec()),
                    Err(Some(e)) => Got::Err(e),
                    Err(None) => Got::Err(RecvTimeoutError::Timeout),
                }
            }
            Handle::Lossy(c) => {
                let got = if wait {
                    c.recv_timeout_into(&mut buf, WAIT)
                } else {
                    c.try_recv_into(&mut buf).map_err(|e| match e {
                        TryRecvError::Empty => RecvTimeoutError::Timeout,
                        e => timed(e),
                    })
                };
                match got {
                    Ok(seq) => Got::Msg(seq, buf),
                    Err(e) => Got::Err(e),
                }
            }
        })
    }

    /// A lossy reader that waited in silence must not sit past the producer's claim: no
    /// record can be published there, so it would miss every message sent behind it. Forged
    /// positions can move it there (it recovers to a forged tail); then it must report
    /// `Corrupt` (it checks at every probe, and probes many times within `WAIT`). The claim
    /// read here is the one it saw: scribbles change only between operations.
    fn check_not_past_claim(&self, who: Who) {
        if let Some((pos, claim)) = self.past_claim(who) {
            panic!("{who:?}: waited in silence at {pos}, past the producer's claim {claim}");
        }
    }

    /// `who`'s position and the producer's claim, if `who` is a lossy reader past it.
    fn past_claim(&self, who: Who) -> Option<(u64, u64)> {
        let Some(Handle::Lossy(c)) = self.readers[who as usize].as_ref().map(|r| &r.handle) else {
            return None;
        };
        let pos = HostileSegment::lossy_position(c);
        let claim = self.seg.load_u64(PRODUCER_CLAIM);
        (pos > claim).then_some((pos, claim))
    }

    /// One receive by `who`, checked (`Timeout` stands for `Empty` without `wait`). False if
    /// nothing came.
    fn recv(&mut self, who: Who, wait: bool, closed: bool) -> bool {
        let Some(got) = self.receive(who, wait) else {
            return false;
        };
        if wait && matches!(got, Got::Err(RecvTimeoutError::Timeout)) {
            self.check_not_past_claim(who);
        }
        let follow = self.readers[who as usize]
            .as_ref()
            .expect("received")
            .follow;
        let came = matches!(got, Got::Msg(..));
        let r = self.readers[who as usize].as_mut().expect("received");
        let taken = r.taken;
        if let (Handle::Lossless(_), Got::Msg(seq, _)) = (&r.handle, &got) {
            // Order is checked, whatever else a scribble made unknowable: a lossless
            // consumer reports a gap as `Corrupt` rather than deliver across it.
            assert!(
                taken.is_none_or(|n| n == *seq),
                "{who:?}: message {seq} delivered after {taken:?} was expected"
            );
            r.taken = taken_after(*seq);
        }
        let next = match follow {
            Follow::Exact(mc) => self.check_lossless(who, mc, taken, got, wait, closed),
            // A lossy consumer that recovers from a lap trusts the claim and the tail for
            // where to restart: forged ones can move it anywhere (it is checked for safety
            // from then on).
            Follow::Lossy(next) if !self.header.is_empty() => {
                self.check_lossy(who, next, got, closed);
                self.readers[who as usize].as_mut().expect("received").moved = true;
                Follow::Safety
            }
            Follow::Lossy(next) => self.check_lossy(who, next, got, closed),
            Follow::Safety => {
                self.check_safe(who, &got);
                Follow::Safety
            }
        };
        self.readers[who as usize]
            .as_mut()
            .expect("received")
            .follow = next;
        came
    }

    fn check_safe(&self, who: Who, got: &Got) {
        match got {
            Got::Msg(_, bytes) => assert!(
                bytes.len() as u64 <= self.model.max_message,
                "{who:?}: a message of {} bytes",
                bytes.len()
            ),
            Got::Err(RecvTimeoutError::Lagged(n)) => assert!(
                // A forged sequence number, or positions a takeover moved, make a plausible
                // loss large; otherwise it is at most what was ever sent.
                self.seq_forged
                    || self.derailed
                    || !self.dirty_seq.is_empty()
                    || self.readers[who as usize].as_ref().is_some_and(|r| r.moved)
                    || *n <= self.sends + self.model.cap / HDR,
                "{who:?}: Lagged({n}) after {} messages",
                self.sends
            ),
            Got::Err(_) => {}
        }
    }

    fn check_lossless(
        &mut self,
        who: Who,
        mut mc: ModelConsumer,
        taken: Option<u64>,
        got: Got,
        wait: bool,
        closed: bool,
    ) -> Follow {
        let m = &self.model;
        let sent = m.sent(mc.next_seq).cloned();
        // Where its next record lies (after a padding record, perhaps), or the tail.
        let at = sent.as_ref().map_or(m.tail, |s| s.pos);
        let stamp_dirty = self.touched(mc.cursor, at + 8);
        let tail_dirty = self.header_dirty(Field::Tail);
        match got {
            Got::Msg(seq, bytes) => {
                let Some(s) = sent else {
                    panic!(
                        "{who:?}: message {seq} ({} bytes) was never sent",
                        bytes.len()
                    );
                };
                assert_eq!(bytes, s.payload, "{who:?}: message {} differs", mc.next_seq);
                assert!(
                    seq == mc.next_seq || self.dirty_seq.contains(&(s.pos + RECORD_SEQ)),
                    "{who:?}: message {} delivered as {seq}, its header was not scribbled",
                    mc.next_seq
                );
                mc.released(s.next, m);
                Follow::Exact(mc)
            }
            Got::Err(RecvTimeoutError::Timeout) => {
                if wait {
                    // An Empty that lasts: only if nothing is there, or the tail lies.
                    assert!(
                        sent.is_none() || tail_dirty,
                        "{who:?}: no message {} within {WAIT:?}, but the published tail {} \
                         proves its record at {at} exists (stamp scribbled: {stamp_dirty}): \
                         that is corruption to report",
                        mc.next_seq,
                        m.tail
                    );
                } else {
                    assert!(
                        sent.is_none() || stamp_dirty,
                        "{who:?}: Empty, but message {} at {at} is published and intact",
                        mc.next_seq
                    );
                }
                mc.found_empty(m);
                Follow::Exact(mc)
            }
            Got::Err(RecvTimeoutError::Corrupt(e)) => {
                // A number out of order: the record's own number was scribbled, or the
                // consumer took a scribbled number before (the first message it took can
                // carry any).
                let out_of_order = sent.is_some()
                    && e.position == at
                    && (self.dirty_seq.contains(&(at + RECORD_SEQ))
                        || taken.is_some_and(|n| n != mc.next_seq));
                assert!(
                    (stamp_dirty && (mc.cursor..=at).contains(&e.position))
                        || tail_dirty
                        || out_of_order,
                    "{who:?}: {e} at cursor {} (next record at {at}), and nothing there was \
                     scribbled",
                    mc.cursor
                );
                Follow::Exact(mc)
            }
            Got::Err(RecvTimeoutError::Disconnected) if closed => {
                // A peer that forged both the stamp and a tail at or below it made the end
                // of the stream look consistent: no format without checksums can tell.
                let forged_empty =
                    tail_dirty && stamp_dirty && self.seg.load_u64(PRODUCER_TAIL) <= at;
                assert!(
                    sent.is_none() || forged_empty,
                    "{who:?}: Disconnected, but message {} at {at} is below the published \
                     tail {} (stamp scribbled: {stamp_dirty}): that is corruption to report",
                    mc.next_seq,
                    m.tail
                );
                Follow::Exact(mc)
            }
            Got::Err(e) => panic!("{who:?} at {} (next {}): {e:?}", mc.cursor, mc.next_seq),
        }
    }

    fn check_lossy(&mut self, who: Who, next: Option<u64>, got: Got, closed: bool) -> Follow {
        let m = &self.model;
        let explained = self.any_dirty() || self.claim_forged;
        match got {
            Got::Msg(seq, bytes) => {
                let exact = m.sent(seq).is_some_and(|s| s.payload == bytes)
                    && next.is_none_or(|n| n == seq);
                if exact {
                    return Follow::Lossy(Some(seq + 1));
                }
                assert!(
                    !self.dirty_seq.is_empty(),
                    "{who:?}: message {seq} ({} bytes, expected {next:?}) is not what was \
                     sent, and no sequence number was scribbled",
                    bytes.len()
                );
                self.check_safe(who, &Got::Msg(seq, bytes));
                Follow::Safety
            }
            Got::Err(RecvTimeoutError::Lagged(n)) => {
                assert!(n > 0, "{who:?}: Lagged(0)");
                let Some(next) = next else {
                    self.check_safe(who, &got);
                    return Follow::Safety;
                };
                assert!(
                    next + n <= m.next_seq || !self.dirty_seq.is_empty(),
                    "{who:?}: Lagged({n}) at {next}, only {} were sent",
                    m.next_seq
                );
                if (next..next + n).all(|s| m.may_be_lost(s)) {
                    return Follow::Lossy(Some(next + n));
                }
                assert!(
                    explained,
                    "{who:?}: reported {next}..{} lost, but they are intact and nothing was \
                     scribbled",
                    next + n
                );
                self.check_safe(who, &got);
                Follow::Safety
            }
            Got::Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                let Some(next) = next else {
                    return Follow::Lossy(None);
                };
                if next == m.next_seq {
                    return Follow::Lossy(Some(next));
                }
                let claim = self.seg.load_u64(PRODUCER_CLAIM);
                // A scribbled tail can be anything: saturate.
                let impossible = claim > self.seg.load_u64(PRODUCER_TAIL).saturating_add(m.cap);
                let s = m.sent(next).expect("next < next_seq");
                let intact = m.intact(s.pos) && !self.touched(s.pos, s.pos + HDR);
                assert!(
                    !(impossible && intact && self.header_dirty(Field::Claim)),
                    "{who:?}: Empty with message {next} present and an impossible claim \
                     {claim}: that is corruption to report"
                );
                assert!(
                    explained,
                    "{who:?}: {:?} with message {next} sent (closed: {closed})",
                    got
                );
                Follow::Lossy(Some(next))
            }
            Got::Err(RecvTimeoutError::Corrupt(e)) => {
                assert!(explained, "{who:?}: {e}, and nothing was scribbled");
                Follow::Lossy(next)
            }
            Got::Err(e) => panic!("{who:?}: {e:?}"),
        }
    }

    /// Drop the producer and take the ring over; true if a new producer took it.
    fn takeover(&mut self) -> bool {
        let Some(old) = self.producer.take() else {
            return false;
        };
        drop(old);
        let nextseq_dirty = self.header_dirty(Field::NextSeq);
        let witness_dirty = self.header_dirty(Field::Tail)
            || self.header_dirty(Field::Head)
            || self.touched(
                self.model.tail.saturating_sub(self.model.cap),
                self.model.tail + 8,
            );
        match self.seg.producer() {
            Ok(p) => {
                let (tail, seq) = (self.seg.load_u64(PRODUCER_TAIL), p.next_seq());
                if !self.derailed && seq != self.model.next_seq {
                    assert!(
                        nextseq_dirty && witness_dirty,
                        "a takeover continued at sequence number {seq}, the stream is at {}",
                        self.model.next_seq
                    );
                    self.seq_forged = true;
                    self.derail();
                }
                if !self.derailed && tail != self.model.tail {
                    assert!(
                        self.header_dirty(Field::Tail),
                        "a takeover continued at {tail}, the stream ends at {}",
                        self.model.tail
                    );
                    self.derail();
                }
                // It rewrote the stamp at the tail.
                let t = self.model.tail;
                self.dirty.remove(&t);
                self.producer = Some(p);
                self.model.takeover();
                true
            }
            Err(OpenError::Segment(
                SegmentError::BadPosition { .. } | SegmentError::BadStamp { .. },
            )) => {
                // The stream stays closed: consumers drain it and see `Disconnected`.
                assert!(
                    self.any_dirty(),
                    "a takeover refused a stream nobody scribbled"
                );
                false
            }
            Err(e) => panic!("takeover: {e}"),
        }
    }

    /// Positions are no longer the model's: every consumer is checked for safety only.
    fn derail(&mut self) {
        self.derailed = true;
        for r in self.readers.iter_mut().flatten() {
            r.follow = Follow::Safety;
        }
    }

    fn attach(&mut self, oldest: bool, lossy: bool) {
        let Some(p) = self.producer.as_ref() else {
            return;
        };
        drop(self.readers[2].take());
        let start = if oldest {
            StartAt::Oldest
        } else {
            StartAt::Next
        };
        let b = Consumer::builder().start_at(start);
        let handle = if lossy {
            b.lossy().attach_to(p).map(Handle::Lossy)
        } else {
            b.attach_to(p).map(Handle::Lossless)
        };
        let handle = match handle {
            Ok(h) => h,
            Err(OpenError::Segment(SegmentError::BadPosition { .. }))
                if self.header_dirty(Field::Claim) || self.header_dirty(Field::Tail) =>
            {
                return
            }
            // A lossy consumer that finds neither a published nor an unpublished stamp at its
            // start: corruption (a scribbled tail word), not a race to retry.
            Err(OpenError::Segment(SegmentError::BadStamp { .. }))
                if lossy
                    && (self.derailed
                        || !self.header.is_empty()
                        || self.touched(self.model.tail, self.model.tail + 8)) =>
            {
                return
            }
            Err(e) => panic!("attach (oldest {oldest}, lossy {lossy}): {e}"),
        };
        let slot = (0..3)
            .find(|&i| self.readers[..2].iter().flatten().all(|r| r.slot != i))
            .expect("a free slot");
        let m = &self.model;
        let clean = !self.derailed
            && self.header.is_empty()
            && !self.claim_forged
            && !self.touched(m.tail.saturating_sub(m.cap), m.tail + 8);
        let follow = if !clean {
            Follow::Safety
        } else if lossy {
            Follow::Lossy((!oldest).then_some(m.next_seq))
        } else {
            let start = self.seg.load_u64(self.seg.slot_offset(slot) + SLOT_CURSOR);
            if oldest {
                m.check_oldest_start(start);
            } else {
                assert_eq!(start, m.tail, "Next starts at the tail");
            }
            Follow::Exact(ModelConsumer::new(start, m.first_seq_from(start)))
        };
        self.readers[2] = Some(Reader {
            handle,
            slot,
            follow,
            moved: lossy && !clean,
            taken: None,
        });
    }

    fn run(&mut self, op: &Op) {
        let mut took_over = false;
        match *op {
            Op::Send { len, fill } => self.send(len, fill),
            Op::Recv { who, n } => {
                for _ in 0..=n % 8 {
                    if !self.recv(who, false, self.producer.is_none()) {
                        break;
                    }
                }
            }
            Op::Wait { who } => {
                // Only where something must come (or be reported): a caught-up consumer
                // would wait in vain.
                // (Not while the tail is forged: a consumer may then rightly wait.)
                // A lossy reader past the producer's claim must report it.
                let due = match self.readers[who as usize].as_ref().map(|r| r.follow) {
                    Some(Follow::Exact(mc)) => {
                        mc.next_seq < self.model.next_seq && !self.header_dirty(Field::Tail)
                    }
                    _ => self.past_claim(who).is_some(),
                };
                let closed = self.producer.is_none();
                if due && self.waits < MAX_WAITS {
                    self.waits += 1;
                    self.recv(who, true, closed);
                } else {
                    self.recv(who, false, closed);
                }
            }
            Op::Header { field, value } => {
                self.scribble_header(field, value);
                return; // lasts for the next operation
            }
            Op::Stamp { back, value } => self.stamp(back, value),
            Op::Seq { back, delta } => self.seq(back, delta),
            Op::Takeover => took_over = self.takeover(),
            Op::Attach { oldest, lossy } => self.attach(oldest, lossy),
        }
        self.restore_header(took_over);
    }

    /// Close: every consumer drains what is left, then sees the end (or reports what
    /// stands in its way).
    fn close(mut self) {
        self.restore_header(false);
        drop(self.producer.take());
        for who in [Who::A, Who::B, Who::C] {
            for _ in 0..=self.model.next_seq + 2 {
                if !self.recv(who, false, true) {
                    break;
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let cap = 1u64 << (8 + input.capacity_shift % 3); // 256 B to 1 KiB
    let limit = max_message_for(cap);
    let max_message = match input.max_message % 4 {
        0 => limit,
        _ => u64::from(input.max_message) % (limit + 1),
    };
    let seg = HostileSegment::fresh(cap as usize, max_message as usize, 3).expect("valid");
    let producer = seg.producer().expect("fresh segment");
    let a = seg.consumer(StartAt::Next).expect("slot 0");
    let b = Consumer::builder()
        .lossy()
        .attach_to(&producer)
        .expect("slot 1");
    assert_eq!(
        seg.load_u32(seg.slot_offset(1) + SLOT_STATE) & 0xff,
        3,
        "B is lossy"
    );
    let mut h = Harness {
        seg,
        producer: Some(producer),
        model: RingModel::new(cap, max_message),
        readers: [
            Some(Reader {
                handle: Handle::Lossless(a),
                slot: 0,
                follow: Follow::Exact(ModelConsumer::new(0, 0)),
                moved: false,
                taken: None,
            }),
            Some(Reader {
                handle: Handle::Lossy(b),
                slot: 1,
                follow: Follow::Lossy(Some(0)),
                moved: false,
                taken: None,
            }),
            None,
        ],
        dirty: BTreeSet::new(),
        dirty_seq: BTreeSet::new(),
        header: Vec::new(),
        claim_forged: false,
        derailed: false,
        waits: 0,
        sends: 0,
        seq_forged: false,
    };
    for op in input.ops.iter().take(MAX_OPS) {
        h.run(op);
    }
    h.close();
});
