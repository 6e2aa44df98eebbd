//! Hooks for the asynchronous handles (`crate::asynch`, feature `tokio`): the non-blocking
//! receives of `cursor.rs` and `lossy.rs`, with the liveness probe forced when an
//! asynchronous wait ended without a wake-up (as `wait_for` forces it after a futex sleep
//! that timed out). The waits themselves use the hooks of `eventcount.rs`
//! (`prepare_wait`, `prepare_wait_for_space`).

use super::attach::RingConsumer;
use super::cursor::{Ended, Record};
use crate::error::RecvTimeoutError;
use crate::region::Region;
use std::sync::Arc;

impl RingConsumer {
    /// The region this consumer reads (the waiter keeps it mapped while it watches a futex
    /// word in it).
    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// [`Self::try_recv`], probing the producer's liveness lock now if `force_probe`.
    /// `Ok(None)`: nothing now. Errors as `wait_for` reports them (never `Timeout`).
    #[inline]
    pub(crate) fn try_recv_probing(
        &mut self,
        force_probe: bool,
    ) -> Result<Option<Record>, RecvTimeoutError> {
        if let Some(rec) = self.poll_fast() {
            return Ok(Some(rec));
        }
        self.try_poll_probing(force_probe, Self::poll)
    }

    /// [`Self::try_recv_lossy`], probing the producer's liveness lock now if `force_probe`.
    pub(crate) fn try_recv_lossy_probing(
        &mut self,
        dst: &mut Vec<u8>,
        force_probe: bool,
    ) -> Result<Option<u64>, RecvTimeoutError> {
        self.try_poll_probing(force_probe, |r| r.poll_lossy(dst))
    }

    /// `try_poll` with the probe forced on demand: one poll, then end-of-stream detection,
    /// then (unless evicted) one more poll that delivers anything published before the end.
    ///
    /// Every poll that finds nothing also checks that the stream is not stuck on a corrupt
    /// record (`check_stuck`; the blocking wait does so at its probes): an asynchronous
    /// wait that follows sleeps until the data word changes, with no periodic look, so a
    /// record that can never be read must be reported before it registers.
    fn try_poll_probing<T>(
        &mut self,
        force_probe: bool,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, RecvTimeoutError>,
    ) -> Result<Option<T>, RecvTimeoutError> {
        if let Some(v) = poll(self)? {
            return Ok(Some(v));
        }
        self.check_stuck()?;
        let Some(ended) = self.check_ended(force_probe)? else {
            return Ok(None);
        };
        if ended != Ended::Evicted {
            if let Some(v) = poll(self)? {
                return Ok(Some(v));
            }
        }
        Err(ended.into())
    }
}
