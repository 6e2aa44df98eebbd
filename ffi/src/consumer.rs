//! The consumer handle: open (lossless or lossy), receive in place or into a buffer,
//! release, close.

use crate::error::{guard, guard_handle, Failure, RecvFailure};
use crate::producer::{producer_for_attach, shmcast_producer};
use crate::shmcast_status::*;
use crate::{name_arg, path_arg, shmcast_status, shmcast_wait_policy, start_at, timeout_arg};
use crate::{write_out, SHMCAST_START_NEXT};
use shmcast::{Consumer, ConsumerBuilder, LossyConsumer, LossyConsumerBuilder, Message, OpenError};
use std::ffi::{c_char, c_void};
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::time::Duration;

/// A consumer: a reader of a segment's ring. Opaque; from `shmcast_consumer_open*` or
/// `shmcast_consumer_attach`, freed by `shmcast_consumer_close`.
#[derive(Debug)]
pub struct shmcast_consumer {
    _opaque: [u8; 0],
}

/// Options for attaching a consumer. Start from `shmcast_consumer_options_default()`;
/// passing NULL instead means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct shmcast_consumer_options {
    /// Nonzero: a lossy consumer, which never slows the producer down; when the producer
    /// laps it, the next receive returns `SHMCAST_LAGGED` with the number of messages lost.
    /// It copies messages out (`shmcast_consumer_recv` then gives a view of its own copy).
    /// 0 (the default): lossless; the producer waits for it.
    pub lossy: u32,
    /// `SHMCAST_START_NEXT` (default) or `SHMCAST_START_OLDEST`.
    pub start: u32,
    /// How blocking receives wait while the ring is empty.
    pub wait: shmcast_wait_policy,
    /// Nonzero: accept a segment owned by another user. Default 0: refuse it.
    pub allow_foreign_owner: u32,
    /// Nonzero (the default, 1): while a blocking receive spins (as `wait` says: its spin
    /// count, at most 64 polls at a time), it polls the next record's stamp alone and takes
    /// the record straight from that loop. 0 opts out: every spin then runs the full poll
    /// (the end-of-stream and stuck-stream checks, the cursor publish); nothing else
    /// changes. In 16 alternated pairs of builds of the crate's `pingpong` benchmark (pinned,
    /// same-die 64 B busy-spin, against ringfire in the same runs), on for every consumer
    /// put the busy-spin round trip at a median 1.26x ringfire's against 1.51x off, and the
    /// single-message one-way stream at the same fraction of the streaming floor (median
    /// 0.58x on, 0.56x off). It changes nothing for a policy with 0 spins (such as `_ADAPTIVE`
    /// with 0 spins and 0 yields, which sleeps at once), for a lossy consumer, or for
    /// try-receives.
    /// (Added after the other fields: recompile C code against this header.)
    pub tight_spin: u32,
}

/// The defaults of every consumer option.
#[no_mangle]
pub extern "C" fn shmcast_consumer_options_default() -> shmcast_consumer_options {
    shmcast_consumer_options {
        lossy: 0,
        start: SHMCAST_START_NEXT,
        wait: crate::shmcast_wait_policy_default(),
        allow_foreign_owner: 0,
        tight_spin: 1,
    }
}

/// A received message, read in place: `len` bytes at `data`, the `seq`-th message of the
/// stream (0 for the first message ever sent). Valid until `shmcast_consumer_release` or
/// `shmcast_consumer_close` on the consumer that received it; read-only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmcast_message {
    /// The payload (8-byte aligned; not NULL after a successful receive).
    pub data: *const u8,
    /// Its length in bytes.
    pub len: usize,
    /// Its sequence number in the stream.
    pub seq: u64,
    /// With `SHMCAST_LAGGED` (lossy consumers): how many messages were lost; `data` is
    /// NULL then. Otherwise 0.
    pub lost: u64,
}

/// What a receive into a caller's buffer found.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_recv_info {
    /// The message's length (with `SHMCAST_BUFFER_TOO_SMALL`: the size needed).
    pub len: usize,
    /// The message's sequence number.
    pub seq: u64,
    /// With `SHMCAST_LAGGED`: how many messages were lost.
    pub lost: u64,
}

/// The consumer handle's own counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_consumer_stats {
    /// Messages received.
    pub messages: u64,
    /// `FUTEX_WAKE` syscalls made to wake a producer waiting for space.
    pub wake_syscalls: u64,
    /// Futex sleeps while the ring was empty.
    pub sleeps: u64,
}

/// How far a consumer is behind the producer (`shmcast_consumer_lag`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmcast_lag {
    /// Bytes of the ring between the consumer's position and the producer's tail.
    pub bytes: u64,
    /// Messages between them, if `has_messages`.
    pub messages: u64,
    /// 1 if `messages` is known: the record at the consumer's position is still in the ring
    /// (a lossy consumer that was lapped gets 0, and learns the loss on its next receive).
    pub has_messages: u32,
}

// ---------------------------------------------------------------------------------------
// The handle behind the opaque pointer.

const CONSUMER_TAG: u64 = u64::from_le_bytes(*b"SHMCCONS");
const POISONED_TAG: u64 = u64::from_le_bytes(*b"SHMCPOIS");
const CLOSED_TAG: u64 = u64::from_le_bytes(*b"SHMCDEAD");

/// What a `shmcast_consumer *` points to; the tag is its first word (see the producer's).
#[repr(C)]
struct Handle {
    tag: u64,
    state: State,
}

enum State {
    Lossless(Lossless),
    Lossy(Lossy),
}

/// How long a receive may wait.
#[derive(Clone, Copy, Debug)]
enum Wait {
    Now,
    Forever,
    For(Duration),
}

/// A lossless consumer and the message it holds, if any.
struct Lossless {
    /// Owned (from `Box::leak`), freed in `Drop` after `held`. A raw pointer rather than a
    /// `Box` because `held` borrows it mutably for as long as it is `Some`.
    consumer: NonNull<Consumer>,
    /// The message received and not yet released: its space in the ring stays reserved
    /// for this consumer (the producer is gated by it) until it is dropped.
    held: Option<Message<'static>>,
    /// `held` was handed to C as a view (else it is kept for a `recv_into` that was given
    /// too small a buffer).
    lent: bool,
}

impl Lossless {
    fn new(consumer: Consumer) -> Lossless {
        Lossless {
            consumer: NonNull::from(Box::leak(Box::new(consumer))),
            held: None,
            lent: false,
        }
    }

    /// The consumer, if no message borrows it.
    fn idle(&mut self) -> Result<&mut Consumer, Failure> {
        if self.held.is_some() {
            return Err(Failure::fixed(
                SHMCAST_WRONG_STATE,
                c"a received message is outstanding: release it first",
            ));
        }
        // SAFETY: live until `Drop`; with no message held nothing else refers to it.
        Ok(unsafe { self.consumer.as_mut() })
    }

    /// Make sure a message is held: the kept one, or a new one.
    fn fetch(&mut self, wait: Wait) -> Result<(), RecvFailure> {
        if self.held.is_some() {
            return Ok(());
        }
        // SAFETY: no message is held, so nothing refers to `*consumer`. The `'static`
        // borrow moves into `self.held` and ends when that is dropped, which `Drop` does
        // before freeing the consumer; while it is `Some`, `idle` refuses every other use.
        let c: &'static mut Consumer = unsafe { &mut *self.consumer.as_ptr() };
        self.held = Some(match wait {
            Wait::Now => c.try_recv()?,
            Wait::Forever => c.recv()?,
            Wait::For(d) => c.recv_timeout(d)?,
        });
        Ok(())
    }
}

impl Drop for Lossless {
    fn drop(&mut self) {
        // Release the held message before the consumer it borrows goes.
        self.held = None;
        // SAFETY: from `Box::leak` in `new`; nothing borrows it now.
        drop(unsafe { Box::from_raw(self.consumer.as_ptr()) });
    }
}

/// A lossy consumer and its private copy of the current message.
struct Lossy {
    consumer: LossyConsumer,
    buf: Vec<u8>,
    seq: u64,
    /// `buf` holds a message not yet delivered (`Kept`) or lent to C as a view (`Lent`).
    state: CopyState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CopyState {
    Empty,
    Kept,
    Lent,
}

impl Lossy {
    fn fetch(&mut self, wait: Wait) -> Result<(), RecvFailure> {
        if self.state != CopyState::Empty {
            return Ok(());
        }
        let c = &mut self.consumer;
        self.seq = match wait {
            Wait::Now => c.try_recv_into(&mut self.buf)?,
            Wait::Forever => c.recv_into(&mut self.buf)?,
            Wait::For(d) => c.recv_timeout_into(&mut self.buf, d)?,
        };
        self.state = CopyState::Kept;
        Ok(())
    }
}

impl State {
    fn lent(&self) -> bool {
        match self {
            State::Lossless(l) => l.lent,
            State::Lossy(l) => l.state == CopyState::Lent,
        }
    }

    fn fetch(&mut self, wait: Wait) -> Result<(), RecvFailure> {
        if self.lent() {
            return Err(RecvFailure::Other(Failure::fixed(
                SHMCAST_WRONG_STATE,
                c"the previous message is still held: call shmcast_consumer_release first",
            )));
        }
        match self {
            State::Lossless(l) => l.fetch(wait),
            State::Lossy(l) => l.fetch(wait),
        }
    }

    /// The fetched message's bytes and sequence number.
    fn current(&self) -> (&[u8], u64) {
        match self {
            State::Lossless(l) => match &l.held {
                Some(m) => (m, m.seq()),
                None => (&[], 0),
            },
            State::Lossy(l) => (&l.buf, l.seq),
        }
    }

    fn set_lent(&mut self) {
        match self {
            State::Lossless(l) => l.lent = true,
            State::Lossy(l) => l.state = CopyState::Lent,
        }
    }

    /// Let go of the fetched message (its ring space, for a lossless consumer).
    fn discard(&mut self) {
        match self {
            State::Lossless(l) => {
                l.held = None;
                l.lent = false;
            }
            State::Lossy(l) => l.state = CopyState::Empty,
        }
    }

    /// Lend the next message to C; on `Lagged`, `view.lost` is the count.
    fn view(&mut self, wait: Wait, view: &mut shmcast_message) -> Result<(), Failure> {
        match self.fetch(wait) {
            Ok(()) => {}
            Err(RecvFailure::Lagged(n, text)) => {
                view.lost = n;
                return Err(Failure::new(SHMCAST_LAGGED, text));
            }
            Err(RecvFailure::Other(f)) => return Err(f),
        }
        self.set_lent();
        let (bytes, seq) = self.current();
        *view = shmcast_message {
            data: bytes.as_ptr(),
            len: bytes.len(),
            seq,
            lost: 0,
        };
        Ok(())
    }

    /// # Safety
    /// `dst` is NULL or valid for `cap` bytes of writes.
    unsafe fn copy(
        &mut self,
        wait: Wait,
        dst: *mut u8,
        cap: usize,
        info: &mut shmcast_recv_info,
    ) -> Result<(), Failure> {
        if dst.is_null() && cap > 0 {
            return Err(Failure::new(
                SHMCAST_NULL_POINTER,
                format!("buf is NULL but its capacity is {cap}"),
            ));
        }
        match self.fetch(wait) {
            Ok(()) => {}
            Err(RecvFailure::Lagged(n, text)) => {
                info.lost = n;
                return Err(Failure::new(SHMCAST_LAGGED, text));
            }
            Err(RecvFailure::Other(f)) => return Err(f),
        }
        let (bytes, seq) = self.current();
        info.len = bytes.len();
        info.seq = seq;
        if bytes.len() > cap {
            return Err(Failure::new(
                SHMCAST_BUFFER_TOO_SMALL,
                format!(
                    "message {seq} of {} bytes does not fit the buffer of {cap} bytes; it is \
                     kept: receive again with a buffer of at least that size",
                    bytes.len()
                ),
            ));
        }
        if !bytes.is_empty() {
            // SAFETY: `dst` is valid for `cap >= len` bytes (caller) and non-NULL (checked);
            // `bytes` is the held message or our own copy, which cannot overlap the
            // caller's buffer: the ring is mapped by us and C never owns it, our copy is a
            // private allocation.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        }
        self.discard();
        Ok(())
    }

    fn lag(&mut self) -> Result<shmcast_lag, Failure> {
        let lag = match self {
            State::Lossless(l) => l.idle()?.lag(),
            State::Lossy(l) => l.consumer.lag(),
        };
        Ok(shmcast_lag {
            bytes: lag.bytes,
            messages: lag.messages.unwrap_or(0),
            has_messages: u32::from(lag.messages.is_some()),
        })
    }

    fn stats(&mut self) -> Result<shmcast_consumer_stats, Failure> {
        let st = match self {
            State::Lossless(l) => l.idle()?.stats(),
            State::Lossy(l) => l.consumer.stats(),
        };
        Ok(shmcast_consumer_stats {
            messages: st.messages,
            wake_syscalls: st.wake_syscalls,
            sleeps: st.sleeps,
        })
    }
}

/// # Safety
/// `c` is NULL or a pointer returned by this library and not yet closed (best-effort check).
unsafe fn handle<'a>(c: *mut shmcast_consumer) -> Result<&'a mut State, Failure> {
    let h: *mut Handle = c.cast();
    if h.is_null() {
        return Err(Failure::null("consumer"));
    }
    // SAFETY: every handle this library hands out is a `repr(C)` struct whose first word is
    // the tag, and live handles are at least a word long; the caller passes one.
    let tag = unsafe { std::ptr::addr_of!((*h).tag).read() };
    match tag {
        // SAFETY: a live consumer handle, used by one thread at a time (caller's contract).
        CONSUMER_TAG => Ok(unsafe { &mut (*h).state }),
        POISONED_TAG => Err(Failure::fixed(
            SHMCAST_PANIC,
            c"this handle is poisoned by an earlier internal error; close it",
        )),
        _ => Err(Failure::fixed(
            SHMCAST_INVALID_HANDLE,
            c"not a live consumer handle (closed already, a producer handle, or garbage)",
        )),
    }
}

/// Run `body` on the checked handle `c`; a panic poisons it.
///
/// # Safety
/// As [`handle`].
unsafe fn with(
    c: *mut shmcast_consumer,
    body: impl FnOnce(&mut State) -> Result<(), Failure>,
) -> shmcast_status {
    guard_handle(
        // SAFETY: forwarded from the caller.
        || body(unsafe { handle(c) }?),
        || {
            let h: *mut Handle = c.cast();
            if h.is_null() {
                return;
            }
            // SAFETY: the body found a live handle here before it panicked (the tag check
            // itself cannot panic); the body's borrow of it ended with the unwind, so these
            // raw accesses to the tag alias nothing.
            unsafe {
                let tag = std::ptr::addr_of_mut!((*h).tag);
                if tag.read() == CONSUMER_TAG {
                    tag.write(POISONED_TAG);
                }
            }
        },
    )
}

/// Parsed C options.
struct Options {
    builder: ConsumerBuilder,
    lossy: bool,
}

/// # Safety
/// `opts` is NULL or points to a `shmcast_consumer_options`.
unsafe fn options(opts: *const shmcast_consumer_options) -> Result<Options, Failure> {
    let builder = Consumer::builder();
    if opts.is_null() {
        return Ok(Options {
            builder,
            lossy: false,
        });
    }
    // SAFETY: non-NULL, points to options (caller); all fields are integers.
    let o = unsafe { opts.read() };
    let builder = builder
        .start_at(start_at(o.start)?)
        .wait_policy(o.wait.to_core()?)
        .allow_foreign_owner(o.allow_foreign_owner != 0)
        .tight_spin(o.tight_spin != 0);
    Ok(Options {
        builder,
        lossy: o.lossy != 0,
    })
}

/// Attach with `open` (lossless) or `open_lossy` and store the handle through `out`.
///
/// # Safety
/// `opts` is NULL or points to options; `out` is NULL or writable.
unsafe fn open(
    opts: *const shmcast_consumer_options,
    out: *mut *mut shmcast_consumer,
    open: impl FnOnce(&ConsumerBuilder) -> Result<Consumer, OpenError>,
    open_lossy: impl FnOnce(&LossyConsumerBuilder) -> Result<LossyConsumer, OpenError>,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null("out"));
    }
    // SAFETY: non-NULL and writable (caller); cleared so a failure leaves NULL.
    unsafe { out.write(std::ptr::null_mut()) };
    // SAFETY: forwarded from the caller.
    let o = unsafe { options(opts) }?;
    let state = if o.lossy {
        State::Lossy(Lossy {
            consumer: open_lossy(&o.builder.lossy())?,
            buf: Vec::new(),
            seq: 0,
            state: CopyState::Empty,
        })
    } else {
        State::Lossless(Lossless::new(open(&o.builder)?))
    };
    let handle = Box::into_raw(Box::new(Handle {
        tag: CONSUMER_TAG,
        state,
    }));
    // SAFETY: as above.
    unsafe { out.write(handle.cast()) };
    Ok(())
}

/// Attach a consumer to the named segment. `opts` may be NULL (a lossless consumer
/// starting at the next message). On success `*out` is the new handle; on failure NULL.
///
/// Errors: `SHMCAST_NOT_FOUND` (start the producer first), `SHMCAST_INVALID_NAME`,
/// `SHMCAST_BAD_SEGMENT`, `SHMCAST_NO_FREE_SLOT`, `SHMCAST_FOREIGN_OWNER`,
/// `SHMCAST_ATTACH_RACE`, `SHMCAST_IO`, `SHMCAST_INVALID_ARGUMENT`, `SHMCAST_NULL_POINTER`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `opts` is NULL or points to options; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_open(
    name: *const c_char,
    opts: *const shmcast_consumer_options,
    out: *mut *mut shmcast_consumer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let name = unsafe { name_arg(name, "name") }?;
        // SAFETY: forwarded from the caller.
        unsafe { open(opts, out, |b| b.open(&name), |b| b.open(&name)) }
    })
}

/// Attach a consumer to the segment in the file at `path`. As `shmcast_consumer_open`.
///
/// # Safety
/// As `shmcast_consumer_open`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_open_path(
    path: *const c_char,
    opts: *const shmcast_consumer_options,
    out: *mut *mut shmcast_consumer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let path = unsafe { path_arg(path, "path") }?;
        // SAFETY: forwarded from the caller.
        unsafe { open(opts, out, |b| b.open_path(path), |b| b.open_path(path)) }
    })
}

/// Attach a consumer to the segment behind descriptor `fd` (an anonymous segment handed
/// over by its producer). The descriptor is reopened, not taken: the caller still owns it.
///
/// # Safety
/// As `shmcast_consumer_open`; `fd` is an open descriptor (or negative, which is refused).
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_open_fd(
    fd: i32,
    opts: *const shmcast_consumer_options,
    out: *mut *mut shmcast_consumer,
) -> shmcast_status {
    guard(|| {
        if fd < 0 {
            return Err(Failure::new(
                SHMCAST_INVALID_ARGUMENT,
                format!("fd {fd} is not a descriptor"),
            ));
        }
        // SAFETY: non-negative and open for the duration of this call (caller).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // SAFETY: forwarded from the caller.
        unsafe { open(opts, out, |b| b.open_fd(fd), |b| b.open_fd(fd)) }
    })
}

/// Attach a consumer to `producer`'s ring from this process (any backing, in-process rings
/// included). Not concurrently with any other call on `producer`; `SHMCAST_WRONG_STATE`
/// while it has a reservation outstanding.
///
/// # Safety
/// `producer` is a producer handle; `opts` is NULL or points to options; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_attach(
    producer: *mut shmcast_producer,
    opts: *const shmcast_consumer_options,
    out: *mut *mut shmcast_consumer,
) -> shmcast_status {
    guard(|| {
        // SAFETY: forwarded from the caller; the borrow ends within this call.
        let p = unsafe { producer_for_attach(producer) }?;
        // SAFETY: forwarded from the caller.
        unsafe { open(opts, out, |b| b.attach_to(p), |b| b.attach_to(p)) }
    })
}

/// Detach and free the handle (a held message is released first). NULL: does nothing,
/// returns `SHMCAST_OK`.
///
/// # Safety
/// `c` is NULL or a consumer handle not yet closed; it is invalid afterwards, and so is any
/// message view it gave.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_close(c: *mut shmcast_consumer) -> shmcast_status {
    if c.is_null() {
        return SHMCAST_OK;
    }
    guard(|| {
        let h: *mut Handle = c.cast();
        // SAFETY: a handle from this library per the caller's contract (tag checked).
        let tag = unsafe { std::ptr::addr_of!((*h).tag).read() };
        if tag != CONSUMER_TAG && tag != POISONED_TAG {
            return Err(Failure::fixed(
                SHMCAST_INVALID_HANDLE,
                c"not a live consumer handle (closed already, a producer handle, or garbage)",
            ));
        }
        // SAFETY: as above; retagged so a double close is likely caught.
        unsafe { std::ptr::addr_of_mut!((*h).tag).write(CLOSED_TAG) };
        // SAFETY: from `Box::into_raw` in `open`; the caller gives it up.
        drop(unsafe { Box::from_raw(h) });
        Ok(())
    })
}

/// # Safety
/// `c` is a consumer handle; `out` is NULL or writable.
unsafe fn recv_view(
    c: *mut shmcast_consumer,
    out: *mut shmcast_message,
    wait: Wait,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(c, |s| {
            let mut view = shmcast_message {
                data: std::ptr::null(),
                len: 0,
                seq: 0,
                lost: 0,
            };
            write_out(out, "out", view)?;
            let result = s.view(wait, &mut view);
            out.write(view);
            result
        })
    }
}

/// Receive the next message, waiting (per the wait policy) while the ring is empty, and
/// set `*out` to a view of it. Lossless consumers read it in place in the ring: its space
/// stays reserved, and the producer may wait for it, until `shmcast_consumer_release`.
/// Lossy consumers get a view of their own copy.
///
/// Errors: `SHMCAST_DISCONNECTED` (the producer closed the stream; all received),
/// `SHMCAST_PRODUCER_DIED`, `SHMCAST_LAGGED` (lossy: `out->lost` messages were lost;
/// receive again to go on at the oldest message still present), `SHMCAST_EVICTED`,
/// `SHMCAST_CORRUPT`, `SHMCAST_WRONG_STATE` (the previous message is not released).
/// On failure `*out` is zeroed (but for `lost`).
///
/// # Safety
/// `c` is a consumer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_recv(
    c: *mut shmcast_consumer,
    out: *mut shmcast_message,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { recv_view(c, out, Wait::Forever) }
}

/// Receive the next message if one is available now: `SHMCAST_EMPTY` otherwise. A dead
/// producer is noticed by a liveness probe every few milliseconds of polling, so a loop of
/// `try_recv` calls gets `SHMCAST_PRODUCER_DIED` soon after, a single call may say
/// `SHMCAST_EMPTY`. As `shmcast_consumer_recv` otherwise.
///
/// # Safety
/// As `shmcast_consumer_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_try_recv(
    c: *mut shmcast_consumer,
    out: *mut shmcast_message,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { recv_view(c, out, Wait::Now) }
}

/// Receive, waiting at most `timeout_ns` nanoseconds: `SHMCAST_TIMEOUT` if nothing
/// arrived. As `shmcast_consumer_recv` otherwise.
///
/// # Safety
/// As `shmcast_consumer_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_recv_timeout(
    c: *mut shmcast_consumer,
    out: *mut shmcast_message,
    timeout_ns: u64,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { recv_view(c, out, Wait::For(timeout_arg(timeout_ns))) }
}

/// Release the message the last `recv` returned: its view becomes invalid and, for a
/// lossless consumer, its space in the ring is handed back to the producer. Without a held
/// message, does nothing and returns `SHMCAST_OK`.
///
/// # Safety
/// `c` is a consumer handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_release(c: *mut shmcast_consumer) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(c, |s| {
            if s.lent() {
                s.discard();
            }
            Ok(())
        })
    }
}

/// # Safety
/// `c` is a consumer handle; `buf` is NULL or valid for `cap` bytes of writes; `info` is
/// NULL or writable.
unsafe fn recv_copy(
    c: *mut shmcast_consumer,
    buf: *mut c_void,
    cap: usize,
    info: *mut shmcast_recv_info,
    wait: Wait,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(c, |s| {
            write_out(info, "info", shmcast_recv_info::default())?;
            let mut found = shmcast_recv_info::default();
            let result = s.copy(wait, buf.cast(), cap, &mut found);
            info.write(found);
            result
        })
    }
}

/// Receive the next message by copying it into `buf` (`cap` bytes), waiting while the ring
/// is empty. `info` gets its length and sequence number. Works for both kinds of consumer;
/// for a lossless one the ring space is released at once.
///
/// Errors: `SHMCAST_BUFFER_TOO_SMALL` (`info->len` is the size needed; the message is kept
/// for the next receive, nothing is lost; `buf` may be NULL with `cap` 0 to ask the size),
/// `SHMCAST_LAGGED` (lossy: `info->lost` messages were lost; receive again to go on at the
/// oldest message still present), and as `shmcast_consumer_recv`.
///
/// # Safety
/// `c` is a consumer handle; `buf` is NULL or valid for `cap` bytes of writes; `info` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_recv_into(
    c: *mut shmcast_consumer,
    buf: *mut c_void,
    cap: usize,
    info: *mut shmcast_recv_info,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { recv_copy(c, buf, cap, info, Wait::Forever) }
}

/// As `shmcast_consumer_recv_into`, returning `SHMCAST_EMPTY` at once if no message is
/// available.
///
/// # Safety
/// As `shmcast_consumer_recv_into`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_try_recv_into(
    c: *mut shmcast_consumer,
    buf: *mut c_void,
    cap: usize,
    info: *mut shmcast_recv_info,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { recv_copy(c, buf, cap, info, Wait::Now) }
}

/// As `shmcast_consumer_recv_into`, waiting at most `timeout_ns` nanoseconds
/// (`SHMCAST_TIMEOUT`).
///
/// # Safety
/// As `shmcast_consumer_recv_into`.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_recv_into_timeout(
    c: *mut shmcast_consumer,
    buf: *mut c_void,
    cap: usize,
    info: *mut shmcast_recv_info,
    timeout_ns: u64,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe { recv_copy(c, buf, cap, info, Wait::For(timeout_arg(timeout_ns))) }
}

/// Whether the consumer is lossy: `*out` is set to 1 or 0.
///
/// # Safety
/// `c` is a consumer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_is_lossy(
    c: *mut shmcast_consumer,
    out: *mut i32,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(c, |s| {
            write_out(out, "out", matches!(s, State::Lossy(_)) as i32)
        })
    }
}

/// The handle's counters. `SHMCAST_WRONG_STATE` while a lossless consumer holds a message.
///
/// # Safety
/// `c` is a consumer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_get_stats(
    c: *mut shmcast_consumer,
    out: *mut shmcast_consumer_stats,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(c, |s| {
            if out.is_null() {
                return Err(Failure::null("out"));
            }
            let st = s.stats()?;
            write_out(out, "out", st)
        })
    }
}

/// How far the consumer is behind the producer: `*out` (bytes, and messages if known).
/// Lossy consumers: any time. Lossless ones: `SHMCAST_WRONG_STATE` while they hold a
/// message (release it first), as for `shmcast_consumer_get_stats`.
///
/// # Safety
/// `c` is a consumer handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_consumer_lag(
    c: *mut shmcast_consumer,
    out: *mut shmcast_lag,
) -> shmcast_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(c, |s| {
            write_out(out, "out", shmcast_lag::default())?;
            let lag = s.lag()?;
            write_out(out, "out", lag)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmcast::WaitPolicy;

    /// The builder the C options turn into, and whether they ask for a lossy consumer.
    fn from_c(o: &shmcast_consumer_options) -> (ConsumerBuilder, bool) {
        // SAFETY: a valid options struct.
        let parsed = unsafe { options(o) }.unwrap();
        (parsed.builder, parsed.lossy)
    }

    fn debug(b: &ConsumerBuilder) -> String {
        format!("{b:?}")
    }

    #[test]
    fn default_options_are_the_core_builders_defaults_with_tight_spin_on() {
        let d = shmcast_consumer_options_default();
        assert_eq!(d.tight_spin, 1);
        // The core's default is on too: setting it changes nothing, clearing it does.
        assert_eq!(
            debug(&Consumer::builder().tight_spin(true)),
            debug(&Consumer::builder())
        );
        assert_ne!(
            debug(&Consumer::builder().tight_spin(false)),
            debug(&Consumer::builder())
        );
        let (b, lossy) = from_c(&d);
        assert!(!lossy);
        assert_eq!(debug(&b), debug(&Consumer::builder()));
        // SAFETY: NULL means the defaults.
        let null = unsafe { options(std::ptr::null()) }.unwrap();
        assert_eq!(debug(&null.builder), debug(&Consumer::builder()));
    }

    #[test]
    fn tight_spin_reaches_the_builder_and_zero_turns_it_off() {
        let busy = shmcast_wait_policy {
            kind: crate::SHMCAST_WAIT_BUSY_SPIN,
            spins: 0,
            yields: 0,
        };
        let on = Consumer::builder()
            .wait_policy(WaitPolicy::BusySpin)
            .tight_spin(true);
        let off = Consumer::builder()
            .wait_policy(WaitPolicy::BusySpin)
            .tight_spin(false);
        // The comparisons below can tell the flag apart (the builder's Debug shows it).
        assert_ne!(debug(&on), debug(&off));
        for value in [1, 7, u32::MAX] {
            let o = shmcast_consumer_options {
                wait: busy,
                tight_spin: value,
                ..shmcast_consumer_options_default()
            };
            assert_eq!(debug(&from_c(&o).0), debug(&on), "tight_spin {value}");
        }
        let zero = shmcast_consumer_options {
            wait: busy,
            tight_spin: 0,
            ..shmcast_consumer_options_default()
        };
        assert_eq!(debug(&from_c(&zero).0), debug(&off));
    }

    #[test]
    fn tight_spin_on_and_off_is_accepted_with_every_policy_and_a_lossy_consumer() {
        let p = shmcast::Producer::builder().create_in_process().unwrap();
        let policies = [
            WaitPolicy::BusySpin,
            WaitPolicy::SpinYield { spins: 100 },
            WaitPolicy::Adaptive {
                spins: 0,
                yields: 0,
            },
            WaitPolicy::default(),
        ];
        for policy in policies {
            for (lossy, tight_spin) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let o = shmcast_consumer_options {
                    lossy,
                    wait: crate::shmcast_wait_policy::from_core(policy),
                    tight_spin,
                    ..shmcast_consumer_options_default()
                };
                let (b, is_lossy) = from_c(&o);
                assert_eq!(is_lossy, lossy != 0);
                let attached = if is_lossy {
                    b.lossy().attach_to(&p).map(drop)
                } else {
                    b.attach_to(&p).map(drop)
                };
                assert!(
                    attached.is_ok(),
                    "{policy:?} lossy={lossy} tight_spin={tight_spin}: {attached:?}"
                );
            }
        }
    }
}
