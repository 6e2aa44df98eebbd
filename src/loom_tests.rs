//! loom model checks of the production ring: the tests drive the same ring functions the
//! public handles call (`ring::writer::RingProducer`, `ring::attach::RingConsumer`), on the
//! model region (`region/model.rs`: loom atomics, loom cells for payload bytes, liveness
//! locks as model-visible flags, the futex as a loom mutex and condition variable, no
//! timeouts). Run with `.ci/loom.sh` (or `RUSTFLAGS="--cfg shmcast_loom" cargo test --lib
//! --release loom_tests`).
//!
//! One property per test, each named after it, on a 256-byte ring (largest message 40
//! bytes: at most four records live at once) with a handful of messages; most start from a
//! ring that already holds two laps of earlier data, so stale stamps and payload bytes are
//! there to be misread. Beside each test: the orderings and fences it guards; the mutation
//! runner (`.ci/mutants.sh`) shows which weakening each one kills.
//!
//! Tests of data orderings use the non-blocking calls in yield loops, so the only
//! happens-before edges between the threads are the ring's atomics (the futex model's mutex
//! would add edges of its own and hide a weakened ordering). Tests of wake-ups use the
//! blocking calls and never close the stream unless closing is the property, so that a
//! lost wake-up is a loom deadlock.

use crate::error::{RecvTimeoutError, TryRecvError, TrySendError};
use crate::layout::{check_config, max_message_for, Geometry};
use crate::region::Region;
use crate::ring::attach::{Mode, RingConsumer};
use crate::ring::writer::RingProducer;
use crate::ring::{Record, StartAt};
use crate::wait::WaitPolicy;
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The smallest ring the layout allows.
const CAPACITY: u64 = 256;
/// The largest message in a 256-byte ring: a 64-byte record.
const MAX: usize = 40;
/// Preemption bounds (`LOOM_MAX_PREEMPTIONS` overrides them): small models are searched
/// deeper; the one model whose state space explodes at 2 runs at 1.
const DEEP: usize = 3;
const NORMAL: usize = 2;
const SHALLOW: usize = 1;
/// Every blocking call sleeps on the futex model at the first unsuccessful check.
const BLOCK: WaitPolicy = WaitPolicy::Adaptive {
    spins: 0,
    yields: 0,
};

/// Explore every interleaving of `f` within the preemption bound `bound` (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise) and report how many there were and how long it
/// took.
fn model<F>(name: &str, bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let iterations = Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(bound);
    let bound = builder.preemption_bound;
    let count = Arc::clone(&iterations);
    let start = Instant::now();
    builder.check(move || {
        count.fetch_add(1, Relaxed);
        f();
    });
    eprintln!(
        "loom {name}: {} iterations in {:.2?} (preemption bound {bound:?})",
        iterations.load(Relaxed),
        start.elapsed(),
    );
}

/// A ring of `CAPACITY` bytes with the largest messages the layout allows.
fn ring(max_consumers: u32) -> Arc<Region> {
    let max_message = max_message_for(CAPACITY);
    check_config(CAPACITY, max_message, u64::from(max_consumers)).expect("a valid geometry");
    let geo = Geometry::new(CAPACITY, max_message as u32, max_consumers);
    Arc::new(Region::heap(geo).expect("a model ring"))
}

fn producer(r: &Arc<Region>) -> RingProducer {
    RingProducer::attach(Arc::clone(r), None).expect("no other producer")
}

fn consumer(r: &Arc<Region>, start: StartAt) -> RingConsumer {
    RingConsumer::attach(Arc::clone(r), start, false).expect("a free slot")
}

fn lossy(r: &Arc<Region>, start: StartAt) -> RingConsumer {
    RingConsumer::attach(Arc::clone(r), start, true).expect("a free slot")
}

/// A message as a consumer read it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    seq: u64,
    data: Vec<u8>,
}

/// The payload of message `seq`: every byte depends on the message, so a torn or stale
/// copy differs from it.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as u8).wrapping_mul(37).wrapping_add(i as u8) ^ 0x5a)
        .collect()
}

fn msg(seq: u64, len: usize) -> Msg {
    Msg {
        seq,
        data: payload(seq, len),
    }
}

/// The messages `first..` with lengths `lens`.
fn msgs(first: u64, lens: &[usize]) -> Vec<Msg> {
    (first..).zip(lens).map(|(s, &len)| msg(s, len)).collect()
}

/// Read the record `c` holds, then release it: what reading a `Message` and dropping it
/// does (the copy is the model's stand-in for reading the borrowed bytes).
fn take(c: &mut RingConsumer, rec: Record) -> Msg {
    let mut data = vec![0; rec.len];
    c.copy_payload(&rec, &mut data);
    let seq = rec.seq;
    c.release(rec);
    Msg { seq, data }
}

fn try_recv(c: &mut RingConsumer) -> Result<Msg, TryRecvError> {
    let rec = c.try_recv()?.ok_or(TryRecvError::Empty)?;
    Ok(take(c, rec))
}

fn recv(c: &mut RingConsumer) -> Result<Msg, RecvTimeoutError> {
    let rec = c.recv(BLOCK, 0, None)?;
    Ok(take(c, rec))
}

fn try_recv_lossy(c: &mut RingConsumer) -> Result<Msg, TryRecvError> {
    let mut data = Vec::new();
    let seq = c.try_recv_lossy(&mut data)?.ok_or(TryRecvError::Empty)?;
    Ok(Msg { seq, data })
}

/// Send message `seq`, yielding while the ring is full (no futex: lock-free paths only).
fn send_spinning(p: &mut RingProducer, seq: u64, len: usize) {
    let data = payload(seq, len);
    loop {
        match p.try_send(&data) {
            Ok(()) => return,
            Err(TrySendError::Full) => thread::yield_now(),
            Err(e) => panic!("send {seq}: {e}"),
        }
    }
}

/// Receive, yielding while the ring is empty (no futex: lock-free paths only).
fn recv_spinning(c: &mut RingConsumer) -> Result<Msg, TryRecvError> {
    loop {
        match try_recv(c) {
            Err(TryRecvError::Empty) => thread::yield_now(),
            r => return r,
        }
    }
}

fn recv_n_spinning(c: &mut RingConsumer, n: usize) -> Vec<Msg> {
    (0..n)
        .map(|_| recv_spinning(c).expect("a message"))
        .collect()
}

/// Receive until the stream ends, yielding while the ring is empty.
fn drain_spinning(c: &mut RingConsumer) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        match recv_spinning(c) {
            Ok(m) => got.push(m),
            Err(TryRecvError::Disconnected) => return got,
            Err(e) => panic!("after {got:?}: {e}"),
        }
    }
}

fn recv_n_blocking(c: &mut RingConsumer, n: usize) -> Vec<Msg> {
    (0..n).map(|_| recv(c).expect("a message")).collect()
}

fn drain_blocking(c: &mut RingConsumer) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        match recv(c) {
            Ok(m) => got.push(m),
            Err(RecvTimeoutError::Disconnected) => return got,
            Err(e) => panic!("after {got:?}: {e}"),
        }
    }
}

/// Run the ring through two laps before the concurrent phase (single-threaded, so it adds
/// no interleavings): every word of the ring then holds stamps, headers and payload bytes
/// of earlier records. Ten 24-byte messages (48-byte records: five to a lap, then a 16-byte
/// gap too short for a header) end at position 512, two laps on; every reader in `readers`
/// reads them all. Returns the next sequence number.
fn prefill(p: &mut RingProducer, readers: &mut [&mut RingConsumer]) -> u64 {
    let laps = [24; 10];
    for (seq, &len) in (0..).zip(&laps) {
        p.try_send(&payload(seq, len)).unwrap();
        for c in readers.iter_mut() {
            let got = match c.mode() {
                Mode::Lossy => try_recv_lossy(c),
                _ => try_recv(c),
            };
            assert_eq!(got, Ok(msg(seq, len)));
        }
    }
    laps.len() as u64
}

/// Property 1: exactly-once, in-order delivery to each of two consumers, across the end of
/// the ring (a padding record, then records in the next lap).
///
/// Guards: the publication stamp store `Release` in `writer.rs` `publish_stamps` (also the
/// padding record's) with the stamp load `Acquire` in `cursor.rs` `poll`, which make the
/// seq / meta words and the payload visible with the stamp.
#[test]
fn every_consumer_gets_every_message_once_in_order_across_the_wrap() {
    model("1 delivery", NORMAL, || {
        let ring = ring(2);
        let mut p = producer(&ring);
        // Before the consumers attach: records at 0, 64, 128, 192..224 (tail 224).
        for (seq, len) in [(0, MAX), (1, MAX), (2, MAX), (3, 8)] {
            p.try_send(&payload(seq, len)).unwrap();
        }
        // Concurrent: message 4 needs 40 bytes where 32 remain, so a padding record fills
        // 224..256 and message 4 goes to 256 (index 0); 5 and 6 follow in the second lap.
        let lens = [16, MAX, MAX];
        // One consumer polls in a yield loop (lock-free path), the other blocks on the
        // futex model. (Two consumers in yield loops exceed loom's branch limit.)
        let mut spinner = consumer(&ring, StartAt::Next);
        let mut sleeper = consumer(&ring, StartAt::Next);
        let spinner = thread::spawn(move || drain_spinning(&mut spinner));
        let sleeper = thread::spawn(move || recv_n_blocking(&mut sleeper, lens.len()));
        for (seq, &len) in (4..).zip(&lens) {
            send_spinning(&mut p, seq, len);
        }
        p.close();
        assert_eq!(spinner.join().unwrap(), msgs(4, &lens));
        assert_eq!(sleeper.join().unwrap(), msgs(4, &lens));
    });
}

/// Property 2: no torn read: a consumer never sees a record before its payload and header
/// are complete (loom fails on the racing payload access; the content check catches a
/// stale header word). One message alone, one written in place (`reserve` / `commit`, which
/// in a heap ring stages the bytes and copies them in at commit), then two as a batch (the
/// second record's stamp is stored before the first's, whose store publishes both). The
/// ring holds two laps of earlier records.
///
/// Guards: the publication stamp store `Release` in `publish_stamps`, and the stamp load
/// `Acquire` in `poll`.
#[test]
fn a_consumer_never_reads_a_record_before_it_is_complete() {
    model("2 no torn read", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let first = prefill(&mut p, &mut [&mut c]);
        let lens = [MAX, 16, 16, 8];
        let consumer = thread::spawn(move || recv_n_spinning(&mut c, lens.len()));
        send_spinning(&mut p, first, lens[0]);
        let res = loop {
            match p.try_reserve_staged(lens[1]) {
                Ok(r) => break r,
                Err(TrySendError::Full) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        p.reserved_mut(&res)
            .copy_from_slice(&payload(first + 1, lens[1]));
        p.commit(res);
        p.send_batch(
            &[&payload(first + 2, lens[2]), &payload(first + 3, lens[3])],
            BLOCK,
        )
        .unwrap();
        assert_eq!(consumer.join().unwrap(), msgs(first, &lens));
    });
}

/// Property 3: backpressure: the producer never overwrites a record a lossless consumer has
/// not released. Messages 0..=3 fill the ring up to 232; message 4 needs a padding record
/// at 232 and goes to 256, where its payload reuses the bytes of message 0's payload, so
/// the producer must wait for the consumer's release; loom fails if its write races with
/// the consumer's copy.
///
/// Guards: the gate itself (`gate.rs` `scan_gate`'s minimum and the limit `refresh` derives
/// from it). The cursor store `Release` in `cursor.rs` `publish` with the cursor load
/// `Acquire` in `scan_gate` is checked by property 6a instead: here `refresh` raises the
/// claim, with a `fence(SeqCst)`, between the cursor load and the overwrite.
#[test]
fn the_producer_never_overwrites_an_unreleased_record() {
    model("3 backpressure", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..4]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let consumer = thread::spawn(move || recv_n_spinning(&mut c, lens.len()));
        send_spinning(&mut p, 4, lens[4]);
        assert_eq!(consumer.join().unwrap(), msgs(0, &lens));
    });
}

/// Property 4, consumer side: a consumer asleep on an empty ring is woken by a publish (a
/// lost wake-up is a loom deadlock). Two messages, so it may also fall asleep after a
/// release.
///
/// Guards: the Dekker pair `fence(SeqCst)` in `eventcount.rs` `sleep` (flag RMW, fence,
/// re-check) and in `notify` (stamp store, fence, flag load).
#[test]
fn a_consumer_asleep_on_an_empty_ring_is_woken_by_a_publish() {
    model("4a consumer wake-up", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let consumer = thread::spawn(move || [recv(&mut c), recv(&mut c)]);
        p.try_send(&payload(0, 8)).unwrap();
        p.try_send(&payload(1, 0)).unwrap();
        assert_eq!(consumer.join().unwrap(), [Ok(msg(0, 8)), Ok(msg(1, 0))]);
    });
}

/// Property 4, consumer side, eventcount: every consumer asleep in the same generation is
/// woken by the one publish that clears the flag, and a consumer that announces itself as
/// that publish clears the flag still wakes (or never sleeps).
///
/// Guards: `wake_generation`'s order (clear the flag, then bump the word, then wake) and the
/// word bump's `Release`.
#[test]
fn every_consumer_asleep_in_one_generation_is_woken() {
    model("4c two sleepers", NORMAL, || {
        let ring = ring(2);
        let mut p = producer(&ring);
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let mut c = consumer(&ring, StartAt::Next);
                thread::spawn(move || [recv(&mut c), recv(&mut c)])
            })
            .collect();
        p.try_send(&payload(0, 8)).unwrap();
        p.try_send(&payload(1, 0)).unwrap();
        for c in sleepers {
            assert_eq!(c.join().unwrap(), [Ok(msg(0, 8)), Ok(msg(1, 0))]);
        }
    });
}

/// Property 4, producer side: a producer asleep on a full ring is woken by a release.
///
/// Guards: the Dekker pair `fence(SeqCst)` in `eventcount.rs` `sleep` (as called by
/// `sleep_for_space`: flag RMW, fence, gate rescan) and in `notify` (as called by
/// `cursor.rs` `publish`: cursor store, fence, flag load).
#[test]
fn a_producer_asleep_on_a_full_ring_is_woken_by_a_release() {
    model("4b producer wake-up", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        for seq in 0..3 {
            p.try_send(&payload(seq, MAX)).unwrap();
        }
        // Releasing message 0 (64 bytes, past the publish threshold) publishes the cursor
        // and must wake the producer, which needs exactly that record's space.
        let consumer = thread::spawn(move || recv(&mut c));
        p.send(&payload(3, MAX), BLOCK, None).unwrap();
        assert_eq!(consumer.join().unwrap(), Ok(msg(0, MAX)));
    });
}

/// Property 5: close is observed only after the last message.
///
/// Guards the edge from the producer's last publication to the consumer's re-poll after it
/// sees the close: the state load `Acquire` in `check_ended` (paired with the CLOSED store
/// `Release` in `writer.rs` `close`) and the producer-lock probe (paired with the unlock
/// that `close` does after storing CLOSED); each alone suffices.
#[test]
fn close_is_observed_only_after_the_last_message() {
    model("5 close after last", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let lens = [MAX, 8];
        let consumer = thread::spawn(move || drain_spinning(&mut c));
        for (seq, &len) in (0..).zip(&lens) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        p.close();
        assert_eq!(consumer.join().unwrap(), msgs(0, &lens));
    });
}

/// Property 5 on the blocking path: a consumer asleep (or about to sleep) when the stream
/// closes wakes, drains, then reports the close; it never spins between the producer's
/// CLOSED store and its unlock.
///
/// Guards: the close's wake (`eventcount.rs` `wake_all` after the unlock).
#[test]
fn a_blocking_consumer_sees_the_close_after_the_last_message() {
    model("5b blocking close", NORMAL, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let lens = [MAX, 8];
        let consumer = thread::spawn(move || drain_blocking(&mut c));
        for (seq, &len) in (0..).zip(&lens) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        p.close();
        assert_eq!(consumer.join().unwrap(), msgs(0, &lens));
    });
}

/// Property 6, attach: a consumer attaching at the oldest record while the producer claims
/// the space it starts in is never skipped by the gate: either the producer's rescan sees
/// the new slot and waits for its release, or the consumer sees the raised claim and starts
/// later. Whatever it starts at, it then receives every message from there on, intact.
///
/// Guards: the Dekker pair `fence(SeqCst)` in `attach.rs` `register_lossless` (cursor and
/// state stores, fence, claim load) and in `gate.rs` `refresh` (claim store, fence, slot
/// scan); the state store `Release` / state load `Acquire`; and the cursor store `Release`
/// in `publish` with the cursor load `Acquire` in `scan_gate` (when the rescan finds the
/// new slot behind the claim just raised, no claim raise, so no fence, lies between the
/// cursor load that frees message 0 and the write over it).
#[test]
fn an_attaching_consumer_is_never_skipped_by_the_gate() {
    model("6a attach at oldest vs publish", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..4]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let r = Arc::clone(&ring);
        let consumer = thread::spawn(move || {
            let mut c = consumer(&r, StartAt::Oldest);
            drain_spinning(&mut c)
        });
        send_spinning(&mut p, 4, lens[4]);
        p.close();
        let got = consumer.join().unwrap();
        let first = got.first().map_or(lens.len() as u64, |m| m.seq);
        assert_eq!(got, msgs(first, &lens[first as usize..]));
        assert!(
            first < lens.len() as u64,
            "the last message was sent after the attach"
        );
    });
}

/// Property 6, attach at the next message while the producer laps the ring: the consumer
/// starts at a record boundary the producer has not passed, and receives everything from
/// there on (the same handshake as 6a, from the tail).
#[test]
fn a_consumer_attaching_at_next_while_the_producer_laps_misses_nothing_after_its_start() {
    model("6c attach at next vs lapping", NORMAL, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let first = prefill(&mut p, &mut []);
        let lens = [MAX, MAX, MAX, MAX];
        let r = Arc::clone(&ring);
        let consumer = thread::spawn(move || {
            let mut c = consumer(&r, StartAt::Next);
            drain_spinning(&mut c)
        });
        for (seq, &len) in (first..).zip(&lens) {
            send_spinning(&mut p, seq, len);
        }
        p.close();
        let got = consumer.join().unwrap();
        let from = got.first().map_or(first + lens.len() as u64, |m| m.seq);
        assert_eq!(got, msgs(from, &lens[(from - first) as usize..]));
    });
}

/// Property 6, attach into a reused slot: the slot's cursor still holds where its previous
/// owner left it, two laps ago (an impossible cursor now). A consumer attaching there while
/// the producer scans must be judged by its own cursor: the producer sees the new state
/// only with the new cursor, never evicts the newcomer for its predecessor's position, and
/// the newcomer receives everything from its start.
///
/// Guards: the slot state store `Release` in `attach.rs` `register_lossless` (after the
/// cursor store) with the state load `Acquire` in `gate.rs` `scan_gate` (before the cursor
/// load).
#[test]
fn a_consumer_attaching_into_a_reused_slot_is_judged_by_its_own_cursor() {
    model("6d attach into a reused slot", NORMAL, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        // The first owner reads one message, releases it, and leaves: its cursor stays.
        let mut first = consumer(&ring, StartAt::Next);
        p.try_send(&payload(0, 8)).unwrap();
        assert_eq!(try_recv(&mut first), Ok(msg(0, 8)));
        first.publish();
        first.detach();
        // Two laps later, that cursor is impossible.
        let mut seq = 1;
        for _ in 0..10 {
            p.try_send(&payload(seq, 24)).unwrap();
            seq += 1;
        }
        let lens = [MAX, MAX, MAX, MAX];
        let r = Arc::clone(&ring);
        let consumer = thread::spawn(move || {
            let mut c = consumer(&r, StartAt::Next);
            drain_spinning(&mut c)
        });
        for (s, &len) in (seq..).zip(&lens) {
            send_spinning(&mut p, s, len);
        }
        p.close();
        let got = consumer.join().unwrap();
        let from = got.first().map_or(seq + lens.len() as u64, |m| m.seq);
        assert_eq!(got, msgs(from, &lens[(from - seq) as usize..]));
    });
}

/// Property 6, detach: a consumer that detaches while holding a record, with the producer
/// waiting on the full ring behind it, wakes the producer, which then overwrites that
/// record only after the consumer's last read of it.
///
/// Guards: the slot state store `Release` in `attach.rs` `detach` with the state load
/// `Acquire` in `scan_gate`; and the Dekker pair `fence(SeqCst)` in `notify` (as called
/// by `detach`) and in `sleep` (as called by `sleep_for_space`).
#[test]
fn a_detaching_consumer_frees_the_producer_after_its_last_read() {
    model("6b detach vs full", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..4]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let r = Arc::clone(&ring);
        let consumer = thread::spawn(move || {
            let mut c = consumer(&r, StartAt::Oldest);
            let held = c.try_recv().unwrap().map(|rec| {
                let mut data = vec![0; rec.len];
                c.copy_payload(&rec, &mut data);
                Msg { seq: rec.seq, data }
            });
            c.detach();
            held
        });
        // Padding at 232, then message 4 at 256: its payload reuses message 0's bytes.
        p.send(&payload(4, lens[4]), BLOCK, None).unwrap();
        if let Some(m) = consumer.join().unwrap() {
            assert_eq!(m, msg(m.seq, lens[m.seq as usize]));
        }
    });
}

/// What a lossy consumer saw until the stream ended: the messages it received and the
/// number it was told it lost. Checks as it goes that every message is the next one it
/// expects (the previous one plus what it was told it lost) and intact.
fn drain_lossy_spinning(c: &mut RingConsumer, mut next: Option<u64>) -> (Vec<u64>, u64) {
    let (mut got, mut lost) = (Vec::new(), 0);
    loop {
        match try_recv_lossy(c) {
            Ok(m) => {
                assert_eq!(
                    *next.get_or_insert(m.seq),
                    m.seq,
                    "after {got:?} and {lost} lost"
                );
                assert_eq!(
                    m.data,
                    payload(m.seq, m.data.len()),
                    "a lapped copy returned"
                );
                got.push(m.seq);
                next = Some(m.seq + 1);
            }
            Err(TryRecvError::Lagged(n)) => {
                assert!(n > 0, "Lagged(0)");
                let n0 = next.expect("a loss is counted from a known start");
                lost += n;
                next = Some(n0 + n);
            }
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(TryRecvError::Disconnected) => return (got, lost),
            Err(e) => panic!("after {got:?} and {lost} lost: {e}"),
        }
    }
}

/// Property 7: a lapped lossy consumer counts exactly what it lost, and never returns a
/// copy the producer overwrote while it was being taken. Nothing gates the producer:
/// messages 0..=2 are in the ring, and 3 and 4 lap it (4 needs a padding record and
/// overwrites message 0) while the consumer may be copying.
///
/// Guards: the seqlock validation in `lossy.rs` `poll_lossy` (`fence(Acquire)` after the
/// copy, then the claim load), which pairs with the `fence(SeqCst)` after the claim store
/// in `gate.rs` `refresh`; and the stamp load `Acquire` in `poll_lossy`.
#[test]
fn a_lapped_lossy_consumer_counts_exactly_what_it_lost() {
    model("7 lossy lapped", NORMAL, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = lossy(&ring, StartAt::Next);
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..3]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let consumer = thread::spawn(move || drain_lossy_spinning(&mut c, Some(0)));
        for (seq, &len) in (3..).zip(&lens[3..]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        p.close();
        let (got, lost) = consumer.join().unwrap();
        let n = lens.len() as u64;
        assert_eq!(got.len() as u64 + lost, n, "received {got:?}, lost {lost}");
        assert_eq!(
            got.last(),
            Some(&(n - 1)),
            "the last message is never lapped"
        );
    });
}

/// Property 7, attach: a lossy consumer attaching at the oldest record while the producer
/// laps the ring over it learns a start and the sequence number there that belong
/// together, and from there counts exactly what it loses. Messages 0..=2 are in the ring;
/// 3 and 4 (a padding record, then the record at 256 over message 0) lap the oldest start.
///
/// Guards: the seqlock validation in `attach.rs` `register_lossy` (`fence(Acquire)` after
/// reading the stamp and sequence number, then the claim load).
#[test]
fn a_lossy_consumer_attaching_while_the_producer_laps_counts_exactly() {
    model("7b lossy attach vs lapping", SHALLOW, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..3]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let r = Arc::clone(&ring);
        let consumer = thread::spawn(move || {
            let mut c = lossy(&r, StartAt::Oldest);
            let start = c.expected_seq();
            let (got, lost) = drain_lossy_spinning(&mut c, Some(start));
            (start, got, lost)
        });
        for (seq, &len) in (3..).zip(&lens[3..]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        p.close();
        let (start, got, lost) = consumer.join().unwrap();
        let end = lens.len() as u64;
        assert!(start <= end, "started at {start}");
        assert_eq!(
            got.len() as u64 + lost,
            end - start,
            "from {start}: {got:?}, lost {lost}"
        );
    });
}

/// Property 8: a batch never laps itself: with no lossless consumer to gate it, a batch of
/// four 64-byte records (256 bytes, plus the stamp ahead) in a 256-byte ring publishes in
/// two parts, so its first, still unpublished record is never overwritten by its own later
/// records; a lossy reader racing it receives only intact messages and counts exactly what
/// it missed.
///
/// Guards: the gate's ceiling at the published tail (`gate.rs` `scan_gate` starts from
/// `published`, not from the private tail).
#[test]
fn a_batch_never_laps_itself() {
    model("8 batch vs itself", NORMAL, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = lossy(&ring, StartAt::Next);
        let first = prefill(&mut p, &mut [&mut c]);
        let batch: Vec<Vec<u8>> = (first..first + 4).map(|s| payload(s, MAX)).collect();
        let consumer = thread::spawn(move || drain_lossy_spinning(&mut c, Some(first)));
        p.send_batch(&batch, BLOCK).unwrap();
        p.close();
        let (got, lost) = consumer.join().unwrap();
        assert_eq!(got.len() as u64 + lost, 4, "received {got:?}, lost {lost}");
        assert_eq!(got.last(), Some(&(first + 3)));
    });
}

/// Property 9: a takeover while a consumer polls: the first producer dies (its lock goes,
/// nothing else), a second takes over and goes on; the consumer receives every message of
/// both, in order, numbered in sequence, and at most learns in between that the producer
/// had died.
///
/// Guards: the takeover's Release stores of tail, next_seq, claim and state with the
/// consumers' Acquire loads, and the unpublished stamp it leaves at the tail.
#[test]
fn a_takeover_while_a_consumer_polls_continues_the_stream() {
    model("9 takeover vs poll", NORMAL, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let first = prefill(&mut p, &mut [&mut c]);
        let lens = [16, MAX, 8];
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < lens.len() {
                match try_recv(&mut c) {
                    Ok(m) => got.push(m),
                    Err(TryRecvError::Empty | TryRecvError::ProducerDied) => thread::yield_now(),
                    Err(e) => panic!("after {got:?}: {e}"),
                }
            }
            got
        });
        p.try_send(&payload(first, lens[0])).unwrap();
        p.die();
        let mut p2 = producer(&ring);
        for (seq, &len) in (first + 1..).zip(&lens[1..]) {
            send_spinning(&mut p2, seq, len);
        }
        assert_eq!(consumer.join().unwrap(), msgs(first, &lens));
    });
}

/// Property 10: eviction while a message is held: with `evict_after`, a consumer that
/// attached while the producer evicts reads copies; holding one while the producer evicts
/// it and laps the ring changes nothing it holds (loom fails on a racing access), and its
/// next poll says it was evicted.
///
/// Guards: the copy's seqlock validation in `cursor.rs` `copy_validated` (`fence(Acquire)`,
/// then the claim load `Acquire`, then the state load), against the claim fence in
/// `refresh`.
#[test]
fn a_message_held_by_an_evicted_consumer_never_changes() {
    model("10 eviction vs held", DEEP, || {
        let ring = ring(1);
        let mut p = RingProducer::attach(Arc::clone(&ring), Some(Duration::ZERO)).unwrap();
        let mut c = consumer(&ring, StartAt::Next);
        p.try_send(&payload(0, MAX)).unwrap();
        let consumer = thread::spawn(move || {
            // Polled while the producer may be evicting us and overwriting the record.
            let held = match c.try_recv() {
                Ok(Some(rec)) => rec,
                Err(TryRecvError::Evicted) => return None,
                other => panic!("{other:?}"),
            };
            let mut first = vec![0; held.len];
            c.copy_payload(&held, &mut first);
            thread::yield_now();
            let mut again = vec![0; held.len];
            c.copy_payload(&held, &mut again);
            assert_eq!(first, again, "a held message changed");
            assert_eq!(first, payload(0, MAX), "a torn copy was handed out");
            Some((c, held))
        });
        // Four more 64-byte records: the last needs the held record's bytes, so the producer
        // has to evict the consumer to write it.
        for seq in 1..5 {
            send_spinning(&mut p, seq, MAX);
        }
        if let Some((mut c, held)) = consumer.join().unwrap() {
            c.release(held);
            assert!(matches!(c.try_recv(), Err(TryRecvError::Evicted)));
        }
    });
}

/// Property 11: a dead consumer is reclaimed: a consumer that dies holding the ring full
/// (its lock goes, its slot stays) does not stall the producer, whose blocking send
/// completes.
///
/// Guards: the liveness probe in `scan_gate` (the lock flag's Acquire load) and the
/// eviction compare-and-swap.
#[test]
fn a_dead_consumer_is_reclaimed() {
    model("11 dead consumer", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let c = consumer(&ring, StartAt::Next);
        for seq in 0..3 {
            p.try_send(&payload(seq, MAX)).unwrap();
        }
        let dying = thread::spawn(move || c.die());
        // Spinning: a blocking send would sleep until a bounded timeout re-probes, and the
        // model has no timeouts (nobody wakes a producer for a consumer that died).
        send_spinning(&mut p, 3, MAX);
        dying.join().unwrap();
        assert!(p.stats.evictions >= 1);
    });
}

/// Property 12: a dead producer is reported after the last message it published: the
/// consumer drains, then learns the producer died (not that it closed).
///
/// Guards: the producer-lock probe in `cursor.rs` `check_ended` (Acquire: everything the
/// producer published before its lock went is visible).
#[test]
fn a_dead_producer_is_reported_after_its_last_message() {
    model("12 dead producer", DEEP, || {
        let ring = ring(1);
        let mut p = producer(&ring);
        let mut c = consumer(&ring, StartAt::Next);
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match try_recv(&mut c) {
                    Ok(m) => got.push(m),
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(TryRecvError::ProducerDied) => return got,
                    Err(e) => panic!("after {got:?}: {e}"),
                }
            }
        });
        p.try_send(&payload(0, MAX)).unwrap();
        p.try_send(&payload(1, 8)).unwrap();
        p.die();
        assert_eq!(consumer.join().unwrap(), msgs(0, &[MAX, 8]));
    });
}
