//! The headline demo: two processes, 64-byte messages. Round trips of shmcast (busy-spin
//! and adaptive) against the floor (two processes bouncing one shared atomic: the least a
//! cross-core round trip can cost), a pipe and, built with `--features peers`, ringfire
//! and iceoryx2; then one-way throughput against the streaming floor (what the hardware
//! streams), the same peers and a pipe. Everything is measured in the same run, in
//! interleaved rounds, each figure also as a ratio to the floor and to ringfire.
//!
//! ```sh
//! cargo run --release -p shmcast-bench --bin pingpong                      # ~20 s
//! cargo run --release -p shmcast-bench --features peers --bin pingpong     # with the peers
//! cargo run --release -p shmcast-bench --bin pingpong -- --json --size 512
//! ```
//!
//! The second process is this binary re-executed (see `child.rs`). A round trip uses two
//! rings, ping and pong, each with one producer and one consumer.

use shmcast_bench::args::{self, flag, opt};
use shmcast_bench::measure::{Opts, RtPlan};
use shmcast_bench::report;
use shmcast_bench::sys;
use shmcast_bench::table;
use shmcast_bench::transport::{self, Kind};
use std::time::Duration;

const ABOUT: &str = "Round-trip latency and one-way throughput between two processes: shmcast \
against the floors, a pipe and (with --features peers) ringfire and iceoryx2, in one run.";

const SPECS: &[args::Spec] = &[
    opt("size", "BYTES", "64", "Message size, 8 to 65536"),
    opt(
        "iterations",
        "N",
        "100000",
        "Timed round trips per transport over all rounds (then as many in batches of 64)",
    ),
    opt("warmup", "N", "20000", "Untimed round trips per transport and round"),
    opt(
        "rounds",
        "N",
        "5",
        "Interleaved rounds: each transport once per round, fresh child; ratios are medians of per-round ratios",
    ),
    opt(
        "budget-secs",
        "S",
        "2",
        "Stop any one round-trip phase of a transport after this long (over all rounds)",
    ),
    opt(
        "throughput-secs",
        "S",
        "0.5",
        "Target duration of each throughput measurement (over all rounds)",
    ),
    opt("batch", "N", "64", "Messages per batch call in the batched throughput rows"),
    flag("no-pin", "Do not pin (default: this process on CPU 0, the child on CPU 1)"),
    flag("no-throughput", "Round trips only"),
    flag("json", "Print JSON instead of Markdown tables"),
];

fn main() {
    shmcast_bench::child::run_if_child();
    args::run(real_main);
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::parse(
        ABOUT,
        "pingpong [OPTIONS]",
        SPECS,
        0,
        std::env::args().skip(1),
    )?;
    let size: usize = a.value("size")?;
    if !(8..=65536).contains(&size) {
        return Err(args::ArgsError::Bad(format!("--size must be 8 to 65536, got {size}")).into());
    }
    let rounds: u64 = a.value("rounds")?;
    if rounds == 0 {
        return Err(args::ArgsError::Bad("--rounds must be at least 1".into()).into());
    }
    let pin = !a.flag("no-pin") && sys::cpus() >= 2;
    let json = a.flag("json");
    if pin {
        sys::pin_to(0)?;
    }
    let opts = Opts {
        pin,
        ..Opts::default()
    };
    let plan = RtPlan {
        size,
        iters: a.value("iterations")?,
        warmup: a.value("warmup")?,
        budget: Duration::from_secs_f64(a.value("budget-secs")?),
        rounds,
    };
    let timer = sys::timer_overhead_ns();
    let meta = vec![
        ("machine", sys::machine()),
        ("load_average_at_start", sys::load_average()),
        ("message_bytes", size.to_string()),
        (
            "pinning",
            if pin {
                format!("parent cpu 0, child cpu {}", sys::child_cpu())
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
        ("timer_overhead_ns", format!("{timer:.0}")),
    ];
    if !json {
        println!("# shmcast pingpong: two processes, {size}-byte messages\n");
        for (k, v) in &meta {
            println!("- {k}: {v}");
        }
        println!();
    }
    let usable = |k: &Kind| k.available() && transport::check(*k, size).is_ok();

    let rt_kinds: Vec<Kind> = [
        Kind::Floor,
        Kind::FloorPayload,
        Kind::ShmSpin,
        Kind::ShmLoose,
        Kind::ShmAdaptive,
        Kind::Ringfire,
        Kind::Iceoryx2,
        Kind::Pipe,
    ]
    .into_iter()
    .filter(usable)
    .collect();
    let figs = report::round_trips(&rt_kinds, &plan, &opts, json);
    let mut failed: Vec<String> = figs
        .iter()
        .filter_map(|(k, f)| f.as_ref().err().map(|e| format!("{}: {e}", k.name())))
        .collect();
    let mut tables = vec![report::rt_table(size, rounds, timer, &figs)];
    if !json {
        report::progress(false, format_args!(""));
        println!("{}", tables[0].markdown());
    }

    if !a.flag("no-throughput") {
        let target = Duration::from_secs_f64(a.value("throughput-secs")?);
        let kinds: Vec<Kind> = [
            Kind::StreamFloor,
            Kind::ShmSpin,
            Kind::ShmLoose,
            Kind::ShmAdaptive,
            Kind::Ringfire,
            Kind::Iceoryx2,
            Kind::Pipe,
        ]
        .into_iter()
        .filter(usable)
        .collect();
        let batch: usize = a.value("batch")?;
        let tplan: Vec<(Kind, usize)> = report::tput_plan(&kinds, batch)
            .into_iter()
            // Adaptive batched adds nothing to spin batched in a demo.
            .filter(|&(k, b)| !(k == Kind::ShmAdaptive && b > 1))
            .collect();
        let rows = report::throughputs(&tplan, size, target, rounds, &opts, json);
        failed.extend(
            rows.iter()
                .filter_map(|r| r.runs.as_ref().err().map(|e| format!("{}: {e}", r.label))),
        );
        let t = report::tput_table(size, rounds, &rows, None);
        if !json {
            report::progress(false, format_args!(""));
            println!("{}", t.markdown());
        }
        tables.push(t);
    }
    if json {
        print!("{}", table::json_document(&meta, &tables));
    } else {
        println!("- load_average_at_end: {}", sys::load_average());
    }
    if !failed.is_empty() {
        return Err(format!("some transports failed: {}", failed.join("; ")).into());
    }
    Ok(())
}
