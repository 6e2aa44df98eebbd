//! The second process: every benchmark re-executes its own binary
//! (`std::env::current_exe()`) with a hidden first argument naming the child's role. Call
//! [`run_if_child`] first thing in `main`. Parent and child talk over the child's stdout
//! (one line per event: `ready`, `ack <ns>`, `idle ...`, `done ...`); the transport under
//! test carries only the measured messages.

use super::measure::{FLOOR_PING, FLOOR_PONG};
use super::sys::{self, SharedPage};
use super::transport::{self, Kind, Link, ACK, QUIT};
use shmcast::{Producer, WaitPolicy};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Duration;

/// The hidden first argument that selects a child role.
pub const CHILD_ARG: &str = "--shmcast-bench-child";

/// What a child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Send every message back (round trips).
    Echo,
    /// Receive and check sequence numbers; acknowledge tagged messages (throughput).
    Sink,
    /// Block on an empty transport, then report CPU time used and wake-up latency.
    Idle,
    /// Create a shmcast ring (adaptive) named by the spec and send one 64-byte message every
    /// `gap` microseconds (the spec's second word) until standard input closes; then end
    /// the stream. Drives the jitter figure's ring B.
    Pacer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Sink => "sink",
            Role::Idle => "idle",
            Role::Pacer => "pacer",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::Echo, Role::Sink, Role::Idle, Role::Pacer]
            .into_iter()
            .find(|r| r.name() == s)
    }
}

/// A running child, seen from the parent.
pub struct Child {
    proc: std::process::Child,
    out: BufReader<ChildStdout>,
    /// Closed to tell a pacer to stop.
    stdin: Option<ChildStdin>,
}

impl Child {
    /// Start a child in `role` for `kind`, pinned to [`sys::child_cpu`] if `pin`, receiving
    /// up to `batch` messages at a time; `pass` are descriptors it inherits (named in
    /// `spec`).
    pub fn spawn(
        role: Role,
        kind: Kind,
        size: usize,
        pin: bool,
        batch: usize,
        spec: &[String],
        pass: &[RawFd],
    ) -> io::Result<Child> {
        let cpu = if pin { sys::child_cpu() as i64 } else { -1 };
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(CHILD_ARG)
            .arg(role.name())
            .arg(kind.name())
            .arg(size.to_string())
            .arg(cpu.to_string())
            .arg(batch.to_string())
            .args(spec);
        inherit(&mut cmd, pass);
        Child::start(cmd)
    }

    /// Start `cmd` as a child that speaks this protocol: standard input and output piped
    /// (control lines on its stdout), standard error inherited. For binaries with roles of
    /// their own (`async_report`).
    pub fn start(mut cmd: Command) -> io::Result<Child> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = cmd.spawn()?;
        let out = BufReader::new(proc.stdout.take().expect("stdout is piped"));
        let stdin = proc.stdin.take();
        Ok(Child { proc, out, stdin })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.proc.id()
    }

    /// Close the child's standard input (a pacer then stops).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next control line, split into words; its first word must be `word`.
    pub fn expect(&mut self, word: &str) -> io::Result<Vec<String>> {
        let mut line = String::new();
        if self.out.read_line(&mut line)? == 0 {
            let status = self.proc.wait()?;
            return Err(io::Error::other(format!(
                "child exited ({status}) while the parent waited for '{word}'"
            )));
        }
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        if words.first().map(String::as_str) != Some(word) {
            return Err(io::Error::other(format!(
                "child said {line:?}, expected '{word}'"
            )));
        }
        Ok(words)
    }

    /// Wait for the child to exit; an error if it failed.
    pub fn wait(mut self) -> io::Result<()> {
        let status = self.proc.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("child failed: {status}")))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A child left running (the parent bailed out on an error) must not spin forever.
        if let Ok(None) = self.proc.try_wait() {
            let _ = self.proc.kill();
            let _ = self.proc.wait();
        }
    }
}

/// Let the process `cmd` starts inherit the descriptors `pass` (their close-on-exec flag
/// is cleared in the child, between fork and exec).
pub fn inherit(cmd: &mut Command, pass: &[RawFd]) {
    let fds: Vec<RawFd> = pass.to_vec();
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl
    // (async-signal-safe) on descriptors this process owns; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// If this process was started as a benchmark child, run the role and exit; otherwise
/// return at once.
pub fn run_if_child() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_ARG) {
        return;
    }
    let code = match child_main(&args[2..]) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("benchmark child {:?} failed: {e}", &args[2..]);
            1
        }
    };
    std::process::exit(code);
}

fn say(line: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn child_main(args: &[String]) -> io::Result<()> {
    let bad = |what: &str| io::Error::other(format!("bad child argument: {what}"));
    let role = Role::parse(args.first().ok_or_else(|| bad("role"))?).ok_or_else(|| bad("role"))?;
    let kind = Kind::parse(args.get(1).ok_or_else(|| bad("kind"))?).ok_or_else(|| bad("kind"))?;
    let size: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("size"))?;
    let cpu: i64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("cpu"))?;
    let batch: usize = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("batch"))?;
    let spec = &args[5..];
    if cpu >= 0 {
        sys::pin_to(cpu as usize)?;
    }
    if kind.is_floor() {
        return floor_echo(kind, size, spec);
    }
    if role == Role::Pacer {
        return pacer(spec);
    }
    let mut link = transport::open_child(kind, size, spec)?;
    let mut scratch = vec![0u8; size];
    say(format_args!("ready"))?;
    match role {
        Role::Echo => {
            while let Some(tag) = link.echo(&mut scratch)? {
                if tag == QUIT {
                    break;
                }
            }
        }
        Role::Sink => {
            let mut next: Option<u64> = None;
            let mut errors = 0u64;
            let mut quit = false;
            let mut acks = Vec::new();
            while !quit {
                let got = link.recv_batch(batch.max(1), &mut scratch, |tag| {
                    if tag == QUIT {
                        quit = true;
                        return;
                    }
                    let seq = tag & !ACK;
                    if next.is_some_and(|n| n != seq) {
                        errors += 1;
                    }
                    next = Some(seq + 1);
                    if tag & ACK != 0 {
                        acks.push(sys::mono_ns());
                    }
                })?;
                for at in acks.drain(..) {
                    say(format_args!("ack {at}"))?;
                }
                if got.is_none() {
                    break;
                }
            }
            if errors > 0 {
                return Err(io::Error::other(format!("{errors} sequence errors")));
            }
        }
        Role::Pacer => unreachable!("handled above"),
        Role::Idle => {
            let (cpu0, vol0, invol0) = sys::cpu_usage();
            let wall0 = sys::mono_ns();
            // The parent sends one message after the idle period, its tag the send time.
            let sent = link
                .recv_tag(&mut scratch)?
                .ok_or_else(|| io::Error::other("stream ended while idle"))?;
            let now = sys::mono_ns();
            let (cpu1, vol1, invol1) = sys::cpu_usage();
            let sleeps = match &link {
                Link::Shm { rx: Some(c), .. } => c.stats().sleeps,
                _ => 0,
            };
            say(format_args!(
                "idle {} {} {} {} {} {}",
                cpu1 - cpu0,
                sent.saturating_sub(wall0),
                now.saturating_sub(sent),
                vol1 - vol0,
                invol1 - invol0,
                sleeps
            ))?;
            while let Some(tag) = link.recv_tag(&mut scratch)? {
                if tag == QUIT {
                    break;
                }
            }
        }
    }
    let (cpu_ns, _, _) = sys::cpu_usage();
    let sleeps = match &link {
        Link::Shm { rx: Some(c), .. } => c.stats().sleeps,
        _ => 0,
    };
    drop(link);
    say(format_args!("done {cpu_ns} {sleeps}"))?;
    Ok(())
}

/// The pacer: see [`Role::Pacer`]. Reports `done <cpu ns> <messages sent>`.
fn pacer(spec: &[String]) -> io::Result<()> {
    let name = spec
        .first()
        .ok_or_else(|| io::Error::other("pacer: missing ring name"))?;
    let gap_us: u64 = spec
        .get(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("pacer: missing gap"))?;
    let mut tx = Producer::builder()
        .capacity(64 << 10)
        .max_consumers(4)
        .wait_policy(WaitPolicy::default())
        .create(name)
        .map_err(|e| io::Error::other(format!("pacer: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        // Until the parent closes our standard input (or dies).
        let _ = io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Relaxed);
    });
    say(format_args!("ready"))?;
    let gap = Duration::from_micros(gap_us.max(1));
    let mut msg = [0x5au8; 64];
    let mut sent = 0u64;
    let mut next = sys::mono_ns();
    while !stop.load(Relaxed) {
        next += gap.as_nanos() as u64;
        sys::sleep_until_mono(next);
        msg[..8].copy_from_slice(&sent.to_le_bytes());
        tx.send(&msg)
            .map_err(|e| io::Error::other(format!("pacer: {e}")))?;
        sent += 1;
    }
    msg[..8].copy_from_slice(&QUIT.to_le_bytes());
    tx.send(&msg)
        .map_err(|e| io::Error::other(format!("pacer: {e}")))?;
    drop(tx);
    let (cpu_ns, _, _) = sys::cpu_usage();
    say(format_args!("done {cpu_ns} {sent}"))?;
    Ok(())
}

/// The floors' child. Plain floor: wait for an odd value, answer with the next even one.
/// Payload floor: wait for a new ping flag, copy the ping payload into the pong slot, then
/// publish the pong flag.
fn floor_echo(kind: Kind, size: usize, spec: &[String]) -> io::Result<()> {
    let fd: RawFd = spec
        .first()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("floor: missing fd"))?;
    // SAFETY: the parent passed this descriptor by inheritance; nothing else owns it.
    let page = SharedPage::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })?;
    say(format_args!("ready"))?;
    let mut last = 0;
    if kind == Kind::Floor {
        let a = page.atomic(0);
        loop {
            // Acquire/Release: the pairing a ring's stamp uses, so the floor pays for it too.
            let v = a.load(Acquire);
            if v == QUIT {
                break;
            }
            if v & 1 == 1 && v != last {
                last = v;
                a.store(v + 1, Release);
            } else {
                std::hint::spin_loop();
            }
        }
    } else {
        let mut buf = vec![0u8; size];
        let (ping, pong) = (page.atomic(FLOOR_PING), page.atomic(FLOOR_PONG));
        loop {
            let v = ping.load(Acquire);
            if v == QUIT {
                break;
            }
            if v != last {
                last = v;
                // SAFETY: the parent published the ping slot (Acquire above) and writes it
                // again only after our pong; it reads the pong slot only after our Release
                // store of the pong flag below.
                unsafe {
                    page.read(FLOOR_PING + 8, &mut buf);
                    page.write(FLOOR_PONG + 8, &buf);
                }
                pong.store(v, Release);
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let (cpu_ns, _, _) = sys::cpu_usage();
    say(format_args!("done {cpu_ns}"))?;
    Ok(())
}
