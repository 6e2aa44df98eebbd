//! `shmcast-bridge export|import`: carry a shmcast ring to other hosts over zenoh.
//!
//! The logic lives in the `shmcast_bridge` library; this is argument parsing, signals and
//! the final counters (printed on stdout as one `key=value` line).

use clap::{Args, Parser, Subcommand, ValueEnum};
use shmcast::StartAt;
use shmcast_bridge::zenoh::config::WhatAmI;
use shmcast_bridge::zenoh::Wait;
use shmcast_bridge::{
    BridgeError, Congestion, ExportOptions, ExportStats, Exporter, ImportOptions, ImportStats,
    Importer, RingRef, ZenohOptions, DEMO_PORT,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "shmcast-bridge",
    version,
    about = "Carry shmcast rings between hosts over zenoh",
    long_about = "Carry shmcast rings between hosts over zenoh: `export` publishes a local \
                  ring's messages on a key expression, `import` produces what is published on \
                  a key expression into a local ring. Without --config, --listen or \
                  --connect, export listens on tcp/127.0.0.1:7447 and import connects to it \
                  (peer mode, loopback only): a one-host demo. Log level: RUST_LOG."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish every message of a local ring on a zenoh key expression.
    Export(ExportArgs),
    /// Produce every message published on a zenoh key expression into a local ring.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
struct ZenohArgs {
    /// zenoh configuration file (JSON5); flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// zenoh mode.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// Endpoint to connect to, e.g. tcp/192.0.2.1:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// Enable zenoh multicast scouting (off unless a config file enables it).
    #[arg(long)]
    multicast_scouting: bool,
    /// Log the counters every SECS seconds (0: only at exit).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    stats_every: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Peer,
    Client,
    Router,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Start {
    /// The oldest message still in the ring (a restart re-sends; the importer deduplicates).
    Oldest,
    /// The next message published.
    Next,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CongestionArg {
    Block,
    Drop,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Shared-memory name of the ring to export.
    #[arg(long, required_unless_present = "path", conflicts_with = "path")]
    ring: Option<String>,
    /// Segment file of the ring to export (instead of --ring).
    #[arg(long)]
    path: Option<PathBuf>,
    /// zenoh key expression to publish on.
    #[arg(long)]
    key: String,
    /// Attach as a lossy consumer: never slow the producer; count what is lost.
    #[arg(long)]
    lossy: bool,
    /// Where to start reading the ring.
    #[arg(long, value_enum, default_value = "oldest")]
    start: Start,
    /// zenoh congestion control (default: block if lossless, drop if lossy).
    #[arg(long, value_enum)]
    congestion: Option<CongestionArg>,
    /// Send each message at once (no zenoh batching under load).
    #[arg(long)]
    express: bool,
    /// Wait for a missing ring, and after it closes wait for the next one.
    #[arg(long)]
    follow: bool,
    /// Read and publish even while no subscriber matches the key expression (what is
    /// published then is lost; by default the ring is held until an importer subscribes).
    #[arg(long)]
    no_wait_for_subscriber: bool,
    #[command(flatten)]
    zenoh: ZenohArgs,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// Shared-memory name of the local ring (created, or taken over from a dead importer).
    #[arg(long)]
    ring: String,
    /// zenoh key expression to subscribe to.
    #[arg(long)]
    key: String,
    /// Capacity of a created ring in bytes (power of two).
    #[arg(long, default_value_t = 4 << 20)]
    capacity: usize,
    /// Largest message of a created ring (default: the most the capacity allows).
    #[arg(long)]
    max_message: Option<usize>,
    /// Consumer slots of a created ring.
    #[arg(long, default_value_t = 16)]
    max_consumers: u32,
    /// State file (default /dev/shm/<ring>.shmcast-bridge).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Close the ring and exit when the source ring is closed.
    #[arg(long)]
    exit_on_end: bool,
    #[command(flatten)]
    zenoh: ZenohArgs,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe; the
        // handler is a plain `extern "C" fn(c_int)` as `signal` expects.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn zenoh_options(args: &ZenohArgs, demo: ZenohOptions) -> ZenohOptions {
    if args.config.is_none() && args.listen.is_empty() && args.connect.is_empty() {
        // The demo default: peer mode on loopback.
        let mut opts = demo;
        if let Some(m) = args.mode {
            opts.mode = Some(what_am_i(m));
        }
        if args.multicast_scouting {
            opts.multicast_scouting = Some(true);
        }
        return opts;
    }
    ZenohOptions {
        config_file: args.config.clone(),
        mode: args.mode.map(what_am_i),
        listen: args.listen.clone(),
        connect: args.connect.clone(),
        multicast_scouting: args.multicast_scouting.then_some(true),
    }
}

fn what_am_i(m: Mode) -> WhatAmI {
    match m {
        Mode::Peer => WhatAmI::Peer,
        Mode::Client => WhatAmI::Client,
        Mode::Router => WhatAmI::Router,
    }
}

fn export_line(s: &ExportStats) -> String {
    format!(
        "export: messages={} bytes={} lagged={} lag_events={} attachments={} \
         producer_deaths={} evictions={} ends={}",
        s.messages,
        s.bytes,
        s.lagged,
        s.lag_events,
        s.attachments,
        s.producer_deaths,
        s.evictions,
        s.ends
    )
}

fn import_line(s: &ImportStats) -> String {
    format!(
        "import: imported={} bytes={} lost={} gaps={} lost_in_transit={} lost_at_source={} \
         lost_across_restart={} dropped_too_large={} duplicates={} stale={} foreign={} \
         exporter_restarts={} source_changes={} ends={}",
        s.imported,
        s.bytes,
        s.lost(),
        s.gaps,
        s.lost_in_transit,
        s.lost_at_source,
        s.lost_across_restart,
        s.dropped_too_large,
        s.duplicates,
        s.stale,
        s.foreign,
        s.exporter_restarts,
        s.source_changes,
        s.ends
    )
}

fn export(args: ExportArgs) -> Result<(), BridgeError> {
    let ring = match (args.ring, args.path) {
        (Some(name), _) => RingRef::Name(name),
        (None, Some(path)) => RingRef::Path(path),
        (None, None) => unreachable!("clap requires --ring or --path"),
    };
    let session = zenoh_options(&args.zenoh, ZenohOptions::loopback_listen(DEMO_PORT)).open()?;
    let mut options = ExportOptions::new(ring, args.key);
    options.lossy = args.lossy;
    options.start = match args.start {
        Start::Oldest => StartAt::Oldest,
        Start::Next => StartAt::Next,
    };
    options.congestion = args.congestion.map(|c| match c {
        CongestionArg::Block => Congestion::Block,
        CongestionArg::Drop => Congestion::Drop,
    });
    options.express = args.express;
    options.follow = args.follow;
    options.wait_for_subscriber = !args.no_wait_for_subscriber;
    let mut exporter = Exporter::new(&session, options)?;
    let stop = exporter.stop_handle();
    let stats = exporter.stats_handle();
    let every = args.zenoh.stats_every;
    let watcher = std::thread::spawn(move || {
        let mut last = Instant::now();
        while !stop.is_stopped() {
            if STOP.load(Ordering::Relaxed) {
                stop.stop();
            }
            if every > 0 && last.elapsed() >= Duration::from_secs(every) {
                tracing::info!("{}", export_line(&stats.get()));
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let result = exporter.run();
    exporter.stop_handle().stop();
    let _ = watcher.join();
    println!("{}", export_line(&exporter.stats()));
    drop(exporter);
    let _ = session.close().wait();
    result.map(|_| ())
}

fn import(args: ImportArgs) -> Result<(), BridgeError> {
    let session = zenoh_options(&args.zenoh, ZenohOptions::loopback_connect(DEMO_PORT)).open()?;
    let mut options = ImportOptions::new(args.ring, args.key);
    options.capacity = args.capacity;
    options.max_message = args.max_message;
    options.max_consumers = args.max_consumers;
    options.state = args.state;
    let importer = Importer::start(&session, options)?;
    let every = args.zenoh.stats_every;
    let mut last = Instant::now();
    loop {
        if importer.wait_end(Some(Duration::from_millis(50))) && args.exit_on_end {
            break;
        }
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        if every > 0 && last.elapsed() >= Duration::from_secs(every) {
            tracing::info!("{}", import_line(&importer.stats()));
            last = Instant::now();
        }
    }
    let stats = importer.stop();
    println!("{}", import_line(&stats));
    let _ = session.close().wait();
    Ok(())
}

fn main() -> ExitCode {
    shmcast_bridge::zenoh::init_log_from_env_or("warn,shmcast_bridge=info");
    install_signal_handlers();
    let result = match Cli::parse().command {
        Command::Export(a) => export(a),
        Command::Import(a) => import(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmcast-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
