//! How a handle waits: spin, then yield, then sleep on a futex.

use std::time::Duration;

/// How long one futex sleep may last before the sleeper re-checks peer liveness, even if
/// nobody woke it (a waker may have died between publishing and waking): the producer's
/// sleeps for space, and a consumer's where it cannot sleep on the producer's death notice
/// as well (see `NOTICE_BACKSTOP`).
pub(crate) const SLEEP_BOUND: Duration = Duration::from_millis(20);

/// How long a consumer's sleep may last while it also sleeps on the producer's death
/// notice (the kernel wakes it if the producer dies): the notice is a hint another process
/// could scribble, so the producer's lock is still probed this often.
pub(crate) const NOTICE_BACKSTOP: Duration = Duration::from_secs(5);

/// How often a gated producer (or a starved consumer) probes its peers' liveness locks.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(5);

/// While spinning, a waiting consumer looks at the end of the stream, its deadline and its
/// cursor publication every this many polls.
pub(crate) const CHECK_EVERY: u32 = 64;

/// How a blocking call waits for data (consumer) or space (producer).
///
/// Every policy re-checks the ring between steps; they differ in what they do while nothing
/// changes. Waking a sleeper costs the peer a syscall only while somebody actually sleeps.
///
/// # Examples
/// ```
/// use shmcast::WaitPolicy;
/// // Dedicated core, lowest latency, 100% CPU while idle:
/// let spin = WaitPolicy::BusySpin;
/// // The default: a short spin, a few yields, then a futex sleep.
/// assert_eq!(WaitPolicy::default(), WaitPolicy::Adaptive { spins: 4096, yields: 8 });
/// // Idle-friendly: sleep at once.
/// let sleepy = WaitPolicy::Adaptive { spins: 0, yields: 0 };
/// # let _ = (spin, sleepy);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Spin forever (with a CPU pause hint). Never sleeps, never yields.
    BusySpin,
    /// Spin `spins` times, then yield the CPU between checks. Never sleeps.
    SpinYield {
        /// Spins before the first yield.
        spins: u32,
    },
    /// Spin `spins` times, yield `yields` times, then sleep on a futex (bounded sleeps,
    /// woken by the peer).
    Adaptive {
        /// Spins before yielding.
        spins: u32,
        /// Yields before sleeping.
        yields: u32,
    },
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy::Adaptive {
            spins: 4096,
            yields: 8,
        }
    }
}

/// What to do next while waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Spin,
    Yield,
    Sleep,
}

impl WaitPolicy {
    /// How many of the first polls of a wait a consumer that asked for a tight spin
    /// (`ConsumerBuilder::tight_spin`) makes in its inlined fast loop (a load of the stamp
    /// at its cursor and a pause, nothing else): the policy's spins, at most
    /// [`CHECK_EVERY`]; none under loom (where the wait sleeps at once).
    #[inline]
    pub(crate) fn fast_spins(&self) -> u32 {
        if cfg!(shmcast_loom) {
            return 0;
        }
        match *self {
            WaitPolicy::BusySpin => CHECK_EVERY,
            WaitPolicy::SpinYield { spins } | WaitPolicy::Adaptive { spins, .. } => {
                spins.min(CHECK_EVERY)
            }
        }
    }

    /// The action for the `n`-th consecutive unsuccessful check.
    #[inline]
    pub(crate) fn step(&self, n: u32) -> Step {
        #[cfg(shmcast_loom)]
        {
            // Under loom spinning only multiplies interleavings: sleep at once (policies
            // that never sleep yield instead).
            let _ = n;
            return match self {
                WaitPolicy::Adaptive { .. } => Step::Sleep,
                _ => Step::Yield,
            };
        }
        #[cfg(not(shmcast_loom))]
        match *self {
            WaitPolicy::BusySpin => Step::Spin,
            WaitPolicy::SpinYield { spins } => {
                if n < spins {
                    Step::Spin
                } else {
                    Step::Yield
                }
            }
            WaitPolicy::Adaptive { spins, yields } => {
                if n < spins {
                    Step::Spin
                } else if n < spins.saturating_add(yields) {
                    Step::Yield
                } else {
                    Step::Sleep
                }
            }
        }
    }
}
