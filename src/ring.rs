//! The ring algorithm: reservation, publication, gating, consumption and the wake-up
//! protocol. Every memory ordering of the crate's data path is in this file.
//!
//! # Publication
//! A record is published by its own header: the producer writes the payload, the `seq` and
//! `meta` words and an unpublished stamp ([`unpublished`]`(next seq)`) at the *next*
//! record's position, then stores the record's stream position into its `stamp` word with
//! `Release`. A consumer at cursor `c` polls the stamp at `c` with `Acquire`; `stamp == c`
//! means the record and everything written before it is visible. Positions never repeat, so
//! a stale stamp from an earlier lap never matches; the unpublished stamp written ahead
//! covers the one word that could hold arbitrary payload bytes from an earlier lap. A
//! consumer thus polls the same cache line it is about to read, and nothing is ever zeroed.
//! A batch writes every record, the later stamps first, and stores the first record's stamp
//! last: one release publishes the batch.
//!
//! # Lossy consumers
//! A lossy consumer never gates the producer. It copies a record out with atomic loads,
//! then issues `fence(Acquire)` and checks that `claim <= position + capacity`: the
//! producer raises `claim` and issues `fence(SeqCst)` before it writes past the old claim,
//! so a copy that saw any overwritten byte also sees the raised claim (seqlock). A lapped
//! consumer restarts at the oldest intact record and counts what it lost by sequence
//! numbers.
//!
//! # Gating (lossless consumers)
//! A consumer releases records by storing its cursor with `Release`; the producer loads
//! cursors with `Acquire` before overwriting, so a consumer's reads happen-before the
//! overwrite. The producer caches `limit = min(claim, gate + capacity)` and rescans the
//! slots only when a reservation would pass it. Cursors are untrusted: one outside
//! `[tail - capacity, tail]` or misaligned gets its slot evicted.
//!
//! # Attaching
//! The producer publishes `claim` (an upper bound of every position it may write) and then
//! issues `fence(SeqCst)` before rescanning slots; an attaching consumer stores its cursor
//! and state, issues `fence(SeqCst)`, then loads `claim`. Either the producer's rescan sees
//! the new slot, or the consumer sees a claim that may overrun its start and moves forward.
//!
//! # Sleeping and waking
//! Dekker-shaped, with `fence(SeqCst)` on both sides, as an eventcount. Sleeper: read the
//! futex word, set the `sleepers` flag (a read-modify-write), fence, re-check,
//! `futex_wait(word, value_read_first)`. Waker: publish, fence, and only if the flag is set
//! clear it, bump the word and `FUTEX_WAKE` everyone. One wake-up serves every sleeper of a
//! generation: while woken consumers are still on their way back to a CPU (tens of
//! microseconds on an idle VM) later messages make no syscall, and a sleeper that died
//! costs one needless wake-up, not one per message. Consumers sleep on the `data` futex,
//! the producer on the `space` futex.

use crate::error::{
    Corruption, OpenError, RecvTimeoutError, SegmentError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use crate::layout::*;
use crate::region::{LockId, Region};
use crate::sync::atomic::{compiler_fence, fence, Ordering::*};
use crate::wait::{Step, WaitPolicy, Wake, PROBE_INTERVAL, SLEEP_BOUND};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HDR: u64 = RECORD_HEADER as u64;

/// Checkpoints kept by the producer: two laps' worth of claim chunks (eighths).
const CHECKPOINTS: usize = 16;

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

#[inline]
fn meta(len: u64, kind: u32) -> u64 {
    len | (u64::from(kind) << 32)
}

/// A planned record: where its padding (if any), header and payload go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reservation {
    /// The producer's tail when planned (where the padding record goes, if any).
    start: u64,
    /// The record's stream position.
    pos: u64,
    /// Payload length.
    pub(crate) len: u64,
    /// Position of the record after this one.
    next: u64,
    /// A padding record fills `start..pos`.
    pad: bool,
}

impl Reservation {
    /// Data-ring index of the payload.
    #[inline]
    pub(crate) fn payload_idx(&self, mask: u64) -> u64 {
        (self.pos + HDR) & mask
    }

    /// One past the last byte this reservation writes (the next record's stamp).
    #[inline]
    fn write_end(&self) -> u64 {
        self.next + 8
    }
}

/// The producer side of a ring.
pub(crate) struct RingProducer {
    region: Arc<Region>,
    cap: u64,
    mask: u64,
    max_message: u64,
    max_consumers: u32,
    claim_chunk: u64,
    /// `log2(claim_chunk)`.
    chunk_shift: u32,
    /// Position of the next record (the committed end).
    tail: u64,
    next_seq: u64,
    /// Writes below `limit` need no rescan.
    limit: u64,
    /// The claim last published.
    claim: u64,
    /// The first record position of each of the last `CHECKPOINTS` claim chunks written
    /// (a private ring indexed by chunk number): where `head` can point when the claim
    /// moves, without walking records on the hot path.
    checkpoints: [u64; CHECKPOINTS],
    /// Chunk number of the last checkpoint taken.
    last_chunk: u64,
    last_probe: Option<Instant>,
    /// Opt-in: evict a live lossless consumer that gates us for this long.
    evict_after: Option<Duration>,
    /// Sleepers issue a heavy barrier, so publication needs no hardware fence here.
    asymmetric: bool,
    /// Since when each slot (by index) has been gating us, for `evict_after`.
    gated_since: Vec<Option<(u32, Instant)>>,
    pub(crate) stats: ProducerStats,
}

/// Read a stream position from the header, refusing impossible values.
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

impl RingProducer {
    /// Become the producer of `region`: take the producer lock, recover the committed end of
    /// the stream (a previous producer may have died between publishing a record and
    /// storing its tail), and mark the stream live.
    pub(crate) fn attach(region: Arc<Region>) -> Result<RingProducer, OpenError> {
        let got = region
            .try_lock(LockId::Producer)
            .map_err(|source| OpenError::Io {
                context: "lock the producer byte".into(),
                source,
            })?;
        if !got {
            return Err(OpenError::ProducerAlive);
        }
        let geo = *region.geometry();
        let cap = geo.capacity;
        let h = region.header();
        // Acquire pairs with a previous producer's Release stores of tail / head / claim.
        let read = || -> Result<(u64, u64, u64), SegmentError> {
            let tail = position("tail", h.producer.tail.load(Acquire))?;
            if tail % RECORD_ALIGN as u64 != 0 {
                return Err(SegmentError::BadPosition {
                    field: "tail",
                    found: tail,
                });
            }
            let claim = position("claim", h.producer.claim.load(Acquire))?;
            // Every message takes at least a record header: more messages than bytes is
            // impossible.
            let next_seq = h.producer.next_seq.load(Acquire);
            if next_seq > tail {
                return Err(SegmentError::BadPosition {
                    field: "next_seq",
                    found: next_seq,
                });
            }
            Ok((tail, claim, next_seq))
        };
        let (mut tail, claim, mut next_seq) = match read() {
            Ok(v) => v,
            Err(e) => {
                region.unlock(LockId::Producer);
                return Err(e.into());
            }
        };
        let mut p = RingProducer {
            region,
            cap,
            mask: geo.mask,
            max_message: u64::from(geo.max_message),
            max_consumers: geo.max_consumers,
            claim_chunk: cap / 8,
            chunk_shift: (cap / 8).trailing_zeros(),
            tail: 0,
            next_seq: 0,
            limit: 0,
            claim,
            checkpoints: [u64::MAX; CHECKPOINTS],
            last_chunk: u64::MAX,
            last_probe: None,
            evict_after: None,
            gated_since: Vec::new(),
            asymmetric: false,
            stats: ProducerStats::default(),
        };
        // Walk forward over records published after the stored tail (bounded).
        tail = p.skip_short(tail);
        for _ in 0..cap / HDR {
            match p.record_at(tail) {
                Some((len, kind, seq)) => {
                    let idx = tail & p.mask;
                    tail = if kind == KIND_PADDING {
                        tail + (cap - idx)
                    } else {
                        next_seq = seq.wrapping_add(1);
                        p.skip_short(tail + record_size(len))
                    };
                    if tail > MAX_POSITION {
                        break;
                    }
                }
                None => break,
            }
        }
        p.tail = tail;
        p.next_seq = next_seq;
        let h = p.region.header();
        // No checkpoints yet: consumers starting at the oldest message start at the tail
        // until we have written a chunk.
        h.producer.head.store(tail, Release);
        // The claim never goes down: it bounds what the old producer may have written too.
        p.claim = p.claim.max(tail);
        // Whatever the word at the tail holds (the walk stopped there: not a valid published
        // record), make it the unpublished stamp, as every commit leaves it; consumers then
        // wait there instead of reporting a leftover as corruption. The previous producer
        // wrote this word already, so it lies inside its claim.
        p.region.word(tail).store(unpublished(next_seq), Relaxed);
        h.producer.tail.store(tail, Release);
        h.producer.next_seq.store(next_seq, Release);
        h.control.epoch.fetch_add(1, Relaxed);
        // Only a producer sleeps for space, and holding the producer lock proves the one
        // before us is gone: a flag it left set would only cost consumers a wake-up.
        h.space.sleepers.store(0, Relaxed);
        p.asymmetric = p.region.enable_asymmetric_barrier();
        // Published before LIVE: a consumer that sees us live sleeps by our rules.
        h.control.asymmetric.store(u32::from(p.asymmetric), Relaxed);
        // Release pairs with the consumers' Acquire loads of the state.
        h.control.state.store(PRODUCER_LIVE, Release);
        Ok(p)
    }

    /// A published, well-formed record at `pos`, as (len, kind, seq); `None` otherwise.
    fn record_at(&self, pos: u64) -> Option<(u64, u32, u64)> {
        let idx = pos & self.mask;
        if self.cap - idx < HDR {
            return None;
        }
        // Acquire pairs with the Release stamp store in `commit` (ours or a predecessor's).
        if self.region.word(idx).load(Acquire) != pos {
            return None;
        }
        let m = self.region.word(idx + 16).load(Relaxed);
        let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
        let ok = match kind {
            KIND_MESSAGE => len <= self.max_message && record_size(len) <= self.cap - idx,
            KIND_PADDING => self.cap - idx < record_size(self.max_message),
            _ => false,
        };
        ok.then(|| (len, kind, self.region.word(idx + 8).load(Relaxed)))
    }

    /// Skip a tail fragment too short for a record header.
    #[inline]
    fn skip_short(&self, pos: u64) -> u64 {
        let room = self.cap - (pos & self.mask);
        if room < HDR {
            pos + room
        } else {
            pos
        }
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Evict live lossless consumers that gate the producer for longer than `after`.
    pub(crate) fn set_evict_after(&mut self, after: Option<Duration>) {
        self.evict_after = after;
    }

    pub(crate) fn max_message(&self) -> usize {
        self.max_message as usize
    }

    /// Plan a record of `len` bytes at the tail.
    #[inline]
    fn plan(&self, len: usize) -> Result<Reservation, TrySendError> {
        let len64 = len as u64;
        if len64 > self.max_message {
            return Err(TrySendError::TooLarge {
                len,
                max: self.max_message as usize,
            });
        }
        let rec = record_size(len64);
        let start = self.tail;
        let room = self.cap - (start & self.mask);
        let (pos, pad) = if room >= rec {
            (start, false)
        } else {
            (start + room, true)
        };
        Ok(Reservation {
            start,
            pos,
            len: len64,
            next: self.skip_short(pos + rec),
            pad,
        })
    }

    /// Reserve space for a `len`-byte message without waiting.
    #[inline]
    pub(crate) fn try_reserve(&mut self, len: usize) -> Result<Reservation, TrySendError> {
        let res = self.plan(len)?;
        let end = res.write_end();
        if end > self.limit && !self.refresh(end) {
            return Err(TrySendError::Full);
        }
        Ok(res)
    }

    /// Reserve space, waiting according to `policy` until `deadline`.
    pub(crate) fn reserve(
        &mut self,
        len: usize,
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<Reservation, SendTimeoutError> {
        let mut n = 0u32;
        loop {
            match self.try_reserve(len) {
                Ok(r) => return Ok(r),
                Err(TrySendError::TooLarge { len, max }) => {
                    return Err(SendTimeoutError::TooLarge { len, max })
                }
                Err(TrySendError::Full) => {}
            }
            if n == 0 {
                self.stats.full_waits += 1;
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(SendTimeoutError::Timeout),
                },
                None => None,
            };
            match policy.step(n) {
                Step::Spin => crate::sync::spin_loop(),
                Step::Yield => crate::sync::yield_now(),
                Step::Sleep => self.sleep_for_space(len, remaining),
            }
            n = n.saturating_add(1);
        }
    }

    /// Sleep on the space futex until a consumer releases something (or a bound passes).
    fn sleep_for_space(&mut self, len: usize, remaining: Option<Duration>) {
        let Ok(res) = self.plan(len) else { return };
        let region = Arc::clone(&self.region);
        let h = region.header();
        // Read the futex word first: a wake after this point changes it and the wait
        // returns at once.
        let seen = h.space.word.load(Acquire);
        h.space.sleepers.swap(1, Relaxed);
        // Dekker: orders the announcement before the cursor loads in `refresh`; pairs with
        // the fence in `RingConsumer::publish` (cursor store, fence, flag load).
        fence(SeqCst);
        if !self.refresh(res.write_end()) {
            let t = remaining.map_or(SLEEP_BOUND, |r| r.min(SLEEP_BOUND));
            self.region.wait(&h.space.word, seen, t);
            self.stats.sleeps += 1;
        }
    }

    /// Re-derive the write limit; true if `need` fits under it.
    fn refresh(&mut self, need: u64) -> bool {
        let mut gate = self.scan_gate(need);
        // Never claim what the gate forbids: a refused reservation must not make readers
        // believe intact records are being overwritten.
        if need > gate + self.cap {
            self.limit = self.claim.min(gate + self.cap);
            return false;
        }
        if need > self.claim {
            let h = self.region.header();
            let claim = need.max((self.claim + self.claim_chunk).min(gate + self.cap));
            // Release pairs with the Acquire claim load in `RingConsumer::register`: a
            // consumer that sees this claim also sees the tail it was derived from.
            // The oldest record this claim leaves intact: the first checkpoint at or above
            // `claim - capacity` (advisory: readers validate every stamp they walk).
            let floor = claim.saturating_sub(self.cap);
            let head = self
                .checkpoints
                .iter()
                .copied()
                .filter(|&p| p >= floor && p <= self.tail)
                .min()
                .unwrap_or(self.tail);
            // Release pairs with the Acquire head load in `oldest_start`.
            h.producer.head.store(head, Release);
            h.producer.claim.store(claim, Release);
            // Dekker with the attaching consumer's fence: either our slot scan below sees
            // its registration, or it sees this claim and moves its start forward.
            fence(SeqCst);
            self.claim = claim;
            gate = self.scan_gate(need);
        }
        self.limit = self.claim.min(gate + self.cap);
        need <= self.limit
    }

    fn probe_due(&mut self) -> bool {
        #[cfg(shmcast_loom)]
        {
            true
        }
        #[cfg(not(shmcast_loom))]
        {
            let now = Instant::now();
            match self.last_probe {
                Some(t) if now.duration_since(t) < PROBE_INTERVAL => false,
                _ => {
                    self.last_probe = Some(now);
                    true
                }
            }
        }
    }

    /// The minimum cursor of the live lossless consumers (or the tail if there are none).
    /// Evicts slots with impossible cursors, and reclaims slots of dead consumers that gate
    /// `need`.
    fn scan_gate(&mut self, need: u64) -> u64 {
        self.stats.rescans += 1;
        let tail = self.tail;
        let floor = tail.saturating_sub(self.cap);
        let mut gate = tail;
        let mut probe: Option<bool> = None;
        // Every slot: the advisory `hwm` is consumer-writable, so a hostile consumer could
        // hide others behind it. Free slots are read-shared lines: cheap to skip.
        for i in 0..self.max_consumers {
            let slot = self.region.slot(i);
            // Acquire pairs with the consumer's Release state store in `register`.
            let state = slot.state.load(Acquire);
            if slot_kind(state) != SLOT_LOSSLESS {
                continue;
            }
            // Acquire pairs with the consumer's Release cursor store in `publish`: its reads
            // of every record below the cursor happen-before we overwrite them.
            let c = slot.cursor.load(Acquire);
            if c > tail || c < floor || c % RECORD_ALIGN as u64 != 0 {
                self.evict(i, state);
                continue;
            }
            if c + self.cap < need {
                let due = *probe.get_or_insert_with(|| self.probe_due());
                if due && !self.region.held_by_other(LockId::Slot(i)) {
                    // Gated by a consumer whose process is gone: reclaim its slot.
                    self.evict(i, state);
                    continue;
                }
                if due && self.stuck_too_long(i, state) {
                    self.evict(i, state);
                    continue;
                }
            } else if let Some(g) = self.gated_since.get_mut(i as usize) {
                *g = None;
            }
            gate = gate.min(c);
        }
        gate
    }

    /// `evict_after`: has slot `i` (registration `state`) gated us for too long?
    fn stuck_too_long(&mut self, i: u32, state: u32) -> bool {
        let Some(after) = self.evict_after else {
            return false;
        };
        if self.gated_since.len() <= i as usize {
            self.gated_since.resize(i as usize + 1, None);
        }
        let now = Instant::now();
        match self.gated_since[i as usize] {
            Some((s, since)) if s == state => now.duration_since(since) >= after,
            _ => {
                self.gated_since[i as usize] = Some((state, now));
                false
            }
        }
    }

    /// Evict slot `i` if it still holds `state` (a newer registration is left alone).
    fn evict(&mut self, i: u32, state: u32) {
        let evicted = slot_state(slot_generation(state), SLOT_EVICTED);
        // AcqRel: the CAS only succeeds on the exact registration we judged.
        if self
            .region
            .slot(i)
            .state
            .compare_exchange(state, evicted, AcqRel, Relaxed)
            .is_ok()
        {
            self.stats.evictions += 1;
        }
    }

    /// Publish a reserved record whose payload has been written.
    #[inline]
    pub(crate) fn commit(&mut self, res: Reservation) {
        self.write_record(&res, true);
        self.store_tail();
    }

    /// Write `res`'s header, the padding before it and the unpublished stamp after it, and
    /// advance the private tail. With `publish`, also store its stamps (publication);
    /// without, the caller publishes it later with [`Self::publish_stamps`].
    #[inline]
    fn write_record(&mut self, res: &Reservation, publish: bool) {
        let r = &*self.region;
        let idx = res.pos & self.mask;
        r.word(idx + 8).store(self.next_seq, Relaxed);
        r.word(idx + 16).store(meta(res.len, KIND_MESSAGE), Relaxed);
        // The next record's stamp word may hold payload bytes from an earlier lap; make
        // sure it cannot match the next position before that record is published (and tell
        // lossy readers which sequence number comes next). Ordered before the Release below.
        r.word(res.next)
            .store(unpublished(self.next_seq.wrapping_add(1)), Relaxed);
        if res.pad {
            let p = res.start & self.mask;
            r.word(p + 8).store(self.next_seq, Relaxed);
            r.word(p + 16).store(meta(0, KIND_PADDING), Relaxed);
        }
        if publish {
            self.publish_stamps(res);
        }
        let chunk = res.pos >> self.chunk_shift;
        if chunk != self.last_chunk {
            self.last_chunk = chunk;
            self.checkpoints[chunk as usize % CHECKPOINTS] = res.pos;
        }
        self.tail = res.next;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.stats.messages += 1;
    }

    /// Publication. Release pairs with the consumer's Acquire stamp load in `poll`: the
    /// payload, seq, meta and the unpublished stamp ahead (and, for the first record of a
    /// batch, every later record of the batch) are visible to whoever sees the stamp.
    #[inline]
    fn publish_stamps(&self, res: &Reservation) {
        let r = &*self.region;
        if res.pad {
            r.word(res.start).store(res.start, Release);
        }
        r.word(res.pos).store(res.pos, Release);
    }

    /// Store the committed end for attaching consumers and a future takeover.
    #[inline]
    fn store_tail(&mut self) {
        let h = self.region.header();
        // Release pairs with the Acquire loads in `register` / `attach` (takeover).
        h.producer.tail.store(self.tail, Release);
        h.producer.next_seq.store(self.next_seq, Release);
    }

    /// Send `count` messages of lengths `len(i)` (checked by the caller against the maximum) in
    /// batches: as many records as fit are written, then published by one release (the
    /// first record's stamp), one tail store and one wake-up decision; if the ring fills,
    /// wait for space per `policy` and go on. `write(i, region, idx)` copies message `i` to
    /// payload index `idx`.
    pub(crate) fn send_batch(
        &mut self,
        count: usize,
        len: impl Fn(usize) -> usize,
        policy: WaitPolicy,
        mut write: impl FnMut(usize, &Region, u64),
    ) {
        let mut i = 0;
        while i < count {
            let first = match self.reserve(len(i), policy, None) {
                Ok(res) => res,
                // Lengths were checked by the caller and there is no deadline.
                Err(_) => return,
            };
            write(i, &self.region, first.payload_idx(self.mask));
            self.write_record(&first, false);
            i += 1;
            while i < count {
                let Ok(res) = self.try_reserve(len(i)) else {
                    break;
                };
                write(i, &self.region, res.payload_idx(self.mask));
                self.write_record(&res, true);
                i += 1;
            }
            self.publish_stamps(&first);
            self.store_tail();
            self.wake_consumers();
        }
    }

    /// Wake sleeping consumers if there are any (no syscall otherwise).
    #[inline]
    pub(crate) fn wake_consumers(&mut self) {
        let h = self.region.header();
        // Dekker: orders our stamp stores before the flag load; pairs with the barrier in
        // `RingConsumer::sleep` (flag RMW, barrier, stamp re-check). In asymmetric mode the
        // sleeper's membarrier forces the hardware barrier onto this CPU when (and only
        // when) someone is about to sleep, so the common path here does not wait for the
        // stamp's cache line to be taken from the consumer polling it.
        if self.asymmetric {
            compiler_fence(SeqCst);
        } else {
            fence(SeqCst);
        }
        if h.data.sleepers.load(Relaxed) != 0 {
            wake_generation(&self.region, &h.data);
            self.stats.wake_syscalls += 1;
        }
    }

    /// Close the stream: consumers drain what was published, then see `Disconnected`.
    pub(crate) fn close(&mut self) {
        let h = self.region.header();
        // Release pairs with the consumers' Acquire state loads: everything published
        // before is visible to a consumer that sees CLOSED.
        h.control.state.store(PRODUCER_CLOSED, Release);
        // Consumers believe CLOSED only once the producer lock is free (any consumer could
        // write the state word), so release it before waking them.
        self.region.unlock(LockId::Producer);
        fence(SeqCst);
        h.data.word.fetch_add(1, Release);
        self.region.wake_all(&h.data.word);
    }
}

/// A record a consumer has found: its payload and where the next record starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Data-ring index of the payload.
    pub(crate) idx: u64,
    /// Payload length.
    pub(crate) len: usize,
    /// Message sequence number.
    pub(crate) seq: u64,
    /// Position of the next record.
    pub(crate) end: u64,
}

/// Why a consumer found nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Closed,
    Died,
    Evicted,
}

impl From<Ended> for RecvTimeoutError {
    fn from(e: Ended) -> Self {
        match e {
            Ended::Closed => RecvTimeoutError::Disconnected,
            Ended::Died => RecvTimeoutError::ProducerDied,
            Ended::Evicted => RecvTimeoutError::Evicted,
        }
    }
}

/// The consumer side of a ring (lossless or lossy).
pub(crate) struct RingConsumer {
    region: Arc<Region>,
    slot: u32,
    /// Our registration in the slot's state word.
    state: u32,
    lossy: bool,
    cap: u64,
    mask: u64,
    max_message: u64,
    max_record: u64,
    /// Next record position (private).
    cursor: u64,
    /// Last cursor stored in the slot (lossless only).
    published: u64,
    publish_every: u64,
    /// Lossy only: the sequence number expected at `cursor`.
    expected_seq: u64,
    empty_polls: u32,
    last_probe: Option<Instant>,
    pub(crate) stats: ConsumerStats,
}

impl RingConsumer {
    /// Attach to `region`: take a free slot (one whose liveness lock nobody holds) and
    /// register a start position the producer cannot have overrun (lossless) or learn the
    /// sequence number at the start (lossy).
    pub(crate) fn attach(
        region: Arc<Region>,
        start: StartAt,
        lossy: bool,
    ) -> Result<RingConsumer, OpenError> {
        let max = region.geometry().max_consumers;
        for i in 0..max {
            match region.try_lock(LockId::Slot(i)) {
                Ok(true) => return Self::register(region, i, start, lossy),
                Ok(false) => continue,
                Err(source) => {
                    return Err(OpenError::Io {
                        context: "lock a consumer slot".into(),
                        source,
                    })
                }
            }
        }
        Err(OpenError::NoFreeSlot { max_consumers: max })
    }

    fn register(
        region: Arc<Region>,
        i: u32,
        start: StartAt,
        lossy: bool,
    ) -> Result<RingConsumer, OpenError> {
        let geo = *region.geometry();
        let mut c = RingConsumer {
            cap: geo.capacity,
            mask: geo.mask,
            max_message: u64::from(geo.max_message),
            max_record: record_size(u64::from(geo.max_message)),
            slot: i,
            state: 0,
            lossy,
            cursor: 0,
            published: 0,
            publish_every: (geo.capacity / 8).max(8),
            expected_seq: 0,
            empty_polls: 0,
            last_probe: None,
            stats: ConsumerStats::default(),
            region,
        };
        let result = if lossy {
            c.register_lossy(start)
        } else {
            c.register_lossless(start)
        };
        if let Err(e) = result {
            c.region.unlock(LockId::Slot(i));
            return Err(e);
        }
        Ok(c)
    }

    fn register_lossless(&mut self, start: StartAt) -> Result<(), OpenError> {
        let region = Arc::clone(&self.region);
        let h = region.header();
        let slot = region.slot(self.slot);
        // We hold the slot's lock, so whatever the slot says belongs to a dead owner.
        let mut generation = slot_generation(slot.state.load(Relaxed));
        slot.pid.store(std::process::id(), Relaxed);
        h.control.hwm.fetch_max(self.slot + 1, Relaxed);
        let mut pos = match start {
            StartAt::Next => position("tail", h.producer.tail.load(Acquire))?,
            StartAt::Oldest => self.oldest_start(h.producer.claim.load(Acquire))?,
        };
        for _ in 0..ATTACH_ATTEMPTS {
            // A new generation per attempt: an eviction judged on an earlier attempt's
            // cursor cannot hit this one.
            generation = generation.wrapping_add(1) & 0x00ff_ffff;
            let state = slot_state(generation, SLOT_LOSSLESS);
            slot.cursor.store(pos, Relaxed);
            // Release pairs with the Acquire state load in `scan_gate`.
            slot.state.store(state, Release);
            // Dekker with the producer's fence in `refresh` (claim store, fence, scan).
            fence(SeqCst);
            // Acquire pairs with the Release claim store: the tail we read next is at least
            // the one this claim was derived from.
            let claim = h.producer.claim.load(Acquire);
            if claim <= pos + self.cap {
                self.state = state;
                self.cursor = pos;
                self.published = pos;
                return Ok(());
            }
            pos = match start {
                StartAt::Next => position("tail", h.producer.tail.load(Acquire))?,
                StartAt::Oldest => self.oldest_start(claim)?,
            };
        }
        slot.state.store(slot_state(generation, SLOT_FREE), Release);
        Err(OpenError::AttachRace)
    }

    /// A lossy consumer needs no handshake (it never gates); it needs its start position
    /// and the sequence number there, so it can count exactly what it loses.
    fn register_lossy(&mut self, start: StartAt) -> Result<(), OpenError> {
        let region = Arc::clone(&self.region);
        let h = region.header();
        let slot = region.slot(self.slot);
        let generation = slot_generation(slot.state.load(Relaxed)).wrapping_add(1) & 0x00ff_ffff;
        self.state = slot_state(generation, SLOT_LOSSY);
        h.control.hwm.fetch_max(self.slot + 1, Relaxed);
        slot.pid.store(std::process::id(), Relaxed);
        slot.state.store(self.state, Release);
        for _ in 0..ATTACH_ATTEMPTS {
            let claim = h.producer.claim.load(Acquire);
            let pos = match start {
                StartAt::Next => position("tail", h.producer.tail.load(Acquire))?,
                StartAt::Oldest => self.oldest_start(claim)?,
            };
            let mut c = pos;
            let room = self.cap - (c & self.mask);
            if room < HDR {
                c += room;
            }
            // The stamp at the start is either the record's position (published: its seq
            // word holds the number) or the unpublished stamp carrying the number.
            // Acquire pairs with the Release stamp store in `commit`.
            let stamp = self.region.word(c & self.mask).load(Acquire);
            let seq = if stamp == c {
                Some(self.region.word((c & self.mask) + 8).load(Relaxed))
            } else {
                unpublished_seq(stamp)
            };
            // Validate as a seqlock read: nothing at `c` was overwritten while we read it.
            fence(Acquire);
            if let Some(seq) = seq {
                if h.producer.claim.load(Relaxed) <= c + self.cap {
                    self.cursor = c;
                    self.expected_seq = seq;
                    return Ok(());
                }
            }
        }
        Err(OpenError::AttachRace)
    }

    /// The first record boundary at or above `claim - capacity`, walking from the
    /// producer's head; falls back to the tail if the walk meets anything unexpected.
    fn oldest_start(&self, claim: u64) -> Result<u64, OpenError> {
        let h = self.region.header();
        let tail = position("tail", h.producer.tail.load(Acquire))?;
        let floor = claim.min(MAX_POSITION).saturating_sub(self.cap);
        // Acquire pairs with the Release head store in `advance_head`.
        let mut q = h
            .producer
            .head
            .load(Acquire)
            .clamp(tail.saturating_sub(self.cap), tail);
        for _ in 0..self.cap / HDR {
            if q >= floor || q >= tail {
                break;
            }
            let idx = q & self.mask;
            let room = self.cap - idx;
            if room < HDR {
                q += room;
                continue;
            }
            // Acquire pairs with the Release stamp store in `commit`.
            if self.region.word(idx).load(Acquire) != q {
                return Ok(tail);
            }
            let m = self.region.word(idx + 16).load(Relaxed);
            let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
            q = match kind {
                KIND_PADDING => q + room,
                KIND_MESSAGE if len <= self.max_message && record_size(len) <= room => {
                    q + record_size(len)
                }
                _ => return Ok(tail),
            };
        }
        Ok(q.min(tail))
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Validate the header words of a published record at `c` (index `idx`).
    #[inline]
    fn parse(&self, c: u64, idx: u64) -> Result<Parsed, Corruption> {
        let room = self.cap - idx;
        let m = self.region.word(idx + 16).load(Relaxed);
        let (len, kind) = (m & 0xffff_ffff, (m >> 32) as u32);
        let corrupt = |reason, value| Corruption {
            position: c,
            reason,
            value,
        };
        match kind {
            KIND_MESSAGE => {
                if len > self.max_message {
                    return Err(corrupt("length exceeds the maximum message size", len));
                }
                let rec = record_size(len);
                if rec > room {
                    return Err(corrupt("record crosses the end of the ring", len));
                }
                let mut end = c + rec;
                let r = self.cap - (end & self.mask);
                if r < HDR {
                    end += r;
                }
                Ok(Parsed::Message { len, end })
            }
            // A producer pads only when the largest record would not fit.
            KIND_PADDING if room < self.max_record => Ok(Parsed::Padding { end: c + room }),
            _ => Err(corrupt("invalid record kind", u64::from(kind))),
        }
    }

    /// The next record, if it is published (lossless consumers).
    #[inline]
    pub(crate) fn poll(&mut self) -> Result<Option<Record>, RecvTimeoutError> {
        debug_assert!(!self.lossy);
        // Evicted consumers must not read: the producer no longer respects our cursor.
        if self.region.slot(self.slot).state.load(Relaxed) != self.state {
            return Err(RecvTimeoutError::Evicted);
        }
        // At most two rounds: a skip or a padding record moves the cursor to the start of
        // the next lap, where neither can occur again.
        for _ in 0..2 {
            let c = self.cursor;
            let idx = c & self.mask;
            let room = self.cap - idx;
            if room < HDR {
                self.cursor = c + room;
                continue;
            }
            // Acquire pairs with the producer's Release stamp store in `publish_stamps`.
            let stamp = self.region.word(idx).load(Acquire);
            if stamp != c {
                return self.not_published(c, stamp);
            }
            match self.parse(c, idx).map_err(RecvTimeoutError::Corrupt)? {
                Parsed::Message { len, end } => {
                    let seq = self.region.word(idx + 8).load(Relaxed);
                    return Ok(Some(Record {
                        idx: idx + HDR,
                        len: len as usize,
                        seq,
                        end,
                    }));
                }
                Parsed::Padding { end } => self.cursor = end,
            }
        }
        Ok(None)
    }

    /// The stamp at our cursor `c` is not `c`. Normally the record is just not published
    /// yet; a later lap's position means the producer overran a record we never released,
    /// which only eviction (or a peer corrupting the slot table) can cause: say so rather
    /// than wait for ever.
    #[cold]
    fn not_published(&self, c: u64, stamp: u64) -> Result<Option<Record>, RecvTimeoutError> {
        if stamp > c && stamp <= MAX_POSITION && (stamp - c) % self.cap == 0 {
            if self.region.slot(self.slot).state.load(Relaxed) != self.state {
                return Err(RecvTimeoutError::Evicted);
            }
            return Err(RecvTimeoutError::Corrupt(Corruption {
                position: c,
                reason: "the producer overwrote a record this consumer had not released",
                value: stamp,
            }));
        }
        Ok(None)
    }

    /// Has the producer possibly overwritten position `c`? (Conservative: `claim` bounds
    /// what it may have written.) Call after `fence(Acquire)` when validating a copy.
    #[inline]
    fn lapped(&self, c: u64) -> bool {
        self.region.header().producer.claim.load(Relaxed) > c + self.cap
    }

    /// A lapped lossy consumer restarts at the oldest record still intact.
    fn recover(&mut self) -> Result<(), RecvTimeoutError> {
        // Acquire pairs with the Release claim store in `refresh`.
        let claim = self.region.header().producer.claim.load(Acquire);
        self.cursor = self.oldest_start(claim).map_err(|_| {
            RecvTimeoutError::Corrupt(Corruption {
                position: self.cursor,
                reason: "impossible producer position",
                value: claim,
            })
        })?;
        Ok(())
    }

    /// The next message, copied into `dst` (lossy consumers). `Err(Lagged(n))` when the
    /// producer overwrote `n` messages before we could copy them; the next call goes on at
    /// the oldest message still present.
    pub(crate) fn poll_lossy(
        &mut self,
        dst: &mut Vec<u8>,
    ) -> Result<Option<u64>, RecvTimeoutError> {
        debug_assert!(self.lossy);
        // Each round either returns, skips to the next lap, or recovers from a lap; a
        // producer lapping us on every round makes us report `Lagged` soon after.
        for _ in 0..8 {
            let c = self.cursor;
            let idx = c & self.mask;
            let room = self.cap - idx;
            if room < HDR {
                self.cursor = c + room;
                continue;
            }
            // Acquire pairs with the producer's Release stamp store in `publish_stamps`.
            let stamp = self.region.word(idx).load(Acquire);
            if stamp != c {
                fence(Acquire);
                if self.lapped(c) {
                    self.recover()?;
                    continue;
                }
                return Ok(None);
            }
            let seq = self.region.word(idx + 8).load(Relaxed);
            let parsed = self.parse(c, idx);
            if let Ok(Parsed::Message { len, .. }) = parsed {
                dst.resize(len as usize, 0);
                self.region.copy_out_atomic(idx + HDR, dst);
            }
            // Seqlock validation: pairs with the producer's fence after it raised `claim`
            // (in `refresh`): had any byte we read been overwritten, we would see the claim
            // that allowed it.
            fence(Acquire);
            if self.lapped(c) {
                self.recover()?;
                continue;
            }
            match parsed.map_err(RecvTimeoutError::Corrupt)? {
                Parsed::Padding { end } => self.cursor = end,
                Parsed::Message { end, .. } => {
                    if seq != self.expected_seq {
                        if seq < self.expected_seq {
                            return Err(RecvTimeoutError::Corrupt(Corruption {
                                position: c,
                                reason: "sequence number went backwards",
                                value: seq,
                            }));
                        }
                        // Report the gap; the message itself is read again next time.
                        let lost = seq - self.expected_seq;
                        self.expected_seq = seq;
                        return Err(RecvTimeoutError::Lagged(lost));
                    }
                    self.cursor = end;
                    self.expected_seq = seq.wrapping_add(1);
                    self.stats.messages += 1;
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// Is a record published at the cursor, or have we been lapped? (A cheap re-check for
    /// sleepers.)
    fn ready(&self) -> bool {
        let mut c = self.cursor;
        let room = self.cap - (c & self.mask);
        if room < HDR {
            c += room;
        }
        self.region.word(c & self.mask).load(Relaxed) == c || (self.lossy && self.lapped(c))
    }

    /// Release everything up to `end` (the end of the record just read).
    #[inline]
    pub(crate) fn release(&mut self, end: u64) {
        self.cursor = end;
        self.stats.messages += 1;
        if end - self.published >= self.publish_every {
            self.publish();
        }
    }

    /// Release up to `end` without publishing (a batch publishes once, at its end).
    #[inline]
    pub(crate) fn release_quiet(&mut self, end: u64) {
        self.cursor = end;
        self.stats.messages += 1;
    }

    /// Make our cursor visible to the producer, and wake it if it sleeps for space.
    pub(crate) fn publish(&mut self) {
        if self.lossy || self.published == self.cursor {
            return;
        }
        let h = self.region.header();
        // Release pairs with the producer's Acquire cursor load in `scan_gate`: our reads of
        // every record below the cursor happen-before it overwrites them.
        self.region
            .slot(self.slot)
            .cursor
            .store(self.cursor, Release);
        self.published = self.cursor;
        // Dekker: pairs with the producer's fence in `sleep_for_space`.
        fence(SeqCst);
        if h.space.sleepers.load(Relaxed) != 0 {
            wake_generation(&self.region, &h.space);
            self.stats.wake_syscalls += 1;
        }
    }

    /// Called when polling found nothing: publish our progress, then tell whether the
    /// stream ended (closed, producer dead, or we were evicted). `force_probe` probes the
    /// producer's liveness lock now instead of at the rate limit.
    pub(crate) fn check_ended(&mut self, force_probe: bool) -> Option<Ended> {
        self.publish();
        if self.region.slot(self.slot).state.load(Relaxed) != self.state {
            return Some(Ended::Evicted);
        }
        let control = &self.region.header().control;
        // Acquire pairs with the producer's Release state stores (`attach`, `close`).
        // CLOSED counts only once the producer lock is free: a consumer could have written
        // it (and a closing producer frees the lock before waking anyone).
        if control.state.load(Acquire) == PRODUCER_CLOSED
            && !self.region.held_by_other(LockId::Producer)
        {
            return Some(Ended::Closed);
        }
        if self.probe_due(force_probe) && !self.region.held_by_other(LockId::Producer) {
            // Closed between our load and the probe?
            if self.region.header().control.state.load(Acquire) == PRODUCER_CLOSED {
                return Some(Ended::Closed);
            }
            return Some(Ended::Died);
        }
        None
    }

    fn probe_due(&mut self, force: bool) -> bool {
        #[cfg(shmcast_loom)]
        {
            let _ = force;
            false
        }
        #[cfg(not(shmcast_loom))]
        {
            self.empty_polls = self.empty_polls.wrapping_add(1);
            if !force && self.empty_polls % 256 != 0 {
                return false;
            }
            let now = Instant::now();
            match self.last_probe {
                Some(t) if !force && now.duration_since(t) < PROBE_INTERVAL => false,
                _ => {
                    self.last_probe = Some(now);
                    true
                }
            }
        }
    }

    /// Poll with `poll` until it yields, waiting according to `policy` until `deadline`.
    /// When the stream has ended, everything published before the end is still delivered
    /// (one more poll after the end is seen).
    pub(crate) fn wait_for<T>(
        &mut self,
        policy: WaitPolicy,
        deadline: Option<Instant>,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, RecvTimeoutError>,
    ) -> Result<T, RecvTimeoutError> {
        let mut n = 0u32;
        let mut force_probe = false;
        loop {
            if let Some(r) = poll(self)? {
                return Ok(r);
            }
            if let Some(ended) = self.check_ended(force_probe) {
                if ended != Ended::Evicted {
                    if let Some(r) = poll(self)? {
                        return Ok(r);
                    }
                }
                return Err(ended.into());
            }
            force_probe = false;
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(RecvTimeoutError::Timeout),
                },
                None => None,
            };
            match policy.step(n) {
                Step::Spin => crate::sync::spin_loop(),
                Step::Yield => crate::sync::yield_now(),
                Step::Sleep => force_probe = self.sleep(remaining) == Wake::TimedOut,
            }
            n = n.saturating_add(1);
        }
    }

    /// One non-blocking poll with end-of-stream detection: after the end is seen, one more
    /// poll delivers anything published before it.
    pub(crate) fn try_poll<T>(
        &mut self,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, RecvTimeoutError>,
    ) -> Result<Option<T>, TryRecvError> {
        if let Some(v) = poll(self)? {
            return Ok(Some(v));
        }
        let Some(ended) = self.check_ended(false) else {
            return Ok(None);
        };
        if ended != Ended::Evicted {
            if let Some(v) = poll(self)? {
                return Ok(Some(v));
            }
        }
        Err(RecvTimeoutError::from(ended).into())
    }

    /// Wait for the next record (lossless consumers).
    pub(crate) fn recv(
        &mut self,
        policy: WaitPolicy,
        deadline: Option<Instant>,
    ) -> Result<Record, RecvTimeoutError> {
        self.wait_for(policy, deadline, Self::poll)
    }

    /// Sleep on the data futex until the producer publishes (or a bound passes).
    fn sleep(&mut self, remaining: Option<Duration>) -> Wake {
        let region = Arc::clone(&self.region);
        let h = region.header();
        // Read the futex word first (see the module docs).
        let seen = h.data.word.load(Acquire);
        h.data.sleepers.swap(1, Relaxed);
        // Dekker: orders the announcement before the re-check; pairs with the fence in
        // `RingProducer::wake_consumers` (stamp store, fence, flag load). If that producer
        // publishes without a fence, ours must be heavy: a membarrier puts a full barrier
        // on its CPU between its stamp store and its flag load, or after both. Should the
        // call fail, a lost wake-up costs at most one bounded sleep.
        if h.control.asymmetric.load(Relaxed) != 0 {
            if !region.heavy_barrier() {
                fence(SeqCst);
            }
        } else {
            fence(SeqCst);
        }
        // A stream closed for good (CLOSED stored and the producer lock free) ends the wait;
        // while the closing producer still holds its lock, sleep: its wake follows.
        if self.ready()
            || (h.control.state.load(Relaxed) == PRODUCER_CLOSED
                && !region.held_by_other(LockId::Producer))
        {
            return Wake::Woken;
        }
        let t = remaining.map_or(SLEEP_BOUND, |r| r.min(SLEEP_BOUND));
        self.stats.sleeps += 1;
        region.wait(&h.data.word, seen, t)
    }

    /// Copy the payload of `rec` out.
    pub(crate) fn copy_out(&self, rec: &Record, dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), rec.len);
        // SAFETY: `poll` validated `idx + len` against the ring end; the record lies at or
        // above our published cursor, so the producer does not write it.
        unsafe { self.region.copy_out(rec.idx, dst) }
    }

    /// Detach: free the slot, wake a producer that waits for us.
    pub(crate) fn detach(&mut self) {
        let h = self.region.header();
        let slot = self.region.slot(self.slot);
        if slot.state.load(Relaxed) == self.state {
            // Release: our reads happen-before the producer ignores (and overwrites) us.
            slot.state
                .store(slot_state(slot_generation(self.state), SLOT_FREE), Release);
        }
        // Dekker with `sleep_for_space`, as in `publish`.
        fence(SeqCst);
        if h.space.sleepers.load(Relaxed) != 0 {
            wake_generation(&self.region, &h.space);
        }
        self.region.unlock(LockId::Slot(self.slot));
    }
}

/// Wake every sleeper of the current generation of `futex` (the caller saw its flag set
/// after its fence). Clearing the flag first means later publications make no syscall
/// until someone announces a new sleep; bumping the word makes a sleeper that read the old
/// value return at once instead of sleeping.
fn wake_generation(region: &Region, futex: &FutexLine) {
    futex.sleepers.store(0, Relaxed);
    // Release: a woken sleeper that reads the new word also sees what was published.
    futex.word.fetch_add(1, Release);
    region.wake_all(&futex.word);
}

/// A validated record header.
#[derive(Clone, Copy, Debug)]
enum Parsed {
    Message { len: u64, end: u64 },
    Padding { end: u64 },
}
