//! A death notice through a futex word: a thread of this process owns a 4-byte word of a
//! shared mapping as a *robust futex*, so that when the process dies, however it dies
//! (`SIGKILL` included), the kernel itself marks the word [`OWNER_DIED`] and wakes a waiter
//! on it. Other processes can then sleep on the word (with `futex_waitv`, beside other
//! words) and learn of the death without polling.
//!
//! The kernel keeps one robust list per thread, which glibc uses for its own robust
//! mutexes; a list cannot be shared with that use. Hence a dedicated thread: it swaps its
//! own list in (keeping glibc's head to restore), writes its thread id into the word, and
//! sleeps until the guard is dropped, when it clears the word, wakes the waiters and puts
//! glibc's list back before it exits. A process forked from the owner has no such thread
//! (the kernel clears robust lists at fork): its copy of the guard never touches the word.
//!
//! The word is a hint, never proof: any process mapping it can write it. Whoever reads it
//! confirms a death with the liveness lock (`lock.rs`), and does not rely on it alone to
//! learn of one (a scribbled word would hide a death).
//!
//! Nothing here knows the ring: the region hands in the word's address.

use super::fork;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Set by the kernel in a robust futex word whose owner thread died (`FUTEX_OWNER_DIED`).
pub(crate) const OWNER_DIED: u32 = 0x4000_0000;
/// Set by a waiter before it sleeps on a robust word: the kernel wakes waiters of a dead
/// owner's word only if this bit is set (`FUTEX_WAITERS`).
pub(crate) const WAITERS: u32 = 0x8000_0000;
/// The owner's thread id in a robust word (`FUTEX_TID_MASK`).
pub(crate) const TID_MASK: u32 = 0x3fff_ffff;

/// `struct robust_list`.
#[repr(C)]
struct RobustList {
    next: *mut RobustList,
}

/// `struct robust_list_head`.
#[repr(C)]
struct RobustListHead {
    list: RobustList,
    futex_offset: libc::c_long,
    list_op_pending: *mut RobustList,
}

/// Stack of the owner thread: it only runs `own`.
const STACK: usize = 64 << 10;

/// A word owned by a thread of this process until dropped (see the module docs).
#[derive(Debug)]
pub(crate) struct RobustWord {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The fork generation the thread runs in.
    generation: u32,
}

impl RobustWord {
    /// Start a thread that owns `word` until the returned guard is dropped. An error if the
    /// thread could not be started or the kernel refused a robust list (then the word is
    /// left as it was).
    ///
    /// # Safety
    /// `word` is a 4-byte-aligned word that stays mapped until the guard is dropped (or, if
    /// the guard is leaked, for the rest of the process's life).
    pub(crate) unsafe fn own(word: *const AtomicU32) -> io::Result<RobustWord> {
        let generation = fork::generation();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        let addr = word as usize;
        let builder = std::thread::Builder::new()
            .name("shmcast-alive".into())
            .stack_size(STACK);
        // SAFETY: the caller keeps the word mapped while the guard lives, and the guard's
        // drop joins the thread.
        let thread = super::spawn_quiet(builder, move || unsafe { run(addr, ready_tx, stop_rx) })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(RobustWord {
                stop: Some(stop_tx),
                thread: Some(thread),
                generation,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("the robust futex thread exited early"))
            }
        }
    }
}

impl Drop for RobustWord {
    fn drop(&mut self) {
        if fork::generation() != self.generation {
            // A forked child: the thread does not exist here and the word belongs to the
            // parent. Touch nothing (the channel's lock may have been held at the fork).
            std::mem::forget(self.stop.take());
            std::mem::forget(self.thread.take());
            return;
        }
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Wake every process sleeping on `word` (a shared futex).
fn wake_all(word: &AtomicU32) {
    super::futex::wake_all(word);
}

/// The owner thread: swap in a robust list holding `addr`, write our thread id there, wait
/// for the stop, clear the word, restore the list we found.
///
/// # Safety
/// As [`RobustWord::own`]: `addr` stays mapped until this function returns.
unsafe fn run(addr: usize, ready: mpsc::SyncSender<io::Result<()>>, stop: mpsc::Receiver<()>) {
    // SAFETY: the caller's promise.
    let word = unsafe { &*(addr as *const AtomicU32) };
    // glibc's head for this thread, restored before we exit.
    let mut old_head: *mut RobustListHead = std::ptr::null_mut();
    let mut old_len: libc::size_t = 0;
    // SAFETY: pid 0 is this thread; both out-pointers are valid for writes.
    let got = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut old_head as *mut *mut RobustListHead,
            &mut old_len as *mut libc::size_t,
        )
    };
    if got != 0 {
        let _ = ready.send(Err(io::Error::last_os_error()));
        return;
    }
    // Both on the heap, owned by this frame, which outlives the registration: the list is
    // swapped back out below before they are freed. The kernel reads them only when this
    // thread exits or execs; `entry + futex_offset` is the word.
    let mut head = Box::new(RobustListHead {
        list: RobustList {
            next: std::ptr::null_mut(),
        },
        futex_offset: 0,
        list_op_pending: std::ptr::null_mut(),
    });
    let mut entry = Box::new(RobustList {
        next: &mut head.list,
    });
    let entry_ptr: *mut RobustList = &mut *entry;
    head.list.next = entry_ptr;
    head.futex_offset = (addr as libc::c_long).wrapping_sub(entry_ptr as libc::c_long);
    // SAFETY: `head` is a valid robust list head (a circular list of one entry) that lives
    // until it is swapped out below.
    let set = unsafe {
        libc::syscall(
            libc::SYS_set_robust_list,
            &mut *head as *mut RobustListHead,
            std::mem::size_of::<RobustListHead>(),
        )
    };
    if set != 0 {
        let _ = ready.send(Err(io::Error::last_os_error()));
        return;
    }
    // Registered first, then written: the word never names us while the kernel does not
    // know it. Relaxed: the word carries no data, only "this thread lives" (readers confirm
    // with the liveness lock). Waiters that slept on the value it held (a dead owner's)
    // are woken to look again.
    let before = word.swap(gettid() & TID_MASK, Relaxed);
    if before & WAITERS != 0 {
        wake_all(word);
    }
    let _ = ready.send(Ok(()));
    // Until the guard drops (the sender is dropped: `Err`).
    let _ = stop.recv();
    // Relaxed: as above. Waiters learn that the owner left (the producer closed; its lock
    // tells them so).
    let before = word.swap(0, Relaxed);
    if before & WAITERS != 0 {
        wake_all(word);
    }
    // Without a head before (a libc that registers none), register an empty one: the
    // kernel wants the length of a head whatever the pointer.
    let len = if old_head.is_null() {
        std::mem::size_of::<RobustListHead>()
    } else {
        old_len
    };
    // SAFETY: restores the head this thread had (glibc's, which lives in the thread's
    // descriptor, or none).
    let restored = unsafe { libc::syscall(libc::SYS_set_robust_list, old_head, len) };
    if restored != 0 {
        // Cannot happen (the kernel accepted this length before); if it did, the kernel
        // would still read our list when the thread exits: keep it valid (the word is
        // cleared, so the kernel finds nothing of ours there).
        std::mem::forget(entry);
        std::mem::forget(head);
    }
}

/// What a death notice says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A live owner: sleep on the word while it holds this value (`WAITERS` set).
    Owned(u32),
    /// Its owner died (the kernel marked it).
    Died,
    /// Nobody owns it: there is no notice to sleep on.
    Unowned,
}

/// Read the death notice `word` and make it ready to sleep on: set `WAITERS` (the kernel
/// wakes waiters of a dead owner's word only if it is set). On a death, clear `WAITERS`
/// and wake every waiter: the kernel woke only one, which passes the news on to the others
/// (of every process).
pub(crate) fn arm(word: &AtomicU32) -> Notice {
    // Relaxed, as every access to the notice: it carries no data, only "the owner lives"
    // (its writers are `run` above and the kernel); a death is confirmed by probing the
    // producer lock, whose Acquire orders what the producer did.
    let v = word.load(Relaxed);
    if v & OWNER_DIED != 0 {
        if v & WAITERS != 0
            && word
                .compare_exchange(v, v & !WAITERS, Relaxed, Relaxed)
                .is_ok()
        {
            wake_all(word);
        }
        return Notice::Died;
    }
    if v & TID_MASK == 0 {
        return Notice::Unowned;
    }
    if v & WAITERS != 0 {
        return Notice::Owned(v);
    }
    match word.compare_exchange(v, v | WAITERS, Relaxed, Relaxed) {
        Ok(_) => Notice::Owned(v | WAITERS),
        // It changed meanwhile: a sleep on the old value returns at once, and the caller
        // looks again.
        Err(_) => Notice::Owned(v),
    }
}
