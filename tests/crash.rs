//! Crashed peers, with real processes and `SIGKILL`: the kill matrix of issue 7 and a soak.
//!
//! Consumers killed while attaching, idle, holding a message or asleep in a futex wait: the
//! producer, gated by the dead consumer, reclaims its slot and goes on; the other consumers
//! lose nothing. A live consumer that stops reading is evicted after `evict_after` and told
//! so. A producer killed while idle, mid-stream, holding a reservation or holding one that
//! needed a padding record: consumers drain exactly what was committed, then get
//! `ProducerDied`; a new producer takes the segment over and the stream goes on without a
//! gap or a duplicate.
//!
//! Every message checks itself (sequence number in the ring and in its bytes, length, and a
//! checksum of its body: `common::RunCheck`), so "nothing lost, duplicated, reordered or
//! corrupted" is checked on every message by every surviving consumer. Every wait on another
//! process is bounded by a hang guard; nothing asserts how long anything took. The times
//! that matter (how long a producer stays gated by a dead consumer, how long consumers take
//! to notice a dead producer) are printed, not asserted: run with `--nocapture` to see them.
//!
//! The contract after `ProducerDied`, as tested here: the consumer keeps its position;
//! calling `recv` again returns `ProducerDied` again while no producer is alive; once a new
//! producer has taken the segment over (`ProducerBuilder::open`), `recv` goes on with the
//! message after the last one received.
//!
//! The soak runs for `SHMCAST_SOAK_SECS` seconds (default 60): a producer sending flat out
//! while consumers are killed and restarted at random.

#[macro_use]
mod common;

use common::{
    await_parent_line, in_shared_futex_wait, length_at, monotonic_ns, next_position, offsets,
    param, receive_until_disconnected, record_size, report, wait_to_be_killed, write_message,
    ChildProcess, ChildSpec, Rng, RunCheck, SegmentRef, SegmentView, ShmName, WorkloadSender,
    HANG_GUARD,
};
use shmcast::{Producer, ProducerStats, RecvError, WaitPolicy};
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The test that children run.
const ENTRY: &str = "child_process";

/// Ring of the kill matrix: small, so the stream wraps many times after a kill and the
/// producer reaches the dead consumer's position quickly.
const CAPACITY: usize = 16 << 10;

/// Largest message of the kill matrix.
const MAX_MESSAGE: usize = 1000;

/// Messages sent after a consumer was killed: about a hundred laps of the ring.
const AFTER_KILL: u64 = 20_000;

/// Messages sent by a new producer after taking a segment over.
const AFTER_TAKEOVER: u64 = 5_000;

/// `evict_after` in the eviction test.
const EVICT_AFTER: Duration = Duration::from_millis(500);

/// Every test here runs several processes that spin: one test at a time on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Idle-friendly waiting: every wait goes straight to the futex.
const FUTEX: WaitPolicy = WaitPolicy::Adaptive {
    spins: 0,
    yields: 0,
};

/// Waiting that never sleeps (yielding now and then: several spinning processes share two
/// cores).
const SPIN: WaitPolicy = WaitPolicy::SpinYield { spins: 256 };

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A generator seeded differently on every run, or with `SHMCAST_TEST_SEED` (hex) to replay
/// a run: the seed is printed.
fn fresh_rng(what: &str) -> Rng {
    let seed = match std::env::var("SHMCAST_TEST_SEED") {
        Ok(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed"),
        Err(_) => monotonic_ns() ^ (u64::from(std::process::id()) << 32),
    };
    println!("{what}: random seed {seed:#x}");
    Rng::new(seed)
}

fn between(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo)
}

// ---------------------------------------------------------------------------------------
// Child side.

/// Entry point of every child process (the test binary re-run in a role).
fn child_process(spec: &ChildSpec) {
    match spec.role.as_str() {
        "survivor" => survivor(spec),
        "attach_in_a_loop" => attach_in_a_loop(spec),
        "idle" => idle(spec),
        "hold_a_message" => hold_a_message(spec),
        "asleep" => asleep(spec),
        "stall_then_recv" => stall_then_recv(spec),
        "across_deaths" => across_deaths(spec),
        "producer" => producer(spec),
        "soak_consumer" => soak_consumer(spec),
        "drain_on_go" => drain_on_go(spec),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Report a broken invariant to the parent (so it is seen even if the parent kills us
/// before the panic ends the process), then panic.
fn violation(what: impl Display) -> ! {
    report("violation", &what);
    panic!("{what}")
}

/// Receive until `Disconnected`, checking every message; the stream must start at the
/// first message ever sent.
fn survivor(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    let mut run = RunCheck::from(spec.max_message, 0);
    if let Err(e) = receive_until_disconnected(&mut consumer, &mut run) {
        violation(e);
    }
    report(
        "done",
        format!("{} {}", run.next().expect("a start"), run.count()),
    );
}

/// Attach and detach in a loop until killed, holding each fresh attachment for a random
/// 0 to 50 µs (spinning, no syscall) so that kills land mid-`open`, right after it
/// returned, or mid-detach.
fn attach_in_a_loop(spec: &ChildSpec) {
    let mut rng = Rng::new(u64::from(std::process::id()));
    let consumer = spec.open();
    report("attached", std::process::id());
    drop(consumer);
    loop {
        let consumer = spec.open();
        let hold = Duration::from_nanos(rng.next_u64() % 50_000);
        let start = Instant::now();
        while start.elapsed() < hold {
            std::hint::spin_loop();
        }
        drop(consumer);
    }
}

/// Attach, then read nothing until killed.
fn idle(spec: &ChildSpec) {
    let _consumer = spec.open();
    report("attached", std::process::id());
    wait_to_be_killed();
}

/// Attach, receive one message and hold it (zero-copy guard) until killed.
fn hold_a_message(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    let msg = consumer
        .recv()
        .unwrap_or_else(|e| violation(format!("recv: {e}")));
    report("holding", msg.seq());
    wait_to_be_killed();
    drop(msg);
}

/// Attach and wait for a message on an empty ring (asleep in the futex) until killed.
fn asleep(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    match consumer.recv().map(|msg| msg.seq()) {
        Ok(seq) => violation(format!("received message {seq} on an empty ring")),
        Err(e) => violation(format!("recv on an empty ring: {e}")),
    }
}

/// Attach, read nothing until the parent says "go", then find out that we were evicted.
fn stall_then_recv(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    assert_eq!(await_parent_line(), "go");
    match consumer.recv() {
        Err(RecvError::Evicted) => {}
        Ok(msg) => violation(format!(
            "an evicted consumer received message {}",
            msg.seq()
        )),
        Err(e) => violation(format!("expected Evicted, got {e}")),
    }
    // Eviction is final.
    match consumer.recv() {
        Err(RecvError::Evicted) => {}
        other => violation(format!("the second call after eviction returned {other:?}")),
    }
    report("evicted", std::process::id());
}

/// Receive the stream from its first message through producer deaths and takeovers until
/// `Disconnected`. Mode `handshake`: on `ProducerDied`, report it and follow the parent's
/// instructions ("again": `recv` must say `ProducerDied` again; "continue": go on). Mode
/// `retry`: on `ProducerDied`, try again a millisecond later.
fn across_deaths(spec: &ChildSpec) {
    let handshake = match param::<String>("mode").as_str() {
        "handshake" => true,
        "retry" => false,
        other => panic!("unknown mode {other:?}"),
    };
    let mut consumer = spec.open();
    report("attached", std::process::id());
    let mut run = RunCheck::from(spec.max_message, 0);
    let mut deaths = 0u64;
    loop {
        let received = consumer.recv().map(|msg| run.check(msg.seq(), &msg));
        match received {
            Ok(checked) => {
                if let Err(e) = checked {
                    violation(e);
                }
            }
            Err(RecvError::ProducerDied) => {
                deaths += 1;
                let next = run.next().expect("a start");
                if !handshake {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                report("died", format!("{next} {}", monotonic_ns()));
                loop {
                    match await_parent_line().as_str() {
                        "again" => match consumer.recv().map(|msg| msg.seq()) {
                            Err(RecvError::ProducerDied) => report("again", next),
                            Ok(seq) => violation(format!(
                                "message {seq} arrived after ProducerDied with no producer alive"
                            )),
                            Err(e) => violation(format!("expected ProducerDied again: {e}")),
                        },
                        "continue" => break,
                        other => panic!("unknown instruction {other:?}"),
                    }
                }
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => violation(format!("after {} messages: {e}", run.count())),
        }
    }
    report("done", format!("{} {deaths}", run.next().expect("a start")));
}

/// Attach, wait for the parent's "go", then receive until `Disconnected` (through a
/// producer death: the parent takes over before "go"); report how far the stream went and
/// how many wake-up syscalls receiving it cost.
fn drain_on_go(spec: &ChildSpec) {
    let mut consumer = spec.open();
    report("attached", std::process::id());
    assert_eq!(await_parent_line(), "go");
    let mut run = RunCheck::from(spec.max_message, 0);
    if let Err(e) = receive_until_disconnected(&mut consumer, &mut run) {
        violation(e);
    }
    report(
        "done",
        format!("{} {}", run.count(), consumer.stats().wake_syscalls),
    );
}

/// Send messages `from..to` of the workload, zero-copy.
fn produce(producer: &mut Producer, from: u64, to: u64) {
    for seq in from..to {
        let len = length_at(seq, producer.max_message());
        let mut slot = producer.reserve(len).expect("reserve");
        write_message(seq, &mut slot);
        slot.commit();
    }
}

/// A producer process. Mode `idle`: send `count` messages, then idle until killed.
/// `reserved`: send `count`, then reserve a message and hold the reservation until killed.
/// `mid_wrap`: send until the largest message no longer fits before the end of the ring
/// (at least two laps), then reserve it (its record needs a padding record first) and hold
/// it until killed. `stream`: send flat out until killed, or `count` messages (if not 0) and
/// then close the stream. With `takeover` set, it takes over the existing segment and
/// continues its stream instead of creating it.
fn producer(spec: &ChildSpec) {
    let SegmentRef::Name(name) = &spec.segment else {
        panic!("producers here use named segments");
    };
    let mode: String = param("mode");
    let count: u64 = param("count");
    let capacity: usize = param("capacity");
    let takeover: bool = param("takeover");
    let builder = Producer::builder()
        .capacity(capacity)
        .max_message(spec.max_message)
        .remove_on_drop(false);
    let (mut producer, first) = if takeover {
        let producer = builder.open(name).expect("take the segment over");
        // The sequence number the takeover recovered (white-box: the API does not say).
        let first = SegmentView::named(name).load_u64(offsets::NEXT_SEQ);
        (producer, first)
    } else {
        let producer = builder.create(name).expect("create the segment");
        report("created", std::process::id());
        assert_eq!(await_parent_line(), "go");
        (producer, 0)
    };
    let max = producer.max_message();
    match mode.as_str() {
        "idle" => {
            produce(&mut producer, 0, count);
            report("sent", count);
            wait_to_be_killed();
        }
        "reserved" => {
            produce(&mut producer, 0, count);
            let mut slot = producer.reserve(max).expect("reserve");
            // Poison: not a message of the workload, whatever sequence number it would get.
            slot.fill(0xee);
            report("reserved", count);
            // Killed while the reservation is held (it is dropped, i.e. aborted, only if
            // the parent closes our stdin instead).
            wait_to_be_killed();
        }
        "mid_wrap" => {
            let cap = capacity as u64;
            let (mut seq, mut pos) = (0u64, 0u64);
            loop {
                let room = cap - pos % cap;
                if pos >= 2 * cap && room < record_size(max) {
                    break;
                }
                produce(&mut producer, seq, seq + 1);
                pos = next_position(pos, length_at(seq, max), cap).0;
                seq += 1;
            }
            // The model of the framing agrees with the producer: the reservation below
            // really needs a padding record.
            let tail = SegmentView::named(name).load_u64(offsets::TAIL);
            assert_eq!(tail, pos, "the test's framing model is wrong");
            let mut slot = producer.reserve(max).expect("reserve");
            slot.fill(0xee);
            report("reserved", format!("{seq} {pos}"));
            wait_to_be_killed();
        }
        "stream" => {
            report("streaming", first);
            if count == 0 {
                let mut seq = first;
                loop {
                    produce(&mut producer, seq, seq + 1);
                    seq += 1;
                }
            }
            produce(&mut producer, first, first + count);
            drop(producer);
            report("closed", first + count);
        }
        other => panic!("unknown producer mode {other:?}"),
    }
}

/// One incarnation of a soak consumer: attach at the next message, then receive a
/// contiguous, intact run until `Disconnected` (or until killed). Parameters: `batch`
/// receives with `recv_batch`; `hold_us` holds one message in 4096 (zero-copy) for that
/// long, so that some kills land while a message is held.
fn soak_consumer(spec: &ChildSpec) {
    let batch: bool = param("batch");
    let hold = Duration::from_micros(param("hold_us"));
    let mut consumer = spec.open();
    report("attached", std::process::id());
    let mut run = RunCheck::new(spec.max_message);
    let mut first_reported = false;
    loop {
        let result = if batch {
            let mut failure = None;
            let r = consumer.recv_batch(64, |seq, bytes| {
                if failure.is_none() {
                    failure = run.check(seq, bytes).err();
                }
            });
            if let Some(e) = failure {
                violation(e);
            }
            r.map(drop)
        } else {
            consumer.recv().map(|msg| {
                if let Err(e) = run.check(msg.seq(), &msg) {
                    violation(e);
                }
                if !hold.is_zero() && msg.seq() % 4096 == 0 {
                    thread::sleep(hold);
                }
            })
        };
        match result {
            Ok(()) => {
                if !first_reported {
                    report("first", run.first().expect("a message"));
                    first_reported = true;
                }
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => violation(format!("after {} messages: {e}", run.count())),
        }
    }
    report(
        "done",
        format!(
            "{} {} {}",
            run.first().map_or("-".to_string(), |f| f.to_string()),
            run.next().map_or("-".to_string(), |n| n.to_string()),
            run.count()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// Parent side: the producer and its bookkeeping.

/// A parent producer with surviving consumer processes attached before the first message.
struct Fixture {
    name: ShmName,
    stream: WorkloadSender,
    survivors: Vec<ChildProcess>,
}

impl Fixture {
    fn new(test: &str, evict_after: Option<Duration>) -> Fixture {
        let name = ShmName::new(test);
        let mut builder = Producer::builder()
            .capacity(CAPACITY)
            .max_message(MAX_MESSAGE);
        if let Some(after) = evict_after {
            builder = builder.evict_after(after);
        }
        let producer = builder.create(name.as_str()).expect("create the segment");
        let mut fixture = Fixture {
            name,
            stream: WorkloadSender::new(producer, 0),
            survivors: Vec::new(),
        };
        for i in 0..2 {
            let spec = fixture.spec("survivor", SPIN);
            let mut child = ChildProcess::spawn(&format!("survivor {i}"), ENTRY, &spec);
            child.expect("attached");
            fixture.survivors.push(child);
        }
        fixture
    }

    fn spec(&self, role: &str, wait: WaitPolicy) -> ChildSpec {
        ChildSpec {
            role: role.into(),
            segment: SegmentRef::Name(self.name.as_str().into()),
            max_message: MAX_MESSAGE,
            wait,
        }
    }

    /// Close the stream and check that every survivor received all of it, intact and in
    /// order. Returns the producer's counters and the reclaim times.
    fn finish(self) -> (ProducerStats, Vec<Duration>) {
        let (stats, sent, reclaims) = self.stream.close();
        for mut child in self.survivors {
            let done = child.expect("done");
            child.finish();
            let f: Vec<u64> = done
                .split_whitespace()
                .map(|x| x.parse().expect("number"))
                .collect();
            assert_eq!(
                f,
                [sent, sent],
                "a survivor received messages up to {} ({} of them) of the {sent} sent",
                f[0],
                f[1]
            );
        }
        (stats, reclaims)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// One consumer process killed in some state before the producer reaches its position;
/// the producer then sends `AFTER_KILL` messages, and must reclaim the dead consumer's slot
/// exactly once.
fn consumer_killed_before_the_producer_reaches_it(
    test: &str,
    role: &str,
    wait: WaitPolicy,
    reach_state: impl FnOnce(&mut Fixture, &mut ChildProcess),
) {
    let _serial = serial();
    let mut fixture = Fixture::new(test, None);
    let mut victim = ChildProcess::spawn("victim", ENTRY, &fixture.spec(role, wait));
    victim.expect("attached");
    reach_state(&mut fixture, &mut victim);
    victim.kill();
    fixture.stream.send(AFTER_KILL);
    let (stats, reclaims) = fixture.finish();
    assert_eq!(
        stats.evictions, 1,
        "the dead consumer's slot was not reclaimed once"
    );
    assert_eq!(reclaims.len(), 1);
    println!("{test}: gated by the dead consumer for {}", ms(reclaims[0]));
}

// ---------------------------------------------------------------------------------------
// Dead consumers.

fn a_consumer_killed_while_idle_is_reclaimed_and_the_others_lose_nothing() {
    consumer_killed_before_the_producer_reaches_it("killed-idle", "idle", SPIN, |_, _| {});
}

fn a_consumer_killed_asleep_in_a_futex_wait_is_reclaimed_and_the_others_lose_nothing() {
    consumer_killed_before_the_producer_reaches_it(
        "killed-asleep",
        "asleep",
        FUTEX,
        |_, victim| {
            // Nothing was sent: its recv finds the ring empty and sleeps on the futex.
            let deadline = Instant::now() + HANG_GUARD;
            while !in_shared_futex_wait(victim.pid()) {
                assert!(
                    Instant::now() < deadline,
                    "the consumer never went to sleep"
                );
                thread::sleep(Duration::from_millis(1));
            }
        },
    );
}

fn a_consumer_killed_while_holding_a_message_is_reclaimed_and_the_others_lose_nothing() {
    consumer_killed_before_the_producer_reaches_it(
        "killed-holding",
        "hold_a_message",
        SPIN,
        |fixture, victim| {
            fixture.stream.send_next();
            assert_eq!(victim.expect("holding"), "0");
        },
    );
}

/// The producer is already asleep, waiting for the consumer that holds the oldest message,
/// when that consumer is killed.
fn a_consumer_killed_while_the_producer_waits_for_it_is_reclaimed_and_the_others_lose_nothing() {
    let _serial = serial();
    let mut fixture = Fixture::new("killed-while-waited-for", None);
    let mut victim = ChildProcess::spawn("victim", ENTRY, &fixture.spec("hold_a_message", SPIN));
    victim.expect("attached");
    fixture.stream.send_next();
    assert_eq!(victim.expect("holding"), "0");

    // Kill it once the producer sleeps for space (in the futex: the only shared futex wait
    // of this process) and the survivors have read everything: then the victim alone gates
    // it.
    let view = SegmentView::named(fixture.name.as_str());
    let survivors: Vec<u32> = fixture
        .survivors
        .iter()
        .map(|c| view.slot_of(c.pid(), 16).expect("survivor slot"))
        .collect();
    let killer = thread::spawn(move || {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let tail = view.load_u64(offsets::TAIL);
            let waiting = view.load_u32(offsets::SPACE_SLEEPERS) != 0
                && in_shared_futex_wait(std::process::id());
            let caught_up = survivors
                .iter()
                .all(|&i| view.load_u64(offsets::slot(i, offsets::SLOT_CURSOR)) == tail);
            if waiting && caught_up && tail > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the producer never waited");
            thread::sleep(Duration::from_micros(200));
        }
        let at = Instant::now();
        victim.kill();
        at
    });
    while !fixture.stream.send_next() {}
    let reclaimed_at = Instant::now();
    let killed_at = killer.join().expect("killer thread");
    fixture.stream.send(AFTER_KILL);
    let (stats, _) = fixture.finish();
    assert_eq!(stats.evictions, 1);
    assert!(
        stats.sleeps > 0,
        "the producer never slept waiting for the victim"
    );
    println!(
        "killed-while-waited-for: gated by the dead consumer for {} after the kill",
        ms(reclaimed_at.duration_since(killed_at))
    );
}

/// Attacher processes (attaching and detaching in a loop) killed at random moments while
/// the producer streams: a kill lands mid-`open` (before or after the slot is registered)
/// or between attaches. Whenever one dies with a registered slot, the producer must
/// reclaim it before the next attacher starts (which would otherwise reuse the slot).
fn consumers_killed_while_attaching_are_reclaimed_and_the_others_lose_nothing() {
    const ROUNDS: u32 = 16;
    let _serial = serial();
    let mut fixture = Fixture::new("killed-attaching", None);
    let spec = fixture.spec("attach_in_a_loop", SPIN);
    let view = SegmentView::named(fixture.name.as_str());
    let mut rng = fresh_rng("killed-attaching");
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut registered = 0;
            for round in 0..ROUNDS {
                let mut child = ChildProcess::spawn(&format!("attacher {round}"), ENTRY, &spec);
                child.expect("attached");
                thread::sleep(Duration::from_micros(between(&mut rng, 0, 5_000)));
                let pid = child.pid();
                child.kill();
                // Did the attacher die registered? Its slot (found by pid) is then lossless
                // (kind 2), or already reclaimed by the streaming producer (kind 4).
                let kind = |i| view.load_u32(offsets::slot(i, offsets::SLOT_STATE)) & 0xff;
                let left = (0..16).find(|&i| {
                    view.load_u32(offsets::slot(i, offsets::SLOT_PID)) == pid
                        && matches!(kind(i), 2 | 4)
                });
                if let Some(i) = left {
                    registered += 1;
                    let deadline = Instant::now() + HANG_GUARD;
                    while kind(i) == 2 {
                        assert!(Instant::now() < deadline, "slot {i} was never reclaimed");
                        thread::sleep(Duration::from_micros(100));
                    }
                }
            }
            done.store(true, Ordering::Release);
            registered
        })
    };
    // The producer streams all along, so attaches race with its sends.
    while !done.load(Ordering::Acquire) {
        fixture.stream.send_next();
    }
    let registered = killer.join().expect("killer thread");
    fixture.stream.send(AFTER_KILL);
    let (stats, reclaims) = fixture.finish();
    // Every dead registration was reclaimed (the killer waited for it); a live attacher
    // that lost the attach race against the producer may have been evicted too (it then
    // registers again).
    assert!(stats.evictions >= registered);
    println!(
        "killed-attaching: {registered} of {ROUNDS} attachers died with a registered slot, \
         {} evictions; gated by them for {:?}",
        stats.evictions,
        reclaims.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
}

/// A consumer killed while asleep cannot take its place in the futex's sleeper count with
/// it; the design's "no syscall when nobody sleeps" must survive it: once the dead
/// consumer's slot is reclaimed, with only spinning consumers left, the producer makes no
/// wake-up syscall.
fn a_consumer_killed_asleep_leaves_no_phantom_sleeper_that_costs_the_producer_syscalls() {
    let _serial = serial();
    let mut fixture = Fixture::new("phantom-consumer-sleeper", None);
    let mut victim = ChildProcess::spawn("victim", ENTRY, &fixture.spec("asleep", FUTEX));
    victim.expect("attached");
    let deadline = Instant::now() + HANG_GUARD;
    while !in_shared_futex_wait(victim.pid()) {
        assert!(
            Instant::now() < deadline,
            "the consumer never went to sleep"
        );
        thread::sleep(Duration::from_millis(1));
    }
    victim.kill();
    // Until the producer reclaims the dead slot it cannot tell; from then on it can.
    while !fixture.stream.send_next() {}
    let reclaimed_at = fixture.stream.stats().wake_syscalls;
    fixture.stream.send(AFTER_KILL);
    let view = SegmentView::named(fixture.name.as_str());
    let sleepers = view.load_u32(offsets::DATA_SLEEPERS);
    let (stats, _) = fixture.finish();
    assert_eq!(stats.evictions, 1);
    let wakes = stats.wake_syscalls - reclaimed_at;
    assert_eq!(
        (wakes, sleepers),
        (0, 0),
        "after the dead sleeper's slot was reclaimed: {wakes} FUTEX_WAKE syscalls for \
         {AFTER_KILL} messages with nobody asleep; the data futex still counts {sleepers} \
         sleeper(s)"
    );
}

// ---------------------------------------------------------------------------------------
// A live consumer that stalls.

fn a_live_consumer_that_stops_reading_is_evicted_after_evict_after_and_told_on_its_next_call() {
    let _serial = serial();
    let mut fixture = Fixture::new("evict-after", Some(EVICT_AFTER));
    let mut stalled = ChildProcess::spawn("stalled", ENTRY, &fixture.spec("stall_then_recv", SPIN));
    stalled.expect("attached");
    fixture.stream.send(AFTER_KILL);
    stalled.send_line("go");
    stalled.expect("evicted");
    stalled.finish();
    let (stats, reclaims) = fixture.finish();
    assert_eq!(stats.evictions, 1);
    println!(
        "evict-after: evict_after {EVICT_AFTER:?}; gated by the stalled consumer for {}",
        ms(reclaims[0])
    );
}

// ---------------------------------------------------------------------------------------
// Dead producers.

/// What the consumers of a killed producer saw.
struct Died {
    /// The message each consumer expected next when it got `ProducerDied` (everything
    /// before it was received).
    next: u64,
}

/// A producer process in `mode` is killed once it reports `state`; two consumer processes
/// (one asleep on the futex, one spinning) attached before its first message must drain
/// exactly what it committed and get `ProducerDied` (again if they ask again); then this
/// process takes the segment over, and they receive its messages as the continuation of
/// the same stream.
fn producer_killed(test: &str, mode: &str, count: u64, state: &str) -> Died {
    let _serial = serial();
    let name = ShmName::new(test);
    let spec = |role: &str, wait| ChildSpec {
        role: role.into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: MAX_MESSAGE,
        wait,
    };
    let mut producer = ChildProcess::command("producer", ENTRY, &spec("producer", FUTEX))
        .param("mode", mode)
        .param("count", count)
        .param("capacity", CAPACITY)
        .param("takeover", false)
        .spawn();
    producer.expect("created");
    let mut consumers: Vec<ChildProcess> = [("asleep", FUTEX), ("spinning", SPIN)]
        .iter()
        .map(|(label, wait)| {
            let mut c = ChildProcess::command(label, ENTRY, &spec("across_deaths", *wait))
                .param("mode", "handshake")
                .spawn();
            c.expect("attached");
            c
        })
        .collect();
    producer.send_line("go");
    let reported = producer.expect(state);
    if mode == "stream" {
        let mut rng = fresh_rng(test);
        thread::sleep(Duration::from_millis(between(&mut rng, 10, 80)));
    }
    let killed_at = producer.kill();

    let mut nexts = Vec::new();
    for c in &mut consumers {
        let died = c.expect("died");
        let (next, at) = died.split_once(' ').expect("two fields");
        let (next, at): (u64, u64) = (next.parse().expect("next"), at.parse().expect("time"));
        println!(
            "{test}: consumer {} noticed the dead producer {} after the kill, having \
             received {next} messages",
            c.pid(),
            ms(Duration::from_nanos(at.saturating_sub(killed_at)))
        );
        nexts.push(next);
    }
    assert!(
        nexts.iter().all(|&n| n == nexts[0]),
        "the consumers drained different amounts: {nexts:?}"
    );
    let next = nexts[0];
    if mode != "stream" {
        let committed: u64 = reported
            .split_whitespace()
            .next()
            .expect("count")
            .parse()
            .expect("count");
        assert_eq!(
            next, committed,
            "the consumers did not drain what was committed"
        );
    }
    // While no producer is alive, asking again gets ProducerDied again.
    for c in &mut consumers {
        c.send_line("again");
        assert_eq!(c.expect("again"), next.to_string());
    }

    // A new producer takes over; the stream goes on where the committed data ended (the
    // consumers check the sequence numbers and the content of every message).
    let taken = Producer::builder()
        .remove_on_drop(false)
        .open(name.as_str())
        .expect("take the segment over");
    let mut stream = WorkloadSender::new(taken, next);
    for c in &mut consumers {
        c.send_line("continue");
    }
    stream.send(AFTER_TAKEOVER);
    let (_, sent, _) = stream.close();
    for mut c in consumers {
        let done = c.expect("done");
        c.finish();
        let end: u64 = done
            .split_whitespace()
            .next()
            .expect("next")
            .parse()
            .expect("next");
        assert_eq!(
            end, sent,
            "a consumer stopped at {end} of {sent} after the takeover"
        );
    }
    Died { next }
}

fn consumers_of_a_producer_killed_while_idle_drain_everything_then_get_producer_died() {
    let died = producer_killed("producer-idle", "idle", 1000, "sent");
    assert_eq!(died.next, 1000);
}

fn consumers_of_a_producer_killed_mid_stream_drain_everything_committed_then_get_producer_died() {
    let died = producer_killed("producer-mid-stream", "stream", 0, "streaming");
    println!("producer-mid-stream: killed after {} messages", died.next);
}

fn a_reservation_of_a_producer_killed_before_committing_it_is_never_visible() {
    let died = producer_killed("producer-reserved", "reserved", 1000, "reserved");
    assert_eq!(died.next, 1000);
}

fn a_reservation_that_needed_a_padding_record_is_never_visible_when_its_producer_is_killed() {
    producer_killed("producer-mid-wrap", "mid_wrap", 0, "reserved");
}

/// Producer processes killed one after another at random moments of a flat-out stream,
/// each replaced by a new process that takes the segment over; consumers that stay attached
/// (retrying after `ProducerDied`) see one continuous stream.
fn new_producer_processes_take_over_killed_ones_and_the_stream_stays_continuous() {
    const KILLS: u32 = 5;
    const CAPACITY: usize = 4096;
    let _serial = serial();
    let name = ShmName::new("takeover");
    let mut rng = fresh_rng("takeover");
    let spec = |role: &str, wait| ChildSpec {
        role: role.into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: 200,
        wait,
    };
    let start = |round: u32, takeover: bool, count: u64| {
        ChildProcess::command(
            &format!("producer {round}"),
            ENTRY,
            &spec("producer", FUTEX),
        )
        .param("mode", "stream")
        .param("count", count)
        .param("capacity", CAPACITY)
        .param("takeover", takeover)
        .spawn()
    };
    let mut producer = start(0, false, 0);
    producer.expect("created");
    let mut consumers: Vec<ChildProcess> = [("asleep", FUTEX), ("spinning", SPIN)]
        .iter()
        .map(|(label, wait)| {
            let mut c = ChildProcess::command(label, ENTRY, &spec("across_deaths", *wait))
                .param("mode", "retry")
                .spawn();
            c.expect("attached");
            c
        })
        .collect();
    producer.send_line("go");
    let mut starts = vec![producer.expect("streaming")];
    for round in 1..=KILLS {
        thread::sleep(Duration::from_millis(between(&mut rng, 5, 60)));
        producer.kill();
        producer = start(round, true, if round == KILLS { AFTER_TAKEOVER } else { 0 });
        starts.push(producer.expect("streaming"));
    }
    let end: u64 = producer.expect("closed").parse().expect("end");
    producer.finish();
    println!("takeover: the producers started at messages {starts:?}; the stream ended at {end}");
    for mut c in consumers.drain(..) {
        let done = c.expect("done");
        c.finish();
        let f: Vec<u64> = done
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        assert_eq!(f[0], end, "a consumer stopped at {} of {end}", f[0]);
        println!("takeover: consumer saw ProducerDied {} times", f[1]);
    }
}

/// The producer's counterpart: a producer killed asleep on the space futex (ring full)
/// leaves its sleeper count behind. Only a producer sleeps on that futex, and a producer
/// that takes over knows its predecessor is dead: after the takeover, consumers draining
/// the ring must make no wake-up syscall.
fn a_producer_killed_asleep_leaves_no_phantom_sleeper_after_a_takeover() {
    let _serial = serial();
    let name = ShmName::new("phantom-producer-sleeper");
    let spec = |role: &str, wait| ChildSpec {
        role: role.into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: MAX_MESSAGE,
        wait,
    };
    let mut producer = ChildProcess::command("producer", ENTRY, &spec("producer", FUTEX))
        .param("mode", "stream")
        .param("count", 0)
        .param("capacity", CAPACITY)
        .param("takeover", false)
        .spawn();
    producer.expect("created");
    let mut consumer = ChildProcess::spawn("consumer", ENTRY, &spec("drain_on_go", SPIN));
    consumer.expect("attached");
    producer.send_line("go");
    // The consumer reads nothing yet: the producer fills the ring and sleeps.
    let deadline = Instant::now() + HANG_GUARD;
    while !in_shared_futex_wait(producer.pid()) {
        assert!(
            Instant::now() < deadline,
            "the producer never went to sleep"
        );
        thread::sleep(Duration::from_millis(1));
    }
    producer.kill();
    let taken = Producer::builder()
        .remove_on_drop(false)
        .open(name.as_str())
        .expect("take the segment over");
    consumer.send_line("go");
    drop(taken);
    let done = consumer.expect("done");
    consumer.finish();
    let f: Vec<u64> = done
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    let sleepers = SegmentView::named(name.as_str()).load_u32(offsets::SPACE_SLEEPERS);
    assert!(f[0] > 0, "the consumer received nothing");
    assert_eq!(
        (f[1], sleepers),
        (0, 0),
        "draining {} messages after the takeover cost the consumer {} FUTEX_WAKE syscalls \
         with no producer asleep; the space futex still counts {sleepers} sleeper(s)",
        f[0],
        f[1]
    );
}

// ---------------------------------------------------------------------------------------
// Soak.

/// Duration of the soak: `SHMCAST_SOAK_SECS`, default 60.
fn soak_duration() -> Duration {
    let secs = std::env::var("SHMCAST_SOAK_SECS")
        .ok()
        .map(|s| s.parse().expect("SHMCAST_SOAK_SECS: seconds"))
        .unwrap_or(60.0);
    Duration::from_secs_f64(secs)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A producer sends flat out for the soak's duration while three consumer processes are
/// killed at random moments (some before they even attached) and replaced by new ones that
/// start at the next message. Every incarnation checks that it sees a contiguous, intact
/// run; the producer is never stuck; the last incarnations receive the stream to its end.
fn soak_consumers_killed_and_restarted_at_random_never_disturb_the_stream() {
    const CONSUMERS: usize = 3;
    const CAPACITY: usize = 32 << 10;
    let duration = soak_duration();
    let _serial = serial();
    let name = ShmName::new("soak");
    let producer = Producer::builder()
        .capacity(CAPACITY)
        .max_message(MAX_MESSAGE)
        .create(name.as_str())
        .expect("create the segment");
    let mut stream = WorkloadSender::new(producer, 0);
    let mut rng = fresh_rng("soak");

    let segment = SegmentRef::Name(name.as_str().into());
    let incarnation = {
        let counter = std::sync::atomic::AtomicU64::new(0);
        move |rng: &mut Rng| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let wait = match rng.next_u64() % 3 {
                0 => FUTEX,
                1 => SPIN,
                _ => WaitPolicy::default(),
            };
            let spec = ChildSpec {
                role: "soak_consumer".into(),
                segment: segment.clone(),
                max_message: MAX_MESSAGE,
                wait,
            };
            ChildProcess::command(&format!("soak consumer {n}"), ENTRY, &spec)
                .param("batch", rng.next_u64() % 2 == 0)
                .param("hold_us", [0, 0, 300, 3000][(rng.next_u64() % 4) as usize])
                .spawn()
        }
    };
    let mut consumers: Vec<ChildProcess> = (0..CONSUMERS)
        .map(|_| {
            let mut c = incarnation(&mut rng);
            c.expect("attached");
            c
        })
        .collect();

    /// What the chaos thread did.
    #[derive(Debug, Default)]
    struct Chaos {
        kills: u64,
        killed_before_attaching: u64,
        killed_after_receiving: u64,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut chaos = Chaos::default();
            while !stop.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(between(&mut rng, 10, 250)));
                let i = (rng.next_u64() % CONSUMERS as u64) as usize;
                consumers[i].kill();
                chaos.kills += 1;
                if !consumers[i].reports("first").is_empty() {
                    chaos.killed_after_receiving += 1;
                }
                if rng.next_u64() % 4 == 0 {
                    // One that dies while it starts up or attaches.
                    let mut early = incarnation(&mut rng);
                    thread::sleep(Duration::from_micros(between(&mut rng, 0, 30_000)));
                    early.kill();
                    chaos.kills += 1;
                    chaos.killed_before_attaching +=
                        u64::from(early.reports("attached").is_empty());
                }
                let mut next = incarnation(&mut rng);
                next.expect("attached");
                consumers[i] = next;
            }
            (consumers, chaos)
        })
    };

    let started = Instant::now();
    while started.elapsed() < duration {
        stream.send_next();
    }
    stop.store(true, Ordering::Release);
    // Keep sending while the chaos thread finishes its round (a new consumer attaches).
    while !chaos.is_finished() {
        stream.send_next();
    }
    let (consumers, chaos) = chaos.join().expect("chaos thread");
    let (stats, sent, mut reclaims) = stream.close();
    for mut c in consumers {
        let done = c.expect("done");
        c.finish();
        let f: Vec<&str> = done.split_whitespace().collect();
        assert_eq!(
            f[1],
            sent.to_string(),
            "a consumer's run ended at {} of {sent}",
            f[1]
        );
    }
    reclaims.sort();
    println!(
        "soak: {:.0} s, {sent} messages, {chaos:?}, {} slots reclaimed; gated by a dead \
         consumer for median {} / p99 {} / max {} over {} reclaims",
        started.elapsed().as_secs_f64(),
        stats.evictions,
        ms(percentile(&reclaims, 0.5)),
        ms(percentile(&reclaims, 0.99)),
        ms(percentile(&reclaims, 1.0)),
        reclaims.len()
    );
    assert!(chaos.kills > 0, "the soak killed nobody");
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[
        case!(a_consumer_killed_while_idle_is_reclaimed_and_the_others_lose_nothing),
        case!(a_consumer_killed_asleep_in_a_futex_wait_is_reclaimed_and_the_others_lose_nothing),
        case!(a_consumer_killed_while_holding_a_message_is_reclaimed_and_the_others_lose_nothing),
        case!(a_consumer_killed_while_the_producer_waits_for_it_is_reclaimed_and_the_others_lose_nothing),
        case!(consumers_killed_while_attaching_are_reclaimed_and_the_others_lose_nothing),
        case!(a_consumer_killed_asleep_leaves_no_phantom_sleeper_that_costs_the_producer_syscalls),
        case!(a_live_consumer_that_stops_reading_is_evicted_after_evict_after_and_told_on_its_next_call),
        case!(consumers_of_a_producer_killed_while_idle_drain_everything_then_get_producer_died),
        case!(consumers_of_a_producer_killed_mid_stream_drain_everything_committed_then_get_producer_died),
        case!(a_reservation_of_a_producer_killed_before_committing_it_is_never_visible),
        case!(a_reservation_that_needed_a_padding_record_is_never_visible_when_its_producer_is_killed),
        case!(new_producer_processes_take_over_killed_ones_and_the_stream_stays_continuous),
        case!(a_producer_killed_asleep_leaves_no_phantom_sleeper_after_a_takeover),
        case!(soak_consumers_killed_and_restarted_at_random_never_disturb_the_stream),
        ],
    );
}
