//! The asynchronous handles (feature `tokio`) against real processes: an async consumer
//! under a multi-thread tokio runtime fed by a blocking producer in another process, an async
//! producer feeding a blocking consumer process, cancelled futures, and the end of a stream
//! (close, producer death, lag, eviction, fork) arriving through the async API. Children
//! are this test binary re-run in a role (`--exact child_process`); every wait is bounded
//! by a hang guard, never by a guess at how long something takes.

#[macro_use]
mod common;

use common::{
    await_parent_line, length_at, report, wait_to_be_killed, write_message, ChildProcess,
    ChildSpec, RunCheck, SegmentRef, ShmName, Watchdog, HANG_GUARD,
};
use shmcast::asynch::Stream;
use shmcast::{
    AsyncConsumer, AsyncLossyConsumer, AsyncProducer, Consumer, EventFd, Producer, RecvError,
    TryRecvError, WaitPolicy,
};
use std::future::{poll_fn, Future};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// The test that children run.
const ENTRY: &str = "child_process";

/// Messages of the large runs.
const MESSAGES: u64 = 1_000_000;

/// Ring of the runs: small next to the data, so the stream wraps thousands of times.
const RING: usize = 64 << 10;

/// Largest message: the ring's maximum, so records regularly need padding.
const MAX: usize = RING / 4 - 24;

/// The million-message runs keep both cores busy: one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------
// Child side.

/// Entry point of every child process; dispatched by the runner before any test.
fn child_process(spec: &ChildSpec) {
    match spec.role.as_str() {
        "produce" => produce(spec),
        "produce_on_demand" => produce_on_demand(spec),
        "produce_evicting" => produce_evicting(spec),
        "consume" => consume(spec),
        other => panic!("unknown child role {other:?}"),
    }
}

fn segment_name(spec: &ChildSpec) -> &str {
    match &spec.segment {
        SegmentRef::Name(n) => n,
        other => panic!("producer roles create a named segment, not {other:?}"),
    }
}

fn create(spec: &ChildSpec, capacity: usize) -> Producer {
    Producer::builder()
        .capacity(capacity)
        .max_message(spec.max_message)
        .wait_policy(spec.wait)
        .create(segment_name(spec))
        .unwrap_or_else(|e| panic!("child could not create the segment: {e}"))
}

/// Send message `seq` of the workload (its length is `length_at(seq)`).
fn send_workload(p: &mut Producer, seq: u64, max: usize) {
    let mut r = p.reserve(length_at(seq, max)).expect("reserve");
    write_message(seq, &mut r);
    r.commit();
}

/// A blocking producer: wait for `consumers`, send `count` workload messages, then
/// `end`: `close` (drop), `die` (report `sent` and wait to be killed), `wait` (report `sent`,
/// wait for a line, then close).
fn produce(spec: &ChildSpec) {
    let count: u64 = common::param("count");
    let consumers: usize = common::param("consumers");
    let capacity: usize = common::param("capacity");
    let end: String = common::param("end");
    let mut p = create(spec, capacity);
    p.wait_for_consumers(consumers, HANG_GUARD)
        .expect("consumers attach");
    for seq in 0..count {
        send_workload(&mut p, seq, spec.max_message);
    }
    match end.as_str() {
        "close" => drop(p),
        "die" => {
            report("sent", count);
            wait_to_be_killed();
        }
        "wait" => {
            report("sent", count);
            await_parent_line();
            drop(p);
        }
        other => panic!("unknown end {other:?}"),
    }
}

/// A blocking producer that sends the next workload message for every `send` line of its
/// parent, and closes on `close`.
fn produce_on_demand(spec: &ChildSpec) {
    let mut p = create(spec, RING);
    p.wait_for_consumers(1, HANG_GUARD)
        .expect("consumer attaches");
    report("ready", 0);
    let mut seq = 0;
    loop {
        match await_parent_line().as_str() {
            "send" => {
                send_workload(&mut p, seq, spec.max_message);
                seq += 1;
            }
            "close" => return,
            other => panic!("unknown command {other:?}"),
        }
    }
}

/// A producer that evicts consumers which keep it waiting 50 ms: fill the ring until it
/// evicted one, report `evicted`, wait for a line.
fn produce_evicting(spec: &ChildSpec) {
    let mut p = Producer::builder()
        .capacity(4096)
        .evict_after(Duration::from_millis(50))
        .create(segment_name(spec))
        .expect("create");
    p.wait_for_consumers(1, HANG_GUARD)
        .expect("consumer attaches");
    let deadline = Instant::now() + HANG_GUARD;
    while p.stats().evictions == 0 {
        assert!(
            Instant::now() < deadline,
            "no eviction within {HANG_GUARD:?}"
        );
        let _ = p.send_timeout(&[7; 64], Duration::from_millis(10));
    }
    report("evicted", p.stats().evictions);
    await_parent_line();
}

/// A blocking consumer: receive until `Disconnected`, checking every message; report the
/// count.
fn consume(spec: &ChildSpec) {
    let mut c = spec.open();
    report("attached", 0);
    let mut check = RunCheck::from(spec.max_message, 0);
    loop {
        match c.recv() {
            Ok(m) => {
                let seq = m.seq();
                check.check(seq, &m).unwrap_or_else(|e| panic!("{e}"));
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("after {} messages: {e}", check.count()),
        }
    }
    report("count", check.count());
}

// ---------------------------------------------------------------------------------------
// Parent side: helpers.

fn spec(role: &str, name: &ShmName) -> ChildSpec {
    ChildSpec {
        role: role.into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: MAX,
        wait: WaitPolicy::default(),
    }
}

fn open(name: &ShmName) -> Consumer {
    Consumer::builder()
        .wait_for_segment(HANG_GUARD)
        .open(name.as_str())
        .expect("attach")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// `fut`, or a panic after the hang guard.
async fn guarded<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(HANG_GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {HANG_GUARD:?}"),
    }
}

/// The next item of a stream.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// A waker that records that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Poll `fut` once with `waker`.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Receive with `recv().await` until `Disconnected`, checking each message.
async fn receive_all(mut c: AsyncConsumer) -> u64 {
    let mut check = RunCheck::from(MAX, 0);
    loop {
        match c.recv().await {
            Ok(m) => check
                .check(m.seq(), &m)
                .unwrap_or_else(|e| panic!("recv: {e}")),
            Err(RecvError::Disconnected) => return check.count(),
            Err(e) => panic!("recv after {} messages: {e}", check.count()),
        }
    }
}

/// Receive through the `Stream` until it ends, checking each message (the stream yields
/// bytes; sequence numbers follow from the order).
async fn stream_all(mut c: AsyncConsumer) -> u64 {
    let mut check = RunCheck::from(MAX, 0);
    while let Some(item) = next(&mut c).await {
        let bytes = item.unwrap_or_else(|e| panic!("stream after {}: {e}", check.count()));
        let seq = check.next().expect("a start");
        check
            .check(seq, &bytes)
            .unwrap_or_else(|e| panic!("stream: {e}"));
    }
    check.count()
}

// ---------------------------------------------------------------------------------------
// Tests.

/// Two async consumers of one segment in this process (so they share the futex word and
/// the waiter), one with `recv().await` in place and one through the `Stream`, on a
/// multi-thread runtime, receive a million checksummed variable-length messages, in order,
/// from a blocking producer process that pads at the end of the ring thousands of times.
fn async_consumers_receive_a_million_messages_from_a_blocking_producer_process() {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("async-million");
    let child = ChildProcess::command("producer", ENTRY, &spec("produce", &name))
        .param("count", MESSAGES)
        .param("consumers", 2)
        .param("capacity", RING)
        .param("end", "close")
        .spawn();
    let watchdog = Watchdog::arm(std::slice::from_ref(&child));
    let a = AsyncConsumer::new(open(&name));
    let b = AsyncConsumer::new(open(&name));
    let (got_a, got_b) = runtime().block_on(async {
        let a = tokio::spawn(guarded("recv consumer", receive_all(a)));
        let b = tokio::spawn(guarded("stream consumer", stream_all(b)));
        (a.await.expect("task a"), b.await.expect("task b"))
    });
    assert_eq!((got_a, got_b), (MESSAGES, MESSAGES));
    watchdog.disarm();
    child.finish();
}

/// An async producer on a multi-thread runtime, alternating `send` and `reserve`, feeds a
/// million checksummed variable-length messages to a blocking consumer process through a
/// ring far smaller than the stream, so it waits for space over and over; the consumer
/// receives them all, in order.
fn an_async_producer_feeds_a_million_messages_to_a_blocking_consumer_process() {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("async-producer");
    let producer = Producer::builder()
        .capacity(RING)
        .max_message(MAX)
        .create(name.as_str())
        .expect("create");
    let mut child = ChildProcess::spawn("consumer", ENTRY, &spec("consume", &name));
    child.expect("attached");
    let watchdog = Watchdog::arm(std::slice::from_ref(&child));
    let mut producer = AsyncProducer::new(producer);
    let stats = runtime().block_on(async move {
        tokio::spawn(guarded("async producer", async move {
            let mut buf = vec![0u8; MAX];
            for seq in 0..MESSAGES {
                let len = length_at(seq, MAX);
                if seq % 2 == 0 {
                    write_message(seq, &mut buf[..len]);
                    producer.send(&buf[..len]).await.expect("send");
                } else {
                    let mut r = producer.reserve(len).await.expect("reserve");
                    write_message(seq, &mut r);
                    r.commit();
                }
            }
            let stats = producer.stats();
            drop(producer); // closes the stream
            stats
        }))
        .await
        .expect("producer task")
    });
    assert_eq!(stats.messages, MESSAGES);
    assert!(stats.full_waits > 0, "the ring never filled: {stats:?}");
    assert_eq!(child.expect("count"), MESSAGES.to_string());
    watchdog.disarm();
    child.finish();
}

/// Two thousand `recv` futures dropped mid-wait lose nothing: in each of a thousand rounds
/// one future is dropped while the ring is empty, and one after its waker was called for a
/// new message but before it was polled again; the next `recv` then receives exactly that
/// message.
fn a_thousand_rounds_of_cancelled_recv_futures_lose_nothing() {
    let name = ShmName::new("async-cancel");
    let mut child = ChildProcess::spawn("producer", ENTRY, &spec("produce_on_demand", &name));
    let mut c = AsyncConsumer::new(open(&name));
    child.expect("ready");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut check = RunCheck::from(MAX, 0);
    for round in 0..1000u64 {
        // Dropped while the ring is empty.
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(Arc::clone(&flag));
        {
            let mut fut = Box::pin(c.recv());
            assert!(
                poll_once(fut.as_mut(), &waker).is_pending(),
                "round {round}"
            );
        }
        // Woken by the message, dropped before it is polled again.
        {
            let mut fut = Box::pin(c.recv());
            assert!(
                poll_once(fut.as_mut(), &waker).is_pending(),
                "round {round}"
            );
            child.send_line("send");
            let deadline = Instant::now() + HANG_GUARD;
            while !flag.0.load(Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "round {round}: never woken");
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let m = rt
            .block_on(guarded("recv after cancellations", c.recv()))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        check
            .check(m.seq(), &m)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert_eq!(check.count(), 1000);
    child.send_line("close");
    let end = rt.block_on(guarded("end", c.recv())).map(|m| m.seq());
    assert_eq!(end, Err(RecvError::Disconnected));
    child.finish();
}

/// Cancelled `send` and `reserve` futures (dropped while the ring is full) send nothing:
/// the blocking consumer process receives the stream without a gap or a duplicate.
fn cancelled_send_and_reserve_futures_send_nothing() {
    let name = ShmName::new("async-cancel-send");
    let producer = Producer::builder()
        .capacity(4096)
        .max_message(MAX.min(1000))
        .create(name.as_str())
        .expect("create");
    let max = producer.max_message();
    let mut spec = spec("consume", &name);
    spec.max_message = max;
    let mut child = ChildProcess::spawn("consumer", ENTRY, &spec);
    child.expect("attached");
    let mut p = AsyncProducer::new(producer);
    let rt = runtime();
    let waker = Waker::from(Arc::new(Flag::default()));
    let mut cancelled = 0;
    let total = 20_000u64;
    let mut buf = vec![0u8; max];
    for seq in 0..total {
        let len = length_at(seq, max);
        write_message(seq, &mut buf[..len]);
        // Poll once; if the ring is full the future is dropped unfinished.
        let done = {
            let mut fut = Box::pin(p.send(&buf[..len]));
            match poll_once(fut.as_mut(), &waker) {
                Poll::Ready(r) => {
                    r.expect("send");
                    true
                }
                Poll::Pending => false,
            }
        };
        if done {
            continue;
        }
        cancelled += 1;
        if seq % 2 == 0 {
            let mut fut = Box::pin(p.reserve(len));
            if let Poll::Ready(r) = poll_once(fut.as_mut(), &waker) {
                let _aborted = r.expect("reserve"); // dropped uncommitted: never seen
            } else {
                cancelled += 1;
            }
        }
        rt.block_on(guarded("send", p.send(&buf[..len])))
            .expect("send");
    }
    assert!(cancelled > 0, "the ring never filled");
    drop(p);
    assert_eq!(child.expect("count"), total.to_string());
    child.finish();
}

/// Close: the async consumers (lossless, through `recv` and through the stream, and lossy)
/// drain what was published, then see `Disconnected` (the streams end).
fn close_arrives_through_the_async_api() {
    let name = ShmName::new("async-close");
    let mut child = ChildProcess::command("producer", ENTRY, &spec("produce", &name))
        .param("count", 100)
        .param("consumers", 3)
        .param("capacity", RING)
        .param("end", "wait")
        .spawn();
    let mut a = AsyncConsumer::new(open(&name));
    let b = AsyncConsumer::new(open(&name));
    let mut lossy = AsyncLossyConsumer::new(
        Consumer::builder()
            .wait_for_segment(HANG_GUARD)
            .lossy()
            .open(name.as_str())
            .expect("lossy"),
    );
    child.expect("sent");
    runtime().block_on(async {
        // Drain, then wait for the close in spawned tasks while the child closes.
        for seq in 0..100 {
            assert_eq!(a.recv().await.expect("a").seq(), seq);
        }
        let a = tokio::spawn(guarded("a", async move { a.recv().await.map(|m| m.seq()) }));
        let b = tokio::spawn(guarded("b", stream_all(b)));
        let lossy = tokio::spawn(guarded("lossy", async move {
            let mut n = 0u64;
            while let Some(item) = next(&mut lossy).await {
                item.expect("lossy item");
                n += 1;
            }
            (n, lossy.recv_vec().await)
        }));
        tokio::time::sleep(Duration::from_millis(20)).await; // let them go to sleep
        child.send_line("close");
        assert_eq!(a.await.expect("a"), Err(RecvError::Disconnected));
        assert_eq!(b.await.expect("b"), 100);
        let (n, after) = lossy.await.expect("lossy");
        assert_eq!(n, 100);
        assert_eq!(after, Err(RecvError::Disconnected));
    });
    child.finish();
}

/// A producer killed while async consumers wait: `ProducerDied` arrives through `recv`,
/// through the stream, and through an armed `EventFd` polled like an event loop would.
fn producer_death_arrives_through_the_async_api() {
    let name = ShmName::new("async-died");
    let mut child = ChildProcess::command("producer", ENTRY, &spec("produce", &name))
        .param("count", 10)
        .param("consumers", 3)
        .param("capacity", RING)
        .param("end", "die")
        .spawn();
    let mut a = AsyncConsumer::new(open(&name));
    let mut b = AsyncConsumer::new(open(&name));
    let mut c = AsyncConsumer::new(open(&name));
    child.expect("sent");
    let fd = EventFd::new().expect("eventfd");
    let rt = runtime();
    let (a, b) = rt.block_on(async {
        for seq in 0..10 {
            assert_eq!(a.recv().await.expect("a").seq(), seq);
            assert_eq!(
                next(&mut b).await.expect("b").expect("b").len(),
                length_at(seq, MAX)
            );
            assert_eq!(c.recv().await.expect("c").seq(), seq);
        }
        let a = tokio::spawn(guarded("a", async move { a.recv().await.map(|m| m.seq()) }));
        let b = tokio::spawn(guarded("b", async move { next(&mut b).await }));
        (a, b)
    });
    assert!(!c.arm(&fd), "nothing to receive yet");
    child.kill();
    rt.block_on(async {
        assert_eq!(a.await.expect("a"), Err(RecvError::ProducerDied));
        assert_eq!(b.await.expect("b"), Some(Err(RecvError::ProducerDied)));
    });
    // The event loop: wait for the descriptor, clear it, drain.
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        if n == 1 {
            fd.clear();
            match c.try_recv().map(|m| m.seq()) {
                Err(TryRecvError::ProducerDied) => break,
                Err(TryRecvError::Empty) => {
                    let _ = c.arm(&fd);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no ProducerDied within {HANG_GUARD:?}"
        );
    }
}

/// A lossy async consumer lapped by a producer process learns exactly how many messages it
/// lost (`Lagged`, through `recv_into` and through its stream, which goes on), then
/// receives the rest, then `Disconnected`.
fn lagged_arrives_through_the_async_api() {
    let name = ShmName::new("async-lagged");
    let count = 1000u64;
    // A 4 KiB ring: its largest message is 1000 bytes.
    let max = 1000;
    let mut spec = spec("produce", &name);
    spec.max_message = max;
    let mut child = ChildProcess::command("producer", ENTRY, &spec)
        .param("count", count)
        .param("consumers", 2)
        .param("capacity", 4096)
        .param("end", "wait")
        .spawn();
    let lossy = || {
        AsyncLossyConsumer::new(
            Consumer::builder()
                .wait_for_segment(HANG_GUARD)
                .lossy()
                .open(name.as_str())
                .expect("lossy"),
        )
    };
    let mut a = lossy();
    let mut b = lossy();
    child.expect("sent");
    runtime().block_on(async {
        let mut buf = Vec::new();
        let lost = match a.recv_into(&mut buf).await {
            Err(RecvError::Lagged(n)) => n,
            other => panic!("expected Lagged, got {other:?}"),
        };
        assert!(lost > 0 && lost < count, "lost {lost}");
        let mut seq = lost;
        while seq < count {
            assert_eq!(a.recv_into(&mut buf).await.expect("a"), seq);
            common::check_message(seq, length_at(seq, max), &buf).expect("intact");
            seq += 1;
        }
        // The stream yields the loss and goes on.
        let mut lagged = 0;
        let mut received = 0;
        let b = tokio::spawn(guarded("b", async move {
            while let Some(item) = next(&mut b).await {
                match item {
                    Ok(_) => received += 1,
                    Err(RecvError::Lagged(n)) => lagged += n,
                    Err(e) => panic!("{e}"),
                }
            }
            (lagged, received)
        }));
        let a_end = tokio::spawn(guarded("a", async move { a.recv_vec().await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        child.send_line("close");
        let (lagged, received) = b.await.expect("b");
        assert_eq!(lagged + received, count);
        assert!(lagged > 0);
        assert_eq!(a_end.await.expect("a"), Err(RecvError::Disconnected));
    });
    child.finish();
}

/// An async consumer that keeps a producer with `evict_after` waiting is evicted, and
/// learns it as `Evicted` through `recv`.
fn eviction_arrives_through_the_async_api() {
    let name = ShmName::new("async-evicted");
    let mut child = ChildProcess::spawn("producer", ENTRY, &spec("produce_evicting", &name));
    let mut c = AsyncConsumer::new(open(&name));
    child.expect("evicted");
    let got = runtime().block_on(guarded("evicted", async {
        c.recv().await.map(|m| m.seq())
    }));
    assert_eq!(got, Err(RecvError::Evicted));
    child.send_line("done");
    child.finish();
}

/// A handle inherited across `fork` refuses the async API in the child (`Forked`) and
/// stays usable in the parent.
fn a_forked_child_gets_forked_from_the_async_api() {
    let mut p = AsyncProducer::new(Producer::builder().create_in_process().expect("create"));
    let mut c = AsyncConsumer::new(Consumer::builder().attach_to(p.get_ref()).expect("attach"));
    // SAFETY: the child only polls two futures (no lock is taken on the Forked path) and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let waker = Waker::from(Arc::new(Flag::default()));
        let recv = poll_once(std::pin::pin!(c.recv()), &waker).map(|r| r.map(|m| m.seq()));
        let send = poll_once(std::pin::pin!(p.send(b"x")), &waker);
        let ok = matches!(recv, Poll::Ready(Err(RecvError::Forked)))
            && matches!(send, Poll::Ready(Err(shmcast::SendError::Forked)));
        // SAFETY: leave the forked child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: {status}"
    );
    runtime().block_on(async {
        p.send(b"still mine").await.expect("send");
        assert_eq!(&*c.recv().await.expect("recv"), b"still mine");
    });
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[
            case!(async_consumers_receive_a_million_messages_from_a_blocking_producer_process),
            case!(an_async_producer_feeds_a_million_messages_to_a_blocking_consumer_process),
            case!(a_thousand_rounds_of_cancelled_recv_futures_lose_nothing),
            case!(cancelled_send_and_reserve_futures_send_nothing),
            case!(close_arrives_through_the_async_api),
            case!(producer_death_arrives_through_the_async_api),
            case!(lagged_arrives_through_the_async_api),
            case!(eviction_arrives_through_the_async_api),
            case!(a_forked_child_gets_forked_from_the_async_api),
        ],
    );
}
