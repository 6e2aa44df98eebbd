//! Real processes on real segments: the parent test is the producer; its consumers are
//! children running this same test binary (`--exact child_process`) in a role chosen
//! through the environment. Every child reports on stdout and through its exit status;
//! every wait on a child is bounded by a hang guard, never by a guess at how long
//! something takes.

#[macro_use]
mod common;

use common::{
    await_parent_line, check_message, dup_cloexec, message, padding_records, report, write_message,
    ChildProcess, ChildSpec, Digest, Lengths, SegmentRef, ShmName, SpaceSleepers, TempPath,
    Watchdog,
};
use shmcast::{Producer, ProducerStats, RecvError, TryRecvError, TrySendError, WaitPolicy};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

/// The test that children run.
const ENTRY: &str = "child_process";

/// Messages in each of the large broadcast runs.
const MESSAGES: u64 = 1_000_000;

/// Ring of the large runs: small next to the data sent, so the stream wraps thousands of
/// times, with padding.
const RING: usize = 64 << 10;

/// The million-message runs keep both cores busy: run them one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

/// Idle-friendly waiting: every wait goes straight to the futex.
const FUTEX: WaitPolicy = WaitPolicy::Adaptive {
    spins: 0,
    yields: 0,
};

/// Waiting that never sleeps (spinning, yielding the CPU now and then: four spinning
/// processes share two cores here).
const SPIN: WaitPolicy = WaitPolicy::SpinYield { spins: 256 };

// ---------------------------------------------------------------------------------------
// Child side.

/// Entry point of every child process (the test binary re-run in a role).
fn child_process(spec: &ChildSpec) {
    match spec.role.as_str() {
        "consume_all" => consume_all(spec),
        "read_once_the_producer_waits" => read_once_the_producer_waits(spec),
        "drain_after_close" => drain_after_close(spec),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Receive until `Disconnected`, checking that message `n` is the `n`-th of the workload
/// (order, length, sequence number, checksum). Returns the count and the stream's digest.
fn receive_and_check(consumer: &mut shmcast::Consumer, max_message: usize) -> (u64, Digest) {
    let mut lengths = Lengths::new(max_message);
    let mut digest = Digest::default();
    let mut count = 0u64;
    loop {
        match consumer.recv() {
            Ok(msg) => {
                assert_eq!(msg.seq(), count, "message {} after {count}", msg.seq());
                let len = lengths.next().expect("endless");
                let sum = check_message(count, len, &msg).unwrap_or_else(|e| panic!("{e}"));
                digest.add(count, len, sum);
                count += 1;
            }
            Err(RecvError::Disconnected) => return (count, digest),
            Err(e) => panic!("after {count} messages: {e}"),
        }
    }
}

fn consume_all(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    let (count, digest) = receive_and_check(&mut consumer, spec.max_message);
    let stats = consumer.stats();
    report(
        "done",
        format!(
            "{count} {:x} {} {}",
            digest.0, stats.sleeps, stats.wake_syscalls
        ),
    );
}

fn read_once_the_producer_waits(spec: &ChildSpec) {
    let SegmentRef::Name(name) = &spec.segment else {
        panic!("this role watches a named segment");
    };
    let mut consumer = spec.open();
    let watch = SpaceSleepers::map(name);
    report("attached", std::process::id());
    // Read nothing until the producer is blocked in `send` (bounded by the parent's hang
    // guard, which kills us).
    while !watch.producer_waiting() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (count, _) = receive_and_check(&mut consumer, spec.max_message);
    report("done", count);
}

fn drain_after_close(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    assert_eq!(await_parent_line(), "go");
    let (count, _) = receive_and_check(&mut consumer, spec.max_message);
    // The end of the stream is final.
    assert_eq!(consumer.recv().unwrap_err(), RecvError::Disconnected);
    assert_eq!(consumer.try_recv().unwrap_err(), TryRecvError::Disconnected);
    report("done", count);
}

// ---------------------------------------------------------------------------------------
// Parent side.

/// What a consumer process reported: its count, its digest and its counters.
struct ConsumerReport {
    count: u64,
    digest: Digest,
    sleeps: u64,
    wake_syscalls: u64,
}

fn parse_done(line: &str) -> ConsumerReport {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [count, digest, sleeps, wakes] = f.as_slice() else {
        panic!("bad report {line:?}");
    };
    ConsumerReport {
        count: count.parse().expect("count"),
        digest: Digest(u64::from_str_radix(digest, 16).expect("digest")),
        sleeps: sleeps.parse().expect("sleeps"),
        wake_syscalls: wakes.parse().expect("wakes"),
    }
}

enum Backing {
    Named,
    Memfd,
}

/// One producer (this process) sends `MESSAGES` self-checking messages of random length
/// through a `RING`-byte ring to three consumer processes, which all attached before the
/// first one was sent. Each consumer checks count, order and content; the parent checks
/// that each one saw exactly the stream it sent. Returns the producer's counters and the
/// consumers' reports.
fn million_messages_to_three_consumers(
    test: &str,
    backing: Backing,
    policy: WaitPolicy,
) -> (ProducerStats, Vec<ConsumerReport>) {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new(test);
    let builder = Producer::builder().capacity(RING).wait_policy(policy);
    let mut producer = match backing {
        Backing::Named => builder.create(name.as_str()),
        Backing::Memfd => builder.create_anonymous(),
    }
    .expect("create the segment");
    let max = producer.max_message();
    let pads = padding_records(Lengths::new(max).take(MESSAGES as usize), RING as u64);
    assert!(pads > 1000, "the workload pads only {pads} times");

    let inherited = match backing {
        Backing::Named => None,
        Backing::Memfd => Some(dup_cloexec(
            producer.fd().expect("a memfd has a descriptor"),
        )),
    };
    let spec = ChildSpec {
        role: "consume_all".into(),
        segment: match &inherited {
            Some(fd) => SegmentRef::Fd(fd.as_raw_fd()),
            None => SegmentRef::Name(name.as_str().into()),
        },
        max_message: max,
        wait: policy,
    };
    let mut children: Vec<ChildProcess> = (0..3)
        .map(|i| ChildProcess::spawn(&format!("consumer {i}"), ENTRY, &spec))
        .collect();
    // Handshake: nothing is sent before every consumer has attached.
    for child in &mut children {
        child.expect("attached");
    }
    drop(inherited);

    let watchdog = Watchdog::arm(&children);
    let mut digest = Digest::default();
    for (seq, len) in (0..MESSAGES).zip(Lengths::new(max)) {
        let mut slot = producer.reserve(len).expect("reserve");
        let sum = write_message(seq, &mut slot);
        slot.commit();
        digest.add(seq, len, sum);
    }
    let stats = producer.stats();
    drop(producer);
    watchdog.disarm();

    let reports: Vec<ConsumerReport> = children
        .into_iter()
        .map(|mut child| {
            let done = parse_done(&child.expect("done"));
            child.finish();
            done
        })
        .collect();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(
            r.count, MESSAGES,
            "consumer {i} received {} messages",
            r.count
        );
        assert_eq!(r.digest, digest, "consumer {i} received other content");
    }
    (stats, reports)
}

fn three_spinning_consumer_processes_each_get_a_million_messages_in_order() {
    let (producer, consumers) =
        million_messages_to_three_consumers("spinning", Backing::Named, SPIN);
    // Nobody ever slept, so nobody was woken: no syscall on the data path.
    assert_eq!((producer.sleeps, producer.wake_syscalls), (0, 0));
    for c in &consumers {
        assert_eq!((c.sleeps, c.wake_syscalls), (0, 0));
    }
}

fn three_sleeping_consumer_processes_of_a_memfd_each_get_a_million_messages_in_order() {
    let (producer, consumers) =
        million_messages_to_three_consumers("sleeping", Backing::Memfd, FUTEX);
    // The run really went through the futexes: someone had to wait and slept.
    let sleeps = producer.sleeps + consumers.iter().map(|c| c.sleeps).sum::<u64>();
    assert!(sleeps > 0, "nobody slept in a million messages");
}

fn a_slow_consumer_process_gates_the_producer_until_it_catches_up() {
    const CAPACITY: usize = 4096;
    let name = ShmName::new("slow_consumer");
    let mut producer = Producer::builder()
        .capacity(CAPACITY)
        .wait_policy(FUTEX)
        .create(name.as_str())
        .expect("create the segment");
    let max = producer.max_message();
    let mut child = ChildProcess::spawn(
        "slow consumer",
        ENTRY,
        &ChildSpec {
            role: "read_once_the_producer_waits".into(),
            segment: SegmentRef::Name(name.as_str().into()),
            max_message: max,
            wait: WaitPolicy::default(),
        },
    );
    child.expect("attached");

    // The consumer reads nothing yet: fill the ring. Every record takes at least a
    // 24-byte header, so accepting more than `CAPACITY / 24` messages would mean
    // overwriting unread ones.
    let mut lengths = Lengths::new(max);
    let mut sent = 0u64;
    let mut next = message(sent, lengths.next().expect("endless"));
    while producer.try_send(&next).is_ok() {
        sent += 1;
        assert!(
            sent <= CAPACITY as u64 / 24,
            "the ring accepted more than it holds while the consumer read nothing"
        );
        next = message(sent, lengths.next().expect("endless"));
    }
    assert!(sent > 0);
    // Full, and it stays full while the consumer reads nothing.
    assert_eq!(producer.try_send(&next), Err(TrySendError::Full));
    assert_eq!(producer.try_send(&next), Err(TrySendError::Full));

    // Blocks; the consumer starts reading only once it sees the producer asleep.
    let watchdog = Watchdog::arm(std::slice::from_ref(&child));
    producer.send(&next).expect("send");
    watchdog.disarm();
    sent += 1;
    // It found the ring full once, then waited for room instead of overwriting.
    assert_eq!(producer.stats().full_waits, 1);
    drop(producer);

    let received: u64 = child.expect("done").parse().expect("count");
    child.finish();
    // Every message, the blocked one included, in order and intact.
    assert_eq!(received, sent);
}

fn consumer_processes_drain_everything_sent_before_the_producer_dropped_then_disconnect() {
    const SENT: u64 = 100;
    let path = TempPath::new("close");
    let mut producer = Producer::builder()
        .capacity(RING)
        .max_message(256)
        .create_path(path.path())
        .expect("create the segment");
    let spec = ChildSpec {
        role: "drain_after_close".into(),
        segment: SegmentRef::Path(path.path().to_path_buf()),
        max_message: producer.max_message(),
        wait: WaitPolicy::default(),
    };
    let mut children: Vec<ChildProcess> = (0..2)
        .map(|i| ChildProcess::spawn(&format!("consumer {i}"), ENTRY, &spec))
        .collect();
    for child in &mut children {
        child.expect("attached");
    }

    // Everything fits in the ring: all of it is still unread when the producer goes.
    for (seq, len) in (0..SENT).zip(Lengths::new(producer.max_message())) {
        producer
            .try_send(&message(seq, len))
            .expect("room for every message");
    }
    drop(producer);

    for child in &mut children {
        child.send_line("go");
    }
    for mut child in children {
        let received: u64 = child.expect("done").parse().expect("count");
        child.finish();
        assert_eq!(received, SENT);
    }
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[
        case!(three_spinning_consumer_processes_each_get_a_million_messages_in_order),
        case!(three_sleeping_consumer_processes_of_a_memfd_each_get_a_million_messages_in_order),
        case!(a_slow_consumer_process_gates_the_producer_until_it_catches_up),
        case!(consumer_processes_drain_everything_sent_before_the_producer_dropped_then_disconnect),
        ],
    );
}
