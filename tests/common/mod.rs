//! Helpers shared by the integration tests: segment names and files that clean up after
//! themselves, child processes that re-run this test binary in a role, and a deterministic
//! workload whose messages check themselves.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use shmcast::{Consumer, ConsumerBuilder, OpenError, WaitPolicy};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait on another process may take before the test gives up: a hang
/// guard, never a timing assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Segments that clean up after themselves.

/// A shared-memory name unique to this process and test, removed on drop (also when the
/// test fails).
#[derive(Debug)]
pub struct ShmName(String);

impl ShmName {
    /// `shmcast-test-<pid>-<test>`.
    pub fn new(test: &str) -> ShmName {
        let name = format!("shmcast-test-{}-{test}", std::process::id());
        // A leftover from a crashed earlier run with a recycled pid.
        let _ = shmcast::remove(&name);
        ShmName(name)
    }

    /// The name as given to shmcast.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where Linux keeps the object (`shm_open` names live in `/dev/shm`).
    pub fn dev_shm_path(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.0)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmcast::remove(&self.0);
    }
}

/// A file path unique to this process and test, in the temporary directory, removed on
/// drop.
#[derive(Debug)]
pub struct TempPath(PathBuf);

impl TempPath {
    /// `<tmp>/shmcast-test-<pid>-<test>`.
    pub fn new(test: &str) -> TempPath {
        let path = std::env::temp_dir().join(format!("shmcast-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Child processes: the test binary re-run with `--exact <entry>` in a role.

const ENV_ROLE: &str = "SHMCAST_TEST_ROLE";
const ENV_SEGMENT: &str = "SHMCAST_TEST_SEGMENT";
const ENV_MAX: &str = "SHMCAST_TEST_MAX_MESSAGE";
const ENV_WAIT: &str = "SHMCAST_TEST_WAIT";

/// Marks the lines a child reports to its parent (libtest writes to stdout too).
const REPORT: &str = "shmcast-child:";

/// How a child finds the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentRef {
    /// A named POSIX shared-memory object.
    Name(String),
    /// A file.
    Path(PathBuf),
    /// A descriptor inherited from the parent (an anonymous memfd).
    Fd(RawFd),
}

impl SegmentRef {
    fn encode(&self) -> String {
        match self {
            SegmentRef::Name(n) => format!("name:{n}"),
            SegmentRef::Path(p) => format!("path:{}", p.display()),
            SegmentRef::Fd(fd) => format!("fd:{fd}"),
        }
    }

    fn decode(s: &str) -> SegmentRef {
        match s.split_once(':') {
            Some(("name", n)) => SegmentRef::Name(n.to_string()),
            Some(("path", p)) => SegmentRef::Path(PathBuf::from(p)),
            Some(("fd", fd)) => SegmentRef::Fd(fd.parse().expect("fd number")),
            _ => panic!("bad segment reference {s:?}"),
        }
    }

    /// Attach a consumer. An inherited descriptor is closed once the consumer has opened
    /// its own description of the segment, so this process holds no extra reference to
    /// the parent's.
    pub fn open(&self, builder: &ConsumerBuilder) -> Result<Consumer, OpenError> {
        match self {
            SegmentRef::Name(n) => builder.open(n),
            SegmentRef::Path(p) => builder.open_path(p),
            SegmentRef::Fd(fd) => {
                // SAFETY: F_GETFD on any number is harmless; it fails on a closed one.
                let open = unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0;
                assert!(open, "descriptor {fd} was not inherited");
                // SAFETY: the parent passed this descriptor to this process for it alone;
                // nothing else here uses the number.
                let owned = unsafe { OwnedFd::from_raw_fd(*fd) };
                builder.open_fd(std::os::fd::AsFd::as_fd(&owned))
            }
        }
    }
}

/// Encode a wait policy for the environment.
fn encode_wait(policy: WaitPolicy) -> String {
    match policy {
        WaitPolicy::BusySpin => "busy".into(),
        WaitPolicy::SpinYield { spins } => format!("yield:{spins}"),
        WaitPolicy::Adaptive { spins, yields } => format!("adaptive:{spins}:{yields}"),
    }
}

fn decode_wait(s: &str) -> WaitPolicy {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        ["busy"] => WaitPolicy::BusySpin,
        ["yield", spins] => WaitPolicy::SpinYield {
            spins: spins.parse().expect("spins"),
        },
        ["adaptive", spins, yields] => WaitPolicy::Adaptive {
            spins: spins.parse().expect("spins"),
            yields: yields.parse().expect("yields"),
        },
        _ => panic!("bad wait policy {s:?}"),
    }
}

/// What a child process is asked to do.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Selects the behaviour in the child entry point.
    pub role: String,
    /// The segment to attach to.
    pub segment: SegmentRef,
    /// The segment's maximum message size (the workload's lengths depend on it).
    pub max_message: usize,
    /// The consumer's wait policy.
    pub wait: WaitPolicy,
}

impl ChildSpec {
    /// The spec this process was started with, or `None` in the parent test run (the
    /// child entry point then returns at once).
    pub fn from_env() -> Option<ChildSpec> {
        let role = std::env::var(ENV_ROLE).ok()?;
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
        Some(ChildSpec {
            role,
            segment: SegmentRef::decode(&var(ENV_SEGMENT)),
            max_message: var(ENV_MAX).parse().expect("max message"),
            wait: decode_wait(&var(ENV_WAIT)),
        })
    }

    /// Attach a consumer to the segment with the spec's wait policy.
    pub fn open(&self) -> Consumer {
        self.segment
            .open(Consumer::builder().wait_policy(self.wait))
            .unwrap_or_else(|e| panic!("child could not attach: {e}"))
    }
}

/// A line for the parent: `shmcast-child: <key> <value>`.
pub fn report(key: &str, value: impl std::fmt::Display) {
    // A leading newline: libtest may have left "test <name> ... " on the current line.
    println!("\n{REPORT} {key} {value}");
}

/// Block until the parent writes a line on our stdin.
pub fn await_parent_line() -> String {
    let mut line = String::new();
    let n = std::io::stdin()
        .read_line(&mut line)
        .expect("read the parent's line");
    assert!(n > 0, "the parent closed our stdin without a word");
    line.trim().to_string()
}

/// A child process running this test binary's `entry` test in a role, with its stdout
/// lines and stderr collected. Killed on drop if it is still running (a failed test never
/// leaves processes behind).
pub struct ChildProcess {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout_log: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl ChildProcess {
    /// Start `current_exe --exact <entry> --nocapture --test-threads=1` with `spec` in the
    /// environment. If `spec.segment` is an inherited descriptor, only this child inherits
    /// it: the descriptor stays close-on-exec in the parent (so concurrently spawned
    /// children of other tests do not get it), and the flag is cleared in the forked child
    /// just before `exec`.
    pub fn spawn(label: &str, entry: &str, spec: &ChildSpec) -> ChildProcess {
        let exe = std::env::current_exe().expect("path of the test binary");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
            .env(ENV_ROLE, &spec.role)
            .env(ENV_SEGMENT, spec.segment.encode())
            .env(ENV_MAX, spec.max_message.to_string())
            .env(ENV_WAIT, encode_wait(spec.wait))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let SegmentRef::Fd(fd) = spec.segment {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and only calls
            // fcntl, which is async-signal-safe; it allocates nothing and takes no lock.
            unsafe {
                cmd.pre_exec(move || {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        ChildProcess {
            label: label.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stdout_log: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Wait (up to [`HANG_GUARD`]) for the child to report `key`; returns the value.
    pub fn expect(&mut self, key: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let report = line
                        .find(REPORT)
                        .map(|at| line[at + REPORT.len()..].trim().to_string());
                    self.stdout_log.push(line);
                    if let Some(r) = report {
                        let (k, v) = r.split_once(' ').unwrap_or((&r, ""));
                        if k == key {
                            return v.to_string();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("did not report '{key}' within {HANG_GUARD:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("exited without reporting '{key}'"))
                }
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Write a line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        if let Err(e) = writeln!(stdin, "{line}") {
            self.fail(&format!("could not write to its stdin: {e}"));
        }
    }

    /// Wait (up to [`HANG_GUARD`]) for the child to exit and require success.
    pub fn finish(mut self) {
        self.stdin = None;
        let status = self.wait_exit();
        if !status.success() {
            self.fail(&format!("failed: {status}"));
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => self.fail(&format!("still running after {HANG_GUARD:?}")),
                Err(e) => self.fail(&format!("wait failed: {e}")),
            }
        }
    }

    /// Kill the child (if it runs), then panic with everything it printed.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.stdout_log.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        panic!(
            "child '{}' {what}\n--- its stdout:\n{}\n--- its stderr:\n{stderr}",
            self.label,
            self.stdout_log.join("\n"),
        );
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills child processes that are still running after [`HANG_GUARD`], so that a parent
/// blocked on them (a `send` gated by a consumer that stopped making progress) is released
/// and the test fails instead of hanging. Disarm it before reaping the children: until
/// then their pids cannot be reused.
pub struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<bool>>,
}

impl Watchdog {
    /// Start watching `children`.
    pub fn arm(children: &[ChildProcess]) -> Watchdog {
        let pids: Vec<libc::pid_t> = children
            .iter()
            .map(|c| c.pid().try_into().expect("pid"))
            .collect();
        let (cancel, cancelled) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match cancelled.recv_timeout(HANG_GUARD) {
            Err(RecvTimeoutError::Timeout) => {
                for pid in pids {
                    // SAFETY: plain syscall; the pid is an unreaped child of this process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                true
            }
            _ => false,
        });
        Watchdog {
            cancel: Some(cancel),
            thread: Some(thread),
        }
    }

    /// Stop watching; panics if the watchdog had to kill the children.
    pub fn disarm(mut self) {
        assert!(
            !self.stop(),
            "the children were killed after {HANG_GUARD:?}: the producer never finished"
        );
    }

    fn stop(&mut self) -> bool {
        drop(self.cancel.take());
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A close-on-exec duplicate of `fd`, to hand to children with [`SegmentRef::Fd`].
pub fn dup_cloexec(fd: BorrowedFd<'_>) -> OwnedFd {
    // SAFETY: `fd` is open for the duration of the call; F_DUPFD_CLOEXEC returns a new
    // descriptor that we own.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(raw >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: freshly created, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

// ---------------------------------------------------------------------------------------
// Watching the producer's sleep from outside (white-box: the segment header layout).

/// Offset of the sleeper count of the `space` futex, on which a producer sleeps while the
/// ring is full: `Header::space` is the fourth 128-byte line (`offset_of!(Header, space) ==
/// 3 * LINE` in src/layout.rs), and `FutexLine` is `#[repr(C)] { word: u32, sleepers: u32 }`.
const SPACE_SLEEPERS_OFFSET: usize = 3 * 128 + 4;

/// A read-only view of a named segment's header, to see when its producer is asleep
/// waiting for space: an observation of the protocol, so a test needs no sleep to know that
/// a `send` is blocked.
pub struct SpaceSleepers {
    map: memmap2::Mmap,
}

impl SpaceSleepers {
    /// Map the header of the segment `name`.
    pub fn map(name: &str) -> SpaceSleepers {
        let file = std::fs::File::open(Path::new("/dev/shm").join(name)).expect("open segment");
        // SAFETY: the mapping is only read through an atomic below; nobody truncates the
        // segment while the test runs.
        let map = unsafe { memmap2::MmapOptions::new().len(4096).map(&file) }.expect("mmap");
        SpaceSleepers { map }
    }

    /// Is a producer sleeping (or about to sleep) on the space futex?
    pub fn producer_waiting(&self) -> bool {
        let p = self.map[SPACE_SLEEPERS_OFFSET..]
            .as_ptr()
            .cast::<AtomicU32>();
        // SAFETY: in bounds, 4-byte aligned (page-aligned mapping, offset a multiple of 4);
        // another process writes this word only with atomics, and an atomic load of a
        // 4-byte word from a read-only mapping is allowed.
        unsafe { (*p).load(Ordering::Acquire) != 0 }
    }
}

// ---------------------------------------------------------------------------------------
// The workload: deterministic lengths, self-checking payloads.

/// Seed of the message lengths (shared by producer and consumers).
pub const SEED: u64 = 0x5eed_cafe_f00d_0001;

/// A deterministic xorshift64* generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Message lengths from 0 to `max` inclusive. Mostly short (so a million messages stay
/// cheap), with one in 32 uniform over the whole range and one in 128 exactly the maximum
/// or exactly 0, so records regularly fail to fit before the end of the ring and the
/// producer has to pad to the next lap.
#[derive(Clone, Debug)]
pub struct Lengths {
    rng: Rng,
    max: usize,
}

impl Lengths {
    /// The lengths for a segment whose maximum message is `max`.
    pub fn new(max: usize) -> Lengths {
        Lengths {
            rng: Rng::new(SEED),
            max,
        }
    }
}

impl Iterator for Lengths {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let r = self.rng.next_u64();
        let pick = r >> 32;
        let max = self.max as u64;
        let len = match r % 128 {
            0 => max,
            1 => 0,
            2..=5 => pick % (max + 1),
            _ => pick % (max.min(96) + 1),
        };
        Some(len as usize)
    }
}

/// How many padding records the producer writes for `lengths` in a ring of `capacity`
/// bytes, by the framing of src/layout.rs: a record is a 24-byte header plus the payload,
/// rounded up to 8 bytes; a record that does not fit before the end of the ring is preceded
/// by a padding record; a fragment too short for a header is skipped. Used to show that a
/// workload exercises the wrap-around, not to test the library.
pub fn padding_records(lengths: impl Iterator<Item = usize>, capacity: u64) -> u64 {
    const HDR: u64 = 24;
    let mut pos = 0u64;
    let mut pads = 0;
    for len in lengths {
        let rec = (len as u64 + HDR + 7) & !7;
        let room = capacity - pos % capacity;
        if room < rec {
            pads += 1;
            pos += room;
        }
        pos += rec;
        let room = capacity - pos % capacity;
        if room < HDR {
            pos += room;
        }
    }
    pads
}

fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

/// The checksum of a body of message `seq` (position-sensitive, so a shifted, stale or
/// torn body does not match).
pub fn checksum(seq: u64, body: &[u8]) -> u64 {
    let mut h = mix(0x1234_5678_9abc_def0, seq);
    h = mix(h, body.len() as u64);
    let mut chunks = body.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(mix(h, u64::from_le_bytes(tail)), 0xff)
}

/// Fill `buf` with message `seq`: its sequence number (8 bytes, little endian), the
/// checksum of the body (8 bytes), then a pseudo-random body. A message shorter than 16
/// bytes holds a prefix of the sequence number and checksum. Returns the checksum.
pub fn write_message(seq: u64, buf: &mut [u8]) -> u64 {
    let split = buf.len().min(16);
    let (head, body) = buf.split_at_mut(split);
    let mut rng = Rng::new(seq ^ 0xb0d7);
    let mut chunks = body.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = rng.next_u64().to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
    let sum = checksum(seq, body);
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8..].copy_from_slice(&sum.to_le_bytes());
    head.copy_from_slice(&h[..split]);
    sum
}

/// Message `seq` as a vector of `len` bytes.
pub fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    write_message(seq, &mut v);
    v
}

/// Check that `msg` is message `seq` of length `len`: the embedded sequence number, and the
/// embedded checksum against the body. Returns the checksum.
pub fn check_message(seq: u64, len: usize, msg: &[u8]) -> Result<u64, String> {
    if msg.len() != len {
        return Err(format!(
            "message {seq}: length {} instead of {len}",
            msg.len()
        ));
    }
    let split = len.min(16);
    let (head, body) = msg.split_at(split);
    let sum = checksum(seq, body);
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8..].copy_from_slice(&sum.to_le_bytes());
    let at_seq = split.min(8);
    if head[..at_seq] != h[..at_seq] {
        let mut found = [0u8; 8];
        found[..at_seq].copy_from_slice(&head[..at_seq]);
        return Err(format!(
            "message {seq}: carries sequence number {} instead",
            u64::from_le_bytes(found)
        ));
    }
    if head[at_seq..] != h[at_seq..split] {
        return Err(format!(
            "message {seq} of {len} bytes: the body does not match its checksum \
             (torn, stale or overwritten)"
        ));
    }
    Ok(sum)
}

/// An order-sensitive digest of a stream of messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest(pub u64);

impl Digest {
    /// Fold in message `seq` of `len` bytes with checksum `sum`.
    pub fn add(&mut self, seq: u64, len: usize, sum: u64) {
        self.0 = mix(mix(mix(self.0, seq), len as u64), sum);
    }
}
