//! The region under loom: the same method set as `memory.rs` (the parts the ring uses), but
//! every shared word is a loom atomic and every payload byte lives in a loom `UnsafeCell`,
//! so loom checks the orderings and detects racing payload accesses. Liveness locks are
//! model-visible flags (a test "kills" a handle by dropping its flag without detaching, as
//! the kernel would). The futex is a loom `Mutex` + `Condvar`, the value checked under the
//! lock as the kernel does; timeouts are not modelled, so a lost wake-up is a deadlock.
//!
//! A data-ring word has two faces here: `atom`, for the record-header words the ring
//! accesses atomically, and `bytes`, for payload copies. In a real segment they are the
//! same eight bytes, accessed atomically in one lap and copied in another; the protocol
//! orders those accesses by the same edges loom checks here.

use super::LockId;
use crate::error::CreateError;
use crate::layout::*;
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use loom::cell::UnsafeCell;
use loom::sync::{Condvar, Mutex};
use std::io;
use std::time::Duration;

/// Why a (model) futex wait returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word no longer held the expected value.
    Woken,
    /// Never in the model: timeouts are not modelled.
    #[allow(dead_code)]
    TimedOut,
}

struct Word {
    atom: AtomicU64,
    bytes: UnsafeCell<[u8; 8]>,
}

/// A heap ring for loom.
pub(crate) struct Region {
    geo: Geometry,
    header: Box<Header>,
    slots: Box<[Slot]>,
    words: Box<[Word]>,
    locks: Box<[AtomicBool]>,
    futex: Mutex<()>,
    cv: Condvar,
}

/// The three header words of a record (see `memory.rs` `Hdr`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hdr<'a> {
    pub(crate) stamp: &'a AtomicU64,
    pub(crate) seq: &'a AtomicU64,
    pub(crate) meta: &'a AtomicU64,
}

/// The data ring of a model region (see `memory.rs` `Data`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Data {
    words: *const Word,
    mask: u64,
}

// SAFETY: as the model `Region` (below): loom checks every access through it.
unsafe impl Send for Data {}
// SAFETY: as above.
unsafe impl Sync for Data {}

impl Data {
    fn cell(&self, at: u64) -> &Word {
        // SAFETY: the index is masked into the ring; the region outlives the view
        // (`Region::data`).
        unsafe { &*self.words.add(((at & self.mask) / 8) as usize) }
    }

    pub(crate) fn word(&self, idx: u64) -> &AtomicU64 {
        &self.cell(idx).atom
    }

    /// The three header words of the record at `idx`.
    ///
    /// # Safety
    /// As in `memory.rs` (the model masks every word, so it is memory safe regardless).
    pub(crate) unsafe fn header(&self, idx: u64) -> Hdr<'_> {
        Hdr {
            stamp: self.word(idx),
            seq: self.word(idx + 8),
            meta: self.word(idx + 16),
        }
    }

    /// Copy `src` into the ring at `idx`: into the cells (loom checks lossless readers
    /// against these writes) and into the atomic face of the same words (what lossy readers
    /// copy from, as they do from the real bytes).
    ///
    /// # Safety
    /// As in `memory.rs`: in bounds, and exclusive by the protocol (loom checks the latter).
    pub(crate) unsafe fn copy_in(&self, idx: u64, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            let at = idx + i as u64;
            // SAFETY: loom tracks this access; a racing access fails the model.
            self.cell(at)
                .bytes
                .with_mut(|p| unsafe { (*p)[(at % 8) as usize] = *b });
        }
        for (k, chunk) in src.chunks(8).enumerate() {
            let mut v = [0u8; 8];
            v[..chunk.len()].copy_from_slice(chunk);
            self.word(idx + 8 * k as u64)
                .store(u64::from_ne_bytes(v), Ordering::Relaxed);
        }
    }

    /// Lossy copy: atomic loads of the words' atomic face.
    pub(crate) fn copy_out_atomic(&self, idx: u64, dst: &mut [u8]) {
        for (k, chunk) in dst.chunks_mut(8).enumerate() {
            let v = self
                .word(idx + 8 * k as u64)
                .load(Ordering::Relaxed)
                .to_ne_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// Copy ring bytes at `idx` into `dst`.
    ///
    /// # Safety
    /// As in `memory.rs`.
    pub(crate) unsafe fn copy_out(&self, idx: u64, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            let at = idx + i as u64;
            // SAFETY: loom tracks this access; a racing access fails the model.
            *b = self
                .cell(at)
                .bytes
                .with(|p| unsafe { (*p)[(at % 8) as usize] });
        }
    }
}

// SAFETY: the payload cells are accessed only through `copy_in` / `copy_out`, whose
// exclusivity is the ring protocol under test: loom reports a racing access (a failed model)
// instead of letting it happen. Everything else is loom atomics, a loom mutex and a loom
// condition variable.
unsafe impl Sync for Region {}
// SAFETY: as above.
unsafe impl Send for Region {}

fn futex_line() -> Line<FutexLine> {
    Line(FutexLine {
        word: AtomicU32::new(0),
        sleepers: AtomicU32::new(0),
    })
}

impl Region {
    /// A model ring with a freshly initialized header.
    pub(crate) fn heap(geo: Geometry) -> Result<Region, CreateError> {
        let header = Box::new(Header {
            layout: Line(LayoutLine {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                header_size: AtomicU32::new(0),
                slot_size: AtomicU32::new(0),
                max_consumers: AtomicU32::new(0),
                max_message: AtomicU32::new(0),
                record_header: AtomicU32::new(0),
                slots_offset: AtomicU64::new(0),
                data_offset: AtomicU64::new(0),
                capacity: AtomicU64::new(0),
                total_size: AtomicU64::new(0),
            }),
            producer: Line(ProducerLine {
                tail: AtomicU64::new(0),
                claim: AtomicU64::new(0),
                head: AtomicU64::new(0),
                next_seq: AtomicU64::new(0),
            }),
            data: futex_line(),
            space: futex_line(),
            control: Line(ControlLine {
                hwm: AtomicU32::new(0),
                state: AtomicU32::new(PRODUCER_NONE),
                epoch: AtomicU32::new(0),
                evicting: AtomicU32::new(0),
                pid: AtomicU32::new(0),
                alive: AtomicU32::new(0),
            }),
        });
        let slots = (0..geo.max_consumers)
            .map(|_| Slot {
                cursor: AtomicU64::new(0),
                state: AtomicU32::new(0),
                pid: AtomicU32::new(0),
            })
            .collect();
        let words = (0..geo.capacity / 8)
            .map(|i| Word {
                // Position 0 must not look published (see `ring`).
                atom: AtomicU64::new(if i == 0 { unpublished(0) } else { 0 }),
                bytes: UnsafeCell::new([0; 8]),
            })
            .collect();
        let locks = (0..=geo.max_consumers)
            .map(|_| AtomicBool::new(false))
            .collect();
        let region = Region {
            geo,
            header,
            slots,
            words,
            locks,
            futex: Mutex::new(()),
            cv: Condvar::new(),
        };
        RawLayout::for_geometry(&geo).store(&region.header.layout);
        Ok(region)
    }

    /// Always: the model is shared by threads, as a heap ring is.
    pub(crate) fn is_heap(&self) -> bool {
        true
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    pub(crate) fn slot(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    pub(crate) fn word(&self, idx: u64) -> &AtomicU64 {
        &self.words[((idx & self.geo.mask) / 8) as usize].atom
    }

    /// A view of the data ring, as `memory.rs` gives handles.
    ///
    /// # Safety
    /// The view is used only while this region lives.
    pub(crate) unsafe fn data(&self) -> Data {
        Data {
            words: self.words.as_ptr(),
            mask: self.geo.mask,
        }
    }

    pub(crate) fn try_lock(&self, id: LockId) -> io::Result<bool> {
        // Acquire pairs with the previous owner's Release `unlock`. Defensive (redundant: a
        // takeover re-reads every word it trusts with its own Acquire loads).
        Ok(self.locks[id.byte() as usize]
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok())
    }

    pub(crate) fn unlock(&self, id: LockId) {
        self.locks[id.byte() as usize].store(false, Ordering::Release);
    }

    pub(crate) fn held_by_other(&self, id: LockId) -> bool {
        self.locks[id.byte() as usize].load(Ordering::Acquire)
    }

    /// The futex model: sleep only if the word still holds `expected`, checked under the
    /// lock that `wake_all` takes. Timeouts are not modelled (a lost wake-up must show as a
    /// deadlock).
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Duration) -> Wake {
        let guard = self.futex.lock().unwrap();
        if word.load(Ordering::Relaxed) != expected {
            return Wake::Woken;
        }
        drop(self.cv.wait(guard).unwrap());
        Wake::Woken
    }

    /// A consumer's sleep on the data futex (the model has no death notice: the futex's
    /// condition variable, as `wait`).
    pub(crate) fn wait_for_data(
        &self,
        word: &AtomicU32,
        expected: u32,
        remaining: Option<Duration>,
    ) -> Wake {
        self.wait(word, expected, remaining.unwrap_or(Duration::ZERO))
    }

    pub(crate) fn wake_all(&self, _word: &AtomicU32) {
        let _guard = self.futex.lock().unwrap();
        self.cv.notify_all();
    }
}
