//! Operating a ring as a service (issue 13): restarts without guesswork, inspection of who
//! gates the producer and who is dead, removal that refuses a live producer. Real
//! processes, real named segments.

#[macro_use]
mod common;

use common::{report, wait_to_be_killed, ChildProcess, ChildSpec, SegmentRef, ShmName};
use shmcast::{
    Consumer, OpenError, Producer, ProducerState, RemoveError, SegmentError, SlotKind,
    TrySendError, WaitPolicy,
};
use std::sync::Mutex;
use std::time::Duration;

/// The test that children run.
const ENTRY: &str = "child_process";

/// The tests here spin up processes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Entry point of every child process (the test binary re-run in a role).
fn child_process(spec: &ChildSpec) {
    match spec.role.as_str() {
        // Attach, read nothing, wait to be killed (a consumer that stopped reading).
        "stalled_consumer" => {
            let _consumer = spec.open();
            report("attached", std::process::id());
            wait_to_be_killed();
        }
        // Take the segment over (or create it) as a producer, send one message, and wait
        // to be killed without closing.
        "producer" => {
            let SegmentRef::Name(name) = &spec.segment else {
                panic!("named segments only")
            };
            let mut p = Producer::builder()
                .capacity(4096)
                .remove_on_drop(false)
                .open_or_create(name)
                .expect("open or create");
            p.send(b"from the child").unwrap();
            report("producing", std::process::id());
            wait_to_be_killed();
        }
        other => panic!("unknown child role {other:?}"),
    }
}

fn spec(role: &str, name: &ShmName) -> ChildSpec {
    ChildSpec {
        role: role.into(),
        segment: SegmentRef::Name(name.as_str().into()),
        max_message: 1000,
        wait: WaitPolicy::BusySpin,
    }
}

/// A consumer that stopped reading shows as alive and gating the producer; once killed,
/// as dead, and the producer reclaims its slot.
fn inspection_shows_the_consumer_that_gates_and_the_one_that_died() {
    let _one = serial();
    let name = ShmName::new("inspect-gate");
    let mut p = Producer::builder()
        .capacity(4096)
        .create(name.as_str())
        .unwrap();
    let mut reader = Consumer::builder().open(name.as_str()).unwrap();
    let mut child = ChildProcess::spawn("stalled", ENTRY, &spec("stalled_consumer", &name));
    let pid: u32 = child.expect("attached").parse().unwrap();
    let mut sent = 0u64;
    while p.try_send(&[7; 100]).is_ok() {
        sent += 1;
        // The reader keeps up: only the stalled child gates.
        drop(reader.try_recv().unwrap());
    }
    let s = shmcast::inspect(name.as_str()).unwrap();
    assert_eq!(s.producer.state, ProducerState::Live);
    assert_eq!(s.producer.next_seq, sent);
    assert_eq!(s.consumers.len(), 2, "{s:#?}");
    let stalled = s.consumers.iter().find(|c| c.pid == pid).expect("its slot");
    assert!(stalled.alive && stalled.gating, "{stalled:?}");
    assert_eq!(stalled.kind, SlotKind::Lossless);
    assert_eq!(stalled.lag_messages, Some(sent));
    let other = s.consumers.iter().find(|c| c.pid != pid).unwrap();
    assert!(other.alive && !other.gating, "{other:?}");
    assert_eq!(p.consumers(), 2);

    child.kill();
    let s = shmcast::inspect(name.as_str()).unwrap();
    let dead = s.consumers.iter().find(|c| c.pid == pid).expect("its slot");
    assert!(!dead.alive, "{dead:?}");
    // The producer reclaims the dead consumer's slot when it needs the space.
    p.send(&[8; 100]).unwrap();
    let s = p.snapshot();
    let dead = s.consumers.iter().find(|c| c.pid == pid).expect("its slot");
    assert_eq!(dead.kind, SlotKind::Evicted);
    assert_eq!(p.consumers(), 1);
}

/// `open_or_create` never makes a second producer: while the first lives it is refused,
/// and once it died the segment is taken over and the stream goes on; `remove` refuses a
/// live producer's segment too.
fn a_restart_takes_a_dead_producer_s_segment_over_and_never_splits_the_stream() {
    let _one = serial();
    let name = ShmName::new("restart");
    let mut child = ChildProcess::spawn("producer", ENTRY, &spec("producer", &name));
    child.expect("producing");
    let mut c = Consumer::builder()
        .start_at(shmcast::StartAt::Oldest)
        .open(name.as_str())
        .unwrap();
    let builder = Producer::builder().remove_on_drop(false);
    assert!(matches!(
        builder.open_or_create(name.as_str()),
        Err(OpenError::ProducerAlive)
    ));
    assert!(matches!(
        shmcast::remove(name.as_str()),
        Err(RemoveError::ProducerAlive { .. })
    ));
    child.kill();
    assert_eq!(
        shmcast::inspect(name.as_str()).unwrap().producer.state,
        ProducerState::Died
    );
    let mut p = builder.open_or_create(name.as_str()).unwrap();
    assert!(p.took_over());
    assert_eq!(p.next_seq(), 1);
    p.send(b"after the restart").unwrap();
    let first = c.recv_timeout(common::HANG_GUARD).unwrap();
    assert_eq!((first.seq(), &*first), (0, &b"from the child"[..]));
    drop(first);
    let second = c.recv_timeout(common::HANG_GUARD).unwrap();
    assert_eq!((second.seq(), &*second), (1, &b"after the restart"[..]));
}

/// Taking a segment over checks the options set explicitly against it: a segment's
/// geometry cannot change, and it is not silently ignored either.
fn a_takeover_refuses_explicit_options_the_segment_does_not_have() {
    let _one = serial();
    let name = ShmName::new("mismatch");
    drop(
        Producer::builder()
            .capacity(1 << 16)
            .remove_on_drop(false)
            .create(name.as_str())
            .unwrap(),
    );
    match Producer::builder()
        .capacity(1 << 20)
        .open_or_create(name.as_str())
    {
        Err(OpenError::OptionMismatch {
            option,
            requested,
            found,
        }) => assert_eq!((option, requested, found), ("capacity", 1 << 20, 1 << 16)),
        other => panic!("{other:?}"),
    }
    let p = Producer::builder()
        .capacity(1 << 16)
        .max_consumers(16)
        .open_or_create(name.as_str())
        .expect("matching options");
    assert_eq!(p.capacity(), 1 << 16);
}

/// Inspection and removal of objects that are not segments give errors and remove
/// nothing; `force_remove` removes them.
fn inspecting_or_removing_a_foreign_object_is_an_error() {
    let _one = serial();
    let name = ShmName::new("foreign");
    std::fs::write(name.dev_shm_path(), vec![0x5a; 8192]).unwrap();
    assert!(matches!(
        shmcast::inspect(name.as_str()),
        Err(OpenError::Segment(SegmentError::BadMagic { .. }))
    ));
    assert!(matches!(
        shmcast::remove(name.as_str()),
        Err(RemoveError::Segment { .. })
    ));
    assert!(name.dev_shm_path().exists());
    shmcast::force_remove(name.as_str()).unwrap();
    assert!(!name.dev_shm_path().exists());
    assert!(matches!(
        shmcast::inspect("bad/name"),
        Err(OpenError::InvalidName { .. })
    ));
    assert!(matches!(
        shmcast::inspect(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
}

/// A lossy consumer's lag shows in the snapshot and on the handle; a lapped one reports
/// no message count (it learns the loss when it next receives).
fn lag_is_reported_for_lossless_and_lossy_consumers() {
    let mut p = Producer::builder()
        .capacity(256)
        .create_in_process()
        .unwrap();
    let lossless = Consumer::builder().attach_to(&p).unwrap();
    let lossy = Consumer::builder().lossy().attach_to(&p).unwrap();
    for _ in 0..3 {
        p.send(&[1; 16]).unwrap();
    }
    assert_eq!(lossless.lag().messages, Some(3));
    assert_eq!(lossless.lag().bytes, 120);
    assert_eq!(lossy.lag().messages, Some(3));
    drop(lossless);
    for _ in 0..20 {
        p.send(&[1; 16]).unwrap();
    }
    assert_eq!(p.try_send(&[0; 16]), Ok(()));
    assert_eq!(lossy.lag().messages, None, "lapped");
    let s = p.snapshot();
    assert_eq!(s.consumers.len(), 1);
    assert_eq!(s.consumers[0].kind, SlotKind::Lossy);
    let _ = TrySendError::Full;
    let _ = Duration::ZERO;
}

/// A FIFO under a segment's name made inspection and removal hang for ever (opening a FIFO
/// for reading waits for a writer); any local user can make one in /dev/shm. Every open is
/// non-blocking and refuses what is not a regular file. (Found by the `shmcast` tool's
/// tests.)
fn a_fifo_under_the_name_is_refused_at_once() {
    let _one = serial();
    let name = ShmName::new("fifo");
    let path = std::ffi::CString::new(name.dev_shm_path().to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let n = name.as_str().to_string();
    std::thread::spawn(move || {
        let inspected = shmcast::inspect(&n).map(|_| ());
        let removed = shmcast::remove(&n);
        let opened = Consumer::builder().open(&n).map(|_| ());
        let _ = tx.send((inspected, removed, opened));
    });
    let (inspected, removed, opened) = rx
        .recv_timeout(common::HANG_GUARD)
        .expect("inspecting a FIFO hung");
    assert!(
        matches!(inspected, Err(OpenError::Segment(SegmentError::NotAFile))),
        "{inspected:?}"
    );
    assert!(
        matches!(
            removed,
            Err(RemoveError::Segment {
                error: SegmentError::NotAFile,
                ..
            })
        ),
        "{removed:?}"
    );
    assert!(
        matches!(opened, Err(OpenError::Segment(SegmentError::NotAFile))),
        "{opened:?}"
    );
    assert!(!SegmentError::NotAFile.has_shmcast_magic());
}

fn main() {
    common::harness::main(
        Some(child_process),
        &[
            case!(inspection_shows_the_consumer_that_gates_and_the_one_that_died),
            case!(a_restart_takes_a_dead_producer_s_segment_over_and_never_splits_the_stream),
            case!(a_takeover_refuses_explicit_options_the_segment_does_not_have),
            case!(inspecting_or_removing_a_foreign_object_is_an_error),
            case!(lag_is_reported_for_lossless_and_lossy_consumers),
            case!(a_fifo_under_the_name_is_refused_at_once),
        ],
    );
}
