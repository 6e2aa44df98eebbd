//! Round trips between two processes: shmcast against the floor (two processes bouncing
//! one shared atomic: the least a cross-core round trip can cost) and an anonymous pipe,
//! all measured in the same run; then one-way throughput, ring against pipe.
//!
//! ```sh
//! cargo run --release --example pingpong
//! cargo run --release --example pingpong -- --pin --iterations 200000
//! cargo run --release --example pingpong -- --json
//! ```
//!
//! The second process is this binary re-executed (see `benches/common/child.rs`). A shmcast
//! round trip uses two rings, ping and pong, each with one producer and one consumer.

#[path = "../benches/common/mod.rs"]
mod common;

use clap::Parser;
use common::measure::{self, Opts, RtFigure, RtPlan};
use common::sys;
use common::table::{self, Cell, Fmt, Table};
use common::transport::Kind;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Round-trip latency and one-way throughput: shmcast vs the floor and a pipe")]
struct Cli {
    /// Timed round trips per transport over all rounds (then as many again in batches of
    /// 64).
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
    /// Untimed round trips before timing.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// Message size in bytes (at least 8).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65536))]
    size: u64,
    /// Pin this process to CPU 0 and the child to CPU 1 (sched_setaffinity).
    #[arg(long)]
    pin: bool,
    /// Print JSON instead of Markdown tables.
    #[arg(long)]
    json: bool,
    /// Interleaved rounds: each transport is measured once per round, in turn, and ratios
    /// are medians of per-round ratios (robust to a noisy neighbour or a vCPU moving).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Stop any one measurement phase of a transport after this many seconds (over all
    /// rounds).
    #[arg(long, default_value_t = 5.0)]
    budget_secs: f64,
    /// Target duration of each throughput measurement, in seconds.
    #[arg(long, default_value_t = 0.5)]
    throughput_secs: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::child::run_if_child();
    let cli = Cli::parse();
    if cli.pin {
        sys::pin_to(0)?;
    }
    let opts = Opts {
        pin: cli.pin,
        ..Opts::default()
    };
    let size = cli.size as usize;
    let budget = Duration::from_secs_f64(cli.budget_secs);
    let timer = sys::timer_overhead_ns();
    let meta = vec![
        ("machine", sys::machine()),
        ("load_average_at_start", sys::load_average()),
        ("message_bytes", size.to_string()),
        (
            "pinning",
            if cli.pin {
                format!("parent cpu 0, child cpu {}", sys::child_cpu())
            } else {
                "none".into()
            },
        ),
        ("timer_overhead_ns", format!("{timer:.0}")),
    ];
    if !cli.json {
        println!("# shmcast pingpong: two processes, {size}-byte messages\n");
        for (k, v) in &meta {
            println!("- {k}: {v}");
        }
        println!();
    }

    // Round trips, interleaved in rounds so every ratio compares back-to-back figures.
    let kinds = [
        Kind::Floor,
        Kind::FloorPayload,
        Kind::ShmSpin,
        Kind::ShmAdaptive,
        Kind::Pipe,
    ];
    let plan = RtPlan {
        size,
        iters: cli.iterations,
        warmup: cli.warmup,
        budget,
        rounds: cli.rounds,
    };
    let quiet = cli.json;
    let figs = measure::round_trips(&kinds, &plan, &opts, &mut |k, r| {
        if !quiet {
            eprint!("\r\x1b[Kround {}/{}: {}", r + 1, plan.rounds, k.name());
        }
    });
    let mut ok = Vec::new();
    for (kind, f) in figs {
        ok.push((kind, f.map_err(|e| format!("{}: {e}", kind.name()))?));
    }
    let base = |k: Kind| {
        ok.iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, f)| f.clone())
    };
    let (floor, pipe) = (base(Kind::Floor), base(Kind::Pipe));
    let mut rt = Table::new(
        format!("Round trip, {size} B"),
        format!(
            "p50..max: each round trip timed alone (includes one clock read, ~{timer:.0} ns). \
             batched p50: median over batches of 64 round trips of the mean, nearly clock-free. \
             Ratios: median over {} interleaved rounds of the per-round ratio of batched p50s. \
             The floor carries no payload; floor-payload copies the message through a shared slot \
             beside its flag (the least any flag-signalled shared-memory protocol can pay).",
            plan.rounds
        ),
        &[
            ("transport", "transport"),
            ("p50", "p50_ns"),
            ("p99", "p99_ns"),
            ("p99.9", "p999_ns"),
            ("max", "max_ns"),
            ("batched p50", "batched_p50_ns"),
            ("vs floor", "ratio_to_floor"),
            ("vs pipe", "ratio_to_pipe"),
            ("samples", "samples"),
        ],
    );
    let vs = |f: &RtFigure, b: &Option<RtFigure>| match b {
        Some(b) => Cell::Num(f.ratio_to(b), Fmt::Ratio),
        None => Cell::Na(String::new()),
    };
    for (kind, f) in &ok {
        rt.row(vec![
            Cell::text(kind.name()),
            Cell::Num(f.p50 as f64, Fmt::Ns),
            Cell::Num(f.p99 as f64, Fmt::Ns),
            Cell::Num(f.p999 as f64, Fmt::Ns),
            Cell::Num(f.max as f64, Fmt::Ns),
            Cell::Num(f.batched_p50 as f64, Fmt::Ns),
            vs(f, &floor),
            vs(f, &pipe),
            Cell::Num(f.samples as f64, Fmt::Plain(0)),
        ]);
    }

    // One-way throughput, interleaved in rounds too.
    let target = Duration::from_secs_f64(cli.throughput_secs);
    let rows = [(Kind::ShmSpin, 1), (Kind::ShmAdaptive, 1), (Kind::Pipe, 1)];
    let results = measure::throughputs(&rows, size, target, plan.rounds, &opts, &mut |i, r| {
        if !quiet {
            eprint!(
                "\r\x1b[Kthroughput round {}/{}: {}",
                r + 1,
                plan.rounds,
                rows[i].0.name()
            );
        }
    });
    let mut runs = Vec::new();
    for ((kind, _), r) in rows.iter().zip(results) {
        runs.push((*kind, r.map_err(|e| format!("{}: {e}", kind.name()))?));
    }
    let pipe_runs = runs
        .iter()
        .find(|(k, _)| *k == Kind::Pipe)
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    let mut tp = Table::new(
        format!("One-way throughput, {size} B"),
        format!(
            "Back-to-back sends to one consumer process; rate measured to its receipt of the \
             last message; median of {} interleaved rounds (ratio: median of per-round \
             ratios). The ring's consumer reads in place; the pipe's reads into its own buffer.",
            plan.rounds
        ),
        &[
            ("transport", "transport"),
            ("messages/s", "msgs_per_s"),
            ("bytes/s", "bytes_per_s"),
            ("vs pipe", "ratio_to_pipe"),
            ("wake syscalls/msg", "wake_syscalls_per_msg"),
        ],
    );
    for (kind, r) in &runs {
        let rate = measure::median_rate(r);
        tp.row(vec![
            Cell::text(kind.name()),
            Cell::Num(rate, Fmt::Rate),
            Cell::Num(rate * size as f64, Fmt::Bandwidth),
            Cell::Num(measure::median_rate_ratio(r, &pipe_runs), Fmt::Ratio),
            measure::wakes_per_msg(r)
                .map_or(Cell::Na(String::new()), |w| Cell::Num(w, Fmt::Plain(4))),
        ]);
    }

    let tables = [rt, tp];
    if cli.json {
        print!("{}", table::json_document(&meta, &tables));
    } else {
        eprint!("\r\x1b[K");
        for t in &tables {
            println!("{}", t.markdown());
        }
    }
    Ok(())
}
