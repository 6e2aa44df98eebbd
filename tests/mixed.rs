//! A mixed ring across processes: lossless and lossy consumers of one producer running flat
//! out, with single, batched and typed messages (issue 3).
//!
//! Each consumer is this test binary re-run in a role (`SHMCAST_MIXED_ROLE`); it reports
//! `attached`, then one result line, on stdout.

use bytemuck::{Pod, Zeroable};
use shmcast::{Consumer, Producer, RecvError};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ROLE: &str = "SHMCAST_MIXED_ROLE";
const NAME: &str = "SHMCAST_MIXED_NAME";
/// Byte messages (single and batched), then typed values.
const BYTES: u64 = 200_000;
const TYPED: u64 = 2_000;
const BATCH: usize = 7;
/// Hang guard for a child's line: never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The typed messages: 32 bytes, 8-byte aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
struct Sample {
    seq: u64,
    a: u64,
    b: u64,
    check: u64,
}

impl Sample {
    fn new(seq: u64) -> Sample {
        let (a, b) = (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15), !seq);
        Sample {
            seq,
            a,
            b,
            check: seq ^ a ^ b,
        }
    }
}

/// Length of byte message `seq` (16 bytes of header up to `max`, forcing wrap-around).
fn len_of(seq: u64, max: usize) -> usize {
    16 + (seq.wrapping_mul(2_654_435_761) % (max as u64 - 15)) as usize
}

/// Byte message `seq`: its sequence number, a checksum, then a pattern.
fn message(seq: u64, max: usize) -> Vec<u8> {
    let len = len_of(seq, max);
    let mut m: Vec<u8> = (0..len)
        .map(|i| (seq as u8).wrapping_add(i as u8))
        .collect();
    m[..8].copy_from_slice(&seq.to_le_bytes());
    let sum = m[16..]
        .iter()
        .fold(seq, |s, &b| s.rotate_left(5) ^ u64::from(b));
    m[8..16].copy_from_slice(&sum.to_le_bytes());
    m
}

fn check_message(seq: u64, got: &[u8], max: usize) {
    assert_eq!(got, &message(seq, max)[..], "byte message {seq}");
}

/// The consumer processes' entry point (returns at once in a normal test run).
#[test]
fn mixed_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).expect("segment name");
    match role.as_str() {
        "lossless" => lossless(&name),
        "lossy" => lossy(&name),
        other => panic!("unknown role {other}"),
    }
}

fn lossless(name: &str) {
    let mut c = Consumer::builder().open(name).expect("attach");
    println!("attached");
    let max = 1024;
    let mut next = 0u64;
    // Alternate single receives and batches.
    while next < BYTES {
        if next % 2 == 0 {
            let m = c.recv().expect("message");
            assert_eq!(m.seq(), next);
            check_message(next, &m, max);
            next += 1;
        } else {
            c.recv_batch(64, |seq, bytes| {
                assert_eq!(seq, next);
                if seq < BYTES {
                    check_message(seq, bytes, max);
                } else {
                    assert_eq!(
                        bytemuck::pod_read_unaligned::<Sample>(bytes),
                        Sample::new(seq)
                    );
                }
                next += 1;
            })
            .expect("batch");
        }
    }
    while next < BYTES + TYPED {
        assert_eq!(c.recv_value::<Sample>().expect("typed"), Sample::new(next));
        next += 1;
    }
    assert_eq!(c.recv().unwrap_err(), RecvError::Disconnected);
    println!("result {next} 0");
}

fn lossy(name: &str) {
    let mut c = Consumer::builder().lossy().open(name).expect("attach");
    println!("attached");
    let (max, mut buf) = (1024, Vec::new());
    let (mut delivered, mut lost, mut last) = (0u64, 0u64, None::<u64>);
    loop {
        match c.recv_into(&mut buf) {
            Ok(seq) => {
                assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
                if seq < BYTES {
                    check_message(seq, &buf, max);
                } else {
                    assert_eq!(
                        bytemuck::pod_read_unaligned::<Sample>(&buf),
                        Sample::new(seq)
                    );
                }
                last = Some(seq);
                delivered += 1;
            }
            Err(RecvError::Lagged(n)) => lost += n,
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    println!("result {delivered} {lost}");
}

/// A consumer process and the lines it prints.
struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProc {
    fn spawn(role: &str, name: &str) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "mixed_child", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(NAME, name)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a consumer process");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProc { child, lines }
    }

    /// The next line containing `prefix` (libtest may have printed on the same line), from
    /// the prefix on, within the hang guard.
    fn expect(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) if line.contains(prefix) => {
                    return line[line.find(prefix).expect("contains")..].to_string()
                }
                Ok(_) => continue,
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no '{prefix}' line from the consumer process (hang guard)");
                }
            }
        }
    }

    fn finish(mut self) -> (u64, u64) {
        let line = self.expect("result ");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "consumer process failed: {status}");
        let n: Vec<u64> = line[7..]
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        (n[0], n[1])
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_lossless_and_two_lossy_consumer_processes_share_a_ring_running_flat_out() {
    let name = format!("shmcast-test-{}-mixed", std::process::id());
    let _ = shmcast::force_remove(&name);
    let mut p = Producer::builder()
        .capacity(1 << 16)
        .max_message(1024)
        .create(&name)
        .expect("create");
    let mut children: Vec<(bool, ChildProc)> = ["lossless", "lossless", "lossy", "lossy"]
        .iter()
        .map(|role| (*role == "lossless", ChildProc::spawn(role, &name)))
        .collect();
    for (_, c) in &mut children {
        c.expect("attached");
    }
    // Byte messages, single and in batches of BATCH (wrapping inside batches too).
    let mut seq = 0;
    while seq < BYTES {
        if (seq / BATCH as u64) % 2 == 0 || seq + BATCH as u64 > BYTES {
            p.send(&message(seq, 1024)).expect("send");
            seq += 1;
        } else {
            let batch: Vec<Vec<u8>> = (seq..seq + BATCH as u64)
                .map(|s| message(s, 1024))
                .collect();
            p.send_batch(&batch).expect("batch");
            seq += BATCH as u64;
        }
    }
    // Typed values, some in place.
    while seq < BYTES + TYPED {
        if seq % 2 == 0 {
            p.send_value(&Sample::new(seq)).expect("typed");
        } else {
            let mut v = p.reserve_value::<Sample>().expect("typed reserve");
            *v = Sample::new(seq);
            v.commit();
        }
        seq += 1;
    }
    drop(p);
    for (lossless, c) in children {
        let (delivered, lost) = c.finish();
        if lossless {
            assert_eq!((delivered, lost), (BYTES + TYPED, 0));
        } else {
            eprintln!("lossy consumer process: delivered {delivered}, lost {lost}");
            assert_eq!(
                delivered + lost,
                BYTES + TYPED,
                "delivered {delivered}, lost {lost}"
            );
        }
    }
    let _ = shmcast::force_remove(&name);
}
