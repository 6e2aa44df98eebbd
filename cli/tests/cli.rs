//! The `shmcast` tool against real rings in real processes: a producer in this process,
//! consumers in child processes that are stopped (`SIGSTOP`) and killed (`SIGKILL`), the
//! tool run as its built binary; hostile objects written into /dev/shm.
//!
//! This file has its own `main` (`harness = false`): child processes are this binary re-run
//! with `SHMCAST_CLI_TEST_ROLE` set (a lossless reader, an idle producer); they run their
//! role and exit, and never count as tests. The runner takes a name filter, `--exact` and
//! `--list`, and prints what libtest prints. Tests run one after another: they stop and
//! kill processes and scan /dev/shm.
//!
//! No timing assertions: waits are for conditions, with a hang guard.

use serde_json::Value;
use shmcast::{Consumer, Producer, TrySendError};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROLE: &str = "SHMCAST_CLI_TEST_ROLE";
const NAME: &str = "SHMCAST_CLI_TEST_NAME";

/// A hang guard, never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

const BIN: &str = env!("CARGO_BIN_EXE_shmcast");

// ---------------------------------------------------------------------------------------
// Helpers

/// A shared-memory name unique to this process and test, removed on drop.
struct ShmName(String);

impl ShmName {
    fn new(test: &str) -> ShmName {
        let name = format!("shmcast-cli-test-{}-{test}", std::process::id());
        let _ = shmcast::force_remove(&name);
        ShmName(name)
    }

    fn path(&self) -> String {
        format!("/dev/shm/{}", self.0)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmcast::force_remove(&self.0);
        // A directory made by a test (force_remove unlinks files only).
        let _ = std::fs::remove_dir(self.path());
    }
}

/// What a run of the tool gave.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }

    /// Exited 0 with nothing on stderr.
    fn ok(self) -> Run {
        assert_eq!(self.code(), Some(0), "stderr: {}", self.stderr);
        self
    }

    /// Exited 1 with one `shmcast: ` error that says `what`, and no panic.
    fn error(self, what: &str) -> Run {
        assert_eq!(
            self.code(),
            Some(1),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.starts_with("shmcast: "),
            "stderr: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(what),
            "stderr does not say {what:?}: {}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
}

/// Wait for `child` to exit, killing it (and failing) after the hang guard.
fn wait_guarded(child: &mut Child, what: &str) -> ExitStatus {
    let end = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Read all of a pipe on a thread (so a child never blocks on a full pipe).
fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// Run the tool to completion.
fn shmcast(args: &[&str]) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmcast");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let status = wait_guarded(&mut child, &format!("shmcast {args:?}"));
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A child process, killed and reaped on drop; its stdout read line by line on a thread.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    reaped: Option<ExitStatus>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a child");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(collect(child.stderr.take().unwrap()));
        Proc {
            child,
            lines,
            stderr,
            reaped: None,
        }
    }

    /// The tool, running.
    fn shmcast(args: &[&str]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        // As from an interactive shell: SIGINT and SIGTERM at their default action. A test
        // run started in the background of a script inherits them ignored, and `shmcast`
        // rightly keeps ignoring a signal it was started with ignored (a hang in CI when
        // `.ci/run` ran in the background).
        // SAFETY: only `signal`, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        Proc::spawn(cmd)
    }

    /// This test binary in a role, once it said "ready".
    fn role(role: &str, name: &ShmName) -> Proc {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role).env(NAME, &name.0);
        let mut p = Proc::spawn(cmd);
        assert_eq!(p.line(), "ready", "role {role}");
        p
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of its output.
    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(HANG_GUARD)
            .unwrap_or_else(|_| panic!("no line from child {} (hung or exited)", self.pid()))
    }

    /// Every remaining line, once it exited.
    fn rest(&mut self) -> Vec<String> {
        assert!(self.reaped.is_some(), "read the rest after the exit");
        self.lines.iter().collect()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain syscall; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0, "kill");
    }

    fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.reaped {
            return s;
        }
        let s = wait_guarded(&mut self.child, "a child process");
        self.reaped = Some(s);
        s
    }

    fn stderr(&mut self) -> String {
        self.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait until `cond` holds (a condition, not a duration), failing after the hang guard.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + HANG_GUARD;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until process `pid` holds a live slot of segment `name`.
fn wait_attached(name: &ShmName, pid: u32) {
    wait_until("the process attached", || {
        shmcast::inspect(&name.0)
            .map(|s| s.consumers.iter().any(|c| c.pid == pid && c.alive))
            .unwrap_or(false)
    });
}

/// Wait until process `pid`, a consumer starting at the next message, has registered its
/// start: its slot's cursor is the producer's tail. (A slot is marked alive before its start
/// position is chosen; a message sent in between would be skipped.) The caller makes sure
/// no stale cursor in the slot table equals the tail: something was sent since the last
/// consumer left.
fn wait_registered(name: &ShmName, pid: u32) {
    wait_until("the process registered its start", || {
        shmcast::inspect(&name.0)
            .map(|s| {
                s.consumers
                    .iter()
                    .any(|c| c.pid == pid && c.alive && c.cursor == s.producer.tail)
            })
            .unwrap_or(false)
    });
}

/// The slot of `pid` in a `stat --json` document.
fn slot_of(doc: &Value, pid: u32) -> Value {
    doc["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pid"] == pid)
        .unwrap_or_else(|| panic!("no slot of pid {pid} in {doc:#}"))
        .clone()
}

/// The bytes of a closed segment (4 KiB ring) that carried one message.
fn valid_segment_bytes(test: &str) -> Vec<u8> {
    let name = ShmName::new(&format!("{test}-template"));
    let mut p = Producer::builder()
        .capacity(4096)
        .remove_on_drop(false)
        .create(&name.0)
        .unwrap();
    p.send(b"hello").unwrap();
    drop(p);
    std::fs::read(name.path()).unwrap()
}

/// Objects in /dev/shm that are not sound segments, each with what errors about it say.
struct Hostile {
    name: ShmName,
    /// Listed by `list` without `--all` (it carries the shmcast magic number).
    ours: bool,
    /// What the error says.
    says: &'static str,
}

fn hostile_objects(test: &str) -> Vec<Hostile> {
    let valid = valid_segment_bytes(test);
    let mut objects = Vec::new();
    let mut file = |suffix: &str, bytes: &[u8], ours: bool, says: &'static str| {
        let name = ShmName::new(&format!("{test}-{suffix}"));
        std::fs::write(name.path(), bytes).unwrap();
        std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        objects.push(Hostile { name, ours, says });
    };
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    file("garbage", &garbage, false, "not a shmcast segment");
    file("empty", &[], false, "truncated");
    file("zeros", &vec![0; 8192], false, "all zeros");
    let mut version = valid.clone();
    // The layout version: the u32 after the magic (see the core's tests/bad_segments.rs).
    version[8..12].copy_from_slice(&99u32.to_le_bytes());
    file("version", &version, true, "layout version 99");
    file("truncated", &valid[..valid.len() / 2], true, "truncated");
    let fifo = ShmName::new(&format!("{test}-fifo"));
    let c = std::ffi::CString::new(fifo.path()).unwrap();
    // SAFETY: plain syscall with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    objects.push(Hostile {
        name: fifo,
        ours: false,
        says: "a FIFO",
    });
    let dir = ShmName::new(&format!("{test}-dir"));
    std::fs::create_dir(dir.path()).unwrap();
    objects.push(Hostile {
        name: dir,
        ours: false,
        says: "a directory",
    });
    objects
}

// ---------------------------------------------------------------------------------------
// Roles (child processes)

/// A lossless consumer that reads until the stream ends.
fn reader() {
    let name = std::env::var(NAME).unwrap();
    let mut c = Consumer::builder().open(&name).expect("attach");
    println!("ready");
    std::io::stdout().flush().unwrap();
    loop {
        match c.recv() {
            Ok(m) => drop(m),
            Err(shmcast::RecvError::Disconnected | shmcast::RecvError::ProducerDied) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A producer that creates the segment and does nothing until its stdin closes.
fn idle_producer() {
    let name = std::env::var(NAME).unwrap();
    let p = Producer::builder()
        .capacity(4096)
        .create(&name)
        .expect("create");
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    // Killed by the test meanwhile, usually; never touch the segment again.
    std::mem::forget(p);
}

// ---------------------------------------------------------------------------------------
// Tests

/// `stat` names the stopped consumer as the one gating the producer, and the keeping-up one
/// as not gating; once the stopped one is killed it shows as dead.
fn stat_shows_a_stopped_consumer_gating_and_a_killed_one_dead() {
    let name = ShmName::new("gating");
    let mut producer = Producer::builder().capacity(4096).create(&name.0).unwrap();
    let mut keeping_up = Proc::role("reader", &name);
    let mut stopped = Proc::role("reader", &name);
    stopped.signal(libc::SIGSTOP);
    let mut sent = 0u64;
    loop {
        match producer.try_send(format!("message {sent}").as_bytes()) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 100_000, "the ring never filled");
    }
    // The reader that keeps up publishes its cursor once it runs dry.
    wait_until("the running reader caught up", || {
        shmcast::inspect(&name.0)
            .unwrap()
            .consumers
            .iter()
            .any(|c| c.pid == keeping_up.pid() && c.lag_bytes == 0)
    });

    let doc = shmcast(&["stat", &name.0, "--json"]).ok().json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["name"], name.0.as_str());
    assert_eq!(doc["path"], Value::Null);
    assert_eq!(doc["capacity"], 4096);
    assert_eq!(doc["producer"]["state"], "live");
    assert_eq!(doc["producer"]["pid"], std::process::id());
    assert_eq!(doc["producer"]["next_seq"], sent);
    assert_eq!(doc["consumers_alive"], 2);
    assert_eq!(doc["consumers_dead"], 0);
    let gate = slot_of(&doc, stopped.pid());
    assert_eq!(gate["gating"], true, "{doc:#}");
    assert_eq!(gate["alive"], true);
    assert_eq!(gate["kind"], "lossless");
    assert_eq!(gate["lag_messages"], sent, "it read nothing");
    assert_eq!(doc["gating"], Value::Array(vec![gate["index"].clone()]));
    let other = slot_of(&doc, keeping_up.pid());
    assert_eq!(other["gating"], false);
    assert_eq!(other["alive"], true);
    assert_eq!(other["lag_bytes"], 0);
    assert_eq!(other["lag_messages"], 0);

    let text = shmcast(&["stat", &name.0]).ok().stdout;
    let index = gate["index"].as_u64().unwrap();
    assert!(
        text.contains(&format!(
            "slot {index} (pid {}) gates the producer",
            stopped.pid()
        )),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(&stopped.pid().to_string()))
        .unwrap_or_else(|| panic!("no row for the stopped reader:\n{text}"));
    assert!(row.contains("lossless") && row.contains("alive"), "{row}");
    assert!(row.ends_with("yes"), "{row}");

    stopped.signal(libc::SIGKILL);
    stopped.wait();
    let doc = shmcast(&["stat", &name.0, "--json"]).ok().json();
    assert_eq!(slot_of(&doc, stopped.pid())["alive"], false, "{doc:#}");
    assert_eq!(slot_of(&doc, keeping_up.pid())["alive"], true);
    assert_eq!(doc["consumers_alive"], 1);
    assert_eq!(doc["consumers_dead"], 1);
    let text = shmcast(&["stat", &name.0]).ok().stdout;
    assert!(text.contains("2 attached (1 alive, 1 dead)"), "{text}");
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(&stopped.pid().to_string()))
        .unwrap();
    assert!(row.contains(" dead "), "{row}");

    // A path works as well as the name.
    let doc = shmcast(&["stat", &name.path(), "--json"]).ok().json();
    assert_eq!(doc["name"], Value::Null);
    assert_eq!(doc["path"], name.path().as_str());
    assert_eq!(doc["producer"]["next_seq"], sent);

    drop(producer); // closes the stream: the reader exits
    assert!(keeping_up.wait().success());
}

/// `list` finds the segment, with its geometry, producer and consumer counts.
fn list_finds_the_segment_and_counts_its_consumers() {
    let name = ShmName::new("list");
    let mut producer = Producer::builder()
        .capacity(1 << 16)
        .max_consumers(4)
        .create(&name.0)
        .unwrap();
    let _in_process = Consumer::builder().open(&name.0).unwrap();
    let mut killed = Proc::role("reader", &name);
    killed.signal(libc::SIGKILL);
    killed.wait();
    for m in [&b"a"[..], b"bb", b"ccc"] {
        producer.send(m).unwrap();
    }
    let snap = shmcast::inspect(&name.0).unwrap();

    let doc = shmcast(&["list", "--json"]).ok().json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["directory"], "/dev/shm");
    let entry = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.0.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {doc:#}", name.0))
        .clone();
    assert_eq!(entry["status"], "ok");
    assert_eq!(entry["error"], Value::Null);
    assert_eq!(entry["segment_size"], snap.segment_size);
    assert_eq!(entry["capacity"], 1 << 16);
    assert_eq!(entry["max_consumers"], 4);
    assert_eq!(entry["max_message"], snap.max_message);
    assert_eq!(entry["producer_state"], "live");
    assert_eq!(entry["producer_pid"], std::process::id());
    assert_eq!(entry["consumers_alive"], 1);
    assert_eq!(entry["consumers_dead"], 1);
    assert_eq!(entry["next_seq"], 3);

    let text = shmcast(&["list"]).ok().stdout;
    assert!(text.starts_with("NAME "), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{} ", name.0)))
        .unwrap_or_else(|| panic!("{} not listed:\n{text}", name.0));
    // NAME, SIZE (two words), CAPACITY (two words), PRODUCER, PID, CONSUMERS, NEXT SEQ.
    let cells: Vec<&str> = row.split_whitespace().collect();
    let pid = std::process::id().to_string();
    assert_eq!(
        cells[3..],
        ["64", "KiB", "live", &pid, "1", "alive,", "1", "dead", "3"],
        "{row}"
    );

    // A closed segment (remove_on_drop(false)) is still listed, as closed.
    drop(producer);
    drop(_in_process);
    let closed = ShmName::new("list-closed");
    let p = Producer::builder()
        .remove_on_drop(false)
        .create(&closed.0)
        .unwrap();
    drop(p);
    let doc = shmcast(&["list", "--json"]).ok().json();
    let entry = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == closed.0.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["producer_state"], "closed");
}

/// Objects that are not sound segments: `list` shows broken shmcast segments always and
/// others only with `--all` (never hanging on a FIFO); `stat`, `tail`, `top` and `rm` refuse
/// each with an error naming the problem; `rm --force` removes each.
fn hostile_objects_are_listed_apart_and_refused_with_clear_errors() {
    let objects = hostile_objects("hostile");

    let doc = shmcast(&["list", "--json"]).ok().json();
    let segments = doc["segments"].as_array().unwrap();
    for o in &objects {
        let entry = segments.iter().find(|s| s["name"] == o.name.0.as_str());
        assert_eq!(entry.is_some(), o.ours, "{}: {doc:#}", o.name.0);
        if let Some(entry) = entry {
            assert_eq!(entry["status"], "unusable");
            assert!(
                entry["error"].as_str().unwrap().contains(o.says),
                "{entry:#}"
            );
            assert_eq!(entry["capacity"], Value::Null);
        }
    }
    assert_eq!(doc["others"], Value::Array(vec![]));
    let foreign = objects.iter().filter(|o| !o.ours).count() as u64;
    assert!(doc["others_hidden"].as_u64().unwrap() >= foreign, "{doc:#}");

    let doc = shmcast(&["list", "--all", "--json"]).ok().json();
    let others = doc["others"].as_array().unwrap();
    for o in objects.iter().filter(|o| !o.ours) {
        let entry = others
            .iter()
            .find(|s| s["name"] == o.name.0.as_str())
            .unwrap_or_else(|| panic!("{} not in --all: {doc:#}", o.name.0));
        let reason = entry["reason"].as_str().unwrap();
        assert!(reason.contains(o.says), "{}: {reason}", o.name.0);
    }

    let text = shmcast(&["list"]).ok().stdout;
    for o in &objects {
        assert_eq!(text.contains(&o.name.0), o.ours, "{}:\n{text}", o.name.0);
    }
    assert!(text.contains("shmcast rm --force NAME"), "{text}");
    assert!(text.contains("--all lists them"), "{text}");
    let text = shmcast(&["list", "--all"]).ok().stdout;
    for o in &objects {
        assert!(text.contains(&o.name.0), "{}:\n{text}", o.name.0);
    }

    for o in &objects {
        let n = o.name.0.as_str();
        shmcast(&["stat", n]).error(o.says);
        shmcast(&["stat", n, "--json"]).error(o.says);
        shmcast(&["top", n, "--iterations", "1"]).error(o.says);
        shmcast(&["tail", n, "-n", "1"]).error(o.says);
        let run = shmcast(&["rm", n]).error(o.says);
        if o.says != "a directory" {
            assert!(run.stderr.contains("rm --force"), "{}", run.stderr);
        }
        assert!(
            std::fs::symlink_metadata(o.name.path()).is_ok(),
            "{n} was removed"
        );
    }
    for o in objects.iter().filter(|o| o.says != "a directory") {
        let n = o.name.0.as_str();
        let run = shmcast(&["rm", "--force", n]).ok();
        assert_eq!(run.stdout, format!("removed '{n}'\n"));
        assert!(
            std::fs::symlink_metadata(o.name.path()).is_err(),
            "{n} is still there"
        );
    }
}

/// Names the core refuses, segments that do not exist, and usage errors.
fn bad_names_missing_segments_and_bad_usage_are_errors() {
    let long = "x".repeat(201);
    for bad in ["bad name", "", ".hidden", "..", long.as_str(), "ümlaut"] {
        shmcast(&["stat", bad]).error("invalid segment name");
        shmcast(&["stat", bad, "--json"]).error("invalid segment name");
        shmcast(&["top", bad, "--iterations", "1"]).error("invalid segment name");
        shmcast(&["tail", bad]).error("invalid segment name");
        shmcast(&["rm", bad]).error("invalid segment name");
        shmcast(&["rm", "--force", bad]).error("invalid segment name");
    }
    let missing = ShmName::new("missing");
    let n = missing.0.as_str();
    shmcast(&["stat", n]).error("does not exist");
    shmcast(&["top", n, "--iterations", "1"]).error("does not exist");
    let run = shmcast(&["tail", n]).error("does not exist");
    assert!(run.stderr.contains("--wait"), "{}", run.stderr);
    shmcast(&["rm", n]).error("does not exist");
    shmcast(&["rm", "--force", n]).error("does not exist");
    shmcast(&["stat", "/nonexistent/dir/segment"]).error("does not exist");
    shmcast(&["rm", "./a/path"]).error("is a path");
    // --wait gives up with the same error.
    shmcast(&["tail", n, "--wait", "0.05"]).error("does not exist");

    for args in [
        &["stat"][..],
        &["frobnicate"],
        &["tail", n, "-n", "0"],
        &["tail", n, "--format", "base64"],
        &["top", n, "--interval", "0"],
        &["top", n, "--interval", "soon"],
        &["top", n, "--iterations", "0"],
        &["rm"],
    ] {
        let run = shmcast(args);
        assert_eq!(run.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = shmcast(&["--version"]).ok();
    assert!(run.stdout.starts_with("shmcast "), "{}", run.stdout);
}

/// `tail --oldest -n N` prints exactly the first N messages in each format and exits while
/// the producer lives; without `--oldest` it starts at the next message.
fn tail_prints_exactly_the_messages_sent_in_each_format() {
    let name = ShmName::new("tail-format");
    let mut producer = Producer::builder()
        .capacity(1 << 16)
        .create(&name.0)
        .unwrap();
    let messages: [&[u8]; 5] = [
        b"hello",
        b"",
        b"two\nlines\\ \xff",
        "snow ☃".as_bytes(),
        b"end",
    ];
    for m in messages {
        producer.send(m).unwrap();
    }
    let expect = |hex: bool| -> String {
        messages[..4]
            .iter()
            .enumerate()
            .map(|(seq, m)| {
                let shown: String = if hex {
                    m.iter().map(|b| format!("{b:02x}")).collect()
                } else {
                    m.len().to_string()
                };
                format!("{seq} {shown}\n")
            })
            .collect()
    };
    let out = shmcast(&["tail", &name.0, "--oldest", "-n", "4", "--format", "hex"])
        .ok()
        .stdout;
    assert_eq!(out, expect(true));
    let out = shmcast(&["tail", &name.0, "--oldest", "-n", "4", "--format", "len"])
        .ok()
        .stdout;
    assert_eq!(out, expect(false));
    let out = shmcast(&["tail", &name.0, "--oldest", "-n", "4"])
        .ok()
        .stdout;
    assert_eq!(out, "0 hello\n1 \n2 two\\nlines\\\\ \\xff\n3 snow ☃\n");
    let out = shmcast(&["tail", &name.0, "--oldest", "-n", "4", "--format", "utf8"])
        .ok()
        .stdout;
    assert_eq!(out, "0 hello\n1 \n2 two\\nlines\\\\ \\xff\n3 snow ☃\n");

    // From the next message on: wait until it attached, then send.
    let mut tail = Proc::shmcast(&["tail", &name.0, "-n", "2"]);
    wait_registered(&name, tail.pid());
    producer.send(b"after").unwrap();
    producer.send(b"last").unwrap();
    assert!(tail.wait().success(), "{}", tail.stderr());
    assert_eq!(tail.rest(), ["5 after", "6 last"]);
    // The slot it used is free again.
    assert!(!shmcast::inspect(&name.0)
        .unwrap()
        .consumers
        .iter()
        .any(|c| c.pid == tail.pid()));
}

/// A stopped `tail` never gates the producer: it keeps sending into a ring far smaller
/// than the burst; `tail` then reports the laps inline, prints the rest in order, and exits
/// 0 when the stream closes.
fn tail_never_gates_the_producer_and_reports_laps() {
    let name = ShmName::new("tail-lag");
    let mut producer = Producer::builder().capacity(4096).create(&name.0).unwrap();
    producer.send(b"first").unwrap();
    let mut tail = Proc::shmcast(&["tail", &name.0, "--oldest", "--format", "utf8"]);
    assert_eq!(tail.line(), "0 first");
    tail.signal(libc::SIGSTOP);
    const BURST: u64 = 1000;
    for i in 1..=BURST {
        // try_send: Full would mean tail gates the producer.
        producer
            .try_send(format!("message {i:04} ........................").as_bytes())
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let lag = shmcast(&["stat", &name.0, "--json"]).ok().json();
    let slot = slot_of(&lag, tail.pid());
    assert_eq!(slot["kind"], "lossy");
    assert_eq!(slot["gating"], false);
    tail.signal(libc::SIGCONT);
    drop(producer); // closes the stream
    let status = tail.wait();
    assert!(status.success(), "{status:?}");
    assert_eq!(tail.stderr(), "shmcast: the producer closed the stream\n");
    let mut next = 1u64; // the next sequence number not yet accounted for
    let mut lost = 0;
    let mut printed = 0;
    for line in tail.rest() {
        if let Some(n) = line
            .strip_prefix("# lagged: ")
            .and_then(|l| l.strip_suffix(" messages lost"))
        {
            let n: u64 = n.parse().unwrap();
            next += n;
            lost += n;
        } else {
            let (seq, text) = line.split_once(' ').unwrap();
            let seq: u64 = seq.parse().unwrap();
            assert_eq!(seq, next, "a gap that was not reported before {line:?}");
            assert_eq!(text, format!("message {seq:04} ........................"));
            next += 1;
            printed += 1;
        }
    }
    assert_eq!(next, BURST + 1, "the last message was printed");
    assert!(lost > 0, "a 4 KiB ring cannot hold the burst");
    assert_eq!(printed + lost, BURST);
}

/// Ctrl-C stops `tail` and `top` cleanly: exit 0, and `tail` frees its slot (a killed one
/// would leave it dead).
fn ctrl_c_stops_tail_and_top_cleanly() {
    let name = ShmName::new("ctrl-c");
    let mut producer = Producer::builder().capacity(4096).create(&name.0).unwrap();
    producer.send(b"before").unwrap();
    let mut tail = Proc::shmcast(&["tail", &name.0]);
    wait_registered(&name, tail.pid());
    producer.send(b"one").unwrap();
    assert_eq!(tail.line(), "1 one");
    tail.signal(libc::SIGINT);
    let status = tail.wait();
    assert_eq!(status.code(), Some(0), "{}", tail.stderr());
    let snap = shmcast::inspect(&name.0).unwrap();
    assert!(
        !snap.consumers.iter().any(|c| c.pid == tail.pid()),
        "{snap:?}"
    );

    let mut top = Proc::shmcast(&["top", &name.0, "--interval", "0.05"]);
    assert!(top.line().starts_with("shmcast top "));
    top.signal(libc::SIGINT);
    assert_eq!(top.wait().code(), Some(0), "{}", top.stderr());
}

/// `top` prints one frame per refresh with the producer's rates and every consumer's lag,
/// and stops when the segment goes away.
fn top_shows_rates_and_lag_each_refresh() {
    let name = ShmName::new("top");
    let mut producer = Producer::builder().capacity(4096).create(&name.0).unwrap();
    let idle = Consumer::builder().open(&name.0).unwrap();
    for _ in 0..10 {
        producer.send(b"0123456789").unwrap();
    }
    let tail = shmcast::inspect(&name.0).unwrap().producer.tail;
    let out = shmcast(&["top", &name.0, "--interval", "0.05", "--iterations", "3"])
        .ok()
        .stdout;
    let frames: Vec<&str> = out
        .split("\n\n")
        .filter(|f| f.starts_with("shmcast top "))
        .collect();
    assert_eq!(frames.len(), 3, "{out}");
    assert!(out.contains("rate       measuring..."), "{out}");
    // Nothing is sent while it watches: the rates are exactly zero.
    assert_eq!(
        out.matches("rate       0 msgs/s, 0 B/s").count(),
        2,
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(&std::process::id().to_string()))
        .unwrap_or_else(|| panic!("no consumer row:\n{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let pid = std::process::id().to_string();
    let fill = format!("{}%", tail * 100 / 4096);
    assert_eq!(
        cells[1..],
        ["lossless", &pid, "alive", &tail.to_string(), "10", &fill],
        "{row}"
    );
    assert!(
        out.contains(&format!("stream     next seq 10, tail {tail}")),
        "{out}"
    );

    let mut top = Proc::shmcast(&["top", &name.0, "--interval", "0.05"]);
    assert!(top.line().starts_with("shmcast top "));
    drop(idle);
    drop(producer); // removes the name
    assert_eq!(top.wait().code(), Some(0));
    assert!(top.stderr().contains("was removed"));
}

/// A producer re-creating the segment while `top` watches: a frame that meets the new file
/// before its header is written says so, and `top` goes on with the new ring (it used to
/// end with an error).
fn top_goes_on_across_a_segment_being_re_created() {
    let name = ShmName::new("top-recreate");
    let old = Producer::builder().capacity(4096).create(&name.0).unwrap();
    let size = std::fs::metadata(name.path()).unwrap().len();
    let mut top = Proc::shmcast(&["top", &name.0, "--interval", "0.05"]);
    assert!(top.line().starts_with("shmcast top "));
    // What a creator leaves between sizing the file and writing its header: zeros. Renamed
    // over the name, so `top` never finds it missing.
    let half = ShmName::new("top-recreate-half");
    std::fs::write(half.path(), vec![0u8; size as usize]).unwrap();
    std::fs::rename(half.path(), name.path()).unwrap();
    drop(old); // its name now belongs to the new file: leave it
    let wait_for = |top: &mut Proc, what: &str| while !top.line().contains(what) {};
    wait_for(&mut top, "no valid header");
    // The new ring, made under another name and renamed over the half-made one.
    let next = ShmName::new("top-recreate-next");
    let mut producer = Producer::builder().capacity(8192).create(&next.0).unwrap();
    producer.send(b"after").unwrap();
    std::fs::rename(next.path(), name.path()).unwrap();
    wait_for(&mut top, "stream     next seq 1,");
    wait_for(&mut top, "rate       measuring...");
    top.signal(libc::SIGINT);
    let status = top.wait();
    assert_eq!(status.code(), Some(0), "{status:?}: {}", top.stderr());
    drop(producer);
}

/// `rm` refuses a segment whose producer lives and removes one whose producer is gone;
/// `rm --force` removes it anyway, warning that the producer lives.
fn rm_refuses_a_live_producer_and_force_removes() {
    let name = ShmName::new("rm-live");
    let producer = Producer::builder()
        .remove_on_drop(false)
        .create(&name.0)
        .unwrap();
    let run = shmcast(&["rm", &name.0]).error("has a live producer");
    assert!(
        run.stderr.contains(&format!("pid {}", std::process::id())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
    assert!(shmcast::inspect(&name.0).is_ok(), "it was removed");
    let run = shmcast(&["rm", "--force", &name.0]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, format!("removed '{}'\n", name.0));
    assert!(
        run.stderr.contains("warning: ") && run.stderr.contains("is alive"),
        "{}",
        run.stderr
    );
    assert!(matches!(
        shmcast::inspect(&name.0),
        Err(shmcast::OpenError::NotFound(_))
    ));
    drop(producer);

    // Gone producers: closed, and died (SIGKILL).
    let closed = ShmName::new("rm-closed");
    drop(
        Producer::builder()
            .remove_on_drop(false)
            .create(&closed.0)
            .unwrap(),
    );
    let died = ShmName::new("rm-died");
    let mut child = Proc::role("idle_producer", &died);
    child.signal(libc::SIGKILL);
    child.wait();
    assert_eq!(
        shmcast(&["stat", &died.0, "--json"]).ok().json()["producer"]["state"],
        "died"
    );
    let missing = ShmName::new("rm-missing");
    // Several names: each is tried; the failure is reported and the status says so.
    let run = shmcast(&["rm", &closed.0, &missing.0, &died.0]);
    assert_eq!(run.code(), Some(1));
    assert_eq!(
        run.stdout,
        format!("removed '{}'\nremoved '{}'\n", closed.0, died.0)
    );
    assert!(run
        .stderr
        .contains(&format!("segment '{}' does not exist", missing.0)));
    assert!(
        run.stderr.contains("1 of 3 segments were not removed"),
        "{}",
        run.stderr
    );
    for n in [&closed, &died] {
        assert!(matches!(
            shmcast::inspect(&n.0),
            Err(shmcast::OpenError::NotFound(_))
        ));
    }
}

/// A segment truncated by another process while `tail` has it mapped: an error message and
/// status 1, not a silent death by SIGBUS.
fn tail_reports_a_segment_truncated_under_it() {
    let name = ShmName::new("truncated-live");
    let _producer = Proc::role("idle_producer", &name);
    let mut tail = Proc::shmcast(&["tail", &name.0]);
    wait_attached(&name, tail.pid());
    std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap()
        .set_len(0)
        .unwrap();
    let status = tail.wait();
    assert_eq!(status.code(), Some(1), "{status:?}");
    let stderr = tail.stderr();
    assert!(
        stderr.contains("SIGBUS") && stderr.contains("truncated"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Runner

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        match role.as_str() {
            "reader" => reader(),
            "idle_producer" => idle_producer(),
            other => panic!("unknown role {other:?}"),
        }
        return;
    }
    let tests: [(&str, fn()); 11] = [
        (
            "stat_shows_a_stopped_consumer_gating_and_a_killed_one_dead",
            stat_shows_a_stopped_consumer_gating_and_a_killed_one_dead,
        ),
        (
            "list_finds_the_segment_and_counts_its_consumers",
            list_finds_the_segment_and_counts_its_consumers,
        ),
        (
            "hostile_objects_are_listed_apart_and_refused_with_clear_errors",
            hostile_objects_are_listed_apart_and_refused_with_clear_errors,
        ),
        (
            "bad_names_missing_segments_and_bad_usage_are_errors",
            bad_names_missing_segments_and_bad_usage_are_errors,
        ),
        (
            "tail_prints_exactly_the_messages_sent_in_each_format",
            tail_prints_exactly_the_messages_sent_in_each_format,
        ),
        (
            "tail_never_gates_the_producer_and_reports_laps",
            tail_never_gates_the_producer_and_reports_laps,
        ),
        (
            "ctrl_c_stops_tail_and_top_cleanly",
            ctrl_c_stops_tail_and_top_cleanly,
        ),
        (
            "top_shows_rates_and_lag_each_refresh",
            top_shows_rates_and_lag_each_refresh,
        ),
        (
            "top_goes_on_across_a_segment_being_re_created",
            top_goes_on_across_a_segment_being_re_created,
        ),
        (
            "rm_refuses_a_live_producer_and_force_removes",
            rm_refuses_a_live_producer_and_force_removes,
        ),
        (
            "tail_reports_a_segment_truncated_under_it",
            tail_reports_a_segment_truncated_under_it,
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(n, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        n == f
                    } else {
                        n.contains(f.as_str())
                    }
                })
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (n, _) in &selected {
            println!("{n}: test");
        }
        return;
    }
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (n, f) in &selected {
        let ok = std::panic::catch_unwind(f).is_ok();
        println!("test {n} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*n);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        tests.len() - selected.len()
    );
    if !failed.is_empty() {
        println!("failures:\n    {}\n", failed.join("\n    "));
        std::process::exit(101);
    }
}
