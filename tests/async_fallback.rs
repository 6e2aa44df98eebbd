//! The asynchronous handles without `futex_waitv` (as on Linux before 5.16, or under a
//! seccomp filter that refuses it): each waiter thread then watches one futex word. Its own
//! test binary, so that the waiter of this process is made after the hook that disables
//! `futex_waitv`.

#[macro_use]
mod common;

use common::{
    length_at, write_message, ChildProcess, ChildSpec, RunCheck, SegmentRef, ShmName, Watchdog,
    HANG_GUARD,
};
use shmcast::asynch::Stream;
use shmcast::{AsyncConsumer, AsyncProducer, Consumer, Producer, RecvError, WaitPolicy};
use std::future::poll_fn;
use std::pin::Pin;

const ENTRY: &str = "child_process";
const MESSAGES: u64 = 200_000;
const RING: usize = 64 << 10;
const MAX: usize = RING / 4 - 24;

/// Entry point of the producer children; dispatched by the runner before any test.
fn child_process(spec: &ChildSpec) {
    assert_eq!(spec.role, "produce");
    let SegmentRef::Name(name) = &spec.segment else {
        panic!("a named segment");
    };
    let mut p = Producer::builder()
        .capacity(RING)
        .max_message(MAX)
        .create(name)
        .expect("create");
    p.wait_for_consumers(1, HANG_GUARD).expect("consumer");
    for seq in 0..MESSAGES {
        let mut r = p.reserve(length_at(seq, MAX)).expect("reserve");
        write_message(seq, &mut r);
        r.commit();
    }
}

async fn guarded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("no result within {HANG_GUARD:?}"))
}

/// Two async consumers of two producer processes and an async producer feeding a blocking
/// consumer thread, all through single-word waiter threads: every stream arrives whole and
/// in order.
fn without_futex_waitv_one_thread_per_word_serves_every_wait() {
    shmcast::asynch::without_futex_waitv();
    let names = [ShmName::new("fallback-a"), ShmName::new("fallback-b")];
    let children: Vec<ChildProcess> = names
        .iter()
        .map(|n| {
            let spec = ChildSpec {
                role: "produce".into(),
                segment: SegmentRef::Name(n.as_str().into()),
                max_message: MAX,
                wait: WaitPolicy::default(),
            };
            ChildProcess::spawn("producer", ENTRY, &spec)
        })
        .collect();
    let watchdog = Watchdog::arm(&children);
    let open = |n: &ShmName| {
        AsyncConsumer::new(
            Consumer::builder()
                .wait_for_segment(HANG_GUARD)
                .open(n.as_str())
                .expect("attach"),
        )
    };
    let mut a = open(&names[0]);
    let mut b = open(&names[1]);
    // An async producer and a blocking consumer thread on an in-process ring.
    let mut p = AsyncProducer::new(
        Producer::builder()
            .capacity(4096)
            .max_message(1000)
            .create_in_process()
            .expect("ring"),
    );
    let mut c = Consumer::builder().attach_to(p.get_ref()).expect("attach");
    let reader = std::thread::spawn(move || {
        let mut check = RunCheck::from(1000, 0);
        for m in c.iter() {
            let m = m.expect("blocking recv");
            let seq = check.next().expect("start");
            check.check(seq, &m).expect("intact");
        }
        check.count()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let (got_a, got_b) = rt.block_on(async {
        let a = tokio::spawn(guarded(async move {
            let mut check = RunCheck::from(MAX, 0);
            loop {
                match a.recv().await {
                    Ok(m) => check.check(m.seq(), &m).expect("intact"),
                    Err(RecvError::Disconnected) => return check.count(),
                    Err(e) => panic!("{e}"),
                }
            }
        }));
        let b = tokio::spawn(guarded(async move {
            let mut check = RunCheck::from(MAX, 0);
            while let Some(item) = poll_fn(|cx| Pin::new(&mut b).poll_next(cx)).await {
                let seq = check.next().expect("start");
                check.check(seq, &item.expect("item")).expect("intact");
            }
            check.count()
        }));
        guarded(async {
            let mut buf = vec![0u8; 1000];
            for seq in 0..MESSAGES {
                let len = length_at(seq, 1000);
                write_message(seq, &mut buf[..len]);
                p.send(&buf[..len]).await.expect("send");
            }
        })
        .await;
        drop(p);
        (a.await.expect("a"), b.await.expect("b"))
    });
    assert_eq!((got_a, got_b), (MESSAGES, MESSAGES));
    assert_eq!(reader.join().expect("reader"), MESSAGES);
    let stats = shmcast::asynch::waiter_stats();
    assert!(!stats.futex_waitv, "{stats:?}");
    assert!(stats.threads >= 2, "one thread per word: {stats:?}");
    watchdog.disarm();
    for child in children {
        child.finish();
    }
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[case!(
            without_futex_waitv_one_thread_per_word_serves_every_wait
        )],
    );
}
