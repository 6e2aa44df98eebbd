//! Read every message of a named shmcast segment and print what arrives each second:
//! messages/s, bytes/s and, for payloads stamped by the `producer` example, the one-way
//! latency (`CLOCK_MONOTONIC` at receipt minus the stamp) and sequence gaps.
//!
//! ```sh
//! cargo run --release --example producer -- demo --rate 100000
//! cargo run --release --example consumer -- demo --wait spin   # in a second terminal
//! ```
//!
//! Waits for the segment to appear if the producer has not started yet; exits when the
//! producer closes the stream (or after `--count` messages).

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use shmcast::{Consumer, OpenError, RecvTimeoutError, SegmentError, StartAt, WaitPolicy};
use std::time::{Duration, Instant};

/// The first word of a stamped payload (must match `examples/producer.rs`).
const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"SHMCSTMP");
const STAMP_LEN: usize = 24;

#[derive(Parser, Debug)]
#[command(about = "Read messages from a named shmcast segment and report rate and latency")]
struct Cli {
    /// Segment name (as given to the producer).
    #[arg(default_value = "shmcast-demo")]
    name: String,
    /// How `recv` waits while the ring is empty.
    #[arg(long, value_enum, default_value_t = Wait::Adaptive)]
    wait: Wait,
    /// Start at the oldest message still in the ring instead of the next one.
    #[arg(long)]
    oldest: bool,
    /// Exit after this many messages (0: until the producer closes the stream).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Give up if the segment does not appear within this many seconds (0: wait forever).
    #[arg(long, default_value_t = 0)]
    open_timeout: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Wait {
    /// Spin forever (lowest latency, one full core).
    Spin,
    /// Spin, then yield.
    Yield,
    /// Spin, yield, then sleep on a futex (the default policy).
    Adaptive,
    /// Sleep on a futex at once (idle-friendly).
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

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn open(cli: &Cli) -> Result<Consumer, OpenError> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let mut b = Consumer::builder().wait_policy(cli.wait.policy());
        if cli.oldest {
            b = b.start_at(StartAt::Oldest);
        }
        match b.open(&cli.name) {
            // Not created yet, or its creator is still initializing the header.
            Err(OpenError::NotFound(_)) | Err(OpenError::Segment(SegmentError::Uninitialized)) => {
                if cli.open_timeout > 0 && started.elapsed().as_secs() >= cli.open_timeout {
                    return b.open(&cli.name);
                }
                if !said {
                    println!("consumer: waiting for segment '{}'...", cli.name);
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// What arrived since the last report.
struct Interval {
    messages: u64,
    bytes: u64,
    latency: Histogram<u64>,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            messages: 0,
            bytes: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
        }
    }

    fn print(&self, secs: f64, total: u64, gaps: u64) {
        let mut line = format!(
            "consumer: {:>10.0} msg/s {:>9.1} MB/s  total {:>10}",
            self.messages as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            total
        );
        if !self.latency.is_empty() {
            let us = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
            line += &format!(
                "  latency p50 {:.1} us  p99 {:.1} us  max {:.1} us",
                us(0.5),
                us(0.99),
                self.latency.max() as f64 / 1000.0
            );
        }
        if gaps > 0 {
            line += &format!("  sequence gaps {gaps}");
        }
        println!("{line}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let mut consumer = open(&cli)?;
    println!("consumer: attached to '{}', wait {:?}", cli.name, cli.wait);

    let started = Instant::now();
    let mut last_report = started;
    let mut interval = Interval::new();
    let mut total = 0u64;
    let mut gaps = 0u64;
    let mut next_seq: Option<u64> = None;
    let end = loop {
        if cli.count > 0 && total >= cli.count {
            break "count reached".to_string();
        }
        // A bounded wait so the report keeps ticking while the producer is idle.
        match consumer.recv_timeout(Duration::from_millis(250)) {
            Ok(msg) => {
                let now = monotonic_ns();
                total += 1;
                interval.messages += 1;
                interval.bytes += msg.len() as u64;
                let word = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().unwrap());
                if msg.len() >= STAMP_LEN && word(0) == STAMP_MAGIC {
                    let (seq, sent) = (word(8), word(16));
                    if next_seq.is_some_and(|n| n != seq) {
                        gaps += 1;
                    }
                    next_seq = Some(seq + 1);
                    let _ = interval.latency.record(now.saturating_sub(sent).max(1));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break "the producer closed the stream".into(),
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now - last_report >= Duration::from_secs(1) {
            interval.print((now - last_report).as_secs_f64(), total, gaps);
            interval = Interval::new();
            last_report = now;
        }
    };
    let st = consumer.stats();
    println!(
        "consumer: {end}: {total} messages in {:.2?}, {gaps} sequence gaps, {} futex sleeps",
        started.elapsed(),
        st.sleeps
    );
    Ok(())
}
