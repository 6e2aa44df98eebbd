//! Every IPC transport, cross-process, one method, one run: round-trip latency
//! percentiles, one-way throughput, shmcast fan-out, idle cost, wake-up syscalls and the
//! jitter shmcast's sleepers inject into other rings; every figure as a ratio to the floor
//! and to ringfire measured in the same run; then the project's targets.
//!
//! ```sh
//! cargo run --release -p shmcast-bench --features peers --bin ipc_report -- --pin
//! cargo run --release -p shmcast-bench --bin ipc_report -- --pin --format csv
//! cargo run --release -p shmcast-bench --bin ipc_report -- --smoke       # seconds; CI
//! cargo run --release -p shmcast-bench --bin ipc_report -- --figures rt --sizes 64
//! ```
//!
//! The harness (transports, child processes, method) is the `shmcast-bench` library, shared
//! with `pingpong` and the criterion benches.

use shmcast_bench::args::{self, flag, opt, opt_none, ArgsError};
use shmcast_bench::child::Role;
use shmcast_bench::measure::{self, Opts, RtPlan, Stream, StreamRun};
use shmcast_bench::report::{self, progress};
use shmcast_bench::sys;
use shmcast_bench::table::{self, Cell, Fmt, Table};
use shmcast_bench::transport::{capacity_for, Kind};
use std::time::{Duration, Instant};

const ABOUT: &str = "Compare shmcast with every other IPC transport and the peers, cross-process, \
in one run: round trips, one-way throughput, fan-out, idle cost, jitter.";

const FIGURES: [&str; 5] = ["rt", "tput", "fanout", "idle", "jitter"];

const SPECS: &[args::Spec] = &[
    opt("iterations", "N", "10000", "Timed round trips per transport and size over all rounds (as many again in batches of 64)"),
    opt("warmup", "N", "2000", "Untimed round trips per transport, size and round"),
    opt("sizes", "LIST", "8,64,512,4096", "Round-trip message sizes in bytes"),
    opt("tput-sizes", "LIST", "8,64,512,4096,65536", "One-way throughput message sizes in bytes"),
    opt("fanout", "LIST", "1,2,4,8", "Consumer counts for the fan-out figure"),
    opt_none("transports", "LIST", "Transports to run (default: all that are built)"),
    opt("figures", "LIST", "rt,tput,fanout,idle,jitter", "Figures to produce: rt, tput, fanout, idle, jitter"),
    opt("ring-capacity", "BYTES", "1048576", "Ring size in bytes for throughput and gated fan-out (every ring-based transport; the memcpy reference uses the same footprint)"),
    opt("batch", "N", "64", "Messages per batch call in the batched rows"),
    flag("pin", "Pin this process to CPU 0 and every child to CPU 1"),
    opt("format", "FORMAT", "markdown", "Output format: markdown, csv or json"),
    opt("rounds", "N", "3", "Interleaved rounds: each transport once per round, in turn; ratios are medians of per-round ratios"),
    opt("budget-secs", "S", "0.5", "Stop any one round-trip phase of a transport after this long (over all rounds)"),
    opt("throughput-secs", "S", "0.2", "Target duration of each throughput measurement (over all rounds)"),
    opt("idle-secs", "S", "1", "How long each idle consumer blocks"),
    opt("jitter-iterations", "N", "2000000", "Jitter figure: timed 64 B round trips per phase over all rounds"),
    opt("jitter-gap-us", "US", "1000", "Jitter figure: ring B sends one message every this many microseconds"),
    flag("smoke", "Tiny counts, every code path once, no meaningful numbers (for CI)"),
];

/// A named baseline for ratios.
fn ratio(v: f64, base: Option<f64>) -> Cell {
    match base {
        Some(b) if b > 0.0 && v.is_finite() => Cell::Num(v / b, Fmt::Ratio),
        _ => Cell::Na(String::new()),
    }
}

fn opt_num(v: Option<f64>, f: Fmt) -> Cell {
    v.map_or(Cell::Na(String::new()), |v| Cell::Num(v, f))
}

fn main() {
    shmcast_bench::child::run_if_child();
    args::run(real_main);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Markdown,
    Csv,
    Json,
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::parse(
        ABOUT,
        "ipc_report [OPTIONS]",
        SPECS,
        0,
        std::env::args().skip(1),
    )?;
    let smoke = a.flag("smoke");
    let bad = |m: String| -> Box<dyn std::error::Error> { ArgsError::Bad(m).into() };
    let mut iterations: u64 = a.value("iterations")?;
    let mut warmup: u64 = a.value("warmup")?;
    let mut budget_secs: f64 = a.value("budget-secs")?;
    let mut throughput_secs: f64 = a.value("throughput-secs")?;
    let mut idle_secs: f64 = a.value("idle-secs")?;
    let mut rounds: u64 = a.value("rounds")?;
    let mut jitter_iterations: u64 = a.value("jitter-iterations")?;
    if rounds == 0 {
        return Err(bad("--rounds must be at least 1".into()));
    }
    if smoke {
        iterations = iterations.min(200);
        warmup = warmup.min(50);
        budget_secs = budget_secs.min(0.05);
        throughput_secs = throughput_secs.min(0.01);
        idle_secs = idle_secs.min(0.1);
        rounds = rounds.min(2);
        jitter_iterations = jitter_iterations.min(2000);
    }
    let sizes: Vec<usize> = a.list("sizes")?;
    let tput_sizes: Vec<usize> = a.list("tput-sizes")?;
    for &s in sizes.iter().chain(&tput_sizes) {
        if !(8..=1 << 20).contains(&s) {
            return Err(bad(format!("message sizes must be 8 B to 1 MiB, got {s}")));
        }
    }
    let fanout_counts: Vec<usize> = a.list("fanout")?;
    let format = match a.raw("format").unwrap_or("markdown") {
        "markdown" => Format::Markdown,
        "csv" => Format::Csv,
        "json" => Format::Json,
        f => {
            return Err(bad(format!(
                "unknown --format '{f}': markdown, csv or json"
            )))
        }
    };
    let names: Vec<String> = a.list("transports")?;
    let kinds: Vec<Kind> = if names.is_empty() {
        Kind::ALL.into_iter().filter(|k| k.available()).collect()
    } else {
        let mut v = Vec::new();
        for n in &names {
            let k = Kind::parse(n)
                .ok_or_else(|| bad(format!("unknown transport '{n}'; known: {}", Kind::names())))?;
            if !k.available() {
                return Err(bad(format!("{n} is not built: add --features peers")));
            }
            v.push(k);
        }
        v
    };
    let figures: Vec<String> = a.list("figures")?;
    if let Some(f) = figures.iter().find(|f| !FIGURES.contains(&f.as_str())) {
        return Err(bad(format!(
            "unknown figure '{f}'; known: {}",
            FIGURES.join(", ")
        )));
    }
    let want = |f: &str| figures.iter().any(|x| x == f);
    let pin = a.flag("pin");
    let batch: usize = a.value("batch")?;
    if pin {
        sys::pin_to(0)?;
    }
    let opts = Opts {
        pin,
        stream_capacity: a.value("ring-capacity")?,
        ..Opts::default()
    };
    let quiet = format != Format::Markdown;
    let started = Instant::now();
    let timer = sys::timer_overhead_ns();
    let mut meta = vec![
        ("machine", sys::machine()),
        ("load_average_at_start", sys::load_average()),
        (
            "pinning",
            if pin {
                format!("parent cpu 0, children cpu {}", sys::child_cpu())
            } else {
                "none".into()
            },
        ),
        ("rounds", rounds.to_string()),
        (
            "peers",
            match (cfg!(feature = "ringfire"), cfg!(feature = "iceoryx2")) {
                (true, true) => "ringfire 0.5.2, iceoryx2 0.10".to_string(),
                (true, false) => "ringfire 0.5.2 (iceoryx2 not built)".into(),
                (false, true) => "iceoryx2 0.10 (ringfire not built)".into(),
                (false, false) => "not built (add --features peers)".into(),
            },
        ),
        ("barrier", measure::barrier_mode()),
        ("timer_overhead_ns", format!("{timer:.0}")),
        ("smoke", smoke.to_string()),
    ];
    let mut tables = Vec::new();
    let mut targets = Targets::default();
    let mut failures: Vec<String> = Vec::new();
    let budget = Duration::from_secs_f64(budget_secs);
    let target = Duration::from_secs_f64(throughput_secs);

    // Round trips.
    if want("rt") {
        for &size in &sizes {
            let plan = RtPlan {
                size,
                iters: iterations,
                warmup,
                budget,
                rounds,
            };
            let rt_kinds: Vec<Kind> = kinds
                .iter()
                .copied()
                .filter(|k| k.round_trips() && shmcast_bench::transport::probe(*k, size).is_ok())
                .collect();
            let figs = report::round_trips(&rt_kinds, &plan, &opts, quiet);
            failures.extend(figs.iter().filter_map(|(k, f)| {
                f.as_ref()
                    .err()
                    .map(|e| format!("rt {size} B {}: {e}", k.name()))
            }));
            if size == 64 {
                targets.rt_spin_vs_ringfire =
                    report::rt_ratio(&figs, Kind::ShmSpin, Kind::Ringfire);
                targets.rt_spin_vs_floor = report::rt_ratio(&figs, Kind::ShmSpin, Kind::Floor);
                targets.rt_adaptive_vs_spin =
                    report::rt_ratio(&figs, Kind::ShmAdaptive, Kind::ShmSpin);
                let p999 = |k: Kind| {
                    figs.iter()
                        .find(|(x, _)| *x == k)
                        .and_then(|(_, f)| f.as_ref().ok())
                        .map(|f| f.p999 as f64)
                };
                targets.rt_p999_spin_vs_ringfire = p999(Kind::ShmSpin)
                    .zip(p999(Kind::Ringfire))
                    .map(|(a, b)| a / b);
            }
            tables.push(report::rt_table(size, rounds, timer, &figs));
        }
    }

    // One-way throughput.
    let mut wake_rows: Vec<(String, f64, f64)> = Vec::new();
    if want("tput") {
        for &size in &tput_sizes {
            let plan: Vec<(Kind, usize)> = report::tput_plan(&kinds, batch.max(2))
                .into_iter()
                .filter(|&(k, _)| shmcast_bench::transport::probe(k, size).is_ok())
                .collect();
            let rows = report::throughputs(&plan, size, target, rounds, &opts, quiet);
            failures.extend(rows.iter().filter_map(|r| {
                r.runs
                    .as_ref()
                    .err()
                    .map(|e| format!("tput {size} B {}: {e}", r.label))
            }));
            progress(quiet, format_args!("throughput {size} B: memcpy"));
            let footprint = capacity_for(opts.stream_capacity, size);
            let memcpy =
                measure::memcpy_bandwidth(size, footprint, target.max(Duration::from_millis(20)));
            let ratio_of = |k: Kind, kb: usize, base: Kind, bb: usize| {
                Some(measure::median_rate_ratio(
                    report::tput_runs(&rows, k, kb)?,
                    report::tput_runs(&rows, base, bb)?,
                ))
            };
            let b = batch.max(2);
            if size == 64 {
                targets.tput64_single_vs_ringfire = ratio_of(Kind::ShmSpin, 1, Kind::Ringfire, 1);
                targets.tput64_batched_vs_floor = ratio_of(Kind::ShmSpin, b, Kind::StreamFloor, 1);
                for r in rows.iter().filter(|r| r.kind.is_shmcast()) {
                    if let Ok(runs) = &r.runs {
                        if let Some(w) = measure::wakes_per_msg(runs) {
                            let n: u64 = runs.iter().map(|x| x.n).sum();
                            wake_rows.push((format!("stream 64 B, {}", r.label), n as f64, w));
                        }
                    }
                }
            }
            if size == 8 {
                targets.tput8_batched =
                    report::tput_runs(&rows, Kind::ShmSpin, b).map(measure::median_rate);
            }
            if size == 65536 {
                let best = rows
                    .iter()
                    .filter(|r| r.kind.is_shmcast())
                    .filter_map(|r| r.runs.as_ref().ok())
                    .map(|r| measure::median_rate(r) * size as f64)
                    .reduce(f64::max);
                targets.tput64k_vs_memcpy = best.map(|b| b / memcpy);
            }
            tables.push(report::tput_table(size, rounds, &rows, Some(memcpy)));
        }
    }

    // Fan-out.
    if want("fanout") {
        let mut t = Table::new(
            "shmcast fan-out, 64 B, adaptive consumers",
            "One producer, k consumer processes (pinned: all on CPU 1). gated: 1 MiB ring, the \
             producer is gated by the slowest consumer, so consumers' CPU bounds it. ungated: \
             the ring holds the whole batch, so the producer runs at its own cost while k \
             consumers read the lines it writes (median of 3 batches).",
            &[
                ("consumers", "consumers"),
                ("producer msgs/s (gated)", "producer_gated_msgs_per_s"),
                ("slowest consumer msgs/s", "slowest_consumer_msgs_per_s"),
                ("÷ 1 consumer", "gated_ratio_to_1"),
                ("producer msgs/s (ungated)", "producer_ungated_msgs_per_s"),
                ("÷ 1 consumer", "ungated_ratio_to_1"),
                ("wake syscalls/msg", "wake_syscalls_per_msg"),
            ],
        );
        let mut base: Option<(f64, f64)> = None;
        for &k in &fanout_counts {
            progress(quiet, format_args!("fan-out: {k} consumers"));
            let (gated, ungated) = fanout(k, target, &opts, smoke)?;
            if k == 1 {
                base = Some((gated.send_rate(), ungated));
            }
            if k == 8 {
                if let Some((g1, u1)) = base {
                    targets.fanout8_gated = Some(gated.send_rate() / g1);
                    targets.fanout8_ungated = Some(ungated / u1);
                }
            }
            if let Some(w) = gated.wakes_per_msg() {
                wake_rows.push((format!("fan-out to {k}, adaptive, 64 B"), gated.n as f64, w));
            }
            t.row(vec![
                Cell::Num(k as f64, Fmt::Plain(0)),
                Cell::Num(gated.send_rate(), Fmt::Rate),
                Cell::Num(gated.msgs_per_sec(), Fmt::Rate),
                ratio(gated.send_rate(), base.map(|b| b.0)),
                Cell::Num(ungated, Fmt::Rate),
                ratio(ungated, base.map(|b| b.1)),
                opt_num(gated.wakes_per_msg(), Fmt::Plain(4)),
            ]);
        }
        tables.push(t);
    }

    // Idle cost and wake-ups.
    if want("idle") {
        let idle_for = Duration::from_secs_f64(idle_secs);
        let mut t = Table::new(
            format!(
                "Idle cost: a consumer blocked {:.1} s on an empty transport",
                idle_secs
            ),
            "CPU time (getrusage, user + system) used while blocked, and how late it woke for \
             the message that ended the wait (send to receipt). Blocking figures include the \
             VM's wake-up from halt.",
            &[
                ("transport", "transport"),
                ("CPU ms per s", "cpu_ms_per_s"),
                ("wake-up latency", "wake_latency_ns"),
                ("futex sleeps", "futex_sleeps"),
                ("voluntary ctx switches", "voluntary_switches"),
                ("involuntary ctx switches", "involuntary_switches"),
            ],
        );
        for kind in [Kind::ShmSpin, Kind::ShmAdaptive, Kind::ShmSleep, Kind::Pipe] {
            if !kinds.contains(&kind) {
                continue;
            }
            progress(quiet, format_args!("idle: {}", kind.name()));
            let f = measure::idle(kind, idle_for, &opts)?;
            if kind == Kind::ShmSleep {
                targets.halt_wakeup_ns = Some(f.wake_ns as f64);
            }
            t.row(vec![
                Cell::text(kind.name()),
                Cell::Num(f.cpu_ms_per_s(), Fmt::Plain(2)),
                Cell::Num(f.wake_ns as f64, Fmt::Ns),
                Cell::Num(f.sleeps as f64, Fmt::Plain(0)),
                Cell::Num(f.voluntary as f64, Fmt::Plain(0)),
                Cell::Num(f.involuntary as f64, Fmt::Plain(0)),
            ]);
        }
        tables.push(t);

        // Paced sends: does a default (adaptive) consumer that keeps up cost wake syscalls?
        if kinds.contains(&Kind::ShmAdaptive) {
            let mut s = Stream::start(Kind::ShmAdaptive, 64, 1, Role::Sink, 1, &opts)?;
            for gap_us in [1u64, 10, 100, 1000] {
                progress(quiet, format_args!("paced sends: every {gap_us} µs"));
                let gap = Duration::from_micros(gap_us);
                let span = if smoke { 0.01 } else { 0.2 };
                let n = ((span / gap.as_secs_f64()) as u64).clamp(20, 200_000);
                let r = s.paced(n, gap)?;
                let w = r.wakes_per_msg().unwrap_or(f64::NAN);
                if gap_us == 10 {
                    targets.paced_10us_wakes = Some(w);
                }
                wake_rows.push((
                    format!("paced, one 64 B message every {gap_us} µs, adaptive"),
                    n as f64,
                    w,
                ));
            }
            s.finish()?;
        }
    }
    if !wake_rows.is_empty() {
        let mut t = Table::new(
            "Wake-up syscalls per message (producer's FUTEX_WAKE count)",
            "Zero while consumers keep up (spinning or yielding when a message lands); one per \
             message when a consumer had gone to sleep first (always-sleep policy, or an \
             adaptive consumer idle longer than its spin + yield phase).",
            &[
                ("run", "run"),
                ("messages", "messages"),
                ("wake syscalls/msg", "wake_syscalls_per_msg"),
            ],
        );
        for (label, n, w) in wake_rows {
            t.row(vec![
                Cell::text(label),
                Cell::Num(n, Fmt::Plain(0)),
                Cell::Num(w, Fmt::Plain(4)),
            ]);
        }
        tables.push(t);
    }
    // Jitter injected into others.
    if want("jitter") {
        let plan = RtPlan {
            size: 64,
            iters: jitter_iterations,
            warmup,
            // Every planned round trip runs (the budget is only a guard): p99.9 needs them.
            budget: Duration::from_secs(60 * rounds),
            rounds,
        };
        let gap = Duration::from_micros(a.value::<u64>("jitter-gap-us")?.max(1));
        let j = measure::jitter(&plan, gap, &opts, &mut |phase, r| {
            progress(
                quiet,
                format_args!("jitter, round {}/{rounds}: {phase}", r + 1),
            )
        })?;
        let wakes_per_s = j.ring_b.sleeps as f64 / j.ring_b.secs.max(1e-9);
        targets.jitter_p999_ratio = Some(j.p999_ratio);
        let mut t = Table::new(
            "Jitter: ring A's busy-spin 64 B round trip while ring B's consumer sleeps and wakes",
            format!(
                "Ring A: shmcast busy-spin round trips between this process and an echo child \
                 (pinning as above). Ring B: in two other, unpinned processes, a producer sends \
                 one 64 B message every {} µs and a consumer (Adaptive, no spin, no yield) \
                 sleeps on its futex before each (it slept {} times in {:.1} s: {wakes_per_s:.0} wake-ups/s). \
                 Phases interleaved over {rounds} rounds, fresh processes each; p99.9 ratio: \
                 median of per-round ratios. Barrier mode: {}.",
                gap.as_micros(),
                j.ring_b.sleeps,
                j.ring_b.secs,
                measure::barrier_mode()
            ),
            &[
                ("ring B", "ring_b"),
                ("p50", "p50_ns"),
                ("p99", "p99_ns"),
                ("p99.9", "p999_ns"),
                ("max", "max_ns"),
                ("p99.9 ÷ idle", "p999_ratio_to_idle"),
                ("samples", "samples"),
            ],
        );
        for (label, f, r) in [("idle", &j.idle, 1.0), ("active", &j.active, j.p999_ratio)] {
            t.row(vec![
                Cell::text(label),
                Cell::Num(f.p50 as f64, Fmt::Ns),
                Cell::Num(f.p99 as f64, Fmt::Ns),
                Cell::Num(f.p999 as f64, Fmt::Ns),
                Cell::Num(f.max as f64, Fmt::Ns),
                Cell::Num(r, Fmt::Ratio),
                Cell::Num(f.samples as f64, Fmt::Plain(0)),
            ]);
        }
        tables.push(t);
    }

    tables.push(targets.table());
    progress(quiet, format_args!(""));

    meta.push(("load_average_at_end", sys::load_average()));
    meta.push((
        "duration_s",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    ));
    match format {
        Format::Markdown => {
            println!("# shmcast IPC report\n");
            for (k, v) in &meta {
                println!("- {k}: {v}");
            }
            println!();
            for t in tables.iter().filter(|t| !t.is_empty()) {
                println!("{}", t.markdown());
            }
        }
        Format::Csv => print!("{}", table::csv_document(&tables)),
        Format::Json => print!("{}", table::json_document(&meta, &tables)),
    }
    if !failures.is_empty() {
        return Err(format!("some measurements failed: {}", failures.join("; ")).into());
    }
    Ok(())
}

/// The fan-out figure for `k` consumers: a gated batch (1 MiB ring) and the producer's
/// ungated rate (a ring that holds the whole batch; median of 3).
fn fanout(
    k: usize,
    target: Duration,
    opts: &Opts,
    smoke: bool,
) -> std::io::Result<(StreamRun, f64)> {
    let mut s = Stream::start(Kind::ShmAdaptive, 64, k, Role::Sink, 1, opts)?;
    let gated = s.calibrated(target, u64::MAX / 4)?;
    s.finish()?;

    let big = Opts {
        stream_capacity: if smoke { 1 << 20 } else { 32 << 20 },
        ..*opts
    };
    // 88-byte records (24-byte header + 64); half the ring, so the gate never closes.
    let n = (big.stream_capacity as u64 / 88 / 2).max(1);
    let mut s = Stream::start(Kind::ShmAdaptive, 64, k, Role::Sink, 1, &big)?;
    s.run(n)?; // fault the ring in
    let mut rates: Vec<f64> = (0..3)
        .map(|_| s.run(n).map(|r| r.send_rate()))
        .collect::<Result<_, _>>()?;
    s.finish()?;
    rates.sort_by(f64::total_cmp);
    Ok((gated, rates[1]))
}

/// The project's performance targets (issue 12), filled in as figures are measured.
#[derive(Default)]
struct Targets {
    rt_spin_vs_ringfire: Option<f64>,
    rt_spin_vs_floor: Option<f64>,
    rt_p999_spin_vs_ringfire: Option<f64>,
    rt_adaptive_vs_spin: Option<f64>,
    tput64_single_vs_ringfire: Option<f64>,
    tput64_batched_vs_floor: Option<f64>,
    tput8_batched: Option<f64>,
    tput64k_vs_memcpy: Option<f64>,
    fanout8_gated: Option<f64>,
    fanout8_ungated: Option<f64>,
    paced_10us_wakes: Option<f64>,
    jitter_p999_ratio: Option<f64>,
    halt_wakeup_ns: Option<f64>,
}

impl Targets {
    fn table(&self) -> Table {
        let mut t = Table::new(
            "Targets (measured in this run; not asserted)",
            "Ratios of batched-p50 round trips (p99.9: of the percentiles) and of throughputs \
             measured above, in the same run.",
            &[
                ("target", "target"),
                ("measured", "measured"),
                ("goal", "goal"),
                ("met", "met"),
            ],
        );
        let mut row = |name: &str, v: Option<f64>, goal: &str, ok: fn(f64) -> bool, f: Fmt| {
            t.row(vec![
                Cell::text(name),
                opt_num(v, f),
                Cell::text(goal),
                Cell::text(match v {
                    Some(_) if goal == "-" => "-",
                    Some(v) if ok(v) => "yes",
                    Some(_) => "NO",
                    None => "not run",
                }),
            ]);
        };
        let r = Fmt::Ratio;
        row(
            "64 B round trip p50, shmcast-spin ÷ ringfire",
            self.rt_spin_vs_ringfire,
            "≤ 0.9x",
            |v| v <= 0.9,
            r,
        );
        row(
            "64 B round trip p50, shmcast-spin ÷ floor",
            self.rt_spin_vs_floor,
            "≤ 1.2x",
            |v| v <= 1.2,
            r,
        );
        row(
            "64 B round trip p99.9, shmcast-spin ÷ ringfire",
            self.rt_p999_spin_vs_ringfire,
            "≤ 1x",
            |v| v <= 1.0,
            r,
        );
        row(
            "64 B round trip p50, shmcast-adaptive ÷ shmcast-spin",
            self.rt_adaptive_vs_spin,
            "≤ 1.1x",
            |v| v <= 1.1,
            r,
        );
        row(
            "64 B one-way single, shmcast-spin ÷ ringfire",
            self.tput64_single_vs_ringfire,
            "≥ 3x",
            |v| v >= 3.0,
            r,
        );
        row(
            "64 B one-way batched, shmcast-spin ÷ stream-floor",
            self.tput64_batched_vs_floor,
            "≥ 0.8x",
            |v| v >= 0.8,
            r,
        );
        row(
            "8 B one-way batched, shmcast-spin msgs/s",
            self.tput8_batched,
            "≥ 100 M/s",
            |v| v >= 100e6,
            Fmt::Rate,
        );
        row(
            "64 KiB one-way, shmcast (best) ÷ memcpy",
            self.tput64k_vs_memcpy,
            "≥ 0.8x",
            |v| v >= 0.8,
            r,
        );
        row(
            "producer rate, 8 consumers ÷ 1 (gated)",
            self.fanout8_gated,
            "≥ 0.8x",
            |v| v >= 0.8,
            r,
        );
        row(
            "producer rate, 8 consumers ÷ 1 (ungated)",
            self.fanout8_ungated,
            "≥ 0.8x",
            |v| v >= 0.8,
            r,
        );
        row(
            "wake syscalls/msg, adaptive consumer keeping up (10 µs gaps)",
            self.paced_10us_wakes,
            "0",
            |v| v == 0.0,
            Fmt::Plain(4),
        );
        row(
            "jitter: ring A p99.9 with ring B active ÷ idle",
            self.jitter_p999_ratio,
            "-",
            |_| true,
            r,
        );
        row(
            "(context) wake-up latency of a futex sleeper after idling",
            self.halt_wakeup_ns,
            "-",
            |_| true,
            Fmt::Ns,
        );
        t
    }
}
