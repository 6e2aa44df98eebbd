//! Where a ring's memory lives: a mapped segment shared between processes, or a heap
//! allocation shared between threads (tests, Miri). Both are the same bytes in the same
//! layout, accessed through the same raw-pointer code; they differ only in how liveness
//! locks and futexes are implemented. (`region_model.rs` replaces this file under loom.)

use crate::futex;
use crate::layout::{unpublished, Geometry, Header, RawLayout, Slot, PRODUCER_NONE};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::wait::Wake;
use std::io;
use std::ptr::NonNull;
use std::time::Duration;

pub(crate) use crate::region_ids::LockId;

pub(crate) enum Backing {
    /// Zeroed heap memory; liveness locks are flags in this process.
    Heap {
        layout: std::alloc::Layout,
        locks: Box<[AtomicBool]>,
    },
    /// A mapped segment; liveness locks are OFD locks on its file.
    Mapped(crate::segment::Mapped),
}

/// A ring's memory and the process-private copy of its geometry.
pub(crate) struct Region {
    base: NonNull<u8>,
    geo: Geometry,
    backing: Backing,
}

// SAFETY: every access to the shared bytes goes through atomics or through raw-pointer copies
// whose exclusivity the ring protocol guarantees; the backing is owned and freed once.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only hands out `&` to atomics and raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// A heap-backed region with a freshly initialized header.
    pub(crate) fn heap(geo: Geometry) -> Region {
        let layout = std::alloc::Layout::from_size_align(geo.total_size as usize, 4096)
            .expect("geometry sizes are validated");
        // SAFETY: `layout` has a non-zero size (at least header + MIN_CAPACITY).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        let locks = (0..=geo.max_consumers)
            .map(|_| AtomicBool::new(false))
            .collect();
        let region = Region {
            base,
            geo,
            backing: Backing::Heap { layout, locks },
        };
        region.initialize();
        region
    }

    /// A heap copy of `bytes` taken as a segment someone else wrote: validated exactly like a
    /// mapped segment on open (fuzzing and tests of hostile segments).
    pub(crate) fn heap_from_bytes(bytes: &[u8]) -> Result<Region, crate::error::SegmentError> {
        let raw = RawLayout::from_bytes(bytes).ok_or(crate::error::SegmentError::Truncated {
            size: bytes.len() as u64,
            needed: crate::layout::HEADER_SIZE as u64,
        })?;
        let geo = Geometry::validate(&raw, bytes.len() as u64)?;
        let layout = std::alloc::Layout::from_size_align(geo.total_size as usize, 4096)
            .expect("validated sizes");
        // SAFETY: non-zero size (validation requires header + MIN_CAPACITY).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: both ranges are `total_size <= bytes.len()` long and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.as_ptr(), geo.total_size as usize)
        };
        let locks = (0..=geo.max_consumers)
            .map(|_| AtomicBool::new(false))
            .collect();
        Ok(Region {
            base,
            geo,
            backing: Backing::Heap { layout, locks },
        })
    }

    /// # Safety
    /// `base` must point to a mapping of at least `geo.total_size` bytes that stays valid
    /// for as long as `backing` lives, aligned to 4096.
    pub(crate) unsafe fn from_mapping(base: NonNull<u8>, geo: Geometry, backing: Backing) -> Self {
        Region { base, geo, backing }
    }

    /// Write a new segment's header: empty stream, no producer, magic last.
    pub(crate) fn initialize(&self) {
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
        // SAFETY: the mapping starts with a `Header` (validated size, 4096 alignment), which
        // holds only atomics and padding, so a shared reference is sound while other
        // processes write it.
        unsafe { &*(self.base.as_ptr() as *const Header) }
    }

    /// Consumer slot `i`; `i < max_consumers` (an internal invariant, never shared input).
    #[inline]
    pub(crate) fn slot(&self, i: u32) -> &Slot {
        assert!(i < self.geo.max_consumers, "slot index out of range");
        let off = self.geo.slots_offset as usize + i as usize * crate::layout::SLOT_SIZE;
        // SAFETY: `off + SLOT_SIZE <= data_offset <= total_size` for `i < max_consumers`;
        // slots are 128-aligned (header size and slot size are multiples of 128) and hold
        // only atomics.
        unsafe { &*(self.base.as_ptr().add(off) as *const Slot) }
    }

    /// The 8-byte word of the data ring at index `idx` (masked into the ring, rounded down
    /// to 8 bytes, so it is in bounds whatever the caller computed).
    #[inline]
    pub(crate) fn word(&self, idx: u64) -> &AtomicU64 {
        let idx = (idx & self.geo.mask) & !7;
        // SAFETY: `data_offset + idx + 8 <= total_size`, 8-aligned (data_offset is page
        // aligned); an AtomicU64 may alias bytes that are elsewhere copied with raw pointers
        // because the protocol orders those accesses (see `ring`).
        unsafe {
            &*(self
                .base
                .as_ptr()
                .add((self.geo.data_offset + idx) as usize) as *const AtomicU64)
        }
    }

    /// Raw pointer to data-ring byte `idx`.
    ///
    /// # Safety
    /// `idx + len <= capacity` for whatever length the caller accesses through it (an empty
    /// access may point one past the ring's end).
    #[inline]
    pub(crate) unsafe fn data_ptr(&self, idx: u64) -> *mut u8 {
        // `idx == capacity` is the (empty) payload of a record whose header ends the ring.
        debug_assert!(idx <= self.geo.capacity);
        // SAFETY: the caller keeps `idx` within the ring, which lies inside the mapping.
        unsafe {
            self.base
                .as_ptr()
                .add((self.geo.data_offset + idx) as usize)
        }
    }

    /// Copy `src` into the ring at the 8-aligned payload index `idx`.
    ///
    /// In a mapped segment this is a plain copy: lossy readers live in other processes and
    /// read with atomics. In a heap ring, lossy readers are threads of this process, so the
    /// copy is made of word-sized atomic stores (the trailing partial word is written
    /// whole: records are 8-aligned, so it lies inside this record).
    ///
    /// # Safety
    /// `idx` is 8-aligned, `idx + align8(src.len()) <= capacity`, and the protocol gives the
    /// caller exclusive write access to those bytes (no lossless consumer reads them until
    /// they are published).
    #[inline]
    pub(crate) unsafe fn copy_in(&self, idx: u64, src: &[u8]) {
        if let Backing::Heap { .. } = self.backing {
            let mut chunks = src.chunks_exact(8);
            let mut at = idx;
            for c in &mut chunks {
                let v = u64::from_ne_bytes(c.try_into().expect("chunk of 8"));
                self.word(at).store(v, Ordering::Relaxed);
                at += 8;
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut w = [0u8; 8];
                w[..rest.len()].copy_from_slice(rest);
                self.word(at)
                    .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: bounds and exclusivity are the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data_ptr(idx), src.len()) }
    }

    /// Copy ring bytes at the 8-aligned payload index `idx` into `dst` with word-sized
    /// atomic loads: the producer may be overwriting them concurrently (a lossy reader
    /// validates the copy afterwards). Atomic, not volatile: a volatile read racing with a
    /// write is still a data race in Rust's memory model; a relaxed atomic load is not, and
    /// compiles to a plain load on x86-64 and aarch64.
    ///
    /// The trailing partial word is loaded whole (it lies inside the 8-aligned record).
    /// Every word index is masked into the ring, so this is memory safe whatever `idx` is.
    pub(crate) fn copy_out_atomic(&self, idx: u64, dst: &mut [u8]) {
        let mut at = idx;
        let mut chunks = dst.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.word(at).load(Ordering::Relaxed).to_ne_bytes());
            at += 8;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.word(at).load(Ordering::Relaxed).to_ne_bytes();
            rest.copy_from_slice(&w[..rest.len()]);
        }
    }

    /// Copy ring bytes at `idx` into `dst`.
    ///
    /// # Safety
    /// `idx + dst.len() <= capacity`, and the protocol guarantees the producer does not
    /// write those bytes concurrently (a published record below the reader's cursor).
    #[inline]
    pub(crate) unsafe fn copy_out(&self, idx: u64, dst: &mut [u8]) {
        // SAFETY: bounds and the absence of writers are the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(self.data_ptr(idx), dst.as_mut_ptr(), dst.len()) }
    }

    /// Take liveness lock `id` without blocking: `Ok(false)` if a live owner holds it.
    pub(crate) fn try_lock(&self, id: LockId) -> io::Result<bool> {
        match &self.backing {
            Backing::Heap { locks, .. } => Ok(heap_lock(locks, id)
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()),
            Backing::Mapped(m) => m.try_lock(id),
        }
    }

    /// Release liveness lock `id` (held by this handle).
    pub(crate) fn unlock(&self, id: LockId) {
        match &self.backing {
            Backing::Heap { locks, .. } => heap_lock(locks, id).store(false, Ordering::Release),
            Backing::Mapped(m) => m.unlock(id),
        }
    }

    /// Does some other live handle hold lock `id`? Errors count as alive: never evict on
    /// a doubt.
    pub(crate) fn held_by_other(&self, id: LockId) -> bool {
        match &self.backing {
            Backing::Heap { locks, .. } => heap_lock(locks, id).load(Ordering::Acquire),
            Backing::Mapped(m) => m.held_by_other(id),
        }
    }

    /// Sleep while `*word == expected`, at most `timeout`.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) -> Wake {
        futex::wait(word, expected, timeout)
    }

    /// Can the producer of this region publish with only a compiler fence before it checks
    /// for sleepers (sleepers issuing `heavy_barrier` instead)? Mapped segments only, and
    /// only where the kernel offers expedited global membarrier (this process is then
    /// registered for it). Heap rings keep the symmetric fences, which Miri can check.
    pub(crate) fn enable_asymmetric_barrier(&self) -> bool {
        matches!(self.backing, Backing::Mapped(_)) && futex::register_for_heavy_barriers()
    }

    /// The heavy side of the asymmetric barrier (see `futex::heavy_barrier`).
    pub(crate) fn heavy_barrier(&self) -> bool {
        futex::heavy_barrier()
    }

    /// Wake every sleeper on `word`.
    pub(crate) fn wake_all(&self, word: &AtomicU32) {
        futex::wake_all(word);
    }

    /// Overwrite byte `at` of the segment as a misbehaving peer would (an atomic byte
    /// store, so it is not a data race with the ring's own atomic accesses).
    pub(crate) fn scribble_byte(&self, at: u64, value: u8) {
        assert!(at < self.geo.total_size);
        // SAFETY: `at` is inside the region; AtomicU8 has alignment 1.
        let byte = unsafe {
            &*(self.base.as_ptr().add(at as usize) as *const std::sync::atomic::AtomicU8)
        };
        byte.store(value, Ordering::Relaxed);
    }

    /// The mapped segment, if this region is one.
    pub(crate) fn mapped(&self) -> Option<&crate::segment::Mapped> {
        match &self.backing {
            Backing::Mapped(m) => Some(m),
            Backing::Heap { .. } => None,
        }
    }
}

fn heap_lock(locks: &[AtomicBool], id: LockId) -> &AtomicBool {
    &locks[id.byte() as usize]
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Backing::Heap { layout, .. } = &self.backing {
            // SAFETY: allocated in `Region::heap` with this layout, freed exactly once.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), *layout) }
        }
    }
}
