//! Import: subscribe to a key expression and produce every message into a local ring.

use crate::error::{zenoh_err, BridgeError};
use crate::export::StopHandle;
use crate::state::StateFile;
use crate::throttle::{folded, Throttle};
use crate::tracker::{Gap, Position, Start, Tracker, Verdict};
use crate::wire::{Header, HEADER_LEN};
use shmcast::{OpenError, Producer, SendTimeoutError, WaitPolicy};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// How long a send into a full ring waits before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(50);

/// Options of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The local ring's shared-memory name. It is created, or taken over if it exists
    /// without a live producer (a restarted importer continues its stream).
    pub ring: String,
    /// The key expression to subscribe to.
    pub key: String,
    /// Capacity of a created ring, in bytes (a power of two). Default 4 MiB.
    pub capacity: usize,
    /// Largest message of a created ring. Default: the most the capacity allows. Larger
    /// messages are dropped and counted as lost.
    pub max_message: Option<usize>,
    /// Consumer slots of a created ring. Default 16.
    pub max_consumers: u32,
    /// How the importer waits while the ring is full (its lossless consumers are behind).
    /// Default [`WaitPolicy::default`].
    pub wait: WaitPolicy,
    /// Where the importer saves its position in the remote stream. Default
    /// `/dev/shm/<ring>.shmcast-bridge`.
    pub state: Option<PathBuf>,
}

impl ImportOptions {
    /// Options with the defaults above.
    ///
    /// # Examples
    /// ```
    /// let opts = shmcast_bridge::ImportOptions::new("ticks", "shmcast/ticks");
    /// assert_eq!(opts.capacity, 4 << 20);
    /// ```
    pub fn new(ring: impl Into<String>, key: impl Into<String>) -> ImportOptions {
        ImportOptions {
            ring: ring.into(),
            key: key.into(),
            capacity: 4 << 20,
            max_message: None,
            max_consumers: 16,
            wait: WaitPolicy::default(),
            state: None,
        }
    }

    fn state_path(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| Path::new("/dev/shm").join(format!("{}.shmcast-bridge", self.ring)))
    }
}

/// An importer's counters. Every message missing from the remote stream is in exactly one
/// of the `lost_*` counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Messages produced into the local ring.
    pub imported: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Gaps detected (each also logged).
    pub gaps: u64,
    /// Messages published by the exporter but not received: dropped by zenoh, lost with a
    /// link, or published while this importer was not running.
    pub lost_in_transit: u64,
    /// Messages the exporter never published because a lossy export fell behind its ring.
    pub lost_at_source: u64,
    /// Messages lost around an exporter restart (published while no exporter was attached,
    /// or in flight when the old one died).
    pub lost_across_restart: u64,
    /// Messages received but larger than the local ring's maximum: dropped.
    pub dropped_too_large: u64,
    /// Messages received again after an exporter restart, or redelivered: dropped.
    pub duplicates: u64,
    /// Samples from a superseded exporter session: dropped.
    pub stale: u64,
    /// Samples that are not bridge samples of this version: dropped.
    pub foreign: u64,
    /// Exporter restarts seen (new sessions on the same source ring).
    pub exporter_restarts: u64,
    /// Source rings replaced by others (sequence numbers restarted; what the old one had
    /// left unsent is unknown).
    pub source_changes: u64,
    /// End-of-stream samples received.
    pub ends: u64,
}

impl ImportStats {
    /// Every message known to be missing: `lost_in_transit + lost_at_source +
    /// lost_across_restart + dropped_too_large`.
    pub fn lost(&self) -> u64 {
        self.lost_in_transit
            + self.lost_at_source
            + self.lost_across_restart
            + self.dropped_too_large
    }
}

#[derive(Debug, Default)]
struct Counters {
    imported: AtomicU64,
    bytes: AtomicU64,
    gaps: AtomicU64,
    lost_in_transit: AtomicU64,
    lost_at_source: AtomicU64,
    lost_across_restart: AtomicU64,
    dropped_too_large: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    foreign: AtomicU64,
    exporter_restarts: AtomicU64,
    source_changes: AtomicU64,
    ends: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ImportStats {
        ImportStats {
            imported: self.imported.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            lost_in_transit: self.lost_in_transit.load(Relaxed),
            lost_at_source: self.lost_at_source.load(Relaxed),
            lost_across_restart: self.lost_across_restart.load(Relaxed),
            dropped_too_large: self.dropped_too_large.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            stale: self.stale.load(Relaxed),
            foreign: self.foreign.load(Relaxed),
            exporter_restarts: self.exporter_restarts.load(Relaxed),
            source_changes: self.source_changes.load(Relaxed),
            ends: self.ends.load(Relaxed),
        }
    }
}

/// Reads an importer's counters from any thread.
#[derive(Clone, Debug)]
pub struct ImportStatsHandle(Arc<Shared>);

impl ImportStatsHandle {
    /// The counters now.
    pub fn get(&self) -> ImportStats {
        self.0.counters.snapshot()
    }
}

/// State the subscriber callback works on.
#[derive(Debug)]
struct Inner {
    /// `None` once the importer is stopped.
    producer: Option<Producer>,
    tracker: Tracker,
    state: Option<StateFile>,
    /// Messages committed in the ring (all producers), i.e. the next sequence number.
    count: u64,
    /// End-of-stream samples seen (for `wait_end`).
    ends: u64,
    foreign_log: Throttle,
    stale_log: Throttle,
    gap_log: Throttle,
    large_log: Throttle,
}

#[derive(Debug)]
struct Shared {
    ring: String,
    inner: Mutex<Inner>,
    ended: Condvar,
    counters: Counters,
    stop: StopHandle,
}

/// Produces the messages published on a key expression into a local ring.
///
/// Starting it creates the ring (or takes over one whose producer is gone) and subscribes;
/// from then on zenoh's receive thread writes each sample into the ring. Dropping it (or
/// [`Importer::stop`]) closes the ring: its consumers drain it and get `Disconnected`.
///
/// # Examples
/// ```no_run
/// use shmcast_bridge::{ImportOptions, Importer, ZenohOptions};
/// let session = ZenohOptions::loopback_connect(7447).open()?;
/// let importer = Importer::start(&session, ImportOptions::new("ticks", "shmcast/ticks"))?;
/// // Local consumers now `shmcast::Consumer::builder().open("ticks")`.
/// importer.wait_end(None); // until the source ring is closed
/// println!("{:?}", importer.stop());
/// # Ok::<(), shmcast_bridge::BridgeError>(())
/// ```
#[derive(Debug)]
pub struct Importer {
    shared: Arc<Shared>,
    subscriber: Option<zenoh::pubsub::Subscriber<()>>,
}

impl Importer {
    /// Create (or take over) the ring and subscribe.
    ///
    /// # Errors
    /// [`BridgeError::CreateRing`] / [`BridgeError::OpenRing`] if the ring cannot be made
    /// or taken over, [`BridgeError::RingBusy`] if it has a live producer,
    /// [`BridgeError::StateFile`] / [`BridgeError::Io`] for the state file,
    /// [`BridgeError::Zenoh`] if the subscription fails.
    pub fn start(
        session: &zenoh::Session,
        options: ImportOptions,
    ) -> Result<Importer, BridgeError> {
        let (producer, resumed) = create_or_take_over(&options)?;
        let state_path = options.state_path();
        let (state, count, position) = match resumed {
            None => (StateFile::open(&state_path, true)?, 0, None),
            Some(count) => {
                let state = StateFile::open(&state_path, false)?;
                let position = match state.load(count) {
                    Some(p) => p,
                    None => {
                        tracing::warn!(
                            "took over ring '{}' ({count} messages) but its state file {} has \
                             no matching position: what was missed before the first message \
                             received will not be known",
                            options.ring,
                            state_path.display()
                        );
                        None
                    }
                };
                (state, count, position)
            }
        };
        match (resumed, position) {
            (Some(count), Some(p)) => tracing::info!(
                "took over ring '{}' at {count} messages; resuming the remote stream at source \
                 seq {} (session {:016x})",
                options.ring,
                p.next,
                p.session
            ),
            (Some(count), None) => {
                tracing::info!("took over ring '{}' at {count} messages", options.ring)
            }
            (None, _) => tracing::info!("created ring '{}'", options.ring),
        }
        state.store(count, position.as_ref());
        let shared = Arc::new(Shared {
            ring: options.ring.clone(),
            inner: Mutex::new(Inner {
                producer: Some(producer),
                tracker: Tracker::new(position),
                state: Some(state),
                count,
                ends: 0,
                foreign_log: Throttle::default(),
                stale_log: Throttle::default(),
                gap_log: Throttle::default(),
                large_log: Throttle::default(),
            }),
            ended: Condvar::new(),
            counters: Counters::default(),
            stop: StopHandle::new(),
        });
        let in_callback = Arc::clone(&shared);
        let subscriber = session
            .declare_subscriber(options.key.clone())
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                in_callback.handle(&bytes);
            })
            .wait();
        let subscriber = match subscriber {
            Ok(s) => s,
            Err(e) => {
                // Leave nothing behind: close and remove the ring and the state file.
                shared.close(true);
                return Err(zenoh_err(format!(
                    "cannot subscribe to key expression '{}'",
                    options.key
                ))(e));
            }
        };
        tracing::info!("importing '{}' into ring '{}'", options.key, options.ring);
        Ok(Importer {
            shared,
            subscriber: Some(subscriber),
        })
    }

    /// The counters now.
    pub fn stats(&self) -> ImportStats {
        self.shared.counters.snapshot()
    }

    /// A handle to read the counters from another thread.
    pub fn stats_handle(&self) -> ImportStatsHandle {
        ImportStatsHandle(Arc::clone(&self.shared))
    }

    /// Where the importer is in the remote stream (`None` before the first sample, unless
    /// resumed from a saved position).
    pub fn position(&self) -> Option<Position> {
        self.shared.lock().tracker.position()
    }

    /// Wait until an end-of-stream sample arrives (the source ring was closed), or
    /// `timeout`. Returns whether one did.
    pub fn wait_end(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut inner = self.shared.lock();
        while inner.ends == 0 {
            if self.shared.stop.is_stopped() {
                return false;
            }
            // Wake up now and then to look at the stop flag.
            let step = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    (d - now).min(POLL)
                }
                None => POLL,
            };
            inner = match self.shared.ended.wait_timeout(inner, step) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// A handle whose `stop` ends [`Importer::wait_end`] and a send blocked on a full ring.
    pub fn stop_handle(&self) -> StopHandle {
        self.shared.stop.clone()
    }

    /// Unsubscribe, close the ring (consumers drain it, then get `Disconnected`), remove
    /// its name and the state file. Returns the final counters.
    pub fn stop(mut self) -> ImportStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.stop();
        if let Some(sub) = self.subscriber.take() {
            if let Err(e) = sub.undeclare().wait() {
                tracing::warn!("unsubscribing failed: {e}");
            }
        }
        self.shared.close(true);
    }
}

impl Drop for Importer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in the callback (a bug) must not make every later sample panic too.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Close the ring and, if `remove`, delete the state file (the ring's name goes with
    /// its producer).
    fn close(&self, remove: bool) {
        let mut inner = self.lock();
        drop(inner.producer.take());
        if let Some(state) = inner.state.take() {
            if remove {
                state.remove();
            }
        }
    }

    /// One sample, in arrival order (zenoh's receive thread).
    fn handle(&self, bytes: &[u8]) {
        let c = &self.counters;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.producer.is_none() {
            return;
        }
        let header = match Header::decode(bytes) {
            Ok(h) => h,
            Err(e) => {
                c.foreign.fetch_add(1, Relaxed);
                if let Some(more) = inner.foreign_log.admit() {
                    tracing::warn!("dropped a sample: {e}{}", folded(more));
                }
                return;
            }
        };
        let verdict = inner.tracker.observe(&header);
        let (start, gap) = match verdict {
            Verdict::Import { start, gap } | Verdict::End { start, gap } => (start, gap),
            Verdict::Duplicate { start } => (start, None),
            Verdict::Stale => (None, None),
        };
        if let Some(start) = start {
            self.log_start(&header, start);
        }
        if let Some(gap) = gap {
            c.gaps.fetch_add(1, Relaxed);
            c.lost_in_transit.fetch_add(gap.in_transit, Relaxed);
            c.lost_at_source.fetch_add(gap.at_source, Relaxed);
            c.lost_across_restart.fetch_add(gap.across_restart, Relaxed);
            if let Some(more) = inner.gap_log.admit() {
                tracing::warn!("{}{}", describe_gap(&self.ring, &gap), folded(more));
            }
        }
        let position = inner.tracker.position();
        match verdict {
            Verdict::Import { .. } => {
                let payload = &bytes[HEADER_LEN..];
                let Some(producer) = inner.producer.as_mut() else {
                    return;
                };
                if payload.len() > producer.max_message() {
                    c.dropped_too_large.fetch_add(1, Relaxed);
                    if let Some(more) = inner.large_log.admit() {
                        tracing::warn!(
                            "dropped source message seq {} of {} bytes: ring '{}' takes at most \
                             {} (import into a ring with a larger max_message){}",
                            header.ring_seq,
                            payload.len(),
                            self.ring,
                            producer.max_message(),
                            folded(more)
                        );
                    }
                    save(inner, position);
                    return;
                }
                // Save the position for the ring as it will be once this message is in.
                if let Some(state) = &inner.state {
                    state.store(inner.count + 1, position.as_ref());
                }
                loop {
                    match producer.send_timeout(payload, POLL) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout) if !self.stop.is_stopped() => {}
                        Err(SendTimeoutError::Timeout) => {
                            tracing::warn!(
                                "stopping while ring '{}' is full: source message seq {} was \
                                 received but not delivered",
                                self.ring,
                                header.ring_seq
                            );
                            return;
                        }
                        Err(SendTimeoutError::TooLarge { .. }) => {
                            unreachable!("the length was checked against max_message")
                        }
                        Err(e) => {
                            tracing::error!(
                                "ring '{}' refused source message seq {}: {e}",
                                self.ring,
                                header.ring_seq
                            );
                            return;
                        }
                    }
                }
                inner.count += 1;
                c.imported.fetch_add(1, Relaxed);
                c.bytes.fetch_add(payload.len() as u64, Relaxed);
            }
            Verdict::End { .. } => {
                c.ends.fetch_add(1, Relaxed);
                tracing::info!(
                    "the source of ring '{}' was closed by its producer at seq {}",
                    self.ring,
                    header.ring_seq
                );
                save(inner, position);
                inner.ends += 1;
                self.ended.notify_all();
            }
            Verdict::Duplicate { .. } => {
                c.duplicates.fetch_add(1, Relaxed);
                save(inner, position);
            }
            Verdict::Stale => {
                c.stale.fetch_add(1, Relaxed);
                if let Some(more) = inner.stale_log.admit() {
                    tracing::warn!(
                        "dropped a sample from superseded exporter session {:016x} (two \
                         exporters publish on one key expression?){}",
                        header.session,
                        folded(more)
                    );
                }
            }
        }
    }

    fn log_start(&self, h: &Header, start: Start) {
        let c = &self.counters;
        match start {
            Start::Joined => tracing::info!(
                "ring '{}' joined the remote stream at source seq {} (exporter session \
                 {:016x}); nothing before it is known",
                self.ring,
                h.ring_seq,
                h.session
            ),
            Start::NewSession => {
                c.exporter_restarts.fetch_add(1, Relaxed);
                tracing::info!(
                    "exporter session {:016x} took over the stream of ring '{}' at source seq \
                     {}",
                    h.session,
                    self.ring,
                    h.ring_seq
                );
            }
            Start::NewSource {
                previous_next,
                previous_ended,
            } => {
                c.source_changes.fetch_add(1, Relaxed);
                if previous_ended {
                    tracing::info!(
                        "ring '{}' now imports a new source stream, from its seq {}; the \
                         previous one had ended cleanly at seq {previous_next}",
                        self.ring,
                        h.ring_seq
                    );
                } else {
                    tracing::warn!(
                        "ring '{}' now imports a new source stream, from its seq {}; the \
                         previous one stopped at seq {previous_next} without an end of \
                         stream: what it had left unsent is unknown",
                        self.ring,
                        h.ring_seq
                    );
                }
            }
        }
    }
}

/// Save the position for the ring as it is (no message added).
fn save(inner: &Inner, position: Option<Position>) {
    if let Some(state) = &inner.state {
        state.store(inner.count, position.as_ref());
    }
}

fn describe_gap(ring: &str, gap: &Gap) -> String {
    let mut causes = Vec::new();
    if gap.in_transit > 0 {
        causes.push(format!("{} lost between the hosts", gap.in_transit));
    }
    if gap.at_source > 0 {
        causes.push(format!(
            "{} never published (the lossy export fell behind)",
            gap.at_source
        ));
    }
    if gap.across_restart > 0 {
        causes.push(format!(
            "{} lost across an exporter restart",
            gap.across_restart
        ));
    }
    format!(
        "ring '{ring}' missed {} messages of the remote stream, source seq {}..={}: {}",
        gap.total(),
        gap.first,
        gap.first + gap.total() - 1,
        causes.join(", ")
    )
}

/// Create the ring, or take it over if it exists without a live producer
/// (`open_or_create`). Returns the producer and, when taken over, how many messages the
/// ring had committed (its next sequence number).
fn create_or_take_over(options: &ImportOptions) -> Result<(Producer, Option<u64>), BridgeError> {
    let name = &options.ring;
    let mut builder = Producer::builder()
        .capacity(options.capacity)
        .max_consumers(options.max_consumers)
        .wait_policy(options.wait);
    if let Some(m) = options.max_message {
        builder = builder.max_message(m);
    }
    match builder.open_or_create(name) {
        Ok(p) => {
            let count = p.took_over().then(|| p.next_seq());
            Ok((p, count))
        }
        Err(OpenError::ProducerAlive) => Err(BridgeError::RingBusy { ring: name.clone() }),
        Err(source) => Err(BridgeError::OpenRing {
            ring: name.clone(),
            source,
        }),
    }
}
