//! Bridge throughput and added latency against a direct zenoh publisher/subscriber, in the
//! same run, on loopback, with the same message sizes.
//!
//! ```sh
//! cargo run --release -p shmcast-bridge --example bridge_bench            # 3 rounds
//! cargo run --release -p shmcast-bridge --example bridge_bench -- 5 64,1024
//! ```
//!
//! Two zenoh sessions in this process, peer mode, TCP on 127.0.0.1 (a listening one for the
//! sending side, a connecting one for the receiving side), multicast scouting off:
//! - **direct**: a zenoh publisher (congestion control `block`) on the first session, a
//!   subscriber callback on the second;
//! - **bridge**: a producer writes ring A; an `Exporter` (lossless, `block`) on the first
//!   session publishes it; an `Importer` on the second writes ring B; a consumer thread
//!   reads ring B. Both rings are named shared-memory segments.
//!
//! Throughput: N messages sent back to back, timed from the first send to the last receipt.
//! Latency: one message every 200 µs (paced by sleeping), carrying its send time; the
//! receiver takes the difference (one clock, one process). Rounds alternate direct and
//! bridge; the table shows the median round. Default wait policies throughout (spin, yield,
//! then futex), no pinning: what a user gets.

use shmcast::{Consumer, Producer, WaitPolicy};
use shmcast_bridge::zenoh::qos::CongestionControl;
use shmcast_bridge::zenoh::Wait;
use shmcast_bridge::{ExportOptions, Exporter, ImportOptions, Importer, RingRef, ZenohOptions};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const LATENCY_SAMPLES: usize = 10_000;
const LATENCY_WARMUP: usize = 1_000;
const PACE: Duration = Duration::from_micros(200);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn stamp(buf: &mut [u8]) {
    buf[..8].copy_from_slice(&now_ns().to_le_bytes());
}

fn latency_of(bytes: &[u8]) -> u64 {
    now_ns().saturating_sub(u64::from_le_bytes(bytes[..8].try_into().unwrap()))
}

fn throughput_count(size: usize) -> u64 {
    match size {
        0..=256 => 200_000,
        257..=4096 => 100_000,
        _ => 20_000,
    }
}

/// Sleep until `t` (not spin: on 2 shared cores a spinning sender would starve zenoh's
/// and the bridge's threads and measure the scheduler instead).
fn pace_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

#[derive(Clone, Copy, Debug)]
struct Round {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

struct Sessions {
    a: shmcast_bridge::zenoh::Session,
    b: shmcast_bridge::zenoh::Session,
}

fn direct_round(s: &Sessions, size: usize, round: usize) -> Round {
    let key = format!("bench/{}/direct/{size}/{round}", std::process::id());
    let count = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(LATENCY_SAMPLES)));
    let done = Arc::new(Mutex::new(None::<Instant>));
    let n = throughput_count(size);
    let latency_phase = Arc::new(AtomicU64::new(0));
    let sub = {
        let (count, lat, done, phase) = (
            Arc::clone(&count),
            Arc::clone(&lat),
            Arc::clone(&done),
            Arc::clone(&latency_phase),
        );
        s.b.declare_subscriber(key.clone())
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                if phase.load(Ordering::Relaxed) == 1 {
                    let l = latency_of(&bytes);
                    lat.lock().unwrap().push(l);
                }
                if count.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    *done.lock().unwrap() = Some(Instant::now());
                }
            })
            .wait()
            .unwrap()
    };
    let publisher =
        s.a.declare_publisher(key)
            .congestion_control(CongestionControl::Block)
            .wait()
            .unwrap();
    while !publisher.matching_status().wait().unwrap().matching() {
        thread::sleep(Duration::from_millis(1));
    }
    // Throughput.
    let msg = vec![0u8; size];
    let t0 = Instant::now();
    for _ in 0..n {
        publisher.put(msg.clone()).wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let t1 = loop {
        if let Some(t) = *done.lock().unwrap() {
            break t;
        }
        assert!(Instant::now() < deadline, "direct: messages lost");
        thread::sleep(Duration::from_micros(200));
    };
    let msgs_per_s = n as f64 / (t1 - t0).as_secs_f64();
    // Latency.
    let received = count.load(Ordering::Relaxed);
    let mut buf = vec![0u8; size.max(8)];
    let mut next = Instant::now();
    for i in 0..LATENCY_WARMUP + LATENCY_SAMPLES {
        if i == LATENCY_WARMUP {
            // Let the warm-up drain before recording.
            while count.load(Ordering::Relaxed) < received + LATENCY_WARMUP as u64 {
                thread::yield_now();
            }
            latency_phase.store(1, Ordering::Relaxed);
        }
        next += PACE;
        pace_until(next);
        stamp(&mut buf);
        publisher.put(buf.clone()).wait().unwrap();
    }
    let want = received + (LATENCY_WARMUP + LATENCY_SAMPLES) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) < want {
        assert!(Instant::now() < deadline, "direct: latency messages lost");
        thread::sleep(Duration::from_millis(1));
    }
    drop(sub);
    let v = std::mem::take(&mut *lat.lock().unwrap());
    let (p50_us, p99_us) = percentiles(v);
    Round {
        msgs_per_s,
        p50_us,
        p99_us,
    }
}

fn bridge_round(s: &Sessions, size: usize, round: usize) -> Round {
    let pid = std::process::id();
    let ring_a = format!("shmcast-bridge-bench-{pid}-a-{size}-{round}");
    let ring_b = format!("shmcast-bridge-bench-{pid}-b-{size}-{round}");
    let key = format!("bench/{pid}/bridge/{size}/{round}");
    let mut producer = Producer::builder()
        .capacity(4 << 20)
        .max_message(64 << 10)
        .create(&ring_a)
        .unwrap();
    let mut io = ImportOptions::new(&ring_b, &key);
    io.capacity = 4 << 20;
    io.max_message = Some(64 << 10);
    io.wait = wait_policy();
    let importer = Importer::start(&s.b, io).unwrap();
    let mut consumer = Consumer::builder()
        .wait_policy(wait_policy())
        .open(&ring_b)
        .unwrap();
    let mut eo = ExportOptions::new(RingRef::Name(ring_a.clone()), &key);
    eo.wait = wait_policy();
    let mut exporter = Exporter::new(&s.a, eo).unwrap();
    let attached = exporter.stats_handle();
    let export = thread::spawn(move || exporter.run().unwrap());
    while attached.get().attachments == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    let n = throughput_count(size);
    let reader = thread::spawn(move || {
        // Throughput phase: n messages; then the latency phase.
        for _ in 0..n {
            consumer.recv().unwrap();
        }
        let done = Instant::now();
        let mut lat = Vec::with_capacity(LATENCY_SAMPLES);
        for i in 0..LATENCY_WARMUP + LATENCY_SAMPLES {
            let msg = consumer.recv().unwrap();
            if i >= LATENCY_WARMUP {
                lat.push(latency_of(&msg));
            }
        }
        (done, lat)
    });
    let msg = vec![0u8; size];
    let t0 = Instant::now();
    for _ in 0..n {
        producer.send(&msg).unwrap();
    }
    let mut buf = vec![0u8; size.max(8)];
    let mut next = Instant::now();
    for _ in 0..LATENCY_WARMUP + LATENCY_SAMPLES {
        next += PACE;
        pace_until(next);
        stamp(&mut buf);
        producer.send(&buf).unwrap();
    }
    let (t1, lat) = reader.join().unwrap();
    drop(producer);
    export.join().unwrap();
    importer.wait_end(Some(Duration::from_secs(60)));
    let stats = importer.stop();
    assert_eq!(stats.lost(), 0, "bridge lost messages: {stats:?}");
    let msgs_per_s = n as f64 / (t1 - t0).as_secs_f64();
    let (p50_us, p99_us) = percentiles(lat);
    Round {
        msgs_per_s,
        p50_us,
        p99_us,
    }
}

/// The rings' wait policy: the default, or `BENCH_WAIT=yield` (spin then yield, never
/// sleep on a futex) to separate futex wake-up costs from the rest.
fn wait_policy() -> WaitPolicy {
    match std::env::var("BENCH_WAIT").as_deref() {
        Ok("yield") => WaitPolicy::SpinYield { spins: 1000 },
        _ => WaitPolicy::default(),
    }
}

fn median_round(mut rounds: Vec<Round>) -> Round {
    let mid = rounds.len() / 2;
    let mut by = |f: fn(&Round) -> f64| {
        rounds.sort_by(|x, y| f(x).total_cmp(&f(y)));
        f(&rounds[mid])
    };
    Round {
        msgs_per_s: by(|r| r.msgs_per_s),
        p50_us: by(|r| r.p50_us),
        p99_us: by(|r| r.p99_us),
    }
}

fn machine_state() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, loadavg {}", load.trim())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds"));
    let sizes: Vec<usize> = args.next().map_or(vec![64, 1024, 16384], |a| {
        a.split(',').map(|s| s.parse().expect("size")).collect()
    });
    epoch();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sessions = Sessions {
        a: ZenohOptions::loopback_listen(port).open().unwrap(),
        b: ZenohOptions::loopback_connect(port).open().unwrap(),
    };
    println!("machine before: {}", machine_state());
    println!(
        "ring wait policy: {:?} (BENCH_WAIT=yield: spin then yield, never sleep)",
        wait_policy()
    );
    println!(
        "rounds {rounds}; latency: {LATENCY_SAMPLES} samples after {LATENCY_WARMUP} warm-up, \
         one per {PACE:?}"
    );
    println!();
    println!(
        "| size | direct msgs/s | direct MB/s | bridge msgs/s | bridge MB/s | bridge/direct \
         | direct p50 µs | direct p99 µs | bridge p50 µs | bridge p99 µs | added p50 µs \
         | added p99 µs | p50 range over rounds, direct / bridge µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &sizes {
        let mut direct = Vec::new();
        let mut bridge = Vec::new();
        for r in 0..rounds {
            direct.push(direct_round(&sessions, size, r));
            bridge.push(bridge_round(&sessions, size, r));
        }
        let range = |v: &[Round]| {
            let lo = v.iter().map(|r| r.p50_us).fold(f64::INFINITY, f64::min);
            let hi = v.iter().map(|r| r.p50_us).fold(0.0, f64::max);
            format!("{lo:.0}–{hi:.0}")
        };
        let spread = format!("{} / {}", range(&direct), range(&bridge));
        let (d, b) = (median_round(direct), median_round(bridge));
        let mb = |m: f64| m * size as f64 / 1e6;
        println!(
            "| {size} B | {:.0} | {:.1} | {:.0} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} \
             | {:.1} | {:.1} | {spread} |",
            d.msgs_per_s,
            mb(d.msgs_per_s),
            b.msgs_per_s,
            mb(b.msgs_per_s),
            b.msgs_per_s / d.msgs_per_s,
            d.p50_us,
            d.p99_us,
            b.p50_us,
            b.p99_us,
            b.p50_us - d.p50_us,
            b.p99_us - d.p99_us
        );
    }
    println!();
    println!("machine after: {}", machine_state());
}
