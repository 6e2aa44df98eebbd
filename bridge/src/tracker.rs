//! Loss accounting on the importing side: from each sample's header, decide whether to
//! import it and count exactly what is missing before it.
//!
//! Pure bookkeeping, no I/O: the importer feeds it headers in arrival order and logs and
//! counts what it returns.

use crate::wire::{Header, Kind};

/// How far the importer has got in the remote stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The source ring's identity.
    pub source: u64,
    /// The exporter attachment last heard from.
    pub session: u64,
    /// When that attachment started (ns since the Unix epoch).
    pub session_start: u64,
    /// The last `pub_seq` seen from that attachment.
    pub pub_seq: u64,
    /// The last source ring sequence number seen from that attachment.
    pub seen_ring_seq: u64,
    /// Every source sequence number below this one was imported or reported lost.
    pub next: u64,
    /// The source stream ended cleanly (an end-of-stream sample was seen).
    pub ended: bool,
}

/// Messages missing before a sample, by cause. The total is exact; see each field for its
/// attribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    /// The first missing source sequence number; the gap is
    /// `first .. first + total()`.
    pub first: u64,
    /// Published by the exporter but never received: dropped by zenoh (congestion control
    /// `drop`), lost with a broken link, or published while this importer was down.
    pub in_transit: u64,
    /// Never published: a lossy export fell behind its ring (`Lagged`).
    pub at_source: u64,
    /// Lost around an exporter restart: published while no exporter was attached, or in
    /// flight when the previous exporter died (the two cannot be told apart).
    pub across_restart: u64,
}

impl Gap {
    /// Every message missing, whatever the cause.
    pub fn total(&self) -> u64 {
        self.in_transit + self.at_source + self.across_restart
    }
}

/// How a sample relates to what came before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first sample this importer has any record of: nothing before it is known.
    Joined,
    /// A new exporter attachment to the same source ring (an exporter restart).
    NewSession,
    /// A different source ring (recreated, or another ring on the same key expression):
    /// the two streams' sequence numbers are unrelated.
    NewSource {
        /// The previous source's first unaccounted sequence number.
        previous_next: u64,
        /// Whether the previous source had ended cleanly.
        previous_ended: bool,
    },
}

/// What to do with a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A data sample to import, after the gap (if any) is reported.
    Import {
        /// Whether it starts a new session or source.
        start: Option<Start>,
        /// Messages missing right before it.
        gap: Option<Gap>,
    },
    /// An end-of-stream sample: the source ring was closed by its producer.
    End {
        /// Whether it starts a new session or source.
        start: Option<Start>,
        /// Messages missing at the end of the stream.
        gap: Option<Gap>,
    },
    /// A message already imported (an exporter restarted behind the point it reached,
    /// or a redelivery): dropped.
    Duplicate {
        /// Whether it starts a new session.
        start: Option<Start>,
    },
    /// From an exporter attachment that a newer one superseded (two exporters on one key
    /// expression, or a late sample from a dead one): dropped.
    Stale,
}

/// The importer's view of the remote stream.
///
/// # Examples
/// ```
/// use shmcast_bridge::tracker::{Gap, Tracker, Verdict};
/// use shmcast_bridge::wire::{Header, Kind};
/// let sample = |pub_seq, ring_seq| Header {
///     kind: Kind::Data,
///     source: 1,
///     session: 2,
///     session_start: 0,
///     pub_seq,
///     ring_seq,
/// };
/// let mut t = Tracker::default();
/// t.observe(&sample(0, 100));
/// // Two samples lost on the way, and 5 messages the (lossy) exporter never published.
/// let gap = Gap { first: 101, in_transit: 2, at_source: 5, across_restart: 0 };
/// assert_eq!(t.observe(&sample(3, 108)), Verdict::Import { start: None, gap: Some(gap) });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    pos: Option<Position>,
    /// Attachments superseded by a newer one (most recent first-in, oldest overwritten).
    retired: [u64; RETIRED],
    retired_next: usize,
}

/// How many superseded exporter attachments are remembered to refuse their late samples.
const RETIRED: usize = 8;

impl Tracker {
    /// A tracker that resumes at `pos` (from a previous importer's saved state), or knows
    /// nothing yet.
    pub fn new(pos: Option<Position>) -> Tracker {
        Tracker {
            pos,
            ..Tracker::default()
        }
    }

    /// Where the importer is.
    pub fn position(&self) -> Option<Position> {
        self.pos
    }

    /// Account for one sample, in arrival order.
    pub fn observe(&mut self, h: &Header) -> Verdict {
        let end = h.kind == Kind::End;
        // Publication numbers count data and end samples alike: each number skipped is one
        // sample lost between the hosts.
        // A data sample at r accounts for everything below r + 1; an end sample carries the
        // next number e and accounts for everything below e.
        let upto = if end {
            h.ring_seq
        } else {
            h.ring_seq.saturating_add(1)
        };
        let here = |next: u64, ended: bool| Position {
            source: h.source,
            session: h.session,
            session_start: h.session_start,
            pub_seq: h.pub_seq,
            seen_ring_seq: h.ring_seq,
            next,
            ended,
        };
        let Some(l) = self.pos else {
            self.pos = Some(here(upto, end));
            return verdict(end, Some(Start::Joined), None);
        };
        let mut start = None;
        if h.session != l.session {
            // Sessions are ordered by arrival, not by clocks (hosts' clocks may disagree): a
            // session never heard of is newer; one that was superseded is stale.
            if self.retired.contains(&h.session) {
                return Verdict::Stale;
            }
            self.retired[self.retired_next] = l.session;
            self.retired_next = (self.retired_next + 1) % RETIRED;
            if h.source != l.source {
                self.pos = Some(here(upto, end));
                let start = Start::NewSource {
                    previous_next: l.next,
                    previous_ended: l.ended,
                };
                return verdict(end, Some(start), None);
            }
            start = Some(Start::NewSession);
        } else if h.pub_seq <= l.pub_seq {
            // At or below the last number seen from this attachment: redelivered.
            return Verdict::Duplicate { start: None };
        }
        if !end && h.ring_seq < l.next {
            // Imported already: an exporter restarted behind the point this importer reached.
            self.pos = Some(here(l.next, l.ended));
            return Verdict::Duplicate { start };
        }
        let lost = h.ring_seq.saturating_sub(l.next);
        self.pos = Some(here(upto.max(l.next), end));
        let gap = (lost > 0).then(|| {
            let first = l.next;
            if start.is_some() {
                Gap {
                    first,
                    across_restart: lost,
                    ..Gap::default()
                }
            } else {
                // Each number the exporter skipped is one sample lost between the hosts.
                let in_transit = (h.pub_seq - l.pub_seq - 1).min(lost);
                Gap {
                    first,
                    in_transit,
                    at_source: lost - in_transit,
                    across_restart: 0,
                }
            }
        });
        verdict(end, start, gap)
    }
}

fn verdict(end: bool, start: Option<Start>, gap: Option<Gap>) -> Verdict {
    if end {
        Verdict::End { start, gap }
    } else {
        Verdict::Import { start, gap }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: u64 = 7;

    fn data(session: u64, pub_seq: u64, ring_seq: u64) -> Header {
        Header {
            kind: Kind::Data,
            source: SRC,
            session,
            session_start: session * 1000,
            pub_seq,
            ring_seq,
        }
    }

    fn end(session: u64, pub_seq: u64, ring_seq: u64) -> Header {
        Header {
            kind: Kind::End,
            ..data(session, pub_seq, ring_seq)
        }
    }

    fn import(gap: Option<Gap>) -> Verdict {
        Verdict::Import { start: None, gap }
    }

    #[test]
    fn a_contiguous_stream_has_no_gaps() {
        let mut t = Tracker::default();
        assert_eq!(
            t.observe(&data(1, 0, 0)),
            Verdict::Import {
                start: Some(Start::Joined),
                gap: None
            }
        );
        for i in 1..100 {
            assert_eq!(t.observe(&data(1, i, i)), import(None));
        }
        assert_eq!(t.position().unwrap().next, 100);
    }

    #[test]
    fn a_late_joiner_reports_no_loss_before_its_first_sample() {
        let mut t = Tracker::default();
        assert_eq!(
            t.observe(&data(1, 500, 9000)),
            Verdict::Import {
                start: Some(Start::Joined),
                gap: None
            }
        );
        assert_eq!(t.observe(&data(1, 501, 9001)), import(None));
    }

    #[test]
    fn skipped_publication_numbers_are_transit_loss() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 0));
        let gap = Gap {
            first: 1,
            in_transit: 3,
            ..Gap::default()
        };
        assert_eq!(t.observe(&data(1, 4, 4)), import(Some(gap)));
    }

    #[test]
    fn ring_numbers_skipped_by_a_contiguous_publisher_are_source_loss() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 10));
        // Lossy export lagged by 5, and then one sample was dropped in transit.
        let gap = Gap {
            first: 11,
            at_source: 5,
            ..Gap::default()
        };
        assert_eq!(t.observe(&data(1, 1, 16)), import(Some(gap)));
        let gap = Gap {
            first: 17,
            in_transit: 1,
            at_source: 2,
            ..Gap::default()
        };
        assert_eq!(t.observe(&data(1, 3, 20)), import(Some(gap)));
    }

    #[test]
    fn an_exporter_restart_reports_the_gap_in_ring_numbers() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 0));
        t.observe(&data(1, 1, 1));
        let gap = Gap {
            first: 2,
            across_restart: 40,
            ..Gap::default()
        };
        assert_eq!(
            t.observe(&data(2, 0, 42)),
            Verdict::Import {
                start: Some(Start::NewSession),
                gap: Some(gap)
            }
        );
        assert_eq!(t.observe(&data(2, 1, 43)), import(None));
    }

    #[test]
    fn an_exporter_restarting_behind_is_deduplicated_without_loss() {
        let mut t = Tracker::default();
        for i in 0..10 {
            t.observe(&data(1, i, i));
        }
        // The new attachment starts at the oldest message still in the ring: 5.
        assert_eq!(
            t.observe(&data(2, 0, 5)),
            Verdict::Duplicate {
                start: Some(Start::NewSession)
            }
        );
        for i in 1..5 {
            assert_eq!(
                t.observe(&data(2, i, 5 + i)),
                Verdict::Duplicate { start: None }
            );
        }
        assert_eq!(t.observe(&data(2, 5, 10)), import(None));
        // A transit loss among the duplicates is no loss: only number 11 is missing here.
        let gap = Gap {
            first: 11,
            in_transit: 1,
            ..Gap::default()
        };
        assert_eq!(t.observe(&data(2, 7, 12)), import(Some(gap)));
    }

    #[test]
    fn samples_from_a_superseded_session_are_stale() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 100));
        t.observe(&data(2, 0, 101));
        assert_eq!(t.observe(&data(1, 1, 101)), Verdict::Stale);
        assert_eq!(t.observe(&data(2, 1, 102)), import(None));
    }

    #[test]
    fn redelivered_samples_are_duplicates() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 0));
        t.observe(&data(1, 1, 1));
        assert_eq!(
            t.observe(&data(1, 1, 1)),
            Verdict::Duplicate { start: None }
        );
    }

    #[test]
    fn a_new_source_restarts_numbering_without_claiming_loss() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 0));
        t.observe(&end(1, 1, 1));
        let h = Header {
            source: SRC + 1,
            ..data(2, 0, 0)
        };
        assert_eq!(
            t.observe(&h),
            Verdict::Import {
                start: Some(Start::NewSource {
                    previous_next: 1,
                    previous_ended: true
                }),
                gap: None
            }
        );
    }

    #[test]
    fn an_end_sample_reports_the_lost_tail() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 0));
        // Two samples published after 0 were lost, and the stream had 5 messages.
        let gap = Gap {
            first: 1,
            in_transit: 2,
            at_source: 2,
            ..Gap::default()
        };
        assert_eq!(
            t.observe(&end(1, 3, 5)),
            Verdict::End {
                start: None,
                gap: Some(gap)
            }
        );
        let pos = t.position().unwrap();
        assert!(pos.ended);
        assert_eq!(pos.next, 5);
        // A takeover continues the same source: no double counting of the tail.
        assert_eq!(
            t.observe(&data(2, 0, 5)),
            Verdict::Import {
                start: Some(Start::NewSession),
                gap: None
            }
        );
    }

    #[test]
    fn a_stream_continued_after_its_end_by_a_takeover_has_no_gap() {
        let mut t = Tracker::default();
        t.observe(&data(1, 0, 0));
        assert_eq!(
            t.observe(&end(1, 1, 1)),
            Verdict::End {
                start: None,
                gap: None
            }
        );
        assert_eq!(t.observe(&data(1, 2, 1)), import(None));
        assert!(!t.position().unwrap().ended);
    }

    #[test]
    fn a_resumed_tracker_counts_what_was_published_while_the_importer_was_down() {
        let mut t = Tracker::default();
        for i in 0..10 {
            t.observe(&data(1, i, i));
        }
        let mut resumed = Tracker::new(t.position());
        let gap = Gap {
            first: 10,
            in_transit: 15,
            ..Gap::default()
        };
        assert_eq!(resumed.observe(&data(1, 25, 25)), import(Some(gap)));
    }
}
