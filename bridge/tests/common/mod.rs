//! Helpers for the bridge tests: unique ring names and ports that clean up, a checksummed
//! variable-length workload, and bridge child processes whose output is watched.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any wait on another process or thread may take before the test gives up: a
/// hang guard, never a timing assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// A ring name unique to this process and test; the ring and the importer's state file
/// are removed on drop (also when the test fails).
#[derive(Debug)]
pub struct RingName(String);

impl RingName {
    pub fn new(test: &str) -> RingName {
        let name = format!("shmcast-bridge-test-{}-{test}", std::process::id());
        let r = RingName(name);
        r.remove();
        r
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn dev_shm(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.0)
    }

    pub fn state_file(&self) -> PathBuf {
        Path::new("/dev/shm").join(format!("{}.shmcast-bridge", self.0))
    }

    fn remove(&self) {
        let _ = shmcast::remove(&self.0);
        let _ = std::fs::remove_file(self.state_file());
    }
}

impl Drop for RingName {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A loopback TCP port nobody listens on right now (the kernel's choice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Message `i` of the workload: `[i: u64][filler derived from i][fnv64 of all before]`, 16
/// to 1,215 bytes long.
pub fn message(i: u64) -> Vec<u8> {
    let len = 16 + (mix(i) % 1200) as usize;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&i.to_le_bytes());
    let mut x = mix(i ^ 0x5555);
    while m.len() < len - 8 {
        x = mix(x);
        m.push(x as u8);
    }
    let sum = fnv64(&m);
    m.extend_from_slice(&sum.to_le_bytes());
    m
}

/// Check a received message: its checksum, and that it is exactly workload message
/// number it says it is. Returns that number.
pub fn check(bytes: &[u8]) -> u64 {
    assert!(bytes.len() >= 16, "message of {} bytes", bytes.len());
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    assert_eq!(
        fnv64(body).to_le_bytes(),
        sum,
        "checksum of a {}-byte message",
        bytes.len()
    );
    let i = u64::from_le_bytes(body[..8].try_into().unwrap());
    assert_eq!(bytes, message(i).as_slice(), "content of message {i}");
    i
}

/// A `shmcast-bridge` child process; its stdout and stderr lines are collected. Killed
/// on drop.
pub struct Bridge {
    pub child: Child,
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Bridge {
    pub fn spawn(args: &[&str]) -> Bridge {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmcast-bridge"))
            .args(args)
            .env("RUST_LOG", "warn,shmcast_bridge=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmcast-bridge");
        let (tx, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let tx = tx.clone();
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    seen.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Bridge { child, lines, seen }
    }

    /// Wait for an output line containing `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str) -> String {
        self.wait_for(needle, |line| line.contains(needle))
    }

    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line {what:?} from the bridge; its output:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }

    /// SIGKILL it and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for it to exit successfully (hang guard) and return its final counters line
    /// (`export: ...` or `import: ...`) parsed into name/value pairs, and all its output.
    pub fn finish(mut self, prefix: &str) -> (Counters, String) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "bridge failed: {status}\n{}",
                    self.output()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bridge did not exit\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let start = format!("{prefix}: ");
        let line = self.wait_for(&start, |line| line.starts_with(&start));
        (Counters::parse(&line), self.output())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name=value` counters from a bridge's final line.
#[derive(Debug)]
pub struct Counters(Vec<(String, u64)>);

impl Counters {
    fn parse(line: &str) -> Counters {
        let start = line.find(": ").map_or(0, |i| i + 2);
        Counters(
            line[start..]
                .split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no counter {name} in {self:?}"))
            .1
    }
}

/// Wait until `path` exists (hang guard).
pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + HANG_GUARD;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
