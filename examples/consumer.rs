//! Read every message of a named shmcast segment and print what arrives each second:
//! messages/s, bytes/s and, for payloads stamped by the `producer` example, the one-way
//! latency (`CLOCK_MONOTONIC` at receipt minus the stamp) and sequence gaps.
//!
//! ```sh
//! cargo run --release --example producer -- demo --rate 100000
//! cargo run --release --example consumer -- demo --wait spin   # in a second terminal
//! ```
//!
//! Waits for the segment to appear if the producer has not started yet. If the producer
//! dies, it says so and keeps waiting: a restarted producer takes the segment over and the
//! stream goes on. Exits when the producer closes the stream (or after `--count` messages).
//! `--lossy` attaches a consumer that never slows the producer down and reports the
//! messages it lost.

use shmcast::{Consumer, ConsumerBuilder, OpenError, RecvTimeoutError, StartAt, WaitPolicy};
use std::time::{Duration, Instant};

/// The first word of a stamped payload (must match `examples/producer.rs`).
const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"SHMCSTMP");
const STAMP_LEN: usize = 24;

const HELP: &str = "\
Read messages from a named shmcast segment and report rate and latency every second.

Usage: consumer [OPTIONS] [NAME]

Arguments:
  [NAME]              Segment name, as given to the producer [default: shmcast-demo]

Options:
  --wait POLICY       How recv waits while the ring is empty: spin, yield, adaptive, sleep [default: adaptive]
  --lossy             Never slow the producer down; count the messages lost when lapped
  --oldest            Start at the oldest message still in the ring instead of the next one
  --count N           Exit after this many messages; 0 runs until the producer closes the stream [default: 0]
  --open-timeout S    Give up if the segment does not appear within S seconds; 0 waits forever [default: 0]
  -h, --help          Print this help
";

/// The command line.
#[derive(Debug)]
struct Cli {
    name: String,
    wait: Wait,
    lossy: bool,
    oldest: bool,
    count: u64,
    open_timeout: u64,
}

/// Parse the command line; `Ok(None)` after printing the help.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Cli>, String> {
    let mut cli = Cli {
        name: "shmcast-demo".into(),
        wait: Wait::Adaptive,
        lossy: false,
        oldest: false,
        count: 0,
        open_timeout: 0,
    };
    let mut name = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value ({what})"))
        };
        fn num(flag: &str, v: String) -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("invalid value '{v}' for {flag}: expected a number"))
        }
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--wait" => cli.wait = Wait::parse(&value("POLICY")?)?,
            "--lossy" => cli.lossy = true,
            "--oldest" => cli.oldest = true,
            "--count" => cli.count = num(&flag, value("N")?)?,
            "--open-timeout" => cli.open_timeout = num(&flag, value("S")?)?,
            f if f.starts_with('-') => return Err(format!("unknown option '{f}'")),
            _ if name.is_none() => name = Some(arg),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    if let Some(n) = name {
        cli.name = n;
    }
    Ok(Some(cli))
}

#[derive(Clone, Copy, Debug)]
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
    fn parse(s: &str) -> Result<Wait, String> {
        Ok(match s {
            "spin" => Wait::Spin,
            "yield" => Wait::Yield,
            "adaptive" => Wait::Adaptive,
            "sleep" => Wait::Sleep,
            _ => {
                return Err(format!(
                    "invalid --wait '{s}': expected spin, yield, adaptive or sleep"
                ))
            }
        })
    }

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

/// Either kind of consumer.
enum Reader {
    Lossless(Consumer),
    Lossy(shmcast::LossyConsumer, Vec<u8>),
}

/// Open the segment, waiting for it to appear (and finish initializing) for
/// `--open-timeout` seconds, or for ever.
fn open(cli: &Cli) -> Result<Reader, OpenError> {
    let timeout = match cli.open_timeout {
        0 => Duration::MAX,
        s => Duration::from_secs(s),
    };
    println!("consumer: opening segment '{}'...", cli.name);
    let mut b = ConsumerBuilder::default()
        .wait_policy(cli.wait.policy())
        .wait_for_segment(timeout);
    if cli.oldest {
        b = b.start_at(StartAt::Oldest);
    }
    if cli.lossy {
        b.lossy()
            .open(&cli.name)
            .map(|c| Reader::Lossy(c, Vec::new()))
    } else {
        b.open(&cli.name).map(Reader::Lossless)
    }
}

/// A sorted-on-demand set of latency samples (nanoseconds) for one report interval.
struct Latencies(Vec<u64>);

impl Latencies {
    fn quantile(&mut self, q: f64) -> u64 {
        self.0.sort_unstable();
        let n = self.0.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.0[rank - 1]
    }
}

/// What arrived since the last report.
struct Interval {
    messages: u64,
    bytes: u64,
    latency: Latencies,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            messages: 0,
            bytes: 0,
            latency: Latencies(Vec::new()),
        }
    }

    fn print(&mut self, secs: f64, total: u64, gaps: u64, lost: u64) {
        let mut line = format!(
            "consumer: {:>10.0} msg/s {:>9.1} MB/s  total {:>10}",
            self.messages as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            total
        );
        if !self.latency.0.is_empty() {
            let mut us = |q: f64| self.latency.quantile(q) as f64 / 1000.0;
            line += &format!(
                "  latency p50 {:.1} us  p99 {:.1} us  max {:.1} us",
                us(0.5),
                us(0.99),
                us(1.0)
            );
        }
        if gaps > 0 {
            line += &format!("  sequence gaps {gaps}");
        }
        if lost > 0 {
            line += &format!("  lost (lapped) {lost}");
        }
        println!("{line}");
    }
}

fn main() {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(Some(cli)) => cli,
        Ok(None) => return,
        Err(e) => {
            eprintln!("consumer: {e} (see --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&cli) {
        eprintln!("consumer: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut reader = open(cli)?;
    println!(
        "consumer: attached to '{}', {}, wait {:?}",
        cli.name,
        if cli.lossy { "lossy" } else { "lossless" },
        cli.wait
    );

    let started = Instant::now();
    let mut last_report = started;
    let mut interval = Interval::new();
    let mut total = 0u64;
    let mut gaps = 0u64;
    let mut lost = 0u64;
    let mut next_seq: Option<u64> = None;
    let mut producer_dead = false;
    let end = loop {
        if cli.count > 0 && total >= cli.count {
            break "count reached".to_string();
        }
        // A bounded wait so the report keeps ticking while the producer is idle.
        let timeout = Duration::from_millis(250);
        let mut on_message = |msg: &[u8]| {
            let now = monotonic_ns();
            total += 1;
            interval.messages += 1;
            interval.bytes += msg.len() as u64;
            let word = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().expect("8 bytes"));
            if msg.len() >= STAMP_LEN && word(0) == STAMP_MAGIC {
                let (seq, sent) = (word(8), word(16));
                if next_seq.is_some_and(|n| n != seq) {
                    gaps += 1;
                }
                next_seq = Some(seq + 1);
                interval.latency.0.push(now.saturating_sub(sent).max(1));
            }
        };
        let r = match &mut reader {
            Reader::Lossless(c) => c.recv_timeout(timeout).map(|m| on_message(&m)),
            Reader::Lossy(c, buf) => match c.recv_timeout_into(buf, timeout) {
                Ok(_) => {
                    on_message(buf);
                    Ok(())
                }
                Err(RecvTimeoutError::Lagged(n)) => {
                    // The producer lapped us: the next message is the oldest still there.
                    lost += n;
                    next_seq = None;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match r {
            Ok(()) => producer_dead = false,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break "the producer closed the stream".into(),
            // Keep our place: a restarted producer takes the segment over and the stream
            // goes on with the next message.
            Err(RecvTimeoutError::ProducerDied) => {
                if !producer_dead {
                    println!("consumer: the producer died; waiting for a new one to take over");
                    producer_dead = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now - last_report >= Duration::from_secs(1) {
            interval.print((now - last_report).as_secs_f64(), total, gaps, lost);
            interval = Interval::new();
            last_report = now;
        }
    };
    let st = match &reader {
        Reader::Lossless(c) => c.stats(),
        Reader::Lossy(c, _) => c.stats(),
    };
    println!(
        "consumer: {end}: {total} messages in {:.2?}, {gaps} sequence gaps, {lost} lost, {} futex sleeps",
        started.elapsed(),
        st.sleeps
    );
    Ok(())
}
