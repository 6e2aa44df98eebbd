//! `shmcast top`: a snapshot every interval, with the producer's message and byte rates
//! (from its `next_seq` and `tail` between two snapshots) and every consumer's lag.
//!
//! Plain output: on a terminal each frame replaces the last (ANSI clear-screen); otherwise
//! frames follow each other, separated by a blank line.

use crate::args::TopArgs;
use crate::error::{self, Access, Failure};
use crate::out::{self, Align, Out, Table};
use crate::signals;
use crate::stat::{self, alive, gating, lag_messages, pid};
use crate::target::Target;
use shmcast::{OpenError, SegmentError, Snapshot};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Cursor home, clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Longest sleep between two checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

/// A producer's rates between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rates {
    /// Messages per second.
    pub(crate) messages: f64,
    /// Ring bytes per second (payloads, record headers and padding).
    pub(crate) bytes: f64,
}

/// Rates from `(next_seq, tail)` before and after `elapsed`; `None` if no time passed or a
/// counter went back (the segment was replaced by a new one).
pub(crate) fn rates(before: (u64, u64), after: (u64, u64), elapsed: Duration) -> Option<Rates> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let messages = after.0.checked_sub(before.0)?;
    let bytes = after.1.checked_sub(before.1)?;
    Some(Rates {
        messages: messages as f64 / secs,
        bytes: bytes as f64 / secs,
    })
}

pub(crate) fn run(args: &TopArgs) -> Result<(), Failure> {
    let target = Target::parse(&args.segment);
    signals::catch_stop().map_err(|e| Failure::new(format!("install the Ctrl-C handler: {e}")))?;
    let tty = std::io::stdout().is_terminal();
    let mut out = Out::new();
    // An error while the segment is being re-created (see below).
    let mut snap: Result<Snapshot, SegmentError> = Ok(target.inspect()?);
    let mut at = Instant::now();
    let mut previous: Option<(Snapshot, Instant)> = None;
    let mut frames = 0u64;
    loop {
        if tty {
            out.put(CLEAR)?;
        } else if frames > 0 {
            out.put("\n")?;
        }
        match &snap {
            Ok(snap) => {
                let rates = previous.as_ref().map(|(p, t)| {
                    rates(
                        (p.producer.next_seq, p.producer.tail),
                        (snap.producer.next_seq, snap.producer.tail),
                        at.duration_since(*t),
                    )
                });
                out.put(&frame(&target, snap, rates, args.interval))?;
            }
            Err(e) => out.put(&creating(&target, e, args.interval))?,
        }
        out.flush()?;
        frames += 1;
        if Some(frames) == args.iterations || !sleep(args.interval) {
            return Ok(());
        }
        let next = match target.inspect_unchecked() {
            Ok(s) => Ok(s),
            Err(OpenError::NotFound(_)) => {
                eprintln!(
                    "shmcast: segment {} was removed (its producer exited)",
                    target.describe()
                );
                return Ok(());
            }
            // A producer re-creating the segment between two frames: the new file exists
            // but its header is not written yet. Show what was found and look again at the
            // next frame (rates start over: the stream is a new one).
            Err(OpenError::Segment(e)) if e.may_be_in_creation() => Err(e),
            Err(e) => return Err(error::open(&target, &e, Access::Inspect)),
        };
        previous = match std::mem::replace(&mut snap, next) {
            Ok(before) if snap.is_ok() => Some((before, at)),
            _ => None,
        };
        at = Instant::now();
    }
}

/// Sleep `d`, waking to check for Ctrl-C; false if the user asked to stop.
fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if signals::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(POLL));
    }
}

/// One frame. `rates` is `None` for the first frame, `Some(None)` when none can be given.
fn frame(
    target: &Target,
    snap: &Snapshot,
    rates: Option<Option<Rates>>,
    interval: Duration,
) -> String {
    let mut s = format!(
        "shmcast top {}: every {interval:?} (Ctrl-C quits)\n\n",
        target.describe()
    );
    s.push_str(&stat::summary(target, snap));
    s.push_str(&match rates {
        None => "rate       measuring...\n".to_string(),
        Some(None) => "rate       - (the stream restarted: the segment was replaced)\n".to_string(),
        Some(Some(r)) => format!(
            "rate       {} msgs/s, {} (ring bytes: payloads and record headers)\n",
            out::rate(r.messages),
            out::byte_rate(r.bytes)
        ),
    });
    if !snap.consumers.is_empty() {
        let mut t = Table::new(&[
            ("SLOT", Align::Right),
            ("KIND", Align::Left),
            ("PID", Align::Right),
            ("STATE", Align::Left),
            ("LAG BYTES", Align::Right),
            ("LAG MSGS", Align::Right),
            ("FILL", Align::Right),
            ("GATING", Align::Left),
        ]);
        for c in &snap.consumers {
            t.row(vec![
                c.index.to_string(),
                stat::slot_kind(c.kind).to_string(),
                pid(c.pid),
                alive(c).to_string(),
                c.lag_bytes.to_string(),
                lag_messages(c),
                format!("{}%", fill(c.lag_bytes, snap.capacity)),
                gating(c).to_string(),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    s
}

/// The frame for a segment found without a valid header between two frames.
fn creating(target: &Target, e: &SegmentError, interval: Duration) -> String {
    format!(
        "shmcast top {}: every {interval:?} (Ctrl-C quits)\n\n\
         no valid header: {e}\n\
         (a producer may be re-creating the segment; looking again at the next frame)\n",
        target.describe()
    )
}

/// How much of the ring a lag fills, in percent (above 100 for a lapped lossy consumer).
fn fill(lag: u64, capacity: u64) -> u64 {
    (u128::from(lag) * 100 / u128::from(capacity.max(1))).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_over_elapsed_time() {
        let r = rates((10, 1000), (110, 4200), Duration::from_millis(500)).unwrap();
        assert_eq!(r.messages, 200.0);
        assert_eq!(r.bytes, 6400.0);
        let idle = rates((7, 64), (7, 64), Duration::from_secs(1)).unwrap();
        assert_eq!((idle.messages, idle.bytes), (0.0, 0.0));
    }

    #[test]
    fn no_rates_without_time_or_when_counters_go_back() {
        assert_eq!(rates((0, 0), (5, 50), Duration::ZERO), None);
        assert_eq!(rates((100, 5000), (3, 96), Duration::from_secs(1)), None);
        assert_eq!(
            rates((100, 5000), (103, 4000), Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn fill_is_a_percentage_of_the_ring() {
        assert_eq!(fill(0, 4096), 0);
        assert_eq!(fill(1024, 4096), 25);
        assert_eq!(fill(3 * 4096, 4096), 300);
        assert_eq!(fill(u64::MAX, 256), u64::MAX / 256 * 100 + 99);
    }
}
