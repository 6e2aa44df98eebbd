//! `shmcast._native`: the Python bindings of shmcast, wrapped by the `shmcast` package
//! (`python/shmcast/__init__.py`).
//!
//! Soundness of the zero-copy views, in short:
//! - A lossless [`Consumer`] holds at most one received message ([`shmcast::Message`]). It is
//!   exported to Python by a [`Message`] object through the buffer protocol; every
//!   `memoryview` (and every object made from one, such as a NumPy array) holds an export.
//!   The ring space is handed back to the producer only once the last export is released,
//!   and a released `Message` refuses new exports, so no Python object can read ring bytes
//!   the producer may be rewriting. Until then the consumer refuses to receive
//!   ([`MessageHeld`]) and to close.
//! - A [`Reservation`] exports its ring bytes writable the same way; it commits or aborts
//!   only when no export is left, so nothing can write into a published message.
//! - Every export holds a strong reference to its `Message`/`Reservation`, which holds one
//!   to its `Consumer`/`Producer`: the mapping outlives every view of it.
//!
//! Waiting (`send`, `recv`, `reserve` while full or empty, `wait_for_consumers`) happens in
//! slices of at most 50 ms with the GIL released; between slices the signal handlers run,
//! so Ctrl-C raises `KeyboardInterrupt` in a blocked call.
//!
//! Inspection and removal (`inspect`, `remove`, `remove_path`, `force_remove`) are in
//! [`segment`].

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyModule, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use shmcast::{
    CreateError, OpenError, RecvTimeoutError, Reserved, SendTimeoutError, StartAt, TrySendError,
    WaitPolicy,
};
use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

mod segment;

/// The longest a blocking call waits with the GIL released before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------
// Errors: the classes live in `shmcast._errors` (plain Python, so they can also derive from
// `TimeoutError`, `FileNotFoundError`, ...).

/// The exception class `name` of `shmcast._errors`.
fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || py.import("shmcast._errors").map(Bound::unbind))?
        .bind(py)
        .getattr(name)
}

/// An instance of `class(*args)` as a `PyErr` (or the error met making it).
fn raise<'py>(py: Python<'py>, class: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    match error_class(py, class).and_then(|c| c.call1(args)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

fn error(py: Python<'_>, class: &str, message: impl Into<String>) -> PyErr {
    raise(py, class, (message.into(),))
}

fn lagged(py: Python<'_>, message: String, lost: u64) -> PyErr {
    raise(py, "Lagged", (message, lost))
}

fn create_error(py: Python<'_>, e: CreateError) -> PyErr {
    let class = match &e {
        CreateError::InvalidName { .. } => "InvalidName",
        CreateError::InvalidConfig(_) => "InvalidConfig",
        CreateError::AlreadyExists(_) => "AlreadyExists",
        CreateError::Io { .. } => "ShmcastOSError",
        _ => "ShmcastError",
    };
    error(py, class, e.to_string())
}

fn open_error(py: Python<'_>, e: OpenError) -> PyErr {
    let class = match &e {
        OpenError::InvalidName { .. } => "InvalidName",
        OpenError::NotFound(_) => "NotFound",
        OpenError::ForeignOwner { .. } => "ForeignOwner",
        OpenError::Segment(_) => "BadSegment",
        OpenError::NoFreeSlot { .. } => "NoFreeSlot",
        OpenError::ProducerAlive => "ProducerAlive",
        OpenError::AttachRace => "AttachRace",
        OpenError::InvalidConfig(_) => "InvalidConfig",
        OpenError::OptionMismatch {
            option,
            requested,
            found,
        } => {
            return raise(
                py,
                "OptionMismatch",
                (e.to_string(), *option, *requested, *found),
            )
        }
        OpenError::Io { .. } => "ShmcastOSError",
        _ => "ShmcastError",
    };
    error(py, class, e.to_string())
}

fn recv_error(py: Python<'_>, e: RecvTimeoutError) -> PyErr {
    let text = e.to_string();
    match e {
        RecvTimeoutError::Timeout => error(py, "Timeout", text),
        RecvTimeoutError::Disconnected => error(py, "Disconnected", text),
        RecvTimeoutError::ProducerDied => error(py, "ProducerDied", text),
        RecvTimeoutError::Evicted => error(py, "Evicted", text),
        RecvTimeoutError::Lagged(n) => lagged(py, text, n),
        RecvTimeoutError::Corrupt(_) => error(py, "Corrupt", text),
        RecvTimeoutError::Forked => error(py, "Forked", text),
        _ => error(py, "ShmcastError", text),
    }
}

/// A send error of any flavour (`TrySendError`, `SendError`, `SendTimeoutError`).
fn too_large(py: Python<'_>, e: impl Into<SendTimeoutError>) -> PyErr {
    let e: SendTimeoutError = e.into();
    let text = e.to_string();
    let class = match e {
        SendTimeoutError::TooLarge { .. } => "MessageTooLarge",
        SendTimeoutError::Timeout => "Timeout",
        SendTimeoutError::Exhausted => "Exhausted",
        SendTimeoutError::Forked => "Forked",
        _ => "ShmcastError",
    };
    error(py, class, text)
}

fn busy(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "this {what} is in use by another thread; use one {what} per thread"
    ))
}

fn closed(what: &str) -> PyErr {
    PyValueError::new_err(format!("the {what} is closed"))
}

/// Take a handle's lock without waiting: a handle is used by one thread at a time.
fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> PyResult<MutexGuard<'a, T>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => Err(busy(what)),
        // A panic inside a call was turned into a Python exception; the state it left is
        // still consistent (every transition is a single assignment).
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
    }
}

fn wait_policy(wait: &str) -> PyResult<WaitPolicy> {
    Ok(match wait {
        "adaptive" => WaitPolicy::default(),
        "busy-spin" => WaitPolicy::BusySpin,
        "spin-yield" => WaitPolicy::SpinYield { spins: 4096 },
        "sleep" => WaitPolicy::Adaptive {
            spins: 0,
            yields: 0,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "wait={other:?}: use 'adaptive' (spin, yield, then sleep; the default), \
                 'busy-spin', 'spin-yield' or 'sleep'"
            )))
        }
    })
}

/// When a blocking call gives up.
struct Deadline(Option<Instant>);

impl Deadline {
    fn new(timeout: Option<f64>) -> PyResult<Deadline> {
        match timeout {
            None => Ok(Deadline(None)),
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Deadline(
                Instant::now().checked_add(Duration::from_secs_f64(t.min(1e9))),
            )),
            Some(t) => Err(PyValueError::new_err(format!(
                "timeout must be None or a number of seconds >= 0, not {t}"
            ))),
        }
    }

    /// How long the next wait may last, or `None` once the deadline passed.
    fn slice(&self) -> Option<Duration> {
        match self.0 {
            None => Some(SLICE),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Input buffers: anything with the buffer protocol.

/// A buffer export of a Python object (see [`with_buffer`]).
struct InBuf<'a>(&'a ffi::Py_buffer);

/// Run `f` on a buffer export of `obj` (any layout; read-only is enough), released after.
/// The `Py_buffer` lives in this frame and is never moved while exported (exporters may
/// point its `shape`/`strides` into it), and it is released with the GIL held.
fn with_buffer<R>(
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(&InBuf<'_>) -> PyResult<R>,
) -> PyResult<R> {
    struct Release(*mut ffi::Py_buffer);
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: releases the export taken below, in the same frame, after `f` returned
            // (attached: `with_buffer` runs with the GIL held, and `f` reattaches before it
            // returns; the `Py_buffer` cannot leave into a detached closure, it is not `Sync`).
            unsafe { ffi::PyBuffer_Release(self.0) };
        }
    }
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::zeroed();
    // SAFETY: `obj` is a live object and the GIL is held (`Bound`); `view` is writable.
    let rc =
        unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_FULL_RO) };
    if rc != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    let _release = Release(view.as_mut_ptr());
    // SAFETY: `PyObject_GetBuffer` filled it.
    f(&InBuf(unsafe { &*view.as_ptr() }))
}

impl InBuf<'_> {
    fn len(&self) -> usize {
        self.0.len as usize
    }

    /// The bytes, if the buffer is one C-contiguous block.
    fn contiguous(&self) -> Option<&[u8]> {
        // SAFETY: a filled `Py_buffer`.
        if unsafe { ffi::PyBuffer_IsContiguous(self.0, b'C' as _) } == 0 {
            return None;
        }
        if self.len() == 0 || self.0.buf.is_null() {
            return Some(&[]);
        }
        // SAFETY: a C-contiguous export of `len` bytes at `buf`, alive while `self` is
        // (the export pins it); read with the GIL held, so no Python thread writes it.
        Some(unsafe { std::slice::from_raw_parts(self.0.buf.cast::<u8>(), self.len()) })
    }

    /// A copy of the bytes in C order (any layout).
    fn to_vec(&self, py: Python<'_>) -> PyResult<Vec<u8>> {
        if let Some(bytes) = self.contiguous() {
            return Ok(bytes.to_vec());
        }
        let len = self.len();
        let mut v = Vec::<u8>::with_capacity(len);
        // SAFETY: `v` has room for `len` bytes, the size of the export.
        let rc = unsafe {
            ffi::PyBuffer_ToContiguous(v.as_mut_ptr().cast(), self.0, len as isize, b'C' as _)
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: `PyBuffer_ToContiguous` wrote all `len` bytes.
        unsafe { v.set_len(len) };
        Ok(v)
    }
}

/// Fill a 1-D byte buffer view of `len` bytes at `ptr`, owned by `owner`.
///
/// # Safety
/// `view` is the pointer handed to `__getbuffer__`; `ptr` stays valid for `len` bytes
/// (and writable if `writable`) until the matching `__releasebuffer__`.
unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    owner: Bound<'_, PyAny>,
    ptr: *mut u8,
    len: usize,
    writable: bool,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("NULL view"));
    }
    if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE && !writable {
        return Err(PyBufferError::new_err(
            "received messages are read-only (they are shared with other consumers)",
        ));
    }
    static FORMAT: &std::ffi::CStr = c"B";
    // SAFETY: `view` is a writable `Py_buffer` (caller); the pointers stored in it stay
    // valid: `obj` is a new reference, `format` is static, `shape`/`strides` point into the
    // view itself (CPython does not move it while exported).
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = ptr.cast();
        (*view).len = len as isize;
        (*view).readonly = c_int::from(!writable);
        (*view).itemsize = 1;
        (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
            FORMAT.as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = 1;
        (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
            &mut (*view).len
        } else {
            std::ptr::null_mut()
        };
        (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
            &mut (*view).itemsize
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Producer and Reservation.

/// Lifecycle of a reservation, shared by the `Reservation` object and its producer.
const OPEN: u8 = 0;
const ABORT_REQUESTED: u8 = 1;
const DONE: u8 = 2;

/// What a `Reservation` object and its producer share.
struct ResShared {
    state: AtomicU8,
    /// Buffer exports of the reserved bytes alive now.
    exports: AtomicUsize,
}

/// A reservation held by the producer core.
struct Pending {
    res: Reserved<'static>,
    shared: Arc<ResShared>,
}

struct ProducerCore {
    /// Owned (from `Box::leak`); freed in `close` after `pending`, which borrows it.
    producer: Option<NonNull<shmcast::Producer>>,
    pending: Option<Pending>,
    /// `close` was called while a view of the reservation was exported: close once the
    /// reservation is finished.
    close_requested: bool,
}

// SAFETY: the core owns a `shmcast::Producer` (which is `Send`) through a raw pointer and a
// reservation borrowing it (`Send` as well); nothing in it is tied to a thread.
unsafe impl Send for ProducerCore {}

impl ProducerCore {
    /// Apply an abort a dropped `Reservation` asked for, and a close that waited for it.
    fn settle(&mut self) {
        if let Some(p) = &self.pending {
            if p.shared.state.load(Ordering::Relaxed) == ABORT_REQUESTED {
                self.finish_pending(false);
            }
        }
        if self.close_requested && self.pending.is_none() {
            self.close();
        }
    }

    /// Commit or abort the pending reservation.
    fn finish_pending(&mut self, commit: bool) {
        if let Some(p) = self.pending.take() {
            p.shared.state.store(DONE, Ordering::Relaxed);
            if commit {
                p.res.commit();
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.producer.is_none() || self.close_requested
    }

    fn idle(&mut self, py: Python<'_>) -> PyResult<&mut shmcast::Producer> {
        self.settle();
        let ptr = match self.producer {
            Some(ptr) if !self.close_requested => ptr,
            _ => return Err(closed("producer")),
        };
        if self.pending.is_some() {
            return Err(error(
                py,
                "MessageHeld",
                "a reservation is outstanding: commit or abort it first",
            ));
        }
        // SAFETY: live until `close`/`Drop`; no reservation borrows it (checked), and the
        // borrow is tied to `&mut self`.
        Ok(unsafe { &mut *ptr.as_ptr() })
    }

    /// Try to reserve `len` bytes now; on success keep the reservation and return its bytes.
    fn try_reserve(
        &mut self,
        py: Python<'_>,
        len: usize,
    ) -> PyResult<Option<(*mut u8, Arc<ResShared>)>> {
        let ptr = self.idle(py)?.into();
        let ptr: NonNull<shmcast::Producer> = ptr;
        // SAFETY: no reservation exists (`idle` checked), so nothing else refers to the
        // producer. The `'static` borrow moves into `self.pending` and ends when that is
        // taken or dropped, before the producer is freed (`close`, `Drop`); meanwhile
        // `idle` refuses every other use.
        let producer: &'static mut shmcast::Producer = unsafe { &mut *ptr.as_ptr() };
        match producer.try_reserve(len) {
            Ok(mut res) => {
                let data = res.as_mut_ptr();
                let shared = Arc::new(ResShared {
                    state: AtomicU8::new(OPEN),
                    exports: AtomicUsize::new(0),
                });
                self.pending = Some(Pending {
                    res,
                    shared: Arc::clone(&shared),
                });
                Ok(Some((data, shared)))
            }
            Err(TrySendError::Full) => Ok(None),
            Err(e) => Err(too_large(py, e)),
        }
    }

    fn close(&mut self) {
        self.finish_pending(false);
        self.close_requested = false;
        if let Some(p) = self.producer.take() {
            // SAFETY: from `Box::leak` in `Producer::wrap`; nothing borrows it any more.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }
}

impl Drop for ProducerCore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The single writer of a segment (see the `shmcast` package docs).
#[pyclass(frozen, module = "shmcast")]
struct Producer {
    core: Mutex<ProducerCore>,
    capacity: usize,
    max_message: usize,
    took_over: bool,
}

impl Producer {
    fn wrap(p: shmcast::Producer) -> Producer {
        Producer {
            capacity: p.capacity(),
            max_message: p.max_message(),
            took_over: p.took_over(),
            core: Mutex::new(ProducerCore {
                producer: Some(NonNull::from(Box::leak(Box::new(p)))),
                pending: None,
                close_requested: false,
            }),
        }
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, ProducerCore>> {
        lock(&self.core, "Producer")
    }
}

/// The geometry of a segment to create or take over; `None`: unset (a new segment takes
/// the default, a takeover accepts the segment's).
#[derive(Clone, Copy, Debug, Default)]
struct Geometry {
    capacity: Option<usize>,
    max_message: Option<usize>,
    max_consumers: Option<u32>,
    mode: Option<u32>,
}

fn builder(
    py: Python<'_>,
    geometry: Geometry,
    wait: &str,
    remove_on_close: bool,
    evict_after: Option<f64>,
) -> PyResult<shmcast::ProducerBuilder> {
    let mut b = shmcast::Producer::builder()
        .wait_policy(wait_policy(wait)?)
        .remove_on_drop(remove_on_close);
    if let Some(c) = geometry.capacity {
        b = b.capacity(c);
    }
    if let Some(m) = geometry.max_message {
        b = b.max_message(m);
    }
    if let Some(n) = geometry.max_consumers {
        b = b.max_consumers(n);
    }
    if let Some(mode) = geometry.mode {
        if mode & !0o777 != 0 {
            return Err(error(
                py,
                "InvalidConfig",
                format!(
                    "mode={mode:#o} has bits beyond the permission bits 0o777 (setuid, setgid, \
                     sticky); pass permission bits only, e.g. 0o660"
                ),
            ));
        }
        b = b.mode(mode);
    }
    if let Some(secs) = evict_after {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(error(
                py,
                "InvalidConfig",
                format!("evict_after must be a positive number of seconds, not {secs}"),
            ));
        }
        b = b.evict_after(Duration::from_secs_f64(secs.min(1e9)));
    }
    Ok(b)
}

#[pymethods]
impl Producer {
    /// Create a segment and become its producer: a named shared-memory object
    /// (``/dev/shm/<name>``) or, with ``path=``, a file.
    #[new]
    #[pyo3(signature = (name=None, capacity=1 << 20, max_message=None, *, path=None,
                        max_consumers=16, mode=0o600, wait="adaptive", remove_on_close=true,
                        evict_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: Option<&str>,
        capacity: usize,
        max_message: Option<usize>,
        path: Option<std::path::PathBuf>,
        max_consumers: u32,
        mode: u32,
        wait: &str,
        remove_on_close: bool,
        evict_after: Option<f64>,
    ) -> PyResult<Producer> {
        let geometry = Geometry {
            capacity: Some(capacity),
            max_message,
            max_consumers: Some(max_consumers),
            mode: Some(mode),
        };
        let b = builder(py, geometry, wait, remove_on_close, evict_after)?;
        let p = match (name, path) {
            (Some(name), None) => py.detach(|| b.create(name)),
            (None, Some(path)) => py.detach(|| b.create_path(path)),
            _ => {
                return Err(PyValueError::new_err(
                    "give a segment name or path=, not both",
                ))
            }
        };
        p.map(Producer::wrap).map_err(|e| create_error(py, e))
    }

    /// Take over the named segment whose producer died (or closed with
    /// ``remove_on_close=False``): the stream continues where its committed data ends.
    /// Geometry options left ``None`` accept the segment's; a given one must match it
    /// (``OptionMismatch``). ``ProducerAlive`` while its producer lives.
    #[staticmethod]
    #[pyo3(signature = (name, capacity=None, max_message=None, *, max_consumers=None,
                        mode=None, wait="adaptive", remove_on_close=true, evict_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        name: &str,
        capacity: Option<usize>,
        max_message: Option<usize>,
        max_consumers: Option<u32>,
        mode: Option<u32>,
        wait: &str,
        remove_on_close: bool,
        evict_after: Option<f64>,
    ) -> PyResult<Producer> {
        let geometry = Geometry {
            capacity,
            max_message,
            max_consumers,
            mode,
        };
        let b = builder(py, geometry, wait, remove_on_close, evict_after)?;
        py.detach(|| b.open(name))
            .map(Producer::wrap)
            .map_err(|e| open_error(py, e))
    }

    /// The restart-safe way to start a producer: create the named segment if it does not
    /// exist, or take it over if its producer is gone (died, or closed with
    /// ``remove_on_close=False``), continuing its stream; ``took_over`` says which.
    /// ``ProducerAlive`` if its producer lives: never a second producer. Geometry options
    /// left ``None`` take the default for a new segment and accept an existing segment's; a
    /// given one must match an existing segment (``OptionMismatch``). A segment another
    /// process is still creating is waited for (up to two seconds). Pass
    /// ``remove_on_close=False`` to keep the segment, and its consumers, across restarts.
    #[staticmethod]
    #[pyo3(signature = (name, capacity=None, max_message=None, *, max_consumers=None,
                        mode=None, wait="adaptive", remove_on_close=true, evict_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn open_or_create(
        py: Python<'_>,
        name: &str,
        capacity: Option<usize>,
        max_message: Option<usize>,
        max_consumers: Option<u32>,
        mode: Option<u32>,
        wait: &str,
        remove_on_close: bool,
        evict_after: Option<f64>,
    ) -> PyResult<Producer> {
        let geometry = Geometry {
            capacity,
            max_message,
            max_consumers,
            mode,
        };
        let b = builder(py, geometry, wait, remove_on_close, evict_after)?;
        py.detach(|| b.open_or_create(name))
            .map(Producer::wrap)
            .map_err(|e| open_error(py, e))
    }

    /// Send a message (bytes, bytearray, memoryview, NumPy array: anything with the buffer
    /// protocol; copied once, into the ring). Waits while the ring is full, at most
    /// ``timeout`` seconds if given (then ``Timeout``).
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = Deadline::new(timeout)?;
        with_buffer(data, |buf| {
            let mut core = self.lock()?;
            let p = core.idle(py)?;
            if let Some(bytes) = buf.contiguous() {
                match p.try_send(bytes) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full) => {}
                    Err(e) => return Err(too_large(py, e)),
                }
            }
            // The ring is full (or the buffer is not contiguous): wait with the GIL released,
            // on a private copy (other threads may write the caller's buffer meanwhile).
            let msg = buf.to_vec(py)?;
            match p.try_send(&msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full) => {}
                Err(e) => return Err(too_large(py, e)),
            }
            loop {
                let Some(slice) = deadline.slice() else {
                    return Err(error(py, "Timeout", SendTimeoutError::Timeout.to_string()));
                };
                match py.detach(|| p.send_timeout(&msg, slice)) {
                    Ok(()) => return Ok(()),
                    Err(SendTimeoutError::Timeout) => py.check_signals()?,
                    Err(e) => return Err(too_large(py, e)),
                }
            }
        })
    }

    /// Send if there is room now; ``False`` if the ring is full (nothing sent).
    fn try_send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_buffer(data, |buf| {
            let mut core = self.lock()?;
            let p = core.idle(py)?;
            let owned;
            let bytes = match buf.contiguous() {
                Some(b) => b,
                None => {
                    owned = buf.to_vec(py)?;
                    &owned
                }
            };
            match p.try_send(bytes) {
                Ok(()) => Ok(true),
                Err(TrySendError::Full) => Ok(false),
                Err(e) => Err(too_large(py, e)),
            }
        })
    }

    /// Send several messages with one publication per ring-full; waits while the ring is
    /// full. Every length is checked first: if one is too large, nothing is sent. The
    /// messages are copied first; the wait cannot be interrupted before the whole batch is
    /// in the ring (the core offers no batch with a deadline).
    fn send_batch(&self, py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut owned = Vec::new();
        for m in messages.try_iter()? {
            owned.push(with_buffer(&m?, |buf| buf.to_vec(py))?);
        }
        let mut core = self.lock()?;
        let p = core.idle(py)?;
        py.detach(|| p.send_batch(&owned))
            .map_err(|e| too_large(py, e))
    }

    /// Reserve ``n`` bytes in the ring and return a ``Reservation``: fill it in place
    /// (``with producer.reserve(n) as buf: buf[:] = ...`` commits on leaving the block,
    /// aborts on an exception). Waits while the ring is full, at most ``timeout`` seconds.
    #[pyo3(signature = (n, timeout=None))]
    fn reserve(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        n: usize,
        timeout: Option<f64>,
    ) -> PyResult<Reservation> {
        let deadline = Deadline::new(timeout)?;
        // The core has no `reserve_timeout`: poll `try_reserve`, sleeping (GIL released)
        // between tries, from 20 us up to 1 ms.
        let mut nap = Duration::from_micros(20);
        loop {
            if let Some(r) = Producer::try_reserve(slf, py, n)? {
                return Ok(r);
            }
            let Some(slice) = deadline.slice() else {
                return Err(error(py, "Timeout", SendTimeoutError::Timeout.to_string()));
            };
            py.detach(|| std::thread::sleep(nap.min(slice)));
            py.check_signals()?;
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }

    /// Reserve ``n`` bytes if there is room now; ``None`` if the ring is full.
    fn try_reserve(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        n: usize,
    ) -> PyResult<Option<Reservation>> {
        let mut core = slf.get().lock()?;
        Ok(core.try_reserve(py, n)?.map(|(ptr, shared)| Reservation {
            producer: slf.clone().unbind(),
            shared,
            ptr: ptr as usize,
            len: n,
            view: Mutex::new(None),
        }))
    }

    /// Ring capacity in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest message the segment accepts.
    #[getter]
    fn max_message(&self) -> usize {
        self.max_message
    }

    /// Whether ``close`` was called.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_closed())
    }

    /// Whether this producer took an existing segment over (``open``, or
    /// ``open_or_create`` finding one) rather than create it.
    #[getter]
    fn took_over(&self) -> bool {
        self.took_over
    }

    /// The sequence number the next message will carry (after a takeover, the stream goes
    /// on from the previous producer's). ``MessageHeld`` while a reservation is open.
    #[getter]
    fn next_seq(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.lock()?.idle(py)?.next_seq())
    }

    /// How many consumers (lossless and lossy) are attached and alive now.
    fn consumers(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock()?.idle(py)?.consumers())
    }

    /// Wait until at least ``n`` consumers are attached and alive, at most ``timeout``
    /// seconds (``None``: forever); return how many are. ``Timeout`` (with ``attached``,
    /// the count at the deadline) if they did not come. The GIL is released while waiting,
    /// and Ctrl-C interrupts it.
    #[pyo3(signature = (n, timeout=None))]
    fn wait_for_consumers(
        &self,
        py: Python<'_>,
        n: usize,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let deadline = Deadline::new(timeout)?;
        let mut core = self.lock()?;
        let p = core.idle(py)?;
        let mut attached = p.consumers();
        if attached >= n {
            return Ok(attached);
        }
        loop {
            let Some(slice) = deadline.slice() else {
                let e = shmcast::WaitTimeout {
                    attached,
                    wanted: n,
                };
                let err = error(py, "Timeout", e.to_string());
                err.value(py).setattr("attached", attached)?;
                return Err(err);
            };
            let p = &*p;
            match py.detach(|| p.wait_for_consumers(n, slice)) {
                Ok(count) => return Ok(count),
                Err(e) => {
                    attached = e.attached;
                    py.check_signals()?;
                }
            }
        }
    }

    /// A snapshot of the segment, as ``shmcast.inspect`` gives (``producer.state`` is
    /// ``"live"``: this is the live producer). ``MessageHeld`` while a reservation is open.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.lock()?.idle(py)?.snapshot();
        segment::snapshot_to_py(py, &s)
    }

    /// This handle's counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut core = self.lock()?;
        let s = core.idle(py)?.stats();
        let d = PyDict::new(py);
        d.set_item("messages", s.messages)?;
        d.set_item("wake_syscalls", s.wake_syscalls)?;
        d.set_item("full_waits", s.full_waits)?;
        d.set_item("sleeps", s.sleeps)?;
        d.set_item("rescans", s.rescans)?;
        d.set_item("evictions", s.evictions)?;
        Ok(d)
    }

    /// Close the stream (consumers drain, then get ``Disconnected``) and remove the
    /// segment's name unless ``remove_on_close=False``. An outstanding reservation is
    /// aborted; while a view of it is still exported, the close completes when the
    /// reservation is finished (aborted or dropped; it can no longer be committed).
    /// Idempotent.
    fn close(&self) -> PyResult<()> {
        let mut core = self.lock()?;
        core.settle();
        let exported = core
            .pending
            .as_ref()
            .is_some_and(|p| p.shared.exports.load(Ordering::Relaxed) > 0);
        if exported {
            core.close_requested = true;
        } else {
            core.close();
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmcast.Producer capacity={} max_message={} took_over={}>",
            self.capacity,
            self.max_message,
            if self.took_over { "True" } else { "False" }
        )
    }
}

/// Ring space reserved for one message; exports its bytes writable (buffer protocol).
#[pyclass(frozen, module = "shmcast")]
struct Reservation {
    producer: Py<Producer>,
    shared: Arc<ResShared>,
    /// The reserved bytes (an address: raw pointers are not `Sync`).
    ptr: usize,
    len: usize,
    /// The view `__enter__` returned, released by `__exit__`.
    view: Mutex<Option<Py<PyAny>>>,
}

impl Reservation {
    /// Commit or abort, if nothing exports the bytes any more.
    fn finish(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        let exports = self.shared.exports.load(Ordering::Relaxed);
        if exports > 0 {
            return Err(error(
                py,
                "MessageHeld",
                format!(
                    "the reservation is still exported ({exports} buffer(s)): release every \
                     memoryview or array made from it first"
                ),
            ));
        }
        let mut core = self.producer.get().lock()?;
        core.settle();
        let mine = core
            .pending
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.shared, &self.shared));
        if mine && core.close_requested {
            // `close` waited for this reservation: abort it and complete the close.
            core.finish_pending(false);
            core.settle();
        } else if mine {
            core.finish_pending(commit);
            return Ok(());
        }
        if !commit {
            Ok(())
        } else if core.is_closed() {
            Err(closed("producer (the reservation was aborted)"))
        } else {
            Err(PyValueError::new_err(
                "this reservation was already committed or aborted",
            ))
        }
    }
}

#[pymethods]
impl Reservation {
    /// Publish the message. Release every view of it first.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py, true)
    }

    /// Drop the reservation unpublished. Does nothing if it is already finished.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py, false)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// A writable ``memoryview`` of the reserved bytes.
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let view = PyMemoryView::from(slf.as_any())?.into_any().unbind();
        *lock(&slf.get().view, "Reservation")? = Some(view.clone_ref(slf.py()));
        Ok(view)
    }

    /// Release the view ``__enter__`` gave, then commit (or abort on an exception).
    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let view = lock(&self.view, "Reservation")?.take();
        if let Some(view) = view {
            view.bind(py).call_method0("release")?;
        }
        let commit = exc_type.is_none_or(|t| t.is_none());
        self.finish(py, commit)?;
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        if this.shared.state.load(Ordering::Relaxed) != OPEN {
            return Err(PyBufferError::new_err(
                "this reservation was committed or aborted: its bytes are no longer yours",
            ));
        }
        let (ptr, len) = (this.ptr as *mut u8, this.len);
        // SAFETY: the reserved bytes stay valid and unpublished while any export exists:
        // `finish` refuses while `exports > 0`, and the producer cannot be closed or dropped
        // (it refuses while the reservation is open; this object holds a reference to it).
        unsafe { fill_view(view, flags, slf.clone().into_any(), ptr, len, true)? };
        this.shared.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.shared.exports.fetch_sub(1, Ordering::Relaxed);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(v) = self.view.try_lock() {
            visit.call(&*v)?;
        }
        visit.call(&self.producer)
    }

    fn __clear__(&self) {
        if let Ok(mut v) = self.view.try_lock() {
            *v = None;
        }
    }

    fn __repr__(&self) -> String {
        format!("<shmcast.Reservation len={}>", self.len)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Nothing exports it (every export holds a reference): abort it if still open. The
        // producer may be locked by this very thread (a garbage collection inside a call):
        // then the producer applies the abort at its next call.
        if self
            .shared
            .state
            .compare_exchange(OPEN, ABORT_REQUESTED, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            if let Ok(mut core) = self.producer.get().core.try_lock() {
                core.settle();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Consumer and Message.

/// Lifecycle of a `Message` object.
const LENT: u8 = 0;
const RELEASED: u8 = 1;

/// The message a lossless consumer holds, and the number of its `Message` object.
struct Held {
    msg: shmcast::Message<'static>,
    id: u64,
}

/// A lossless consumer and the message it holds, if any.
struct Lossless {
    /// Owned (from `Box::leak`); freed in `Drop` after `held`, which borrows it.
    consumer: NonNull<shmcast::Consumer>,
    held: Option<Held>,
    /// Numbers the held messages (from 1).
    next_id: u64,
    /// The id of a message whose `Message` released it while this core was locked (a
    /// garbage collection inside one of its calls); 0 if none. Shared with `Consumer`.
    release_requested: Arc<AtomicU64>,
    /// `close` was called while the held message was exported: detach once it is released.
    close_requested: bool,
}

// SAFETY: owns a `shmcast::Consumer` (`Send`) through a raw pointer and a message borrowing
// it (`Send` as well); nothing in it is tied to a thread.
unsafe impl Send for Lossless {}

impl Lossless {
    /// Apply a release a `Message` asked for while the core was locked.
    fn settle(&mut self) {
        if self.release_requested.load(Ordering::Relaxed) != 0 {
            let id = self.release_requested.swap(0, Ordering::Relaxed);
            self.release(id);
        }
    }

    /// Hand the held message back to the producer if it is message `id`.
    fn release(&mut self, id: u64) {
        if self.held.as_ref().is_some_and(|h| h.id == id) {
            self.held = None;
        }
    }

    fn idle(&mut self, py: Python<'_>) -> PyResult<&mut shmcast::Consumer> {
        self.settle();
        if self.held.is_some() {
            return Err(held_error(py));
        }
        // SAFETY: live until `Drop`; no message borrows it (checked); tied to `&mut self`.
        Ok(unsafe { self.consumer.as_mut() })
    }

    /// Receive into `held` (none may be held).
    fn fetch(&mut self, wait: Option<Duration>) -> Result<(), RecvTimeoutError> {
        debug_assert!(self.held.is_none());
        // SAFETY: nothing borrows the consumer (no message held). The `'static` borrow
        // moves into `self.held` and ends when that is dropped (settle, close, `Drop`),
        // before the consumer is freed; meanwhile `idle` refuses every other use.
        let c: &'static mut shmcast::Consumer = unsafe { &mut *self.consumer.as_ptr() };
        let msg = match wait {
            None => c.try_recv().map_err(RecvTimeoutError::from)?,
            Some(d) => c.recv_timeout(d)?,
        };
        self.held = Some(Held {
            msg,
            id: self.next_id,
        });
        self.next_id += 1;
        Ok(())
    }
}

impl Drop for Lossless {
    fn drop(&mut self) {
        self.held = None;
        // SAFETY: from `Box::leak` in `Consumer::new`; nothing borrows it now.
        drop(unsafe { Box::from_raw(self.consumer.as_ptr()) });
    }
}

enum ConsumerCore {
    Lossless(Lossless),
    Lossy(shmcast::LossyConsumer, Vec<u8>),
    Closed,
}

fn held_error(py: Python<'_>) -> PyErr {
    error(
        py,
        "MessageHeld",
        "the previous message is still exported (a memoryview, or an array made from one, \
         is alive): release it (view.release(), or `with consumer.recv() as view:`) first, \
         or use recv_bytes()",
    )
}

/// What a receive produced: a message in the ring (lossless) or a copy (lossy).
enum Got {
    Ring {
        ptr: *const u8,
        len: usize,
        seq: u64,
        id: u64,
    },
    Copy(Vec<u8>, u64),
}

impl ConsumerCore {
    /// One attempt: `None` waits not at all, `Some(d)` at most `d`.
    fn attempt(&mut self, wait: Option<Duration>) -> Result<Got, RecvTimeoutError> {
        match self {
            ConsumerCore::Lossless(l) => {
                l.fetch(wait)?;
                let h = l.held.as_ref().expect("fetched");
                Ok(Got::Ring {
                    ptr: h.msg.as_ptr(),
                    len: h.msg.len(),
                    seq: h.msg.seq(),
                    id: h.id,
                })
            }
            ConsumerCore::Lossy(c, buf) => {
                let seq = match wait {
                    None => c.try_recv_into(buf).map_err(RecvTimeoutError::from)?,
                    Some(d) => c.recv_timeout_into(buf, d)?,
                };
                Ok(Got::Copy(std::mem::take(buf), seq))
            }
            ConsumerCore::Closed => unreachable!("checked by `ready`"),
        }
    }

    fn ready(&mut self, py: Python<'_>) -> PyResult<()> {
        self.settle();
        match self {
            ConsumerCore::Lossless(l) if !l.close_requested => l.idle(py).map(drop),
            ConsumerCore::Lossy(..) => Ok(()),
            _ => Err(closed("consumer")),
        }
    }

    /// Apply a release a `Message` asked for, and a close that waited for it.
    fn settle(&mut self) {
        if let ConsumerCore::Lossless(l) = self {
            l.settle();
            if l.close_requested && l.held.is_none() {
                *self = ConsumerCore::Closed;
            }
        }
    }

    /// The `Message` numbered `id` released its message.
    fn release(&mut self, id: u64) {
        if let ConsumerCore::Lossless(l) = self {
            l.release(id);
        }
        self.settle();
    }

    fn is_closed(&self) -> bool {
        match self {
            ConsumerCore::Lossless(l) => l.close_requested,
            ConsumerCore::Lossy(..) => false,
            ConsumerCore::Closed => true,
        }
    }
}

// SAFETY: `Got::Ring` carries an address into the mapped ring, readable from any thread.
unsafe impl Send for Got {}

/// A reader of a segment (see the `shmcast` package docs).
#[pyclass(frozen, module = "shmcast")]
struct Consumer {
    core: Mutex<ConsumerCore>,
    lossy: bool,
    /// Asked for a tight spin, and lossless (a lossy consumer has none).
    tight_spin: bool,
    /// Shared with the core's `Lossless::release_requested`.
    release_requested: Arc<AtomicU64>,
}

impl Consumer {
    fn lock(&self) -> PyResult<MutexGuard<'_, ConsumerCore>> {
        lock(&self.core, "Consumer")
    }

    /// Receive, then run `f` on what arrived with the consumer still locked. `deadline`
    /// `None` tries once (`Ok(None)` if nothing is there), else waits until it passes
    /// (`Timeout`), checking for signals between slices with the GIL released.
    fn next<R>(
        &self,
        py: Python<'_>,
        deadline: Option<&Deadline>,
        f: impl FnOnce(&mut ConsumerCore, Got) -> PyResult<R>,
    ) -> PyResult<Option<R>> {
        let mut core = self.lock()?;
        core.ready(py)?;
        // First without releasing the GIL: a message is usually there already.
        let got = match core.attempt(None) {
            Ok(got) => got,
            Err(RecvTimeoutError::Timeout) => {
                let Some(deadline) = deadline else {
                    return Ok(None);
                };
                loop {
                    let Some(slice) = deadline.slice() else {
                        return Err(recv_error(py, RecvTimeoutError::Timeout));
                    };
                    let core = &mut *core;
                    match py.detach(|| core.attempt(Some(slice))) {
                        Ok(got) => break got,
                        Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                        Err(e) => return Err(recv_error(py, e)),
                    }
                }
            }
            Err(e) => return Err(recv_error(py, e)),
        };
        let result = f(&mut core, got);
        // `f` may have run a garbage collection that released a message meanwhile.
        core.settle();
        result.map(Some)
    }

    /// Wrap what was received in a `Message` and a `memoryview` of it.
    fn view<'py>(slf: &Bound<'py, Self>, got: Got) -> PyResult<Bound<'py, PyMemoryView>> {
        let msg = match got {
            Got::Ring { ptr, len, seq, id } => Message {
                consumer: Some(slf.clone().unbind()),
                id,
                state: AtomicU8::new(LENT),
                _owned: Vec::new(),
                ptr: ptr as usize,
                len,
                seq,
                exports: AtomicUsize::new(0),
            },
            Got::Copy(data, seq) => Message {
                consumer: None,
                id: 0,
                state: AtomicU8::new(LENT),
                ptr: data.as_ptr() as usize,
                len: data.len(),
                _owned: data,
                seq,
                exports: AtomicUsize::new(0),
            },
        };
        let msg = Bound::new(slf.py(), msg)?;
        PyMemoryView::from(msg.as_any())
    }
}

/// A copy of what was received; a message held in the ring is released at once.
fn copy_out<'py>(
    py: Python<'py>,
    core: &mut ConsumerCore,
    got: Got,
) -> PyResult<Bound<'py, PyBytes>> {
    match got {
        Got::Ring { ptr, len, .. } => {
            // SAFETY: the message is held by this consumer, which we have locked: it is
            // released below, after the copy; `len` bytes at `ptr` are its payload.
            let bytes = PyBytes::new(py, unsafe { std::slice::from_raw_parts(ptr, len) });
            if let ConsumerCore::Lossless(l) = core {
                l.held = None;
            }
            Ok(bytes)
        }
        Got::Copy(data, _) => Ok(PyBytes::new(py, &data)),
    }
}

#[pymethods]
impl Consumer {
    /// Attach to a named segment (or, with ``path=``, a file). ``lossy=True``: never slow
    /// the producer down; ``Lagged`` reports lost messages. ``start``: ``"next"`` (the next
    /// message published) or ``"oldest"`` (the oldest still in the ring).
    /// ``tight_spin`` (on by default): while a blocking receive spins (per ``wait``: its
    /// spins, at most 64 polls at a time) it polls the next message's stamp alone and takes
    /// the message straight from that loop. ``tight_spin=False`` opts out: every spin then
    /// runs the full poll (the end-of-stream and stuck-stream checks, the cursor publish);
    /// nothing else changes. In the core crate's ``pingpong`` benchmark (16 alternated pairs
    /// of builds; pinned, same-die 64 B busy-spin), on puts the round trip at a median
    /// 1.26x ringfire's against 1.51x off, and the single-message stream at the same
    /// fraction of the streaming floor either way. It changes nothing with ``wait="sleep"``
    /// (no spins) or for a lossy consumer.
    #[new]
    #[pyo3(signature = (name=None, *, path=None, lossy=false, start="next", wait="adaptive",
                        allow_foreign_owner=false, tight_spin=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: Option<&str>,
        path: Option<std::path::PathBuf>,
        lossy: bool,
        start: &str,
        wait: &str,
        allow_foreign_owner: bool,
        tight_spin: bool,
    ) -> PyResult<Consumer> {
        let start = match start {
            "next" => StartAt::Next,
            "oldest" => StartAt::Oldest,
            other => {
                return Err(PyValueError::new_err(format!(
                    "start={other:?}: use 'next' or 'oldest'"
                )))
            }
        };
        let b = shmcast::Consumer::builder()
            .start_at(start)
            .wait_policy(wait_policy(wait)?)
            .allow_foreign_owner(allow_foreign_owner)
            .tight_spin(tight_spin);
        let release_requested = Arc::new(AtomicU64::new(0));
        let wrap = |c| Lossless::wrap(c, Arc::clone(&release_requested));
        let core = match (name, path, lossy) {
            (Some(n), None, false) => py.detach(|| b.open(n)).map(wrap),
            (None, Some(p), false) => py.detach(|| b.open_path(p)).map(wrap),
            (Some(n), None, true) => py
                .detach(|| b.lossy().open(n))
                .map(|c| ConsumerCore::Lossy(c, Vec::new())),
            (None, Some(p), true) => py
                .detach(|| b.lossy().open_path(p))
                .map(|c| ConsumerCore::Lossy(c, Vec::new())),
            _ => {
                return Err(PyValueError::new_err(
                    "give a segment name or path=, not both",
                ))
            }
        }
        .map_err(|e| open_error(py, e))?;
        Ok(Consumer {
            core: Mutex::new(core),
            lossy,
            tight_spin: tight_spin && !lossy,
            release_requested,
        })
    }

    /// The next message as a read-only ``memoryview``: in place in the shared ring for a
    /// lossless consumer (valid until released: ``view.release()`` or ``with``), a copy
    /// for a lossy one. ``view.obj.seq`` is its sequence number. Waits at most ``timeout``
    /// seconds (``None``: forever; then ``Timeout``). Raises ``Disconnected`` at the end of
    /// the stream, ``ProducerDied``, ``Lagged``, ``MessageHeld`` while the previous view is
    /// still exported.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyMemoryView>> {
        let deadline = Deadline::new(timeout)?;
        let got = slf.get().next(py, Some(&deadline), |_, got| Ok(got))?;
        Consumer::view(slf, got.expect("waited until the deadline"))
    }

    /// As ``recv``, without waiting: ``None`` if no message is available now.
    fn try_recv<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<Option<Bound<'py, PyMemoryView>>> {
        match slf.get().next(py, None, |_, got| Ok(got))? {
            Some(got) => Consumer::view(slf, got).map(Some),
            None => Ok(None),
        }
    }

    /// The next message as ``bytes`` (a copy; the ring space is released at once).
    #[pyo3(signature = (timeout=None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let deadline = Deadline::new(timeout)?;
        let bytes = self.next(py, Some(&deadline), |core, got| copy_out(py, core, got))?;
        Ok(bytes.expect("waited until the deadline"))
    }

    /// As ``recv_bytes``, without waiting: ``None`` if no message is available now.
    fn try_recv_bytes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.next(py, None, |core, got| copy_out(py, core, got))
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Iteration yields ``bytes`` until the producer closes the stream.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv_bytes(py, None) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_instance(py, &error_class(py, "Disconnected")?) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether this consumer is lossy.
    #[getter]
    fn lossy(&self) -> bool {
        self.lossy
    }

    /// Whether blocking receives spin on the next message's stamp alone: ``tight_spin``
    /// (on by default) on a lossless consumer (a lossy one has no tight spin).
    #[getter]
    fn tight_spin(&self) -> bool {
        self.tight_spin
    }

    /// Whether ``close`` was called.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_closed())
    }

    /// This handle's counters (``MessageHeld`` while a lossless consumer's view is alive).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut core = self.lock()?;
        core.ready(py)?;
        let s = match &mut *core {
            ConsumerCore::Lossless(l) => l.idle(py)?.stats(),
            ConsumerCore::Lossy(c, _) => c.stats(),
            ConsumerCore::Closed => return Err(closed("consumer")),
        };
        let d = PyDict::new(py);
        d.set_item("messages", s.messages)?;
        d.set_item("wake_syscalls", s.wake_syscalls)?;
        d.set_item("sleeps", s.sleeps)?;
        Ok(d)
    }

    /// How far this consumer is behind the producer: a ``shmcast.Lag`` (``bytes``, and
    /// ``messages``, or ``None`` if a lossy consumer was lapped). ``MessageHeld`` while a
    /// lossless consumer's view is alive (as for ``stats``).
    fn lag<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut core = self.lock()?;
        core.ready(py)?;
        let lag = match &mut *core {
            ConsumerCore::Lossless(l) => l.idle(py)?.lag(),
            ConsumerCore::Lossy(c, _) => c.lag(),
            ConsumerCore::Closed => return Err(closed("consumer")),
        };
        segment::lag_to_py(py, lag)
    }

    /// Detach from the segment. While a view of a received message is still exported, the
    /// consumer refuses every call as closed and detaches when the view is released.
    /// Idempotent.
    fn close(&self) -> PyResult<()> {
        let mut core = self.lock()?;
        core.settle();
        match &mut *core {
            ConsumerCore::Lossless(l) if l.held.is_some() => l.close_requested = true,
            _ => *core = ConsumerCore::Closed,
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmcast.Consumer lossy={}>", self.lossy)
    }
}

impl Lossless {
    fn wrap(c: shmcast::Consumer, release_requested: Arc<AtomicU64>) -> ConsumerCore {
        ConsumerCore::Lossless(Lossless {
            consumer: NonNull::from(Box::leak(Box::new(c))),
            held: None,
            next_id: 1,
            release_requested,
            close_requested: false,
        })
    }
}

/// A received message: exports its bytes read-only (``memoryview(message)``), in place in
/// the ring (lossless consumers) or a private copy (lossy). ``seq`` is its sequence number.
#[pyclass(frozen, module = "shmcast")]
struct Message {
    /// Lossless: the consumer holding the message in the ring (as `Held` number `id`).
    consumer: Option<Py<Consumer>>,
    id: u64,
    /// `LENT` until the last export is released (or the object dropped), then `RELEASED`.
    state: AtomicU8,
    /// Lossy: the copy (`ptr` points into it).
    _owned: Vec<u8>,
    ptr: usize,
    len: usize,
    /// The message's sequence number in the stream.
    #[pyo3(get)]
    seq: u64,
    exports: AtomicUsize,
}

impl Message {
    /// Hand the message's ring space back (now, or at the consumer's next call if it is
    /// locked: a garbage collection inside one of its calls).
    fn release(&self) {
        let Some(consumer) = &self.consumer else {
            return; // a lossy copy: nothing to hand back
        };
        if self.state.swap(RELEASED, Ordering::Relaxed) == RELEASED {
            return;
        }
        let consumer = consumer.get();
        match consumer.core.try_lock() {
            Ok(mut core) => core.release(self.id),
            Err(TryLockError::Poisoned(p)) => p.into_inner().release(self.id),
            Err(TryLockError::WouldBlock) => {
                consumer.release_requested.store(self.id, Ordering::Relaxed)
            }
        }
    }
}

#[pymethods]
impl Message {
    fn __len__(&self) -> usize {
        self.len
    }

    /// Whether the message's bytes can still be exported (not yet released).
    #[getter]
    fn valid(&self) -> bool {
        self.state.load(Ordering::Relaxed) == LENT
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        if !this.valid() {
            return Err(PyBufferError::new_err(
                "this message was released: its space in the ring went back to the producer; \
                 receive another",
            ));
        }
        // SAFETY: lossless: the consumer holds the message (this object is `LENT`) and
        // releases it only when this object asks, after its last export is released
        // (`__releasebuffer__`) or when it is dropped; receives and `close` never drop a held
        // message. This object keeps the consumer, and so the mapping, alive. Lossy:
        // `_owned` lives as long as this object, which every export references. Read-only.
        unsafe {
            fill_view(
                view,
                flags,
                slf.clone().into_any(),
                this.ptr as *mut u8,
                this.len,
                false,
            )?
        };
        this.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        if self.exports.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.release();
        }
    }

    fn __repr__(&self) -> String {
        format!("<shmcast.Message seq={} len={}>", self.seq, self.len)
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // No export is left (each holds a reference to this object).
        self.release();
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Producer>()?;
    m.add_class::<Reservation>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Message>()?;
    m.add_function(wrap_pyfunction!(segment::remove, m)?)?;
    m.add_function(wrap_pyfunction!(segment::remove_path, m)?)?;
    m.add_function(wrap_pyfunction!(segment::force_remove, m)?)?;
    m.add_function(wrap_pyfunction!(segment::inspect, m)?)?;
    m.add("MAX_NAME_LEN", shmcast::MAX_NAME_LEN)?;
    Ok(())
}
