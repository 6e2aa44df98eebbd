//! Status codes, the thread-local last error, and the guard every entry point runs in.

use shmcast::{
    CreateError, OpenError, RecvError, RecvTimeoutError, RemoveError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call did: `SHMCAST_OK` (0), or why it did nothing. `shmcast_last_error()` gives
/// the details of the last failed call on the calling thread, `shmcast_status_str()` a
/// fixed description of any code.
///
/// Codes below 20 are outcomes of normal operation (empty, full, end of stream, ...);
/// codes from 20 on are errors of the caller, the environment or the segment.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmcast_status {
    /// Success.
    SHMCAST_OK = 0,
    /// `try_recv`: no message is available now.
    SHMCAST_EMPTY = 1,
    /// `try_send`, `try_reserve`: the ring is full; the slowest lossless consumer is behind.
    SHMCAST_FULL = 2,
    /// A `_timeout` call's deadline passed; nothing was sent or received.
    SHMCAST_TIMEOUT = 3,
    /// The producer closed the stream and every message was received.
    SHMCAST_DISCONNECTED = 4,
    /// The producer died without closing the stream; every committed message was received.
    /// A new producer may take the segment over (`shmcast_producer_open`).
    SHMCAST_PRODUCER_DIED = 5,
    /// Lossy consumers: the producer overwrote messages before they were read; the count
    /// is in `shmcast_recv_info.lost`. The next receive goes on at the oldest message still
    /// in the ring.
    SHMCAST_LAGGED = 6,
    /// The producer evicted this consumer (presumed dead or stalled); open a new one.
    SHMCAST_EVICTED = 7,
    /// The message is larger than the segment's maximum message size; nothing was sent.
    SHMCAST_TOO_LARGE = 8,
    /// `recv_into`: the message does not fit the buffer. Its length is in
    /// `shmcast_recv_info.len`; it is kept, and the next receive returns it again.
    SHMCAST_BUFFER_TOO_SMALL = 9,
    /// The call does not fit the handle's state: a reservation or a received message is
    /// outstanding (commit/abort or release it first), or there is nothing to commit.
    SHMCAST_WRONG_STATE = 10,
    /// A required pointer argument is NULL.
    SHMCAST_NULL_POINTER = 20,
    /// An argument is out of range (an unknown option value, a negative descriptor, ...).
    SHMCAST_INVALID_ARGUMENT = 21,
    /// The handle is not a live handle of the expected kind (best-effort check: closed,
    /// of the other kind, or not a handle at all).
    SHMCAST_INVALID_HANDLE = 22,
    /// The segment name is not 1 to 200 bytes of `[A-Za-z0-9._-]` not starting with `.`.
    SHMCAST_INVALID_NAME = 23,
    /// Capacity, maximum message size or consumer count is not acceptable.
    SHMCAST_INVALID_CONFIG = 24,
    /// A segment with this name or path exists already.
    SHMCAST_ALREADY_EXISTS = 25,
    /// No segment with this name or path exists.
    SHMCAST_NOT_FOUND = 26,
    /// The segment belongs to another user and `allow_foreign_owner` was not set.
    SHMCAST_FOREIGN_OWNER = 27,
    /// The segment failed validation (not a shmcast segment, another layout version,
    /// truncated, corrupt header).
    SHMCAST_BAD_SEGMENT = 28,
    /// Every consumer slot of the segment is taken by a live consumer.
    SHMCAST_NO_FREE_SLOT = 29,
    /// `shmcast_producer_open`, `_open_or_create`, `shmcast_remove`: the segment's producer
    /// is still alive.
    SHMCAST_PRODUCER_ALIVE = 30,
    /// The producer kept lapping the start position while the consumer attached; retry.
    SHMCAST_ATTACH_RACE = 31,
    /// A record in the ring is corrupt (a peer wrote outside the protocol).
    SHMCAST_CORRUPT = 32,
    /// The operating system refused (see the message for the call and errno text).
    SHMCAST_IO = 33,
    /// An internal error (a Rust panic) was caught; the handle it happened on is poisoned:
    /// every later call on it returns this code, close it.
    SHMCAST_PANIC = 34,
    /// The stream reached the largest position a segment supports (2^62 bytes over its
    /// lifetime, across takeovers): create a new segment.
    SHMCAST_EXHAUSTED = 36,
    /// The handle was inherited by a process forked from its owner: it belongs to the
    /// parent; open a new handle in this process.
    SHMCAST_FORKED = 37,
    /// Taking a segment over (`shmcast_producer_open`, `_open_or_create`): a geometry option
    /// set in `shmcast_producer_options` (nonzero) differs from what the segment was created
    /// with. Set it to 0 to accept the segment's, or remove the segment to create it anew.
    SHMCAST_OPTION_MISMATCH = 38,
    /// An error this version of the bindings does not classify; see `shmcast_last_error()`.
    SHMCAST_OTHER = 35,
}

use shmcast_status::*;

/// The fixed description of each status (also what `shmcast_last_error` returns after a
/// failure that carries no further detail).
pub(crate) fn describe(status: shmcast_status) -> &'static CStr {
    match status {
        SHMCAST_OK => c"success",
        SHMCAST_EMPTY => c"no message is available",
        SHMCAST_FULL => c"ring is full: the slowest consumer is behind",
        SHMCAST_TIMEOUT => c"the deadline passed",
        SHMCAST_DISCONNECTED => c"the producer closed the stream and every message was received",
        SHMCAST_PRODUCER_DIED => {
            c"the producer died without closing the stream; every committed message was received"
        }
        SHMCAST_LAGGED => c"this lossy consumer fell behind and lost messages",
        SHMCAST_EVICTED => c"this consumer was evicted by the producer; attach again",
        SHMCAST_TOO_LARGE => c"the message exceeds the segment's maximum message size",
        SHMCAST_BUFFER_TOO_SMALL => c"the message does not fit the buffer; it is kept",
        SHMCAST_WRONG_STATE => c"the call does not fit the handle's state",
        SHMCAST_NULL_POINTER => c"a required pointer argument is NULL",
        SHMCAST_INVALID_ARGUMENT => c"an argument is out of range",
        SHMCAST_INVALID_HANDLE => c"not a live handle of the expected kind",
        SHMCAST_INVALID_NAME => c"invalid segment name",
        SHMCAST_INVALID_CONFIG => c"invalid ring configuration",
        SHMCAST_ALREADY_EXISTS => c"the segment exists already",
        SHMCAST_NOT_FOUND => c"the segment does not exist",
        SHMCAST_FOREIGN_OWNER => c"the segment is owned by another user",
        SHMCAST_BAD_SEGMENT => c"the segment failed validation",
        SHMCAST_NO_FREE_SLOT => c"every consumer slot is taken",
        SHMCAST_PRODUCER_ALIVE => c"the segment already has a live producer",
        SHMCAST_ATTACH_RACE => c"the producer overran the start position while attaching; retry",
        SHMCAST_CORRUPT => c"a record in the ring is corrupt",
        SHMCAST_IO => c"the operating system refused",
        SHMCAST_PANIC => c"internal error (a Rust panic was caught); the handle is poisoned",
        SHMCAST_OTHER => c"unclassified error",
        SHMCAST_EXHAUSTED => c"the stream reached the largest position a segment supports",
        SHMCAST_FORKED => c"the handle belongs to the process this one was forked from",
        SHMCAST_OPTION_MISMATCH => {
            c"an option set for the takeover differs from what the segment was created with"
        }
    }
}

/// The text of a failure, kept until the next failure on the same thread.
#[derive(Debug)]
enum Detail {
    /// Nothing to add to [`describe`]'s text (or a fixed text): recorded without
    /// allocating, so `try_recv`/`try_send` loops stay cheap.
    Static(&'static CStr),
    /// A formatted message (the core's `Display` text).
    Owned(String),
}

/// Why a call failed: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    status: shmcast_status,
    detail: Detail,
}

impl Failure {
    /// A failure with a formatted message.
    pub(crate) fn new(status: shmcast_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            detail: Detail::Owned(message.into()),
        }
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> shmcast_status {
        self.status
    }

    /// A failure whose message is a fixed text.
    pub(crate) fn fixed(status: shmcast_status, message: &'static CStr) -> Failure {
        Failure {
            status,
            detail: Detail::Static(message),
        }
    }

    pub(crate) fn null(what: &str) -> Failure {
        Failure::new(
            SHMCAST_NULL_POINTER,
            format!("{what} is NULL; pass a valid pointer"),
        )
    }

    fn from_panic(payload: Box<dyn Any + Send>) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-text payload".to_string());
        Failure::new(
            SHMCAST_PANIC,
            format!(
                "internal error in shmcast (a Rust panic was caught: {what}); the handle is \
                 poisoned, close it; please report this"
            ),
        )
    }

    /// Store this failure as the calling thread's last error; return its status.
    pub(crate) fn record(self) -> shmcast_status {
        let status = self.status;
        let message = match self.detail {
            Detail::Static(s) => Message::Static(s),
            Detail::Owned(text) => Message::Owned(to_cstring(text)),
        };
        // During thread teardown the slot may be gone: the status still tells what happened.
        let _ = LAST.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = message;
            }
        });
        status
    }
}

/// A C string of `text`, with any NUL byte replaced (a C string cannot hold one).
fn to_cstring(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let bytes: Vec<u8> = e
            .into_vec()
            .into_iter()
            .map(|b| if b == 0 { b'?' } else { b })
            .collect();
        CString::new(bytes).unwrap_or_default()
    })
}

enum Message {
    Static(&'static CStr),
    Owned(CString),
}

thread_local! {
    static LAST: RefCell<Message> = const { RefCell::new(Message::Static(c"no error")) };
}

/// Run an entry point's body: a panic becomes `SHMCAST_PANIC` (it never unwinds into C),
/// a failure is recorded as the thread's last error.
#[inline]
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> shmcast_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SHMCAST_OK,
        Ok(Err(failure)) => failure.record(),
        Err(payload) => Failure::from_panic(payload).record(),
    }
}

/// As [`guard`], and on a panic run `poison` (which marks the handle unusable).
#[inline]
pub(crate) fn guard_handle(
    body: impl FnOnce() -> Result<(), Failure>,
    poison: impl FnOnce(),
) -> shmcast_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SHMCAST_OK,
        Ok(Err(failure)) => failure.record(),
        Err(payload) => {
            // Poisoning only writes a word; if it panicked too, the status still says so.
            let _ = catch_unwind(AssertUnwindSafe(poison));
            Failure::from_panic(payload).record()
        }
    }
}

/// The message of the last call on the calling thread that did not return `SHMCAST_OK`:
/// the core library's description of what went wrong and what to do, e.g.
/// `invalid segment name "a/b": the name may only contain ASCII letters, digits, '.', '_'
/// and '-'`. `"no error"` if no call on this thread has failed yet. Successful calls leave
/// it unchanged.
///
/// Ownership: the string belongs to the library. It stays valid until the next shmcast
/// call on the same thread; copy it to keep it. Never NULL.
#[no_mangle]
pub extern "C" fn shmcast_last_error() -> *const c_char {
    catch_unwind(|| {
        LAST.try_with(|last| match &*last.borrow() {
            Message::Static(s) => s.as_ptr(),
            // The CString stays in the thread-local slot until the next failure replaces
            // it, which is after the caller's next shmcast call at the earliest.
            Message::Owned(s) => s.as_ptr(),
        })
        .unwrap_or(c"the thread is exiting".as_ptr())
    })
    .unwrap_or(c"internal error reading the last error".as_ptr())
}

/// A fixed description of `status` (any value; unknown codes get `"unknown status"`).
/// Static storage: never freed, never NULL.
#[no_mangle]
pub extern "C" fn shmcast_status_str(status: i32) -> *const c_char {
    match status_from_i32(status) {
        Some(s) => describe(s).as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

fn status_from_i32(code: i32) -> Option<shmcast_status> {
    const ALL: [shmcast_status; 30] = [
        SHMCAST_OK,
        SHMCAST_EMPTY,
        SHMCAST_FULL,
        SHMCAST_TIMEOUT,
        SHMCAST_DISCONNECTED,
        SHMCAST_PRODUCER_DIED,
        SHMCAST_LAGGED,
        SHMCAST_EVICTED,
        SHMCAST_TOO_LARGE,
        SHMCAST_BUFFER_TOO_SMALL,
        SHMCAST_WRONG_STATE,
        SHMCAST_NULL_POINTER,
        SHMCAST_INVALID_ARGUMENT,
        SHMCAST_INVALID_HANDLE,
        SHMCAST_INVALID_NAME,
        SHMCAST_INVALID_CONFIG,
        SHMCAST_ALREADY_EXISTS,
        SHMCAST_NOT_FOUND,
        SHMCAST_FOREIGN_OWNER,
        SHMCAST_BAD_SEGMENT,
        SHMCAST_NO_FREE_SLOT,
        SHMCAST_PRODUCER_ALIVE,
        SHMCAST_ATTACH_RACE,
        SHMCAST_CORRUPT,
        SHMCAST_IO,
        SHMCAST_PANIC,
        SHMCAST_OTHER,
        SHMCAST_EXHAUSTED,
        SHMCAST_FORKED,
        SHMCAST_OPTION_MISMATCH,
    ];
    ALL.into_iter().find(|s| *s as i32 == code)
}

// ---------------------------------------------------------------------------------------
// The core's errors, classified. Outcomes of normal operation that polling loops meet at
// high rates (empty, full, timeout) are recorded without allocating.

impl From<CreateError> for Failure {
    fn from(e: CreateError) -> Failure {
        let status = match &e {
            CreateError::InvalidName { .. } => SHMCAST_INVALID_NAME,
            CreateError::InvalidConfig(_) => SHMCAST_INVALID_CONFIG,
            CreateError::AlreadyExists(_) => SHMCAST_ALREADY_EXISTS,
            CreateError::Io { .. } => SHMCAST_IO,
            _ => SHMCAST_OTHER,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Failure {
        let status = match &e {
            OpenError::InvalidName { .. } => SHMCAST_INVALID_NAME,
            OpenError::NotFound(_) => SHMCAST_NOT_FOUND,
            OpenError::ForeignOwner { .. } => SHMCAST_FOREIGN_OWNER,
            OpenError::Segment(_) => SHMCAST_BAD_SEGMENT,
            OpenError::NoFreeSlot { .. } => SHMCAST_NO_FREE_SLOT,
            OpenError::ProducerAlive => SHMCAST_PRODUCER_ALIVE,
            OpenError::AttachRace => SHMCAST_ATTACH_RACE,
            OpenError::OptionMismatch { .. } => SHMCAST_OPTION_MISMATCH,
            OpenError::InvalidConfig(_) => SHMCAST_INVALID_CONFIG,
            OpenError::Io { .. } => SHMCAST_IO,
            _ => SHMCAST_OTHER,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<RemoveError> for Failure {
    fn from(e: RemoveError) -> Failure {
        let status = match &e {
            RemoveError::InvalidName { .. } => SHMCAST_INVALID_NAME,
            RemoveError::NotFound(_) => SHMCAST_NOT_FOUND,
            RemoveError::ProducerAlive { .. } => SHMCAST_PRODUCER_ALIVE,
            RemoveError::Segment { .. } => SHMCAST_BAD_SEGMENT,
            RemoveError::Io { .. } => SHMCAST_IO,
            _ => SHMCAST_OTHER,
        };
        Failure::new(status, e.to_string())
    }
}

/// `shmcast::force_remove`'s error for segment `name`: the core checks the name first
/// (`InvalidInput`, with the reason), then the OS answers.
pub(crate) fn force_remove_failure(name: &str, e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::NotFound => Failure::new(
            SHMCAST_NOT_FOUND,
            format!("segment '{name}' does not exist"),
        ),
        std::io::ErrorKind::InvalidInput => Failure::new(
            SHMCAST_INVALID_NAME,
            format!("invalid segment name {name:?}: {e}"),
        ),
        _ => Failure::new(SHMCAST_IO, format!("remove segment '{name}': {e}")),
    }
}

pub(crate) const FULL_TEXT: &CStr = c"ring is full: the slowest consumer is behind";
pub(crate) const SEND_TIMEOUT_TEXT: &CStr = c"timed out waiting for space in the ring";
pub(crate) const EMPTY_TEXT: &CStr = c"no message is available";
pub(crate) const RECV_TIMEOUT_TEXT: &CStr = c"timed out waiting for a message";

impl From<SendError> for Failure {
    fn from(e: SendError) -> Failure {
        match e {
            SendError::TooLarge { .. } => Failure::new(SHMCAST_TOO_LARGE, e.to_string()),
            SendError::Exhausted => Failure::new(SHMCAST_EXHAUSTED, e.to_string()),
            SendError::Forked => Failure::new(SHMCAST_FORKED, e.to_string()),
            _ => Failure::new(SHMCAST_OTHER, e.to_string()),
        }
    }
}

impl From<TrySendError> for Failure {
    fn from(e: TrySendError) -> Failure {
        match e {
            TrySendError::Full => Failure::fixed(SHMCAST_FULL, FULL_TEXT),
            TrySendError::TooLarge { .. } => Failure::new(SHMCAST_TOO_LARGE, e.to_string()),
            TrySendError::Exhausted => Failure::new(SHMCAST_EXHAUSTED, e.to_string()),
            TrySendError::Forked => Failure::new(SHMCAST_FORKED, e.to_string()),
            _ => Failure::new(SHMCAST_OTHER, e.to_string()),
        }
    }
}

impl From<SendTimeoutError> for Failure {
    fn from(e: SendTimeoutError) -> Failure {
        match e {
            SendTimeoutError::Timeout => Failure::fixed(SHMCAST_TIMEOUT, SEND_TIMEOUT_TEXT),
            SendTimeoutError::TooLarge { .. } => Failure::new(SHMCAST_TOO_LARGE, e.to_string()),
            SendTimeoutError::Exhausted => Failure::new(SHMCAST_EXHAUSTED, e.to_string()),
            SendTimeoutError::Forked => Failure::new(SHMCAST_FORKED, e.to_string()),
            _ => Failure::new(SHMCAST_OTHER, e.to_string()),
        }
    }
}

/// A receive error of any flavour, flattened; `Lagged` keeps its count for
/// `shmcast_recv_info.lost`.
pub(crate) enum RecvFailure {
    Lagged(u64, String),
    Other(Failure),
}

impl RecvFailure {
    fn other(status: shmcast_status, text: String) -> RecvFailure {
        RecvFailure::Other(Failure::new(status, text))
    }
}

impl From<TryRecvError> for RecvFailure {
    fn from(e: TryRecvError) -> RecvFailure {
        match e {
            TryRecvError::Empty => RecvFailure::Other(Failure::fixed(SHMCAST_EMPTY, EMPTY_TEXT)),
            TryRecvError::Disconnected => RecvFailure::other(SHMCAST_DISCONNECTED, e.to_string()),
            TryRecvError::ProducerDied => RecvFailure::other(SHMCAST_PRODUCER_DIED, e.to_string()),
            TryRecvError::Evicted => RecvFailure::other(SHMCAST_EVICTED, e.to_string()),
            TryRecvError::Lagged(n) => RecvFailure::Lagged(n, e.to_string()),
            TryRecvError::Corrupt(_) => RecvFailure::other(SHMCAST_CORRUPT, e.to_string()),
            TryRecvError::Forked => RecvFailure::other(SHMCAST_FORKED, e.to_string()),
            _ => RecvFailure::other(SHMCAST_OTHER, e.to_string()),
        }
    }
}

impl From<RecvError> for RecvFailure {
    fn from(e: RecvError) -> RecvFailure {
        match e {
            RecvError::Disconnected => RecvFailure::other(SHMCAST_DISCONNECTED, e.to_string()),
            RecvError::ProducerDied => RecvFailure::other(SHMCAST_PRODUCER_DIED, e.to_string()),
            RecvError::Evicted => RecvFailure::other(SHMCAST_EVICTED, e.to_string()),
            RecvError::Lagged(n) => RecvFailure::Lagged(n, e.to_string()),
            RecvError::Corrupt(_) => RecvFailure::other(SHMCAST_CORRUPT, e.to_string()),
            RecvError::Forked => RecvFailure::other(SHMCAST_FORKED, e.to_string()),
            _ => RecvFailure::other(SHMCAST_OTHER, e.to_string()),
        }
    }
}

impl From<RecvTimeoutError> for RecvFailure {
    fn from(e: RecvTimeoutError) -> RecvFailure {
        match e {
            RecvTimeoutError::Timeout => {
                RecvFailure::Other(Failure::fixed(SHMCAST_TIMEOUT, RECV_TIMEOUT_TEXT))
            }
            RecvTimeoutError::Disconnected => {
                RecvFailure::other(SHMCAST_DISCONNECTED, e.to_string())
            }
            RecvTimeoutError::ProducerDied => {
                RecvFailure::other(SHMCAST_PRODUCER_DIED, e.to_string())
            }
            RecvTimeoutError::Evicted => RecvFailure::other(SHMCAST_EVICTED, e.to_string()),
            RecvTimeoutError::Lagged(n) => RecvFailure::Lagged(n, e.to_string()),
            RecvTimeoutError::Corrupt(_) => RecvFailure::other(SHMCAST_CORRUPT, e.to_string()),
            RecvTimeoutError::Forked => RecvFailure::other(SHMCAST_FORKED, e.to_string()),
            _ => RecvFailure::other(SHMCAST_OTHER, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_texts_match_the_core_display_texts() {
        let text = |c: &CStr| c.to_str().unwrap().to_string();
        assert_eq!(text(FULL_TEXT), TrySendError::Full.to_string());
        assert_eq!(
            text(SEND_TIMEOUT_TEXT),
            SendTimeoutError::Timeout.to_string()
        );
        assert_eq!(text(EMPTY_TEXT), TryRecvError::Empty.to_string());
        assert_eq!(
            text(RECV_TIMEOUT_TEXT),
            RecvTimeoutError::Timeout.to_string()
        );
    }

    #[test]
    fn every_status_round_trips_through_its_code() {
        for code in -5..100 {
            if let Some(s) = status_from_i32(code) {
                assert_eq!(s as i32, code);
            }
        }
        assert_eq!(status_from_i32(35), Some(SHMCAST_OTHER));
        assert_eq!(status_from_i32(11), None);
    }

    /// Every code the enum declares (read from this file, as cbindgen does) is known to
    /// `shmcast_status_str` and has its own description.
    #[test]
    fn every_declared_status_has_a_description() {
        let declared: Vec<i32> = include_str!("error.rs")
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("SHMCAST_"))
            .filter_map(|l| l.split_once(" = "))
            .filter_map(|(_, v)| v.trim_end_matches(',').parse().ok())
            .collect();
        assert!(declared.len() >= 30, "{declared:?}");
        let mut texts = std::collections::HashSet::new();
        for code in declared {
            let s = status_from_i32(code).unwrap_or_else(|| panic!("status {code} unknown"));
            assert!(
                texts.insert(describe(s)),
                "status {code}: description not unique"
            );
        }
    }

    #[test]
    fn a_nul_byte_in_a_message_does_not_lose_it() {
        let c = to_cstring("a\0b".to_string());
        assert_eq!(c.to_str().unwrap(), "a?b");
    }
}
