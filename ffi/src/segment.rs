//! Segments by name, path or descriptor, without a handle: inspection (a read-only
//! snapshot) and removal.

use crate::error::{force_remove_failure, guard, Failure};
use crate::shmcast_status::{self, *};
use crate::{name_arg, path_arg};
use shmcast::{ProducerState, SlotInfo, SlotKind, Snapshot};
use std::ffi::c_char;
use std::os::fd::BorrowedFd;

/// `shmcast_segment_info.producer_state`: no producer ever attached (the segment is being
/// created, or its creator died first). Also what a failed call leaves (zeros).
pub const SHMCAST_PRODUCER_STATE_NONE: u32 = 0;
/// A producer holds the segment's producer lock: it is alive.
pub const SHMCAST_PRODUCER_STATE_LIVE: u32 = 1;
/// The producer closed the stream.
pub const SHMCAST_PRODUCER_STATE_CLOSED: u32 = 2;
/// The producer died without closing the stream: a new one may take over
/// (`shmcast_producer_open_or_create`).
pub const SHMCAST_PRODUCER_STATE_DIED: u32 = 3;
/// A state this version of the bindings does not know (a newer core).
pub const SHMCAST_PRODUCER_STATE_UNKNOWN: u32 = 4;

/// `shmcast_slot_info.kind`: a lossless consumer reading in place; it gates the producer.
pub const SHMCAST_SLOT_LOSSLESS: u32 = 1;
/// A lossless consumer that copies each message out (its producer evicts stuck consumers):
/// it gates the producer until evicted.
pub const SHMCAST_SLOT_LOSSLESS_COPYING: u32 = 2;
/// A lossy consumer: it never gates the producer.
pub const SHMCAST_SLOT_LOSSY: u32 = 3;
/// The producer evicted this consumer (dead, stuck, or an impossible cursor).
pub const SHMCAST_SLOT_EVICTED: u32 = 4;
/// A value no consumer writes (the slot table is corrupt; the value is in `raw_kind`), or a
/// kind this version of the bindings does not know (`raw_kind` 0).
pub const SHMCAST_SLOT_UNKNOWN: u32 = 5;

/// What a segment looks like at one moment (`shmcast_inspect*`, `shmcast_producer_snapshot`).
/// Read from shared memory that peers write concurrently: a set of loads, not an atomic
/// picture. Values a peer could have corrupted are reported as found.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_segment_info {
    /// Ring capacity in bytes.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u64,
    /// Size of the whole segment in bytes.
    pub segment_size: u64,
    /// End of the committed stream (a stream position in bytes).
    pub tail: u64,
    /// Sequence number of the next message the producer will send.
    pub next_seq: u64,
    /// Upper bound of every position the producer may have written.
    pub claim: u64,
    /// Size of the consumer slot table: no more consumers can attach, and no more
    /// `shmcast_slot_info` entries can be reported, than this.
    pub max_consumers: u32,
    /// `SHMCAST_PRODUCER_STATE_LIVE`, `_CLOSED`, `_DIED`, `_NONE` (or `_UNKNOWN`).
    pub producer_state: u32,
    /// Process id of the last producer that attached (informational: liveness is
    /// `producer_state`, from a lock probe).
    pub producer_pid: u32,
    /// How many producers have attached (creation and takeovers).
    pub epoch: u32,
    /// 1 if the producer evicts live consumers that gate it too long (`evict_after_ns`).
    pub evicting: u32,
    /// 1 if `owner_uid` is known (a mapped segment), else 0.
    pub has_owner_uid: u32,
    /// The owner's user id (consumers need read and write access).
    pub owner_uid: u32,
    /// 1 if `mode` is known (a named or path-backed segment), else 0.
    pub has_mode: u32,
    /// The segment's permission bits.
    pub mode: u32,
}

/// One consumer slot in use (`shmcast_inspect*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_slot_info {
    /// The position the consumer has released up to (lossless consumers publish it every
    /// eighth of the ring and whenever they run dry; lossy ones as often, for monitoring).
    pub cursor: u64,
    /// Bytes between `cursor` and the producer's tail.
    pub lag_bytes: u64,
    /// Messages between `cursor` and the tail, if `has_lag_messages` (the record at `cursor`
    /// is still in the ring; a lapped lossy consumer's is not).
    pub lag_messages: u64,
    /// 1 if `lag_messages` is known, else 0.
    pub has_lag_messages: u32,
    /// Slot index.
    pub index: u32,
    /// `SHMCAST_SLOT_LOSSLESS`, `_LOSSLESS_COPYING`, `_LOSSY`, `_EVICTED` or `_UNKNOWN`.
    pub kind: u32,
    /// With `SHMCAST_SLOT_UNKNOWN`: the value found in the slot table (0 for a kind this
    /// version of the bindings does not know). Otherwise 0.
    pub raw_kind: u32,
    /// Process id of the slot's owner (informational).
    pub pid: u32,
    /// 1 if a live process holds the slot's liveness lock; 0 if its owner died (the
    /// producer reclaims the slot when it needs the space).
    pub alive: u32,
    /// 1 if this is the consumer that holds the producer back: lossless, the slowest, and so
    /// far behind that the largest message no longer fits ahead of the tail.
    pub gating: u32,
}

fn producer_state(state: ProducerState) -> u32 {
    match state {
        ProducerState::None => SHMCAST_PRODUCER_STATE_NONE,
        ProducerState::Live => SHMCAST_PRODUCER_STATE_LIVE,
        ProducerState::Closed => SHMCAST_PRODUCER_STATE_CLOSED,
        ProducerState::Died => SHMCAST_PRODUCER_STATE_DIED,
        _ => SHMCAST_PRODUCER_STATE_UNKNOWN,
    }
}

fn segment_info(s: &Snapshot) -> shmcast_segment_info {
    shmcast_segment_info {
        capacity: s.capacity,
        max_message: u64::from(s.max_message),
        segment_size: s.segment_size,
        tail: s.producer.tail,
        next_seq: s.producer.next_seq,
        claim: s.producer.claim,
        max_consumers: s.max_consumers,
        producer_state: producer_state(s.producer.state),
        producer_pid: s.producer.pid,
        epoch: s.producer.epoch,
        evicting: u32::from(s.producer.evicting),
        has_owner_uid: u32::from(s.owner_uid.is_some()),
        owner_uid: s.owner_uid.unwrap_or(0),
        has_mode: u32::from(s.mode.is_some()),
        mode: s.mode.unwrap_or(0),
    }
}

fn slot_info(c: &SlotInfo) -> shmcast_slot_info {
    let (kind, raw_kind) = match c.kind {
        SlotKind::Lossless => (SHMCAST_SLOT_LOSSLESS, 0),
        SlotKind::LosslessCopying => (SHMCAST_SLOT_LOSSLESS_COPYING, 0),
        SlotKind::Lossy => (SHMCAST_SLOT_LOSSY, 0),
        SlotKind::Evicted => (SHMCAST_SLOT_EVICTED, 0),
        SlotKind::Unknown(v) => (SHMCAST_SLOT_UNKNOWN, v),
        _ => (SHMCAST_SLOT_UNKNOWN, 0),
    };
    shmcast_slot_info {
        cursor: c.cursor,
        lag_bytes: c.lag_bytes,
        lag_messages: c.lag_messages.unwrap_or(0),
        has_lag_messages: u32::from(c.lag_messages.is_some()),
        index: c.index,
        kind,
        raw_kind,
        pid: c.pid,
        alive: u32::from(c.alive),
        gating: u32::from(c.gating),
    }
}

/// The output arguments of an inspection, checked and cleared.
pub(crate) struct SnapshotOut {
    info: *mut shmcast_segment_info,
    slots: *mut shmcast_slot_info,
    cap: usize,
    count: *mut usize,
}

impl SnapshotOut {
    /// Check the output arguments and clear them (zeros), so that a failure leaves zeros.
    ///
    /// # Safety
    /// `info` and `count` are NULL or writable; `slots` is NULL or valid for writes of `cap`
    /// entries.
    pub(crate) unsafe fn new(
        info: *mut shmcast_segment_info,
        slots: *mut shmcast_slot_info,
        cap: usize,
        count: *mut usize,
    ) -> Result<SnapshotOut, Failure> {
        if info.is_null() {
            return Err(Failure::null("info"));
        }
        if count.is_null() {
            return Err(Failure::null("count"));
        }
        if slots.is_null() && cap > 0 {
            return Err(Failure::new(
                SHMCAST_NULL_POINTER,
                format!("slots is NULL but cap is {cap}"),
            ));
        }
        if cap > isize::MAX as usize / std::mem::size_of::<shmcast_slot_info>() {
            return Err(Failure::new(
                SHMCAST_INVALID_ARGUMENT,
                format!("cap {cap} exceeds the largest array"),
            ));
        }
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe {
            info.write(shmcast_segment_info::default());
            count.write(0);
        }
        Ok(SnapshotOut {
            info,
            slots,
            cap,
            count,
        })
    }

    /// Store `s`: the whole segment info, the first `cap` slots, and the number of slots in
    /// use; `SHMCAST_BUFFER_TOO_SMALL` if that is more than `cap`.
    pub(crate) fn write(&self, s: &Snapshot) -> Result<(), Failure> {
        // SAFETY: checked non-NULL and writable in `new` (the caller's contract holds for the
        // duration of the call).
        unsafe { self.info.write(segment_info(s)) };
        for (i, c) in s.consumers.iter().take(self.cap).enumerate() {
            // SAFETY: `i < cap`, and `slots` is valid for `cap` entries (checked non-NULL in
            // `new` since `cap > 0`); `write` does not read the old contents.
            unsafe { self.slots.add(i).write(slot_info(c)) };
        }
        let total = s.consumers.len();
        // SAFETY: as for `info`.
        unsafe { self.count.write(total) };
        if total > self.cap {
            return Err(Failure::new(
                SHMCAST_BUFFER_TOO_SMALL,
                format!(
                    "consumer slots in use: {total}, but the array holds {}: the segment info \
                     and the first {} were written; pass an array of info.max_consumers ({}) \
                     entries, which always suffices",
                    self.cap, self.cap, s.max_consumers
                ),
            ));
        }
        Ok(())
    }
}

/// Take a read-only snapshot of the named segment (`/dev/shm/<name>`) without attaching to
/// it: geometry, the producer's state and position, and every consumer slot in use with its
/// position, lag and liveness. Nothing in the segment is written and no process is slowed
/// down.
///
/// `*info` gets the segment's description; the slots in use are written to `slots[0..]`,
/// at most `cap` of them, in slot order, and `*count` is how many are in use. If that is
/// more than `cap`, the call returns `SHMCAST_BUFFER_TOO_SMALL` with `*info`, `*count` and
/// the first `cap` slots written: an array of `info->max_consumers` entries always
/// suffices (e.g. call once with `slots` NULL and `cap` 0, then with such an array).
///
/// Errors: `SHMCAST_NOT_FOUND`, `SHMCAST_INVALID_NAME`, `SHMCAST_BAD_SEGMENT` (not a
/// shmcast segment, or still being created), `SHMCAST_IO`, `SHMCAST_BUFFER_TOO_SMALL`,
/// `SHMCAST_NULL_POINTER` (`info` or `count` NULL, or `slots` NULL with `cap` > 0),
/// `SHMCAST_INVALID_ARGUMENT`. On other failures `*info` and `*count` are zeroed.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `info` and `count` are NULL or writable;
/// `slots` is NULL or valid for writes of `cap` entries.
#[no_mangle]
pub unsafe extern "C" fn shmcast_inspect(
    name: *const c_char,
    info: *mut shmcast_segment_info,
    slots: *mut shmcast_slot_info,
    cap: usize,
    count: *mut usize,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { SnapshotOut::new(info, slots, cap, count) }?;
        // SAFETY: forwarded from the caller.
        let name = unsafe { name_arg(name, "name") }?;
        out.write(&shmcast::inspect(&name)?)
    })
}

/// As `shmcast_inspect`, for the segment in the file at `path` (tmpfs, hugetlbfs).
///
/// # Safety
/// As `shmcast_inspect`, with `path` for `name`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_inspect_path(
    path: *const c_char,
    info: *mut shmcast_segment_info,
    slots: *mut shmcast_slot_info,
    cap: usize,
    count: *mut usize,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { SnapshotOut::new(info, slots, cap, count) }?;
        // SAFETY: forwarded from the caller.
        let path = unsafe { path_arg(path, "path") }?;
        out.write(&shmcast::inspect_path(path)?)
    })
}

/// As `shmcast_inspect`, for the segment behind descriptor `fd` (an anonymous segment, for
/// instance). The descriptor is duplicated, not taken: the caller still owns it.
///
/// # Safety
/// As `shmcast_inspect`; `fd` is an open descriptor (or negative, which is refused with
/// `SHMCAST_INVALID_ARGUMENT`).
#[no_mangle]
pub unsafe extern "C" fn shmcast_inspect_fd(
    fd: i32,
    info: *mut shmcast_segment_info,
    slots: *mut shmcast_slot_info,
    cap: usize,
    count: *mut usize,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { SnapshotOut::new(info, slots, cap, count) }?;
        if fd < 0 {
            return Err(Failure::new(
                SHMCAST_INVALID_ARGUMENT,
                format!("fd {fd} is not a descriptor"),
            ));
        }
        // SAFETY: non-negative and open for the duration of this call (caller).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        out.write(&shmcast::inspect_fd(fd)?)
    })
}

/// A fixed name for a `producer_state` value: `"none"`, `"live"`, `"closed"`, `"died"`, or
/// `"unknown"` (any other value). Static storage: never freed, never NULL.
#[no_mangle]
pub extern "C" fn shmcast_producer_state_str(state: u32) -> *const c_char {
    match state {
        SHMCAST_PRODUCER_STATE_NONE => c"none",
        SHMCAST_PRODUCER_STATE_LIVE => c"live",
        SHMCAST_PRODUCER_STATE_CLOSED => c"closed",
        SHMCAST_PRODUCER_STATE_DIED => c"died",
        _ => c"unknown",
    }
    .as_ptr()
}

/// A fixed name for a slot `kind` value: `"lossless"`, `"lossless-copying"`, `"lossy"`,
/// `"evicted"`, or `"unknown"` (any other value). Static storage: never freed, never NULL.
#[no_mangle]
pub extern "C" fn shmcast_slot_kind_str(kind: u32) -> *const c_char {
    match kind {
        SHMCAST_SLOT_LOSSLESS => c"lossless",
        SHMCAST_SLOT_LOSSLESS_COPYING => c"lossless-copying",
        SHMCAST_SLOT_LOSSY => c"lossy",
        SHMCAST_SLOT_EVICTED => c"evicted",
        _ => c"unknown",
    }
    .as_ptr()
}

/// Remove the named segment (`/dev/shm/<name>`) whose producer is gone (it died, or closed
/// with `remove_on_close` 0). Processes that have it mapped keep using it; new ones cannot
/// open it. A segment with a live producer is refused: a new producer could then create the
/// name again and split the stream. Prefer `shmcast_producer_open_or_create`, which takes a
/// dead producer's segment over and needs no removal at all.
///
/// Errors: `SHMCAST_PRODUCER_ALIVE`, `SHMCAST_BAD_SEGMENT` (not a valid segment, or still
/// being created: nothing was removed; `shmcast_force_remove` removes leftovers),
/// `SHMCAST_NOT_FOUND`, `SHMCAST_INVALID_NAME`, `SHMCAST_IO`, `SHMCAST_NULL_POINTER`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmcast_remove(name: *const c_char) -> shmcast_status {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = unsafe { name_arg(name, "name") }?;
        Ok(shmcast::remove(&name)?)
    })
}

/// As `shmcast_remove`, for a segment in the file at `path`: the same checks.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmcast_remove_path(path: *const c_char) -> shmcast_status {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let path = unsafe { path_arg(path, "path") }?;
        Ok(shmcast::remove_path(path)?)
    })
}

/// Remove the named object (`/dev/shm/<name>`) whatever it holds, without checking for a
/// live producer or even for a shmcast segment: for leftovers `shmcast_remove` refuses
/// (`SHMCAST_BAD_SEGMENT`: a corrupt or half-created segment), or when you know better. A
/// live producer keeps writing into the unlinked segment, unseen by new consumers.
///
/// Errors: `SHMCAST_NOT_FOUND`, `SHMCAST_INVALID_NAME`, `SHMCAST_IO`,
/// `SHMCAST_NULL_POINTER`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmcast_force_remove(name: *const c_char) -> shmcast_status {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = unsafe { name_arg(name, "name") }?;
        shmcast::force_remove(&name).map_err(|e| force_remove_failure(&name, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_state_and_kind_has_a_name() {
        let name = |p: *const c_char| {
            // SAFETY: the functions return static NUL-terminated strings.
            unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
        };
        let states = [
            SHMCAST_PRODUCER_STATE_NONE,
            SHMCAST_PRODUCER_STATE_LIVE,
            SHMCAST_PRODUCER_STATE_CLOSED,
            SHMCAST_PRODUCER_STATE_DIED,
        ]
        .map(|s| name(shmcast_producer_state_str(s)));
        assert_eq!(states, ["none", "live", "closed", "died"]);
        assert_eq!(name(shmcast_producer_state_str(99)), "unknown");
        let kinds = [
            SHMCAST_SLOT_LOSSLESS,
            SHMCAST_SLOT_LOSSLESS_COPYING,
            SHMCAST_SLOT_LOSSY,
            SHMCAST_SLOT_EVICTED,
            SHMCAST_SLOT_UNKNOWN,
        ]
        .map(|k| name(shmcast_slot_kind_str(k)));
        assert_eq!(
            kinds,
            [
                "lossless",
                "lossless-copying",
                "lossy",
                "evicted",
                "unknown"
            ]
        );
    }
}
