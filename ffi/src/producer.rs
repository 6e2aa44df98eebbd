//! The producer handle: create, open (takeover), open_or_create, send, reserve/commit/abort,
//! batches, consumer counts and snapshots.

use crate::error::{guard, guard_handle, Failure};
use crate::segment::{shmcast_segment_info, shmcast_slot_info, SnapshotOut};
use crate::shmcast_status::{self, *};
use crate::{bytes_arg, name_arg, path_arg, shmcast_wait_policy, timeout_arg, write_out};
use shmcast::{Producer, ProducerBuilder, Reserved};
use std::ffi::{c_char, c_void};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::time::Duration;

/// A producer: the single writer of a segment's ring. Opaque; from
/// `shmcast_producer_create*`, `shmcast_producer_open` or `shmcast_producer_open_or_create`,
/// freed by `shmcast_producer_close`.
#[derive(Debug)]
pub struct shmcast_producer {
    _opaque: [u8; 0],
}

/// Options for creating (or taking over) a segment. Start from
/// `shmcast_producer_options_default()`; passing NULL instead means the defaults.
///
/// The geometry options (`capacity`, `max_message`, `max_consumers`, `mode`) are *unset*
/// when 0, as in the defaults. Creating a segment, an unset option takes its default value.
/// Taking a segment over (`shmcast_producer_open`, or `_open_or_create` finding one), an
/// unset option accepts the segment's value, and a set one must equal it
/// (`SHMCAST_OPTION_MISMATCH` otherwise: a segment's geometry cannot change). The other
/// options apply to the new producer either way.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct shmcast_producer_options {
    /// Ring capacity in bytes: a power of two from 256 bytes to 1 TiB. 0 (the default):
    /// unset, 1 MiB for a new segment.
    pub capacity: u64,
    /// Largest message in bytes. 0 (the default): unset, the largest the capacity allows for
    /// a new segment (a quarter of it minus a 24-byte record header).
    pub max_message: u64,
    /// Size of the consumer slot table, 1 to 4096. 0 (the default): unset, 16 for a new
    /// segment.
    pub max_consumers: u32,
    /// Permission bits of a named or path-backed segment (at most 0777). 0 (the default):
    /// unset, 0600 for a new segment. Consumers need read and write access: to share with
    /// another user, 0660 and a common group.
    pub mode: u32,
    /// How `send`/`reserve` wait while the ring is full.
    pub wait: shmcast_wait_policy,
    /// Nonzero (the default): closing the producer removes the segment's name or file.
    /// Zero: leave it, so a new producer can take it over (`shmcast_producer_open_or_create`,
    /// the restart-safe way to start a producer).
    pub remove_on_close: u32,
    /// Nonzero: evict a *live* lossless consumer that has kept the producer waiting for
    /// space longer than this many nanoseconds (dead consumers are always reclaimed).
    /// 0 (the default): never.
    pub evict_after_ns: u64,
}

/// The defaults of every producer option: geometry unset (0; see
/// `shmcast_producer_options`), the default wait policy, `remove_on_close` 1, no eviction.
#[no_mangle]
pub extern "C" fn shmcast_producer_options_default() -> shmcast_producer_options {
    shmcast_producer_options {
        capacity: 0,
        max_message: 0,
        max_consumers: 0,
        mode: 0,
        wait: crate::shmcast_wait_policy_default(),
        remove_on_close: 1,
        evict_after_ns: 0,
    }
}

/// What a producer handle knows about its segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_producer_info {
    /// Ring capacity in bytes.
    pub capacity: u64,
    /// The largest message the segment accepts.
    pub max_message: u64,
    /// The segment's file descriptor, owned by the producer (do not close it): hand it to
    /// consumer processes (inheritance or `SCM_RIGHTS`) for `shmcast_consumer_open_fd`.
    /// -1 for an in-process ring.
    pub fd: i32,
    /// 1 if this producer took an existing segment over (`shmcast_producer_open`, or
    /// `_open_or_create` finding one), 0 if it created it.
    pub took_over: u32,
}

/// The producer handle's own counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_producer_stats {
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

/// One message of a batch: `len` bytes at `data` (`data` may be NULL when `len` is 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmcast_slice {
    /// The bytes.
    pub data: *const c_void,
    /// Their number.
    pub len: usize,
}

// ---------------------------------------------------------------------------------------
// The handle behind the opaque pointer.

const PRODUCER_TAG: u64 = u64::from_le_bytes(*b"SHMCPROD");
const POISONED_TAG: u64 = u64::from_le_bytes(*b"SHMCPOIS");
const CLOSED_TAG: u64 = u64::from_le_bytes(*b"SHMCDEAD");

/// What a `shmcast_producer *` points to. `repr(C)`: the tag is the first word of every
/// handle, so a consumer handle passed here is recognized as the wrong kind.
#[repr(C)]
struct Handle {
    tag: u64,
    state: State,
}

struct State {
    /// Owned (from `Box::into_raw`), freed in `Drop` after `reserved`. A raw pointer rather
    /// than a `Box` because `reserved` borrows it mutably for as long as it is `Some`.
    producer: NonNull<Producer>,
    /// The outstanding reservation, if any: it holds the only reference to `*producer`.
    reserved: Option<Reserved<'static>>,
    info: shmcast_producer_info,
}

impl State {
    fn new(producer: Producer) -> State {
        let info = shmcast_producer_info {
            capacity: producer.capacity() as u64,
            max_message: producer.max_message() as u64,
            fd: producer.fd().map_or(-1, |fd| fd.as_raw_fd()),
            took_over: u32::from(producer.took_over()),
        };
        State {
            producer: NonNull::from(Box::leak(Box::new(producer))),
            reserved: None,
            info,
        }
    }

    /// The producer, if no reservation borrows it.
    fn idle(&mut self) -> Result<&mut Producer, Failure> {
        if self.reserved.is_some() {
            return Err(Failure::fixed(
                SHMCAST_WRONG_STATE,
                c"a reservation is outstanding: commit or abort it first",
            ));
        }
        // SAFETY: `producer` is live until `Drop`; with no reservation there is no other
        // reference to it, and the returned borrow is tied to `&mut self`.
        Ok(unsafe { self.producer.as_mut() })
    }

    /// Make a reservation with `reserve` and keep it; return its first byte.
    fn reserve(
        &mut self,
        reserve: impl FnOnce(&'static mut Producer) -> Result<Reserved<'static>, Failure>,
    ) -> Result<*mut u8, Failure> {
        self.idle()?;
        // SAFETY: no reservation exists (checked above), so nothing else refers to
        // `*producer`. The `'static` borrow is stored in `self.reserved` and ends when that
        // is taken or dropped, which `Drop` does before freeing the producer; until then
        // every path that touches the producer goes through `idle`, which refuses.
        let producer: &'static mut Producer = unsafe { &mut *self.producer.as_ptr() };
        let mut res = reserve(producer)?;
        let data = res.as_mut_ptr();
        self.reserved = Some(res);
        Ok(data)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Abort an outstanding reservation before the producer it borrows goes.
        self.reserved = None;
        // SAFETY: `producer` came from `Box::leak` in `new` and nothing borrows it now.
        drop(unsafe { Box::from_raw(self.producer.as_ptr()) });
    }
}

/// Box a new handle for C.
fn into_handle(producer: Producer) -> *mut shmcast_producer {
    Box::into_raw(Box::new(Handle {
        tag: PRODUCER_TAG,
        state: State::new(producer),
    }))
    .cast()
}

/// The handle behind `p`, checked.
///
/// # Safety
/// `p` is NULL or a pointer returned by this library and not yet closed (best-effort check).
unsafe fn handle<'a>(p: *mut shmcast_producer) -> Result<&'a mut State, Failure> {
    let h: *mut Handle = p.cast();
    if h.is_null() {
        return Err(Failure::null("producer"));
    }
    // SAFETY: every handle this library hands out is a `repr(C)` struct whose first word is
    // the tag, and live handles are at least a word long; the caller passes one.
    let tag = unsafe { std::ptr::addr_of!((*h).tag).read() };
    match tag {
        // SAFETY: a live producer handle; the caller does not use it from two threads at
        // once, so this is the only reference.
        PRODUCER_TAG => Ok(unsafe { &mut (*h).state }),
        POISONED_TAG => Err(Failure::fixed(
            SHMCAST_PANIC,
            c"this handle is poisoned by an earlier internal error; close it",
        )),
        _ => Err(Failure::fixed(
            SHMCAST_INVALID_HANDLE,
            c"not a live producer handle (closed already, a consumer handle, or garbage)",
        )),
    }
}

/// Run `body` on the checked handle `p`; a panic poisons it.
///
/// # Safety
/// As [`handle`].
unsafe fn with(
    p: *mut shmcast_producer,
    body: impl FnOnce(&mut State) -> Result<(), Failure>,
) -> shmcast_status {
    guard_handle(
        // SAFETY: forwarded from the caller.
        || body(unsafe { handle(p) }?),
        || {
            let h: *mut Handle = p.cast();
            if h.is_null() {
                return;
            }
            // SAFETY: the body found a live handle here before it panicked (the tag check
            // itself cannot panic); the body's borrow of it ended with the unwind, so these
            // raw accesses to the tag alias nothing.
            unsafe {
                let tag = std::ptr::addr_of_mut!((*h).tag);
                if tag.read() == PRODUCER_TAG {
                    tag.write(POISONED_TAG);
                }
            }
        },
    )
}

/// Apply C options to a core builder: a geometry option is set only if nonzero (see
/// [`shmcast_producer_options`]).
///
/// # Safety
/// `opts` is NULL or points to a `shmcast_producer_options`.
unsafe fn builder(opts: *const shmcast_producer_options) -> Result<ProducerBuilder, Failure> {
    let mut b = Producer::builder();
    if opts.is_null() {
        return Ok(b);
    }
    // SAFETY: non-NULL, points to options per the caller's contract; every field is an
    // integer, so any bit pattern is a valid value.
    let o = unsafe { opts.read() };
    let size = |what: &str, v: u64| {
        usize::try_from(v).map_err(|_| {
            Failure::new(
                SHMCAST_INVALID_CONFIG,
                format!("{what} {v} does not fit this platform"),
            )
        })
    };
    if o.capacity != 0 {
        b = b.capacity(size("capacity", o.capacity)?);
    }
    if o.max_message != 0 {
        b = b.max_message(size("max_message", o.max_message)?);
    }
    if o.max_consumers != 0 {
        b = b.max_consumers(o.max_consumers);
    }
    if o.mode & !0o777 != 0 {
        return Err(Failure::new(
            SHMCAST_INVALID_ARGUMENT,
            format!(
                "mode {:#o} has bits beyond the permission bits 0777 (setuid, setgid, sticky \
                 or garbage); pass permission bits only, e.g. 0660",
                o.mode
            ),
        ));
    }
    if o.mode != 0 {
        b = b.mode(o.mode);
    }
    b = b
        .wait_policy(o.wait.to_core()?)
        .remove_on_drop(o.remove_on_close != 0);
    if o.evict_after_ns != 0 {
        b = b.evict_after(Duration::from_nanos(o.evict_after_ns));
    }
    Ok(b)
}

/// Store a new handle through `out` (checked first, so a NULL `out` creates nothing).
///
/// # Safety
/// `out` is NULL or valid for a write of a pointer.
unsafe fn create(
    out: *mut *mut shmcast_producer,
    make: impl FnOnce() -> Result<Producer, Failure>,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null("out"));
    }
    // SAFETY: non-NULL and writable per the caller's contract. Cleared first so a failure
    // leaves NULL there.
    unsafe { out.write(std::ptr::null_mut()) };
    let handle = into_handle(make()?);
    // SAFETY: as above.
    unsafe { out.write(handle) };
    Ok(())
}

/// Create a named POSIX shared-memory segment (`/dev/shm/<name>`, `O_EXCL`) and become its
/// producer. `name`: 1 to 200 bytes of `[A-Za-z0-9._-]`, not starting with `.`. `opts` may
/// be NULL (defaults). On success `*out` is the new handle; on failure NULL.
///
/// Errors: `SHMCAST_INVALID_NAME`, `SHMCAST_INVALID_CONFIG`, `SHMCAST_ALREADY_EXISTS`
/// (remove a stale one with `shmcast_remove`), `SHMCAST_IO`, `SHMCAST_INVALID_ARGUMENT`,
/// `SHMCAST_NULL_POINTER`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `opts` is NULL or points to options; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_create(
    name: *const c_char,
    opts: *const shmcast_producer_options,
    out: *mut *mut shmcast_producer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            create(out, || {
                let name = name_arg(name, "name")?;
                Ok(builder(opts)?.create(&name)?)
            })
        }
    })
}

/// Create a segment in a new file at `path` (typically on tmpfs or hugetlbfs). As
/// `shmcast_producer_create` otherwise; closing removes the file unless
/// `remove_on_close` is 0.
///
/// # Safety
/// As `shmcast_producer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_create_path(
    path: *const c_char,
    opts: *const shmcast_producer_options,
    out: *mut *mut shmcast_producer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            create(out, || {
                let path = path_arg(path, "path")?;
                Ok(builder(opts)?.create_path(path)?)
            })
        }
    })
}

/// Create an anonymous, sealed memfd segment. Its descriptor is
/// `shmcast_producer_info.fd`: hand it to consumer processes for
/// `shmcast_consumer_open_fd`.
///
/// # Safety
/// `opts` is NULL or points to options; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_create_anonymous(
    opts: *const shmcast_producer_options,
    out: *mut *mut shmcast_producer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { create(out, || Ok(builder(opts)?.create_anonymous()?)) }
    })
}

/// Create a ring on the heap for threads of this process (no segment). Consumers attach
/// with `shmcast_consumer_attach`.
///
/// # Safety
/// `opts` is NULL or points to options; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_create_in_process(
    opts: *const shmcast_producer_options,
    out: *mut *mut shmcast_producer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { create(out, || Ok(builder(opts)?.create_in_process()?)) }
    })
}

/// Take over the named segment whose producer died (or closed with `remove_on_close` 0):
/// the stream continues where its committed data ends, without a gap or a duplicate.
/// Geometry options left 0 in `opts` (as in the defaults; NULL: defaults) accept the
/// segment's; a nonzero one must match it. `wait`, `remove_on_close` and `evict_after_ns`
/// apply to the new producer.
///
/// Errors: `SHMCAST_PRODUCER_ALIVE` if its producer is alive, `SHMCAST_OPTION_MISMATCH`,
/// `SHMCAST_NOT_FOUND`, `SHMCAST_BAD_SEGMENT`, `SHMCAST_FOREIGN_OWNER`,
/// `SHMCAST_INVALID_NAME`, `SHMCAST_IO`, `SHMCAST_INVALID_ARGUMENT`, `SHMCAST_NULL_POINTER`.
///
/// # Safety
/// As `shmcast_producer_create`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_open(
    name: *const c_char,
    opts: *const shmcast_producer_options,
    out: *mut *mut shmcast_producer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            create(out, || {
                let name = name_arg(name, "name")?;
                Ok(builder(opts)?.open(&name)?)
            })
        }
    })
}

/// The restart-safe way to start a producer: create the named segment if it does not
/// exist, or take it over if its producer is gone (died, or closed with `remove_on_close`
/// 0), continuing the stream where its committed data ends. Never a second producer: if the
/// segment's producer lives, `SHMCAST_PRODUCER_ALIVE`. A segment another process is still
/// creating is waited for (up to two seconds).
///
/// Geometry options left 0 in `opts` (as in the defaults; NULL: defaults) mean "unset": a
/// new segment gets the default (1 MiB capacity, the largest message it allows, 16
/// consumer slots, mode 0600), an existing one is taken over with its own. A nonzero option
/// is used to create, and must match an existing segment (`SHMCAST_OPTION_MISMATCH`, which
/// names the option and both values). Set `remove_on_close` to 0 to keep the segment (and
/// its consumers) across restarts.
///
/// On success `*out` is the new handle and, unless `created` is NULL, `*created` is 1 if
/// the segment was created, 0 if it was taken over (also `shmcast_producer_info.took_over`).
/// On failure `*out` is NULL and `*created` 0.
///
/// Errors: `SHMCAST_PRODUCER_ALIVE`, `SHMCAST_OPTION_MISMATCH`, `SHMCAST_INVALID_CONFIG`
/// (it had to create the segment and the options are invalid), `SHMCAST_BAD_SEGMENT`,
/// `SHMCAST_FOREIGN_OWNER`, `SHMCAST_INVALID_NAME`, `SHMCAST_IO`,
/// `SHMCAST_INVALID_ARGUMENT`, `SHMCAST_NULL_POINTER` (`name` or `out`).
///
/// # Safety
/// As `shmcast_producer_create`; `created` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_open_or_create(
    name: *const c_char,
    opts: *const shmcast_producer_options,
    out: *mut *mut shmcast_producer,
    created: *mut i32,
) -> shmcast_status {
    guard(|| {
        if !created.is_null() {
            // SAFETY: non-NULL and writable per the caller's contract.
            unsafe { created.write(0) };
        }
        let mut took_over = true;
        // SAFETY: forwarded from the caller.
        unsafe {
            create(out, || {
                let name = name_arg(name, "name")?;
                let p = builder(opts)?.open_or_create(&name)?;
                took_over = p.took_over();
                Ok(p)
            })
        }?;
        if !created.is_null() {
            // SAFETY: as above.
            unsafe { created.write(i32::from(!took_over)) };
        }
        Ok(())
    })
}

/// Close the stream and free the handle: consumers drain what was published, then get
/// `SHMCAST_DISCONNECTED`. An outstanding reservation is aborted. Removes the segment's
/// name or file unless `remove_on_close` was 0. NULL: does nothing, returns `SHMCAST_OK`.
///
/// # Safety
/// `p` is NULL or a producer handle not yet closed; it is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_close(p: *mut shmcast_producer) -> shmcast_status {
    if p.is_null() {
        return SHMCAST_OK;
    }
    guard(|| {
        let h: *mut Handle = p.cast();
        // SAFETY: a handle from this library per the caller's contract (tag checked).
        let tag = unsafe { std::ptr::addr_of!((*h).tag).read() };
        if tag != PRODUCER_TAG && tag != POISONED_TAG {
            return Err(Failure::fixed(
                SHMCAST_INVALID_HANDLE,
                c"not a live producer handle (closed already, a consumer handle, or garbage)",
            ));
        }
        // SAFETY: as above; the tag is changed before freeing so that a second close of
        // the same pointer is likely (not certainly) caught while the memory is unreused.
        unsafe { std::ptr::addr_of_mut!((*h).tag).write(CLOSED_TAG) };
        // SAFETY: `h` came from `Box::into_raw` in `into_handle`; the caller gives it up.
        drop(unsafe { Box::from_raw(h) });
        Ok(())
    })
}

/// Send `len` bytes at `data`, waiting (per the wait policy) while the ring is full.
///
/// Errors: `SHMCAST_TOO_LARGE` (nothing sent), `SHMCAST_WRONG_STATE` (a reservation is
/// outstanding), `SHMCAST_NULL_POINTER` (`data` NULL with `len` > 0).
///
/// # Safety
/// `p` is a producer handle; `data` points to `len` readable bytes (or NULL if `len` 0).
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_send(
    p: *mut shmcast_producer,
    data: *const c_void,
    len: usize,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            let msg = bytes_arg(data.cast(), len, "data")?;
            Ok(s.idle()?.send(msg)?)
        })
    }
}

/// Send if there is room now: `SHMCAST_FULL` if the slowest lossless consumer has not
/// released enough space (nothing sent). Otherwise as `shmcast_producer_send`.
///
/// # Safety
/// As `shmcast_producer_send`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_try_send(
    p: *mut shmcast_producer,
    data: *const c_void,
    len: usize,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            let msg = bytes_arg(data.cast(), len, "data")?;
            Ok(s.idle()?.try_send(msg)?)
        })
    }
}

/// Send, waiting at most `timeout_ns` nanoseconds for room: `SHMCAST_TIMEOUT` if the ring
/// stayed full (nothing sent). Otherwise as `shmcast_producer_send`.
///
/// # Safety
/// As `shmcast_producer_send`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_send_timeout(
    p: *mut shmcast_producer,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            let msg = bytes_arg(data.cast(), len, "data")?;
            Ok(s.idle()?.send_timeout(msg, timeout_arg(timeout_ns))?)
        })
    }
}

/// A batch entry whose pointer was checked: derefs to its bytes.
#[repr(transparent)]
struct CheckedSlice(shmcast_slice);

impl AsRef<[u8]> for CheckedSlice {
    fn as_ref(&self) -> &[u8] {
        if self.0.len == 0 {
            return &[];
        }
        // SAFETY: `CheckedSlice`s exist only inside `shmcast_producer_send_batch`, made from
        // entries whose pointer was checked non-NULL and length `<= isize::MAX`; the caller
        // guarantees the bytes are readable for the duration of the call.
        unsafe { std::slice::from_raw_parts(self.0.data.cast(), self.0.len) }
    }
}

/// Send `count` messages (`msgs[0..count]`) with one publication per ring-full, waiting
/// while the ring is full. Every entry is checked first (lengths and pointers): on
/// `SHMCAST_TOO_LARGE` or `SHMCAST_NULL_POINTER` nothing is sent. `msgs` may be NULL when
/// `count` is 0.
///
/// # Safety
/// `p` is a producer handle; `msgs` points to `count` entries, each pointing to `len`
/// readable bytes (or NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_send_batch(
    p: *mut shmcast_producer,
    msgs: *const shmcast_slice,
    count: usize,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            if count == 0 {
                s.idle()?;
                return Ok(());
            }
            if msgs.is_null() {
                return Err(Failure::new(
                    SHMCAST_NULL_POINTER,
                    format!("msgs is NULL but count is {count}"),
                ));
            }
            if count > isize::MAX as usize / std::mem::size_of::<shmcast_slice>() {
                return Err(Failure::new(
                    SHMCAST_INVALID_ARGUMENT,
                    format!("count {count} exceeds the largest array"),
                ));
            }
            // SAFETY: non-NULL, `count` entries per the caller's contract, size checked.
            let entries = std::slice::from_raw_parts(msgs, count);
            for (i, e) in entries.iter().enumerate() {
                bytes_arg(e.data.cast(), e.len, &format!("msgs[{i}].data"))?;
            }
            // SAFETY: `CheckedSlice` is `repr(transparent)` over `shmcast_slice`, and every
            // entry was checked just above.
            let checked: &[CheckedSlice] =
                std::slice::from_raw_parts(entries.as_ptr().cast(), entries.len());
            Ok(s.idle()?.send_batch(checked)?)
        })
    }
}

/// Reserve `len` bytes in the ring, waiting while it is full, and set `*data` to them.
/// Fill them in place, then `shmcast_producer_commit` (publish) or `_abort`. Until then
/// the producer accepts no other send or reservation (`SHMCAST_WRONG_STATE`).
///
/// Errors: `SHMCAST_TOO_LARGE`, `SHMCAST_WRONG_STATE`, `SHMCAST_NULL_POINTER`. On failure
/// `*data` is NULL.
///
/// # Safety
/// `p` is a producer handle; `data` is NULL or writable. The reserved bytes may be written
/// (and read) until the reservation is committed, aborted or the producer closed.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_reserve(
    p: *mut shmcast_producer,
    len: usize,
    data: *mut *mut u8,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { reserve_with(p, data, |pr| Ok(pr.reserve(len)?)) }
}

/// Reserve `len` bytes if there is room now: `SHMCAST_FULL` otherwise. As
/// `shmcast_producer_reserve`.
///
/// # Safety
/// As `shmcast_producer_reserve`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_try_reserve(
    p: *mut shmcast_producer,
    len: usize,
    data: *mut *mut u8,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { reserve_with(p, data, |pr| Ok(pr.try_reserve(len)?)) }
}

/// # Safety
/// As `shmcast_producer_reserve`.
unsafe fn reserve_with(
    p: *mut shmcast_producer,
    data: *mut *mut u8,
    reserve: impl FnOnce(&'static mut Producer) -> Result<Reserved<'static>, Failure>,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            if data.is_null() {
                return Err(Failure::null("data"));
            }
            data.write(std::ptr::null_mut());
            let ptr = s.reserve(reserve)?;
            data.write(ptr);
            Ok(())
        })
    }
}

/// Publish the outstanding reservation to every consumer. `SHMCAST_WRONG_STATE` if there
/// is none. The reserved bytes must not be touched afterwards.
///
/// # Safety
/// `p` is a producer handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_commit(p: *mut shmcast_producer) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| match s.reserved.take() {
            Some(res) => {
                res.commit();
                Ok(())
            }
            None => Err(Failure::fixed(
                SHMCAST_WRONG_STATE,
                c"there is no reservation to commit: call shmcast_producer_reserve first",
            )),
        })
    }
}

/// Drop the outstanding reservation unpublished (no consumer ever sees it). Without one,
/// does nothing and returns `SHMCAST_OK`.
///
/// # Safety
/// `p` is a producer handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_abort(p: *mut shmcast_producer) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            s.reserved = None;
            Ok(())
        })
    }
}

/// Capacity, maximum message size and descriptor of the producer's segment. Works with a
/// reservation outstanding.
///
/// # Safety
/// `p` is a producer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_get_info(
    p: *mut shmcast_producer,
    out: *mut shmcast_producer_info,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { with(p, |s| write_out(out, "out", s.info)) }
}

/// The handle's counters. `SHMCAST_WRONG_STATE` while a reservation is outstanding.
///
/// # Safety
/// `p` is a producer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_get_stats(
    p: *mut shmcast_producer,
    out: *mut shmcast_producer_stats,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            if out.is_null() {
                return Err(Failure::null("out"));
            }
            let st = s.idle()?.stats();
            write_out(
                out,
                "out",
                shmcast_producer_stats {
                    messages: st.messages,
                    wake_syscalls: st.wake_syscalls,
                    full_waits: st.full_waits,
                    sleeps: st.sleeps,
                    rescans: st.rescans,
                    evictions: st.evictions,
                },
            )
        })
    }
}

/// The sequence number the next message will carry (after a takeover, the stream goes on
/// from the previous producer's). `SHMCAST_WRONG_STATE` while a reservation is outstanding.
///
/// # Safety
/// `p` is a producer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_next_seq(
    p: *mut shmcast_producer,
    out: *mut u64,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            if out.is_null() {
                return Err(Failure::null("out"));
            }
            let seq = s.idle()?.next_seq();
            write_out(out, "out", seq)
        })
    }
}

/// How many consumers (lossless and lossy) are attached and alive now: `*out`.
/// `SHMCAST_WRONG_STATE` while a reservation is outstanding.
///
/// # Safety
/// `p` is a producer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_consumers(
    p: *mut shmcast_producer,
    out: *mut usize,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            if out.is_null() {
                return Err(Failure::null("out"));
            }
            let n = s.idle()?.consumers();
            write_out(out, "out", n)
        })
    }
}

/// Wait until at least `n` consumers are attached and alive (start-up: a producer that
/// should not publish into the void), at most `timeout_ns` nanoseconds (`UINT64_MAX`: in
/// effect forever). It polls, sleeping between checks (0.5 to 20 ms); signals do not
/// interrupt it. Unless `attached` is NULL, `*attached` is how many are attached (at the
/// deadline, on `SHMCAST_TIMEOUT`).
///
/// Errors: `SHMCAST_TIMEOUT`, `SHMCAST_WRONG_STATE` (a reservation is outstanding).
///
/// # Safety
/// `p` is a producer handle; `attached` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_wait_for_consumers(
    p: *mut shmcast_producer,
    n: usize,
    timeout_ns: u64,
    attached: *mut usize,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            if !attached.is_null() {
                attached.write(0);
            }
            let (count, result) = match s.idle()?.wait_for_consumers(n, timeout_arg(timeout_ns)) {
                Ok(count) => (count, Ok(())),
                Err(e) => (
                    e.attached,
                    Err(Failure::new(SHMCAST_TIMEOUT, e.to_string())),
                ),
            };
            if !attached.is_null() {
                attached.write(count);
            }
            result
        })
    }
}

/// A snapshot of the producer's own segment, as `shmcast_inspect` gives, for any backing
/// (anonymous and in-process rings included). `producer_state` is
/// `SHMCAST_PRODUCER_STATE_LIVE`: this handle is the live producer. `SHMCAST_WRONG_STATE`
/// while a reservation is outstanding.
///
/// # Safety
/// `p` is a producer handle; otherwise as `shmcast_inspect`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_producer_snapshot(
    p: *mut shmcast_producer,
    info: *mut shmcast_segment_info,
    slots: *mut shmcast_slot_info,
    cap: usize,
    count: *mut usize,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(p, |s| {
            let out = SnapshotOut::new(info, slots, cap, count)?;
            out.write(&s.idle()?.snapshot())
        })
    }
}

/// The producer behind a handle, for `shmcast_consumer_attach`.
///
/// # Safety
/// As [`handle`]; the returned borrow must end before the next call on `p`.
pub(crate) unsafe fn producer_for_attach<'a>(
    p: *mut shmcast_producer,
) -> Result<&'a mut Producer, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { handle(p) }?.idle()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_c(o: &shmcast_producer_options) -> ProducerBuilder {
        // SAFETY: a valid options struct.
        unsafe { builder(o) }.unwrap()
    }

    #[test]
    fn default_options_leave_the_geometry_unset_as_the_core_builder_does() {
        let d = shmcast_producer_options_default();
        assert_eq!(
            format!("{:?}", from_c(&d)),
            format!("{:?}", Producer::builder())
        );
        // SAFETY: NULL means the defaults.
        let null = unsafe { builder(std::ptr::null()) }.unwrap();
        assert_eq!(format!("{null:?}"), format!("{:?}", Producer::builder()));
        let from_c = from_c(&d).create_in_process().unwrap();
        let core = Producer::builder().create_in_process().unwrap();
        assert_eq!(from_c.capacity(), core.capacity());
        assert_eq!(from_c.max_message(), core.max_message());
    }

    #[test]
    fn nonzero_geometry_options_are_set_explicitly() {
        let o = shmcast_producer_options {
            capacity: 4096,
            max_message: 100,
            max_consumers: 3,
            mode: 0o640,
            ..shmcast_producer_options_default()
        };
        assert_eq!(
            format!("{:?}", from_c(&o)),
            format!(
                "{:?}",
                Producer::builder()
                    .capacity(4096)
                    .max_message(100)
                    .max_consumers(3)
                    .mode(0o640)
            )
        );
    }

    #[test]
    fn a_mode_beyond_the_permission_bits_is_refused() {
        let o = shmcast_producer_options {
            mode: 0o4755,
            ..shmcast_producer_options_default()
        };
        // SAFETY: a valid options struct.
        let e = unsafe { builder(&o) }.unwrap_err();
        assert_eq!(e.status(), SHMCAST_INVALID_ARGUMENT);
    }
}
