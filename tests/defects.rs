//! Regression tests for the defects of issue 10 that live in one process (heap rings, so
//! they also run under Miri). Each test is named after the behaviour it pins down and says
//! which defect it reproduces; every one failed before its fix.

#[macro_use]
mod common;

use common::harness::Outcome;
use shmcast::fuzzing::layout::{
    record_size, MAX_POSITION, PRODUCER_CLAIM, PRODUCER_HEAD, PRODUCER_NEXT_SEQ, PRODUCER_TAIL,
    RECORD_SEQ, SLOT_STATE,
};
use shmcast::fuzzing::HostileSegment;
use shmcast::{
    Consumer, CreateError, OpenError, Producer, RecvError, SegmentError, StartAt, TryRecvError,
    TrySendError,
};
use std::time::Duration;

/// Receive with `try_recv` until a message or an error other than `Empty`, at most `polls`
/// times (a consumer that keeps saying `Empty` gives `Err(Empty)`).
fn try_recv_some(c: &mut Consumer, polls: usize) -> Result<(u64, Vec<u8>), TryRecvError> {
    for _ in 0..polls {
        match c.try_recv() {
            Ok(m) => return Ok((m.seq(), m.to_vec())),
            Err(TryRecvError::Empty) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(TryRecvError::Empty)
}

/// A heap ring of 256 bytes (largest message 40 bytes) with nobody attached.
fn lone_producer() -> Producer {
    Producer::builder()
        .capacity(256)
        .create_in_process()
        .expect("valid config")
}

// ---- 1. send_batch laps its own unpublished first record -------------------------------

/// Issue 10, defect 1: with no lossless consumer gating, a batch larger than the free ring
/// wrote over its own first record, then published the first stamp over what lay there
/// then. An `Oldest` consumer must read only messages that were sent, in order.
fn a_batch_larger_than_the_ring_never_overwrites_its_own_first_record() {
    let mut p = lone_producer();
    p.send(&[0xAA; 16]).unwrap();
    let batch: Vec<Vec<u8>> = std::iter::once(vec![0xB0; 16])
        .chain((1..5u8).map(|i| vec![0xB0 + i; 40]))
        .collect();
    p.send_batch(&batch).unwrap();
    let mut sent = vec![vec![0xAA; 16]];
    sent.extend(batch);
    let mut c = Consumer::builder()
        .start_at(StartAt::Oldest)
        .attach_to(&p)
        .unwrap();
    let mut last = None;
    while let Ok((seq, bytes)) = try_recv_some(&mut c, 1) {
        assert!(
            last.is_none_or(|l| seq == l + 1),
            "seq {seq} after {last:?}"
        );
        assert_eq!(
            bytes, sent[seq as usize],
            "message {seq} is not what was sent"
        );
        last = Some(seq);
    }
    assert_eq!(last, Some(5), "the newest message must be readable");
}

/// Issue 10, defect 1, second form: a batch of ten 16-byte messages in a 256-byte ring left
/// an `Oldest` consumer reading `Empty` for ever and the producer `Full` for ever.
fn after_a_batch_that_wraps_an_oldest_consumer_reads_and_the_producer_goes_on() {
    let mut p = lone_producer();
    let batch: Vec<[u8; 16]> = (0..10u8).map(|i| [i; 16]).collect();
    p.send_batch(&batch).unwrap();
    let mut c = Consumer::builder()
        .start_at(StartAt::Oldest)
        .attach_to(&p)
        .unwrap();
    let (first, bytes) = try_recv_some(&mut c, 4).expect("the oldest message is readable");
    assert_eq!(bytes, [first as u8; 16]);
    let mut next = first + 1;
    while next < 10 {
        let (seq, bytes) = try_recv_some(&mut c, 4).expect("every later message is readable");
        assert_eq!((seq, bytes), (next, vec![next as u8; 16]));
        next += 1;
    }
    for i in 10..40u8 {
        p.try_send(&[i; 16])
            .expect("the consumer keeps up: never Full");
        let (seq, bytes) = try_recv_some(&mut c, 4).expect("published");
        assert_eq!((seq, bytes), (u64::from(i), vec![i; 16]));
    }
}

// ---- 2. bytes behind a live &[u8] -------------------------------------------------------

/// Issue 10, defect 2: `evict_after` evicted a consumer holding a `Message` and the producer
/// overwrote the bytes it borrowed (Miri: Stacked Borrows violation). A held message never
/// changes; the consumer learns of the eviction on its next call.
fn a_message_held_by_an_evicted_consumer_never_changes() {
    let mut p = Producer::builder()
        .capacity(256)
        .evict_after(Duration::from_millis(1))
        .create_in_process()
        .unwrap();
    let mut c = Consumer::builder().attach_to(&p).unwrap();
    p.send(&[0x11; 40]).unwrap();
    let held = c.recv().unwrap();
    let before = held.to_vec();
    // Lap the ring several times: the producer has to evict the consumer to get past it.
    for i in 0..32u8 {
        p.send(&[i; 40]).unwrap();
    }
    assert!(p.stats().evictions >= 1, "{:?}", p.stats());
    assert_eq!(&*held, &before[..], "the bytes behind a live &[u8] changed");
    drop(held);
    assert_eq!(c.try_recv().unwrap_err(), TryRecvError::Evicted);
}

/// Issue 10, defect 2: a reservation handed out `&mut [u8]` into a heap ring while a lapped
/// lossy reader loaded the same words (Miri: data race). Run under Miri, this program has
/// no data race; elsewhere it checks that a lossy reader racing reservations never returns
/// a torn message.
fn reservations_race_no_lossy_reader_of_a_heap_ring() {
    let rounds: u64 = if cfg!(miri) { 60 } else { 20_000 };
    let mut p = lone_producer();
    let mut lossy = Consumer::builder().lossy().attach_to(&p).unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut got = 0u64;
        loop {
            match lossy.try_recv_into(&mut buf) {
                Ok(seq) => {
                    assert!(
                        buf.iter().all(|&b| b == seq as u8),
                        "torn message {seq}: {buf:?}"
                    );
                    got += 1;
                }
                Err(TryRecvError::Empty | TryRecvError::Lagged(_)) => std::thread::yield_now(),
                Err(TryRecvError::Disconnected) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    });
    for seq in 0..rounds {
        let mut r = p.reserve(32).unwrap();
        r.fill(seq as u8);
        r.commit();
    }
    drop(p);
    reader.join().unwrap();
}

// ---- 3. the shared claim word -----------------------------------------------------------

/// Issue 10, defect 3: a peer writing `claim = 2^62` made a lossy consumer spin, reporting
/// `Empty` with messages present. An impossible claim is corruption.
fn a_lossy_consumer_reports_an_impossible_claim_as_corrupt() {
    let mut p = lone_producer();
    let mut lossy = Consumer::builder().lossy().attach_to(&p).unwrap();
    p.send(b"present").unwrap();
    let seg = HostileSegment::of_producer(&p).unwrap();
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(PRODUCER_CLAIM, &(1u64 << 62).to_ne_bytes()) }
    let mut buf = Vec::new();
    let outcome = (0..1000)
        .map(|_| lossy.try_recv_into(&mut buf))
        .find(|r| r != &Err(TryRecvError::Empty));
    assert!(
        matches!(outcome, Some(Err(TryRecvError::Corrupt(_)))),
        "{outcome:?}"
    );
}

/// Issue 10, defect 3: a claim of `2^62` written while no producer lived was adopted by the
/// next producer, and every later lossless attach failed with `AttachRace`. Takeover
/// clamps it.
fn a_takeover_clamps_an_impossible_claim_and_consumers_attach() {
    let seg = HostileSegment::fresh(256, 40, 2).unwrap();
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(PRODUCER_CLAIM, &(1u64 << 62).to_ne_bytes()) }
    let mut p = seg.producer().expect("takeover");
    let mut c = seg
        .consumer(StartAt::Next)
        .expect("attach after the takeover");
    p.send(b"after").unwrap();
    assert_eq!(try_recv_some(&mut c, 4).unwrap(), (0, b"after".to_vec()));
}

// ---- 4. an overwritten record stamp -----------------------------------------------------

/// A ring that has wrapped twice, three more messages, and a consumer that has read the
/// first of them; the second lies at position 672 (32-byte records, 8 to a lap).
fn three_sent() -> (Producer, Consumer, HostileSegment) {
    let mut p = lone_producer();
    let mut c = Consumer::builder().attach_to(&p).unwrap();
    for i in 0..20u8 {
        p.send(&[i; 8]).unwrap();
        assert_eq!(try_recv_some(&mut c, 1).unwrap().0, u64::from(i));
    }
    for i in 20..23u8 {
        p.send(&[i; 8]).unwrap();
    }
    assert_eq!(try_recv_some(&mut c, 1).unwrap().0, 20);
    let seg = HostileSegment::of_producer(&p).unwrap();
    (p, c, seg)
}

/// Where the second of the three records lies.
const SECOND: u64 = 672;

/// Stamps a peer could leave there: the position of the same index one lap earlier, zero,
/// an "unpublished" stamp, and garbage.
fn bad_stamps() -> [u64; 4] {
    [SECOND - 256, 0, (1 << 63) | 22, 0x1234_5678]
}

/// Issue 10, defect 4: with later records published (the producer's tail proves it), a
/// stamp that is not the record's position is corruption, reported as such, not `Empty`
/// for ever.
fn a_bad_stamp_behind_the_published_tail_is_reported_as_corrupt() {
    for stamp in bad_stamps() {
        let (_p, mut c, seg) = three_sent();
        // SAFETY: no message of this ring is held in place while it is scribbled on.
        unsafe { seg.scribble_ring(SECOND, &stamp.to_ne_bytes()) }
        let r = try_recv_some(&mut c, 10_000);
        assert!(
            matches!(r, Err(TryRecvError::Corrupt(_))),
            "stamp {stamp:#x}: {r:?}"
        );
    }
}

/// Issue 10, defect 4: after the producer closed, the consumer reported `Disconnected`
/// although later records existed.
fn a_bad_stamp_is_corrupt_not_disconnected_after_close() {
    for stamp in bad_stamps() {
        let (p, mut c, seg) = three_sent();
        // SAFETY: no message of this ring is held in place while it is scribbled on.
        unsafe { seg.scribble_ring(SECOND, &stamp.to_ne_bytes()) }
        drop(p);
        let r = try_recv_some(&mut c, 10);
        assert!(
            matches!(r, Err(TryRecvError::Corrupt(_))),
            "stamp {stamp:#x}: {r:?}"
        );
    }
}

/// Issue 10, defect 4: after a takeover, the consumer waited for ever at the bad stamp.
fn a_bad_stamp_is_corrupt_after_a_takeover() {
    for stamp in bad_stamps() {
        let (p, mut c, seg) = three_sent();
        // SAFETY: no message of this ring is held in place while it is scribbled on.
        unsafe { seg.scribble_ring(SECOND, &stamp.to_ne_bytes()) }
        drop(p);
        let mut p2 = seg.producer().expect("takeover");
        p2.send(b"more").unwrap();
        let r = c.recv_timeout(Duration::from_secs(5));
        assert!(
            matches!(r, Err(shmcast::RecvTimeoutError::Corrupt(_))),
            "stamp {stamp:#x}: {r:?}"
        );
    }
}

// ---- 5. takeover and next_seq -------------------------------------------------------

/// Issue 10, defect 5: a takeover trusted a corrupted `next_seq`, so `seq()` jumped or went
/// backwards with no error. The sequence goes on from the records.
fn a_takeover_continues_the_sequence_whatever_next_seq_says() {
    for forged in [2u64, 4, 6, 100] {
        let seg = HostileSegment::fresh(256, 40, 2).unwrap();
        let mut c = seg.consumer(StartAt::Oldest).unwrap();
        let mut p = seg.producer().unwrap();
        for i in 0..5u8 {
            p.send(&[i; 8]).unwrap();
        }
        drop(p);
        // SAFETY: no message of this ring is held in place while it is scribbled on.
        unsafe { seg.scribble(PRODUCER_NEXT_SEQ, &forged.to_ne_bytes()) }
        match seg.producer() {
            Ok(mut p2) => {
                p2.send(&[5; 8]).unwrap();
                for want in 0..6u64 {
                    let (seq, bytes) = try_recv_some(&mut c, 4).expect("sent");
                    assert_eq!((seq, bytes), (want, vec![want as u8; 8]), "forged {forged}");
                }
            }
            Err(e) => assert!(
                matches!(e, OpenError::Segment(SegmentError::BadPosition { .. })),
                "forged {forged}: {e}"
            ),
        }
    }
}

// ---- 6. an absurd Lagged ----------------------------------------------------------------

/// Issue 10, defect 6: a forged record sequence number made a lossy consumer report an
/// absurd `Lagged(18446744073709551256)`. A loss larger than the ring could have held is
/// corruption.
fn a_forged_sequence_number_is_corrupt_not_an_absurd_lag() {
    for forged in [u64::MAX - 100, 1 << 60, 1_000_000] {
        let mut p = lone_producer();
        let mut lossy = Consumer::builder().lossy().attach_to(&p).unwrap();
        let mut buf = Vec::new();
        for i in 0..40u8 {
            p.send(&[i; 16]).unwrap();
        }
        let seg = HostileSegment::of_producer(&p).unwrap();
        // Every record still in the ring: six 40-byte records and 16 bytes of padding a lap.
        let tail = seg.load_u64(PRODUCER_TAIL);
        for lap in [tail / 256 - 1, tail / 256] {
            for k in 0..6 {
                let pos = lap * 256 + k * record_size(16);
                if pos + 256 >= tail && pos < tail {
                    // SAFETY: no message of this ring is held in place while it is scribbled on.
                    unsafe { seg.scribble_ring(pos + RECORD_SEQ, &forged.to_ne_bytes()) }
                }
            }
        }
        let r = lossy.try_recv_into(&mut buf);
        eprintln!("forged {forged}: tail {tail} {r:?}");
        match r {
            Err(TryRecvError::Corrupt(c)) => eprintln!("forged {forged}: {c}"),
            Err(TryRecvError::Lagged(n)) => assert!(n <= 40, "forged {forged}: Lagged({n})"),
            other => panic!("forged {forged}: {other:?}"),
        }
    }
}

// ---- 9. resource limits -----------------------------------------------------------------

/// Issue 10, defect 9: `capacity(usize::MAX)` without `max_message` overflowed (a panic in
/// builds with overflow checks, as under Miri). It is an invalid configuration.
fn an_absurd_capacity_is_an_invalid_config() {
    let r = Producer::builder().capacity(usize::MAX).create_in_process();
    assert!(matches!(r, Err(CreateError::InvalidConfig(_))), "{r:?}");
}

/// Issue 10, defect 9: a heap ring whose allocation fails aborted the process. It is an
/// error. (Skipped under Miri, which cannot attempt a 1 TiB allocation.)
fn a_heap_ring_that_cannot_be_allocated_is_an_error() -> Outcome {
    if cfg!(miri) {
        return Outcome::Skipped("a 1 TiB allocation".into());
    }
    // With overcommit the kernel may grant it; either way the process must not abort.
    match Producer::builder().capacity(1 << 40).create_in_process() {
        Ok(p) => assert_eq!(p.capacity(), 1 << 40),
        Err(e) => assert!(matches!(e, CreateError::Io { .. }), "{e}"),
    }
    Outcome::Passed
}

// ---- smaller defects --------------------------------------------------------------------

/// A stale or hostile `head` (off every record boundary) made an `Oldest` consumer register
/// there and gate the producer for ever.
fn an_oldest_consumer_never_registers_off_a_record_boundary() {
    let mut p = lone_producer();
    for i in 0..11u8 {
        p.send(&[i; 16]).unwrap();
    }
    let seg = HostileSegment::of_producer(&p).unwrap();
    // A claim that puts the oldest intact byte 16 bytes below the tail, and a head there:
    // inside a record, not at its start.
    let tail = seg.load_u64(PRODUCER_TAIL);
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(PRODUCER_CLAIM, &(tail + 256 - 16).to_ne_bytes()) }
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(PRODUCER_HEAD, &(tail - 16).to_ne_bytes()) }
    let mut c = Consumer::builder()
        .start_at(StartAt::Oldest)
        .attach_to(&p)
        .unwrap();
    for i in 11..40u8 {
        p.try_send(&[i; 16])
            .expect("the consumer keeps up: never Full");
        loop {
            match try_recv_some(&mut c, 2) {
                Ok((seq, bytes)) => {
                    assert_eq!(bytes, vec![seq as u8; 16]);
                    if seq == u64::from(i) {
                        break;
                    }
                }
                Err(e) => panic!("message {i}: {e:?}"),
            }
        }
    }
}

/// A failed lossless registration left its slot marked LOSSLESS: a ghost the producer had
/// to reclaim. (The original path, an error while re-reading the tail between attempts,
/// needs a peer racing the attach; every error after the slot is marked now goes through
/// one guard, checked here with an impossible claim, which fails the attach mid-handshake.)
fn a_failed_attach_leaves_its_slot_free() {
    let seg = HostileSegment::fresh(256, 40, 2).unwrap();
    let _p = seg.producer().unwrap();
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble(PRODUCER_CLAIM, &(1u64 << 61).to_ne_bytes()) }
    for start in [StartAt::Next, StartAt::Oldest] {
        let r = seg.consumer(start);
        assert!(r.is_err(), "{r:?}");
    }
    for i in 0..2 {
        let state = seg.load_u32(seg.slot_offset(i) + SLOT_STATE);
        assert_eq!(state & 0xff, 0, "slot {i} state {state:#x}");
    }
}

/// Positions carry across takeovers, and had no refusal at their ceiling (2^62 bytes).
fn a_stream_at_the_position_ceiling_refuses_to_send() {
    let seg = HostileSegment::fresh(256, 40, 2).unwrap();
    let near = MAX_POSITION - 256;
    for at in [PRODUCER_TAIL, PRODUCER_CLAIM, PRODUCER_HEAD] {
        // SAFETY: no message of this ring is held in place while it is scribbled on.
        unsafe { seg.scribble(at, &near.to_ne_bytes()) }
    }
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble_ring(near, &(1u64 << 63).to_ne_bytes()) }
    let mut p = seg.producer().expect("takeover below the ceiling");
    let mut refused = false;
    for _ in 0..20 {
        match p.try_send(&[1; 16]) {
            Ok(()) => {}
            Err(TrySendError::Full) => panic!("nobody gates this ring"),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "sent past the position ceiling");
    assert!(seg.load_u64(PRODUCER_TAIL) <= MAX_POSITION);
}

/// The handles are `Send` and `Sync` (every mutating call takes `&mut self`), and the docs
/// say so.
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Producer>();
    send_sync::<Consumer>();
    send_sync::<shmcast::LossyConsumer>();
    let _ = RecvError::Disconnected;
}

fn main() {
    common::harness::main(
        None,
        &[
            case!(a_batch_larger_than_the_ring_never_overwrites_its_own_first_record),
            case!(after_a_batch_that_wraps_an_oldest_consumer_reads_and_the_producer_goes_on),
            case!(a_message_held_by_an_evicted_consumer_never_changes),
            case!(reservations_race_no_lossy_reader_of_a_heap_ring),
            case!(a_lossy_consumer_reports_an_impossible_claim_as_corrupt),
            case!(a_takeover_clamps_an_impossible_claim_and_consumers_attach),
            case!(a_bad_stamp_behind_the_published_tail_is_reported_as_corrupt),
            case!(a_bad_stamp_is_corrupt_not_disconnected_after_close),
            case!(a_bad_stamp_is_corrupt_after_a_takeover),
            case!(a_takeover_continues_the_sequence_whatever_next_seq_says),
            case!(a_forged_sequence_number_is_corrupt_not_an_absurd_lag),
            case!(an_absurd_capacity_is_an_invalid_config),
            skippable!(a_heap_ring_that_cannot_be_allocated_is_an_error),
            case!(an_oldest_consumer_never_registers_off_a_record_boundary),
            case!(a_failed_attach_leaves_its_slot_free),
            case!(a_stream_at_the_position_ceiling_refuses_to_send),
            case!(handles_are_send_and_sync),
        ],
    );
}
