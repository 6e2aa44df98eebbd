//! Arbitrary bytes as a segment, as a hostile or crashed peer could have left it: the
//! header, the consumer slot table and the data ring are all fuzzer-controlled. Bytes past
//! the segment's `total_size` (which validation allows: a file may be larger) choose the
//! messages sent in phase 2.
//!
//! Most mutations of a valid segment break its layout line, which validation refuses at
//! once. So that those inputs still exercise the ring, an input that fails validation is
//! also used as the body of a valid segment: its first four bytes choose the geometry, the
//! rest overwrites everything after the layout line (producer line, futex and control
//! lines, slot table, data ring), and what is left over is the parameters.
//!
//! 1. If the bytes validate, consumers attach (`Next` and `Oldest`) and receive a bounded
//!    number of times. Whatever is in the ring, a receive must give an error or a message
//!    no longer than the segment's maximum, lying inside the data ring.
//! 2. A producer takes over the segment (recovering the committed end of the stream) and
//!    sends a few messages with `try_send`. A consumer that attached (`Next`) after the
//!    takeover must receive exactly the messages that were accepted, in order, with
//!    consecutive sequence numbers, and then `Empty`; after the producer is dropped,
//!    `Disconnected`. The consumers from phase 1 and an `Oldest` consumer may see anything
//!    the format allows, as in phase 1.
//!
//! Nothing may panic, read or write out of bounds, or loop without bound (every call here
//! is non-blocking).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmcast::fuzzing::layout::LAYOUT_LINE;
use shmcast::fuzzing::{layout, HostileSegment};
use shmcast::{Consumer, StartAt, TryRecvError, TrySendError};
use shmcast_fuzz::{max_message_for, payload};

/// Receives per consumer and phase, at most.
const RECVS: usize = 40;

/// Receive up to `RECVS` times; anything the format allows may come out.
fn receive_any(seg: &HostileSegment, c: &mut Consumer) {
    for _ in 0..RECVS {
        match c.try_recv() {
            Ok(m) => {
                assert!(m.len() <= seg.max_message(), "message of {} bytes", m.len());
                // In place, unless the segment says its producer evicts: then consumers
                // copy (their slot says evictable).
                assert!(
                    seg.ring_contains(&m) || copies(seg),
                    "message outside the data ring"
                );
                // Touch every byte (AddressSanitizer checks the reads).
                std::hint::black_box(m.iter().fold(0u8, |a, b| a ^ b));
            }
            Err(TryRecvError::Empty) => return,
            // Errors are fine, and sticky (nothing changes the ring between two calls).
            Err(_) => return,
        }
    }
}

/// Does a consumer of `seg` copy messages out (an evictable slot: the segment says its
/// producer evicts)?
fn copies(seg: &HostileSegment) -> bool {
    (0..seg.max_consumers()).any(|i| {
        seg.load_u32(seg.slot_offset(i) + layout::SLOT_STATE) & 0xff == layout::SLOT_EVICTABLE
    })
}

/// A valid segment whose every byte after the layout line comes from `data`.
fn repaired(data: &[u8]) -> Option<(HostileSegment, &[u8])> {
    let (&[c, m0, m1, n], body) = data.split_first_chunk::<4>()?;
    let cap = 256usize << (c % 5); // 256 B to 4 KiB
    let max = max_message_for(cap as u64) as usize;
    let max_message = usize::from(u16::from_le_bytes([m0, m1])) % (max + 1);
    let seg = HostileSegment::fresh(cap, max_message, 1 + u32::from(n % 4)).ok()?;
    let (body, params) = body.split_at(body.len().min((seg.len() - LAYOUT_LINE) as usize));
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(LAYOUT_LINE, body) }
    Some((seg, params))
}

fuzz_target!(|data: &[u8]| {
    let (seg, params) = match HostileSegment::new(data) {
        Ok(seg) => {
            let params = &data[seg.len() as usize..];
            (seg, params)
        }
        Err(_) => match repaired(data) {
            Some(r) => r,
            None => return,
        },
    };
    let max = seg.max_message();

    // Phase 1: the segment as found.
    let mut early: Vec<Consumer> = [StartAt::Next, StartAt::Oldest]
        .into_iter()
        .filter_map(|s| seg.consumer(s).ok())
        .collect();
    for c in &mut early {
        receive_any(&seg, c);
    }

    // Phase 2: take over and send.
    let Ok(mut producer) = seg.producer() else {
        return;
    };
    let first_seq = seg.load_u64(layout::PRODUCER_NEXT_SEQ);
    let tail = seg.load_u64(layout::PRODUCER_TAIL);
    let mut late = seg.consumer(StartAt::Next).ok();
    let mut late_oldest = seg.consumer(StartAt::Oldest).ok();
    // A takeover refuses a misaligned tail and a sequence number beyond the tail (fixed:
    // tests/fuzz_regressions.rs), so every late consumer is held to the exact oracle.
    let lens: Vec<usize> = match params.split_first() {
        Some((n, rest)) => rest
            .iter()
            .take(usize::from(*n % 9))
            .map(|b| usize::from(*b) * (max + 8) / 255)
            .collect(),
        None => vec![0, 1, max],
    };
    let mut sent = Vec::new();
    for (k, len) in lens.into_iter().enumerate() {
        let msg = payload(k as u64, len, 0x5a);
        match producer.try_send(&msg) {
            Ok(()) => sent.push(msg),
            // Full, or a stream at the position ceiling (a documented error).
            Err(TrySendError::Full | TrySendError::Exhausted) => {}
            Err(TrySendError::TooLarge { .. }) => assert!(len > max),
            Err(e) => panic!("try_send({len}) after a takeover: {e:?}"),
        }
    }
    if let Some(c) = &mut late {
        for (k, msg) in sent.iter().enumerate() {
            let m = c
                .try_recv()
                .unwrap_or_else(|e| panic!("message {k} of {}: {e:?}", sent.len()));
            assert_eq!(&*m, &msg[..], "message {k}");
            assert_eq!(m.seq(), first_seq.wrapping_add(k as u64), "message {k}");
        }
        // After a send, the producer has marked the next position unpublished. Before the
        // first one, the tail may still hold a leftover record whose stamp matches but whose
        // header is invalid (a valid one would have been walked over by the takeover): a
        // consumer reports it as corrupt.
        match c.try_recv().map(|m| m.seq()) {
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Corrupt(e)) if sent.is_empty() => {
                assert_eq!(e.position, tail, "{e:?}");
            }
            other => panic!("after the last message: {other:?}"),
        }
    }
    for c in early.iter_mut().chain(&mut late_oldest) {
        receive_any(&seg, c);
    }

    // Close: the late consumer sees the end of the stream.
    drop(producer);
    if let Some(c) = &mut late {
        match c.try_recv().map(|m| m.seq()) {
            Err(TryRecvError::Disconnected) => {}
            Err(TryRecvError::Corrupt(e)) if sent.is_empty() => assert_eq!(e.position, tail),
            other => panic!("after the close: {other:?}"),
        }
    }
    for c in early.iter_mut().chain(&mut late_oldest) {
        receive_any(&seg, c);
    }
});
