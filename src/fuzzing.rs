//! Entry points for the fuzz targets and hostile-segment tests: a segment given as raw
//! bytes (as a peer could have written it) goes through the same validation and the same
//! ring code as a mapped one. Not part of the stable API.

use crate::region::Region;
use crate::{Consumer, ConsumerBuilder, OpenError, Producer, SegmentError, StartAt, WaitPolicy};
use std::sync::Arc;

/// A heap copy of hostile segment bytes that passed validation.
#[derive(Clone)]
pub struct HostileSegment {
    region: Arc<Region>,
}

impl std::fmt::Debug for HostileSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileSegment")
            .field("geometry", self.region.geometry())
            .finish()
    }
}

impl HostileSegment {
    /// Validate `bytes` as a segment (exactly as opening a mapped segment does).
    ///
    /// # Errors
    /// The validation error.
    pub fn new(bytes: &[u8]) -> Result<HostileSegment, SegmentError> {
        Ok(HostileSegment {
            region: Arc::new(Region::heap_from_bytes(bytes)?),
        })
    }

    /// Attach a consumer (never blocks: use `try_recv` on it).
    ///
    /// # Errors
    /// As [`ConsumerBuilder::open`].
    pub fn consumer(&self, start: StartAt) -> Result<Consumer, OpenError> {
        ConsumerBuilder::default()
            .start_at(start)
            .wait_policy(WaitPolicy::BusySpin)
            .finish(Arc::clone(&self.region))
    }

    /// Take over as the producer.
    ///
    /// # Errors
    /// As [`ProducerBuilder::open`](crate::ProducerBuilder::open).
    pub fn producer(&self) -> Result<Producer, OpenError> {
        Producer::from_region(Arc::clone(&self.region), WaitPolicy::BusySpin)
    }

    /// Overwrite segment bytes at `offset` (wrapping into the segment) with `bytes`, as a
    /// misbehaving peer would, through atomic byte stores.
    pub fn scribble(&self, offset: u64, bytes: &[u8]) {
        let total = self.region.geometry().total_size;
        for (i, b) in bytes.iter().enumerate() {
            let at = (offset + i as u64) % total;
            self.region.scribble_byte(at, *b);
        }
    }

    /// Total size of the segment in bytes.
    pub fn len(&self) -> u64 {
        self.region.geometry().total_size
    }

    /// Never true: a valid segment has a header.
    pub fn is_empty(&self) -> bool {
        false
    }
}
