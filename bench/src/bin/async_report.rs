//! shmcast's asynchronous consumer (feature `tokio`) against the blocking adaptive consumer
//! and a tokio `UnixStream`, cross-process, in one run (issue 14): wake-up latency after
//! idling, the CPU an idle consumer costs, and syscalls per message while data flows.
//!
//! ```sh
//! cargo run --release -p shmcast-bench --bin async_report             # ~1.5 min
//! cargo run --release -p shmcast-bench --bin async_report -- --smoke  # seconds; CI
//! cargo run --release -p shmcast-bench --bin async_report -- --figures wake --samples 5000
//! ```
//!
//! The method is in `shmcast_bench::asynch` and in `bench/README.md` ("Async wake-up").

use shmcast_bench::args::{self, flag, opt, opt_none, ArgsError};
use shmcast_bench::asynch::{self, Counters, Opts, Pace, Variant, WakeFigure, WakePlan};
use shmcast_bench::report::progress;
use shmcast_bench::sys;
use shmcast_bench::table::{self, Cell, Fmt, Table};
use std::time::{Duration, Instant};

const ABOUT: &str = "shmcast's async consumer against the blocking adaptive consumer and a tokio \
UnixStream, cross-process, in one run: wake-up latency after idling, idle CPU, syscalls per \
message.";

const FIGURES: [&str; 3] = ["wake", "idle", "syscalls"];

const SPECS: &[args::Spec] = &[
    opt("figures", "LIST", "wake,idle,syscalls", "Figures to produce: wake, idle, syscalls"),
    opt_none("variants", "LIST", "Consumers to run (default: all)"),
    opt("samples", "N", "2000", "Wake-up: timed messages per consumer over all rounds"),
    opt("rounds", "N", "5", "Wake-up: interleaved rounds (each consumer once per round, a fresh process each)"),
    opt("warmup", "N", "10", "Wake-up: untimed messages at the start of each consumer process"),
    opt("gap-min-us", "US", "1000", "Wake-up: shortest idle gap before a message (the consumer must be asleep)"),
    opt("gap-max-us", "US", "5000", "Wake-up: longest idle gap (each gap is uniform in [min, max])"),
    opt("idle-secs", "S", "10", "Idle: how long each consumer blocks on an empty transport"),
    opt("flow-messages", "N", "200000", "Syscalls: messages sent back to back"),
    opt("paced-gaps-us", "LIST", "100,1000", "Syscalls: moderate rates, at most one message every this long"),
    opt("paced-secs", "S", "2", "Syscalls: how long each paced run sends (at least 20 messages)"),
    opt("ring-capacity", "BYTES", "1048576", "Ring size in bytes (shmcast consumers)"),
    opt("strace", "MODE", "auto", "Syscalls: also count every syscall with `strace -f -c` attached to the consumer: auto (if installed), on, off"),
    flag("no-pin", "Do not pin (default: this process on CPU 0, every consumer on CPU 1)"),
    opt("format", "FORMAT", "markdown", "Output format: markdown, csv or json"),
    flag("smoke", "Tiny counts, every code path once, no meaningful numbers (for CI)"),
];

fn main() {
    asynch::run_if_async_child();
    args::run(real_main);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Markdown,
    Csv,
    Json,
}

fn na() -> Cell {
    Cell::Na(String::new())
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::parse(
        ABOUT,
        "async_report [OPTIONS]",
        SPECS,
        0,
        std::env::args().skip(1),
    )?;
    let bad = |m: String| -> Box<dyn std::error::Error> { ArgsError::Bad(m).into() };
    let smoke = a.flag("smoke");
    let mut samples: u64 = a.value("samples")?;
    let mut rounds: u64 = a.value("rounds")?;
    let mut warmup: u64 = a.value("warmup")?;
    let gap_min_us: u64 = a.value("gap-min-us")?;
    let mut gap_max_us: u64 = a.value("gap-max-us")?;
    let mut idle_secs: f64 = a.value("idle-secs")?;
    let mut flow_n: u64 = a.value("flow-messages")?;
    let mut paced_secs: f64 = a.value("paced-secs")?;
    let paced_gaps: Vec<u64> = a.list("paced-gaps-us")?;
    if rounds == 0 || samples == 0 || flow_n == 0 {
        return Err(bad(
            "--rounds, --samples and the message counts must be at least 1".into(),
        ));
    }
    if gap_min_us == 0 || gap_max_us < gap_min_us {
        return Err(bad("need 0 < --gap-min-us <= --gap-max-us".into()));
    }
    if !(idle_secs.is_finite() && idle_secs >= 0.0) {
        return Err(bad(format!("invalid --idle-secs {idle_secs}")));
    }
    if !(paced_secs.is_finite() && paced_secs >= 0.0) || paced_gaps.contains(&0) {
        return Err(bad("need --paced-secs >= 0 and gaps > 0".into()));
    }
    if smoke {
        samples = samples.min(20);
        rounds = rounds.min(2);
        warmup = warmup.min(3);
        gap_max_us = gap_max_us.min(gap_min_us.max(1000) * 2).max(gap_min_us);
        idle_secs = idle_secs.min(0.2);
        flow_n = flow_n.min(2000);
        paced_secs = paced_secs.min(0.02);
    }
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
    let names: Vec<String> = a.list("variants")?;
    let variants: Vec<Variant> = if names.is_empty() {
        Variant::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                Variant::parse(n).ok_or_else(|| {
                    bad(format!(
                        "unknown variant '{n}'; known: {}",
                        Variant::names()
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let figures: Vec<String> = a.list("figures")?;
    if let Some(f) = figures.iter().find(|f| !FIGURES.contains(&f.as_str())) {
        return Err(bad(format!(
            "unknown figure '{f}'; known: {}",
            FIGURES.join(", ")
        )));
    }
    let want = |f: &str| figures.iter().any(|x| x == f);
    let strace = match a.raw("strace").unwrap_or("auto") {
        "off" => None,
        "auto" => asynch::find_strace(),
        "on" => Some(
            asynch::find_strace()
                .ok_or_else(|| bad("--strace on: strace is not on the PATH".into()))?,
        ),
        m => return Err(bad(format!("unknown --strace '{m}': auto, on or off"))),
    };
    let pin = !a.flag("no-pin");
    if pin {
        sys::pin_to(0)?;
    }
    let opts = Opts {
        pin,
        capacity: a.value("ring-capacity")?,
    };
    let quiet = format != Format::Markdown;
    let started = Instant::now();
    let halt_note = "An idle VM wakes slowly from halt (tens of µs: the sleeping vCPU exits to \
                     the hypervisor and must be woken by an IPI), so these are blocking figures \
                     dominated by that; the busy-spin figures of ipc_report are the \
                     sub-microsecond ones.";
    let mut meta = vec![
        ("machine", sys::machine()),
        ("load_average_at_start", sys::load_average()),
        (
            "pinning",
            if pin {
                format!("parent cpu 0, consumers cpu {}", sys::child_cpu())
            } else {
                "none".into()
            },
        ),
        (
            "waiter",
            if shmcast::asynch::waiter_stats().futex_waitv {
                "futex_waitv (one waiter thread per process)".to_string()
            } else {
                "FUTEX_WAIT (one waiter thread per futex word)".to_string()
            },
        ),
        (
            "strace",
            strace
                .as_ref()
                .map_or("not used".into(), |p| p.display().to_string()),
        ),
        ("smoke", smoke.to_string()),
    ];
    let mut tables = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    if want("wake") {
        let plan = WakePlan {
            samples,
            rounds,
            warmup,
            gap_min: Duration::from_micros(gap_min_us),
            gap_max: Duration::from_micros(gap_max_us),
        };
        let figs = asynch::wake_latency(&variants, &plan, &opts, &mut |v, r| {
            progress(
                quiet,
                format_args!("wake-up, round {}/{rounds}: {}", r + 1, v.name()),
            )
        });
        if let Some(w) = figs
            .iter()
            .filter(|(v, _)| *v == Variant::AsyncMt || *v == Variant::UnixMt)
            .find_map(|(_, f)| f.as_ref().ok())
        {
            meta.push(("tokio_multi_thread_workers", w.workers.to_string()));
        }
        failures.extend(
            figs.iter()
                .filter_map(|(v, f)| f.as_ref().err().map(|e| format!("wake {}: {e}", v.name()))),
        );
        tables.push(wake_table(&figs, &plan, halt_note));
    }

    if want("idle") {
        progress(
            quiet,
            format_args!("idle: {} consumers for {idle_secs} s", variants.len()),
        );
        let figs = asynch::idle(&variants, Duration::from_secs_f64(idle_secs), &opts);
        failures.extend(
            figs.iter()
                .filter_map(|(v, f)| f.as_ref().err().map(|e| format!("idle {}: {e}", v.name()))),
        );
        tables.push(idle_table(&figs, idle_secs));
    }

    if want("syscalls") {
        let mut t = syscalls_table(strace.is_some());
        let mut paces = vec![(Pace::Flowing, flow_n)];
        for &g in &paced_gaps {
            let n = ((paced_secs * 1e6 / g as f64) as u64).max(20);
            paces.push((Pace::Every(Duration::from_micros(g)), n));
        }
        for (pace, n) in paces {
            for &v in &variants {
                let label = pace_label(pace);
                progress(quiet, format_args!("syscalls, {label}: {}", v.name()));
                let plain = asynch::count(v, pace, n, &opts, None);
                let traced = strace.as_deref().map(|s| {
                    progress(
                        quiet,
                        format_args!("syscalls, {label}, under strace: {}", v.name()),
                    );
                    asynch::count(v, pace, n, &opts, Some(s))
                });
                match (&plain, &traced) {
                    (Err(e), _) => failures.push(format!("syscalls {label} {}: {e}", v.name())),
                    (_, Some(Err(e))) => {
                        failures.push(format!("syscalls {label} {} (strace): {e}", v.name()))
                    }
                    _ => {}
                }
                syscalls_row(&mut t, v, pace, &plain, traced.as_ref());
            }
        }
        tables.push(t);
    }

    progress(quiet, format_args!(""));
    meta.push(("load_average_at_end", sys::load_average()));
    meta.push((
        "duration_s",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    ));
    match format {
        Format::Markdown => {
            println!("# shmcast async report\n");
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

fn wake_table(
    figs: &[(Variant, Result<WakeFigure, String>)],
    plan: &WakePlan,
    halt_note: &str,
) -> Table {
    let mut t = Table::new(
        "Wake-up latency after idling, 64 B",
        format!(
            "The producer process (blocking shmcast Producer, or a std UnixStream) sleeps a random \
             {}-{} µs, so the consumer has gone to sleep (ring waits/msg and the voluntary context \
             switches show it did), then reads CLOCK_MONOTONIC and sends it; the consumer process \
             records its own CLOCK_MONOTONIC minus the stamp on receipt. p50/p99/max: exact, every \
             sample of every round; ≥ 0.5 ms: the share of samples that late; median round p50/p99 \
             and ÷ blocking: medians over {} interleaved rounds (a fresh consumer each round, {} \
             untimed messages first). mt/ct: tokio multi-thread/current-thread runtime, \
             recv().await in a spawned task. ring waits/msg: recv calls that found the ring empty \
             (async: waits registered with the waiter thread; blocking: futex sleeps). CPU/msg: \
             the consumer process's CPU time (every thread) per message, idle gaps included (the \
             adaptive consumer's spin and yield phase after each message, liveness ticks). \
             {halt_note}",
            plan.gap_min.as_micros(),
            plan.gap_max.as_micros(),
            plan.rounds,
            plan.warmup,
        ),
        &[
            ("consumer", "consumer"),
            ("p50", "p50_ns"),
            ("p99", "p99_ns"),
            ("max", "max_ns"),
            ("≥ 0.5 ms", "share_at_least_500us"),
            ("median round p50", "median_round_p50_ns"),
            ("median round p99", "median_round_p99_ns"),
            ("p50 ÷ blocking", "p50_ratio_to_blocking"),
            ("ring waits/msg", "ring_waits_per_msg"),
            ("waiter wake-ups/msg", "waiter_wakeups_per_msg"),
            ("vol. ctx switches/msg", "voluntary_switches_per_msg"),
            ("CPU/msg", "cpu_ns_per_msg"),
            ("samples", "samples"),
        ],
    );
    let blocking = figs
        .iter()
        .find(|(v, _)| *v == Variant::Blocking)
        .and_then(|(_, f)| f.as_ref().ok());
    let med = |v: &[u64]| shmcast_bench::stats::median(v.iter().map(|&x| x as f64).collect());
    for (v, f) in figs {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                let mut row = vec![Cell::text(v.name()), Cell::Na(e.clone())];
                row.extend((0..11).map(|_| na()));
                t.row(row);
                continue;
            }
        };
        let c = &f.counters;
        t.row(vec![
            Cell::text(v.name()),
            Cell::Num(f.p50 as f64, Fmt::Ns),
            Cell::Num(f.p99 as f64, Fmt::Ns),
            Cell::Num(f.max as f64, Fmt::Ns),
            Cell::Num(f.slow as f64 / f.samples.max(1) as f64, Fmt::Plain(3)),
            Cell::Num(med(&f.round_p50), Fmt::Ns),
            Cell::Num(med(&f.round_p99), Fmt::Ns),
            blocking.map_or(na(), |b| Cell::Num(f.p50_ratio_to(b), Fmt::Ratio)),
            if v.is_ring() {
                Cell::Num(f.per_msg(c.ring_sleeps), Fmt::Plain(2))
            } else {
                na()
            },
            if v.is_async_ring() {
                Cell::Num(f.per_msg(c.waiter_wakeups), Fmt::Plain(2))
            } else {
                na()
            },
            Cell::Num(f.per_msg(c.voluntary), Fmt::Plain(2)),
            Cell::Num(f.per_msg(c.cpu_ns), Fmt::Ns),
            Cell::Num(f.samples as f64, Fmt::Plain(0)),
        ]);
    }
    t
}

fn idle_table(figs: &[(Variant, Result<asynch::IdleFigure, String>)], secs: f64) -> Table {
    let mut t = Table::new(
        format!("Idle consumer: CPU time over {secs} s on an empty transport"),
        "Every consumer process blocks at once (pinned: all on CPU 1), nothing is sent, then \
         one message ends the wait. CPU: getrusage(RUSAGE_SELF), user + system, every thread \
         of the process (the async consumer's waiter thread and tokio's workers included), \
         from the consumer's ready to that message. shmcast consumers sleep on the data word \
         and on the producer's death notice (a robust futex the kernel wakes when the \
         producer's process dies), so they wake only for a backstop liveness probe every 5 s \
         (the async consumer's waiter thread: one futex_waitv timeout and one fcntl each; \
         the blocking consumer: one futex_waitv timeout and a probe); a tokio UnixStream \
         sleeps in epoll_wait without a timeout.",
        &[
            ("consumer", "consumer"),
            ("idle", "idle_ns"),
            ("CPU", "cpu_ns"),
            ("CPU per s", "cpu_ns_per_s"),
            ("waiter futex sleeps", "waiter_sleeps"),
            ("task rechecks", "waiter_rechecks"),
            ("liveness probes", "waiter_probes"),
            ("ring futex sleeps", "ring_sleeps"),
            ("vol. ctx switches", "voluntary_switches"),
            ("wake-up at the end", "wake_ns"),
        ],
    );
    for (v, f) in figs {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                let mut row = vec![Cell::text(v.name()), Cell::Na(e.clone())];
                row.extend((0..8).map(|_| na()));
                t.row(row);
                continue;
            }
        };
        let c: &Counters = &f.counters;
        let waiter = |x: u64| {
            if v.is_async_ring() {
                Cell::Num(x as f64, Fmt::Plain(0))
            } else {
                na()
            }
        };
        t.row(vec![
            Cell::text(v.name()),
            Cell::Num(f.wall_ns as f64, Fmt::Ns),
            Cell::Num(c.cpu_ns as f64, Fmt::Ns),
            Cell::Num(c.cpu_ns as f64 / (f.wall_ns.max(1) as f64 / 1e9), Fmt::Ns),
            waiter(c.waiter_sleeps),
            waiter(c.waiter_rechecks),
            waiter(c.waiter_probes),
            if v.policy().is_some() {
                Cell::Num(c.ring_sleeps as f64, Fmt::Plain(0))
            } else {
                na()
            },
            Cell::Num(c.voluntary as f64, Fmt::Plain(0)),
            Cell::Num(f.wake_ns as f64, Fmt::Ns),
        ]);
    }
    t
}

fn pace_label(pace: Pace) -> String {
    match pace {
        Pace::Flowing => "flowing".into(),
        Pace::Every(g) => format!("every {} µs", g.as_micros()),
    }
}

fn syscalls_table(traced: bool) -> Table {
    Table::new(
        "Syscalls per message of the consumer process while data flows, 64 B",
        format!(
            "flowing: the producer sends back to back (a blocking send waits while the ring \
             or the socket buffer is full); every N µs: the producer spins on the clock until \
             N µs after its previous send (never a burst to catch up; msgs/s shows the rate \
             reached). syscalls/msg (strace): every syscall of every thread of the consumer \
             process, counted by `strace -f -c` attached (-p) after the consumer was ready \
             and detached after it received the last message, in a second run of its own: \
             strace slows every syscall down, so that run's consumer falls behind more often \
             and waits less often per message; syscalls/wait divides by that run's own ring \
             waits, the cost of one wait; ≈ syscalls/msg untraced: that cost times the \
             untraced run's ring waits/msg (an estimate that assumes a wait costs the same \
             syscalls with and without strace; only for consumers that wait as soon as the \
             ring is empty: the adaptive consumer's yields happen whether or not it then \
             sleeps, and under strace, or on a busy CPU, each yield lasts longer){}. The other \
             columns come from the untraced run: the consumer's voluntary context switches \
             (getrusage: each is a blocking syscall that slept), shmcast's own counters \
             (ring waits: recv calls that found the ring empty; waiter sleeps: futex_waitv \
             calls of the waiter thread; waiter pokes: FUTEX_WAKEs of the waiter by a new \
             registration) and the producer's FUTEX_WAKEs (a syscall in the producer \
             process, not counted in the consumer's). tokio's own syscalls (epoll_wait, the \
             eventfd or futex that unparks a worker) appear only in the strace count.",
            if traced {
                ""
            } else {
                " — not run: strace not found or --strace off"
            },
        ),
        &[
            ("consumer", "consumer"),
            ("pace", "pace"),
            ("messages", "messages"),
            ("msgs/s", "msgs_per_s"),
            ("syscalls/msg (strace)", "syscalls_per_msg"),
            ("syscalls/wait (strace)", "syscalls_per_ring_wait"),
            ("≈ syscalls/msg untraced", "est_untraced_syscalls_per_msg"),
            ("most frequent (per msg, strace)", "top_syscalls_per_msg"),
            ("vol. ctx switches/msg", "voluntary_switches_per_msg"),
            ("ring waits/msg", "ring_waits_per_msg"),
            ("waiter sleeps/msg", "waiter_sleeps_per_msg"),
            ("waiter pokes/msg", "waiter_pokes_per_msg"),
            ("producer FUTEX_WAKE/msg", "producer_wakes_per_msg"),
            ("CPU/msg", "cpu_ns_per_msg"),
        ],
    )
}

fn syscalls_row(
    t: &mut Table,
    v: Variant,
    pace: Pace,
    plain: &std::io::Result<asynch::CountFigure>,
    traced: Option<&std::io::Result<asynch::CountFigure>>,
) {
    let mut row = vec![Cell::text(v.name()), Cell::text(pace_label(pace))];
    let (strace_total, per_wait, strace_top) = match traced {
        Some(Ok(f)) => match &f.syscalls {
            Some(s) => (
                Cell::Num(f.per_msg(s.total), Fmt::Plain(3)),
                // Only where waits are frequent enough that the window's own few
                // syscalls (the attach's restarts, the report's getrusage and write) vanish.
                (v.is_ring() && f.counters.ring_sleeps >= (f.messages / 100).max(10))
                    .then(|| s.total as f64 / f.counters.ring_sleeps as f64),
                Cell::text(
                    s.calls
                        .iter()
                        .take(4)
                        .map(|(n, c)| format!("{n} {:.2}", f.per_msg(*c)))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ),
            None => (na(), None, na()),
        },
        Some(Err(e)) => (Cell::Na(e.to_string()), None, na()),
        None => (na(), None, na()),
    };
    match plain {
        Ok(f) => {
            let c = &f.counters;
            let waiter = |x: u64| {
                if v.is_async_ring() {
                    Cell::Num(f.per_msg(x), Fmt::Plain(3))
                } else {
                    na()
                }
            };
            row.extend([
                Cell::Num(f.messages as f64, Fmt::Plain(0)),
                Cell::Num(f.rate(), Fmt::Rate),
                strace_total,
                per_wait.map_or(na(), |w| Cell::Num(w, Fmt::Plain(2))),
                match per_wait {
                    Some(w) if v.waits_at_once() => {
                        Cell::Num(w * f.per_msg(c.ring_sleeps), Fmt::Plain(2))
                    }
                    _ => na(),
                },
                strace_top,
                Cell::Num(f.per_msg(c.voluntary), Fmt::Plain(3)),
                if v.is_ring() {
                    Cell::Num(f.per_msg(c.ring_sleeps), Fmt::Plain(3))
                } else {
                    na()
                },
                waiter(c.waiter_sleeps),
                waiter(c.waiter_pokes),
                f.producer_wakes
                    .map_or(na(), |w| Cell::Num(f.per_msg(w), Fmt::Plain(3))),
                Cell::Num(f.per_msg(c.cpu_ns), Fmt::Ns),
            ]);
        }
        Err(e) => {
            row.push(Cell::Na(e.to_string()));
            row.extend((0..11).map(|_| na()));
        }
    }
    t.row(row);
}
