//! The asynchronous consumer's figures (issue 14), for `async_report`: wake-up latency
//! after idling, the CPU an idle consumer costs, and syscalls per message while data flows.
//!
//! Every figure runs a consumer in a second process (this binary re-executed with
//! [`ASYNC_CHILD_ARG`], see [`run_if_async_child`]) fed by the parent, which produces with
//! a blocking shmcast [`Producer`] (default wait policy) or writes to a `UnixStream`. The
//! consumer is one of the [`Variant`]s: shmcast's [`AsyncConsumer`] in a tokio runtime
//! (multi-thread or current-thread), the blocking [`Consumer`] with the default adaptive
//! wait policy, or a tokio `UnixStream`. Control lines travel over the child's stdout, as
//! in [`crate::child`]; the transport carries only the measured 64-byte messages, whose
//! first 8 bytes are a tag (a `CLOCK_MONOTONIC` send time, a sequence number, or
//! [`QUIT`]).
//!
//! - **Wake-up** ([`wake_latency`]): the parent sleeps 1-5 ms (random, so the consumer has
//!   gone to sleep and nothing phase-locks with a periodic tick), reads the clock
//!   and sends it; the consumer records its clock minus that stamp on receipt.
//! - **Idle** ([`idle`]): consumers block on an empty transport; each reports the CPU time
//!   (`getrusage(RUSAGE_SELF)`: every thread of the process, the waiter thread included)
//!   used from its `ready` to the message that ends the wait.
//! - **Syscalls** ([`count`]): `n` messages, back to back or paced; the consumer reports
//!   its counters (shmcast's own and the context switches) at the last message; optionally
//!   `strace -f -c` is attached to it for that window and counts every syscall of every
//!   thread.

use super::child::{self, Child};
use super::sys;
use super::transport::{capacity_for, other, unique_name, ACK, QUIT};
use shmcast::{AsyncConsumer, Consumer, Producer, ProducerStats, RecvError, WaitPolicy};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden first argument that selects an async-figure child role.
pub const ASYNC_CHILD_ARG: &str = "--shmcast-bench-async-child";

/// Bytes per message (the tag, then filler).
pub const MSG: usize = 64;

/// A consumer under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// shmcast `AsyncConsumer::recv().await` in a task of a tokio multi-thread runtime.
    AsyncMt,
    /// shmcast `AsyncConsumer::recv().await` in a tokio current-thread runtime.
    AsyncCt,
    /// shmcast blocking `Consumer::recv` with the default `WaitPolicy::Adaptive` (spin,
    /// yield, then a futex sleep), on the process's main thread.
    Blocking,
    /// shmcast blocking `Consumer::recv` with `WaitPolicy::Adaptive { spins: 0, yields: 0 }`
    /// (a futex sleep at once), on the process's main thread.
    BlockingSleep,
    /// A tokio `UnixStream` (behind a `BufReader`, `read_exact` of 64 bytes) in a task of a
    /// multi-thread runtime.
    UnixMt,
    /// The same in a current-thread runtime.
    UnixCt,
}

/// Which tokio runtime a variant runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    MultiThread,
    CurrentThread,
}

impl Variant {
    /// Every variant, in report order.
    pub const ALL: [Variant; 6] = [
        Variant::AsyncMt,
        Variant::AsyncCt,
        Variant::Blocking,
        Variant::BlockingSleep,
        Variant::UnixMt,
        Variant::UnixCt,
    ];

    /// Short name, for command lines and tables.
    pub fn name(self) -> &'static str {
        match self {
            Variant::AsyncMt => "shmcast-async-mt",
            Variant::AsyncCt => "shmcast-async-ct",
            Variant::Blocking => "shmcast-blocking-adaptive",
            Variant::BlockingSleep => "shmcast-blocking-sleep",
            Variant::UnixMt => "tokio-unix-mt",
            Variant::UnixCt => "tokio-unix-ct",
        }
    }

    /// Parse a [`Variant::name`].
    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Every name, comma-separated.
    pub fn names() -> String {
        Variant::ALL.map(Variant::name).join(", ")
    }

    /// Is it a shmcast ring (else a `UnixStream`)?
    pub fn is_ring(self) -> bool {
        !matches!(self, Variant::UnixMt | Variant::UnixCt)
    }

    /// Does every `recv` that finds the ring empty wait at once (no spin or yield phase)?
    /// Then each empty-ring episode is one ring wait, and syscalls per wait is its cost.
    pub fn waits_at_once(self) -> bool {
        matches!(
            self,
            Variant::AsyncMt | Variant::AsyncCt | Variant::BlockingSleep
        )
    }

    /// The wait policy of a blocking shmcast consumer.
    pub fn policy(self) -> Option<WaitPolicy> {
        match self {
            Variant::Blocking => Some(WaitPolicy::default()),
            Variant::BlockingSleep => Some(WaitPolicy::Adaptive {
                spins: 0,
                yields: 0,
            }),
            _ => None,
        }
    }

    /// Is it shmcast's asynchronous consumer (with a waiter thread)?
    pub fn is_async_ring(self) -> bool {
        matches!(self, Variant::AsyncMt | Variant::AsyncCt)
    }

    fn flavor(self) -> Option<Flavor> {
        match self {
            Variant::AsyncMt | Variant::UnixMt => Some(Flavor::MultiThread),
            Variant::AsyncCt | Variant::UnixCt => Some(Flavor::CurrentThread),
            Variant::Blocking | Variant::BlockingSleep => None,
        }
    }
}

/// What a child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Record receipt time minus the stamp of every message; report them all at [`QUIT`].
    Wake,
    /// Block until the first message; report CPU time and counters used meanwhile.
    Idle,
    /// Count messages (checking sequence numbers); report counters at the one tagged
    /// [`ACK`].
    Count,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Wake => "wake",
            Role::Idle => "idle",
            Role::Count => "count",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::Wake, Role::Idle, Role::Count]
            .into_iter()
            .find(|r| r.name() == s)
    }
}

/// Knobs shared by every figure.
#[derive(Clone, Copy, Debug)]
pub struct Opts {
    /// Pin the parent to CPU 0 (done by the caller, once) and every child to CPU 1.
    pub pin: bool,
    /// Ring capacity in bytes (shmcast variants).
    pub capacity: usize,
}

/// A consumer process's counters (differences over a window). Fields that do not apply to
/// a variant stay 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// CPU time, user + system, of every thread of the process (`getrusage`), ns.
    pub cpu_ns: u64,
    /// Voluntary context switches (each one a blocking syscall that slept).
    pub voluntary: u64,
    /// Involuntary context switches (preemptions).
    pub involuntary: u64,
    /// The shmcast consumer's `stats().sleeps`: futex sleeps (blocking) or waits
    /// registered with the waiter (async: each time a `recv` found the ring empty).
    pub ring_sleeps: u64,
    /// Waiter thread sleeps: one `futex_waitv` (or `FUTEX_WAIT`) syscall each.
    pub waiter_sleeps: u64,
    /// Tasks the waiter woke because their futex word changed.
    pub waiter_wakeups: u64,
    /// Tasks handed back without a change (1 s recheck, dead producer).
    pub waiter_rechecks: u64,
    /// Producer liveness probes by the waiter (one `fcntl` each).
    pub waiter_probes: u64,
    /// Registrations that had to wake the waiter thread (one `FUTEX_WAKE` each).
    pub waiter_pokes: u64,
    /// Waiter threads started.
    pub waiter_threads: u64,
}

const COUNTER_FIELDS: usize = 10;

impl Counters {
    fn now(ring_sleeps: u64, with_waiter: bool) -> Counters {
        let (cpu_ns, voluntary, involuntary) = sys::cpu_usage();
        let mut c = Counters {
            cpu_ns,
            voluntary,
            involuntary,
            ring_sleeps,
            ..Counters::default()
        };
        if with_waiter {
            let w = shmcast::asynch::waiter_stats();
            c.waiter_sleeps = w.sleeps;
            c.waiter_wakeups = w.wakeups;
            c.waiter_rechecks = w.rechecks;
            c.waiter_probes = w.probes;
            c.waiter_pokes = w.pokes;
            c.waiter_threads = w.threads;
        }
        c
    }

    fn fields(&self) -> [u64; COUNTER_FIELDS] {
        [
            self.cpu_ns,
            self.voluntary,
            self.involuntary,
            self.ring_sleeps,
            self.waiter_sleeps,
            self.waiter_wakeups,
            self.waiter_rechecks,
            self.waiter_probes,
            self.waiter_pokes,
            self.waiter_threads,
        ]
    }

    fn from_fields(f: [u64; COUNTER_FIELDS]) -> Counters {
        Counters {
            cpu_ns: f[0],
            voluntary: f[1],
            involuntary: f[2],
            ring_sleeps: f[3],
            waiter_sleeps: f[4],
            waiter_wakeups: f[5],
            waiter_rechecks: f[6],
            waiter_probes: f[7],
            waiter_pokes: f[8],
            waiter_threads: f[9],
        }
    }

    fn since(&self, base: &Counters) -> Counters {
        let (a, b) = (self.fields(), base.fields());
        Counters::from_fields(std::array::from_fn(|i| a[i].saturating_sub(b[i])))
    }

    /// The sum of two windows.
    pub fn plus(&self, other: &Counters) -> Counters {
        let (a, b) = (self.fields(), other.fields());
        Counters::from_fields(std::array::from_fn(|i| a[i] + b[i]))
    }

    fn words(&self) -> String {
        self.fields().map(|v| v.to_string()).join(" ")
    }

    fn parse(words: &[String]) -> io::Result<Counters> {
        if words.len() < COUNTER_FIELDS {
            return Err(io::Error::other(format!("short counters: {words:?}")));
        }
        let mut f = [0u64; COUNTER_FIELDS];
        for (i, w) in words[..COUNTER_FIELDS].iter().enumerate() {
            f[i] = w.parse().map_err(other)?;
        }
        Ok(Counters::from_fields(f))
    }
}

fn num(words: &[String], i: usize) -> io::Result<u64> {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad report {words:?}")))
}

// ---------------------------------------------------------------------------------------
// The child.

/// If this process was started as an async-figure child, run the role and exit; otherwise
/// return at once. Call it first thing in `main`.
pub fn run_if_async_child() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(ASYNC_CHILD_ARG) {
        return;
    }
    let code = match child_main(&args[2..]) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("async benchmark child {:?} failed: {e}", &args[2..]);
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

#[inline]
fn tag_of(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().expect("messages are 64 bytes"))
}

/// `prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)`: let a sibling `strace -p` attach under
/// Yama's `ptrace_scope = 1` (the parent starts strace, which is not our ancestor).
/// Harmless (EINVAL) without Yama.
fn allow_tracer() {
    const PR_SET_PTRACER: libc::c_int = 0x5961_6d61;
    const PR_SET_PTRACER_ANY: libc::c_ulong = libc::c_ulong::MAX;
    // SAFETY: prctl with integer arguments only; no memory is passed.
    unsafe { libc::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) };
}

fn child_main(args: &[String]) -> io::Result<()> {
    let bad = |what: &str| io::Error::other(format!("bad child argument: {what}"));
    let role = args
        .first()
        .and_then(|s| Role::parse(s))
        .ok_or_else(|| bad("role"))?;
    let variant = args
        .get(1)
        .and_then(|s| Variant::parse(s))
        .ok_or_else(|| bad("variant"))?;
    let cpu: i64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("cpu"))?;
    let spec = args.get(3).ok_or_else(|| bad("transport"))?.clone();
    if cpu >= 0 {
        // Before any thread starts: every thread (tokio workers, the waiter) inherits it.
        sys::pin_to(cpu as usize)?;
    }
    if role == Role::Count {
        allow_tracer();
    }
    match variant.flavor() {
        None => blocking_child(role, variant.policy().unwrap_or_default(), &spec),
        Some(flavor) => {
            let rt = match flavor {
                Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?,
                Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            };
            let workers = rt.metrics().num_workers() as u64;
            // A spawned task: on a multi-thread runtime it runs on a worker (block_on's
            // own future would run on this thread instead).
            let task = rt.spawn(async move { async_child(role, variant, &spec, workers).await });
            rt.block_on(task).map_err(other)?
        }
    }
}

/// What a child records, whatever it receives with.
struct Recorder {
    role: Role,
    with_waiter: bool,
    workers: u64,
    base: Counters,
    wall0: u64,
    lat: Vec<u64>,
    n: u64,
    next: u64,
    errors: u64,
    idle_reported: bool,
}

impl Recorder {
    /// Say `ready` and take the baseline.
    fn start(role: Role, with_waiter: bool, workers: u64, ring_sleeps: u64) -> io::Result<Self> {
        say(format_args!("ready"))?;
        Ok(Recorder {
            role,
            with_waiter,
            workers,
            base: Counters::now(ring_sleeps, with_waiter),
            wall0: sys::mono_ns(),
            lat: Vec::new(),
            n: 0,
            next: 0,
            errors: 0,
            idle_reported: false,
        })
    }

    /// One message received (its tag); `false` once it was [`QUIT`].
    fn on(&mut self, tag: u64, ring_sleeps: u64) -> io::Result<bool> {
        let now = sys::mono_ns();
        let window = || Counters::now(ring_sleeps, self.with_waiter).since(&self.base);
        if tag == QUIT {
            if self.role == Role::Wake {
                let mut line = format!("lat {} {}", window().words(), self.workers);
                for v in &self.lat {
                    line.push(' ');
                    line += &v.to_string();
                }
                say(format_args!("{line}"))?;
            }
            if self.errors > 0 {
                return Err(io::Error::other(format!("{} sequence errors", self.errors)));
            }
            return Ok(false);
        }
        match self.role {
            Role::Wake => self.lat.push(now.saturating_sub(tag)),
            Role::Idle if !self.idle_reported => {
                self.idle_reported = true;
                say(format_args!(
                    "idle {} {} {}",
                    now.saturating_sub(self.wall0),
                    now.saturating_sub(tag),
                    window().words()
                ))?;
            }
            Role::Idle => {}
            Role::Count => {
                let seq = tag & !ACK;
                if seq != self.next {
                    self.errors += 1;
                }
                self.next = seq + 1;
                self.n += 1;
                if tag & ACK != 0 {
                    say(format_args!("ack {now} {} {}", self.n, window().words()))?;
                }
            }
        }
        Ok(true)
    }
}

fn blocking_child(role: Role, policy: WaitPolicy, name: &str) -> io::Result<()> {
    let mut rx = Consumer::builder()
        .wait_policy(policy)
        .open(name)
        .map_err(other)?;
    let mut rec = Recorder::start(role, false, 0, rx.stats().sleeps)?;
    loop {
        let tag = match rx.recv() {
            Ok(m) => tag_of(&m),
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(other(e)),
        };
        if !rec.on(tag, rx.stats().sleeps)? {
            break;
        }
    }
    say(format_args!("done"))
}

/// The receiving side of an asynchronous variant.
// One per run; boxing the consumer would add an indirection to the measured path.
#[allow(clippy::large_enum_variant)]
enum AsyncRx {
    Ring(AsyncConsumer),
    Unix(tokio::io::BufReader<tokio::net::UnixStream>),
}

impl AsyncRx {
    /// Open it (inside the runtime: a tokio socket registers with its reactor).
    fn open(variant: Variant, spec: &str) -> io::Result<AsyncRx> {
        if variant.is_ring() {
            let c = Consumer::builder().open(spec).map_err(other)?;
            return Ok(AsyncRx::Ring(AsyncConsumer::new(c)));
        }
        let fd: RawFd = spec.parse().map_err(other)?;
        // SAFETY: the parent passed this socket by inheritance; nothing else owns it.
        let s = unsafe { UnixStream::from_raw_fd(fd) };
        s.set_nonblocking(true)?;
        Ok(AsyncRx::Unix(tokio::io::BufReader::new(
            tokio::net::UnixStream::from_std(s)?,
        )))
    }

    async fn recv_tag(&mut self, buf: &mut [u8; MSG]) -> io::Result<Option<u64>> {
        use tokio::io::AsyncReadExt;
        match self {
            AsyncRx::Ring(c) => match c.recv().await {
                Ok(m) => Ok(Some(tag_of(&m))),
                Err(RecvError::Disconnected) => Ok(None),
                Err(e) => Err(other(e)),
            },
            AsyncRx::Unix(s) => match s.read_exact(buf).await {
                Ok(_) => Ok(Some(tag_of(buf))),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    fn ring_sleeps(&self) -> u64 {
        match self {
            AsyncRx::Ring(c) => c.stats().sleeps,
            AsyncRx::Unix(_) => 0,
        }
    }
}

async fn async_child(role: Role, variant: Variant, spec: &str, workers: u64) -> io::Result<()> {
    let mut rx = AsyncRx::open(variant, spec)?;
    let mut rec = Recorder::start(role, variant.is_async_ring(), workers, rx.ring_sleeps())?;
    let mut buf = [0u8; MSG];
    while let Some(tag) = rx.recv_tag(&mut buf).await? {
        if !rec.on(tag, rx.ring_sleeps())? {
            break;
        }
    }
    say(format_args!("done"))
}

// ---------------------------------------------------------------------------------------
// The parent.

// One per session; boxing would add an indirection to the measured send.
#[allow(clippy::large_enum_variant)]
enum Tx {
    Ring(Producer),
    Unix(UnixStream),
}

/// A parent producing into one consumer child.
pub struct Session {
    tx: Tx,
    child: Child,
    msg: [u8; MSG],
}

impl Session {
    /// Create the transport for `variant`, start its consumer child in `role` and wait for
    /// it to be ready (attached: it sees every message sent from now on).
    pub fn start(variant: Variant, role: Role, opts: &Opts) -> io::Result<Session> {
        let cpu = if opts.pin {
            sys::child_cpu() as i64
        } else {
            -1
        };
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(ASYNC_CHILD_ARG)
            .arg(role.name())
            .arg(variant.name())
            .arg(cpu.to_string());
        let (tx, theirs) = if variant.is_ring() {
            let name = unique_name("async");
            let p = Producer::builder()
                .capacity(capacity_for(opts.capacity, MSG))
                .max_consumers(4)
                .create(&name)
                .map_err(other)?;
            cmd.arg(&name);
            (Tx::Ring(p), None)
        } else {
            let (mine, theirs) = UnixStream::pair()?;
            cmd.arg(theirs.as_raw_fd().to_string());
            child::inherit(&mut cmd, &[theirs.as_raw_fd()]);
            (Tx::Unix(mine), Some(theirs))
        };
        let mut child = Child::start(cmd)?;
        drop(theirs);
        child.expect("ready")?;
        Ok(Session {
            tx,
            child,
            msg: [0x5a; MSG],
        })
    }

    /// Send one message tagged `tag`.
    #[inline]
    pub fn send(&mut self, tag: u64) -> io::Result<()> {
        self.msg[..8].copy_from_slice(&tag.to_le_bytes());
        match &mut self.tx {
            Tx::Ring(p) => p.send(&self.msg).map_err(other),
            Tx::Unix(s) => s.write_all(&self.msg),
        }
    }

    /// The producer's counters (shmcast variants).
    pub fn producer_stats(&self) -> Option<ProducerStats> {
        match &self.tx {
            Tx::Ring(p) => Some(p.stats()),
            Tx::Unix(_) => None,
        }
    }

    /// The child, to read its reports.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Tell the child to stop (it reports, then says `done`).
    pub fn quit(&mut self) -> io::Result<()> {
        self.send(QUIT)
    }

    /// After [`Session::quit`] (and reading any report): wait for `done` and the exit;
    /// the segment is removed.
    pub fn close(mut self) -> io::Result<()> {
        self.child.expect("done")?;
        drop(self.tx);
        self.child.wait()
    }
}

/// A small xorshift generator for the gaps (no dependency; quality is irrelevant here).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A wake-up this late or later counts as slow in [`WakeFigure::slow`].
pub const SLOW_NS: u64 = 500_000;

/// Wake-up latency parameters.
#[derive(Clone, Copy, Debug)]
pub struct WakePlan {
    /// Timed messages per variant over all rounds.
    pub samples: u64,
    /// Rounds: each variant once per round, in turn, with a fresh child.
    pub rounds: u64,
    /// Untimed messages at the start of each child (thread start-up, page faults).
    pub warmup: u64,
    /// The shortest gap between messages (the consumer must have gone to sleep).
    pub gap_min: Duration,
    /// The longest gap.
    pub gap_max: Duration,
}

/// One variant's wake-up latencies (all rounds).
#[derive(Clone, Debug, Default)]
pub struct WakeFigure {
    /// Timed samples.
    pub samples: u64,
    /// ns, over every sample.
    pub p50: u64,
    /// ns, over every sample.
    pub p99: u64,
    /// ns.
    pub max: u64,
    /// Timed samples of [`SLOW_NS`] or more (woken late: the CPU was busy with another
    /// process, most likely).
    pub slow: u64,
    /// Each round's p50, ns.
    pub round_p50: Vec<u64>,
    /// Each round's p99, ns.
    pub round_p99: Vec<u64>,
    /// Messages received (timed and warm-up) over all rounds.
    pub messages: u64,
    /// The consumers' counters over all rounds.
    pub counters: Counters,
    /// tokio worker threads (0: no runtime).
    pub workers: u64,
}

impl WakeFigure {
    /// Median over rounds of the per-round ratio of p50s, this over `base`.
    pub fn p50_ratio_to(&self, base: &WakeFigure) -> f64 {
        super::stats::median(
            self.round_p50
                .iter()
                .zip(&base.round_p50)
                .map(|(&a, &b)| a as f64 / b.max(1) as f64)
                .collect(),
        )
    }

    /// `v` per message received.
    pub fn per_msg(&self, v: u64) -> f64 {
        v as f64 / self.messages.max(1) as f64
    }
}

/// Measure wake-up latency of every variant, interleaved: in each of `plan.rounds` rounds
/// each variant gets a fresh child, `plan.warmup` untimed then its share of
/// `plan.samples` timed messages, each after a random gap in `gap_min..=gap_max`. A
/// variant that fails keeps its error.
pub fn wake_latency(
    variants: &[Variant],
    plan: &WakePlan,
    opts: &Opts,
    progress: &mut dyn FnMut(Variant, u64),
) -> Vec<(Variant, Result<WakeFigure, String>)> {
    use super::stats::Samples;
    let rounds = plan.rounds.max(1);
    let per = plan.samples.div_ceil(rounds).max(1);
    let lo = plan.gap_min.as_nanos() as u64;
    let hi = (plan.gap_max.as_nanos() as u64).max(lo);
    let mut all: Vec<(Samples, WakeFigure, Option<String>)> = variants
        .iter()
        .map(|_| (Samples::default(), WakeFigure::default(), None))
        .collect();
    for round in 0..rounds {
        for (i, &v) in variants.iter().enumerate() {
            let (hist, fig, err) = &mut all[i];
            if err.is_some() {
                continue;
            }
            progress(v, round);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((round << 8) | (i as u64 + 1)));
            let res = (|| -> io::Result<()> {
                let mut s = Session::start(v, Role::Wake, opts)?;
                for _ in 0..plan.warmup + per {
                    sys::sleep_until_mono(sys::mono_ns() + lo + rng.below(hi - lo + 1));
                    s.send(sys::mono_ns())?;
                }
                s.quit()?;
                let w = s.child().expect("lat")?;
                let counters = Counters::parse(&w[1..])?;
                fig.workers = num(&w, 1 + COUNTER_FIELDS)?;
                let lat: Vec<u64> = w[2 + COUNTER_FIELDS..]
                    .iter()
                    .map(|x| x.parse().map_err(other))
                    .collect::<io::Result<_>>()?;
                s.close()?;
                if lat.len() as u64 != plan.warmup + per {
                    return Err(io::Error::other(format!(
                        "{} latencies reported, {} sent",
                        lat.len(),
                        plan.warmup + per
                    )));
                }
                let mut round_hist = Samples::with_capacity(per as usize);
                for &x in &lat[plan.warmup as usize..] {
                    round_hist.record(x);
                    fig.slow += u64::from(x >= SLOW_NS);
                }
                fig.round_p50.push(round_hist.quantile(0.5));
                fig.round_p99.push(round_hist.quantile(0.99));
                fig.samples += round_hist.len() as u64;
                fig.messages += lat.len() as u64;
                fig.counters = fig.counters.plus(&counters);
                hist.add(&round_hist);
                Ok(())
            })();
            if let Err(e) = res {
                *err = Some(e.to_string());
            }
        }
    }
    variants
        .iter()
        .zip(all)
        .map(|(&v, (mut hist, mut fig, err))| {
            if let Some(e) = err {
                return (v, Err(e));
            }
            fig.p50 = hist.quantile(0.5);
            fig.p99 = hist.quantile(0.99);
            fig.max = hist.max();
            (v, Ok(fig))
        })
        .collect()
}

/// What an idle consumer reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleFigure {
    /// From its `ready` to the receipt of the message that ended the wait, ns.
    pub wall_ns: u64,
    /// From that message's send to its receipt, ns.
    pub wake_ns: u64,
    /// Its counters over `wall_ns`.
    pub counters: Counters,
}

/// Start one idle consumer per variant, all at once (they are idle: they do not disturb
/// each other), let them block for `idle`, then wake each with one stamped message.
pub fn idle(
    variants: &[Variant],
    idle: Duration,
    opts: &Opts,
) -> Vec<(Variant, Result<IdleFigure, String>)> {
    let mut sessions: Vec<(Variant, io::Result<Session>)> = variants
        .iter()
        .map(|&v| (v, Session::start(v, Role::Idle, opts)))
        .collect();
    std::thread::sleep(idle);
    sessions
        .drain(..)
        .map(|(v, s)| {
            let res = s.and_then(|mut s| {
                s.send(sys::mono_ns())?;
                let w = s.child().expect("idle")?;
                let fig = IdleFigure {
                    wall_ns: num(&w, 1)?,
                    wake_ns: num(&w, 2)?,
                    counters: Counters::parse(&w[3..])?,
                };
                s.quit()?;
                s.close()?;
                Ok(fig)
            });
            (v, res.map_err(|e| e.to_string()))
        })
        .collect()
}

/// How the parent sends in the syscall figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Back to back (a blocking send waits while the ring or socket buffer is full).
    Flowing,
    /// At most one message every this long: the parent busy-waits on the clock until this
    /// long after its previous send (so a parent that was preempted does not catch up with
    /// a burst: gaps are never shorter, the rate may be lower; the table shows it).
    Every(Duration),
}

/// Every syscall of the consumer process over a window, by name (`strace -f -c`).
#[derive(Clone, Debug, Default)]
pub struct Syscalls {
    /// All syscalls.
    pub total: u64,
    /// Per syscall name, most frequent first.
    pub calls: Vec<(String, u64)>,
}

/// One run of the syscall figure.
#[derive(Clone, Debug, Default)]
pub struct CountFigure {
    /// Messages sent (and received).
    pub messages: u64,
    /// From the first send to the consumer's receipt of the last, ns.
    pub elapsed_ns: u64,
    /// The consumer's counters from its `ready` to the last message.
    pub counters: Counters,
    /// `FUTEX_WAKE`s the producer made (shmcast variants).
    pub producer_wakes: Option<u64>,
    /// The consumer's syscalls over the same window, if traced (then every other field
    /// is of that traced run).
    pub syscalls: Option<Syscalls>,
}

impl CountFigure {
    /// `v` per message.
    pub fn per_msg(&self, v: u64) -> f64 {
        v as f64 / self.messages.max(1) as f64
    }

    /// Messages per second, end to end.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / (self.elapsed_ns.max(1) as f64 / 1e9)
    }
}

/// `strace` attached to a running process (every thread, and threads it starts).
struct Tracer {
    proc: std::process::Child,
    out: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Tracer {
    /// Attach `strace -f -c` to `pid`; returns once strace says it attached.
    fn attach(strace: &Path, pid: u32) -> io::Result<Tracer> {
        let out = std::env::temp_dir().join(unique_name("strace"));
        let mut proc = Command::new(strace)
            .arg("-f")
            .arg("-c")
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut err = BufReader::new(proc.stderr.take().expect("stderr is piped"));
        let mut said = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line)? == 0 {
                let status = proc.wait()?;
                let _ = std::fs::remove_file(&out);
                return Err(io::Error::other(format!(
                    "strace -p {pid} did not attach ({status}): {}",
                    said.trim()
                )));
            }
            said += &line;
            if line.contains("attached") {
                break;
            }
        }
        // Drain the rest so strace never blocks on a full pipe.
        let stderr = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            rest
        });
        Ok(Tracer {
            proc,
            out,
            stderr: Some(stderr),
        })
    }

    /// Detach (SIGINT: strace writes its summary and exits) and read the counts.
    fn finish(mut self) -> io::Result<Syscalls> {
        // SAFETY: plain kill(2) of our own child process, which has not been reaped.
        unsafe { libc::kill(self.proc.id() as libc::pid_t, libc::SIGINT) };
        self.proc.wait()?;
        let rest = self.stderr.take().map(|h| h.join().unwrap_or_default());
        let text = std::fs::read_to_string(&self.out).map_err(|e| {
            io::Error::other(format!(
                "strace summary {}: {e} ({})",
                self.out.display(),
                rest.unwrap_or_default().trim()
            ))
        })?;
        parse_strace_summary(&text)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.proc.try_wait() {
            let _ = self.proc.kill();
            let _ = self.proc.wait();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Parse `strace -c` output: rows of `% time, seconds, usecs/call, calls, [errors,]
/// syscall`, and a `total` row.
pub fn parse_strace_summary(text: &str) -> io::Result<Syscalls> {
    let mut s = Syscalls::default();
    let mut total = None;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 5 || w[0].starts_with('%') || w[0].starts_with('-') {
            continue;
        }
        let Ok(calls) = w[3].parse::<u64>() else {
            continue;
        };
        let name = w[w.len() - 1];
        if name == "total" {
            total = Some(total.unwrap_or(0) + calls);
        } else if let Some(e) = s.calls.iter_mut().find(|(n, _)| n == name) {
            e.1 += calls;
        } else {
            s.calls.push((name.to_string(), calls));
        }
    }
    s.total =
        total.ok_or_else(|| io::Error::other(format!("no total in strace's summary:\n{text}")))?;
    s.calls
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(s)
}

/// Where `strace` is, if it is on the `PATH`.
pub fn find_strace() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("strace"))
        .find(|p| p.is_file())
}

/// Send `n` messages to a fresh `variant` consumer at `pace` and return its counters over
/// the run; with `strace`, attach it to the consumer first and count its syscalls too
/// (from the attach to the receipt of the last message).
pub fn count(
    variant: Variant,
    pace: Pace,
    n: u64,
    opts: &Opts,
    strace: Option<&Path>,
) -> io::Result<CountFigure> {
    assert!(n > 0);
    let mut s = Session::start(variant, Role::Count, opts)?;
    let tracer = match strace {
        Some(path) => Some(Tracer::attach(path, s.child().id())?),
        None => None,
    };
    let before = s.producer_stats();
    let t0 = sys::mono_ns();
    let mut last = Instant::now();
    for i in 0..n {
        if let Pace::Every(gap) = pace {
            let due = last + gap;
            let mut now = Instant::now();
            while now < due {
                std::hint::spin_loop();
                now = Instant::now();
            }
            last = now;
        }
        s.send(if i + 1 == n { i | ACK } else { i })?;
    }
    let w = s.child().expect("ack")?;
    let syscalls = tracer.map(Tracer::finish).transpose()?;
    let after = s.producer_stats();
    let fig = CountFigure {
        messages: num(&w, 2)?,
        elapsed_ns: num(&w, 1)?.saturating_sub(t0),
        counters: Counters::parse(&w[3..])?,
        producer_wakes: before
            .zip(after)
            .map(|(b, a)| a.wake_syscalls - b.wake_syscalls),
        syscalls,
    };
    s.quit()?;
    s.close()?;
    if fig.messages != n {
        return Err(io::Error::other(format!(
            "{} messages received, {n} sent",
            fig.messages
        )));
    }
    Ok(fig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_summary_is_parsed() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 54.04    0.000187           6        29           futex
 20.00    0.000100          10        10         3 epoll_wait
  1.00    0.000001           1         1           write
------ ----------- ----------- --------- --------- ----------------
100.00    0.000288           7        40         3 total
";
        let s = parse_strace_summary(text).unwrap();
        assert_eq!(s.total, 40);
        assert_eq!(
            s.calls,
            vec![
                ("futex".to_string(), 29),
                ("epoll_wait".to_string(), 10),
                ("write".to_string(), 1)
            ]
        );
        assert!(parse_strace_summary("nothing").is_err());
    }

    #[test]
    fn counters_round_trip_through_words() {
        let c = Counters {
            cpu_ns: 1,
            voluntary: 2,
            involuntary: 3,
            ring_sleeps: 4,
            waiter_sleeps: 5,
            waiter_wakeups: 6,
            waiter_rechecks: 7,
            waiter_probes: 8,
            waiter_pokes: 9,
            waiter_threads: 10,
        };
        let words: Vec<String> = c.words().split(' ').map(String::from).collect();
        assert_eq!(Counters::parse(&words).unwrap(), c);
        assert_eq!(c.plus(&c).since(&c), c);
    }

    #[test]
    fn variants_parse_their_names() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()), Some(v));
        }
        assert_eq!(Variant::parse("nope"), None);
    }
}
