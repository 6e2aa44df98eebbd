//! Helpers shared by the integration tests: segment names and files that clean up after
//! themselves, child processes that re-run this test binary in a role (and can be killed),
//! a deterministic workload whose messages check themselves, and a view of a segment from
//! outside (white-box offsets) to observe or scribble over it as another process would.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod harness;

use shmcast::{Consumer, ConsumerBuilder, OpenError, Producer, RecvError, WaitPolicy};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
        let _ = shmcast::force_remove(&name);
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
        let _ = shmcast::force_remove(&self.0);
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
/// Prefix of the environment variables that carry a role's parameters.
const ENV_PARAM: &str = "SHMCAST_TEST_PARAM_";

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
    pub fn open(&self, builder: ConsumerBuilder) -> Result<Consumer, OpenError> {
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

/// Parameter `key` of this child's role (set by the parent with [`ChildCommand::param`]).
pub fn param<T: std::str::FromStr>(key: &str) -> T {
    let v = std::env::var(format!("{ENV_PARAM}{key}"))
        .unwrap_or_else(|_| panic!("role parameter {key} is not set"));
    v.parse()
        .unwrap_or_else(|_| panic!("role parameter {key}={v:?} does not parse"))
}

/// Block until the parent kills this process (a role that waits in some state to be
/// killed). Returns if the parent closes our stdin instead.
pub fn wait_to_be_killed() {
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
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
        ChildProcess::command(label, entry, spec).spawn()
    }

    /// As [`ChildProcess::spawn`], with role parameters or a user id to set first.
    pub fn command(label: &str, entry: &str, spec: &ChildSpec) -> ChildCommand {
        ChildCommand {
            label: label.to_string(),
            entry: entry.to_string(),
            spec: spec.clone(),
            params: Vec::new(),
        }
    }

    fn start(label: &str, entry: &str, spec: &ChildSpec, params: &[(String, String)]) -> Self {
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
        for (k, v) in params {
            cmd.env(format!("{ENV_PARAM}{k}"), v);
        }
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

    /// Wait (up to [`HANG_GUARD`]) for the child to exit, whatever its status.
    pub fn exit_status(&mut self) -> ExitStatus {
        self.stdin = None;
        self.wait_exit()
    }

    /// Send `SIGKILL` to the child now and reap it. Returns [`monotonic_ns`] just before the
    /// signal was sent. A child that is meant to be killed never exits by itself: if it had
    /// (it failed), or if it reported a `violation`, this panics with its output.
    pub fn kill(&mut self) -> u64 {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("exited before it was killed: {status}"));
        }
        let pid: libc::pid_t = self.pid().try_into().expect("pid");
        let at = monotonic_ns();
        // SAFETY: plain syscall on an unreaped child of this process (its pid cannot have
        // been reused).
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            let e = std::io::Error::last_os_error();
            self.fail(&format!("could not be killed: {e}"));
        }
        let status = self.wait_exit();
        if status.signal() != Some(libc::SIGKILL) {
            self.fail(&format!(
                "exited by itself before the SIGKILL landed: {status}"
            ));
        }
        self.stdin = None;
        let violations = self.reports("violation");
        if !violations.is_empty() {
            self.fail(&format!("reported violations: {violations:?}"));
        }
        at
    }

    /// Every value the child reported under `key`, once its stdout is closed (it exited):
    /// waits for that up to [`HANG_GUARD`].
    pub fn reports(&mut self, key: &str) -> Vec<String> {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout_log.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("kept its stdout open for {HANG_GUARD:?}"))
                }
            }
        }
        self.stdout_log
            .iter()
            .filter_map(|line| {
                let at = line.find(REPORT)?;
                let r = line[at + REPORT.len()..].trim();
                let (k, v) = r.split_once(' ').unwrap_or((r, ""));
                (k == key).then(|| v.to_string())
            })
            .collect()
    }

    /// Has the child exited (without reaping more than `try_wait` does)?
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
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
    pub fn fail(&mut self, what: &str) -> ! {
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

/// A child process to start, with parameters for its role: made by
/// [`ChildProcess::command`].
#[derive(Clone, Debug)]
pub struct ChildCommand {
    label: String,
    entry: String,
    spec: ChildSpec,
    params: Vec<(String, String)>,
}

impl ChildCommand {
    /// Parameter `key` of the role (read in the child with [`param`]).
    pub fn param(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.params.push((key.to_string(), value.to_string()));
        self
    }

    /// Start it (see [`ChildProcess::spawn`]).
    pub fn spawn(&self) -> ChildProcess {
        ChildProcess::start(&self.label, &self.entry, &self.spec, &self.params)
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
        Some(pick_length(self.rng.next_u64(), self.max))
    }
}

/// The length distribution of [`Lengths`], from one random value.
fn pick_length(r: u64, max: usize) -> usize {
    let pick = r >> 32;
    let max = max as u64;
    let len = match r % 128 {
        0 => max,
        1 => 0,
        2..=5 => pick % (max + 1),
        _ => pick % (max.min(96) + 1),
    };
    len as usize
}

/// The length of message `seq` of a stream whose maximum message is `max`: the
/// distribution of [`Lengths`], but a function of the sequence number alone, so that a
/// consumer that joins mid-stream, or a producer that takes a stream over, knows it.
pub fn length_at(seq: u64, max: usize) -> usize {
    let mut rng = Rng::new(SEED ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.next_u64();
    pick_length(rng.next_u64(), max)
}

/// How many padding records the producer writes for `lengths` in a ring of `capacity`
/// bytes, by the framing of src/layout.rs: a record is a 24-byte header plus the payload,
/// rounded up to 8 bytes; a record that does not fit before the end of the ring is preceded
/// by a padding record; a fragment too short for a header is skipped. Used to show that a
/// workload exercises the wrap-around, not to test the library.
pub fn padding_records(lengths: impl Iterator<Item = usize>, capacity: u64) -> u64 {
    let mut pos = 0u64;
    let mut pads = 0;
    for len in lengths {
        let (next, padded) = next_position(pos, len, capacity);
        pads += u64::from(padded);
        pos = next;
    }
    pads
}

/// Size of a record header in the data ring (src/layout.rs).
pub const RECORD_HEADER: u64 = 24;

/// Size of the record that carries a `len`-byte payload: header plus payload, rounded up
/// to 8 bytes.
pub fn record_size(len: usize) -> u64 {
    (len as u64 + RECORD_HEADER + 7) & !7
}

/// Where the producer's tail goes after a `len`-byte message sent at stream position
/// `pos` in a ring of `capacity` bytes, and whether it had to pad to the next lap first:
/// the framing of src/layout.rs, modelled to steer a workload (e.g. to a reservation that
/// needs a padding record), not to test the library.
pub fn next_position(pos: u64, len: usize, capacity: u64) -> (u64, bool) {
    let rec = record_size(len);
    let mut pos = pos;
    let room = capacity - pos % capacity;
    let padded = room < rec;
    if padded {
        pos += room;
    }
    pos += rec;
    let room = capacity - pos % capacity;
    if room < RECORD_HEADER {
        pos += room;
    }
    (pos, padded)
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

/// Checks, message by message, that a consumer receives one contiguous, intact run of the
/// workload stream ([`length_at`], [`write_message`]): every message carries the next
/// sequence number (in the ring and in its bytes), has its length, and a body that matches
/// its checksum. The first message received sets the start, unless one is required.
#[derive(Clone, Debug)]
pub struct RunCheck {
    max: usize,
    first: Option<u64>,
    next: Option<u64>,
    count: u64,
}

impl RunCheck {
    /// A run of a stream whose maximum message is `max`, starting wherever it starts.
    pub fn new(max: usize) -> RunCheck {
        RunCheck {
            max,
            first: None,
            next: None,
            count: 0,
        }
    }

    /// A run that must start exactly at message `first`.
    pub fn from(max: usize, first: u64) -> RunCheck {
        RunCheck {
            next: Some(first),
            ..RunCheck::new(max)
        }
    }

    /// Check the next message received: `seq` as the ring reports it, `msg` its bytes.
    pub fn check(&mut self, seq: u64, msg: &[u8]) -> Result<(), String> {
        if let Some(next) = self.next {
            if seq != next {
                return Err(format!(
                    "received message {seq} where {next} was due (after {} in order)",
                    self.count
                ));
            }
        }
        check_message(seq, length_at(seq, self.max), msg)?;
        self.first.get_or_insert(seq);
        self.next = Some(seq + 1);
        self.count += 1;
        Ok(())
    }

    /// The first message of the run, if any was received.
    pub fn first(&self) -> Option<u64> {
        self.first
    }

    /// The message due next (the start, if nothing was received and a start is required).
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// Messages received.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the host, so that a
/// child can report when something happened relative to the parent's own readings.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Is some thread of process `pid` asleep in a *shared* futex wait (`FUTEX_WAIT_BITSET`
/// without the private flag), as shmcast's waits are, or in `futex_waitv` (a consumer's
/// sleep on its data word and the producer's death notice)? Read from
/// `/proc/<pid>/task/*/syscall` (the syscall number, then its arguments: the futex word's
/// address and the operation). The process's other waits (thread join, locks, the
/// producer's `shmcast-alive` thread) use private futexes and do not count; nothing else in
/// these test processes calls `futex_waitv`.
pub fn in_shared_futex_wait(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        let Ok(line) = std::fs::read_to_string(task.path().join("syscall")) else {
            return false;
        };
        let mut fields = line.split_whitespace();
        let nr = fields.next().and_then(|f| f.parse::<libc::c_long>().ok());
        let op = fields
            .nth(1)
            .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
        /// `futex_waitv(2)`, the same number on every architecture.
        const SYS_FUTEX_WAITV: libc::c_long = 449;
        (nr == Some(libc::SYS_futex) && op == Some(libc::FUTEX_WAIT_BITSET as u64))
            || nr == Some(SYS_FUTEX_WAITV)
    })
}

// ---------------------------------------------------------------------------------------
// The segment seen from outside (white-box: offsets from the const asserts in
// src/layout.rs).

/// Segment offsets of the fields a peer can read or write.
pub mod offsets {
    /// The layout line (magic, version, sizes): line 0.
    pub const MAGIC: u64 = 0;
    /// Ring capacity in the layout line.
    pub const CAPACITY: u64 = 48;
    /// The producer line (line 1): committed tail.
    pub const TAIL: u64 = 128;
    /// Claim: an upper bound of every position the producer may have written.
    pub const CLAIM: u64 = 136;
    /// Head: the oldest record not yet being overwritten.
    pub const HEAD: u64 = 144;
    /// Sequence number of the next message.
    pub const NEXT_SEQ: u64 = 152;
    /// The data futex (line 2): consumers sleep on its word.
    pub const DATA_WORD: u64 = 256;
    /// Consumers asleep (or about to sleep) on the data futex.
    pub const DATA_SLEEPERS: u64 = 260;
    /// The space futex (line 3): the producer sleeps on its word.
    pub const SPACE_WORD: u64 = 384;
    /// The producer asleep (or about to sleep) on the space futex.
    pub const SPACE_SLEEPERS: u64 = 388;
    /// The control line (line 4): one past the highest slot ever attached.
    pub const HWM: u64 = 512;
    /// The producer's state: 0 none, 1 live, 2 closed.
    pub const STATE: u64 = 516;
    /// The consumer slot table: one 128-byte line per slot.
    pub const SLOTS: u64 = 640;
    /// Size of a slot.
    pub const SLOT_SIZE: u64 = 128;
    /// A slot's cursor (u64): everything before it was released.
    pub const SLOT_CURSOR: u64 = 0;
    /// A slot's state (u32): generation << 8 | kind (0 free, 2 lossless, 3 lossy,
    /// 4 evicted).
    pub const SLOT_STATE: u64 = 8;
    /// A slot's owner pid (u32, informational).
    pub const SLOT_PID: u64 = 12;

    /// Offset of `field` in slot `i`.
    pub const fn slot(i: u32, field: u64) -> u64 {
        SLOTS + i as u64 * SLOT_SIZE + field
    }
}

/// A read-write mapping of a segment file, read and written word by word with atomics, as
/// another process (or a hostile peer) sees it.
pub struct SegmentView {
    map: memmap2::MmapRaw,
}

impl SegmentView {
    /// Map the whole file at `path` (for a named segment: `/dev/shm/<name>`).
    pub fn open(path: &Path) -> SegmentView {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let map = memmap2::MmapRaw::map_raw(&file).expect("mmap the segment");
        SegmentView { map }
    }

    /// Map the named segment `name`.
    pub fn named(name: &str) -> SegmentView {
        SegmentView::open(&Path::new("/dev/shm").join(name))
    }

    fn at<T>(&self, offset: u64) -> *mut T {
        let size = std::mem::size_of::<T>() as u64;
        assert!(offset % size == 0, "misaligned offset {offset}");
        assert!(
            offset + size <= self.map.len() as u64,
            "offset {offset} out of the map"
        );
        // SAFETY: in bounds (checked above).
        unsafe { self.map.as_mut_ptr().add(offset as usize).cast() }
    }

    /// The `u64` at `offset` (8-aligned).
    pub fn load_u64(&self, offset: u64) -> u64 {
        // SAFETY: in bounds and aligned (checked by `at`; the mapping is page aligned);
        // other processes access these words only with atomics.
        unsafe { (*self.at::<AtomicU64>(offset)).load(Ordering::Acquire) }
    }

    /// The `u32` at `offset` (4-aligned).
    pub fn load_u32(&self, offset: u64) -> u32 {
        // SAFETY: as in `load_u64`.
        unsafe { (*self.at::<AtomicU32>(offset)).load(Ordering::Acquire) }
    }

    /// Overwrite the `u64` at `offset` (8-aligned).
    pub fn store_u64(&self, offset: u64, value: u64) {
        // SAFETY: as in `load_u64`.
        unsafe { (*self.at::<AtomicU64>(offset)).store(value, Ordering::Release) }
    }

    /// Overwrite the `u32` at `offset` (4-aligned).
    pub fn store_u32(&self, offset: u64, value: u32) {
        // SAFETY: as in `load_u64`.
        unsafe { (*self.at::<AtomicU32>(offset)).store(value, Ordering::Release) }
    }

    /// The mapped length (the file size when it was mapped).
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The slot whose owner pid is `pid`, among the first `max_consumers`.
    pub fn slot_of(&self, pid: u32, max_consumers: u32) -> Option<u32> {
        (0..max_consumers).find(|&i| self.load_u32(offsets::slot(i, offsets::SLOT_PID)) == pid)
    }
}

/// Receive until `Disconnected`, checking every message with `run`. Any other error, or a
/// message that fails the check, ends it with a description.
pub fn receive_until_disconnected(
    consumer: &mut Consumer,
    run: &mut RunCheck,
) -> Result<(), String> {
    loop {
        let received = consumer.recv().map(|msg| run.check(msg.seq(), &msg));
        match received {
            Ok(checked) => checked?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(format!("after {} messages: {e}", run.count())),
        }
    }
}

/// A producer of the workload stream ([`length_at`], [`write_message`]): sends message
/// after message, each bounded by the hang guard (a producer that cannot go on fails the
/// test instead of hanging it), and times every send that reclaimed or evicted a consumer
/// slot: how long the producer stayed gated by a dead (or evicted) consumer.
pub struct WorkloadSender {
    producer: Producer,
    max: usize,
    next: u64,
    buf: Vec<u8>,
    reclaims: Vec<Duration>,
}

impl WorkloadSender {
    /// Send with `producer`, starting at message `next`.
    pub fn new(producer: Producer, next: u64) -> WorkloadSender {
        WorkloadSender {
            max: producer.max_message(),
            producer,
            next,
            buf: Vec::new(),
            reclaims: Vec::new(),
        }
    }

    /// Send the next message; returns whether this send reclaimed (or evicted) a slot.
    pub fn send_next(&mut self) -> bool {
        let seq = self.next;
        let len = length_at(seq, self.max);
        self.buf.resize(len, 0);
        write_message(seq, &mut self.buf);
        let before = self.producer.stats().evictions;
        let start = Instant::now();
        if let Err(e) = self.producer.send_timeout(&self.buf, HANG_GUARD) {
            panic!("the producer is stuck at message {seq}: {e}");
        }
        let reclaimed = self.producer.stats().evictions > before;
        if reclaimed {
            self.reclaims.push(start.elapsed());
        }
        self.next += 1;
        reclaimed
    }

    /// Send the next `n` messages.
    pub fn send(&mut self, n: u64) {
        for _ in 0..n {
            self.send_next();
        }
    }

    /// The message sent next.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The producer's counters.
    pub fn stats(&self) -> shmcast::ProducerStats {
        self.producer.stats()
    }

    /// Close the stream (drop the producer). Returns its counters, the number of the first
    /// message not sent, and the duration of every send that reclaimed a slot.
    pub fn close(self) -> (shmcast::ProducerStats, u64, Vec<Duration>) {
        let stats = self.producer.stats();
        drop(self.producer);
        (stats, self.next, self.reclaims)
    }
}
