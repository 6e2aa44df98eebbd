//! Export: read a ring as one of its consumers and publish every message on a key
//! expression.

use crate::error::{zenoh_err, BridgeError};
use crate::throttle::{folded, Throttle};
use crate::wire::{Header, Kind, HEADER_LEN};
use shmcast::{
    Consumer, LossyConsumer, OpenError, RecvError, RecvTimeoutError, StartAt, WaitPolicy,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

/// How long a blocking receive waits before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(50);
/// How often a bridge waiting for a ring (to appear, or for a new producer) looks again.
const RETRY: Duration = Duration::from_millis(20);
/// How long a ring file whose header is not written yet (`Uninitialized`, or `Truncated`
/// below a header) counts as one its creator is still writing (normally microseconds: the
/// creator sizes the file, then writes the header) before it is reported as the error it is.
const CREATION_GRACE: Duration = Duration::from_secs(5);

/// A ring to attach to: a named shared-memory segment or a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingRef {
    /// A named POSIX shared-memory segment (`/dev/shm/<name>`).
    Name(String),
    /// A segment file (on tmpfs or hugetlbfs).
    Path(PathBuf),
}

impl RingRef {
    fn file(&self) -> PathBuf {
        match self {
            RingRef::Name(n) => Path::new("/dev/shm").join(n),
            RingRef::Path(p) => p.clone(),
        }
    }
}

impl std::fmt::Display for RingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingRef::Name(n) => write!(f, "'{n}'"),
            RingRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What an exporter does when zenoh cannot send as fast as the ring delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    /// Wait for zenoh's queue (`CongestionControl::Block`): a slow link or subscriber slows
    /// the exporter, and a lossless export then gates the ring's producer. zenoh closes a
    /// link whose queue stays blocked longer than its `wait_before_close` (5 s by default):
    /// what was queued on it is lost and reported by the importer.
    Block,
    /// Drop what zenoh cannot queue (`CongestionControl::Drop`): the exporter never waits
    /// for the network; the importer counts each dropped message as lost in transit.
    Drop,
}

/// Options of an export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The ring to read.
    pub ring: RingRef,
    /// The key expression to publish on (no wildcards).
    pub key: String,
    /// Attach as a lossy consumer: never slow the ring's producer down; count what is lost
    /// when it laps the exporter. Default `false` (lossless: the exporter gates the producer).
    pub lossy: bool,
    /// Where to start reading. Default [`StartAt::Oldest`]: a restarted exporter re-sends
    /// what the ring still holds and the importer drops what it already has, so a short
    /// restart loses nothing.
    pub start: StartAt,
    /// zenoh congestion control. Default: [`Congestion::Block`] for a lossless export,
    /// [`Congestion::Drop`] for a lossy one.
    pub congestion: Option<Congestion>,
    /// Send each message at once instead of letting zenoh batch under load (lower latency,
    /// lower throughput). Default `false`.
    pub express: bool,
    /// Keep going when the ring is missing or closed: wait for it to appear; after a close,
    /// publish the end of stream and keep reading (a new producer may take the segment over
    /// and continue the stream), and move to a new segment created under the same name.
    /// Default `false`: a missing ring is an error and a closed one ends the export.
    /// Either way, a ring file whose creator has not written its header yet is waited for,
    /// up to 5 s, then reported (`OpenRing` with `Uninitialized` or `Truncated`).
    pub follow: bool,
    /// Read the ring only while some subscriber matches the key expression (zenoh drops
    /// what nobody subscribes to): a lossless export then keeps the ring's producer at the
    /// gate until an importer is there, a lossy one counts what the ring overwrote
    /// meanwhile as lagged. Default `true`.
    pub wait_for_subscriber: bool,
    /// How the exporter's consumer waits for messages. Default [`WaitPolicy::default`].
    pub wait: WaitPolicy,
}

impl ExportOptions {
    /// Options with the defaults above.
    ///
    /// # Examples
    /// ```
    /// use shmcast_bridge::{ExportOptions, RingRef};
    /// let opts = ExportOptions::new(RingRef::Name("ticks".into()), "shmcast/ticks");
    /// assert!(!opts.lossy);
    /// ```
    pub fn new(ring: RingRef, key: impl Into<String>) -> ExportOptions {
        ExportOptions {
            ring,
            key: key.into(),
            lossy: false,
            start: StartAt::Oldest,
            congestion: None,
            express: false,
            follow: false,
            wait_for_subscriber: true,
            wait: WaitPolicy::default(),
        }
    }
}

/// An exporter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Messages published.
    pub messages: u64,
    /// Payload bytes published (without the bridge header).
    pub bytes: u64,
    /// Messages a lossy export lost because the producer lapped it (sum of `Lagged`).
    pub lagged: u64,
    /// Times a lossy export was lapped.
    pub lag_events: u64,
    /// Attachments to the ring (1 unless it was re-attached).
    pub attachments: u64,
    /// Times the ring's producer was seen dead.
    pub producer_deaths: u64,
    /// Times the ring's producer evicted the exporter.
    pub evictions: u64,
    /// Streams that ended cleanly (end-of-stream samples published).
    pub ends: u64,
}

#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    lagged: AtomicU64,
    lag_events: AtomicU64,
    attachments: AtomicU64,
    producer_deaths: AtomicU64,
    evictions: AtomicU64,
    ends: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        ExportStats {
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            lagged: self.lagged.load(Relaxed),
            lag_events: self.lag_events.load(Relaxed),
            attachments: self.attachments.load(Relaxed),
            producer_deaths: self.producer_deaths.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            ends: self.ends.load(Relaxed),
        }
    }
}

/// Reads an exporter's counters from any thread.
#[derive(Clone, Debug)]
pub struct ExportStatsHandle(Arc<Counters>);

impl ExportStatsHandle {
    /// The counters now.
    pub fn get(&self) -> ExportStats {
        self.0.snapshot()
    }
}

/// Stops a running exporter or importer from any thread (within ~50 ms).
///
/// # Examples
/// ```
/// let stop = shmcast_bridge::StopHandle::new();
/// let other = stop.clone();
/// std::thread::spawn(move || other.stop()).join().unwrap();
/// assert!(stop.is_stopped());
/// ```
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// A handle not yet stopped.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Ask to stop.
    pub fn stop(&self) {
        self.0.store(true, Relaxed);
    }

    /// Whether a stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Relaxed)
    }
}

/// Why [`Exporter::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportEnd {
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// The ring's producer closed the stream (an end-of-stream sample was published).
    SourceClosed,
}

/// Publishes a ring's messages on a key expression.
///
/// # Examples
/// ```no_run
/// use shmcast_bridge::{ExportOptions, Exporter, RingRef, ZenohOptions};
/// let session = ZenohOptions::loopback_listen(7447).open()?;
/// let options = ExportOptions::new(RingRef::Name("ticks".into()), "shmcast/ticks");
/// let mut exporter = Exporter::new(&session, options)?;
/// let stop = exporter.stop_handle(); // stop.stop() from another thread ends `run`
/// exporter.run()?;
/// # Ok::<(), shmcast_bridge::BridgeError>(())
/// ```
#[derive(Debug)]
pub struct Exporter {
    session: zenoh::Session,
    publisher: zenoh::pubsub::Publisher<'static>,
    /// Whether some subscriber matches the key expression (kept by a matching listener).
    matching: Arc<AtomicBool>,
    options: ExportOptions,
    counters: Arc<Counters>,
    stop: StopHandle,
    lag_log: Throttle,
}

/// The exporter's consumer of the ring.
enum Reader {
    Lossless(Consumer),
    Lossy(LossyConsumer),
}

/// One attachment to one source stream.
struct Attachment {
    reader: Reader,
    source: u64,
    session: u64,
    session_start: u64,
    /// Samples (data and end) published in this attachment.
    published: u64,
    /// The source sequence number after the last message seen, if any was.
    next_ring_seq: Option<u64>,
    /// The producer closed the stream (and the end was published).
    closed: bool,
}

/// How pumping an attachment ended.
enum Pumped {
    Stopped,
    Closed,
    Reattach,
}

impl Exporter {
    /// Declare the publisher. The ring is attached by [`Exporter::run`].
    ///
    /// # Errors
    /// [`BridgeError::Zenoh`] if the key expression is invalid or zenoh refuses.
    pub fn new(session: &zenoh::Session, options: ExportOptions) -> Result<Exporter, BridgeError> {
        let congestion = match options.congestion {
            Some(Congestion::Block) => CongestionControl::Block,
            Some(Congestion::Drop) => CongestionControl::Drop,
            None if options.lossy => CongestionControl::Drop,
            None => CongestionControl::Block,
        };
        let publisher = session
            .declare_publisher(options.key.clone())
            .congestion_control(congestion)
            .express(options.express)
            .wait()
            .map_err(zenoh_err(format!(
                "cannot publish on key expression '{}'",
                options.key
            )))?;
        let matching = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&matching);
        publisher
            .matching_listener()
            .callback(move |status| flag.store(status.matching(), Relaxed))
            .background()
            .wait()
            .map_err(zenoh_err("cannot watch for matching subscribers"))?;
        Ok(Exporter {
            session: session.clone(),
            publisher,
            matching,
            options,
            counters: Arc::default(),
            stop: StopHandle::new(),
            lag_log: Throttle::default(),
        })
    }

    /// A handle that stops [`Exporter::run`].
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// A handle to read the counters while [`Exporter::run`] runs.
    pub fn stats_handle(&self) -> ExportStatsHandle {
        ExportStatsHandle(Arc::clone(&self.counters))
    }

    /// The counters now.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Attach to the ring and publish every message until stopped or, unless following,
    /// until the ring's producer closes it. A dead producer is waited for (a new producer
    /// may take the ring over); an eviction re-attaches.
    ///
    /// # Errors
    /// [`BridgeError::OpenRing`] if the ring cannot be attached (missing, unless
    /// following), [`BridgeError::Source`] on a corrupt ring, [`BridgeError::Zenoh`] if
    /// publishing fails.
    pub fn run(&mut self) -> Result<ExportEnd, BridgeError> {
        loop {
            let Some(mut att) = self.attach()? else {
                return Ok(ExportEnd::Stopped);
            };
            loop {
                match self.pump(&mut att)? {
                    Pumped::Stopped => return Ok(ExportEnd::Stopped),
                    Pumped::Reattach => break,
                    Pumped::Closed => {
                        self.publish_end(&mut att)?;
                        if !self.options.follow {
                            return Ok(ExportEnd::SourceClosed);
                        }
                        // Following: keep reading this attachment (a new producer may take
                        // the segment over and continue the stream) until the name refers
                        // to another segment.
                    }
                }
            }
        }
    }

    /// Attach to the ring, retrying while it is missing if following. `None` if stopped.
    fn attach(&mut self) -> Result<Option<Attachment>, BridgeError> {
        let ring = &self.options.ring;
        let mut logged_missing = false;
        // Since when the file has looked like one its creator is still writing.
        let mut creating_since: Option<Instant> = None;
        loop {
            if self.stop.is_stopped() {
                return Ok(None);
            }
            // The identity is the segment file's before and after attaching: equal, it is
            // the one attached to (the name was not replaced meanwhile).
            let before = identity(ring);
            let opened = self.open_reader();
            if matches!(&opened, Err(OpenError::Segment(e)) if e.may_be_in_creation()) {
                // Created but not written yet: wait for its creator, for a while.
                let since = *creating_since.get_or_insert_with(Instant::now);
                if since.elapsed() < CREATION_GRACE {
                    std::thread::sleep(RETRY);
                    continue;
                }
            } else {
                creating_since = None;
            }
            let reader = match opened {
                Ok(r) => r,
                Err(OpenError::NotFound(_)) if self.options.follow => {
                    if !logged_missing {
                        tracing::info!("ring {ring} does not exist yet; waiting for it");
                        logged_missing = true;
                    }
                    std::thread::sleep(RETRY);
                    continue;
                }
                Err(source) => {
                    return Err(BridgeError::OpenRing {
                        ring: ring.to_string(),
                        source,
                    })
                }
            };
            let after = identity(ring);
            let source = match (before, after) {
                (Some(a), Some(b)) if a == b => a,
                _ => {
                    drop(reader);
                    std::thread::sleep(RETRY);
                    continue;
                }
            };
            let att = Attachment {
                reader,
                source,
                session: random_u64(),
                session_start: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                published: 0,
                next_ring_seq: None,
                closed: false,
            };
            self.counters.attachments.fetch_add(1, Relaxed);
            tracing::info!(
                "exporting ring {ring} ({}) on '{}' as session {:016x}",
                if self.options.lossy {
                    "lossy"
                } else {
                    "lossless"
                },
                self.options.key,
                att.session
            );
            return Ok(Some(att));
        }
    }

    fn open_reader(&self) -> Result<Reader, OpenError> {
        let builder = Consumer::builder()
            .start_at(self.options.start)
            .wait_policy(self.options.wait);
        Ok(match (&self.options.ring, self.options.lossy) {
            (RingRef::Name(n), false) => Reader::Lossless(builder.open(n)?),
            (RingRef::Path(p), false) => Reader::Lossless(builder.open_path(p)?),
            (RingRef::Name(n), true) => Reader::Lossy(builder.lossy().open(n)?),
            (RingRef::Path(p), true) => Reader::Lossy(builder.lossy().open_path(p)?),
        })
    }

    /// Publish messages until the stream ends, the exporter is stopped or must re-attach.
    fn pump(&mut self, att: &mut Attachment) -> Result<Pumped, BridgeError> {
        let mut buf = Vec::new();
        let mut scratch = Vec::new();
        let mut dead_logged = false;
        let mut waiting_logged = false;
        loop {
            if self.stop.is_stopped() {
                return Ok(Pumped::Stopped);
            }
            if self.options.wait_for_subscriber && !self.matching.load(Relaxed) {
                if !waiting_logged {
                    tracing::info!(
                        "no subscriber matches '{}'; holding the ring until one does",
                        self.options.key
                    );
                    waiting_logged = true;
                }
                std::thread::sleep(RETRY);
                continue;
            }
            waiting_logged = false;
            // Copy the message out behind a header, release it, then publish the copy.
            let got = match &mut att.reader {
                Reader::Lossless(c) => match c.recv_timeout(POLL) {
                    Ok(msg) => {
                        fill(&mut buf, &msg);
                        Ok(msg.seq())
                    }
                    Err(e) => Err(e),
                },
                Reader::Lossy(c) => match c.recv_timeout_into(&mut scratch, POLL) {
                    Ok(seq) => {
                        fill(&mut buf, &scratch);
                        Ok(seq)
                    }
                    Err(e) => Err(e),
                },
            };
            match got {
                Ok(seq) => {
                    if att.closed {
                        tracing::info!(
                            "ring {} was reopened by a new producer; its stream continues",
                            self.options.ring
                        );
                        att.closed = false;
                    }
                    if dead_logged {
                        tracing::info!("ring {} has a producer again", self.options.ring);
                        dead_logged = false;
                    }
                    self.publish_data(att, seq, &mut buf)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Lagged(n)) => {
                    self.counters.lagged.fetch_add(n, Relaxed);
                    self.counters.lag_events.fetch_add(1, Relaxed);
                    if let Some(more) = self.lag_log.admit() {
                        let after = att
                            .next_ring_seq
                            .map_or_else(|| "the start".to_string(), |s| format!("seq {s}"));
                        tracing::warn!(
                            "lossy export of ring {} fell behind its producer: {n} messages \
                             lost from {after}{}",
                            self.options.ring,
                            folded(more)
                        );
                    }
                    if let Some(s) = &mut att.next_ring_seq {
                        *s += n;
                    }
                }
                Err(RecvTimeoutError::Disconnected) if !att.closed => {
                    tracing::info!(
                        "ring {} was closed by its producer after {} messages in this session",
                        self.options.ring,
                        att.published
                    );
                    att.closed = true;
                    return Ok(Pumped::Closed);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Following a closed ring: wait for a takeover or a new segment.
                    if identity(&self.options.ring) != Some(att.source) {
                        tracing::info!(
                            "ring {} now names another segment; exporting it",
                            self.options.ring
                        );
                        return Ok(Pumped::Reattach);
                    }
                    std::thread::sleep(RETRY);
                }
                Err(RecvTimeoutError::ProducerDied) => {
                    if !dead_logged {
                        self.counters.producer_deaths.fetch_add(1, Relaxed);
                        tracing::warn!(
                            "the producer of ring {} died; every committed message was \
                             exported; waiting for a new producer to take the ring over",
                            self.options.ring
                        );
                        dead_logged = true;
                    }
                    if self.options.follow && identity(&self.options.ring) != Some(att.source) {
                        tracing::info!(
                            "ring {} now names another segment; exporting it",
                            self.options.ring
                        );
                        return Ok(Pumped::Reattach);
                    }
                    std::thread::sleep(RETRY);
                }
                Err(RecvTimeoutError::Evicted) => {
                    self.counters.evictions.fetch_add(1, Relaxed);
                    tracing::warn!(
                        "the producer of ring {} evicted the exporter (it was too slow); \
                         attaching again",
                        self.options.ring
                    );
                    return Ok(Pumped::Reattach);
                }
                Err(RecvTimeoutError::Corrupt(c)) => {
                    return Err(BridgeError::Source {
                        ring: self.options.ring.to_string(),
                        source: RecvError::Corrupt(c),
                    })
                }
                Err(e) => {
                    return Err(BridgeError::Source {
                        ring: self.options.ring.to_string(),
                        source: e.into(),
                    })
                }
            }
        }
    }

    fn publish_data(
        &mut self,
        att: &mut Attachment,
        seq: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BridgeError> {
        let header = Header {
            kind: Kind::Data,
            source: att.source,
            session: att.session,
            session_start: att.session_start,
            pub_seq: att.published,
            ring_seq: seq,
        };
        header.encode(buf);
        let payload = buf.len() - HEADER_LEN;
        self.publisher
            .put(std::mem::take(buf))
            .wait()
            .map_err(zenoh_err("publishing failed"))?;
        att.published += 1;
        att.next_ring_seq = Some(seq + 1);
        self.counters.messages.fetch_add(1, Relaxed);
        self.counters.bytes.fetch_add(payload as u64, Relaxed);
        Ok(())
    }

    fn publish_end(&mut self, att: &mut Attachment) -> Result<(), BridgeError> {
        let header = Header {
            kind: Kind::End,
            source: att.source,
            session: att.session,
            session_start: att.session_start,
            pub_seq: att.published,
            // Unknown if nothing was seen: 0 claims no loss, which is all that is known.
            ring_seq: att.next_ring_seq.unwrap_or(0),
        };
        // Blocking even for a `drop` export: losing the end of stream would leave the
        // importer waiting for more.
        self.session
            .put(
                self.publisher.key_expr().clone(),
                header.to_bytes().to_vec(),
            )
            .congestion_control(CongestionControl::Block)
            .express(self.options.express)
            .wait()
            .map_err(zenoh_err("publishing the end of stream failed"))?;
        // The end takes a publication number too: a stream continued by a takeover goes on
        // after it in the same session.
        att.published += 1;
        self.counters.ends.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// `buf` = room for the header, then `payload`.
fn fill(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.clear();
    buf.reserve(HEADER_LEN + payload.len());
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(payload);
}

/// The identity of the segment file a ring reference names now: its device and inode,
/// mixed. `None` if it does not exist.
///
/// The core offers no stream identity of its own (see the README); inode numbers on tmpfs
/// are not reused until the counter wraps.
pub(crate) fn identity(ring: &RingRef) -> Option<u64> {
    let md = std::fs::metadata(ring.file()).ok()?;
    Some(mix(md.dev() ^ mix(md.ino())))
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random session id from the kernel (falls back to time and pid, which only need to
/// differ between attachments).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a writable buffer of 8 bytes; getrandom writes at most that many.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        return u64::from_ne_bytes(b);
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(t ^ (u64::from(std::process::id()) << 32))
}
