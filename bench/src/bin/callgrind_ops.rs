//! The instruction-count driver behind `bench/callgrind.sh`: one thread, one mapped
//! segment, bursts of 64 sends then 64 receives of 64-byte messages, so that
//! `valgrind --tool=callgrind --toggle-collect=cg_*` counts exactly the instructions
//! executed inside the `cg_*` functions below (everything they call included) and nothing
//! else. Each `cg_*` function is one measured loop; the script divides its inclusive count
//! by the number of messages this program reports on standard output.
//!
//! ```sh
//! bash bench/callgrind.sh                 # every scenario, one table
//! target/release/callgrind_ops shmcast    # the bare driver (no valgrind: a smoke run)
//! ```
//!
//! Scenarios: `shmcast` (try_send / try_recv + drop), `shmcast-send` (blocking send, with
//! unmeasured try_recv), `shmcast-batch` (send_batch /
//! recv_batch of 64), `shmcast-fanout-K` for K lossless consumers that keep up (per-send
//! count; the consumers drain between bursts, outside the measured functions), and with
//! `--features peers`: `ringfire` (its default lossy ring: push / try_recv) and
//! `ringfire-lossless` (LosslessBackpressure with a registered reader).

use shmcast::{Consumer, Producer};
use shmcast_bench::args::{self, opt};
use std::hint::black_box;

const BURST: usize = 64;
const SIZE: usize = 64;

const ABOUT: &str = "Drive one thread through bursts of 64 sends and 64 receives of 64-byte \
messages on a mapped segment, for callgrind (see bench/callgrind.sh).";

const SPECS: &[args::Spec] = &[
    opt("bursts", "N", "2000", "Measured bursts (64 messages each)"),
    opt(
        "warmup",
        "N",
        "200",
        "Bursts run first, outside the measured functions",
    ),
    opt(
        "capacity",
        "BYTES",
        "65536",
        "Ring capacity (shmcast bytes; ringfire slots hold as many 64 B messages as fit)",
    ),
];

// ---- shmcast ------------------------------------------------------------------------

#[inline(always)]
fn shm_send(p: &mut Producer, msg: &[u8], n: usize) {
    for _ in 0..n {
        if p.try_send(black_box(msg)).is_err() {
            panic!("try_send failed: the consumers must keep up");
        }
    }
}

#[inline(always)]
fn shm_recv(c: &mut Consumer, n: usize) {
    for _ in 0..n {
        match c.try_recv() {
            Ok(m) => {
                black_box(m.len());
            }
            Err(e) => panic!("try_recv failed: {e}"),
        }
    }
}

/// Measured: `n` × `Producer::try_send` of `msg`.
#[no_mangle]
#[inline(never)]
pub fn cg_shmcast_send(p: &mut Producer, msg: &[u8], n: usize) {
    shm_send(p, msg, n);
}

/// Measured: `n` × `Consumer::try_recv`, reading the length, dropping the message.
#[no_mangle]
#[inline(never)]
pub fn cg_shmcast_recv(c: &mut Consumer, n: usize) {
    shm_recv(c, n);
}

/// Measured: `n` × `Producer::send` (blocking) of `msg`.
#[no_mangle]
#[inline(never)]
pub fn cg_shmcast_send_blocking(p: &mut Producer, msg: &[u8], n: usize) {
    for _ in 0..n {
        if let Err(e) = p.send(black_box(msg)) {
            panic!("send failed: {e}");
        }
    }
}

/// Measured: one `send_batch` of `msgs`.
#[no_mangle]
#[inline(never)]
pub fn cg_shmcast_send_batch(p: &mut Producer, msgs: &[&[u8]]) {
    if let Err(e) = p.send_batch(black_box(msgs)) {
        panic!("send_batch failed: {e}");
    }
}

/// Measured: one `recv_batch` of up to `n`, reading each length.
#[no_mangle]
#[inline(never)]
pub fn cg_shmcast_recv_batch(c: &mut Consumer, n: usize) -> usize {
    match c.recv_batch(n, |_, m| {
        black_box(m.len());
    }) {
        Ok(got) => got,
        Err(e) => panic!("recv_batch failed: {e}"),
    }
}

/// How the measured bursts send.
#[derive(Clone, Copy, PartialEq)]
enum Sends {
    Try,
    Blocking,
    Batch,
}

fn shmcast(bursts: usize, warmup: usize, capacity: usize, consumers: usize, sends: Sends) -> u64 {
    let mut p = Producer::builder()
        .capacity(capacity)
        .max_consumers(consumers.max(1) as u32)
        .create_anonymous()
        .unwrap_or_else(|e| fail(&e));
    let fd = p.fd().expect("an anonymous segment has a descriptor");
    let mut cs: Vec<Consumer> = (0..consumers)
        .map(|_| Consumer::builder().open_fd(fd).unwrap_or_else(|e| fail(&e)))
        .collect();
    let msg = [0x5au8; SIZE];
    let msgs: Vec<&[u8]> = vec![&msg[..]; BURST];
    for _ in 0..warmup {
        shm_send(&mut p, &msg, BURST);
        for c in &mut cs {
            shm_recv(c, BURST);
        }
    }
    for _ in 0..bursts {
        if sends == Sends::Blocking {
            cg_shmcast_send_blocking(&mut p, &msg, BURST);
            shm_recv(&mut cs[0], BURST);
        } else if sends == Sends::Batch {
            cg_shmcast_send_batch(&mut p, &msgs);
            let mut got = 0;
            while got < BURST {
                got += cg_shmcast_recv_batch(&mut cs[0], BURST - got);
            }
        } else if consumers == 1 {
            cg_shmcast_send(&mut p, &msg, BURST);
            cg_shmcast_recv(&mut cs[0], BURST);
        } else {
            cg_shmcast_send(&mut p, &msg, BURST);
            for c in &mut cs {
                shm_recv(c, BURST);
            }
        }
    }
    (bursts * BURST) as u64
}

// ---- ringfire -----------------------------------------------------------------------

#[cfg(feature = "ringfire")]
mod rf {
    use super::*;
    use ringfire::{RingConsumer, RingProducer};
    use shmcast_bench::peers::{ringfire_direct, Bytes};

    type P = RingProducer<Bytes<SIZE>>;
    type C = RingConsumer<Bytes<SIZE>>;

    #[inline(always)]
    fn push(p: &mut P, item: &Bytes<SIZE>, n: usize) {
        for _ in 0..n {
            p.push(black_box(item));
        }
    }

    #[inline(always)]
    fn recv(c: &mut C, n: usize) {
        for _ in 0..n {
            match c.try_recv() {
                Some(v) => {
                    black_box(&v);
                }
                None => panic!("ringfire try_recv: empty"),
            }
        }
    }

    /// Measured: `n` × ringfire `push`.
    #[no_mangle]
    #[inline(never)]
    pub fn cg_ringfire_push(p: &mut P, item: &Bytes<SIZE>, n: usize) {
        push(p, item, n);
    }

    /// Measured: `n` × ringfire `try_recv` (a copy out, by its API).
    #[no_mangle]
    #[inline(never)]
    pub fn cg_ringfire_recv(c: &mut C, n: usize) {
        recv(c, n);
    }

    pub fn run(bursts: usize, warmup: usize, capacity: usize, lossless: bool) -> u64 {
        let path = std::path::PathBuf::from("/dev/shm")
            .join(format!("shmcast-bench-cg-{}-ringfire", std::process::id()));
        let slots = ((capacity / (SIZE + 8)).max(BURST * 2)).next_power_of_two() as u64;
        let mut p =
            ringfire_direct::producer::<SIZE>(&path, slots, lossless).unwrap_or_else(|e| fail(&e));
        let mut c = ringfire_direct::consumer::<SIZE>(&path).unwrap_or_else(|e| fail(&e));
        let item = Bytes([0x5a; SIZE]);
        for _ in 0..warmup {
            push(&mut p, &item, BURST);
            recv(&mut c, BURST);
        }
        for _ in 0..bursts {
            cg_ringfire_push(&mut p, &item, BURST);
            cg_ringfire_recv(&mut c, BURST);
        }
        drop(c);
        drop(p); // unlinks the file
        (bursts * BURST) as u64
    }
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1);
}

fn main() {
    args::run(real_main);
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::parse(
        ABOUT,
        "callgrind_ops [OPTIONS] SCENARIO\n\nScenarios: shmcast, shmcast-send, shmcast-batch, \
         shmcast-fanout-K (K consumers), ringfire, ringfire-lossless (--features peers)",
        SPECS,
        1,
        std::env::args().skip(1),
    )?;
    let bursts: usize = a.value("bursts")?;
    let warmup: usize = a.value("warmup")?;
    let capacity: usize = a.value("capacity")?;
    let scenario = a
        .positional
        .first()
        .ok_or_else(|| args::ArgsError::Bad("which scenario?".into()))?
        .as_str();
    let messages = match scenario {
        "shmcast" => shmcast(bursts, warmup, capacity, 1, Sends::Try),
        "shmcast-send" => shmcast(bursts, warmup, capacity, 1, Sends::Blocking),
        "shmcast-batch" => shmcast(bursts, warmup, capacity, 1, Sends::Batch),
        s if s.starts_with("shmcast-fanout-") => {
            let k: usize = s["shmcast-fanout-".len()..]
                .parse()
                .map_err(|_| args::ArgsError::Bad(format!("bad consumer count in '{s}'")))?;
            if k == 0 {
                return Err(args::ArgsError::Bad("at least one consumer".into()).into());
            }
            shmcast(bursts, warmup, capacity, k, Sends::Try)
        }
        #[cfg(feature = "ringfire")]
        "ringfire" => rf::run(bursts, warmup, capacity, false),
        #[cfg(feature = "ringfire")]
        "ringfire-lossless" => rf::run(bursts, warmup, capacity, true),
        #[cfg(not(feature = "ringfire"))]
        "ringfire" | "ringfire-lossless" => {
            return Err("ringfire is not built: add --features peers".into())
        }
        s => return Err(args::ArgsError::Bad(format!("unknown scenario '{s}'")).into()),
    };
    println!("messages {messages}");
    Ok(())
}
