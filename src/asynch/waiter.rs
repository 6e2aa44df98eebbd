//! The waiter: threads that sleep on the rings' futex words on behalf of asynchronous
//! handles and wake their tasks (see the module docs of [`crate::asynch`] for why).
//!
//! A handle that finds nothing to do announces a sleep on its futex line (the eventcount's
//! sleeper side, `ring/eventcount.rs`: read the word, set the `sleepers` flag, fence,
//! re-check) and registers `(word, value read, waker)` here. A waiter thread sleeps in
//! `futex_waitv` on up to 127 distinct words and its own private *control* word; it wakes
//! when a producer (or consumer) bumps a word and `FUTEX_WAKE`s it, as the eventcount's waker
//! side does for any sleeper, and wakes every task whose word no longer holds the value it
//! registered. Registrations on the same word share one slot of the vector.
//!
//! - **New words.** A registration pokes the control word (a private `FUTEX_WAKE`) only if
//!   its thread is not already watching the word; a word stays watched for [`LINGER`]
//!   after its last registration ended, so a consumer that catches up with its producer
//!   again and again registers without a syscall of its own.
//! - **Liveness.** A producer's process owns a *death notice* in its segment (the control
//!   line's `alive` word, a robust futex: `os/robust.rs`): when that process dies, however
//!   it dies, the kernel marks the word and wakes a waiter on it. A thread watching a data
//!   word with registrations sleeps on the segment's notice too (one more word of the same
//!   `futex_waitv`), so an idle wait costs no CPU and no system call until something
//!   happens. A notice that says "died" is confirmed by probing the producer's liveness
//!   lock (one `fcntl` per segment, whatever the number of waiting handles); then the
//!   registrations fire, and their next poll probes again and reports `ProducerDied`. The
//!   thread that wakes first passes the notice on to every other process's waiters (the
//!   kernel wakes only one). The notice is a hint that any process mapping the segment
//!   could scribble, so the lock is still probed every `NOTICE_BACKSTOP` (5 s) while anyone
//!   waits. Where no notice is owned (a producer that could not start its thread) or
//!   `futex_waitv` is missing, the lock is probed every `SLEEP_BOUND` (20 ms, the bound of
//!   the blocking sleeps) instead.
//! - **Nothing else to watch.** A data wait needs no other periodic check: eviction and
//!   close come with a bump of the data word, and a stream stuck on a corrupt record is
//!   detected before the handle registers (`ring/asynch.rs`). A space registration is
//!   handed back after `SLEEP_BOUND` (the producer's rescan then probes the consumers that
//!   gate it, reclaims dead ones and applies `evict_after`, as the blocking `send` does).
//! - **Shards.** More than 63 distinct words (each with its notice: 126 futex words, the
//!   kernel takes 128 per call, one is the control word) start another thread. Without
//!   `futex_waitv` (Linux before 5.16, or refused by a seccomp filter, or
//!   `SHMCAST_FUTEX_WAITV=0`) each thread watches one word with `FUTEX_WAIT_BITSET`: one
//!   thread per distinct word, probing liveness every `SLEEP_BOUND`.
//! - **Memory.** A watched word's region is kept mapped (an `Arc`) while the word is
//!   watched; a lingering word whose region no handle uses any more is dropped at the next
//!   tick.
//! - **fork.** A child forked without exec has none of these threads: the first
//!   registration in a new fork generation starts a new waiter (the parent's state is
//!   leaked in the child, never touched: its lock may have been held at the fork).

use super::sys::{self, FutexWaitv, Waited};
use crate::os::fork;
use crate::os::robust::{self, Notice};
use crate::region::{LockId, Region};
use crate::wait::{NOTICE_BACKSTOP, SLEEP_BOUND};
use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// How long a word stays watched after its last registration ended.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// Stack of a waiter thread: it only runs this loop and the tasks' `wake` functions.
const STACK: usize = 256 << 10;

/// Which futex line a registration waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A consumer waiting for data (`data` line): its producer's liveness is probed here.
    Data,
    /// A producer waiting for space (`space` line): handed back every `SLEEP_BOUND`.
    Space,
}

/// How a registration ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    /// Its word changed: something was published or released.
    Changed,
    /// Its word did not change: the producer's lock was found free, or a bound passed.
    /// The handle should probe its peers now.
    Unchanged,
}

const WAITING: u8 = 0;
const CHANGED: u8 = 1;
const UNCHANGED: u8 = 2;

/// Counters of this process's waiter (all handles, all threads), for benchmarks and
/// monitoring: see [`crate::asynch::waiter_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaiterStats {
    /// `futex_waitv` mode (`false`: one `FUTEX_WAIT` per thread and word).
    pub futex_waitv: bool,
    /// Waiter threads started.
    pub threads: u64,
    /// Waits registered by handles that found nothing to do.
    pub registrations: u64,
    /// Registrations that had to wake a waiter thread to add a word (a syscall).
    pub pokes: u64,
    /// Sleeps of the waiter threads (one futex syscall each).
    pub sleeps: u64,
    /// Tasks woken because their futex word changed.
    pub wakeups: u64,
    /// Tasks handed back without a change (a dead producer, or a bound passed).
    pub rechecks: u64,
    /// Liveness probes of producers (one `fcntl` each on a mapped segment).
    pub probes: u64,
    /// Producers' deaths learned from their death notice (the kernel marked it), before
    /// any probe.
    pub notices: u64,
}

#[derive(Default)]
struct Counters {
    threads: AtomicU64,
    registrations: AtomicU64,
    pokes: AtomicU64,
    sleeps: AtomicU64,
    wakeups: AtomicU64,
    rechecks: AtomicU64,
    probes: AtomicU64,
    notices: AtomicU64,
}

static COUNTERS: Counters = Counters {
    threads: AtomicU64::new(0),
    registrations: AtomicU64::new(0),
    pokes: AtomicU64::new(0),
    sleeps: AtomicU64::new(0),
    wakeups: AtomicU64::new(0),
    rechecks: AtomicU64::new(0),
    probes: AtomicU64::new(0),
    notices: AtomicU64::new(0),
};

fn count(c: &AtomicU64) {
    // Relaxed: statistics.
    c.fetch_add(1, Relaxed);
}

/// This process's waiter counters.
pub(crate) fn stats() -> WaiterStats {
    let c = &COUNTERS;
    WaiterStats {
        futex_waitv: waiter().waitv,
        threads: c.threads.load(Relaxed),
        registrations: c.registrations.load(Relaxed),
        pokes: c.pokes.load(Relaxed),
        sleeps: c.sleeps.load(Relaxed),
        wakeups: c.wakeups.load(Relaxed),
        rechecks: c.rechecks.load(Relaxed),
        probes: c.probes.load(Relaxed),
        notices: c.notices.load(Relaxed),
    }
}

/// A task waiting for a word to change.
struct Entry {
    id: u64,
    seen: u32,
    waker: Waker,
    /// Handed back (unchanged) at this time: space registrations only.
    deadline: Option<Instant>,
    state: Arc<AtomicU8>,
}

/// A futex word watched by a waiter thread.
struct Word {
    /// Keeps the word's memory mapped.
    region: Arc<Region>,
    kind: Kind,
    shard: usize,
    entries: Vec<Entry>,
    /// Since when nobody waits on it (it lingers).
    idle_since: Option<Instant>,
    /// A data word's producer death notice (`ControlLine::alive`), for a mapped segment.
    notice: Option<usize>,
    /// When to probe the producer's lock next (a data word with registrations).
    probe_at: Option<Instant>,
}

/// One waiter thread's share of the words.
struct Shard {
    /// Bumped (and woken) to tell the thread about a new word. Leaked: the thread reads
    /// it without the table's lock.
    control: &'static AtomicU32,
    /// The words (addresses) this thread watches.
    words: Vec<usize>,
    /// The words (and values) of the thread's current or last sleep.
    watching: Vec<usize>,
    /// Is the thread asleep (or about to be) on `watching`?
    asleep: bool,
}

struct Table {
    words: HashMap<usize, Word>,
    shards: Vec<Shard>,
    next_id: u64,
}

/// The waiter of one process (one per fork generation).
pub(crate) struct Waiter {
    generation: u32,
    /// `futex_waitv` available and allowed.
    waitv: bool,
    table: Mutex<Table>,
}

static WAITER: AtomicPtr<Waiter> = AtomicPtr::new(std::ptr::null_mut());

/// This process's waiter, made on first use (and again in a forked child).
fn waiter() -> &'static Waiter {
    let generation = fork::generation();
    loop {
        let p = WAITER.load(Acquire);
        if !p.is_null() {
            // SAFETY: waiters are leaked boxes, never freed once published.
            let w: &'static Waiter = unsafe { &*p };
            if w.generation == generation {
                return w;
            }
        }
        let new = Box::into_raw(Box::new(Waiter::new(generation)));
        // AcqRel: publishes the new waiter's fields; pairs with the Acquire load above.
        match WAITER.compare_exchange(p, new, AcqRel, Acquire) {
            // The replaced one, if any, belongs to the parent of a fork: leaked on purpose.
            // SAFETY: just published, never freed.
            Ok(_) => return unsafe { &*new },
            // Another thread published one first: ours was never shared.
            // SAFETY: `new` came from Box::into_raw above and nobody else has it.
            Err(_) => drop(unsafe { Box::from_raw(new) }),
        }
    }
}

impl Waiter {
    fn new(generation: u32) -> Waiter {
        Waiter {
            generation,
            waitv: crate::os::futex::waitv_usable(),
            table: Mutex::new(Table {
                words: HashMap::new(),
                shards: Vec::new(),
                next_id: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing under this lock can leave the table inconsistent halfway (no user code
        // runs under it: wakers are called after it is released).
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Words per thread (each may bring its death notice).
    fn capacity(&self) -> usize {
        if self.waitv {
            (sys::WAITV_MAX - 1) / 2
        } else {
            1
        }
    }
}

/// What [`register`] did.
pub(crate) enum Registered {
    /// The task will be woken.
    Waiting(Registration),
    /// The word already differs from the value seen: poll again now.
    Changed,
    /// No waiter thread could be started (the OS refused a thread): the task cannot sleep.
    NoThread,
}

/// A registered wait. Dropping it withdraws the wait (nothing else happens: a wait holds
/// no message and no space).
pub(crate) struct Registration {
    waiter: &'static Waiter,
    id: u64,
    word: usize,
    seen: u32,
    waker: Waker,
    state: Arc<AtomicU8>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("seen", &self.seen)
            .field("fired", &self.fired())
            .finish()
    }
}

/// Register a wait: wake `waker` once the futex word `word` (in `region`) no longer holds
/// `seen`, or when a bound passes for `kind`. The caller announced the sleep on the word's
/// line first (`prepare_wait`, `prepare_wait_for_space`).
///
/// # Safety
/// `word` points to a futex word inside `region`'s memory.
pub(crate) unsafe fn register(
    region: Arc<Region>,
    word: *const AtomicU32,
    seen: u32,
    kind: Kind,
    waker: &Waker,
) -> Registered {
    let w = waiter();
    let addr = word as usize;
    // SAFETY: the caller's promise; `region` keeps the memory mapped for this call.
    let current = unsafe { &*word }.load(Relaxed);
    if current != seen {
        return Registered::Changed;
    }
    let now = Instant::now();
    let state = Arc::new(AtomicU8::new(WAITING));
    let mut t = w.lock();
    let shard = match t.words.get(&addr) {
        Some(word) => word.shard,
        None => {
            let Some(shard) = shard_with_room(w, &mut t) else {
                return Registered::NoThread;
            };
            t.shards[shard].words.push(addr);
            let notice = match kind {
                Kind::Data => region.alive_word().map(|a| a as *const AtomicU32 as usize),
                Kind::Space => None,
            };
            t.words.insert(
                addr,
                Word {
                    region,
                    kind,
                    shard,
                    entries: Vec::new(),
                    idle_since: None,
                    notice,
                    probe_at: None,
                },
            );
            shard
        }
    };
    let id = t.next_id;
    t.next_id += 1;
    let deadline = match kind {
        Kind::Data => None,
        Kind::Space => Some(now + SLEEP_BOUND),
    };
    let word_state = t.words.get_mut(&addr).expect("inserted above");
    word_state.idle_since = None;
    word_state.entries.push(Entry {
        id,
        seen,
        waker: waker.clone(),
        deadline,
        state: Arc::clone(&state),
    });
    let first = word_state.entries.len() == 1;
    // The thread watches this word already (it then wakes when the word changes, and
    // watches its producer's liveness, also while the word lingers), or it is awake and
    // will see the entry before it sleeps. A space word's bound is armed only while it has
    // registrations: the first one pokes.
    let s = &t.shards[shard];
    let poke = s.asleep && (!s.watching.contains(&addr) || (kind == Kind::Space && first));
    let control = s.control;
    drop(t);
    count(&COUNTERS.registrations);
    if poke {
        // Release: the thread's Acquire load of the control word (under the table's lock)
        // then sees the new entry. Defensive (redundant: the entry is also under the lock).
        control.fetch_add(1, Release);
        sys::futex_wake_private(control);
        count(&COUNTERS.pokes);
    }
    Registered::Waiting(Registration {
        waiter: w,
        id,
        word: addr,
        seen,
        waker: waker.clone(),
        state,
    })
}

/// A shard that can take one more word, starting a new thread if none can. `None` if the
/// OS refused the thread.
fn shard_with_room(w: &'static Waiter, t: &mut Table) -> Option<usize> {
    let cap = w.capacity();
    if let Some(i) = t.shards.iter().position(|s| s.words.len() < cap) {
        return Some(i);
    }
    let i = t.shards.len();
    let control: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
    let builder = std::thread::Builder::new()
        .name("shmcast-waiter".into())
        .stack_size(STACK);
    // Every signal blocked: it belongs to the application's threads.
    let spawned = crate::os::spawn_quiet(builder, move || run(w, i, control));
    if spawned.is_err() {
        return None;
    }
    count(&COUNTERS.threads);
    t.shards.push(Shard {
        control,
        words: Vec::new(),
        watching: Vec::new(),
        // Awake: it scans the table before its first sleep.
        asleep: false,
    });
    Some(i)
}

impl Registration {
    /// How the wait ended, if it did.
    pub(crate) fn fired(&self) -> Option<Fired> {
        // Acquire pairs with the thread's Release store when it fires the entry.
        match self.state.load(Acquire) {
            WAITING => None,
            CHANGED => Some(Fired::Changed),
            _ => Some(Fired::Unchanged),
        }
    }

    /// Has the word changed since the registration (the thread may not have noticed yet)?
    pub(crate) fn word_changed(&self) -> bool {
        // SAFETY: while registered, the word's `Word` entry holds the region (an Arc), and
        // the handle that registered holds it too; the caller is that handle.
        unsafe { &*(self.word as *const AtomicU32) }.load(Relaxed) != self.seen
    }

    /// Wake `waker` (instead of the one given before) when the wait ends. Check
    /// [`Self::fired`] after: it may have ended meanwhile, with the old waker.
    pub(crate) fn set_waker(&mut self, waker: &Waker) {
        if self.waker.will_wake(waker) {
            return;
        }
        self.waker = waker.clone();
        if fork::generation() != self.waiter.generation {
            return;
        }
        let mut t = self.waiter.lock();
        if let Some(word) = t.words.get_mut(&self.word) {
            if let Some(e) = word.entries.iter_mut().find(|e| e.id == self.id) {
                e.waker = waker.clone();
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.fired().is_some() || fork::generation() != self.waiter.generation {
            return;
        }
        let mut t = self.waiter.lock();
        if let Some(word) = t.words.get_mut(&self.word) {
            word.entries.retain(|e| e.id != self.id);
        }
    }
}

/// A waiter thread: watch shard `shard`'s words until the process exits.
fn run(w: &'static Waiter, shard: usize, control: &'static AtomicU32) {
    let mut waitv: Vec<FutexWaitv> = Vec::new();
    // Regions of the words being watched, kept mapped during the sleep.
    let mut keep: Vec<Arc<Region>> = Vec::new();
    let mut wake: Vec<Waker> = Vec::new();
    // (address, value) of every word to sleep on: each watched word, then its notice.
    let mut watch: Vec<(usize, u32)> = Vec::new();
    loop {
        keep.clear();
        watch.clear();
        waitv.clear();
        let deadline;
        // Acquire pairs with the Release bump of a poke (see `register`). Defensive
        // (redundant: the load is under the table's lock, which orders the entries).
        let c;
        {
            let mut t = w.lock();
            c = control.load(Acquire);
            let now = Instant::now();
            let mut earliest: Option<Instant> = None;
            let addrs = std::mem::take(&mut t.shards[shard].words);
            let mut kept = Vec::with_capacity(addrs.len());
            let mut watching = Vec::with_capacity(addrs.len());
            for addr in addrs {
                let word = t
                    .words
                    .get_mut(&addr)
                    .expect("a shard's words are in the table");
                let scan = scan_word(addr, word, now, w.waitv, &mut wake);
                if scan.drop_word {
                    t.words.remove(&addr);
                    continue;
                }
                if let Some(at) = scan.wake_at {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                }
                kept.push(addr);
                watching.push(addr);
                keep.push(Arc::clone(&t.words[&addr].region));
                watch.push((addr, scan.value));
                if let Some(notice) = scan.notice {
                    watch.push(notice);
                }
            }
            let s = &mut t.shards[shard];
            s.words = kept;
            s.watching = watching;
            s.asleep = true;
            deadline = earliest;
        }
        for waker in wake.drain(..) {
            waker.wake();
        }
        count(&COUNTERS.sleeps);
        let waited = if w.waitv {
            waitv.push(FutexWaitv::private(control, c));
            waitv.extend(
                watch
                    .iter()
                    .map(|&(a, v)| FutexWaitv::shared(a as *const AtomicU32, v)),
            );
            // SAFETY: the control word is leaked (lives for ever); every other address is
            // a futex word (or a notice) of a region in `keep`, mapped until after the call.
            unsafe { sys::futex_waitv(&waitv, deadline) }
        } else if let Some(&(a, v)) = watch.first() {
            let left =
                deadline.map_or(SLEEP_BOUND, |d| d.saturating_duration_since(Instant::now()));
            // SAFETY: a futex word of the region in `keep`, mapped until after the call.
            let word = unsafe { &*(a as *const AtomicU32) };
            match crate::os::futex::wait(word, v, left) {
                crate::os::futex::Wake::Woken => Waited::Woken,
                crate::os::futex::Wake::TimedOut => Waited::TimedOut,
            }
        } else {
            sys::futex_wait_private(control, c, None)
        };
        if waited == Waited::Fault {
            // Cannot happen (every region is kept mapped); never spin if it does.
            std::thread::sleep(SLEEP_BOUND);
        }
    }
}

/// What the scan of one word found.
struct Scan {
    /// The word's value (sleep while it holds it).
    value: u32,
    /// Its producer's death notice to sleep on as well: (address, value).
    notice: Option<(usize, u32)>,
    /// When the thread must look at the word again without a wake-up, if ever.
    wake_at: Option<Instant>,
    /// Stop watching it: it lingered long enough, or no handle uses its region any more.
    drop_word: bool,
}

/// Scan one word at `now`: fire the entries whose word changed, whose producer died, or
/// whose bound passed (their wakers go to `wake`); arm the producer's death notice of a
/// data word (with `futex_waitv`) and probe the producer's lock when it is due.
fn scan_word(
    addr: usize,
    word: &mut Word,
    now: Instant,
    waitv: bool,
    wake: &mut Vec<Waker>,
) -> Scan {
    // SAFETY: `word.region` keeps the memory of this futex word mapped.
    let value = unsafe { &*(addr as *const AtomicU32) }.load(Relaxed);
    let mut wake_at: Option<Instant> = None;
    let mut at = |t: Instant| wake_at = Some(wake_at.map_or(t, |w: Instant| w.min(t)));
    let mut notice = None;
    let mut dead = false;
    if word.kind == Kind::Data {
        let said = match word.notice {
            // SAFETY: the notice lies in `word.region`, which stays mapped.
            Some(n) if waitv => robust::arm(unsafe { &*(n as *const AtomicU32) }),
            _ => Notice::Unowned,
        };
        let interval = match said {
            Notice::Owned(v) => {
                notice = Some((word.notice.expect("armed above"), v));
                NOTICE_BACKSTOP
            }
            Notice::Died | Notice::Unowned => SLEEP_BOUND,
        };
        let died = matches!(said, Notice::Died);
        let due = died || word.probe_at.is_some_and(|t| now >= t);
        if word.probe_at.is_none() || due {
            word.probe_at = Some(now + interval);
        }
        if due && !word.entries.is_empty() {
            count(&COUNTERS.probes);
            dead = !word.region.held_by_other(LockId::Producer);
            if dead && died {
                count(&COUNTERS.notices);
            }
        }
        // A notice that says "died" while the lock is held: a new producer is taking over
        // (its notice follows) or the word was scribbled: probe on every tick meanwhile.
        at(word.probe_at.expect("set above"));
    }
    let mut i = 0;
    while i < word.entries.len() {
        let e = &word.entries[i];
        let fired = if e.seen != value {
            CHANGED
        } else if dead || e.deadline.is_some_and(|d| now >= d) {
            UNCHANGED
        } else {
            if let Some(d) = e.deadline {
                at(d);
            }
            i += 1;
            continue;
        };
        let e = word.entries.swap_remove(i);
        // Release pairs with the Acquire load in `Registration::fired`.
        e.state.store(fired, Release);
        count(if fired == CHANGED {
            &COUNTERS.wakeups
        } else {
            &COUNTERS.rechecks
        });
        wake.push(e.waker);
    }
    if !word.entries.is_empty() {
        word.idle_since = None;
        return Scan {
            value,
            notice,
            wake_at,
            drop_word: false,
        };
    }
    let since = *word.idle_since.get_or_insert(now);
    // Only the table holds the region: every handle on it is gone.
    let unused = Arc::strong_count(&word.region) == 1;
    let expires = since + LINGER;
    at(expires);
    Scan {
        value,
        notice,
        wake_at,
        drop_word: unused || now >= expires,
    }
}
