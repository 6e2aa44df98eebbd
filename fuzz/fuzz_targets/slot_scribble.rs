//! A consumer that scribbles what a consumer can write: its own slot (cursor, state word,
//! pid) and the header fields consumers write (the slot high-water mark, the futex words and
//! sleeper counts). The producer treats all of it as hostile input.
//!
//! # Oracle
//! * Nothing panics, reads or writes out of bounds, or waits without bound (`try_send`,
//!   `send_timeout` of at most a millisecond, `try_recv`).
//! * An honest consumer H (slot 0) receives exactly what was sent, in order, even while it
//!   holds a message in place across sends; `Empty` only when it has everything. (The
//!   producer scans every slot; the high-water mark consumers write is advisory.)
//! * `Full` only when a live lossless consumer gates: H, or the scribbler S whose slot the
//!   producer still holds as lossless with a cursor in `[tail - capacity, tail]`, 8-aligned,
//!   too low for the record.
//! * After S detaches and H has caught up, a send succeeds within the producer's liveness
//!   probe interval: a scribbler can hold the producer back only while it is attached.
//!
//! The scribbler's own messages are checked for safety only: it lied about its cursor.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmcast::fuzzing::layout::{
    DATA_SLEEPERS, DATA_WORD, HWM, SLOT_CURSOR, SLOT_EVICTABLE, SLOT_LOSSLESS, SLOT_PID,
    SLOT_STATE, SPACE_SLEEPERS, SPACE_WORD,
};
use shmcast::fuzzing::HostileSegment;
use shmcast::{
    Consumer, Producer, SendTimeoutError, StartAt, TryRecvError, TrySendError, WaitPolicy,
};
use shmcast_fuzz::{max_message_for, payload, ModelConsumer, RingModel};
use std::time::Duration;

const MAX_OPS: usize = 300;
/// Sends that may wait (a millisecond each), per input.
const MAX_TIMED: u32 = 4;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SlotField {
    Cursor,
    State,
    Pid,
    Raw(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum HeaderField {
    Hwm,
    DataWord,
    DataSleepers,
    SpaceWord,
    SpaceSleepers,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Send {
        len: u16,
        fill: u8,
    },
    SendTimeout {
        len: u16,
        fill: u8,
        wait: bool,
    },
    RecvHonest {
        n: u8,
    },
    /// H receives a message and holds it while S scribbles and the producer sends.
    HoldHonest {
        field: SlotField,
        bytes: Vec<u8>,
        len: u16,
        fill: u8,
    },
    RecvScribbler {
        n: u8,
    },
    ScribbleSlot {
        field: SlotField,
        bytes: Vec<u8>,
    },
    ScribbleHeader {
        field: HeaderField,
        bytes: Vec<u8>,
    },
    /// A cursor that looks plausible: `tail - 8 * back` (or past the tail).
    SetCursor {
        back: u16,
        ahead: bool,
    },
    /// A state word with the given kind, keeping or changing the generation.
    SetState {
        kind: u8,
        generation: Option<u32>,
    },
    /// S detaches and a new scribbler attaches (to the same slot).
    Reattach {
        oldest: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_shift: u8,
    max_message: u16,
    ops: Vec<Op>,
}

struct Harness {
    seg: HostileSegment,
    producer: Producer,
    model: RingModel,
    honest: Consumer,
    /// H's model.
    h: ModelConsumer,
    scribbler: Option<Consumer>,
    timed: u32,
}

impl Harness {
    fn s_slot(&self) -> u64 {
        self.seg.slot_offset(1)
    }

    /// Could S's slot, as it is now, gate a record that writes up to `end`?
    fn s_gates(&self, end: u64) -> bool {
        let state = self.seg.load_u32(self.s_slot() + SLOT_STATE);
        let c = self.seg.load_u64(self.s_slot() + SLOT_CURSOR);
        let m = &self.model;
        // Lossless or evictable slots gate.
        (state & 0xff == SLOT_LOSSLESS || state & 0xff == SLOT_EVICTABLE)
            && c <= m.tail
            && c >= m.tail.saturating_sub(m.cap)
            && c.is_multiple_of(8)
            && c + m.cap < end
    }

    /// The result of a send of `len` bytes, checked: `Ok` keeps the model in step, `Full`
    /// needs a gating consumer.
    fn sent(&mut self, full: bool, len: u64, data: Vec<u8>) {
        let plan = self.model.plan(len);
        if full {
            let h_gates = self.h.published + self.model.cap < plan.write_end();
            assert!(
                h_gates || self.s_gates(plan.write_end()),
                "Full at tail {} for a record ending at {}, but no live consumer gates it",
                self.model.tail,
                plan.write_end()
            );
        } else {
            assert!(
                plan.write_end() <= self.h.published + self.model.cap,
                "the producer wrote past the honest consumer's cursor"
            );
            self.model.commit(plan, data);
        }
    }

    fn send(&mut self, len: u16, fill: u8) {
        let len = u64::from(len) % (self.model.max_message + 1);
        let data = payload(self.model.next_seq, len as usize, fill);
        let r = self.producer.try_send(&data);
        assert!(matches!(r, Ok(()) | Err(TrySendError::Full)), "{r:?}");
        self.sent(r.is_err(), len, data);
    }

    fn send_timeout(&mut self, len: u16, fill: u8, wait: bool) {
        let wait = wait && self.timed < MAX_TIMED;
        self.timed += u32::from(wait);
        let len = u64::from(len) % (self.model.max_message + 1);
        let data = payload(self.model.next_seq, len as usize, fill);
        let t = if wait {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        };
        let r = self.producer.send_timeout(&data, t);
        assert!(
            matches!(r, Ok(()) | Err(SendTimeoutError::Timeout)),
            "{r:?}"
        );
        self.sent(r.is_err(), len, data);
    }

    /// One receive by H, checked; false if nothing came.
    fn recv_honest(&mut self) -> bool {
        let seg = &self.seg;
        let got = self
            .honest
            .try_recv()
            .map(|m| (m.seq(), m.to_vec(), seg.ring_contains(&m)));
        let h = &mut self.h;
        let expected = self.model.sent(h.next_seq);
        match got {
            Ok((seq, bytes, in_ring)) => {
                let e = expected.unwrap_or_else(|| panic!("H got {seq}, nothing more was sent"));
                assert_eq!(seq, h.next_seq, "H: sequence number");
                assert_eq!(bytes, e.payload, "H: message {seq}");
                assert!(in_ring);
                h.released(e.next, &self.model);
                true
            }
            Err(TryRecvError::Empty) => {
                assert!(
                    expected.is_none(),
                    "H: Empty, but message {} was sent",
                    h.next_seq
                );
                h.found_empty(&self.model);
                false
            }
            Err(e) => panic!("H: {e:?}"),
        }
    }

    fn hold_honest(&mut self, field: SlotField, bytes: &[u8], len: u16, fill: u8) {
        let h = self.h;
        let Some(e) = self.model.sent(h.next_seq).cloned() else {
            return;
        };
        let m = self.honest.try_recv().expect("H: a message was sent");
        assert_eq!(m.seq(), h.next_seq);
        // S scribbles, the producer sends, while H reads in place.
        scribble_slot(&self.seg, field, bytes);
        let len = u64::from(len) % (self.model.max_message + 1);
        let data = payload(self.model.next_seq, len as usize, fill);
        let r = self.producer.try_send(&data);
        assert_eq!(&*m, &e.payload[..], "a held message was overwritten");
        drop(m);
        // Judge the send by what H had published when it was made.
        self.sent(r.is_err(), len, data);
        self.h.released(e.next, &self.model);
    }

    fn recv_scribbler(&mut self) -> bool {
        let max = self.model.max_message as usize;
        let Some(s) = &mut self.scribbler else {
            return false;
        };
        match s.try_recv() {
            Ok(m) => {
                assert!(m.len() <= max);
                assert!(self.seg.ring_contains(&m));
                std::hint::black_box(m.iter().fold(0u8, |a, b| a ^ b));
                true
            }
            Err(_) => false,
        }
    }

    /// S is gone, H catches up: the producer must not stay gated.
    fn finish(mut self) {
        drop(self.scribbler.take());
        for _ in 0..=self.model.next_seq {
            if !self.recv_honest() {
                break;
            }
        }
        let data = payload(self.model.next_seq, 0, 0);
        let r = self.producer.send_timeout(&data, Duration::from_secs(2));
        assert_eq!(
            r,
            Ok(()),
            "the producer stays gated after the scribbler left"
        );
        self.sent(false, 0, data);
        assert!(self.recv_honest());
    }
}

fn scribble_slot(seg: &HostileSegment, field: SlotField, bytes: &[u8]) {
    let (off, max) = match field {
        SlotField::Cursor => (SLOT_CURSOR, 8),
        SlotField::State => (SLOT_STATE, 4),
        SlotField::Pid => (SLOT_PID, 4),
        SlotField::Raw(at) => (u64::from(at % 16), 16),
    };
    let n = bytes.len().min(max);
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(seg.slot_offset(1) + off, &bytes[..n]) }
}

fuzz_target!(|input: Input| {
    let cap = 1u64 << (8 + input.capacity_shift % 4); // 256 B to 2 KiB
    let limit = max_message_for(cap);
    let max_message = match input.max_message % 4 {
        0 => limit,
        _ => u64::from(input.max_message) % (limit + 1),
    };
    let seg = HostileSegment::fresh(cap as usize, max_message as usize, 3).expect("valid");
    let producer = seg
        .producer_with(WaitPolicy::Adaptive {
            spins: 0,
            yields: 0,
        })
        .expect("fresh segment");
    let honest = seg.consumer(StartAt::Next).expect("slot 0");
    let scribbler = seg.consumer(StartAt::Next).expect("slot 1");
    let mut h = Harness {
        seg,
        producer,
        model: RingModel::new(cap, max_message),
        honest,
        h: ModelConsumer::new(0, 0),
        scribbler: Some(scribbler),
        timed: 0,
    };
    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Send { len, fill } => h.send(*len, *fill),
            Op::SendTimeout { len, fill, wait } => h.send_timeout(*len, *fill, *wait),
            Op::RecvHonest { n } => {
                for _ in 0..=n % 8 {
                    if !h.recv_honest() {
                        break;
                    }
                }
            }
            Op::HoldHonest {
                field,
                bytes,
                len,
                fill,
            } => h.hold_honest(*field, bytes, *len, *fill),
            Op::RecvScribbler { n } => {
                for _ in 0..=n % 8 {
                    if !h.recv_scribbler() {
                        break;
                    }
                }
            }
            Op::ScribbleSlot { field, bytes } => scribble_slot(&h.seg, *field, bytes),
            Op::ScribbleHeader { field, bytes } => {
                let (off, max) = match field {
                    HeaderField::Hwm => (HWM, 4),
                    HeaderField::DataWord => (DATA_WORD, 4),
                    HeaderField::DataSleepers => (DATA_SLEEPERS, 4),
                    HeaderField::SpaceWord => (SPACE_WORD, 4),
                    HeaderField::SpaceSleepers => (SPACE_SLEEPERS, 4),
                };
                // SAFETY: no message of this ring is held in place while it is scribbled on.
                unsafe { h.seg.scribble(off, &bytes[..bytes.len().min(max)]) }
            }
            Op::SetCursor { back, ahead } => {
                let t = h.model.tail;
                let c = if *ahead {
                    t + 8 * u64::from(*back % 4)
                } else {
                    t.saturating_sub(8 * u64::from(*back))
                };
                // SAFETY: no message of this ring is held in place while it is scribbled on.
                unsafe { h.seg.scribble(h.s_slot() + SLOT_CURSOR, &c.to_ne_bytes()) }
            }
            Op::SetState { kind, generation } => {
                let old = h.seg.load_u32(h.s_slot() + SLOT_STATE);
                let generation = generation.map_or(old >> 8, |g| g & 0x00ff_ffff);
                let state = (generation << 8) | u32::from(*kind % 8);
                // SAFETY: no message of this ring is held in place while it is scribbled on.
                unsafe {
                    h.seg
                        .scribble(h.s_slot() + SLOT_STATE, &state.to_ne_bytes())
                }
            }
            Op::Reattach { oldest } => {
                drop(h.scribbler.take());
                let start = if *oldest {
                    StartAt::Oldest
                } else {
                    StartAt::Next
                };
                // A scribbled claim or state can make attaching fail: an error, not a panic.
                h.scribbler = h.seg.consumer(start).ok();
            }
        }
    }
    h.finish();
});
