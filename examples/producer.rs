//! Publish messages into a named shmcast segment; run `consumer` in another terminal.
//!
//! ```sh
//! cargo run --release --example producer -- demo --rate 100000
//! cargo run --release --example consumer -- demo          # in a second terminal
//! cargo run --release --example producer -- --help
//! ```
//!
//! Every payload starts with a 24-byte stamp (magic, sequence number, `CLOCK_MONOTONIC`
//! nanoseconds) so the consumer can report latency and check for gaps; `--no-stamp` sends
//! raw bytes instead.
//!
//! Restarts need no guesswork: the producer opens the segment with `open_or_create`, which
//! creates it, or takes it over if a previous producer died (killed, or exited with
//! `--keep`), continuing the stream where it ended; a second producer while one lives is
//! refused. The segment is removed when the producer exits (count reached or Ctrl-C), unless
//! `--keep`.

use shmcast::{Producer, SendTimeoutError, WaitPolicy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The first word of a stamped payload (`"SHMCSTMP"` little-endian).
const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"SHMCSTMP");
/// Bytes of the stamp: magic, sequence number, send time.
const STAMP_LEN: usize = 24;

const HELP: &str = "\
Publish messages into a named shmcast segment; read them with the consumer example.

Usage: producer [OPTIONS] [NAME]

Arguments:
  [NAME]            Segment name in /dev/shm: created, or taken over from a producer that
                    died [default: shmcast-demo]

Options:
  --capacity BYTES  Ring capacity in bytes, a power of two [default: 1048576]
  --size BYTES      Payload size in bytes, at least 24 when stamped [default: 64]
  --rate N          Messages per second; 0 sends as fast as the slowest consumer allows [default: 1000]
  --count N         Stop after this many messages; 0 runs until Ctrl-C [default: 0]
  --wait POLICY     How send waits while the ring is full: spin, yield, adaptive, sleep [default: adaptive]
  --no-stamp        Send raw bytes instead of a sequence number and timestamp
  --keep            Leave the segment on exit, for the next producer to take over
  -h, --help        Print this help
";

/// The command line.
#[derive(Debug)]
struct Cli {
    name: String,
    capacity: usize,
    size: usize,
    rate: u64,
    count: u64,
    wait: Wait,
    no_stamp: bool,
    keep: bool,
}

/// Parse the command line; `Ok(None)` after printing the help.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Cli>, String> {
    let mut cli = Cli {
        name: "shmcast-demo".into(),
        capacity: 1 << 20,
        size: 64,
        rate: 1000,
        count: 0,
        wait: Wait::Adaptive,
        no_stamp: false,
        keep: false,
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
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("invalid value '{v}' for {flag}: expected a number"))
        }
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--capacity" => cli.capacity = num(&flag, value("BYTES")?)?,
            "--size" => cli.size = num(&flag, value("BYTES")?)?,
            "--rate" => cli.rate = num(&flag, value("N")?)?,
            "--count" => cli.count = num(&flag, value("N")?)?,
            "--wait" => cli.wait = Wait::parse(&value("POLICY")?)?,
            "--no-stamp" => cli.no_stamp = true,
            "--keep" => cli.keep = true,
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

fn main() {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(Some(cli)) => cli,
        Ok(None) => return,
        Err(e) => {
            eprintln!("producer: {e} (see --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&cli) {
        eprintln!("producer: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    if !cli.no_stamp && cli.size < STAMP_LEN {
        return Err(format!(
            "--size must be at least {STAMP_LEN} with a stamp (or pass --no-stamp)"
        )
        .into());
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
    // Created, or taken over from a producer that died: the same call for every start.
    let mut producer = Producer::builder()
        .capacity(cli.capacity)
        .wait_policy(cli.wait.policy())
        .remove_on_drop(!cli.keep)
        .open_or_create(&cli.name)?;
    println!(
        "producer: segment '{}' {} ({} bytes, max message {}), {} B messages at {}, wait {:?}",
        cli.name,
        if producer.took_over() {
            format!("taken over at message {}", producer.next_seq())
        } else {
            "created".to_string()
        },
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
    // The stamp's sequence number follows the stream's, across restarts.
    let first = producer.next_seq();
    let mut seq = first;
    while !STOP.load(Ordering::Relaxed) && (cli.count == 0 || seq - first < cli.count) {
        if cli.rate > 0 {
            // Pace against the schedule, not the previous send, so the rate holds on average.
            let due = start + Duration::from_secs_f64((seq - first) as f64 / cli.rate as f64);
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
                (seq - first - sent_at_report) as f64 / secs,
                seq,
                st.full_waits,
                st.wake_syscalls
            );
            last_report = now;
            sent_at_report = seq - first;
        }
    }
    println!(
        "producer: sent {} messages in {:.2?}; closing the stream{}",
        seq - first,
        start.elapsed(),
        if cli.keep {
            format!(" and keeping '{}' for the next producer", cli.name)
        } else {
            format!(" and removing '{}'", cli.name)
        }
    );
    drop(producer);
    Ok(())
}
