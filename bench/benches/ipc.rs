//! Criterion front end of the IPC comparison: every transport, cross-process, one method
//! (the `shmcast-bench` library, shared with `ipc_report` and `pingpong`). One group per
//! figure:
//!
//! - `round_trip`: `<transport>/<size>`, `iter_custom` over an echoing child process;
//! - `throughput`: `<transport>/<size>` and `<shmcast>-batch64/<size>`, one-way streaming
//!   to a child, with elements (messages) and bytes per iteration;
//! - `fanout`: `consumers/<k>`, one producer streaming 64 B messages to `k` processes
//!   (an iteration is a message delivered to all of them).
//!
//! The idle-cost figure (CPU time of a blocked consumer) is not a duration per iteration,
//! so it lives in `ipc_report` only. Set `SHMCAST_BENCH_PIN=1` to pin this process to CPU 0
//! and children to CPU 1. Needs the `criterion` feature (add `peers` for ringfire and
//! iceoryx2):
//!
//! ```sh
//! cargo bench -p shmcast-bench --features criterion,peers --bench ipc -- round_trip/ringfire
//! ```

use criterion::{BenchmarkId, Criterion, Throughput};
use shmcast_bench::child::Role;
use shmcast_bench::measure::{Opts, RoundTrip, Stream};
use shmcast_bench::transport::{self, Kind};
use std::time::Duration;

const RT_SIZES: [usize; 4] = [8, 64, 512, 4096];
const TPUT_SIZES: [usize; 5] = [8, 64, 512, 4096, 65536];
const FANOUT: [usize; 4] = [1, 2, 4, 8];
const BATCH: usize = 64;

fn opts() -> Opts {
    let pin = std::env::var_os("SHMCAST_BENCH_PIN").is_some_and(|v| v != "0");
    Opts {
        pin,
        ..Opts::default()
    }
}

fn round_trip(c: &mut Criterion, opts: &Opts) {
    let mut g = c.benchmark_group("round_trip");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in RT_SIZES {
        for kind in Kind::ALL.into_iter().filter(|k| k.round_trips()) {
            if let Err(e) = transport::probe(kind, size) {
                eprintln!("skipping round_trip/{}/{size}: {e}", kind.name());
                continue;
            }
            // Started on first use, so a filtered-out benchmark spawns nothing.
            let mut session: Option<RoundTrip> = None;
            g.bench_function(BenchmarkId::new(kind.name(), size), |b| {
                let rt = session.get_or_insert_with(|| {
                    RoundTrip::start(kind, size, opts).expect("start the echo child")
                });
                b.iter_custom(|iters| rt.run(iters).expect("round trips"));
            });
            if let Some(rt) = session {
                rt.finish().expect("stop the echo child");
            }
        }
    }
    g.finish();
}

fn throughput(c: &mut Criterion, opts: &Opts) {
    let mut g = c.benchmark_group("throughput");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in TPUT_SIZES {
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: size as u64,
        });
        let mut plan = Vec::new();
        for kind in Kind::ALL.into_iter().filter(|k| k.streams()) {
            if let Err(e) = transport::probe(kind, size) {
                eprintln!("skipping throughput/{}/{size}: {e}", kind.name());
                continue;
            }
            plan.push((kind, 1, kind.name().to_string()));
            if kind.batches() {
                plan.push((kind, BATCH, format!("{}-batch{BATCH}", kind.name())));
            }
        }
        for (kind, batch, name) in plan {
            let mut session: Option<Stream> = None;
            g.bench_function(BenchmarkId::new(name, size), |b| {
                let s = session.get_or_insert_with(|| {
                    Stream::start(kind, size, 1, Role::Sink, batch, opts).expect("start the sink")
                });
                b.iter_custom(|iters| s.run(iters).expect("stream").elapsed());
            });
            if let Some(s) = session {
                s.finish().expect("stop the sink");
            }
        }
    }
    g.finish();
}

fn fanout(c: &mut Criterion, opts: &Opts) {
    let mut g = c.benchmark_group("fanout");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    for k in FANOUT {
        let mut session: Option<Stream> = None;
        g.bench_function(BenchmarkId::new("consumers", k), |b| {
            let s = session.get_or_insert_with(|| {
                Stream::start(Kind::ShmAdaptive, 64, k, Role::Sink, 1, opts)
                    .expect("start the consumers")
            });
            b.iter_custom(|iters| s.run(iters).expect("stream").elapsed());
        });
        if let Some(s) = session {
            s.finish().expect("stop the consumers");
        }
    }
    g.finish();
}

fn main() {
    // A re-executed child runs its role and exits here, before criterion sees arguments.
    shmcast_bench::child::run_if_child();
    let opts = opts();
    if opts.pin {
        shmcast_bench::sys::pin_to(0).expect("pin to CPU 0");
    }
    let mut c = Criterion::default().configure_from_args();
    round_trip(&mut c, &opts);
    throughput(&mut c, &opts);
    fanout(&mut c, &opts);
    c.final_summary();
}
