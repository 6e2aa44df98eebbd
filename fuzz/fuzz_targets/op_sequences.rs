//! Arbitrary sequences of producer and consumer operations on an in-process ring, checked
//! step by step against [`RingModel`]:
//!
//! * every lossless consumer receives the same messages (bytes and sequence numbers) in the
//!   same order; `Full` and `Empty` happen exactly when the model says so; `StartAt::Oldest`
//!   starts within its documented bounds (read from the consumer's slot and checked by the
//!   model); a message held in place is never overwritten; `NoFreeSlot` comes exactly when
//!   every slot is taken; after the producer is dropped every consumer drains what is left
//!   and then sees `Disconnected`;
//! * lossy consumers (which never gate) deliver exact messages with consecutive sequence
//!   numbers, except for gaps of exactly what they report as `Lagged`, and are `Empty` only
//!   once caught up;
//! * `send_batch`, with or without gating consumers (lossy-only rings and rings nobody reads
//!   included), and with batches larger than the free ring: the model splits the batch
//!   where the real producer must publish before it goes on (a batch never passes its own
//!   first, unpublished record), and after every producer operation the ring is audited
//!   against the model: every intact record carries its exact header, the payloads just
//!   written are the bytes sent, and the tail holds the unpublished stamp with the next
//!   sequence number (this is what catches a batch lapping itself);
//! * `evict_after` (the ring's producer, or one taking over, evicts consumers that gate it):
//!   after every producer operation the slots are read back; only consumers that attached
//!   while eviction was on, and that gated the very write the producer was attempting, may
//!   be evicted; the result of the operation must be what the model says with the remaining
//!   consumers; a message held by a consumer that is evicted meanwhile never changes, and an
//!   evicted consumer gets `Evicted` from then on, never changed or missing bytes;
//! * takeover: the producer is dropped (closing the stream) and a new one takes the ring
//!   over at once (`HostileSegment::producer`, optionally evicting): the stream goes on at the
//!   same position and sequence number, and consumers keep receiving without a gap.
//!
//! Blocking calls (`send`, `reserve`, `send_batch`) are only made when the model says they
//! succeed at once; when it says `Full`, the target calls `send_timeout(.., 0)` /
//! `try_reserve` instead and expects `Timeout` / `Full` (or what evictions allow). A wrong
//! "fits" prediction would therefore hang, which libFuzzer reports as a timeout. Evictions
//! need time (the producer probes at most every 5 ms): `SendWait` waits up to 12 ms, a few
//! times per input at most.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmcast::fuzzing::layout::{
    PRODUCER_TAIL, SLOT_CURSOR, SLOT_EVICTED, SLOT_LOSSLESS, SLOT_STATE,
};
use shmcast::fuzzing::HostileSegment;
use shmcast::{
    Consumer, LossyConsumer, OpenError, Producer, SendError, SendTimeoutError, StartAt,
    TryRecvError, TrySendError, WaitPolicy,
};
use shmcast_fuzz::{gate, max_message_for, payload, ModelConsumer, Reserve, RingModel};
use std::time::Duration;

/// Operations per input, at most.
const MAX_OPS: usize = 400;
/// Messages per batch, at most.
const MAX_BATCH: usize = 32;
/// Sends that wait for an eviction (12 ms each at most), per input.
const MAX_TIMED: u32 = 3;
/// How long such a send waits: two liveness probes (5 ms apart) are needed to evict.
const EVICT_WAIT: Duration = Duration::from_millis(12);

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Msg {
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// `send` (or `send_timeout(0)` if the model says full).
    Send(Msg),
    TrySend(Msg),
    /// `send_timeout(.., 0)`.
    SendTimeout(Msg),
    /// `send_timeout(.., 12 ms)` on an evicting producer (else as `SendTimeout`).
    SendWait(Msg),
    ReserveCommit {
        msg: Msg,
        blocking: bool,
    },
    ReserveAbort {
        msg: Msg,
        blocking: bool,
    },
    /// `send_batch`: the longest prefix the model says completes without waiting (a longer
    /// one would block for ever), or all of it if one message is too large (refused whole).
    SendBatch(Vec<Msg>),
    TryRecv(u8),
    /// Receive a message, keep it borrowed while the producer tries to send (waiting for an
    /// eviction with `wait`, as `SendWait`), then check it is intact.
    HoldAndSend {
        consumer: u8,
        msg: Msg,
        wait: bool,
    },
    /// `try_recv` until `Empty`.
    Drain(u8),
    Attach {
        oldest: bool,
    },
    Detach(u8),
    AttachLossy {
        oldest: bool,
    },
    /// `try_recv_into` on a lossy consumer, `n + 1` times at most.
    RecvLossy {
        consumer: u8,
        n: u8,
    },
    DetachLossy(u8),
    /// Drop the producer and take the ring over with a new one (evicting or not).
    Takeover {
        evicting: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_shift: u8,
    max_message: u16,
    max_consumers: u8,
    /// The first producer evicts consumers that gate it (`evict_after(0)`).
    evicting: bool,
    ops: Vec<Op>,
}

/// A lossless consumer and what the model knows of it.
struct Lossless {
    handle: Consumer,
    model: ModelConsumer,
    /// The slot it took.
    slot: u32,
    /// It attached while the producer evicted stuck consumers: it copies messages out and
    /// may be evicted.
    evictable: bool,
    /// The producer evicted it: every receive says `Evicted`.
    evicted: bool,
}

/// A lossy consumer and what the model knows of it.
struct Lossy {
    handle: LossyConsumer,
    slot: u32,
    /// The sequence number it must deliver next; unknown for an `Oldest` consumer until
    /// its first message or loss report.
    next: Option<u64>,
}

/// What a send-like call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got {
    Sent,
    /// Reserved, then dropped without committing.
    Aborted,
    /// `Full`, or `Timeout` from `send_timeout`.
    Full,
    TooLarge,
}

fn got_try<T>(r: &Result<T, TrySendError>) -> Got {
    match r {
        Ok(_) => Got::Sent,
        Err(TrySendError::Full) => Got::Full,
        Err(TrySendError::TooLarge { .. }) => Got::TooLarge,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn got_timeout(r: Result<(), SendTimeoutError>) -> Got {
    match r {
        Ok(()) => Got::Sent,
        Err(SendTimeoutError::Timeout) => Got::Full,
        Err(SendTimeoutError::TooLarge { .. }) => Got::TooLarge,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn got_send<T>(r: &Result<T, SendError>) -> Got {
    match r {
        Ok(_) => Got::Sent,
        Err(SendError::TooLarge { .. }) => Got::TooLarge,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

struct Harness {
    producer: Option<Producer>,
    ring: HostileSegment,
    model: RingModel,
    lossless: Vec<Lossless>,
    lossy: Vec<Lossy>,
    max_consumers: usize,
    /// The current producer evicts consumers that gate it.
    evicting: bool,
    timed: u32,
}

impl Harness {
    fn p(&mut self) -> &mut Producer {
        self.producer.as_mut().expect("a producer")
    }

    fn len_of(&self, msg: Msg) -> u64 {
        // Up to 8 bytes past the maximum, to cover `TooLarge`.
        u64::from(msg.len) % (self.model.max_message + 9)
    }

    fn index(&self, k: u8) -> Option<usize> {
        (!self.lossless.is_empty()).then(|| k as usize % self.lossless.len())
    }

    /// The published gate of the consumers that were not evicted.
    fn gate(&self) -> u64 {
        gate(
            self.lossless
                .iter()
                .filter(|l| !l.evicted)
                .map(|l| &l.model),
            self.model.tail,
        )
    }

    /// What a send of `len` bytes must do now (without changing the model).
    fn predict(&self, len: u64) -> Reserve {
        if len > self.model.max_message {
            return Reserve::TooLarge;
        }
        let plan = self.model.plan(len);
        if plan.write_end() > self.gate() + self.model.cap {
            Reserve::Full
        } else {
            Reserve::Fits(plan)
        }
    }

    /// After a producer operation: learn which consumers it evicted. Only a consumer that
    /// attached while eviction was on may be evicted, and (when `need` is known: the end of
    /// the write the producer attempted) only one that gated that write.
    fn sync_evictions(&mut self, need: Option<u64>) {
        let cap = self.model.cap;
        for (i, l) in self.lossless.iter_mut().enumerate() {
            if l.evicted {
                continue;
            }
            let state = self
                .ring
                .load_u32(self.ring.slot_offset(l.slot) + SLOT_STATE);
            if state & 0xff != SLOT_EVICTED {
                continue;
            }
            assert!(
                l.evictable,
                "consumer {i} reads in place (it attached while eviction was off) and was \
                 evicted: the bytes it may borrow are no longer protected"
            );
            if let Some(need) = need {
                assert!(
                    l.model.published + cap < need,
                    "consumer {i} was evicted, but its cursor {} did not gate the write \
                     ending at {need}",
                    l.model.published
                );
            }
            l.evicted = true;
        }
    }

    /// Check what a send of `len` bytes (payload `data`) did against the model, with the
    /// consumers that were not evicted, and move the model on.
    fn settle(&mut self, len: u64, got: Got, data: Vec<u8>) {
        let need = (len <= self.model.max_message).then(|| self.model.plan(len).write_end());
        self.sync_evictions(need);
        let g = self.gate();
        let tail = self.model.tail;
        match (self.model.try_reserve(len, g), got) {
            (Reserve::Fits(plan), Got::Sent) => {
                let from = self.model.next_seq;
                self.model.commit(plan, data);
                self.model.audit(&self.ring, from);
            }
            (Reserve::Fits(_), Got::Aborted) => self.model.audit(&self.ring, u64::MAX),
            (Reserve::Full, Got::Full) | (Reserve::TooLarge, Got::TooLarge) => {}
            (want, got) => panic!(
                "a send of {len} bytes at tail {tail} (gate {g}): got {got:?}, the model says \
                 {want:?}"
            ),
        }
    }

    fn send(&mut self, msg: Msg) {
        let len = self.len_of(msg);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        let got = match self.predict(len) {
            Reserve::Fits(_) | Reserve::TooLarge => got_send(&self.p().send(&data)),
            Reserve::Full => got_timeout(self.p().send_timeout(&data, Duration::ZERO)),
        };
        self.settle(len, got, data);
    }

    fn try_send(&mut self, msg: Msg) {
        let len = self.len_of(msg);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        let got = got_try(&self.p().try_send(&data));
        self.settle(len, got, data);
    }

    fn send_timeout(&mut self, msg: Msg, wait: bool) {
        let len = self.len_of(msg);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        let timeout = self.timed_wait(wait);
        let got = got_timeout(self.p().send_timeout(&data, timeout));
        self.settle(len, got, data);
    }

    /// How long a send may wait: `EVICT_WAIT` if asked, the producer evicts, and the
    /// input's budget allows; else zero.
    fn timed_wait(&mut self, wait: bool) -> Duration {
        if wait && self.evicting && self.timed < MAX_TIMED {
            self.timed += 1;
            EVICT_WAIT
        } else {
            Duration::ZERO
        }
    }

    fn reserve(&mut self, msg: Msg, blocking: bool, commit: bool) {
        let len = self.len_of(msg);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        let blocking = blocking && !matches!(self.predict(len), Reserve::Full);
        let p = self.producer.as_mut().expect("a producer");
        let got = if blocking {
            let r = p.reserve(len as usize);
            let got = got_send(&r);
            if let Ok(r) = r {
                assert_eq!(r.len() as u64, len);
                fill_reservation(r, commit, &data, msg.fill);
            }
            got
        } else {
            let r = p.try_reserve(len as usize);
            let got = got_try(&r);
            if let Ok(r) = r {
                assert_eq!(r.len() as u64, len);
                fill_reservation(r, commit, &data, msg.fill);
            }
            got
        };
        let got = match got {
            Got::Sent if !commit => Got::Aborted,
            g => g,
        };
        self.settle(len, got, data);
    }

    /// `send_batch`: a batch with a message that is too large is refused whole; otherwise
    /// the longest prefix the model says completes without waiting is sent. The model
    /// splits it as the producer must: each part starts with a record that fits under the
    /// gate, and goes on while records fit under the gate *as it was when the part started*
    /// (the part's first record is not published before the part ends, so the producer may
    /// not pass it: with nobody gating, a part is at most a ring long).
    fn send_batch(&mut self, msgs: &[Msg]) {
        let msgs = &msgs[..msgs.len().min(MAX_BATCH)];
        let lens: Vec<u64> = msgs.iter().map(|m| self.len_of(*m)).collect();
        let from = self.model.next_seq;
        let datas: Vec<Vec<u8>> = msgs
            .iter()
            .zip(&lens)
            .enumerate()
            .map(|(k, (m, &len))| payload(from + k as u64, len as usize, m.fill))
            .collect();
        if lens.iter().any(|&l| l > self.model.max_message) {
            let r = self.p().send_batch(&datas);
            assert!(matches!(r, Err(SendError::TooLarge { .. })), "{r:?}");
            assert_eq!(self.p().next_seq(), from, "a refused batch sent something");
            self.model.audit(&self.ring, u64::MAX);
            return;
        }
        let cap = self.model.cap;
        let consumers = self
            .lossless
            .iter()
            .filter(|l| !l.evicted)
            .map(|l| l.model.published)
            .min()
            .unwrap_or(u64::MAX - cap);
        let (mut tail, mut k) = (self.model.tail, 0);
        'parts: while k < lens.len() {
            // The producer publishes what it wrote, then waits for the next record.
            let g = consumers.min(tail);
            let mut first = true;
            while k < lens.len() {
                let plan = self.model.plan_from(tail, lens[k]);
                if plan.write_end() > g + cap {
                    if first {
                        break 'parts; // it would wait for ever: send only what came before
                    }
                    break;
                }
                first = false;
                tail = plan.next;
                k += 1;
            }
        }
        let r = self.p().send_batch(&datas[..k]);
        assert_eq!(
            r,
            Ok(()),
            "send_batch of {k} messages: the model says it completes"
        );
        self.sync_evictions(None);
        for (len, data) in lens.into_iter().zip(datas).take(k) {
            let Reserve::Fits(plan) = self.model.try_reserve(len, u64::MAX - cap) else {
                unreachable!("no gate");
            };
            self.model.commit(plan, data);
        }
        assert_eq!(self.p().next_seq(), self.model.next_seq);
        self.model.audit(&self.ring, from);
    }

    /// One `try_recv` on consumer `i`, checked; with `hold`, a send happens while the
    /// message is borrowed (waiting for an eviction with `wait`). Returns whether a message
    /// came.
    fn try_recv(&mut self, i: usize, hold: Option<(Msg, bool)>) -> bool {
        let l = &self.lossless[i];
        if l.evicted {
            let r = self.lossless[i].handle.try_recv().map(|m| m.seq());
            assert_eq!(r, Err(TryRecvError::Evicted), "consumer {i} was evicted");
            return false;
        }
        let mc = l.model;
        let evictable = l.evictable;
        let expected = self.model.sent(mc.next_seq).cloned();
        let send = hold.map(|(msg, wait)| {
            let len = self.len_of(msg);
            let data = payload(self.model.next_seq, len as usize, msg.fill);
            (len, data, self.timed_wait(wait))
        });
        let l = &mut self.lossless[i];
        let producer = self.producer.as_mut().expect("a producer");
        let (got, sent) = match l.handle.try_recv() {
            Ok(m) => {
                let e = expected.unwrap_or_else(|| {
                    panic!(
                        "consumer {i} got message {} the model has not sent",
                        m.seq()
                    )
                });
                assert_eq!(m.seq(), mc.next_seq, "consumer {i}: sequence number");
                assert_eq!(&*m, &e.payload[..], "consumer {i}: message {}", mc.next_seq);
                // In place, unless it copies (evictable).
                assert_eq!(self.ring.ring_contains(&m), !evictable, "consumer {i}");
                let sent = send.map(|(len, data, timeout)| {
                    let got = got_timeout(producer.send_timeout(&data, timeout));
                    assert_eq!(&*m, &e.payload[..], "a held message changed");
                    (len, got, data)
                });
                drop(m);
                (Some(e.next), sent)
            }
            Err(TryRecvError::Empty) => {
                assert!(
                    expected.is_none(),
                    "consumer {i}: Empty, but message {} was sent",
                    mc.next_seq
                );
                l.model.found_empty(&self.model);
                (None, None)
            }
            Err(e) => panic!("consumer {i}: unexpected {e:?}"),
        };
        // Judge the send by what the consumer had published when it was made.
        if let Some((len, got, data)) = sent {
            self.settle(len, got, data);
        }
        match got {
            Some(end) => {
                self.lossless[i].model.released(end, &self.model);
                true
            }
            None => false,
        }
    }

    fn attach(&mut self, oldest: bool) {
        let start_at = if oldest {
            StartAt::Oldest
        } else {
            StartAt::Next
        };
        let r = Consumer::builder()
            .start_at(start_at)
            .wait_policy(WaitPolicy::BusySpin)
            .attach_to(self.producer.as_ref().expect("a producer"));
        let Some(slot) = self.free_slot() else {
            assert!(matches!(r, Err(OpenError::NoFreeSlot { .. })), "{r:?}");
            return;
        };
        let c = r.expect("attach with a free slot");
        // The lowest free slot; its cursor is where the consumer starts.
        let start = self
            .ring
            .load_u64(self.ring.slot_offset(slot) + SLOT_CURSOR);
        let kind = self.ring.load_u32(self.ring.slot_offset(slot) + SLOT_STATE) & 0xff;
        assert_eq!(
            kind == SLOT_LOSSLESS,
            !self.evicting,
            "a consumer attached to an evicting producer must register as evictable"
        );
        let m = &self.model;
        if oldest {
            m.check_oldest_start(start);
        } else {
            assert_eq!(start, m.tail, "Next starts at the tail");
        }
        let next = m.first_seq_from(start);
        self.lossless.push(Lossless {
            handle: c,
            model: ModelConsumer::new(start, next),
            slot,
            evictable: self.evicting,
            evicted: false,
        });
    }

    /// The lowest slot no consumer holds.
    fn free_slot(&self) -> Option<u32> {
        (0..self.max_consumers as u32).find(|i| {
            !self.lossless.iter().any(|l| l.slot == *i) && !self.lossy.iter().any(|l| l.slot == *i)
        })
    }

    fn attach_lossy(&mut self, oldest: bool) {
        let start_at = if oldest {
            StartAt::Oldest
        } else {
            StartAt::Next
        };
        let r = Consumer::builder()
            .start_at(start_at)
            .wait_policy(WaitPolicy::BusySpin)
            .lossy()
            .attach_to(self.producer.as_ref().expect("a producer"));
        let Some(slot) = self.free_slot() else {
            assert!(matches!(r, Err(OpenError::NoFreeSlot { .. })), "{r:?}");
            return;
        };
        self.lossy.push(Lossy {
            handle: r.expect("attach with a free slot"),
            slot,
            next: (!oldest).then_some(self.model.next_seq),
        });
    }

    /// The producer goes (closing the stream) and a new one takes the ring over at once:
    /// the stream goes on at the same position and sequence number.
    fn takeover(&mut self, evicting: bool) {
        drop(self.producer.take());
        let p = if evicting {
            self.ring.evicting_producer(Duration::ZERO)
        } else {
            self.ring.producer()
        }
        .expect("take over a ring whose producer closed");
        assert_eq!(p.next_seq(), self.model.next_seq, "the sequence goes on");
        assert_eq!(
            self.ring.load_u64(PRODUCER_TAIL),
            self.model.tail,
            "the stream goes on at the tail"
        );
        assert_eq!(p.max_message() as u64, self.model.max_message);
        self.producer = Some(p);
        self.evicting = evicting;
        self.model.takeover();
        self.model.audit(&self.ring, u64::MAX);
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Send(msg) => self.send(*msg),
            Op::TrySend(msg) => self.try_send(*msg),
            Op::SendTimeout(msg) => self.send_timeout(*msg, false),
            Op::SendWait(msg) => self.send_timeout(*msg, true),
            Op::ReserveCommit { msg, blocking } => self.reserve(*msg, *blocking, true),
            Op::ReserveAbort { msg, blocking } => self.reserve(*msg, *blocking, false),
            Op::SendBatch(msgs) => self.send_batch(msgs),
            Op::TryRecv(k) => {
                if let Some(i) = self.index(*k) {
                    self.try_recv(i, None);
                }
            }
            Op::HoldAndSend {
                consumer,
                msg,
                wait,
            } => {
                if let Some(i) = self.index(*consumer) {
                    self.try_recv(i, Some((*msg, *wait)));
                }
            }
            Op::Drain(k) => {
                if let Some(i) = self.index(*k) {
                    let bound = self.model.next_seq - self.lossless[i].model.next_seq + 1;
                    for _ in 0..bound {
                        if !self.try_recv(i, None) {
                            break;
                        }
                    }
                }
            }
            Op::Attach { oldest } => self.attach(*oldest),
            Op::AttachLossy { oldest } => self.attach_lossy(*oldest),
            Op::RecvLossy { consumer, n } => {
                if !self.lossy.is_empty() {
                    let i = usize::from(*consumer) % self.lossy.len();
                    for _ in 0..=n % 8 {
                        if !recv_lossy(&self.model, i, &mut self.lossy[i], false) {
                            break;
                        }
                    }
                }
            }
            Op::DetachLossy(k) => {
                if !self.lossy.is_empty() {
                    let i = usize::from(*k) % self.lossy.len();
                    drop(self.lossy.remove(i));
                }
            }
            Op::Detach(k) => {
                if let Some(i) = self.index(*k) {
                    drop(self.lossless.remove(i));
                }
            }
            Op::Takeover { evicting } => self.takeover(*evicting),
        }
    }

    /// Drop the producer: every consumer drains the rest, then sees `Disconnected` (an
    /// evicted one, `Evicted`).
    fn close(mut self) {
        drop(self.producer.take());
        let model = &self.model;
        for (i, l) in self.lossy.iter_mut().enumerate() {
            for _ in 0..=model.next_seq + 1 {
                if !recv_lossy(model, i, l, true) {
                    break;
                }
            }
        }
        for (i, l) in self.lossless.iter_mut().enumerate() {
            if l.evicted {
                let r = l.handle.try_recv().map(|m| m.seq());
                assert_eq!(r, Err(TryRecvError::Evicted), "consumer {i} was evicted");
                continue;
            }
            for seq in l.model.next_seq..model.next_seq {
                let e = model.sent(seq).expect("sent");
                let m = l
                    .handle
                    .try_recv()
                    .unwrap_or_else(|e| panic!("consumer {i}, message {seq}: {e:?}"));
                assert_eq!(m.seq(), seq);
                assert_eq!(&*m, &e.payload[..]);
            }
            let r = l.handle.try_recv().map(|m| m.seq());
            assert_eq!(
                r,
                Err(TryRecvError::Disconnected),
                "consumer {i} after the drain"
            );
        }
    }
}

/// Fill a reservation: with the message to commit it, or with junk that an abort (going
/// out of scope uncommitted) must never publish.
fn fill_reservation(mut r: shmcast::Reserved<'_>, commit: bool, data: &[u8], fill: u8) {
    if commit {
        r.copy_from_slice(data);
        r.commit();
    } else {
        r.fill(fill ^ 0xa5);
    }
}

/// One `try_recv_into` on lossy consumer `i`; false if nothing came. Every message is
/// exactly the one sent with that sequence number, and sequence numbers go up by one, or
/// by exactly the number of messages a `Lagged` reported lost; `Empty` only when it has
/// everything; after the close, `Disconnected` once it has everything. Every message reported
/// lost was overwritten, or in the oldest data a restart may skip
/// ([`RingModel::may_be_lost`]).
fn recv_lossy(m: &RingModel, i: usize, l: &mut Lossy, closed: bool) -> bool {
    let mut buf = Vec::new();
    match l.handle.try_recv_into(&mut buf) {
        Ok(seq) => {
            let e = m
                .sent(seq)
                .unwrap_or_else(|| panic!("lossy {i}: unsent {seq}"));
            assert_eq!(buf, e.payload, "lossy {i}: message {seq}");
            match l.next {
                Some(next) => assert_eq!(seq, next, "lossy {i}: sequence number"),
                // The first message of an `Oldest` consumer: one that is still intact, and
                // it skipped only what may be skipped.
                None => {
                    assert!(
                        e.pos + m.cap >= m.max_write_end,
                        "lossy {i}: {seq} was overwritten"
                    );
                    assert!(
                        seq == 0 || m.may_be_lost(seq - 1),
                        "lossy {i}: starts at {seq}, skipping an intact message"
                    );
                }
            }
            l.next = Some(seq + 1);
            true
        }
        Err(TryRecvError::Lagged(n)) => {
            assert!(n > 0, "lossy {i}: Lagged(0)");
            if let Some(next) = &mut l.next {
                for s in *next..*next + n {
                    assert!(
                        m.may_be_lost(s),
                        "lossy {i}: reported {s} lost (Lagged({n}) at {next}), but it is intact: \
                         at {:?}, oldest data that may be skipped below {} (takeover at {}, \
                         written up to {}, tail {})",
                        m.sent(s).map(|s| s.pos),
                        m.skippable_below(),
                        m.oldest_floor,
                        m.max_write_end,
                        m.tail
                    );
                }
                *next += n;
                assert!(*next <= m.next_seq, "lossy {i}: lost more than was sent");
            }
            true
        }
        Err(TryRecvError::Empty) if !closed => {
            // Empty means caught up: a consumer lapped before a takeover, restarting at the
            // new producer's tail, reports what it lost at once (the unpublished stamp there
            // carries the next number), not with the next message.
            let Some(next) = l.next else {
                if m.oldest_floor == 0 {
                    // An `Oldest` consumer that starts at the tail skipped everything.
                    assert!(
                        m.next_seq == 0 || m.may_be_lost(m.next_seq - 1),
                        "lossy {i}: Empty, skipping intact messages"
                    );
                    l.next = Some(m.next_seq);
                }
                return false;
            };
            assert!(next == m.next_seq, "lossy {i}: Empty, but {next} was sent");
            false
        }
        Err(TryRecvError::Disconnected) if closed => {
            let next = *l.next.get_or_insert(m.next_seq);
            assert!(
                next == m.next_seq,
                "lossy {i}: Disconnected before {next} (sent {})",
                m.next_seq
            );
            false
        }
        Err(e) => panic!("lossy {i}: unexpected {e:?}"),
    }
}

fuzz_target!(|input: Input| {
    let cap = 1u64 << (8 + input.capacity_shift % 5); // 256 B to 4 KiB
    let limit = max_message_for(cap);
    let max_message = match input.max_message % 4 {
        0 => limit,
        _ => u64::from(input.max_message) % (limit + 1),
    };
    let max_consumers = 1 + usize::from(input.max_consumers % 4);
    let mut builder = Producer::builder()
        .capacity(cap as usize)
        .max_message(max_message as usize)
        .max_consumers(max_consumers as u32)
        .wait_policy(WaitPolicy::BusySpin);
    if input.evicting {
        builder = builder.evict_after(Duration::ZERO);
    }
    let producer = builder.create_in_process().expect("valid configuration");
    assert_eq!(producer.max_message() as u64, max_message);
    let ring = HostileSegment::of_producer(&producer).expect("a heap ring");
    let mut h = Harness {
        producer: Some(producer),
        ring,
        model: RingModel::new(cap, max_message),
        lossless: Vec::new(),
        lossy: Vec::new(),
        max_consumers,
        evicting: input.evicting,
        timed: 0,
    };
    for op in input.ops.iter().take(MAX_OPS) {
        h.run(op);
    }
    h.close();
});
