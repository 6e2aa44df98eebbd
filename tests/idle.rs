//! What an idle wait costs, counted (never timed): an async consumer waiting on a live
//! producer process that sends nothing makes its waiter thread sleep once and stay asleep
//! (no periodic liveness probes), and a blocking consumer sleeps once per `recv_timeout`
//! instead of every 20 ms; both still learn of the producer's death at once, from the
//! producer's death notice (a robust futex the kernel marks). And since nothing wakes an
//! idle wait periodically any more, a stream stuck on a corrupt record must be reported
//! before the wait sleeps. Its own test binary: the waiter's counters are per process, and
//! no other test's words may wake it.

#[macro_use]
mod common;

use common::{report, wait_to_be_killed, ChildProcess, ChildSpec, SegmentRef, ShmName, HANG_GUARD};
use shmcast::asynch::waiter_stats;
use shmcast::fuzzing::HostileSegment;
use shmcast::{
    AsyncConsumer, AsyncLossyConsumer, Consumer, Producer, RecvError, RecvTimeoutError, WaitPolicy,
};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

const ENTRY: &str = "child_process";

/// A producer that sends nothing: it waits for its consumer, says so, and waits to be
/// killed.
fn child_process(spec: &ChildSpec) {
    assert_eq!(spec.role, "idle_producer");
    let SegmentRef::Name(name) = &spec.segment else {
        panic!("a named segment");
    };
    let p = Producer::builder()
        .capacity(64 << 10)
        .create(name)
        .expect("create");
    p.wait_for_consumers(1, HANG_GUARD).expect("consumer");
    report("ready", 0);
    wait_to_be_killed();
}

/// Wait (bounded by the hang guard) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {HANG_GUARD:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A producer process of a new segment named after `tag` that sends nothing (see
/// `child_process`): the segment's name and the child.
fn spawn_idle_producer(tag: &str) -> (ShmName, ChildProcess) {
    let name = ShmName::new(tag);
    let spec = ChildSpec {
        role: "idle_producer".into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: 1024,
        wait: WaitPolicy::default(),
    };
    let child = ChildProcess::command("producer", ENTRY, &spec).spawn();
    (name, child)
}

/// An async consumer waits for a second on a producer process that lives and sends
/// nothing: its waiter thread does not wake (before the death notice it woke every 20 ms
/// to probe the producer's lock: some 50 sleeps and 50 probes in that second). Then the
/// producer is killed with `SIGKILL`: the wait ends with `ProducerDied`, learned from the
/// notice.
fn an_idle_async_wait_sleeps_until_the_producer_dies() {
    let (name, mut child) = spawn_idle_producer("idle");
    let consumer = Consumer::builder()
        .wait_for_segment(HANG_GUARD)
        .open(name.as_str())
        .expect("attach");
    child.expect("ready");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let before = waiter_stats();
    let task = rt.spawn(async move {
        let mut c = AsyncConsumer::new(consumer);
        c.recv().await.map(|m| m.seq())
    });
    // Registered, and the waiter asleep on the words (the data word and the notice).
    wait_until("the wait registers", || {
        let s = waiter_stats();
        s.registrations > before.registrations && s.sleeps > before.sleeps
    });
    let idle_from = waiter_stats();
    std::thread::sleep(Duration::from_secs(1));
    let idle_to = waiter_stats();
    assert!(!task.is_finished(), "nothing was sent");
    let sleeps = idle_to.sleeps - idle_from.sleeps;
    let probes = idle_to.probes - idle_from.probes;
    // A slower machine only makes these smaller. One sleep of slack: the registration's
    // own rescan may fall just after the first sample.
    assert!(
        sleeps <= 1 && probes == 0,
        "an idle wait woke its waiter {sleeps} times and probed {probes} times in a second"
    );
    assert!(
        idle_to.futex_waitv,
        "this test needs futex_waitv (Linux 5.16+)"
    );

    child.kill();
    let got = rt.block_on(async {
        tokio::time::timeout(HANG_GUARD, task)
            .await
            .expect("ProducerDied within the hang guard")
            .expect("task")
    });
    assert_eq!(got, Err(RecvError::ProducerDied));
    let after = waiter_stats();
    assert!(
        after.notices > idle_to.notices,
        "the death came from the notice: {after:?}"
    );
}

/// A blocking consumer (sleeping at once) waits a second on a producer process that lives
/// and sends nothing: it sleeps once, for the whole second (before the death notice its
/// sleep was bounded by 20 ms: some 50 sleeps). Then the producer is killed with `SIGKILL`
/// while it sleeps again: `ProducerDied`, and the sleep that ended was the only one (the
/// notice woke it; a bounded sleep would have needed no notice but taken its 20 ms ticks).
fn an_idle_blocking_wait_sleeps_until_the_producer_dies() {
    let (name, mut child) = spawn_idle_producer("idle-blocking");
    let mut c = Consumer::builder()
        .wait_policy(WaitPolicy::Adaptive {
            spins: 0,
            yields: 0,
        })
        .wait_for_segment(HANG_GUARD)
        .open(name.as_str())
        .expect("attach");
    child.expect("ready");
    let before = c.stats().sleeps;
    assert_eq!(
        c.recv_timeout(Duration::from_secs(1)).map(|m| m.seq()),
        Err(RecvTimeoutError::Timeout)
    );
    let sleeps = c.stats().sleeps - before;
    // A slower machine only makes this smaller (fewer, longer sleeps); a signal could add
    // one.
    assert!(
        (1..=2).contains(&sleeps),
        "an idle recv_timeout of a second slept {sleeps} times"
    );
    let killer = std::thread::spawn(move || {
        // Not a timing assumption: whenever it lands, recv must end with ProducerDied;
        // this only makes it likely that the consumer is asleep by then.
        std::thread::sleep(Duration::from_millis(200));
        child.kill();
    });
    let before = c.stats().sleeps;
    assert_eq!(
        c.recv_timeout(HANG_GUARD).map(|m| m.seq()),
        Err(RecvTimeoutError::ProducerDied)
    );
    killer.join().expect("killer");
    let sleeps = c.stats().sleeps - before;
    assert!(
        sleeps <= 2,
        "{sleeps} sleeps until the death was seen: the sleep was not woken by the notice"
    );
}

/// A waker that does nothing (`Waker::noop` needs Rust 1.85; the crate supports 1.82).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Poll `fut` once (a waker that does nothing: a registered wait would never be woken).
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    pin!(fut).poll(&mut Context::from_waker(&waker))
}

/// A heap ring of 256 bytes that wrapped twice, then three more messages of which the
/// consumers read the first; the second (at position 672: 32-byte records) has its stamp
/// overwritten by a peer with `stamp`, while the producer's tail says it was published.
fn stuck_at_the_second_of_three(stamp: u64) -> (Producer, AsyncConsumer, AsyncLossyConsumer) {
    let mut p = Producer::builder()
        .capacity(256)
        .create_in_process()
        .expect("valid config");
    // Sleeping at once, for the blocking test (the async handles ignore the policy).
    let policy = WaitPolicy::Adaptive {
        spins: 0,
        yields: 0,
    };
    let mut c = Consumer::builder()
        .wait_policy(policy)
        .attach_to(&p)
        .expect("attach");
    let mut lossy = Consumer::builder()
        .wait_policy(policy)
        .lossy()
        .attach_to(&p)
        .expect("attach");
    let mut buf = Vec::new();
    for i in 0..21u8 {
        p.send(&[i; 8]).expect("send");
        assert_eq!(c.try_recv().expect("message").seq(), u64::from(i));
        assert_eq!(lossy.try_recv_into(&mut buf), Ok(u64::from(i)));
    }
    for i in 21..23u8 {
        p.send(&[i; 8]).expect("send");
    }
    let seg = HostileSegment::of_producer(&p).expect("a heap ring");
    // SAFETY: no message of this ring is held in place while it is scribbled on.
    unsafe { seg.scribble_ring(672, &stamp.to_ne_bytes()) }
    (p, AsyncConsumer::new(c), AsyncLossyConsumer::new(lossy))
}

/// A stream stuck on a corrupt record (a stamp overwritten behind the published tail)
/// is reported by the first poll of an async receive, lossless and lossy, for every kind
/// of bad stamp: an async wait that registered would sleep until the data word changes,
/// and on a stuck stream it may never change again. (Before, the registration was handed
/// back after a second for a full check; without that, only the check before registering
/// stands between a corrupt record and a silent stall.)
fn an_async_receive_reports_a_stuck_stream_before_it_waits() {
    for stamp in [672 - 256, 0, (1 << 63) | 22, 0x1234_5678] {
        let (_p, mut c, mut lossy) = stuck_at_the_second_of_three(stamp);
        match poll_once(c.recv()) {
            Poll::Ready(Err(RecvError::Corrupt(_))) => {}
            Poll::Ready(other) => panic!("stamp {stamp:#x}: {:?}", other.map(|m| m.seq())),
            Poll::Pending => panic!("stamp {stamp:#x}: the lossless receive waits"),
        }
        let mut buf = Vec::new();
        match poll_once(lossy.recv_into(&mut buf)) {
            Poll::Ready(Err(RecvError::Corrupt(_))) => {}
            Poll::Ready(other) => panic!("stamp {stamp:#x}: lossy {other:?}"),
            Poll::Pending => panic!("stamp {stamp:#x}: the lossy receive waits"),
        }
    }
}

/// The blocking receive likewise reports a stuck stream before its first sleep (which may
/// now last seconds: until the data word changes, or the producer's death notice, or a
/// 5 s backstop), lossless and lossy, with the policy that sleeps at once.
fn a_blocking_receive_reports_a_stuck_stream_before_it_sleeps() {
    for stamp in [672 - 256, 0, (1 << 63) | 22, 0x1234_5678] {
        let (_p, c, lossy) = stuck_at_the_second_of_three(stamp);
        let mut c = c.into_inner();
        let mut lossy = lossy.into_inner();
        let r = c.recv_timeout(HANG_GUARD).map(|m| m.seq());
        assert!(
            matches!(r, Err(RecvTimeoutError::Corrupt(_))),
            "stamp {stamp:#x}: {r:?}"
        );
        assert_eq!(c.stats().sleeps, 0, "stamp {stamp:#x}: slept first");
        let mut buf = Vec::new();
        let r = lossy.recv_timeout_into(&mut buf, HANG_GUARD);
        assert!(
            matches!(r, Err(RecvTimeoutError::Corrupt(_))),
            "stamp {stamp:#x}: lossy {r:?}"
        );
        assert_eq!(
            lossy.stats().sleeps,
            0,
            "stamp {stamp:#x}: lossy slept first"
        );
    }
}

/// The signal mask of this process's threads named `name` (`SigBlk` of
/// `/proc/self/task/*/status`).
fn blocked_signals_of(name: &str) -> Vec<u64> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).expect("status");
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .expect("SigBlk");
            u64::from_str_radix(line.trim(), 16).expect("hex mask")
        })
        .collect()
}

/// The library's own threads (the producer's `shmcast-alive`, the async `shmcast-waiter`)
/// block every signal, so that a process-directed signal (Ctrl-C, `SIGTERM`, the signals of
/// a `sigwait` design) always goes to one of the application's threads. Before, they
/// inherited the mask of whichever thread made them (here: nothing blocked).
fn the_library_threads_block_every_signal() {
    let name = ShmName::new("quiet");
    let producer = Producer::builder()
        .capacity(64 << 10)
        .create(name.as_str())
        .expect("create");
    let consumer = Consumer::builder().open(name.as_str()).expect("attach");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut c = AsyncConsumer::new(consumer);
    let before = waiter_stats();
    // Register a wait (nothing was sent), which starts the waiter thread if none runs.
    assert!(poll_once(c.recv()).is_pending());
    assert!(waiter_stats().registrations > before.registrations);
    let wanted = [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGHUP];
    for thread in ["shmcast-alive", "shmcast-waiter"] {
        let masks = blocked_signals_of(thread);
        assert!(!masks.is_empty(), "no thread named {thread}");
        for mask in masks {
            for sig in wanted {
                assert!(
                    mask & (1 << (sig - 1)) != 0,
                    "{thread} does not block signal {sig} (SigBlk {mask:016x})"
                );
            }
        }
    }
    drop(rt);
    drop(c);
    drop(producer);
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[
            case!(an_idle_async_wait_sleeps_until_the_producer_dies),
            case!(an_idle_blocking_wait_sleeps_until_the_producer_dies),
            case!(an_async_receive_reports_a_stuck_stream_before_it_waits),
            case!(a_blocking_receive_reports_a_stuck_stream_before_it_sleeps),
            case!(the_library_threads_block_every_signal),
        ],
    );
}
