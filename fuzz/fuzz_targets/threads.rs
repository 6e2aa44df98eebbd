//! Two threads over a heap ring, so the orderings run: the producer in one thread, one or
//! two consumers (lossless and/or lossy) in the other, both driven by the input: message
//! lengths and batch boundaries, `send` / `try_send` / reserve-commit / `send_batch` on the
//! producer's side, and the consumers' read pattern (`recv`, `try_recv`, `try_recv_batch`,
//! lossy `try_recv_into` / `recv_into`), with yields and spins on both sides.
//!
//! # Oracle
//! * every lossless consumer receives exactly the sent sequence: every message, once, in
//!   order, with its sequence number and exact bytes, then `Disconnected`;
//! * a lossy consumer receives exact messages (never torn: the bytes depend on the
//!   sequence number and the position), in order, with gaps of exactly what it reports as
//!   `Lagged(n)`: what it received plus what it was told it lost is every message sent,
//!   when it sees `Disconnected`;
//! * nothing hangs (libFuzzer's timeout), panics or touches memory it should not
//!   (AddressSanitizer).
//!
//! Each run sends at most `MAX_MESSAGES` messages, so executions stay short.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmcast::{
    Consumer, LossyConsumer, Producer, RecvError, TryRecvError, TrySendError, WaitPolicy,
};
use shmcast_fuzz::{max_message_for, payload};

/// Messages per run, at most.
const MAX_MESSAGES: usize = 64;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum How {
    /// `send` (waits while full).
    Send,
    /// `try_send`, yielding while full.
    TrySend,
    /// `reserve`, fill in place, `commit`.
    Reserve,
}

#[derive(Arbitrary, Debug)]
enum PStep {
    One {
        how: How,
        len: u16,
        fill: u8,
    },
    /// `send_batch` of up to 16 messages.
    Batch {
        lens: Vec<u16>,
        fill: u8,
    },
    Yield,
    Spin(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum CStep {
    /// Lossless `recv` (waits).
    Recv,
    /// Lossless `try_recv`.
    TryRecv,
    /// Lossless `try_recv_batch(1 + n % 16)`.
    Batch(u8),
    /// Lossy `try_recv_into`.
    LossyTry,
    /// Lossy `recv_into` (waits).
    LossyRecv,
    Yield,
    Spin(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity_shift: u8,
    max_message: u16,
    /// 0: lossless only; 1: lossy only; 2 or 3: both.
    consumers: u8,
    /// Consumers busy-spin (else the default policy: spin, yield, then sleep on the futex).
    busy: bool,
    producer: Vec<PStep>,
    reader: Vec<CStep>,
}

/// A lossless consumer and how far it got.
struct Lossless {
    c: Consumer,
    next: u64,
    done: bool,
}

impl Lossless {
    fn check(&mut self, seq: u64, bytes: &[u8], sent: &[Vec<u8>]) {
        assert_eq!(seq, self.next, "lossless: sequence number");
        let want = sent
            .get(seq as usize)
            .unwrap_or_else(|| panic!("lossless: message {seq}, only {} are sent", sent.len()));
        assert_eq!(bytes, &want[..], "lossless: message {seq} (torn or wrong)");
        self.next += 1;
    }

    fn recv(&mut self, blocking: bool, sent: &[Vec<u8>]) {
        if self.done {
            return;
        }
        let r = if blocking {
            self.c.recv().map_err(|e| match e {
                RecvError::Disconnected => TryRecvError::Disconnected,
                e => panic!("lossless recv: {e:?}"),
            })
        } else {
            self.c.try_recv()
        };
        let r = r.map(|m| (m.seq(), m.to_vec()));
        match r {
            Ok((seq, bytes)) => self.check(seq, &bytes, sent),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => self.end(sent),
            Err(e) => panic!("lossless try_recv: {e:?}"),
        }
    }

    fn batch(&mut self, max: usize, sent: &[Vec<u8>]) {
        if self.done {
            return;
        }
        let mut got = Vec::new();
        match self
            .c
            .try_recv_batch(max, |seq, bytes| got.push((seq, bytes.to_vec())))
        {
            Ok(n) => {
                assert!(
                    n >= 1 && n <= max && n == got.len(),
                    "batch of {n} (max {max})"
                );
                for (seq, bytes) in got {
                    self.check(seq, &bytes, sent);
                }
            }
            Err(TryRecvError::Empty) => assert!(got.is_empty()),
            Err(TryRecvError::Disconnected) => self.end(sent),
            Err(e) => panic!("lossless try_recv_batch: {e:?}"),
        }
    }

    fn end(&mut self, sent: &[Vec<u8>]) {
        assert_eq!(
            self.next,
            sent.len() as u64,
            "lossless: Disconnected before every message came"
        );
        self.done = true;
    }
}

/// A lossy consumer and what it accounted for.
struct Lossy {
    c: LossyConsumer,
    next: u64,
    lost: u64,
    done: bool,
    buf: Vec<u8>,
}

impl Lossy {
    fn recv(&mut self, blocking: bool, sent: &[Vec<u8>]) {
        if self.done {
            return;
        }
        let r = if blocking {
            self.c.recv_into(&mut self.buf).map_err(|e| match e {
                RecvError::Disconnected => TryRecvError::Disconnected,
                RecvError::Lagged(n) => TryRecvError::Lagged(n),
                e => panic!("lossy recv_into: {e:?}"),
            })
        } else {
            self.c.try_recv_into(&mut self.buf)
        };
        match r {
            Ok(seq) => {
                assert_eq!(
                    seq, self.next,
                    "lossy: sequence number (lost {})",
                    self.lost
                );
                let want = sent.get(seq as usize).unwrap_or_else(|| {
                    panic!("lossy: message {seq}, only {} are sent", sent.len())
                });
                assert_eq!(self.buf, *want, "lossy: message {seq} (torn or wrong)");
                self.next += 1;
            }
            Err(TryRecvError::Lagged(n)) => {
                assert!(n > 0, "lossy: Lagged(0)");
                self.next += n;
                self.lost += n;
                assert!(
                    self.next <= sent.len() as u64,
                    "lossy: lost {n}, more than was sent"
                );
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                assert_eq!(
                    self.next,
                    sent.len() as u64,
                    "lossy: Disconnected, but received {} and lost {} of {}",
                    self.next - self.lost,
                    self.lost,
                    sent.len()
                );
                self.done = true;
            }
            Err(e) => panic!("lossy: {e:?}"),
        }
    }
}

fn spin(n: u8) {
    for _ in 0..u32::from(n) * 4 {
        std::hint::spin_loop();
    }
}

/// The producer's script as the messages it sends: (step, messages of the step).
fn plan(input: &Input, max: usize) -> Vec<(usize, Vec<Vec<u8>>)> {
    let mut seq = 0u64;
    let mut out = Vec::new();
    let msg = |len: u16, fill: u8, seq: &mut u64| {
        let m = payload(*seq, usize::from(len) % (max + 1), fill);
        *seq += 1;
        m
    };
    for (k, step) in input.producer.iter().enumerate() {
        let left = MAX_MESSAGES - seq as usize;
        if left == 0 {
            break;
        }
        let msgs = match step {
            PStep::One { len, fill, .. } => vec![msg(*len, *fill, &mut seq)],
            PStep::Batch { lens, fill } => lens
                .iter()
                .take(16.min(left))
                .map(|&l| msg(l, *fill, &mut seq))
                .collect(),
            PStep::Yield | PStep::Spin(_) => Vec::new(),
        };
        out.push((k, msgs));
    }
    out
}

fuzz_target!(|input: Input| {
    let cap = 256usize << (input.capacity_shift % 3); // 256 B to 1 KiB
    let limit = max_message_for(cap as u64) as usize;
    let max = match input.max_message % 4 {
        0 => limit,
        _ => usize::from(input.max_message) % (limit + 1),
    };
    let mut p = Producer::builder()
        .capacity(cap)
        .max_message(max)
        .create_in_process()
        .expect("valid configuration");
    let policy = if input.busy {
        WaitPolicy::BusySpin
    } else {
        WaitPolicy::default()
    };
    let (with_lossless, with_lossy) = match input.consumers % 4 {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let mut lossless = with_lossless.then(|| Lossless {
        c: Consumer::builder()
            .wait_policy(policy)
            // Bit 2: the consumer waits in the stamp-only spin loop first.
            .tight_spin(input.consumers & 4 != 0)
            .attach_to(&p)
            .expect("slot"),
        next: 0,
        done: false,
    });
    let mut lossy = with_lossy.then(|| Lossy {
        c: Consumer::builder()
            .wait_policy(policy)
            .lossy()
            .attach_to(&p)
            .expect("slot"),
        next: 0,
        lost: 0,
        done: false,
        buf: Vec::new(),
    });
    let script = plan(&input, max);
    let sent: Vec<Vec<u8>> = script.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
    let reader: &[CStep] = if input.reader.is_empty() {
        &[CStep::Recv, CStep::LossyTry]
    } else {
        &input.reader
    };
    std::thread::scope(|s| {
        let steps = &input.producer;
        let script = &script;
        let producer = s.spawn(move || {
            let mut seq = 0u64;
            for (k, msgs) in script {
                match &steps[*k] {
                    PStep::One { how, .. } => {
                        let m = &msgs[0];
                        match how {
                            How::Send => p.send(m).expect("send"),
                            How::TrySend => loop {
                                match p.try_send(m) {
                                    Ok(()) => break,
                                    Err(TrySendError::Full) => std::thread::yield_now(),
                                    Err(e) => panic!("try_send: {e:?}"),
                                }
                            },
                            How::Reserve => {
                                let mut r = p.reserve(m.len()).expect("reserve");
                                r.copy_from_slice(m);
                                r.commit();
                            }
                        }
                    }
                    PStep::Batch { .. } => p.send_batch(msgs).expect("send_batch"),
                    PStep::Yield => std::thread::yield_now(),
                    PStep::Spin(n) => spin(*n),
                }
                seq += msgs.len() as u64;
                assert_eq!(p.next_seq(), seq, "producer: sequence number");
            }
            drop(p); // close: the consumers drain, then see Disconnected
        });
        let sent = &sent;
        let done = |a: &Option<Lossless>, b: &Option<Lossy>| {
            a.as_ref().is_none_or(|c| c.done) && b.as_ref().is_none_or(|c| c.done)
        };
        while !done(&lossless, &lossy) {
            for step in reader {
                match *step {
                    CStep::Recv => {
                        if let Some(c) = &mut lossless {
                            c.recv(true, sent);
                        }
                    }
                    CStep::TryRecv => {
                        if let Some(c) = &mut lossless {
                            c.recv(false, sent);
                        }
                    }
                    CStep::Batch(n) => {
                        if let Some(c) = &mut lossless {
                            c.batch(1 + usize::from(n % 16), sent);
                        }
                    }
                    CStep::LossyTry => {
                        if let Some(c) = &mut lossy {
                            c.recv(false, sent);
                        }
                    }
                    CStep::LossyRecv => {
                        // A blocking lossy read waits for the next message; while a
                        // lossless consumer of this same thread gates the producer, that
                        // message may never come (the producer waits for space the
                        // lossless consumer frees only when this thread gets to it): a
                        // deadlock of the harness, not of the ring. Block only when no
                        // lossless consumer can gate; else poll.
                        let may_block = lossless.as_ref().is_none_or(|c| c.done);
                        if let Some(c) = &mut lossy {
                            c.recv(may_block, sent);
                        }
                    }
                    CStep::Yield => std::thread::yield_now(),
                    CStep::Spin(n) => spin(n),
                }
            }
            // Every consumer makes progress each round, whatever the pattern reads.
            if let Some(c) = &mut lossless {
                c.recv(false, sent);
            }
            if let Some(c) = &mut lossy {
                c.recv(false, sent);
            }
        }
        // Join explicitly: the scope's own wait ends when the closure returns, before the
        // thread has run its thread-local destructors and exited, and LeakSanitizer, which
        // libFuzzer runs after a unit, then reports the thread's destructor list (glibc's
        // `__cxa_thread_atexit_impl`, 32 bytes) as leaked. `join` waits for the exit.
        if let Err(panic) = producer.join() {
            std::panic::resume_unwind(panic);
        }
    });
});
