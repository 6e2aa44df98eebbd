//! The ring algorithm, one file per concern. Every memory ordering of the crate's data path
//! is in this module, and every public operation is one function here that both the public
//! handles (`producer.rs`, `consumer.rs`) and the loom model checks call:
//!
//! | file | what | operations |
//! |:--|:--|:--|
//! | [`writer`] | publication | `try_send`, `send`, `try_reserve`/`reserve`, `commit`, `send_batch`, `close` |
//! | [`gate`] | gating and the claim | the write limit, slot scans, eviction of dead and stuck consumers |
//! | [`takeover`] | a producer attaching | recovering the committed end and the sequence |
//! | [`attach`] | a consumer attaching | slot, start position and handshake; `detach` |
//! | [`cursor`] | lossless reading | `try_recv`, `recv`, `recv_batch`, `release`, end of stream |
//! | [`lossy`] | lossy reading | `try_recv_lossy`, `recv_lossy`, exact loss counts |
//! | [`eventcount`] | sleeping and waking | the Dekker-shaped sleep/wake protocol on both futexes |
//!
//! # Publication
//! A record is published by its own header: the producer writes the payload, the `seq` and
//! `meta` words and an unpublished stamp ([`unpublished`]`(next seq)`) at the *next*
//! record's position, then stores the record's stream position into its `stamp` word with
//! `Release`. A consumer at cursor `c` polls the stamp at `c` with `Acquire`; `stamp == c`
//! means the record and everything written before it is visible. Positions never repeat, so
//! a stale stamp from an earlier lap never matches; the unpublished stamp written ahead
//! covers the one word that could hold arbitrary payload bytes from an earlier lap. A batch
//! writes every record, the later stamps first, and stores the first record's stamp last.
//!
//! # Gating and the claim
//! Lossless consumers release records by storing their cursor (`Release`); the producer
//! loads cursors (`Acquire`) before it overwrites. It caches `limit = min(claim, gate +
//! capacity)` and rescans slots only when a reservation would pass it. `claim` bounds every
//! position the producer may have written: it is raised (then `fence(SeqCst)`) before any
//! write past it, which is what lossy readers and attaching consumers validate against. The
//! gate never passes the oldest record consumers cannot see yet (the first of a batch), so
//! `claim <= tail + capacity` always holds for the published `tail`: a claim beyond that is
//! corruption. Cursors are untrusted: one outside `[tail - capacity, tail]` gets its slot
//! evicted.
//!
//! # Attaching
//! An attaching consumer stores its cursor and state, issues `fence(SeqCst)`, then loads
//! `claim`; the producer stores `claim`, issues `fence(SeqCst)`, then scans the slots. Either
//! the producer's scan sees the new slot, or the consumer sees a claim that may overrun its
//! start and moves forward.
//!
//! # Sleeping and waking
//! See [`eventcount`]: one wake-up syscall per sleep generation, none while nobody sleeps.

#[cfg(all(not(shmcast_loom), feature = "tokio"))]
pub(crate) mod asynch;
pub(crate) mod attach;
pub(crate) mod cursor;
pub(crate) mod eventcount;
pub(crate) mod gate;
pub(crate) mod lossy;
pub(crate) mod takeover;
pub(crate) mod writer;

use crate::error::SegmentError;
use crate::layout::{MAX_POSITION, RECORD_HEADER};
use crate::region::Region;
use std::time::{Duration, Instant};

pub(crate) use cursor::Record;
pub(crate) use writer::Reservation;

/// Size of a record header, as a position delta.
const HDR: u64 = RECORD_HEADER as u64;

/// Checkpoints kept by the producer: two laps' worth of claim chunks (eighths).
const CHECKPOINTS: usize = 16;

/// A lossless consumer's expected sequence number before its first message: any number is
/// taken then (the next one is checked against it). No producer numbers a message this high
/// (positions stop at 2^62, a record takes 24 bytes), so only a forged 2^64 - 2 on the first
/// message taken leads here later, and leaves one more number unchecked.
const SEQ_UNKNOWN: u64 = u64::MAX;

/// How many times an attaching consumer re-registers before giving up.
const ATTACH_ATTEMPTS: u32 = 1000;

/// Counters kept by a producer handle (process-private, not shared).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Messages committed.
    pub messages: u64,
    /// `FUTEX_WAKE` syscalls made to wake sleeping consumers.
    pub wake_syscalls: u64,
    /// Blocking sends that found the ring full.
    pub full_waits: u64,
    /// Futex sleeps while the ring was full.
    pub sleeps: u64,
    /// Scans of the consumer slot table.
    pub rescans: u64,
    /// Consumer slots reclaimed or evicted (dead or misbehaving consumers).
    pub evictions: u64,
}

/// Counters kept by a consumer handle (process-private, not shared).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages received.
    pub messages: u64,
    /// `FUTEX_WAKE` syscalls made to wake a producer waiting for space.
    pub wake_syscalls: u64,
    /// Futex sleeps while the ring was empty.
    pub sleeps: u64,
}

/// Where a new consumer starts reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// At the next message published after it attaches (default).
    #[default]
    Next,
    /// At the oldest message still in the ring that the producer is not about to
    /// overwrite: it claims space an eighth of the capacity at a time, and starts are
    /// tracked per eighth, so up to a quarter of the capacity of the very oldest data may
    /// be skipped.
    Oldest,
}

/// Read a stream position from shared memory, refusing impossible values.
fn position(field: &'static str, value: u64) -> Result<u64, SegmentError> {
    if value > MAX_POSITION {
        Err(SegmentError::BadPosition {
            field,
            found: value,
        })
    } else {
        Ok(value)
    }
}

/// The ring's geometry as a handle keeps it (process-private, validated once).
#[derive(Clone, Copy, Debug)]
struct Dims {
    cap: u64,
    mask: u64,
    max_message: u64,
    max_record: u64,
}

impl Dims {
    fn of(region: &Region) -> Dims {
        let geo = region.geometry();
        Dims {
            cap: geo.capacity,
            mask: geo.mask,
            max_message: u64::from(geo.max_message),
            max_record: crate::layout::record_size(u64::from(geo.max_message)),
        }
    }

    /// `pos`, moved past a tail fragment of the ring too short for a record header.
    #[inline]
    fn skip_short(&self, pos: u64) -> u64 {
        let room = self.cap - (pos & self.mask);
        if room < HDR {
            pos + room
        } else {
            pos
        }
    }
}

/// Rate limit for liveness probes (a system call each): at most one per `PROBE_INTERVAL`.
/// In the model there is no time: every probe is due, so liveness is checked at every
/// opportunity and the model sees it.
#[derive(Debug, Default)]
struct Probe {
    #[cfg_attr(shmcast_loom, allow(dead_code))]
    last: Option<Instant>,
}

impl Probe {
    fn due(&mut self, interval: Duration, force: bool) -> bool {
        #[cfg(shmcast_loom)]
        {
            let _ = (interval, force);
            true
        }
        #[cfg(not(shmcast_loom))]
        {
            let now = Instant::now();
            match self.last {
                Some(t) if !force && now.duration_since(t) < interval => false,
                _ => {
                    self.last = Some(now);
                    true
                }
            }
        }
    }
}
