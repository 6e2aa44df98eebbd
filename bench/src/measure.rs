//! The measurements, one method for every transport.
//!
//! - **Round trip**: the parent sends a `size`-byte message, the child sends it back, the
//!   parent receives it. Timed one by one with `Instant` (every sample includes about one
//!   clock read: see [`super::sys::timer_overhead_ns`]), every sample kept, after a
//!   warm-up; then timed in batches of 64, whose per-round-trip means have almost no clock
//!   in them (their median is the figure ratios are taken from).
//! - **One-way throughput**: the parent sends `n` messages back to back, the last one
//!   tagged; the child checks every sequence number and acknowledges the tagged one with
//!   its `CLOCK_MONOTONIC` time. Throughput is `n` over (that time minus the parent's start).
//!   Batch sizes are calibrated to a target duration.
//! - **Fan-out**: the same with `k` consumer processes on one ring.
//! - **Idle**: a consumer blocks on an empty transport; it reports the CPU time it used
//!   and how late it woke for the message that ended the wait.
//! - **Jitter**: busy-spin round trips on one ring while, in other processes, another ring's
//!   adaptive consumer sleeps and is woken about once a millisecond ([`jitter`]).
//!
//! Percentiles are exact (every sample kept, nearest rank: [`crate::stats`]).

use super::child::{Child, Role};
use super::stats::{median as median_of, Samples};
use super::sys::{self, SharedPage};
use super::transport::{self, Dir, Kind, Link, RingSize, ACK, QUIT};
use shmcast::ProducerStats;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

/// Knobs shared by every measurement.
#[derive(Clone, Copy, Debug)]
pub struct Opts {
    /// Pin the parent to CPU 0 (done by the caller, once) and children to CPU 1.
    pub pin: bool,
    /// Ring capacity for round trips (each direction).
    pub rt_capacity: usize,
    /// Ring capacity for streaming and fan-out.
    pub stream_capacity: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            pin: false,
            rt_capacity: 64 << 10,
            stream_capacity: 1 << 20,
        }
    }
}

// One per session; boxing would add an indirection to the measured path.
#[allow(clippy::large_enum_variant)]
enum RtSide {
    Link(Link),
    Floor(SharedPage),
    FloorPayload(SharedPage),
}

/// Where the payload floor's two slots live in its shared page: flag, then payload.
pub const FLOOR_PING: usize = 0;
/// The largest message the payload floor measures.
pub const FLOOR_PAYLOAD_MAX: usize = 512;
/// See [`FLOOR_PING`]. Not at the same offset within a page as the ping slot: Zen 3's
/// `rep movsb` slows down ~10x between equal page offsets.
pub const FLOOR_PONG: usize = SharedPage::LEN / 2 + 128;

/// A parent and an echoing child, ready for round trips.
pub struct RoundTrip {
    side: RtSide,
    child: Child,
    msg: Vec<u8>,
    scratch: Vec<u8>,
    seq: u64,
}

impl RoundTrip {
    /// Spawn the echo child for `kind` with `size`-byte messages.
    pub fn start(kind: Kind, size: usize, opts: &Opts) -> io::Result<RoundTrip> {
        let (side, mut child) = if kind.is_floor() {
            if kind == Kind::FloorPayload && size > FLOOR_PAYLOAD_MAX {
                // One reused slot: every copy writes lines the peer holds, which for large
                // messages costs more than a ring's fresh lines. Not a floor any more.
                return Err(io::Error::other(format!(
                    "floor-payload is a small-message reference (up to {FLOOR_PAYLOAD_MAX} B)"
                )));
            }
            let page = SharedPage::create()?;
            let spec = [page.raw_fd().to_string()];
            let child = Child::spawn(Role::Echo, kind, size, opts.pin, 1, &spec, &[page.raw_fd()])?;
            if kind == Kind::Floor {
                (RtSide::Floor(page), child)
            } else {
                (RtSide::FloorPayload(page), child)
            }
        } else {
            let ring = RingSize {
                capacity: opts.rt_capacity,
                max_consumers: 4,
            };
            let mut prep = transport::prepare(kind, size, Dir::Both, ring)?;
            let fds: Vec<_> = prep.pass.iter().map(|f| f.as_raw_fd()).collect();
            let mut child = Child::spawn(Role::Echo, kind, size, opts.pin, 1, &prep.spec, &fds)?;
            prep.pass.clear();
            child.expect("ready")?;
            prep.after_ready()?;
            (RtSide::Link(prep.link), child)
        };
        if !matches!(side, RtSide::Link(_)) {
            child.expect("ready")?;
        }
        Ok(RoundTrip {
            side,
            child,
            msg: vec![0x5a; size],
            scratch: vec![0; size],
            seq: 0,
        })
    }

    /// Run `n` round trips, each timed into `hist`, stopping early after `budget`.
    /// Returns how many ran.
    pub fn timed(&mut self, n: u64, hist: &mut Samples, budget: Duration) -> io::Result<u64> {
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let t0 = Instant::now();
            self.one()?;
            let t1 = Instant::now();
            hist.record((t1 - t0).as_nanos().max(1) as u64);
            done += 1;
            if done % 256 == 0 && t1 - start > budget {
                break;
            }
        }
        Ok(done)
    }

    /// Run `n` round trips in batches of `batch` between two clock reads, recording each
    /// batch's mean round trip into `hist` (so a sample carries 1/`batch` of a clock read);
    /// stops early after `budget`. Returns how many ran.
    pub fn batched(
        &mut self,
        n: u64,
        batch: u64,
        hist: &mut Samples,
        budget: Duration,
    ) -> io::Result<u64> {
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let b = (n - done).min(batch);
            let t0 = Instant::now();
            for _ in 0..b {
                self.one()?;
            }
            let t1 = Instant::now();
            hist.record(((t1 - t0).as_nanos() as u64 / b).max(1));
            done += b;
            if t1 - start > budget {
                break;
            }
        }
        Ok(done)
    }

    /// Run `n` round trips between two clock reads (criterion's `iter_custom`).
    pub fn run(&mut self, n: u64) -> io::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            self.one()?;
        }
        Ok(start.elapsed())
    }

    /// Untimed round trips (warm-up).
    pub fn warm_up(&mut self, n: u64, budget: Duration) -> io::Result<()> {
        let start = Instant::now();
        for i in 0..n {
            self.one()?;
            if i % 256 == 0 && start.elapsed() > budget {
                break;
            }
        }
        Ok(())
    }

    /// One round trip.
    #[inline]
    fn one(&mut self) -> io::Result<()> {
        let seq = self.seq;
        self.seq += 1;
        match &mut self.side {
            RtSide::Floor(page) => {
                let a = page.atomic(0);
                // Release/Acquire, as the ring's publication.
                a.store(2 * seq + 1, Release);
                while a.load(Acquire) != 2 * seq + 2 {
                    std::hint::spin_loop();
                }
                Ok(())
            }
            RtSide::FloorPayload(page) => {
                self.msg[..8].copy_from_slice(&seq.to_le_bytes());
                // SAFETY: the child reads the ping slot only after our Release store of its
                // flag below, and has finished with the previous ping (it answered it).
                unsafe { page.write(FLOOR_PING + 8, &self.msg) };
                page.atomic(FLOOR_PING).store(seq + 1, Release);
                while page.atomic(FLOOR_PONG).load(Acquire) != seq + 1 {
                    std::hint::spin_loop();
                }
                // SAFETY: the child published the pong slot (Acquire above) and writes it
                // again only after our next ping.
                unsafe { page.read(FLOOR_PONG + 8, &mut self.scratch) };
                if self.scratch[..8] != self.msg[..8] {
                    return Err(io::Error::other("floor-payload: echo differs"));
                }
                Ok(())
            }
            RtSide::Link(link) => {
                self.msg[..8].copy_from_slice(&seq.to_le_bytes());
                link.send(&self.msg)?;
                match link.recv_tag(&mut self.scratch)? {
                    Some(t) if t == seq => Ok(()),
                    other => Err(io::Error::other(format!(
                        "round trip {seq} came back as {other:?}"
                    ))),
                }
            }
        }
    }

    /// Stop the child. Returns the producer counters of the parent's ring (shmcast only).
    pub fn finish(mut self) -> io::Result<Option<ProducerStats>> {
        let stats = match &mut self.side {
            RtSide::Floor(page) => {
                page.atomic(0).store(QUIT, Release);
                None
            }
            RtSide::FloorPayload(page) => {
                page.atomic(FLOOR_PING).store(QUIT, Release);
                None
            }
            RtSide::Link(link) => {
                self.msg[..8].copy_from_slice(&QUIT.to_le_bytes());
                link.send(&self.msg)?;
                link.producer_stats()
            }
        };
        self.child.expect("done")?;
        drop(self.side);
        self.child.wait()?;
        Ok(stats)
    }
}

/// Percentiles of one round-trip figure (all rounds merged).
#[derive(Clone, Debug, Default)]
pub struct RtFigure {
    /// Timed samples.
    pub samples: u64,
    /// Nanoseconds.
    pub p50: u64,
    /// Nanoseconds.
    pub p99: u64,
    /// Nanoseconds.
    pub p999: u64,
    /// Nanoseconds.
    pub max: u64,
    /// Median over batches of 64 round trips of the batch's mean round trip, nanoseconds
    /// (a 64th of a clock read per sample; robust to preemption spikes).
    pub batched_p50: u64,
    /// `batched_p50` of each round, in order.
    pub rounds: Vec<u64>,
    /// FUTEX_WAKE syscalls per message made by the parent's producer (shmcast only).
    pub wakes_per_msg: Option<f64>,
}

impl RtFigure {
    /// This figure over `base`: the median over rounds of the per-round ratio of batched
    /// p50s (both measured back to back in each round), so a change of conditions between
    /// rounds (a noisy neighbour, the host moving a vCPU) cancels out.
    pub fn ratio_to(&self, base: &RtFigure) -> f64 {
        median(
            self.rounds
                .iter()
                .zip(&base.rounds)
                .map(|(&a, &b)| a as f64 / b.max(1) as f64)
                .collect(),
        )
    }
}

/// Round-trip measurement parameters.
#[derive(Clone, Copy, Debug)]
pub struct RtPlan {
    /// Message size in bytes.
    pub size: usize,
    /// Timed round trips per transport, over all rounds (as many again in batches of 64).
    pub iters: u64,
    /// Untimed round trips at the start of each round.
    pub warmup: u64,
    /// Each phase of a round stops after this long.
    pub budget: Duration,
    /// Rounds: every transport is measured once per round, in turn, with a fresh child.
    pub rounds: u64,
}

/// Measure round trips for every kind in `kinds`, interleaved: in each of `plan.rounds`
/// rounds each kind gets a fresh echo child, `warmup` untimed round trips, its share of
/// `iters` timed one by one, then as many in timed batches of 64. `progress` is told which
/// kind and round is next. A kind that fails keeps its error.
pub fn round_trips(
    kinds: &[Kind],
    plan: &RtPlan,
    opts: &Opts,
    progress: &mut dyn FnMut(Kind, u64),
) -> Vec<(Kind, Result<RtFigure, String>)> {
    struct Acc {
        hist: Samples,
        batches: Samples,
        fig: RtFigure,
        messages: u64,
        wakes: Option<u64>,
        err: Option<String>,
    }
    let rounds = plan.rounds.max(1);
    let per = plan.iters.div_ceil(rounds).max(1);
    let budget = plan.budget / rounds as u32;
    let mut acc: Vec<Acc> = kinds
        .iter()
        .map(|_| Acc {
            hist: Samples::default(),
            batches: Samples::default(),
            fig: RtFigure::default(),
            messages: 0,
            wakes: None,
            err: None,
        })
        .collect();
    for round in 0..rounds {
        for (i, &kind) in kinds.iter().enumerate() {
            let a = &mut acc[i];
            if a.err.is_some() {
                continue;
            }
            progress(kind, round);
            let mut batches = Samples::default();
            let res = (|| -> io::Result<()> {
                let mut rt = RoundTrip::start(kind, plan.size, opts)?;
                rt.warm_up(plan.warmup, budget)?;
                a.fig.samples += rt.timed(per, &mut a.hist, budget)?;
                rt.batched(per, 64, &mut batches, budget)?;
                a.messages += rt.seq;
                if let Some(st) = rt.finish()? {
                    *a.wakes.get_or_insert(0) += st.wake_syscalls;
                }
                Ok(())
            })();
            match res {
                Ok(()) => {
                    a.fig.rounds.push(batches.quantile(0.5));
                    a.batches.add(&batches);
                }
                Err(e) => a.err = Some(e.to_string()),
            }
        }
    }
    kinds
        .iter()
        .zip(acc)
        .map(|(&k, mut a)| {
            if let Some(e) = a.err {
                return (k, Err(e));
            }
            let mut f = a.fig;
            f.p50 = a.hist.quantile(0.5);
            f.p99 = a.hist.quantile(0.99);
            f.p999 = a.hist.quantile(0.999);
            f.max = a.hist.max();
            f.batched_p50 = a.batches.quantile(0.5);
            f.wakes_per_msg = a.wakes.map(|w| w as f64 / a.messages.max(1) as f64);
            (k, Ok(f))
        })
        .collect()
}

/// A parent producer and `k` sink children.
pub struct Stream {
    link: Link,
    children: Vec<Child>,
    /// Messages per `send_batch` (1: `send` one by one).
    batch: usize,
    msgs: Vec<Vec<u8>>,
    seq: u64,
}

/// The outcome of one streamed batch.
#[derive(Clone, Debug)]
pub struct StreamRun {
    /// Messages sent.
    pub n: u64,
    /// Time the parent took to send them all.
    pub send: Duration,
    /// Per child: from the parent's first send to that child's receipt of the last.
    pub done: Vec<Duration>,
    /// Producer counters over the batch (shmcast only).
    pub stats: Option<ProducerStats>,
}

impl StreamRun {
    /// Time until the slowest child had everything.
    pub fn elapsed(&self) -> Duration {
        self.done.iter().copied().max().unwrap_or(self.send)
    }

    /// End-to-end messages per second (to the slowest child).
    pub fn msgs_per_sec(&self) -> f64 {
        self.n as f64 / self.elapsed().as_secs_f64()
    }

    /// Messages per second the producer sent at.
    pub fn send_rate(&self) -> f64 {
        self.n as f64 / self.send.as_secs_f64()
    }

    /// Wake syscalls per message (shmcast only).
    pub fn wakes_per_msg(&self) -> Option<f64> {
        self.stats
            .map(|s| s.wake_syscalls as f64 / self.n.max(1) as f64)
    }
}

fn stats_delta(a: Option<ProducerStats>, b: Option<ProducerStats>) -> Option<ProducerStats> {
    let (a, b) = (a?, b?);
    Some(ProducerStats {
        messages: b.messages - a.messages,
        wake_syscalls: b.wake_syscalls - a.wake_syscalls,
        full_waits: b.full_waits - a.full_waits,
        sleeps: b.sleeps - a.sleeps,
        rescans: b.rescans - a.rescans,
        evictions: b.evictions - a.evictions,
    })
}

impl Stream {
    /// Spawn `consumers` children receiving `size`-byte messages over `kind` (only shmcast
    /// kinds take more than one), in `role` (sink or idle). With `batch > 1` the parent
    /// sends and the children receive up to `batch` messages per call (shmcast's batch API;
    /// other transports still move one message per call).
    pub fn start(
        kind: Kind,
        size: usize,
        consumers: usize,
        role: Role,
        batch: usize,
        opts: &Opts,
    ) -> io::Result<Stream> {
        assert!(
            consumers == 1 || kind.is_shmcast(),
            "fan-out is a shmcast figure"
        );
        let ring = RingSize {
            capacity: opts.stream_capacity,
            max_consumers: consumers.max(4) as u32,
        };
        let mut prep = transport::prepare(kind, size, Dir::ParentSends, ring)?;
        let fds: Vec<_> = prep.pass.iter().map(|f| f.as_raw_fd()).collect();
        let mut children = Vec::with_capacity(consumers);
        for _ in 0..consumers {
            children.push(Child::spawn(
                role, kind, size, opts.pin, batch, &prep.spec, &fds,
            )?);
        }
        prep.pass.clear();
        for c in &mut children {
            c.expect("ready")?;
        }
        let batch = batch.max(1);
        Ok(Stream {
            link: prep.link,
            children,
            batch,
            msgs: vec![vec![0x5a; size]; batch],
            seq: 0,
        })
    }

    /// Send `n` messages back to back and wait until every child has them.
    pub fn run(&mut self, n: u64) -> io::Result<StreamRun> {
        assert!(n > 0);
        let before = self.link.producer_stats();
        let t0 = sys::mono_ns();
        let mut i = 0;
        while i < n {
            let b = (n - i).min(self.batch as u64) as usize;
            for m in &mut self.msgs[..b] {
                i += 1;
                let tag = if i == n { self.seq | ACK } else { self.seq };
                m[..8].copy_from_slice(&tag.to_le_bytes());
                self.seq += 1;
            }
            if self.batch == 1 {
                self.link.send(&self.msgs[0])?;
            } else {
                self.link.send_batch(&self.msgs[..b])?;
            }
        }
        let t1 = sys::mono_ns();
        let mut done = Vec::with_capacity(self.children.len());
        for c in &mut self.children {
            let words = c.expect("ack")?;
            let at: u64 = words
                .get(1)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| io::Error::other("bad ack"))?;
            done.push(Duration::from_nanos(at.saturating_sub(t0)));
        }
        Ok(StreamRun {
            n,
            send: Duration::from_nanos(t1 - t0),
            done,
            stats: stats_delta(before, self.link.producer_stats()),
        })
    }

    /// Grow the batch until it takes about a tenth of `target`, then run one batch sized
    /// for `target` and return it. `max_n` caps the batch (e.g. to fit a ring).
    pub fn calibrated(&mut self, target: Duration, max_n: u64) -> io::Result<StreamRun> {
        let mut n = 64.min(max_n).max(1);
        loop {
            let r = self.run(n)?;
            let el = r.elapsed();
            if el >= target / 10 || n >= max_n {
                let scale = target.as_secs_f64() / el.as_secs_f64().max(1e-9);
                let m = ((n as f64 * scale) as u64).clamp(1, max_n);
                return self.run(m);
            }
            n = (n * 4).min(max_n);
        }
    }

    /// Send one message every `gap` (busy-waiting on the clock between sends) and return
    /// the batch (its `send` is the pacing duration).
    pub fn paced(&mut self, n: u64, gap: Duration) -> io::Result<StreamRun> {
        let before = self.link.producer_stats();
        let t0 = sys::mono_ns();
        let start = Instant::now();
        for i in 0..n {
            let due = start + gap * i as u32;
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            let tag = if i + 1 == n { self.seq | ACK } else { self.seq };
            self.msgs[0][..8].copy_from_slice(&tag.to_le_bytes());
            self.link.send(&self.msgs[0])?;
            self.seq += 1;
        }
        let t1 = sys::mono_ns();
        let mut done = Vec::new();
        for c in &mut self.children {
            let words = c.expect("ack")?;
            let at: u64 = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(t1);
            done.push(Duration::from_nanos(at.saturating_sub(t0)));
        }
        Ok(StreamRun {
            n,
            send: Duration::from_nanos(t1 - t0),
            done,
            stats: stats_delta(before, self.link.producer_stats()),
        })
    }

    /// Send one message tagged with the current `CLOCK_MONOTONIC` time (for idle children).
    pub fn send_stamp(&mut self) -> io::Result<()> {
        let now = sys::mono_ns();
        self.msgs[0][..8].copy_from_slice(&now.to_le_bytes());
        self.link.send(&self.msgs[0])
    }

    /// The children, to read their reports.
    pub fn children(&mut self) -> &mut [Child] {
        &mut self.children
    }

    /// Stop the children.
    pub fn finish(mut self) -> io::Result<()> {
        self.msgs[0][..8].copy_from_slice(&QUIT.to_le_bytes());
        self.link.send(&self.msgs[0])?;
        for c in &mut self.children {
            c.expect("done")?;
        }
        drop(self.link);
        for c in self.children {
            c.wait()?;
        }
        Ok(())
    }
}

/// One-way throughput of one transport and size, calibrated to `target`, sending `batch`
/// messages per call (1: one by one).
pub fn throughput(
    kind: Kind,
    size: usize,
    batch: usize,
    target: Duration,
    opts: &Opts,
) -> io::Result<StreamRun> {
    let mut s = Stream::start(kind, size, 1, Role::Sink, batch, opts)?;
    let r = s.calibrated(target, u64::MAX / 4)?;
    s.finish()?;
    Ok(r)
}

/// One-way throughput of each `(kind, batch)` in `rows` for `size`-byte messages,
/// interleaved: in each of `rounds` rounds every row gets a fresh child and a batch
/// calibrated to `target / rounds`. `progress` is told which row and round is next. A row
/// that fails keeps its error.
pub fn throughputs(
    rows: &[(Kind, usize)],
    size: usize,
    target: Duration,
    rounds: u64,
    opts: &Opts,
    progress: &mut dyn FnMut(usize, u64),
) -> Vec<Result<Vec<StreamRun>, String>> {
    let rounds = rounds.max(1);
    let mut out: Vec<Result<Vec<StreamRun>, String>> =
        rows.iter().map(|_| Ok(Vec::new())).collect();
    for round in 0..rounds {
        for (i, &(kind, batch)) in rows.iter().enumerate() {
            let Ok(runs) = &mut out[i] else { continue };
            progress(i, round);
            match throughput(kind, size, batch, target / rounds as u32, opts) {
                Ok(r) => runs.push(r),
                Err(e) => out[i] = Err(e.to_string()),
            }
        }
    }
    out
}

/// The median of `v` (NaN if empty).
pub fn median(v: Vec<f64>) -> f64 {
    median_of(v)
}

/// Median end-to-end rate over rounds.
pub fn median_rate(runs: &[StreamRun]) -> f64 {
    median(runs.iter().map(StreamRun::msgs_per_sec).collect())
}

/// Median over rounds of the per-round rate ratio `a / b`.
pub fn median_rate_ratio(a: &[StreamRun], b: &[StreamRun]) -> f64 {
    median(
        a.iter()
            .zip(b)
            .map(|(a, b)| a.msgs_per_sec() / b.msgs_per_sec())
            .collect(),
    )
}

/// Wake syscalls per message over all rounds (shmcast only).
pub fn wakes_per_msg(runs: &[StreamRun]) -> Option<f64> {
    let mut n = 0;
    let mut w = 0;
    for r in runs {
        let s = r.stats?;
        n += r.n;
        w += s.wake_syscalls;
    }
    Some(w as f64 / n.max(1) as f64)
}

/// What an idle consumer reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleFigure {
    /// CPU time (user + system) used while blocked, nanoseconds.
    pub cpu_ns: u64,
    /// How long it was blocked, nanoseconds.
    pub wall_ns: u64,
    /// From the send of the message that ended the wait to its receipt, nanoseconds.
    pub wake_ns: u64,
    /// Voluntary context switches while blocked.
    pub voluntary: u64,
    /// Involuntary context switches while blocked.
    pub involuntary: u64,
    /// Futex sleeps (shmcast only).
    pub sleeps: u64,
}

impl IdleFigure {
    /// CPU milliseconds used per second of idling.
    pub fn cpu_ms_per_s(&self) -> f64 {
        self.cpu_ns as f64 / 1e6 / (self.wall_ns as f64 / 1e9).max(1e-9)
    }
}

/// Block a consumer on an empty `kind` for `idle`, then wake it with one message.
pub fn idle(kind: Kind, idle: Duration, opts: &Opts) -> io::Result<IdleFigure> {
    let mut s = Stream::start(kind, 64, 1, Role::Idle, 1, opts)?;
    std::thread::sleep(idle);
    s.send_stamp()?;
    let w = s.children()[0].expect("idle")?;
    let num = |i: usize| -> io::Result<u64> {
        w.get(i)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| io::Error::other("bad idle report"))
    };
    let fig = IdleFigure {
        cpu_ns: num(1)?,
        wall_ns: num(2)?,
        wake_ns: num(3)?,
        voluntary: num(4)?,
        involuntary: num(5)?,
        sleeps: num(6)?,
    };
    s.finish()?;
    Ok(fig)
}

/// Single-process `memcpy` bandwidth in bytes/s, laid out as a producer's copies into a
/// ring: `size`-byte copies from one source buffer into consecutive record slots (a 24-byte
/// header, 8-byte aligned) of a `footprint`-byte destination, for about `target`.
///
/// The layout matters: on some CPUs (AMD Zen 3 here) `rep movsb` runs ~10x slower when
/// source and destination share their offset within a page, which naive 64 KiB copies
/// between page-aligned buffers always do.
pub fn memcpy_bandwidth(size: usize, footprint: usize, target: Duration) -> f64 {
    const HEADER: usize = 24;
    let stride = (size + HEADER + 7) & !7;
    let src = vec![0x5au8; size];
    let slots = (footprint / stride).max(1);
    let mut dst = vec![0u8; slots * stride];
    let slot = |s: usize| s * stride + HEADER..s * stride + HEADER + size;
    // Fault the destination in first, as a ring's pages are before it is measured.
    for s in 0..slots {
        dst[slot(s)].copy_from_slice(&src);
    }
    let mut copies = 0u64;
    let start = Instant::now();
    loop {
        for s in 0..slots {
            dst[slot(s)].copy_from_slice(std::hint::black_box(&src));
        }
        std::hint::black_box(&mut dst);
        copies += slots as u64;
        if start.elapsed() >= target {
            break;
        }
    }
    (copies * size as u64) as f64 / start.elapsed().as_secs_f64()
}

/// Ring B of the jitter figure: a pacer process producing one message every `gap` and a
/// consumer process with `WaitPolicy::Adaptive { spins: 0, yields: 0 }`, so it goes to
/// sleep on its futex before every message and is woken for each (with the default spin
/// and yield phases, a loaded 2-CPU machine often keeps it yielding until the next message
/// instead). Both unpinned: on this 2-CPU machine they run on ring A's CPUs whenever they
/// wake, as unrelated processes on a busy host would.
pub struct RingB {
    pacer: Child,
    sink: Child,
    started: Instant,
}

/// What ring B did while it ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingBReport {
    /// Messages the pacer sent.
    pub sent: u64,
    /// Futex sleeps of ring B's consumer (each ended by a wake-up).
    pub sleeps: u64,
    /// How long it ran.
    pub secs: f64,
}

impl RingB {
    /// Start the pacer (one 64 B message every `gap`) and its sleeping consumer.
    pub fn start(gap: Duration) -> io::Result<RingB> {
        let name = transport::unique_name("ringb");
        let spec = [name.clone(), gap.as_micros().max(1).to_string()];
        let mut pacer = Child::spawn(Role::Pacer, Kind::ShmAdaptive, 64, false, 1, &spec, &[])?;
        pacer.expect("ready")?;
        let sink_spec = [name, (64 << 10).to_string()];
        let mut sink = Child::spawn(Role::Sink, Kind::ShmSleep, 64, false, 1, &sink_spec, &[])?;
        sink.expect("ready")?;
        Ok(RingB {
            pacer,
            sink,
            started: Instant::now(),
        })
    }

    /// Stop both processes; what they did.
    pub fn stop(mut self) -> io::Result<RingBReport> {
        let secs = self.started.elapsed().as_secs_f64();
        self.pacer.close_stdin();
        let p = self.pacer.expect("done")?;
        let s = self.sink.expect("done")?;
        let num = |w: &[String], i: usize| -> io::Result<u64> {
            w.get(i)
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad report {w:?}")))
        };
        let report = RingBReport {
            sent: num(&p, 2)?,
            sleeps: num(&s, 2)?,
            secs,
        };
        self.pacer.wait()?;
        self.sink.wait()?;
        Ok(report)
    }
}

/// The jitter figure: busy-spin 64 B round trips on ring A with ring B idle and active.
#[derive(Clone, Debug, Default)]
pub struct JitterFigure {
    /// Ring A with no ring B.
    pub idle: RtFigure,
    /// Ring A while ring B runs.
    pub active: RtFigure,
    /// Median over rounds of the per-round ratio of p99.9s, active over idle.
    pub p999_ratio: f64,
    /// What ring B did, over all rounds.
    pub ring_b: RingBReport,
}

/// Measure [`JitterFigure`]: in each of `plan.rounds` rounds, ring A (shmcast busy-spin,
/// `plan.size` bytes, a fresh echo child) runs `plan.warmup` untimed and its share of
/// `plan.iters` timed round trips with ring B idle, then again with ring B running at one
/// message per `gap`. `progress` is told the phase and round.
pub fn jitter(
    plan: &RtPlan,
    gap: Duration,
    opts: &Opts,
    progress: &mut dyn FnMut(&str, u64),
) -> io::Result<JitterFigure> {
    let rounds = plan.rounds.max(1);
    let per = plan.iters.div_ceil(rounds).max(1);
    let budget = plan.budget / rounds as u32;
    let mut all = [Samples::default(), Samples::default()];
    let mut per_round: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut ring_b = RingBReport::default();
    for round in 0..rounds {
        for (phase, active) in [(0, false), (1, true)] {
            progress(
                if active {
                    "ring B active"
                } else {
                    "ring B idle"
                },
                round,
            );
            let b = if active {
                let b = RingB::start(gap)?;
                // Let ring B's consumer settle into its sleep/wake cycle.
                std::thread::sleep(Duration::from_millis(20));
                Some(b)
            } else {
                None
            };
            let mut rt = RoundTrip::start(Kind::ShmSpin, plan.size, opts)?;
            rt.warm_up(plan.warmup, budget)?;
            let mut s = Samples::with_capacity(per as usize);
            rt.timed(per, &mut s, budget)?;
            rt.finish()?;
            if let Some(b) = b {
                let r = b.stop()?;
                ring_b.sent += r.sent;
                ring_b.sleeps += r.sleeps;
                ring_b.secs += r.secs;
            }
            per_round[phase].push(s.quantile(0.999));
            all[phase].add(&s);
        }
    }
    let fig = |s: &mut Samples, rounds: &[u64]| RtFigure {
        samples: s.len() as u64,
        p50: s.quantile(0.5),
        p99: s.quantile(0.99),
        p999: s.quantile(0.999),
        max: s.max(),
        batched_p50: 0,
        rounds: rounds.to_vec(),
        wakes_per_msg: None,
    };
    let [mut idle, mut active] = all;
    Ok(JitterFigure {
        idle: fig(&mut idle, &per_round[0]),
        active: fig(&mut active, &per_round[1]),
        p999_ratio: median(
            per_round[1]
                .iter()
                .zip(&per_round[0])
                .map(|(&a, &b)| a as f64 / b.max(1) as f64)
                .collect(),
        ),
        ring_b,
    })
}

/// The core's eventcount barrier: `fence(SeqCst)` on both sides, its only mode since the
/// asymmetric variant (`membarrier` on the sleeper's side) was removed; printed so that
/// reports from older builds are told apart.
pub fn barrier_mode() -> String {
    "symmetric fences (the core's only mode)".into()
}
