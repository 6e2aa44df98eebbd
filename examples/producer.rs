//! Publish messages into a named shmcast segment; run `consumer` in another terminal.
//!
//! ```sh
//! cargo run --release --example producer -- demo --rate 100000
//! cargo run --release --example consumer -- demo          # in a second terminal
//! ```
//!
//! Every payload starts with a 24-byte stamp (magic, sequence number, `CLOCK_MONOTONIC`
//! nanoseconds) so the consumer can report latency and check for gaps; `--no-stamp` sends
//! raw bytes instead. The segment is removed when the producer exits (count reached or
//! Ctrl-C).

use clap::{Parser, ValueEnum};
use shmcast::{Producer, SendTimeoutError, WaitPolicy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The first word of a stamped payload (`"SHMCSTMP"` little-endian).
const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"SHMCSTMP");
/// Bytes of the stamp: magic, sequence number, send time.
const STAMP_LEN: usize = 24;

#[derive(Parser, Debug)]
#[command(about = "Publish messages into a named shmcast segment")]
struct Cli {
    /// Segment name (created in /dev/shm; removed when the producer exits).
    #[arg(default_value = "shmcast-demo")]
    name: String,
    /// Ring capacity in bytes (a power of two).
    #[arg(long, default_value_t = 1 << 20)]
    capacity: usize,
    /// Payload size in bytes (at least 24 when stamped).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second; 0 sends as fast as the slowest consumer allows.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Stop after this many messages (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// How `send` waits while the ring is full.
    #[arg(long, value_enum, default_value_t = Wait::Adaptive)]
    wait: Wait,
    /// Send raw bytes instead of a sequence number and timestamp.
    #[arg(long)]
    no_stamp: bool,
    /// Remove a segment left behind under this name (by a killed producer) first.
    #[arg(long)]
    replace: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Wait {
    /// Spin forever.
    Spin,
    /// Spin, then yield.
    Yield,
    /// Spin, yield, then sleep on a futex (the default policy).
    Adaptive,
    /// Sleep on a futex at once.
    Sleep,
}

impl Wait {
    fn policy(self) -> WaitPolicy {
        match self {
            Wait::Spin => WaitPolicy::BusySpin,
            Wait::Yield => WaitPolicy::SpinYield { spins: 4096 },
            Wait::Adaptive => WaitPolicy::default(),
            Wait::Sleep => WaitPolicy::Adaptive {
                spins: 0,
                yields: 0,
            },
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if !cli.no_stamp && cli.size < STAMP_LEN {
        return Err(format!("--size must be at least {STAMP_LEN} with a stamp").into());
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only stores to an atomic,
        // which is async-signal-safe; replacing the default disposition is sound.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    if cli.replace {
        let _ = shmcast::remove(&cli.name);
    }
    let mut producer = Producer::builder()
        .capacity(cli.capacity)
        .wait_policy(cli.wait.policy())
        .create(&cli.name)
        .map_err(|e| {
            format!("{e} (a killed producer leaves its segment behind: pass --replace)")
        })?;
    println!(
        "producer: segment '{}' ({} bytes, max message {}), {} B messages at {}, wait {:?}",
        cli.name,
        producer.capacity(),
        producer.max_message(),
        cli.size,
        if cli.rate == 0 {
            "full speed".to_string()
        } else {
            format!("{}/s", cli.rate)
        },
        cli.wait
    );
    println!(
        "producer: start `cargo run --release --example consumer -- {}`",
        cli.name
    );

    let mut payload = vec![0xa5u8; cli.size];
    let start = Instant::now();
    let mut last_report = start;
    let mut sent_at_report = 0u64;
    let mut seq = 0u64;
    while !STOP.load(Ordering::Relaxed) && (cli.count == 0 || seq < cli.count) {
        if cli.rate > 0 {
            // Pace against the schedule, not the previous send, so the rate holds on average.
            let due = start + Duration::from_secs_f64(seq as f64 / cli.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(100)));
                continue;
            }
        }
        if !cli.no_stamp {
            payload[0..8].copy_from_slice(&STAMP_MAGIC.to_le_bytes());
            payload[8..16].copy_from_slice(&seq.to_le_bytes());
            payload[16..24].copy_from_slice(&monotonic_ns().to_le_bytes());
        }
        // A bounded wait, so Ctrl-C is noticed even while a stalled consumer gates us.
        match producer.send_timeout(&payload, Duration::from_millis(100)) {
            Ok(()) => seq += 1,
            Err(SendTimeoutError::Timeout) => continue,
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now - last_report >= Duration::from_secs(1) {
            let secs = (now - last_report).as_secs_f64();
            let st = producer.stats();
            println!(
                "producer: {:>10.0} msg/s  total {:>10}  full waits {}  wake syscalls {}",
                (seq - sent_at_report) as f64 / secs,
                seq,
                st.full_waits,
                st.wake_syscalls
            );
            last_report = now;
            sent_at_report = seq;
        }
    }
    println!(
        "producer: sent {seq} messages in {:.2?}; closing the stream and removing '{}'",
        start.elapsed(),
        cli.name
    );
    drop(producer);
    Ok(())
}
