//! Framing: messages of arbitrary lengths (wrap-around, short tail fragments, padding
//! records), with bytes scribbled into the ring between send and receive, read by two
//! consumers at their own pace.
//!
//! # Oracle
//! The format has no checksum, so the target cannot demand that every scribble be caught.
//! It demands exactly what the record-header validation promises, and that nothing else
//! changes what a consumer sees:
//!
//! * A consumer at position `c` (after skipping a tail fragment shorter than a header) must
//!   behave as the header words it can see at `c` dictate: `stamp != c` → `Empty` (not
//!   published), unless the stamp is a later lap's position (`c + k * capacity`): then
//!   `Corrupt { position: c }` (overrun); kind "message" with `len > max_message` or a record crossing the end of the
//!   ring → `Corrupt { position: c }`; kind "padding" where the largest record would still
//!   fit → `Corrupt`; any other kind → `Corrupt`; valid padding → skip to the next lap and
//!   look again; a message whose `seq` word is not the number after the last message this
//!   consumer took (if it took one) → `Corrupt { position: c }` (producers number without
//!   gaps); otherwise a message of exactly `len` bytes read in place at `c + 24`, with the
//!   `seq` word as its sequence number. Any other outcome, a panic or an out-of-bounds
//!   access fails.
//! * When no scribble touched the words the consumer read (the header words on its way, and
//!   the payload), the message is exactly the one the producer sent next (bytes, length and
//!   sequence number), `Empty` happens only when the consumer has received everything sent,
//!   and `Full` happens exactly when the model says so (see `shmcast_fuzz`).
//! * A scribbled payload is delivered as scribbled (no checksum); the consumer stays in
//!   step. A scribbled header that passes validation, the sequence check included, but
//!   differs from what the producer wrote (a `len` that still fits, a message turned into
//!   padding or padding into a message, a forged stamp on the unpublished slot ahead, the
//!   number of the first message a consumer takes) is *undetectable at that record*: the
//!   consumer must still do what the header says (a gap it opens shows at the next message,
//!   as `Corrupt`), but its position is no longer the model's, so from then on only safety
//!   and order are checked for it (bounded calls, messages no longer than the maximum and
//!   inside the ring, numbered without gaps), and `Full` is no longer predicted. See
//!   tests/fuzz_regressions.rs for these cases.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmcast::fuzzing::layout::{
    KIND_MESSAGE, KIND_PADDING, MAX_POSITION, PRODUCER_TAIL, RECORD_META, RECORD_SEQ,
};
use shmcast::fuzzing::HostileSegment;
use shmcast::{Consumer, Producer, StartAt, TryRecvError, TrySendError};
use shmcast_fuzz::{
    gate, max_message_for, payload, record_size, taken_after, ModelConsumer, RingModel, HDR,
};
use std::collections::BTreeSet;

const MAX_STEPS: usize = 300;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    /// A header word of one of the records in the ring (counted back from the newest).
    Header { back: u8, at: u8 },
    /// The stamp word at the tail, marked unpublished until the next record is written.
    Ahead { at: u8 },
    /// A payload byte of one of the messages in the ring.
    Payload { back: u8, at: u16 },
    /// Anywhere in the data ring.
    Ring { at: u16 },
}

#[derive(Arbitrary, Debug)]
enum Step {
    Send { len: u16, fill: u8 },
    Recv { second: bool, n: u8 },
    Scribble { target: Target, bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_shift: u8,
    max_message: u16,
    steps: Vec<Step>,
}

/// What the validation rules say a consumer at `c` must do, given the ring's contents.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Nothing published at `at` (the cursor after skipping fragments and padding).
    Empty { at: u64 },
    /// A corrupt header at `at`.
    Corrupt { at: u64 },
    /// A later lap's stamp at `at`: reported as corrupt.
    Overrun { at: u64 },
    /// A message at `at`.
    Message {
        at: u64,
        len: u64,
        seq: u64,
        end: u64,
    },
}

/// A consumer the oracle follows exactly, or only checks for safety.
#[derive(Debug)]
enum Follow {
    Exact(ModelConsumer),
    Safety,
}

struct Harness {
    seg: HostileSegment,
    producer: Option<Producer>,
    model: RingModel,
    consumers: [(Consumer, Follow); 2],
    /// Ring words (positions rounded down to 8) scribbled since the producer last wrote them.
    scribbled: BTreeSet<u64>,
    /// Per consumer: the number after the last message it took, the only one it may take
    /// next (`None` before the first).
    taken: [Option<u64>; 2],
    undetectable: u32,
}

impl Harness {
    fn max_record(&self) -> u64 {
        record_size(self.model.max_message)
    }

    /// The validation rules applied to the ring as it is now, from cursor `c`, for a
    /// consumer that must take message `taken` next (any, if `None`).
    fn expect_at(&self, mut c: u64, taken: Option<u64>) -> Expect {
        let m = &self.model;
        // A fragment skip or a padding record moves to the next lap, where neither repeats.
        for _ in 0..3 {
            let room = m.room(c);
            if room < HDR {
                c += room;
                continue;
            }
            let stamp = self.seg.ring_word(c);
            if stamp != c {
                // A later lap's position: the producer overran a record this consumer never
                // released (only a scribble can do that to a consumer that was not evicted).
                if stamp > c && stamp <= MAX_POSITION && (stamp - c).is_multiple_of(m.cap) {
                    return Expect::Overrun { at: c };
                }
                return Expect::Empty { at: c };
            }
            let meta = self.seg.ring_word(c + RECORD_META);
            let (len, kind) = (meta & 0xffff_ffff, (meta >> 32) as u32);
            match kind {
                KIND_MESSAGE if len <= m.max_message && record_size(len) <= room => {
                    let seq = self.seg.ring_word(c + RECORD_SEQ);
                    if taken.is_some_and(|n| n != seq) {
                        return Expect::Corrupt { at: c };
                    }
                    return Expect::Message {
                        at: c,
                        len,
                        seq,
                        end: m.skip_short(c + record_size(len)),
                    };
                }
                KIND_PADDING if room < self.max_record() => c += room,
                _ => return Expect::Corrupt { at: c },
            }
        }
        unreachable!("two laps skipped in one receive")
    }

    /// Was any ring word in `from..to` scribbled (and not rewritten by the producer since)?
    fn touched(&self, from: u64, to: u64) -> bool {
        self.scribbled.range(from & !7..to).next().is_some()
    }

    fn send(&mut self, len: u16, fill: u8) {
        let m = &self.model;
        let len = u64::from(len) % (m.max_message + 1);
        let plan = m.plan(len);
        let exact = self
            .consumers
            .iter()
            .map(|(_, f)| match f {
                Follow::Exact(mc) => Some(mc),
                Follow::Safety => None,
            })
            .collect::<Option<Vec<_>>>();
        let data = payload(m.next_seq, len as usize, fill);
        let r = self.producer.as_mut().expect("open").try_send(&data);
        if let Some(exact) = exact {
            let full = plan.write_end() > gate(exact, m.tail) + m.cap;
            let want = if full {
                Err(TrySendError::Full)
            } else {
                Ok(())
            };
            assert_eq!(r, want, "try_send({len}) at tail {}", m.tail);
        }
        if r.is_ok() {
            // The producer rewrote the padding header, the record and the stamp ahead.
            if plan.pad {
                self.forget(plan.start, plan.start + HDR);
            }
            self.forget(plan.pos, plan.pos + record_size(len));
            self.forget(plan.next, plan.next + 8);
            self.model.commit(plan, data);
        } else {
            assert_eq!(r, Err(TrySendError::Full));
        }
    }

    fn forget(&mut self, from: u64, to: u64) {
        let gone: Vec<u64> = self.scribbled.range(from..to).copied().collect();
        for w in gone {
            self.scribbled.remove(&w);
        }
    }

    fn scribble(&mut self, target: Target, bytes: &[u8]) {
        let bytes = &bytes[..bytes.len().min(8)];
        let m = &self.model;
        let window: Vec<_> = m.records_from(m.tail.saturating_sub(m.cap)).collect();
        let at = match target {
            Target::Header { back, at } => {
                let Some(&(pos, _)) = window
                    .iter()
                    .rev()
                    .nth(usize::from(back) % window.len().max(1))
                else {
                    return;
                };
                pos + u64::from(at) % HDR
            }
            Target::Ahead { at } => m.tail + u64::from(at) % 8,
            Target::Payload { back, at } => {
                let msgs: Vec<_> = window
                    .iter()
                    .filter_map(|&(p, r)| match r {
                        shmcast_fuzz::Rec::Message { len, .. } if len > 0 => Some((p, len)),
                        _ => None,
                    })
                    .collect();
                let Some(&(pos, len)) =
                    msgs.iter().rev().nth(usize::from(back) % msgs.len().max(1))
                else {
                    return;
                };
                pos + HDR + u64::from(at) % len
            }
            Target::Ring { at } => m.tail + u64::from(at),
        };
        // Positions in the lap that `at` falls in, as the stream numbers them: the ring
        // index is what matters, the oracle tracks words by the position readers use.
        for (i, b) in bytes.iter().enumerate() {
            let p = at + i as u64;
            // A scribble wraps into the ring at index p % cap; readers that reach that
            // index will do so at a position in the current window.
            let p = self.window_position(p);
            // SAFETY: no message of this ring is held in place while it is scribbled on.
            unsafe { self.seg.scribble_ring(p, &[*b]) }
            self.scribbled.insert(p & !7);
        }
    }

    /// The position in `[tail - cap + 8, tail + 8)` (what readers and the stamp ahead can
    /// be at) with the same ring index as `p`.
    fn window_position(&self, p: u64) -> u64 {
        let m = &self.model;
        let lo = (m.tail + 8).saturating_sub(m.cap);
        let idx = p % m.cap;
        let base = lo - lo % m.cap;
        let q = base + idx;
        if q < lo {
            q + m.cap
        } else {
            q
        }
    }

    fn recv(&mut self, k: usize, n: u8) {
        for _ in 0..=n % 8 {
            if !self.recv_one(k) {
                break;
            }
        }
    }

    /// One `try_recv` by consumer `k`; false if nothing came.
    fn recv_one(&mut self, k: usize) -> bool {
        let closed = self.producer.is_none();
        let mc = match &self.consumers[k].1 {
            Follow::Exact(mc) => *mc,
            Follow::Safety => return self.recv_safely(k),
        };
        let expect = self.expect_at(mc.cursor, self.taken[k]);
        let got = {
            let seg = &self.seg;
            let (c, _) = &mut self.consumers[k];
            c.try_recv()
                .map(|m| (m.seq(), m.to_vec(), seg.ring_contains(&m)))
        };
        match (got, &expect) {
            (Ok((got_seq, bytes, in_ring)), Expect::Message { at, len, seq, end }) => {
                assert_eq!(bytes.len() as u64, *len, "consumer {k} at {at}");
                assert_eq!(got_seq, *seq, "consumer {k} at {at}");
                assert!(in_ring, "consumer {k}: message outside the ring");
                assert_eq!(bytes, self.seg.ring_bytes(at + HDR, *len as usize));
                self.taken[k] = taken_after(got_seq);
                let sent = self.model.sent(mc.next_seq);
                let in_step = *seq == mc.next_seq
                    && sent.is_some_and(|s| s.pos == *at && s.payload.len() as u64 == *len);
                if in_step {
                    if bytes != sent.expect("checked").payload {
                        assert!(
                            self.touched(at + HDR, at + HDR + len),
                            "consumer {k}: message {seq} differs, but its payload was not \
                             scribbled"
                        );
                    }
                } else {
                    // Undetectable by the format: allowed only if a header word on the way
                    // was scribbled.
                    assert!(
                        self.touched(mc.cursor, at + HDR),
                        "consumer {k}: {expect:?} is not message {} the producer sent, and \
                         no header on the way was scribbled",
                        mc.next_seq
                    );
                    self.undetectable += 1;
                }
                self.consumers[k].1 = if in_step {
                    let mut mc = mc;
                    mc.released(*end, &self.model);
                    Follow::Exact(mc)
                } else {
                    Follow::Safety
                };
                true
            }
            (Err(TryRecvError::Empty), Expect::Empty { at }) if !closed => {
                self.check_nothing_skipped(k, mc, *at);
                let mut mc = mc;
                mc.cursor = *at;
                mc.published = *at;
                self.consumers[k].1 = self.follow_after_skip(mc);
                false
            }
            (Err(TryRecvError::Disconnected), Expect::Empty { at }) if closed => {
                self.check_nothing_skipped(k, mc, *at);
                false
            }
            // An unpublished-looking stamp below the producer's published tail is corruption
            // (issue 10, item 4): reported when the consumer probes the tail, so `Empty` or
            // `Corrupt`.
            (Err(TryRecvError::Corrupt(e)), Expect::Empty { at })
                if e.position == *at
                    && self.seg.load_u64(PRODUCER_TAIL) > *at
                    && self.touched(mc.cursor, at + HDR) =>
            {
                let mut mc = mc;
                mc.cursor = *at;
                mc.published = *at;
                self.consumers[k].1 = Follow::Exact(mc);
                false
            }
            (Err(TryRecvError::Corrupt(e)), Expect::Corrupt { at } | Expect::Overrun { at }) => {
                assert_eq!(e.position, *at, "consumer {k}");
                assert!(
                    self.touched(mc.cursor, at + HDR),
                    "consumer {k}: corrupt header at {at} that nobody scribbled"
                );
                // Nothing published; only fragment and padding skips moved the cursor.
                let mut mc = mc;
                mc.cursor = *at;
                self.consumers[k].1 = self.follow_after_skip(mc);
                false
            }
            (got, _) => panic!(
                "consumer {k} at {}: got {:?}, the ring says {expect:?}",
                mc.cursor,
                got.map(|(seq, bytes, _)| (seq, bytes.len()))
            ),
        }
    }

    /// A consumer whose cursor skips moved to `mc.cursor` without a message: exact still,
    /// unless it skipped a message the producer sent. That takes a record header scribbled
    /// into padding (`check_nothing_skipped` asserts the scribble), undetectable by the
    /// format; its cursor may now be past the producer's tail, which the producer evicts as
    /// impossible, so from then on only safety is checked.
    fn follow_after_skip(&mut self, mc: ModelConsumer) -> Follow {
        if self
            .model
            .sent(mc.next_seq)
            .is_some_and(|s| s.pos < mc.cursor)
        {
            self.undetectable += 1;
            Follow::Safety
        } else {
            Follow::Exact(mc)
        }
    }

    /// `Empty` (or the end of the stream) at `at`: either everything sent was received, or
    /// a scribble hides the next record.
    fn check_nothing_skipped(&self, k: usize, mc: ModelConsumer, at: u64) {
        if let Some(s) = self.model.sent(mc.next_seq) {
            assert!(
                self.touched(mc.cursor, s.pos + HDR),
                "consumer {k}: Empty at {at}, but message {} at {} was sent and no header on \
                 the way was scribbled",
                mc.next_seq,
                s.pos
            );
        }
    }

    fn recv_safely(&mut self, k: usize) -> bool {
        let max = self.model.max_message as usize;
        let seg = &self.seg;
        let taken = &mut self.taken[k];
        let (c, _) = &mut self.consumers[k];
        match c.try_recv() {
            Ok(m) => {
                assert!(m.len() <= max);
                assert!(seg.ring_contains(&m));
                // Order holds whatever was scribbled: a gap is `Corrupt`.
                assert!(
                    taken.is_none_or(|n| n == m.seq()),
                    "consumer {k}: message {} taken after {taken:?} was expected",
                    m.seq()
                );
                *taken = taken_after(m.seq());
                std::hint::black_box(m.iter().fold(0u8, |a, b| a ^ b));
                true
            }
            Err(_) => false,
        }
    }
}

fuzz_target!(|input: Input| {
    let cap = 1u64 << (8 + input.capacity_shift % 4); // 256 B to 2 KiB
    let limit = max_message_for(cap);
    let max_message = match input.max_message % 4 {
        0 => limit,
        _ => u64::from(input.max_message) % (limit + 1),
    };
    let seg = HostileSegment::fresh(cap as usize, max_message as usize, 2).expect("valid");
    let producer = seg.producer().expect("fresh segment");
    let a = seg.consumer(StartAt::Next).expect("slot 0");
    let b = seg.consumer(StartAt::Next).expect("slot 1");
    let mut h = Harness {
        seg,
        producer: Some(producer),
        model: RingModel::new(cap, max_message),
        consumers: [
            (a, Follow::Exact(ModelConsumer::new(0, 0))),
            (b, Follow::Exact(ModelConsumer::new(0, 0))),
        ],
        scribbled: BTreeSet::new(),
        taken: [None; 2],
        undetectable: 0,
    };
    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            Step::Send { len, fill } => h.send(*len, *fill),
            Step::Recv { second, n } => h.recv(usize::from(*second), *n),
            Step::Scribble { target, bytes } => h.scribble(*target, bytes),
        }
    }
    // Close: both consumers drain what they can, then see the end of the stream.
    h.producer = None;
    for k in 0..2 {
        for _ in 0..=h.model.next_seq + 2 {
            if !h.recv_one(k) {
                break;
            }
        }
    }
    std::hint::black_box(h.undetectable);
});
