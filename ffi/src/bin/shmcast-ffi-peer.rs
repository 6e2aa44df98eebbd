//! The Rust side of the cross-language tests and benchmarks: a producer and a consumer of
//! the self-checking workload of `ffi/examples/workload.h`, written against the `shmcast`
//! crate directly, with the same arguments and output lines as the C examples
//! (`ffi/examples/producer.c`, `consumer.c`), and the Rust rows of the overhead benchmark.
//!
//! ```text
//! shmcast-ffi-peer produce NAME COUNT [--max-len N] [--seed S] [--capacity B] [--wait-go]
//!                                     [--stall-after K] [--busy-spin]
//! shmcast-ffi-peer consume NAME [--max-len N] [--seed S] [--lossy] [--oldest] [--busy-spin]
//! shmcast-ffi-peer bench-send NAME COUNT SIZE    # after "ready", waits for a line on stdin
//! shmcast-ffi-peer bench-recv NAME COUNT         # prints "received N in T ns"
//! shmcast-ffi-peer bench-loop NAME COUNT SIZE    # try_send + try_recv in one process
//! ```

use shmcast::{Consumer, Producer, RecvError, StartAt, TrySendError, WaitPolicy};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The workload of `workload.h`.
mod workload {
    pub const MIN_LEN: usize = 16;
    pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x100_0000_01b3;

    pub fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h
    }

    pub fn len(seed: u64, i: u64, max_len: usize) -> usize {
        MIN_LEN + (mix(seed ^ i) % (max_len - MIN_LEN + 1) as u64) as usize
    }

    fn filler(seed: u64, i: u64, j: usize) -> u8 {
        (i.wrapping_mul(31)
            .wrapping_add(j as u64 * 7)
            .wrapping_add(seed)) as u8
    }

    /// Write message `i` into `buf` (its exact length); return its checksum.
    pub fn fill(buf: &mut [u8], seed: u64, i: u64) -> u64 {
        let len = buf.len();
        buf[..8].copy_from_slice(&i.to_le_bytes());
        for (j, b) in buf.iter_mut().enumerate().take(len - 8).skip(8) {
            *b = filler(seed, i, j);
        }
        let sum = fnv(FNV_OFFSET, &buf[..len - 8]);
        buf[len - 8..].copy_from_slice(&sum.to_le_bytes());
        sum
    }

    /// Check message `i`; return its checksum.
    pub fn check(buf: &[u8], seed: u64, i: u64, max_len: usize) -> Result<u64, &'static str> {
        let len = buf.len();
        if len < MIN_LEN {
            return Err("shorter than 16 bytes");
        }
        if u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")) != i {
            return Err("wrong index");
        }
        if len != self::len(seed, i, max_len) {
            return Err("wrong length");
        }
        let sum = fnv(FNV_OFFSET, &buf[..len - 8]);
        if u64::from_le_bytes(buf[len - 8..].try_into().expect("8 bytes")) != sum {
            return Err("bad checksum");
        }
        if (8..len - 8).any(|j| buf[j] != filler(seed, i, j)) {
            return Err("wrong filler");
        }
        Ok(sum)
    }

    pub fn digest(d: u64, sum: u64) -> u64 {
        fnv(d, &sum.to_le_bytes())
    }
}

struct Args {
    positional: Vec<String>,
    max_len: usize,
    seed: u64,
    capacity: usize,
    wait_go: bool,
    stall_after: u64,
    lossy: bool,
    oldest: bool,
    busy_spin: bool,
}

fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut a = Args {
        positional: Vec::new(),
        max_len: 300,
        seed: 1,
        capacity: 65536,
        wait_go: false,
        stall_after: u64::MAX,
        lossy: false,
        oldest: false,
        busy_spin: false,
    };
    let mut it = raw.iter();
    let num = |v: Option<&String>, what: &str| -> Result<u64, String> {
        v.ok_or(format!("{what} needs a value"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--max-len" => a.max_len = num(it.next(), arg)? as usize,
            "--seed" => a.seed = num(it.next(), arg)?,
            "--capacity" => a.capacity = num(it.next(), arg)? as usize,
            "--stall-after" => a.stall_after = num(it.next(), arg)?,
            "--wait-go" => a.wait_go = true,
            "--lossy" => a.lossy = true,
            "--oldest" => a.oldest = true,
            "--busy-spin" => a.busy_spin = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => a.positional.push(s.to_string()),
        }
    }
    if a.max_len < workload::MIN_LEN {
        return Err("--max-len must be at least 16".into());
    }
    Ok(a)
}

impl Args {
    fn wait(&self) -> WaitPolicy {
        if self.busy_spin {
            WaitPolicy::BusySpin
        } else {
            WaitPolicy::default()
        }
    }

    fn pos(&self, i: usize, what: &str) -> Result<&str, String> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or(format!("missing {what}"))
    }

    fn pos_num(&self, i: usize, what: &str) -> Result<u64, String> {
        self.pos(i, what)?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn wait_for_go() -> Result<(), String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 => Ok(()),
        _ => Err("stdin closed before the go line".into()),
    }
}

const BLOCK: u64 = 8;

/// As `producer.c`: the same messages, sent in turn by send, try_send, reserve/commit (with
/// aborted reservations), send_batch and send_timeout.
fn produce(a: &Args) -> Result<(), String> {
    let name = a.pos(0, "NAME")?;
    let count = a.pos_num(1, "COUNT")?;
    let mut p = Producer::builder()
        .capacity(a.capacity)
        .max_message(a.max_len)
        .wait_policy(a.wait())
        .create(name)
        .map_err(|e| e.to_string())?;
    say(&format!(
        "ready capacity={} max_message={}",
        p.capacity(),
        p.max_message()
    ));
    if a.wait_go {
        wait_for_go()?;
    }
    let (seed, max) = (a.seed, a.max_len);
    let mut scratch = vec![0u8; max];
    let (mut digest, mut bytes, mut aborted) = (workload::FNV_OFFSET, 0u64, 0u64);
    let mut i = 0;
    while i < count {
        if i == a.stall_after {
            say(&format!("stalled {i}"));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let way = (i / BLOCK) % 5;
        if way == 3 && i % BLOCK == 0 {
            let end = (i + BLOCK).min(count).min(a.stall_after);
            let batch: Vec<Vec<u8>> = (i..end)
                .map(|k| {
                    let mut m = vec![0; workload::len(seed, k, max)];
                    digest = workload::digest(digest, workload::fill(&mut m, seed, k));
                    bytes += m.len() as u64;
                    m
                })
                .collect();
            p.send_batch(&batch).map_err(|e| e.to_string())?;
            i = end;
            continue;
        }
        let len = workload::len(seed, i, max);
        match way {
            2 => {
                if i % 3 == 0 {
                    if let Ok(mut r) = p.try_reserve(len) {
                        r.fill(0xAB); // never committed: aborted at the end of scope
                        aborted += 1;
                    }
                }
                let mut r = p.reserve(len).map_err(|e| e.to_string())?;
                digest = workload::digest(digest, workload::fill(&mut r, seed, i));
                r.commit();
            }
            _ => {
                let msg = &mut scratch[..len];
                digest = workload::digest(digest, workload::fill(msg, seed, i));
                match way {
                    0 => p.send(msg).map_err(|e| e.to_string())?,
                    1 => match p.try_send(msg) {
                        Ok(()) => {}
                        Err(TrySendError::Full) => p.send(msg).map_err(|e| e.to_string())?,
                        Err(e) => return Err(e.to_string()),
                    },
                    _ => loop {
                        match p.send_timeout(msg, Duration::from_millis(50)) {
                            Ok(()) => break,
                            Err(shmcast::SendTimeoutError::Timeout) => continue,
                            Err(e) => return Err(e.to_string()),
                        }
                    },
                }
            }
        }
        bytes += len as u64;
        i += 1;
    }
    say(&format!(
        "sent messages={count} bytes={bytes} digest={digest:016x} aborted={aborted}"
    ));
    Ok(())
}

/// As `consumer.c`.
fn consume(a: &Args) -> Result<(), String> {
    let name = a.pos(0, "NAME")?;
    let b = Consumer::builder()
        .wait_policy(a.wait())
        .start_at(if a.oldest {
            StartAt::Oldest
        } else {
            StartAt::Next
        });
    let mut run = Run {
        seed: a.seed,
        max_len: a.max_len,
        messages: 0,
        bytes: 0,
        lost: 0,
        digest: workload::FNV_OFFSET,
        next: None,
    };
    let end = if a.lossy {
        let mut c = b.lossy().open(name).map_err(|e| e.to_string())?;
        say("attached");
        let mut buf = Vec::new();
        loop {
            match c.recv_into(&mut buf) {
                Ok(seq) => run.take(&buf, seq)?,
                Err(RecvError::Lagged(n)) => run.lagged(n),
                Err(e) => break e,
            }
        }
    } else {
        let mut c = b.open(name).map_err(|e| e.to_string())?;
        say("attached");
        loop {
            match c.recv() {
                Ok(m) => run.take(&m, m.seq())?,
                Err(e) => break e,
            }
        }
    };
    let how = match end {
        RecvError::Disconnected => "ok",
        RecvError::ProducerDied => "producer-died",
        e => return Err(format!("receive: {e}")),
    };
    say(&format!(
        "{how} messages={} bytes={} lost={} digest={:016x}",
        run.messages, run.bytes, run.lost, run.digest
    ));
    Ok(())
}

/// What a consumer has checked so far.
struct Run {
    seed: u64,
    max_len: usize,
    messages: u64,
    bytes: u64,
    lost: u64,
    digest: u64,
    /// The sequence number expected next (once the first message arrived).
    next: Option<u64>,
}

impl Run {
    fn take(&mut self, data: &[u8], seq: u64) -> Result<(), String> {
        if let Some(n) = self.next {
            if seq != n {
                return Err(format!("expected message {n}, got {seq}"));
            }
        }
        let sum = workload::check(data, self.seed, seq, self.max_len)
            .map_err(|why| format!("message {seq} ({} bytes): {why}", data.len()))?;
        self.next = Some(seq + 1);
        self.messages += 1;
        self.bytes += data.len() as u64;
        self.digest = workload::digest(self.digest, sum);
        Ok(())
    }

    /// A lossy consumer lost `n` messages: it goes on at the oldest one still present.
    fn lagged(&mut self, n: u64) {
        self.lost += n;
        self.next = self.next.map(|s| s + n);
    }
}

/// Benchmark producer: COUNT messages of SIZE bytes, as fast as the consumer allows.
fn bench_send(a: &Args) -> Result<(), String> {
    let name = a.pos(0, "NAME")?;
    let count = a.pos_num(1, "COUNT")?;
    let size = a.pos_num(2, "SIZE")? as usize;
    let mut p = Producer::builder()
        .capacity(a.capacity)
        .wait_policy(a.wait())
        .create(name)
        .map_err(|e| e.to_string())?;
    say("ready");
    wait_for_go()?;
    let mut msg = vec![0u8; size.max(8)];
    msg.truncate(size);
    for i in 0..count {
        if size >= 8 {
            msg[..8].copy_from_slice(&i.to_le_bytes());
        }
        p.send(&msg).map_err(|e| e.to_string())?;
    }
    say("sent");
    Ok(())
}

/// Benchmark consumer: receive COUNT messages; time from the first to the last.
fn bench_recv(a: &Args) -> Result<(), String> {
    let name = a.pos(0, "NAME")?;
    let count = a.pos_num(1, "COUNT")?;
    let mut c = Consumer::builder()
        .wait_policy(a.wait())
        .open(name)
        .map_err(|e| e.to_string())?;
    say("attached");
    let mut start = None;
    let mut sum = 0u64;
    for _ in 0..count {
        let m = c.recv().map_err(|e| e.to_string())?;
        start.get_or_insert_with(Instant::now);
        sum = sum.wrapping_add(m.len() as u64);
    }
    let ns = start.map_or(0, |s| s.elapsed().as_nanos());
    say(&format!("received {count} in {ns} ns (bytes {sum})"));
    Ok(())
}

/// Benchmark: one process, a named segment, try_send then try_recv (and drop), COUNT
/// times.
fn bench_loop(a: &Args) -> Result<(), String> {
    let name = a.pos(0, "NAME")?;
    let count = a.pos_num(1, "COUNT")?;
    let size = a.pos_num(2, "SIZE")? as usize;
    let mut p = Producer::builder()
        .capacity(a.capacity)
        .wait_policy(a.wait())
        .create(name)
        .map_err(|e| e.to_string())?;
    let mut c = Consumer::builder()
        .wait_policy(a.wait())
        .open(name)
        .map_err(|e| e.to_string())?;
    let msg = vec![7u8; size.max(1)];
    let msg = &msg[..size];
    let mut sum = 0u64;
    let start = Instant::now();
    for _ in 0..count {
        p.try_send(msg).map_err(|e| e.to_string())?;
        let m = c.try_recv().map_err(|e| e.to_string())?;
        sum = sum.wrapping_add(u64::from(m.first().copied().unwrap_or(0)));
    }
    let ns = start.elapsed().as_nanos();
    say(&format!("loop {count} in {ns} ns (sum {sum})"));
    Ok(())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((role, rest)) = raw.split_first() else {
        eprintln!("usage: shmcast-ffi-peer produce|consume|bench-send|bench-recv|bench-loop ...");
        return ExitCode::from(2);
    };
    let args = match parse_args(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shmcast-ffi-peer: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match role.as_str() {
        "produce" => produce(&args),
        "consume" => consume(&args),
        "bench-send" => bench_send(&args),
        "bench-recv" => bench_recv(&args),
        "bench-loop" => bench_loop(&args),
        other => Err(format!("unknown role {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error {e}"));
            ExitCode::from(1)
        }
    }
}
