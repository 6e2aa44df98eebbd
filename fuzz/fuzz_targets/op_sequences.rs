//! Arbitrary sequences of producer and consumer operations on an in-process ring, checked
//! step by step against [`RingModel`]: every consumer receives the same messages (bytes and
//! sequence numbers) in the same order, `Full` and `Empty` happen exactly when the model says
//! so, `StartAt::Oldest` starts within its documented bounds (read from the consumer's slot
//! and checked by the model), a message held in place is never overwritten, `NoFreeSlot` comes exactly when every slot is
//! taken, and after the producer is dropped every consumer drains what is left and then sees
//! `Disconnected`. Lossy consumers (which never gate) deliver exact messages with
//! consecutive sequence numbers, except for gaps of exactly what they report as `Lagged`,
//! and are `Empty` only once caught up.
//!
//! Blocking calls (`send`, `reserve`) are only made when the model says they succeed at
//! once; when it says `Full`, the target calls `send_timeout(.., 0)` / `try_reserve` instead
//! and expects `Timeout` / `Full`. A wrong "fits" prediction would therefore hang, which
//! libFuzzer reports as a timeout.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmcast::fuzzing::layout::SLOT_CURSOR;
use shmcast::fuzzing::HostileSegment;
use shmcast::{
    Consumer, LossyConsumer, OpenError, Producer, SendError, SendTimeoutError, StartAt,
    TryRecvError, TrySendError, WaitPolicy,
};
use shmcast_fuzz::{gate, max_message_for, payload, ModelConsumer, Reserve, RingModel};
use std::time::Duration;

/// Operations per input, at most.
const MAX_OPS: usize = 400;

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
    ReserveCommit {
        msg: Msg,
        blocking: bool,
    },
    ReserveAbort {
        msg: Msg,
        blocking: bool,
    },
    TryRecv(u8),
    /// Receive a message, keep it borrowed in place while the producer tries to send, then
    /// check it is intact.
    HoldAndSend {
        consumer: u8,
        msg: Msg,
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
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_shift: u8,
    max_message: u16,
    max_consumers: u8,
    ops: Vec<Op>,
}

struct Harness {
    producer: Producer,
    ring: HostileSegment,
    model: RingModel,
    handles: Vec<Consumer>,
    models: Vec<ModelConsumer>,
    /// The slot each consumer took.
    slots: Vec<u32>,
    lossy: Vec<Lossy>,
    max_consumers: usize,
}

/// A lossy consumer and what the model knows of it.
struct Lossy {
    handle: LossyConsumer,
    slot: u32,
    /// The sequence number it must deliver next; unknown for an `Oldest` consumer until
    /// its first message or loss report.
    next: Option<u64>,
}

/// What a send-like call must return, and the model's side of it.
fn expect_send(model: &mut RingModel, models: &[ModelConsumer], len: u64) -> Reserve {
    let g = gate(models, model.tail);
    model.try_reserve(len, g)
}

/// `try_send` against the model (used on its own and while a message is held).
fn try_send(
    producer: &mut Producer,
    model: &mut RingModel,
    models: &[ModelConsumer],
    msg: Msg,
    len: u64,
) {
    let data = payload(model.next_seq, len as usize, msg.fill);
    let r = producer.try_send(&data);
    match expect_send(model, models, len) {
        Reserve::Fits(plan) => {
            assert_eq!(r, Ok(()), "try_send({len}): model says it fits");
            model.commit(plan, data);
        }
        Reserve::Full => assert_eq!(r, Err(TrySendError::Full), "try_send({len})"),
        Reserve::TooLarge => assert!(matches!(r, Err(TrySendError::TooLarge { .. })), "{r:?}"),
    }
}

impl Harness {
    fn len_of(&self, msg: Msg) -> u64 {
        // Up to 8 bytes past the maximum, to cover `TooLarge`.
        u64::from(msg.len) % (self.model.max_message + 9)
    }

    fn index(&self, k: u8) -> Option<usize> {
        (!self.handles.is_empty()).then(|| k as usize % self.handles.len())
    }

    fn send(&mut self, msg: Msg) {
        let len = self.len_of(msg);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        match expect_send(&mut self.model, &self.models, len) {
            Reserve::Fits(plan) => {
                self.producer.send(&data).expect("send: model says it fits");
                self.model.commit(plan, data);
            }
            Reserve::Full => assert_eq!(
                self.producer.send_timeout(&data, Duration::ZERO),
                Err(SendTimeoutError::Timeout)
            ),
            Reserve::TooLarge => assert!(matches!(
                self.producer.send(&data),
                Err(SendError::TooLarge { .. })
            )),
        }
    }

    fn send_timeout(&mut self, msg: Msg) {
        let len = self.len_of(msg);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        let r = self.producer.send_timeout(&data, Duration::ZERO);
        match expect_send(&mut self.model, &self.models, len) {
            Reserve::Fits(plan) => {
                assert_eq!(r, Ok(()));
                self.model.commit(plan, data);
            }
            Reserve::Full => assert_eq!(r, Err(SendTimeoutError::Timeout)),
            Reserve::TooLarge => assert!(matches!(r, Err(SendTimeoutError::TooLarge { .. }))),
        }
    }

    fn reserve(&mut self, msg: Msg, blocking: bool, commit: bool) {
        let len = self.len_of(msg);
        let expected = expect_send(&mut self.model, &self.models, len);
        let data = payload(self.model.next_seq, len as usize, msg.fill);
        match expected {
            Reserve::Fits(plan) => {
                let mut r = if blocking {
                    self.producer
                        .reserve(len as usize)
                        .expect("reserve: model says it fits")
                } else {
                    self.producer
                        .try_reserve(len as usize)
                        .expect("try_reserve: model says it fits")
                };
                assert_eq!(r.len() as u64, len);
                if commit {
                    r.copy_from_slice(&data);
                    r.commit();
                    self.model.commit(plan, data);
                } else {
                    // Junk that an abort (going out of scope uncommitted) must never
                    // publish.
                    r.fill(msg.fill ^ 0xa5);
                }
            }
            Reserve::Full => {
                let r = self.producer.try_reserve(len as usize);
                assert!(matches!(r, Err(TrySendError::Full)), "{r:?}");
            }
            Reserve::TooLarge => {
                if blocking {
                    let r = self.producer.reserve(len as usize);
                    assert!(matches!(r, Err(SendError::TooLarge { .. })), "{r:?}");
                } else {
                    let r = self.producer.try_reserve(len as usize);
                    assert!(matches!(r, Err(TrySendError::TooLarge { .. })), "{r:?}");
                }
            }
        }
    }

    /// One `try_recv` on consumer `i`, checked; with `hold`, a `try_send` happens while the
    /// message is borrowed. Returns whether a message came.
    fn try_recv(&mut self, i: usize, hold: Option<Msg>) -> bool {
        let mc = self.models[i];
        let expected = self.model.sent(mc.next_seq).cloned();
        match self.handles[i].try_recv() {
            Ok(m) => {
                let e = expected.unwrap_or_else(|| {
                    panic!(
                        "consumer {i} got message {} the model has not sent",
                        m.seq()
                    )
                });
                assert_eq!(m.seq(), mc.next_seq, "consumer {i}: sequence number");
                assert_eq!(&*m, &e.payload[..], "consumer {i}: message {}", mc.next_seq);
                assert!(self.ring.ring_contains(&m));
                if let Some(msg) = hold {
                    let len = u64::from(msg.len) % (self.model.max_message + 9);
                    try_send(&mut self.producer, &mut self.model, &self.models, msg, len);
                    assert_eq!(&*m, &e.payload[..], "a held message was overwritten");
                }
                drop(m);
                self.models[i].released(e.next, &self.model);
                true
            }
            Err(TryRecvError::Empty) => {
                assert!(
                    expected.is_none(),
                    "consumer {i}: Empty, but message {} was sent",
                    mc.next_seq
                );
                self.models[i].found_empty(&self.model);
                false
            }
            Err(e) => panic!("consumer {i}: unexpected {e:?}"),
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
            .attach_to(&self.producer);
        let Some(slot) = self.free_slot() else {
            assert!(matches!(r, Err(OpenError::NoFreeSlot { .. })), "{r:?}");
            return;
        };
        let c = r.expect("attach with a free slot");
        // The lowest free slot; its cursor is where the consumer starts.
        let start = self
            .ring
            .load_u64(self.ring.slot_offset(slot) + SLOT_CURSOR);
        let m = &self.model;
        if oldest {
            m.check_oldest_start(start);
        } else {
            assert_eq!(start, m.tail, "Next starts at the tail");
        }
        let next = m.first_seq_from(start);
        self.handles.push(c);
        self.models.push(ModelConsumer::new(start, next));
        self.slots.push(slot);
    }

    /// The lowest slot no consumer holds.
    fn free_slot(&self) -> Option<u32> {
        (0..self.max_consumers as u32)
            .find(|i| !self.slots.contains(i) && !self.lossy.iter().any(|l| l.slot == *i))
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
            .attach_to(&self.producer);
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

    fn recv_lossy(&mut self, i: usize, closed: bool) -> bool {
        recv_lossy(&self.model, i, &mut self.lossy[i], closed)
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Send(msg) => self.send(msg),
            Op::TrySend(msg) => {
                let len = self.len_of(msg);
                try_send(&mut self.producer, &mut self.model, &self.models, msg, len);
            }
            Op::SendTimeout(msg) => self.send_timeout(msg),
            Op::ReserveCommit { msg, blocking } => self.reserve(msg, blocking, true),
            Op::ReserveAbort { msg, blocking } => self.reserve(msg, blocking, false),
            Op::TryRecv(k) => {
                if let Some(i) = self.index(k) {
                    self.try_recv(i, None);
                }
            }
            Op::HoldAndSend { consumer, msg } => {
                if let Some(i) = self.index(consumer) {
                    self.try_recv(i, Some(msg));
                }
            }
            Op::Drain(k) => {
                if let Some(i) = self.index(k) {
                    let bound = self.model.next_seq - self.models[i].next_seq + 1;
                    for _ in 0..bound {
                        if !self.try_recv(i, None) {
                            break;
                        }
                    }
                }
            }
            Op::Attach { oldest } => self.attach(oldest),
            Op::AttachLossy { oldest } => self.attach_lossy(oldest),
            Op::RecvLossy { consumer, n } => {
                if !self.lossy.is_empty() {
                    let i = usize::from(consumer) % self.lossy.len();
                    for _ in 0..=n % 8 {
                        if !self.recv_lossy(i, false) {
                            break;
                        }
                    }
                }
            }
            Op::DetachLossy(k) => {
                if !self.lossy.is_empty() {
                    let i = usize::from(k) % self.lossy.len();
                    drop(self.lossy.remove(i));
                }
            }
            Op::Detach(k) => {
                if let Some(i) = self.index(k) {
                    drop(self.handles.remove(i));
                    self.models.remove(i);
                    self.slots.remove(i);
                }
            }
        }
    }

    /// Drop the producer: every consumer drains the rest, then sees `Disconnected`.
    fn close(self) {
        let Harness {
            producer,
            model,
            mut handles,
            models,
            ring,
            mut lossy,
            ..
        } = self;
        drop(producer);
        for (i, l) in lossy.iter_mut().enumerate() {
            for _ in 0..=model.next_seq + 1 {
                if !recv_lossy(&model, i, l, true) {
                    break;
                }
            }
        }
        for (i, (c, mc)) in handles.iter_mut().zip(models).enumerate() {
            for seq in mc.next_seq..model.next_seq {
                let e = model.sent(seq).expect("sent");
                let m = c
                    .try_recv()
                    .unwrap_or_else(|e| panic!("consumer {i}, message {seq}: {e:?}"));
                assert_eq!(m.seq(), seq);
                assert_eq!(&*m, &e.payload[..]);
                assert!(ring.ring_contains(&m));
            }
            let r = c.try_recv().map(|m| m.seq());
            assert_eq!(
                r,
                Err(TryRecvError::Disconnected),
                "consumer {i} after the drain"
            );
        }
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
                        "lossy {i}: reported {s} lost, but it is intact"
                    );
                }
                *next += n;
                assert!(*next <= m.next_seq, "lossy {i}: lost more than was sent");
            }
            true
        }
        Err(TryRecvError::Empty) if !closed => {
            let next = *l.next.get_or_insert_with(|| {
                // An `Oldest` consumer that starts at the tail skipped everything.
                assert!(
                    m.next_seq == 0 || m.may_be_lost(m.next_seq - 1),
                    "lossy {i}: Empty, skipping intact messages"
                );
                m.next_seq
            });
            assert_eq!(next, m.next_seq, "lossy {i}: Empty, but {next} was sent");
            false
        }
        Err(TryRecvError::Disconnected) if closed => {
            let next = *l.next.get_or_insert(m.next_seq);
            assert_eq!(next, m.next_seq, "lossy {i}: Disconnected before {next}");
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
    let producer = Producer::builder()
        .capacity(cap as usize)
        .max_message(max_message as usize)
        .max_consumers(max_consumers as u32)
        .wait_policy(WaitPolicy::BusySpin)
        .create_in_process()
        .expect("valid configuration");
    assert_eq!(producer.max_message() as u64, max_message);
    let ring = HostileSegment::of_producer(&producer).expect("a heap ring");
    let mut h = Harness {
        producer,
        ring,
        model: RingModel::new(cap, max_message),
        handles: Vec::new(),
        models: Vec::new(),
        slots: Vec::new(),
        lossy: Vec::new(),
        max_consumers,
    };
    for op in input.ops.iter().take(MAX_OPS) {
        h.run(op);
    }
    h.close();
});
