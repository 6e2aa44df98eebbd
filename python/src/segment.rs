//! Segments by name, path or descriptor, without a handle: inspection (`shmcast.inspect`,
//! also behind `Producer.snapshot` and `Consumer.lag`) and removal. The snapshot classes
//! are plain Python (`shmcast/_inspect.py`, frozen dataclasses and string enums); this
//! module fills them in.

use crate::error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyTuple};
use shmcast::{Lag, ProducerState, RemoveError, SlotKind, Snapshot};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

/// The class `name` of `shmcast._inspect`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || py.import("shmcast._inspect").map(Bound::unbind))?
        .bind(py)
        .getattr(name)
}

/// `shmcast.Snapshot` of `s`.
pub(crate) fn snapshot_to_py<'py>(py: Python<'py>, s: &Snapshot) -> PyResult<Bound<'py, PyAny>> {
    let state = match s.producer.state {
        ProducerState::Live => "live",
        ProducerState::Closed => "closed",
        ProducerState::Died => "died",
        ProducerState::None => "none",
        _ => "unknown",
    };
    let p = PyDict::new(py);
    p.set_item("state", class(py, "ProducerState")?.call1((state,))?)?;
    p.set_item("pid", s.producer.pid)?;
    p.set_item("tail", s.producer.tail)?;
    p.set_item("next_seq", s.producer.next_seq)?;
    p.set_item("claim", s.producer.claim)?;
    p.set_item("epoch", s.producer.epoch)?;
    p.set_item("evicting", s.producer.evicting)?;
    let producer = class(py, "ProducerInfo")?.call((), Some(&p))?;

    let slot_class = class(py, "SlotInfo")?;
    let kind_class = class(py, "SlotKind")?;
    let mut consumers = Vec::with_capacity(s.consumers.len());
    for c in &s.consumers {
        let (kind, raw) = match c.kind {
            SlotKind::Lossless => ("lossless", None),
            SlotKind::LosslessCopying => ("lossless-copying", None),
            SlotKind::Lossy => ("lossy", None),
            SlotKind::Evicted => ("evicted", None),
            SlotKind::Unknown(v) => ("unknown", Some(v)),
            _ => ("unknown", None),
        };
        let d = PyDict::new(py);
        d.set_item("index", c.index)?;
        d.set_item("kind", kind_class.call1((kind,))?)?;
        d.set_item("pid", c.pid)?;
        d.set_item("alive", c.alive)?;
        d.set_item("cursor", c.cursor)?;
        d.set_item("lag_bytes", c.lag_bytes)?;
        d.set_item("lag_messages", c.lag_messages)?;
        d.set_item("gating", c.gating)?;
        d.set_item("raw_kind", raw)?;
        consumers.push(slot_class.call((), Some(&d))?);
    }

    let d = PyDict::new(py);
    d.set_item("capacity", s.capacity)?;
    d.set_item("max_message", s.max_message)?;
    d.set_item("max_consumers", s.max_consumers)?;
    d.set_item("segment_size", s.segment_size)?;
    d.set_item("owner_uid", s.owner_uid)?;
    d.set_item("mode", s.mode)?;
    d.set_item("producer", producer)?;
    d.set_item("consumers", PyTuple::new(py, consumers)?)?;
    class(py, "Snapshot")?.call((), Some(&d))
}

/// `shmcast.Lag` of `lag`.
pub(crate) fn lag_to_py(py: Python<'_>, lag: Lag) -> PyResult<Bound<'_, PyAny>> {
    class(py, "Lag")?.call1((lag.bytes, lag.messages))
}

/// A read-only snapshot of a segment, taken without attaching to it: geometry, the
/// producer's state and position, every consumer slot in use with its position, lag and
/// liveness. Give the segment's name, or ``path=`` (a file), or ``fd=`` (a descriptor of
/// the segment, e.g. an anonymous one received from its producer; duplicated, not taken).
#[pyfunction]
#[pyo3(signature = (name=None, *, path=None, fd=None))]
pub(crate) fn inspect<'py>(
    py: Python<'py>,
    name: Option<&str>,
    path: Option<PathBuf>,
    fd: Option<i32>,
) -> PyResult<Bound<'py, PyAny>> {
    let snapshot = match (name, path, fd) {
        (Some(name), None, None) => py.detach(|| shmcast::inspect(name)),
        (None, Some(path), None) => py.detach(|| shmcast::inspect_path(path)),
        (None, None, Some(fd)) if fd >= 0 => {
            // SAFETY: a descriptor number the caller says is open; it is only used for the
            // duration of this call (duplicated, never closed here). A number that is not
            // open makes the core's syscalls fail with EBADF, an error.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            py.detach(|| shmcast::inspect_fd(fd))
        }
        (None, None, Some(fd)) => {
            return Err(PyValueError::new_err(format!(
                "fd={fd} is not a descriptor"
            )))
        }
        _ => {
            return Err(PyValueError::new_err(
                "give exactly one of a segment name, path= or fd=",
            ))
        }
    }
    .map_err(|e| crate::open_error(py, e))?;
    snapshot_to_py(py, &snapshot)
}

fn remove_error(py: Python<'_>, e: RemoveError) -> PyErr {
    let class = match e {
        RemoveError::NotFound(_) => "NotFound",
        RemoveError::InvalidName { .. } => "InvalidName",
        RemoveError::ProducerAlive { .. } => "ProducerAlive",
        RemoveError::Segment { .. } => "BadSegment",
        RemoveError::Io { .. } => "ShmcastOSError",
        _ => "ShmcastError",
    };
    // The core's advice names Rust functions (`shmcast::force_remove` for a name,
    // `std::fs::remove_file` for a path); here both are a keyword.
    let text = e
        .to_string()
        .replace("shmcast::force_remove", "shmcast.remove(..., force=True)")
        .replace(
            "delete the file: std::fs::remove_file",
            "shmcast.remove(path=..., force=True)",
        );
    error(py, class, text)
}

/// Remove a segment whose producer is gone (it died, or closed with
/// ``remove_on_close=False``): the named one, or with ``path=`` the file. A segment whose
/// producer lives is refused (``ProducerAlive``), and so is an object that is not a valid
/// segment (``BadSegment``). ``force=True`` removes the name or file whatever it holds,
/// without either check (as ``force_remove``). Prefer ``Producer.open_or_create``, which
/// takes a dead producer's segment over and needs no removal at all.
#[pyfunction]
#[pyo3(signature = (name=None, *, path=None, force=false))]
pub(crate) fn remove(
    py: Python<'_>,
    name: Option<&str>,
    path: Option<PathBuf>,
    force: bool,
) -> PyResult<()> {
    match (name, path) {
        (Some(name), None) if force => force_remove(py, name),
        (Some(name), None) => py
            .detach(|| shmcast::remove(name))
            .map_err(|e| remove_error(py, e)),
        (None, Some(path)) => remove_path(py, path, force),
        _ => Err(PyValueError::new_err(
            "give a segment name or path=, not both",
        )),
    }
}

/// ``remove(path=path, force=force)``: remove the segment in the file at ``path`` (tmpfs,
/// hugetlbfs) whose producer is gone; ``ProducerAlive`` while it lives, ``BadSegment`` if
/// it is not a valid segment. ``force=True`` unlinks the file whatever it holds.
#[pyfunction]
#[pyo3(signature = (path, *, force=false))]
pub(crate) fn remove_path(py: Python<'_>, path: PathBuf, force: bool) -> PyResult<()> {
    if !force {
        return py
            .detach(|| shmcast::remove_path(&path))
            .map_err(|e| remove_error(py, e));
    }
    // The core has no forced removal of a path: it is an unlink, like `force_remove`'s
    // `shm_unlink` (never an open, so a FIFO under the name cannot block it).
    py.detach(|| std::fs::remove_file(&path))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                error(py, "NotFound", format!("{} does not exist", path.display()))
            }
            _ => error(
                py,
                "ShmcastOSError",
                format!("remove {}: {e}", path.display()),
            ),
        })
}

/// Remove the named object (``/dev/shm/<name>``) whatever it holds, without checking for a
/// live producer or even for a shmcast segment: for leftovers ``remove`` refuses, or when
/// you know better. A live producer keeps writing into the unlinked segment, unseen by new
/// consumers. The same as ``remove(name, force=True)``.
#[pyfunction]
pub(crate) fn force_remove(py: Python<'_>, name: &str) -> PyResult<()> {
    py.detach(|| shmcast::force_remove(name))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                error(py, "NotFound", format!("segment '{name}' does not exist"))
            }
            std::io::ErrorKind::InvalidInput => error(
                py,
                "InvalidName",
                format!("invalid segment name {name:?}: {e}"),
            ),
            _ => error(
                py,
                "ShmcastOSError",
                format!("remove segment '{name}': {e}"),
            ),
        })
}
