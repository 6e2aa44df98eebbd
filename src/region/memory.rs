//! The real region: a mapped segment or a heap allocation.

use super::LockId;
use crate::error::{CreateError, OpenError};
use crate::layout::{
    unpublished, Geometry, Header, RawLayout, Slot, HEADER_SIZE, PRODUCER_NONE, SLOT_SIZE,
};
pub(crate) use crate::os::futex::Wake;
use crate::os::futex::{self, FutexWaitv, Waited};
use crate::os::lock::Locks;
use crate::os::robust::{self, Notice, RobustWord};
use crate::os::segment::{self, MapOptions, Mapping, OpenOptions, Source};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::wait::{NOTICE_BACKSTOP, SLEEP_BOUND};
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Backing {
    /// Zeroed heap memory shared by threads of this process; liveness locks are flags.
    Heap {
        layout: std::alloc::Layout,
        locks: Box<[AtomicBool]>,
    },
    /// A mapped segment; liveness locks are OFD locks on a private description of it.
    Mapped { map: Mapping, locks: Locks },
}

/// The producer's death notice, owned by a thread of this process while this lives (see
/// `os/robust.rs`).
#[derive(Debug)]
pub(crate) struct DeathNotice {
    /// Dropped first: joins the thread, which clears the word.
    _word: RobustWord,
    /// Keeps the word mapped while the thread owns it.
    _region: Arc<Region>,
}

/// A ring's memory and the process-private copy of its geometry.
pub(crate) struct Region {
    base: NonNull<u8>,
    geo: Geometry,
    backing: Backing,
}

// SAFETY: the region owns its memory (a mapping or an allocation, freed once on drop). Every
// access to the shared bytes goes through atomics, or through raw copies and slices whose
// exclusivity the ring protocol guarantees (each such method is `unsafe` and says so).
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` hands out only `&` to atomics, copies, and slices under the
// same `unsafe` contracts.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("geometry", &self.geo)
            .finish()
    }
}

fn heap_allocation(geo: &Geometry) -> Result<(NonNull<u8>, std::alloc::Layout), CreateError> {
    let oom = || CreateError::Io {
        context: format!("allocate a {}-byte in-process ring", geo.total_size),
        source: io::ErrorKind::OutOfMemory.into(),
    };
    let size = usize::try_from(geo.total_size).map_err(|_| oom())?;
    let layout = std::alloc::Layout::from_size_align(size, 4096).map_err(|_| oom())?;
    // SAFETY: `layout` has a non-zero size (at least a header and MIN_CAPACITY).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    Ok((NonNull::new(ptr).ok_or_else(oom)?, layout))
}

fn heap_locks(geo: &Geometry) -> Box<[AtomicBool]> {
    (0..=geo.max_consumers)
        .map(|_| AtomicBool::new(false))
        .collect()
}

impl Region {
    /// A heap-backed region with a freshly initialized header. An allocation the system
    /// refuses is an error, not an abort.
    pub(crate) fn heap(geo: Geometry) -> Result<Region, CreateError> {
        let (base, layout) = heap_allocation(&geo)?;
        let region = Region {
            base,
            geo,
            backing: Backing::Heap {
                layout,
                locks: heap_locks(&geo),
            },
        };
        region.initialize();
        Ok(region)
    }

    /// A heap copy of `bytes` taken as a segment someone else wrote: validated exactly like a
    /// mapped segment on open (fuzzing and tests of hostile segments).
    #[cfg(any(feature = "test-hooks", fuzzing))]
    pub(crate) fn heap_from_bytes(bytes: &[u8]) -> Result<Region, crate::error::SegmentError> {
        use crate::error::SegmentError;
        let raw = RawLayout::from_bytes(bytes).ok_or(SegmentError::Truncated {
            size: bytes.len() as u64,
            needed: HEADER_SIZE as u64,
        })?;
        let geo = Geometry::validate(&raw, bytes.len() as u64)?;
        let (base, layout) = heap_allocation(&geo).map_err(|_| SegmentError::Truncated {
            size: bytes.len() as u64,
            needed: geo.total_size,
        })?;
        // SAFETY: both ranges are `total_size <= bytes.len()` long (validated) and do not
        // overlap (a fresh allocation).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.as_ptr(), geo.total_size as usize)
        };
        Ok(Region {
            base,
            geo,
            backing: Backing::Heap {
                layout,
                locks: heap_locks(&geo),
            },
        })
    }

    /// Create a new segment (named object, file or memfd) and initialize its header.
    pub(crate) fn create(
        source: Source,
        geo: Geometry,
        mode: u32,
        how: MapOptions,
    ) -> Result<Region, CreateError> {
        let map = segment::create(source, geo.total_size, mode, how)?;
        let locks = match Locks::open(map.file(), false) {
            Ok(l) => l,
            Err(source) => {
                let _ = map.unlink_if_ours();
                return Err(CreateError::Io {
                    context: "reopen the segment for its liveness locks".into(),
                    source,
                });
            }
        };
        let base = map.base();
        let region = Region {
            base,
            geo,
            backing: Backing::Mapped { map, locks },
        };
        region.initialize();
        Ok(region)
    }

    /// Open an existing segment by name or path and validate its header.
    pub(crate) fn open(
        source: Source,
        allow_foreign_owner: bool,
        how: MapOptions,
    ) -> Result<Region, OpenError> {
        let opts = open_options(allow_foreign_owner, false, how);
        Self::validate(segment::open(source, &opts)?, false)
    }

    /// Open the segment behind a descriptor (duplicated, not consumed) and validate it.
    pub(crate) fn open_fd(
        fd: BorrowedFd<'_>,
        allow_foreign_owner: bool,
        how: MapOptions,
    ) -> Result<Region, OpenError> {
        let opts = open_options(allow_foreign_owner, false, how);
        Self::validate(segment::open_fd(fd, &opts)?, false)
    }

    /// Open an existing segment for reading only (inspection: nothing in it is written, and
    /// read permission is enough), by name or path, or behind a descriptor.
    pub(crate) fn open_read_only(
        source: Source,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Region, OpenError> {
        let opts = open_options(true, true, MapOptions::default());
        let map = match fd {
            Some(fd) => segment::open_fd(fd, &opts)?,
            None => segment::open(source, &opts)?,
        };
        Self::validate(map, true)
    }

    fn validate(map: Mapping, read_only: bool) -> Result<Region, OpenError> {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked on open) and page
        // aligned; the layout line holds only atomics, which other processes may write
        // concurrently.
        let header = unsafe { &*(map.base().as_ptr() as *const Header) };
        let raw = RawLayout::load(&header.layout);
        let geo = Geometry::validate(&raw, map.len())?;
        let locks = Locks::open(map.file(), read_only).map_err(|source| OpenError::Io {
            context: "reopen the segment for its liveness locks".into(),
            source,
        })?;
        let base = map.base();
        Ok(Region {
            base,
            geo,
            backing: Backing::Mapped { map, locks },
        })
    }

    /// Write a new segment's header: empty stream, no producer, magic last.
    fn initialize(&self) {
        use Ordering::Relaxed;
        let h = self.header();
        h.producer.tail.store(0, Relaxed);
        h.producer.claim.store(0, Relaxed);
        h.producer.head.store(0, Relaxed);
        h.producer.next_seq.store(0, Relaxed);
        h.control.state.store(PRODUCER_NONE, Relaxed);
        // Position 0 must not look published (see `ring`, "Publication").
        self.word(0).store(unpublished(0), Relaxed);
        // The magic store inside is Release: it orders everything above before it.
        RawLayout::for_geometry(&self.geo).store(&h.layout);
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The segment header.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the memory starts with a `Header` (validated size, 4096 alignment), which
        // holds only atomics and padding, so a shared reference is sound while other
        // processes write it.
        unsafe { &*(self.base.as_ptr() as *const Header) }
    }

    /// Consumer slot `i`; `i < max_consumers` (an internal invariant, never shared input).
    #[inline]
    pub(crate) fn slot(&self, i: u32) -> &Slot {
        assert!(i < self.geo.max_consumers, "slot index out of range");
        let off = self.geo.slots_offset as usize + i as usize * SLOT_SIZE;
        // SAFETY: `off + SLOT_SIZE <= data_offset <= total_size` for `i < max_consumers`;
        // slots are 128-aligned (header size and slot size are multiples of 128) and hold
        // only atomics, which other processes may write concurrently.
        unsafe { &*(self.base.as_ptr().add(off) as *const Slot) }
    }

    /// The 8-byte word of the data ring at index `idx` (masked into the ring, rounded down
    /// to 8 bytes): for cold paths; hot paths keep a [`Data`] view.
    #[inline]
    pub(crate) fn word(&self, idx: u64) -> &AtomicU64 {
        let idx = (idx & self.geo.mask) & !7;
        // SAFETY: as in `Data::word`; the reference is bounded by `&self`, which keeps the
        // memory alive.
        unsafe {
            &*(self
                .base
                .as_ptr()
                .add((self.geo.data_offset + idx) as usize) as *const AtomicU64)
        }
    }

    /// Does this region live on the heap (threads of one process share it)?
    #[inline]
    pub(crate) fn is_heap(&self) -> bool {
        matches!(self.backing, Backing::Heap { .. })
    }

    /// A view of the data ring for the hot path: a pointer and a mask, kept by a handle beside
    /// its `Arc<Region>`, so reaching a word costs no pointer chase.
    ///
    /// # Safety
    /// The view (and every copy of it) is used only while this region lives.
    pub(crate) unsafe fn data(&self) -> Data {
        Data {
            // SAFETY: `data_offset < total_size`: inside the memory.
            base: unsafe {
                NonNull::new_unchecked(self.base.as_ptr().add(self.geo.data_offset as usize))
            },
            mask8: self.geo.mask & !7,
            capacity: self.geo.capacity,
            heap: self.is_heap(),
        }
    }

    /// Take liveness lock `id` without blocking: `Ok(false)` if a live owner holds it.
    pub(crate) fn try_lock(&self, id: LockId) -> io::Result<bool> {
        match &self.backing {
            // Acquire: pairs with the Release unlock of the previous owner.
            Backing::Heap { locks, .. } => Ok(heap_lock(locks, id)
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()),
            Backing::Mapped { locks, .. } => locks.try_lock(id.byte()),
        }
    }

    /// Release liveness lock `id` (held by this handle).
    pub(crate) fn unlock(&self, id: LockId) {
        match &self.backing {
            // Release: pairs with the Acquire of `try_lock` and `held_by_other`.
            Backing::Heap { locks, .. } => heap_lock(locks, id).store(false, Ordering::Release),
            Backing::Mapped { locks, .. } => locks.unlock(id.byte()),
        }
    }

    /// Does some other live handle hold lock `id`? Errors count as alive: never evict on
    /// a doubt.
    pub(crate) fn held_by_other(&self, id: LockId) -> bool {
        match &self.backing {
            // Acquire: pairs with the Release `unlock` (what the owner did before unlocking
            // is visible to whoever sees the lock free).
            Backing::Heap { locks, .. } => heap_lock(locks, id).load(Ordering::Acquire),
            Backing::Mapped { locks, .. } => locks.held_by_other(id.byte()),
        }
    }

    /// Sleep while `*word == expected`, at most `timeout`.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) -> Wake {
        futex::wait(word, expected, timeout)
    }

    /// A consumer's sleep on the data futex `word` while it holds `expected`, for at most
    /// `remaining` (`None`: no deadline). Where it can, it sleeps on the producer's death
    /// notice too (`futex_waitv`), bounded by `NOTICE_BACKSTOP`: `TimedOut` then also when
    /// the notice changed (the producer died or left: probe its lock now). Otherwise (a
    /// heap ring, no `futex_waitv`, no notice owned, or one that says "died" while the
    /// lock is held: a takeover under way) a plain sleep bounded by `SLEEP_BOUND`.
    pub(crate) fn wait_for_data(
        &self,
        word: &AtomicU32,
        expected: u32,
        remaining: Option<Duration>,
    ) -> Wake {
        let bounded = |b: Duration| remaining.map_or(b, |r| r.min(b));
        let notice = match self.alive_word() {
            Some(n) if futex::waitv_usable() => n,
            _ => return futex::wait(word, expected, bounded(SLEEP_BOUND)),
        };
        let Notice::Owned(armed) = robust::arm(notice) else {
            return futex::wait(word, expected, bounded(SLEEP_BOUND));
        };
        let words = [
            FutexWaitv::shared(word, expected),
            FutexWaitv::shared(notice, armed),
        ];
        let deadline = Instant::now() + bounded(NOTICE_BACKSTOP);
        // SAFETY: both words lie in this region's memory, mapped while `self` lives (the
        // caller holds the region for the whole call).
        let waited = unsafe { futex::futex_waitv(&words, Some(deadline)) };
        // Relaxed: a hint (see `os/robust.rs`); the probe that follows decides.
        if waited == Waited::TimedOut || notice.load(Ordering::Relaxed) != armed {
            Wake::TimedOut
        } else {
            Wake::Woken
        }
    }

    /// Wake every sleeper on `word`.
    pub(crate) fn wake_all(&self, word: &AtomicU32) {
        futex::wake_all(word);
    }

    /// The producer's death notice (`ControlLine::alive`, a robust futex word), for a
    /// mapped segment; `None` for a heap ring, whose producer and consumers are threads of
    /// one process.
    pub(crate) fn alive_word(&self) -> Option<&AtomicU32> {
        match self.backing {
            Backing::Mapped { .. } => Some(&self.header().control.alive),
            Backing::Heap { .. } => None,
        }
    }

    /// Have a thread of this process own the producer's death notice until the returned
    /// guard drops (the caller holds the producer lock). `None` for a heap ring, or if the
    /// OS refused the thread or the robust list: consumers then learn of a death by probing
    /// the producer lock, as they always can.
    pub(crate) fn own_death_notice(self: &Arc<Self>) -> Option<DeathNotice> {
        let word = self.alive_word()?;
        // SAFETY: the word lies in this region's mapping, which the guard keeps (its
        // `region` field drops after `word`, whose drop joins the owning thread).
        let word = unsafe { RobustWord::own(word) }.ok()?;
        Some(DeathNotice {
            _word: word,
            _region: Arc::clone(self),
        })
    }

    /// The mapped segment's descriptor, if this region is one.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Mapped { map, .. } => Some(map.fd()),
            Backing::Heap { .. } => None,
        }
    }

    /// The owner of a mapped segment.
    pub(crate) fn owner_uid(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        match &self.backing {
            Backing::Mapped { map, .. } => map.file().metadata().ok().map(|m| m.uid()),
            Backing::Heap { .. } => None,
        }
    }

    /// The segment's permission bits (mapped named or path-backed segments).
    pub(crate) fn mode(&self) -> Option<u32> {
        match &self.backing {
            Backing::Mapped { map, .. } => map.mode(),
            Backing::Heap { .. } => None,
        }
    }

    /// Remove the segment's name (or file), if it still names this segment.
    pub(crate) fn unlink_if_ours(&self) -> io::Result<bool> {
        match &self.backing {
            Backing::Mapped { map, .. } => map.unlink_if_ours(),
            Backing::Heap { .. } => Ok(false),
        }
    }

    /// Overwrite byte `at` of the segment as a misbehaving peer would (an atomic byte
    /// store, so it is not a data race with the ring's own atomic accesses).
    #[cfg(any(feature = "test-hooks", fuzzing))]
    pub(crate) fn scribble_byte(&self, at: u64, value: u8) {
        assert!(at < self.geo.total_size);
        // SAFETY: `at` is inside the region; AtomicU8 has alignment 1.
        let byte = unsafe {
            &*(self.base.as_ptr().add(at as usize) as *const std::sync::atomic::AtomicU8)
        };
        byte.store(value, Ordering::Relaxed);
    }
}

/// The three header words of a record (see `layout.rs`): its stamp (stream position, or an
/// unpublished stamp), its sequence number, and its meta word (length and kind).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hdr<'a> {
    pub(crate) stamp: &'a AtomicU64,
    pub(crate) seq: &'a AtomicU64,
    pub(crate) meta: &'a AtomicU64,
}

/// The data ring of a region, as a process-private view (see [`Region::data`]): every raw
/// access to the ring's bytes is a method here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Data {
    /// Data-ring byte 0.
    base: NonNull<u8>,
    /// `(capacity - 1) & !7`: masks an index into the ring and down to a word.
    mask8: u64,
    capacity: u64,
    /// A heap ring: lossy readers are threads of this process.
    heap: bool,
}

// SAFETY: a view of memory shared by threads and processes, accessed only through atomics
// or through the `unsafe` copies and slices below, whose contracts carry the exclusivity;
// `Region::data` requires that it not outlive its region.
unsafe impl Send for Data {}
// SAFETY: as above.
unsafe impl Sync for Data {}

impl Data {
    /// The 8-byte word of the data ring at index `idx` (masked into the ring, rounded down
    /// to 8 bytes, so it is in bounds whatever the caller computed).
    #[inline(always)]
    pub(crate) fn word(&self, idx: u64) -> &AtomicU64 {
        // SAFETY: `idx & mask8 + 8 <= capacity`, 8-aligned (the data ring is page aligned),
        // inside the region, which lives as long as this view (`Region::data`). Any process
        // may access these bytes at any time: an atomic reference is sound whatever they
        // do. The same bytes are elsewhere copied with raw pointers only where the protocol
        // orders those copies against every atomic access (see `ring`).
        unsafe { &*(self.base.as_ptr().add((idx & self.mask8) as usize) as *const AtomicU64) }
    }

    /// The three header words of the record at index `idx`, from one masked pointer.
    ///
    /// # Safety
    /// `idx` is 8-aligned and `idx + RECORD_HEADER <= capacity` (the header does not cross
    /// the ring's end).
    #[inline(always)]
    pub(crate) unsafe fn header(&self, idx: u64) -> Hdr<'_> {
        debug_assert!(idx % 8 == 0 && idx + 24 <= self.capacity);
        // From the region's base pointer, not from `word`'s reference: a pointer derived
        // from a `&AtomicU64` may only reach those 8 bytes (Stacked Borrows; Miri caught it).
        let p = self.base.as_ptr().wrapping_add((idx & self.mask8) as usize) as *const AtomicU64;
        // SAFETY: the caller keeps the three words inside the ring (`idx & mask8 == idx`
        // for an 8-aligned in-ring `idx`), 8-aligned, in the region that outlives this view;
        // atomics, as in `word`.
        unsafe {
            Hdr {
                stamp: &*p,
                seq: &*p.add(1),
                meta: &*p.add(2),
            }
        }
    }

    /// Raw pointer to data-ring byte `idx` (`idx <= capacity`: a zero-length payload may
    /// start right at the end). Computed with `wrapping_add`, so computing it is sound for
    /// any `idx`; every caller is an `unsafe fn` whose contract keeps the bytes it accesses
    /// inside the ring (and every caller masks the index into the ring first).
    #[inline(always)]
    fn ptr(&self, idx: u64) -> *mut u8 {
        debug_assert!(idx <= self.capacity);
        self.base.as_ptr().wrapping_add(idx as usize)
    }

    /// Copy `src` into the ring at the 8-aligned payload index `idx`.
    ///
    /// In a mapped segment this is a plain copy: lossy readers live in other processes (or
    /// read through another mapping) and read with atomics. In a heap ring, lossy readers are
    /// threads of this process that may load these words concurrently (they validate the
    /// copy afterwards), so the copy is made of word-sized atomic stores (the trailing
    /// partial word is written whole: records are 8-aligned, so it lies inside the record).
    ///
    /// # Safety
    /// `idx` is 8-aligned, `idx + align8(src.len()) <= capacity`, and the protocol gives the
    /// caller exclusive write access to those bytes: no lossless consumer reads them before
    /// they are published.
    #[inline]
    pub(crate) unsafe fn copy_in(&self, idx: u64, src: &[u8]) {
        if self.heap {
            self.copy_in_atomic(idx, src);
            return;
        }
        // SAFETY: bounds and exclusivity are the caller's contract.
        unsafe { copy_bytes(src.as_ptr(), self.ptr(idx), src.len()) }
    }

    /// `copy_in` for a heap ring: word-sized atomic stores. Out of line: the compiler treats
    /// an atomic store as a write to any memory, so inlined into the send path it would make
    /// the producer's fields be loaded again after the copy, on the mapped path too.
    #[inline(never)]
    fn copy_in_atomic(&self, idx: u64, src: &[u8]) {
        let mut chunks = src.chunks_exact(8);
        let mut at = idx;
        for c in &mut chunks {
            let v = u64::from_ne_bytes(c.try_into().expect("chunk of 8"));
            // Relaxed: published by the record's Release stamp store.
            self.word(at).store(v, Ordering::Relaxed);
            at += 8;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // Relaxed: as above.
            self.word(at)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
    }

    /// Copy ring bytes at the 8-aligned payload index `idx` into `dst` with word-sized
    /// atomic loads: the producer may be overwriting them concurrently (the reader validates
    /// the copy afterwards). Atomic, not volatile: a volatile read racing with a write is
    /// still a data race in Rust's memory model; a relaxed atomic load is not, and compiles
    /// to a plain load on x86-64 and aarch64. The trailing partial word is loaded whole (it
    /// lies inside the 8-aligned record). Memory safe whatever `idx` is (words are masked).
    pub(crate) fn copy_out_atomic(&self, idx: u64, dst: &mut [u8]) {
        let mut at = idx;
        let mut chunks = dst.chunks_exact_mut(8);
        for c in &mut chunks {
            // Relaxed: validated by the caller's fence(Acquire) and claim check (seqlock).
            c.copy_from_slice(&self.word(at).load(Ordering::Relaxed).to_ne_bytes());
            at += 8;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            // Relaxed: as above.
            let w = self.word(at).load(Ordering::Relaxed).to_ne_bytes();
            rest.copy_from_slice(&w[..rest.len()]);
        }
    }

    /// Copy ring bytes at `idx` into `dst`.
    ///
    /// # Safety
    /// `idx + dst.len() <= capacity`, and the protocol guarantees that nobody writes those
    /// bytes concurrently (a published record at or above the reader's released cursor).
    #[inline]
    pub(crate) unsafe fn copy_out(&self, idx: u64, dst: &mut [u8]) {
        // SAFETY: bounds and the absence of writers are the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(idx), dst.as_mut_ptr(), dst.len()) }
    }

    /// The `len` payload bytes at `idx`, borrowed in place.
    ///
    /// # Safety
    /// `idx + len <= capacity`; the view's region outlives the returned slice; and for its
    /// lifetime nobody writes those bytes: the protocol keeps the producer (in any process)
    /// off them, which holds for a published record at or above the cursor of a lossless
    /// consumer that may not be evicted while alive.
    #[inline(always)]
    pub(crate) unsafe fn payload<'a>(&self, idx: u64, len: usize) -> &'a [u8] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr(idx), len) }
    }

    /// The `len` payload bytes at `idx`, to be written in place.
    ///
    /// # Safety
    /// A mapped region only (on the heap, lossy readers of this process could load the
    /// same words: write them with [`Data::copy_in`]); `idx + len <= capacity`; the view's
    /// region outlives the returned slice; for its lifetime the caller has exclusive access
    /// to those bytes in this process (an uncommitted reservation, which the gate keeps
    /// clear of every unreleased record and no lossless reader reads before it is
    /// published). Lossy readers in other processes may load the same bytes through their
    /// own mappings; they validate what they copied and discard it if the producer wrote
    /// meanwhile.
    #[inline]
    pub(crate) unsafe fn payload_mut<'a>(&self, idx: u64, len: usize) -> &'a mut [u8] {
        debug_assert!(!self.heap);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(idx), len) }
    }

    /// Address of data-ring byte 0 (tests check where a borrowed message points).
    #[cfg(any(feature = "test-hooks", fuzzing))]
    pub(crate) fn start(&self) -> usize {
        self.base.as_ptr() as usize
    }
}

/// `copy_nonoverlapping(src, dst, len)`, with a 16- to 64-byte copy made inline by two or four
/// 16-byte moves (the last ones overlapping the first) rather than by a call to `memcpy`:
/// small messages are the common case of the send path, and the call costs as much as the
/// copy.
///
/// # Safety
/// As `copy_nonoverlapping`: `len` bytes readable at `src`, writable at `dst`, not
/// overlapping. Every access stays inside `[0, len)` of both.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    type W = [u8; 16];
    if (16..=64).contains(&len) {
        // SAFETY: every offset below is at most `len - 16`, so each 16-byte access lies
        // inside `[0, len)` of both ranges; unaligned reads and writes of plain bytes.
        unsafe {
            let head = src.cast::<W>().read_unaligned();
            let tail = src.add(len - 16).cast::<W>().read_unaligned();
            if len > 32 {
                // `[16, 32)` and `[len - 32, len - 16)` cover the middle.
                let a = src.add(16).cast::<W>().read_unaligned();
                let b = src.add(len - 32).cast::<W>().read_unaligned();
                dst.add(16).cast::<W>().write_unaligned(a);
                dst.add(len - 32).cast::<W>().write_unaligned(b);
            }
            dst.cast::<W>().write_unaligned(head);
            dst.add(len - 16).cast::<W>().write_unaligned(tail);
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
    }
}

fn open_options(allow_foreign_owner: bool, read_only: bool, map: MapOptions) -> OpenOptions {
    OpenOptions {
        allow_foreign_owner,
        min_size: HEADER_SIZE as u64,
        read_only,
        map,
    }
}

fn heap_lock(locks: &[AtomicBool], id: LockId) -> &AtomicBool {
    &locks[id.byte() as usize]
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Backing::Heap { layout, .. } = &self.backing {
            // SAFETY: allocated in `heap_allocation` with this layout, freed exactly once.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), *layout) }
        }
    }
}
