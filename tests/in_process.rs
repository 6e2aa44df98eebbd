//! The ring between threads of one process (heap backing): the same algorithm the
//! cross-process tests exercise, cheap enough to run under Miri.

use shmcast::{Consumer, Producer, RecvError, StartAt, TryRecvError, TrySendError, WaitPolicy};
use std::thread;

fn iterations(full: u64) -> u64 {
    if cfg!(miri) {
        full / 10_000
    } else {
        full
    }
}

/// xorshift: deterministic lengths without a dependency.
fn lengths(seed: u64, max: usize) -> impl Iterator<Item = usize> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some((x % (max as u64 + 1)) as usize)
    })
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

fn broadcast(consumers: usize, policy: WaitPolicy) {
    broadcast_with(consumers, policy, false);
}

/// `tight`: the consumers spin on the stamp alone while they wait (`tight_spin`), so a 4 KiB
/// ring's padding records and wraps meet that loop too.
fn broadcast_with(consumers: usize, policy: WaitPolicy, tight: bool) {
    let n = iterations(200_000);
    let mut producer = Producer::builder()
        .capacity(1 << 12)
        .wait_policy(policy)
        .create_in_process()
        .unwrap();
    let max = producer.max_message();
    let handles: Vec<_> = (0..consumers)
        .map(|_| {
            let mut c = Consumer::builder()
                .wait_policy(policy)
                .tight_spin(tight)
                .attach_to(&producer)
                .unwrap();
            thread::spawn(move || {
                let mut lens = lengths(7, max);
                let mut count = 0u64;
                loop {
                    match c.recv() {
                        Ok(m) => {
                            assert_eq!(m.seq(), count);
                            let len = lens.next().unwrap();
                            assert_eq!(&*m, &payload(count, len)[..], "message {count}");
                            count += 1;
                        }
                        Err(RecvError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                count
            })
        })
        .collect();
    for (seq, len) in lengths(7, max).take(n as usize).enumerate() {
        producer.send(&payload(seq as u64, len)).unwrap();
    }
    drop(producer);
    for h in handles {
        assert_eq!(h.join().unwrap(), n);
    }
}

#[test]
fn every_consumer_thread_gets_every_message_in_order_busy_spin() {
    broadcast(3, WaitPolicy::SpinYield { spins: 64 });
}

#[test]
fn every_consumer_thread_gets_every_message_in_order_tight_spin() {
    broadcast_with(2, WaitPolicy::SpinYield { spins: 64 }, true);
}

#[test]
fn a_tight_spinning_consumer_still_sleeps_and_wakes() {
    // Few spins, then futex sleeps: the tight loop hands the rest of the wait over.
    broadcast_with(
        2,
        WaitPolicy::Adaptive {
            spins: 3,
            yields: 1,
        },
        true,
    );
}

#[test]
fn every_consumer_thread_gets_every_message_in_order_futex() {
    broadcast(
        3,
        WaitPolicy::Adaptive {
            spins: 0,
            yields: 0,
        },
    );
}

#[test]
fn a_full_ring_reports_full_and_resumes_after_release() {
    let mut p = Producer::builder()
        .capacity(256)
        .create_in_process()
        .unwrap();
    let mut c = Consumer::builder().attach_to(&p).unwrap();
    let mut sent = 0u8;
    while p.try_send(&[sent; 16]).is_ok() {
        sent += 1;
    }
    assert_eq!(p.try_send(&[0; 16]), Err(TrySendError::Full));
    for i in 0..sent {
        assert_eq!(&*c.recv().unwrap(), &[i; 16]);
    }
    // Releases are published when the consumer finds the ring empty.
    assert!(c.try_recv().is_err());
    p.try_send(&[9; 16]).unwrap();
    assert_eq!(&*c.recv().unwrap(), &[9; 16]);
}

#[test]
fn a_consumer_starting_at_oldest_sees_what_is_still_in_the_ring() {
    let mut p = Producer::builder()
        .capacity(4096)
        .create_in_process()
        .unwrap();
    for i in 0..10u8 {
        p.send(&[i]).unwrap();
    }
    let mut c = Consumer::builder()
        .start_at(StartAt::Oldest)
        .attach_to(&p)
        .unwrap();
    let mut next = Consumer::builder().attach_to(&p).unwrap();
    p.send(&[10]).unwrap();
    for i in 0..=10u8 {
        assert_eq!(&*c.recv().unwrap(), &[i]);
    }
    assert_eq!(&*next.recv().unwrap(), &[10]);
}

#[test]
fn a_batch_arrives_whole_and_in_order_across_wrap_around() {
    let mut p = Producer::builder()
        .capacity(512)
        .create_in_process()
        .unwrap();
    let mut c = Consumer::builder().attach_to(&p).unwrap();
    for round in 0..50u8 {
        let batch: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![round ^ i; (i as usize * 7) % 40])
            .collect();
        p.send_batch(&batch).unwrap();
        let mut got = Vec::new();
        while got.len() < batch.len() {
            c.recv_batch(16, |_, b| got.push(b.to_vec())).unwrap();
        }
        assert_eq!(got, batch, "round {round}");
    }
}

/// Under Miri too the producer laps the reader many times (a 256-byte ring holds four to
/// eight of these messages), so the seqlock copies and the loss accounting run.
#[test]
fn a_lapped_lossy_consumer_counts_exactly_what_it_lost() {
    let (n, capacity, max) = if cfg!(miri) {
        (300, 256, 40)
    } else {
        (100_000, 1 << 10, 100)
    };
    let mut p = Producer::builder()
        .capacity(capacity)
        .create_in_process()
        .unwrap();
    let mut lossy = Consumer::builder().lossy().attach_to(&p).unwrap();
    let reader = thread::spawn(move || {
        let (mut delivered, mut lost, mut last) = (0u64, 0u64, None::<u64>);
        let mut buf = Vec::new();
        loop {
            match lossy.recv_into(&mut buf) {
                Ok(seq) => {
                    assert!(last.is_none_or(|l| seq > l), "sequence went backwards");
                    assert_eq!(buf, payload(seq, buf.len()), "torn copy of {seq}");
                    last = Some(seq);
                    delivered += 1;
                }
                Err(RecvError::Lagged(k)) => lost += k,
                Err(RecvError::Disconnected) => return (delivered, lost),
                Err(e) => panic!("{e}"),
            }
        }
    });
    for (seq, len) in lengths(3, max).take(n as usize).enumerate() {
        p.try_send(&payload(seq as u64, len)).unwrap();
    }
    drop(p);
    let (delivered, lost) = reader.join().unwrap();
    assert_eq!(delivered + lost, n);
}

/// A lossy reader lapped while it did not read learns exactly how many messages it lost,
/// then reads every message still in the ring, in order (single-threaded: exact numbers).
#[test]
fn a_lossy_consumer_lapped_while_idle_reports_the_exact_loss() {
    let mut p = Producer::builder()
        .capacity(256)
        .create_in_process()
        .unwrap();
    let mut lossy = Consumer::builder().lossy().attach_to(&p).unwrap();
    // 40-byte records: six to a lap; 20 messages lap the reader three times.
    for seq in 0..20u64 {
        p.try_send(&payload(seq, 16)).unwrap();
    }
    drop(p);
    let mut buf = Vec::new();
    let lost = match lossy.try_recv_into(&mut buf) {
        Err(TryRecvError::Lagged(k)) => k,
        other => panic!("{other:?}"),
    };
    let mut next = lost;
    loop {
        match lossy.try_recv_into(&mut buf) {
            Ok(seq) => {
                assert_eq!(seq, next);
                assert_eq!(buf, payload(seq, 16));
                next += 1;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(e) => panic!("after {next}: {e}"),
        }
    }
    assert_eq!(next, 20, "the newest messages are still there");
    // The tail is at 848 (three laps of six records, then 18 and 19 at 768 and 808); the
    // claim runs an eighth of the ring (32 bytes) past the last write, so the oldest record
    // the producer is not about to overwrite is the first at or above 856 - 256 = 600:
    // message 15, at 640.
    assert_eq!(lost, 15);
}

#[test]
fn a_consumer_starting_at_oldest_after_many_laps_gets_the_recent_past_contiguously() {
    // 4-byte messages make 32-byte records: 128 per lap of a 4 KiB ring.
    let mut p = Producer::builder()
        .capacity(4096)
        .create_in_process()
        .unwrap();
    for i in 0..1000u32 {
        p.send(&i.to_le_bytes()).unwrap();
    }
    let mut c = Consumer::builder()
        .start_at(StartAt::Oldest)
        .attach_to(&p)
        .unwrap();
    drop(p);
    let got: Vec<u32> = c
        .iter()
        .map(|m| u32::from_le_bytes(m.unwrap().try_into().unwrap()))
        .collect();
    assert_eq!(got.last(), Some(&999));
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "not contiguous");
    // At most a quarter of the ring's oldest data is skipped: at least 3/4 of a lap.
    assert!(
        got.len() >= 96 && got.len() <= 128,
        "{} messages",
        got.len()
    );
}
