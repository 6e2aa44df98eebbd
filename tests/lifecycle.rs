//! Process lifecycle: a child forked without exec, and a producer whose name was replaced by
//! a successor's. Real processes and real named segments.
//!
//! This file has its own `main` (`harness = false`): its tests fork, which is only safe in a
//! process with a single thread, and libtest runs tests on threads. The runner below takes
//! the usual arguments that matter (a name filter, `--list`, `--exact`) and prints what
//! libtest prints. Child processes are this binary re-run with `SHMCAST_LIFECYCLE_ROLE` set:
//! they run their role and exit, and never count as tests.

#[macro_use]
mod common;

use shmcast::{Consumer, Producer, RecvTimeoutError, SendError, TryRecvError};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROLE: &str = "SHMCAST_LIFECYCLE_ROLE";
const NAME: &str = "SHMCAST_LIFECYCLE_NAME";

/// A hang guard, never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A shared-memory name unique to this process and test, removed on drop.
struct ShmName(String);

impl ShmName {
    fn new(test: &str) -> ShmName {
        let name = format!("shmcast-test-{}-{test}", std::process::id());
        let _ = shmcast::force_remove(&name);
        ShmName(name)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmcast::force_remove(&self.0);
    }
}

/// Fork; run `child` in the child and `_exit` with its code (no atexit handlers, no
/// unwinding into the parent's code); return the child's exit code in the parent.
fn fork_and_wait(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: this process has a single thread (harness = false), so the child may run
    // ordinary code after fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// Issue 10, defect 7: a child forked without exec that dropped its copies of the handles
/// (what returning from `main` does) closed the parent's stream, freed the parent's
/// consumer slot and unlinked the name; its copies also worked, so it could write into the
/// parent's ring. A forked child's copies refuse every operation and do nothing when
/// dropped.
fn a_forked_child_neither_uses_nor_closes_the_parent_stream() {
    let name = ShmName::new("fork-drop");
    let mut producer = Producer::builder().capacity(4096).create(&name.0).unwrap();
    let mut consumer = Consumer::builder().open(&name.0).unwrap();
    let mut lossy = Consumer::builder().lossy().open(&name.0).unwrap();
    producer.send(b"before").unwrap();
    let code = fork_and_wait(|| {
        let mut buf = Vec::new();
        let refused = producer.send(b"from the child") == Err(SendError::Forked)
            && matches!(producer.try_reserve(8), Err(shmcast::TrySendError::Forked))
            && consumer.try_recv().err() == Some(TryRecvError::Forked)
            && lossy.try_recv_into(&mut buf) == Err(TryRecvError::Forked);
        // What returning from main would do: drop the child's copies. The child `_exit`s
        // right after, so nothing uses or drops them again.
        // SAFETY: each value is valid and dropped once in this process.
        unsafe {
            std::ptr::drop_in_place(&mut lossy);
            std::ptr::drop_in_place(&mut consumer);
            std::ptr::drop_in_place(&mut producer);
        }
        if refused {
            0
        } else {
            3
        }
    });
    assert_eq!(code, 0, "the child's copies were usable");
    assert_eq!(
        &*consumer.try_recv().expect("the parent still reads"),
        b"before"
    );
    producer.send(b"after").expect("the parent still sends");
    assert_eq!(
        &*consumer
            .recv_timeout(HANG_GUARD)
            .expect("the stream is open"),
        b"after"
    );
    let mut buf = Vec::new();
    assert_eq!(lossy.try_recv_into(&mut buf), Ok(0));
    let mut again = Consumer::builder()
        .open(&name.0)
        .expect("the name still exists");
    producer.send(b"third").unwrap();
    assert_eq!(&*again.recv_timeout(HANG_GUARD).unwrap(), b"third");
}

/// Issue 10, defect 7: a child forked without exec kept the parent's producer lock alive
/// after the parent died, so consumers never learnt that the producer was gone.
fn a_forked_child_does_not_keep_a_dead_producer_alive() {
    let name = ShmName::new("fork-dead");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "producer_that_forks")
        .env(NAME, &name.0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a report").unwrap();
    let grandchild: i32 = line
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected report {line:?}"));
    let mut consumer = Consumer::builder().open(&name.0).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let outcome = consumer.recv_timeout(HANG_GUARD).map(|m| m.seq());
    // SAFETY: plain syscalls on our grandchild.
    unsafe {
        libc::kill(grandchild, libc::SIGKILL);
    }
    assert_eq!(outcome, Err(RecvTimeoutError::ProducerDied));
}

/// Role: create a segment, fork a child that idles with every inherited descriptor, report
/// the child's pid, and wait to be killed.
fn producer_that_forks() {
    let name = std::env::var(NAME).unwrap();
    let producer = Producer::builder()
        .capacity(4096)
        .remove_on_drop(false)
        .create(&name)
        .unwrap();
    // SAFETY: this role's process has a single thread.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: waits for a signal (the test kills us).
            unsafe { libc::pause() };
        }
    }
    println!("ready {pid}");
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let _ = &producer;
    }
}

/// Issue 10, defect 8: `remove_on_drop` unlinked by name, so a producer whose name had been
/// removed and re-created by a successor deleted the successor's segment when it dropped.
fn dropping_a_replaced_producer_keeps_the_successor_s_segment() {
    let name = ShmName::new("replaced");
    let first = Producer::builder().capacity(4096).create(&name.0).unwrap();
    // Removed by force, as the old example's `--replace` did while this producer lived.
    shmcast::force_remove(&name.0).unwrap();
    let mut second = Producer::builder().capacity(4096).create(&name.0).unwrap();
    drop(first);
    let mut consumer = Consumer::builder()
        .open(&name.0)
        .expect("the successor's segment is still there");
    second.send(b"still here").unwrap();
    assert_eq!(&*consumer.recv_timeout(HANG_GUARD).unwrap(), b"still here");
}

fn main() {
    // This binary's own child role (a plain environment variable: it forks, so it does
    // not speak the ChildSpec protocol); the tests run on the shared runner.
    if let Ok(role) = std::env::var(ROLE) {
        match role.as_str() {
            "producer_that_forks" => producer_that_forks(),
            other => panic!("unknown role {other:?}"),
        }
        return;
    }
    common::harness::main(
        None,
        &[
            case!(a_forked_child_neither_uses_nor_closes_the_parent_stream),
            case!(a_forked_child_does_not_keep_a_dead_producer_alive),
            case!(dropping_a_replaced_producer_keeps_the_successor_s_segment),
        ],
    );
}
