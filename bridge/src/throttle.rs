//! Log lines that cannot flood: the first event of a kind is logged at once, later ones at
//! most once a second with a count of what was folded in. Counters stay exact regardless.

use std::time::{Duration, Instant};

/// How often a repeated kind of event is logged at most.
const INTERVAL: Duration = Duration::from_secs(1);

/// Rate limiter for one kind of log line.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
    /// Events not logged since the last line.
    folded: u64,
}

impl Throttle {
    /// Whether to log this event now; if so, also returns how many earlier events were
    /// folded into it (not logged on their own).
    pub(crate) fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < INTERVAL => {
                self.folded += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.folded))
            }
        }
    }
}

/// " (and N more since the last report)" when events were folded, else "".
pub(crate) fn folded(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" (and {n} more not logged since the last report; the counters hold all)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_and_a_burst_is_folded() {
        let mut t = Throttle::default();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        t.last = Some(Instant::now() - INTERVAL);
        assert_eq!(t.admit(), Some(2));
    }
}
