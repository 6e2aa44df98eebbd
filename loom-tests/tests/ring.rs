//! loom model checks of the ring: one property per test, each named after it, each on a
//! 256-byte ring (largest message 40 bytes, so at most four records live at once) with a
//! handful of messages. Beside each test: the orderings and fences it guards; `weaken.sh`
//! shows that weakening any of them makes the test fail.
//!
//! Tests of data orderings (2, 3, 5, 6a, 7 and one of the two consumers of 1) use the
//! non-blocking calls in yield loops, so the only happens-before edges between the threads
//! are the ring's atomics: the futex model's mutex would otherwise add edges of its own and
//! hide a weakened ordering. Tests of wake-ups (4a, 4b, 4c, 5b, 6b) use the blocking calls
//! and never close the stream unless closing is the property, so that a lost wake-up is a
//! loom deadlock. Where a test's message lengths look arbitrary, they place a write where only
//! the guarded ordering separates it from a racing access (see 3, 6b and 7).

#![cfg(shmcast_loom)]

use loom::thread;
use shmcast::loom_api::{
    Consumer, LossyConsumer, Msg, Producer, RecvTimeoutError, Ring, StartAt, TryRecvError,
    TrySendError,
};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// The smallest ring the layout allows.
const CAPACITY: u64 = 256;
/// The largest message in a 256-byte ring: a 64-byte record.
const MAX: usize = 40;
/// Used when `LOOM_MAX_PREEMPTIONS` is not set.
const DEFAULT_PREEMPTIONS: usize = 2;

/// Explore every interleaving of `f` (within the preemption bound) and report how many
/// there were and how long it took.
fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let iterations = Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(DEFAULT_PREEMPTIONS);
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

/// Send message `seq`, yielding while the ring is full (no futex: lock-free paths only).
fn send_spinning(p: &mut Producer, seq: u64, len: usize) {
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
fn recv_spinning(c: &mut Consumer) -> Result<Msg, TryRecvError> {
    loop {
        match c.try_recv() {
            Err(TryRecvError::Empty) => thread::yield_now(),
            r => return r,
        }
    }
}

/// Receive `n` messages, yielding while the ring is empty.
fn recv_n_spinning(c: &mut Consumer, n: usize) -> Vec<Msg> {
    (0..n)
        .map(|_| recv_spinning(c).expect("a message"))
        .collect()
}

/// Receive until the stream ends, yielding while the ring is empty.
fn drain_spinning(c: &mut Consumer) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        match recv_spinning(c) {
            Ok(m) => got.push(m),
            Err(TryRecvError::Disconnected) => return got,
            Err(e) => panic!("after {got:?}: {e}"),
        }
    }
}

/// Receive `n` messages (blocking).
fn recv_n_blocking(c: &mut Consumer, n: usize) -> Vec<Msg> {
    (0..n).map(|_| c.recv().expect("a message")).collect()
}

/// Receive (blocking) until the stream ends.
fn drain_blocking(c: &mut Consumer) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        match c.recv() {
            Ok(m) => got.push(m),
            Err(RecvTimeoutError::Disconnected) => return got,
            Err(e) => panic!("after {got:?}: {e}"),
        }
    }
}

/// Property 1: exactly-once, in-order delivery to each of two consumers, across the end of
/// the ring (a padding record, then records in the next lap).
///
/// Guards: the publication stamp store `Release` in `publish_stamps` (also the padding
/// record's) with the stamp load `Acquire` in `poll`, which make the seq / meta words and
/// the payload visible with the stamp.
#[test]
fn every_consumer_gets_every_message_once_in_order_across_the_wrap() {
    model("1 delivery", || {
        let ring = Ring::new(CAPACITY, 2);
        let mut p = ring.producer();
        // Before the consumers attach: records at 0, 64, 128, 192..224 (tail 224).
        for (seq, len) in [(0, MAX), (1, MAX), (2, MAX), (3, 8)] {
            p.try_send(&payload(seq, len)).unwrap();
        }
        // Concurrent: message 4 needs 40 bytes where 32 remain, so a padding record fills
        // 224..256 and message 4 goes to 256 (index 0); 5 and 6 follow in the second lap.
        let lens = [16, MAX, MAX];
        // One consumer polls in a yield loop (lock-free path), the other blocks on the
        // futex model. (Two consumers in yield loops exceed loom's branch limit, even
        // raised to 20 000: loom explores them yielding to each other without end.)
        let mut spinner = ring.consumer(StartAt::Next);
        let mut sleeper = ring.consumer(StartAt::Next);
        let spinner = thread::spawn(move || drain_spinning(&mut spinner));
        // (Not until the close: see `a_blocking_consumer_sees_the_close_after_the_last_message`.)
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
/// stale header word). One message alone, then two as a batch (`send_batch`: the second
/// record's stamp is stored before the first's, whose store publishes both).
///
/// Guards: the publication stamp store `Release` in `publish_stamps`, and the stamp load
/// `Acquire` in `poll`.
#[test]
fn a_consumer_never_reads_a_record_before_it_is_complete() {
    model("2 no torn read", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.consumer(StartAt::Next);
        let lens = [MAX, 16, 8];
        let consumer = thread::spawn(move || recv_n_spinning(&mut c, lens.len()));
        send_spinning(&mut p, 0, lens[0]);
        p.send_batch(&[&payload(1, lens[1]), &payload(2, lens[2])]);
        assert_eq!(consumer.join().unwrap(), msgs(0, &lens));
    });
}

/// Property 3: backpressure: the producer never overwrites a record a lossless consumer has
/// not released. Messages 0..=3 fill the ring up to 232; message 4 needs a padding record
/// at 232 and goes to 256, where its payload reuses the bytes of message 0's payload, so
/// the producer must wait for the consumer's release; loom fails if its write races with
/// the consumer's copy.
///
/// Guards: the gate itself (`scan_gate`'s minimum and the limit `refresh` derives from it),
/// and the cursor store `Release` in `RingConsumer::publish` with the cursor load `Acquire`
/// in `scan_gate` (the consumer's reads happen-before the overwrite). Since 844a122 the
/// latter pair is checked by property 6a instead: here `refresh` raises the claim, with a
/// `fence(SeqCst)`, between the cursor load and the overwrite; that fence acquires (making
/// the load's `Acquire` redundant on this path) and, as loom runs a fence together with the
/// store before it and orders all SeqCst fences, it hides a `Relaxed` cursor store too.
#[test]
fn the_producer_never_overwrites_an_unreleased_record() {
    model("3 backpressure", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.consumer(StartAt::Next);
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
/// lost wake-up is a loom deadlock: nobody closes the stream to rescue it). Two messages,
/// so the consumer may also fall asleep after a release.
///
/// Guards: the Dekker pair `fence(SeqCst)` in `RingConsumer::sleep` (sleeper count
/// increment, fence, re-check) and in `RingProducer::wake_consumers` (stamp store, fence,
/// sleeper count load).
#[test]
fn a_consumer_asleep_on_an_empty_ring_is_woken_by_a_publish() {
    model("4a consumer wake-up", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.consumer(StartAt::Next);
        let consumer = thread::spawn(move || [c.recv(), c.recv()]);
        p.try_send(&payload(0, 8)).unwrap();
        p.try_send(&payload(1, 0)).unwrap();
        assert_eq!(consumer.join().unwrap(), [Ok(msg(0, 8)), Ok(msg(1, 0))]);
    });
}

/// Property 4, consumer side, eventcount: every consumer asleep in the same generation is
/// woken by the one publish that clears the sleepers flag, and a consumer that announces
/// itself as that publish clears the flag still wakes (or never sleeps).
///
/// Guards: `wake_generation`'s order (clear the flag, then bump the word, then wake): a
/// sleeper that read the bumped word and set the flag again keeps its flag; one that read
/// the old word returns at once from the futex.
#[test]
fn every_consumer_asleep_in_one_generation_is_woken() {
    model("4c two sleepers", || {
        let ring = Ring::new(CAPACITY, 2);
        let mut p = ring.producer();
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let mut c = ring.consumer(StartAt::Next);
                thread::spawn(move || [c.recv(), c.recv()])
            })
            .collect();
        p.try_send(&payload(0, 8)).unwrap();
        p.try_send(&payload(1, 0)).unwrap();
        for c in sleepers {
            assert_eq!(c.join().unwrap(), [Ok(msg(0, 8)), Ok(msg(1, 0))]);
        }
    });
}

/// Property 4, producer side: a producer asleep on a full ring is woken by a release (a
/// lost wake-up is a loom deadlock).
///
/// Guards: the Dekker pair `fence(SeqCst)` in `RingProducer::sleep_for_space` (sleeper
/// count increment, fence, gate rescan) and in `RingConsumer::publish` (cursor store,
/// fence, sleeper count load).
#[test]
fn a_producer_asleep_on_a_full_ring_is_woken_by_a_release() {
    model("4b producer wake-up", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.consumer(StartAt::Next);
        for seq in 0..3 {
            p.try_send(&payload(seq, MAX)).unwrap();
        }
        // Releasing message 0 (64 bytes, past the publish threshold) publishes the cursor
        // and must wake the producer, which needs exactly that record's space.
        let consumer = thread::spawn(move || c.recv());
        p.send(&payload(3, MAX)).unwrap();
        assert_eq!(consumer.join().unwrap(), Ok(msg(0, MAX)));
    });
}

/// Property 5: close is observed only after the last message: a consumer that sees the
/// stream closed has received everything published before the close.
///
/// Guards the edge from the producer's last publication to the consumer's re-poll after it
/// sees the close. `check_ended` has two acquires on it: the state load `Acquire` (paired
/// with the CLOSED store `Release` in `RingProducer::close`) and the producer-lock probe
/// (paired with the unlock that `close` does after storing CLOSED); each alone suffices
/// (`weaken.sh close-acquire+lock-probe-acquire` removes both). The CLOSED `Release` is
/// redundant too: the `fence(SeqCst)` in `wake_consumers` after every commit is a release
/// fence that the later CLOSED store inherits, and the unlock releases again
/// (`close-release+waker-fence+lock-probe-acquire` removes all three).
#[test]
fn close_is_observed_only_after_the_last_message() {
    model("5 close after last", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.consumer(StartAt::Next);
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
/// closes wakes, drains, and then reports the close.
///
/// Guards: the close's wake (word bump and `FUTEX_WAKE` after the unlock; the
/// `fence(SeqCst)` before them is redundant: the futex checks the word itself).
///
/// Also checks that the consumer does not spin: before 164fccf it failed with "Model
/// exceeded maximum number of branches", because `RingConsumer::sleep` returned at once
/// when the state word said CLOSED while `check_ended` believes CLOSED only once the
/// producer lock is free, so between the producer's CLOSED store and its unlock the `recv`
/// loop spun without sleeping or yielding (and for ever, at full CPU, had any consumer
/// written CLOSED into the state word while the producer lived). `sleep` now tests the
/// same condition as `check_ended`.
#[test]
fn a_blocking_consumer_sees_the_close_after_the_last_message() {
    model("5b blocking close", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.consumer(StartAt::Next);
        let lens = [MAX, 8];
        let consumer = thread::spawn(move || drain_blocking(&mut c));
        for (seq, &len) in (0..).zip(&lens) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        p.close();
        assert_eq!(consumer.join().unwrap(), msgs(0, &lens));
    });
}

/// Property 6, attach: a consumer attaching while the producer claims the space it starts
/// in is never skipped by the producer's gate. Messages 0..=3 fill the ring up to 232; the
/// consumer attaches at the oldest record (position 0) while the producer writes message 4
/// (a padding record at 232, then the record at 256, whose payload reuses message 0's
/// bytes): either the producer's rescan sees the new slot and waits for its release, or
/// the consumer sees the raised claim and starts later. Whatever it starts at, it must
/// then receive every message from there to the last, intact.
///
/// Guards: the Dekker pair `fence(SeqCst)` in `RingConsumer::register` (cursor and state
/// stores, fence, claim load) and in `RingProducer::refresh` (claim store, fence, slot
/// scan). Also the cursor store `Release` in `publish` with the cursor load `Acquire` in
/// `scan_gate`: when the rescan finds the new slot behind the claim just raised, the
/// producer's next `refresh` needs no claim raise, so no `fence(SeqCst)` lies between the
/// cursor load that frees message 0 and the write over it (in property 3 one does).
#[test]
fn an_attaching_consumer_is_never_skipped_by_the_gate() {
    model("6a attach vs publish", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..4]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let r = ring.clone();
        let consumer = thread::spawn(move || {
            let mut c = r.consumer(StartAt::Oldest);
            drain_spinning(&mut c)
        });
        send_spinning(&mut p, 4, lens[4]);
        p.close();
        let got = consumer.join().unwrap();
        let first = got.first().map_or(lens.len() as u64, |m| m.seq);
        assert_eq!(got, msgs(first, &lens[first as usize..]));
        assert!(
            first < lens.len() as u64,
            "the last message was sent after the consumer attached"
        );
    });
}

/// Property 6, detach: a consumer that detaches while holding a record, with the producer
/// waiting (asleep, or in its rescan) on the full ring behind it, wakes the producer, which
/// then overwrites that record only after the consumer's last read of it (loom fails on a
/// racing write, deadlocks on a lost wake-up). As in property 6a, the consumer attaches at
/// the oldest record while message 4 claims it, so in some interleavings its slot sits
/// behind the claim and the producer's write after the scan that sees it free needs no
/// claim raise, so no `fence(SeqCst)` between that scan and the write. Reaching that takes
/// three preemptions (`weaken.sh` runs this test at 3).
///
/// Guards: the slot state store `Release` in `RingConsumer::detach` with the state load
/// `Acquire` in `scan_gate`; and the Dekker pair `fence(SeqCst)` in `detach` and in
/// `sleep_for_space`.
#[test]
fn a_detaching_consumer_frees_the_producer_after_its_last_read() {
    model("6b detach vs full", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..4]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let r = ring.clone();
        let consumer = thread::spawn(move || {
            let mut c = r.consumer(StartAt::Oldest);
            let held = c.peek().unwrap();
            c.detach();
            held
        });
        // Padding at 232, then message 4 at 256: its payload reuses message 0's bytes.
        p.send(&payload(4, lens[4])).unwrap();
        if let Some(m) = consumer.join().unwrap() {
            assert_eq!(m, msg(m.seq, lens[m.seq as usize]));
        }
    });
}

/// What a lossy consumer saw until the stream ended: the messages it received and the
/// number it was told it lost. Checks as it goes that every message is the next one it
/// expects (the previous one plus what it was told it lost) and intact.
fn drain_lossy_spinning(c: &mut LossyConsumer) -> (Vec<u64>, u64) {
    let (mut got, mut lost, mut next) = (Vec::new(), 0, 0);
    loop {
        match c.try_recv() {
            Ok(m) => {
                assert_eq!(m.seq, next, "after {got:?} and {lost} lost");
                assert_eq!(
                    m.data,
                    payload(m.seq, m.data.len()),
                    "a lapped copy returned"
                );
                got.push(m.seq);
                next += 1;
            }
            Err(TryRecvError::Lagged(n)) => {
                assert!(n > 0, "Lagged(0)");
                lost += n;
                next += n;
            }
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(TryRecvError::Disconnected) => return (got, lost),
            Err(e) => panic!("after {got:?} and {lost} lost: {e}"),
        }
    }
}

/// Property 7: a lapped lossy consumer counts exactly what it lost, and never returns a
/// copy the producer overwrote while it was being taken. Nothing gates the producer:
/// messages 0..=3 fill the ring up to 232, and message 4 (a padding record at 232, then the
/// record at 256) raises the claim past 256 and overwrites message 0 in the same
/// reservation, while the consumer may be copying message 0.
///
/// Guards: the seqlock validation in `RingConsumer::poll_lossy`, `fence(Acquire)` after the
/// copy then the claim load, which pairs with the `fence(SeqCst)` after the claim store in
/// `RingProducer::refresh` (a copy that saw an overwritten byte sees the raised claim); and
/// the stamp load `Acquire` in `poll_lossy` (the copy is not older than the record).
#[test]
fn a_lapped_lossy_consumer_counts_exactly_what_it_lost() {
    model("7 lossy lapped", || {
        let ring = Ring::new(CAPACITY, 1);
        let mut p = ring.producer();
        let mut c = ring.lossy_consumer(StartAt::Next);
        let lens = [MAX, MAX, MAX, 16, 16];
        for (seq, &len) in (0..).zip(&lens[..3]) {
            p.try_send(&payload(seq, len)).unwrap();
        }
        let consumer = thread::spawn(move || drain_lossy_spinning(&mut c));
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
