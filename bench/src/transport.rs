//! Every transport behind one small interface, [`Link`]: send a message, receive one (its
//! first 8 bytes are a tag: a sequence number or a control value), echo one back.
//!
//! The parent creates every kernel object (pipes, sockets, queues) or shmcast segment, and
//! hands the child its ends as inherited descriptors or segment names; no transport is
//! given an advantage in how it is set up. Every message is exactly `size` bytes.
//!
//! The peers (ringfire, iceoryx2) are in `crate::peers` (`src/peers.rs`), behind the `peers` feature; the
//! streaming floor is [`crate::spsc`].

#[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
use super::peers::{self, PeerLink};
use super::spsc::Spsc;
use shmcast::{Consumer, Producer, ProducerStats, RecvError, WaitPolicy};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};

/// Tag of the last message of a batch: the receiver acknowledges it on its control line.
pub const ACK: u64 = 1 << 63;
/// Tag that tells the receiver to exit.
pub const QUIT: u64 = u64::MAX;

/// A transport under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// shmcast, both sides `WaitPolicy::BusySpin` (consumers spin tightly, the default).
    ShmSpin,
    /// shmcast, both sides `WaitPolicy::BusySpin`, consumers with `tight_spin(false)`.
    ShmLoose,
    /// shmcast, both sides the default `WaitPolicy::Adaptive` (spin, yield, futex).
    ShmAdaptive,
    /// shmcast, both sides `WaitPolicy::Adaptive { spins: 0, yields: 0 }` (futex at once).
    ShmSleep,
    /// ringfire 0.5.2, `LosslessBackpressure` (shmcast's semantics), busy-spin `try_recv`.
    Ringfire,
    /// ringfire 0.5.2, its default `LossyLatestWins`, busy-spin (round trips only).
    RingfireLossy,
    /// iceoryx2 0.10 `ipc::Service` publish-subscribe, busy-polling `receive`.
    Iceoryx2,
    /// `pipe2`: one pipe per direction.
    Pipe,
    /// Named pipes (`mkfifo`): one per direction.
    Fifo,
    /// `AF_UNIX`, `SOCK_STREAM`.
    UnixStream,
    /// `AF_UNIX`, `SOCK_SEQPACKET` (message boundaries kept).
    UnixSeqpacket,
    /// TCP over 127.0.0.1 with `TCP_NODELAY`.
    Tcp,
    /// POSIX message queues: one per direction, depth 10.
    Mqueue,
    /// Not a transport: two processes bouncing one shared `AtomicU64` (round trips only).
    Floor,
    /// The floor carrying the payload: each side copies the message into a shared slot
    /// (an 8-byte flag, then the bytes) and publishes the flag; the other copies it out.
    /// The least a small message (up to 512 B) can cost with any shared-memory protocol
    /// that signals through one flag.
    FloorPayload,
    /// The streaming floor (one-way only): an SPSC ring of `size`-byte slots, a stamp per
    /// slot, a lazily published consumer index ([`crate::spsc`]): what the hardware streams.
    StreamFloor,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 16] = [
        Kind::Floor,
        Kind::FloorPayload,
        Kind::StreamFloor,
        Kind::ShmSpin,
        Kind::ShmLoose,
        Kind::ShmAdaptive,
        Kind::ShmSleep,
        Kind::Ringfire,
        Kind::RingfireLossy,
        Kind::Iceoryx2,
        Kind::Pipe,
        Kind::Fifo,
        Kind::UnixStream,
        Kind::UnixSeqpacket,
        Kind::Tcp,
        Kind::Mqueue,
    ];

    /// Short name used on command lines, in tables and in criterion ids.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ShmSpin => "shmcast-spin",
            Kind::ShmLoose => "shmcast-spin-loose",
            Kind::ShmAdaptive => "shmcast-adaptive",
            Kind::ShmSleep => "shmcast-sleep",
            Kind::Ringfire => "ringfire",
            Kind::RingfireLossy => "ringfire-lossy",
            Kind::Iceoryx2 => "iceoryx2",
            Kind::Pipe => "pipe",
            Kind::Fifo => "fifo",
            Kind::UnixStream => "unix-stream",
            Kind::UnixSeqpacket => "unix-seqpacket",
            Kind::Tcp => "tcp-nodelay",
            Kind::Mqueue => "mqueue",
            Kind::Floor => "floor",
            Kind::FloorPayload => "floor-payload",
            Kind::StreamFloor => "stream-floor",
        }
    }

    /// Parse a [`Kind::name`].
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Every name, comma-separated (for help and error texts).
    pub fn names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }

    /// The shmcast wait policy, for shmcast kinds.
    pub fn policy(self) -> Option<WaitPolicy> {
        match self {
            Kind::ShmSpin | Kind::ShmLoose => Some(WaitPolicy::BusySpin),
            Kind::ShmAdaptive => Some(WaitPolicy::default()),
            Kind::ShmSleep => Some(WaitPolicy::Adaptive {
                spins: 0,
                yields: 0,
            }),
            _ => None,
        }
    }

    /// Do its consumers spin on the stamp alone (`ConsumerBuilder::tight_spin`, on by
    /// default)?
    pub fn tight(self) -> bool {
        self != Kind::ShmLoose
    }

    /// Is this a shmcast ring?
    pub fn is_shmcast(self) -> bool {
        self.policy().is_some()
    }

    /// Is this one of the peer crates (feature `peers`)?
    pub fn is_peer(self) -> bool {
        matches!(self, Kind::Ringfire | Kind::RingfireLossy | Kind::Iceoryx2)
    }

    /// Is this one of the round-trip floors (handled without a [`Link`])?
    pub fn is_floor(self) -> bool {
        matches!(self, Kind::Floor | Kind::FloorPayload)
    }

    /// Is it measured in round trips?
    pub fn round_trips(self) -> bool {
        self != Kind::StreamFloor
    }

    /// Is it measured in one-way streams? (Not the round-trip floors, and not lossy
    /// ringfire, whose reader loses messages when lapped.)
    pub fn streams(self) -> bool {
        !self.is_floor() && self != Kind::RingfireLossy
    }

    /// Does it have a batch API (`send_batch`/`recv_batch` or equivalent)?
    pub fn batches(self) -> bool {
        matches!(self, Kind::ShmSpin | Kind::ShmAdaptive | Kind::Ringfire)
    }

    /// Was it compiled in? Peers need the `peers` feature (or `ringfire` / `iceoryx2`).
    // Each arm is a compile-time constant that differs by feature set.
    #[allow(clippy::match_like_matches_macro)]
    pub fn available(self) -> bool {
        match self {
            Kind::Ringfire | Kind::RingfireLossy => cfg!(feature = "ringfire"),
            Kind::Iceoryx2 => cfg!(feature = "iceoryx2"),
            _ => true,
        }
    }
}

/// Which way messages flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Parent to child and back (round trips).
    Both,
    /// Parent to child only (streaming, idle).
    ParentSends,
}

/// Ring sizing for shmcast kinds.
#[derive(Clone, Copy, Debug)]
pub struct RingSize {
    /// Capacity in bytes (raised to fit the message size if needed).
    pub capacity: usize,
    /// Consumer slots.
    pub max_consumers: u32,
}

/// The smallest capacity at least `want` that takes `size`-byte messages (shmcast caps a
/// message at a quarter of the ring minus a 24-byte header).
pub fn capacity_for(want: usize, size: usize) -> usize {
    want.max((4 * (size + 32)).next_power_of_two())
}

/// A unique segment or queue name for this process.
pub fn unique_name(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmcast-bench-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An `io::Error` carrying `e`'s text.
pub fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

#[inline]
fn tag_of(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().expect("messages are at least 8 bytes"))
}

/// One side of a transport.
// One per session; boxing the rings would add an indirection to the measured path.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    /// shmcast rings: one we produce, one we consume (either may be absent).
    Shm {
        /// The ring this side produces into.
        tx: Option<Producer>,
        /// The ring this side consumes.
        rx: Option<Consumer>,
    },
    /// Anything read/written through descriptors: pipes, FIFOs, sockets.
    Fd {
        /// Read end.
        rx: Option<File>,
        /// Write end.
        tx: Option<File>,
        /// One `read` returns one whole message (seqpacket).
        packet: bool,
    },
    /// POSIX message queues.
    Mq {
        /// The queue this side receives from.
        rx: Option<OwnedFd>,
        /// The queue this side sends to.
        tx: Option<OwnedFd>,
    },
    /// The streaming floor (one end).
    Spsc(Spsc),
    /// ringfire or iceoryx2.
    #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
    Peer(Box<dyn PeerLink>),
}

impl Link {
    /// Send one message (blocking per the transport's own rules).
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Link::Shm { tx, .. } => tx
                .as_mut()
                .expect("a sending side")
                .send(msg)
                .map_err(other),
            Link::Fd { tx, .. } => tx.as_mut().expect("a sending side").write_all(msg),
            Link::Mq { tx, .. } => mq_send(tx.as_ref().expect("a sending side"), msg),
            Link::Spsc(r) => r.send(msg),
            #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
            Link::Peer(p) => p.send(msg),
        }
    }

    /// Receive one message and return its tag; `None` at the end of the stream. The
    /// message lands in `scratch` (exactly `size` bytes), except for shmcast, which reads
    /// it in place (zero-copy is the point of the ring).
    #[inline]
    pub fn recv_tag(&mut self, scratch: &mut [u8]) -> io::Result<Option<u64>> {
        match self {
            Link::Shm { rx, .. } => match rx.as_mut().expect("a receiving side").recv() {
                Ok(m) => Ok(Some(tag_of(&m))),
                Err(RecvError::Disconnected) => Ok(None),
                Err(e) => Err(other(e)),
            },
            Link::Fd { rx, packet, .. } => {
                let rx = rx.as_mut().expect("a receiving side");
                if *packet {
                    let n = rx.read(scratch)?;
                    return match n {
                        0 => Ok(None),
                        n if n == scratch.len() => Ok(Some(tag_of(scratch))),
                        n => Err(other(format!("short packet: {n} bytes"))),
                    };
                }
                read_message(rx, scratch)
            }
            Link::Mq { rx, .. } => {
                let n = mq_recv(rx.as_ref().expect("a receiving side"), scratch)?;
                if n != scratch.len() {
                    return Err(other(format!("short message: {n} bytes")));
                }
                Ok(Some(tag_of(scratch)))
            }
            Link::Spsc(r) => r.recv_tag().map(Some),
            #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
            Link::Peer(p) => p.recv_tag().map(Some),
        }
    }

    /// Receive one message and send it back unchanged (unless it is [`QUIT`]); returns its
    /// tag, `None` at the end of the stream.
    #[inline]
    pub fn echo(&mut self, scratch: &mut [u8]) -> io::Result<Option<u64>> {
        if let Link::Shm { tx, rx } = self {
            // In place: from the ping ring straight into the pong ring.
            let m = match rx.as_mut().expect("a receiving side").recv() {
                Ok(m) => m,
                Err(RecvError::Disconnected) => return Ok(None),
                Err(e) => return Err(other(e)),
            };
            let tag = tag_of(&m);
            if tag != QUIT {
                tx.as_mut()
                    .expect("a sending side")
                    .send(&m)
                    .map_err(other)?;
            }
            return Ok(Some(tag));
        }
        #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
        if let Link::Peer(p) = self {
            return p.echo().map(Some);
        }
        let tag = self.recv_tag(scratch)?;
        if let Some(t) = tag {
            if t != QUIT {
                self.send(scratch)?;
            }
        }
        Ok(tag)
    }

    /// Send `msgs` as one batch: shmcast publishes them with `Producer::send_batch` (one
    /// release, one tail store, one wake-up decision); other transports send one by one.
    #[inline]
    pub fn send_batch(&mut self, msgs: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Link::Shm { tx, .. } => tx
                .as_mut()
                .expect("a sending side")
                .send_batch(msgs)
                .map_err(other),
            #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
            Link::Peer(p) => p.send_batch(msgs),
            _ => msgs.iter().try_for_each(|m| self.send(m)),
        }
    }

    /// Receive up to `max` messages at once (shmcast: `Consumer::recv_batch`, in place, one
    /// release for the batch; others: one message), calling `f` with each tag. Returns how
    /// many, `None` at the end of the stream.
    #[inline]
    pub fn recv_batch(
        &mut self,
        max: usize,
        scratch: &mut [u8],
        mut f: impl FnMut(u64),
    ) -> io::Result<Option<usize>> {
        match self {
            Link::Shm { rx, .. } => {
                let rx = rx.as_mut().expect("a receiving side");
                match rx.recv_batch(max, |_, m| f(tag_of(m))) {
                    Ok(n) => Ok(Some(n)),
                    Err(RecvError::Disconnected) => Ok(None),
                    Err(e) => Err(other(e)),
                }
            }
            #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
            Link::Peer(p) => p.recv_batch(max, &mut f).map(Some),
            _ => Ok(self.recv_tag(scratch)?.map(|t| {
                f(t);
                1
            })),
        }
    }

    /// The producer's counters, for shmcast links that send.
    pub fn producer_stats(&self) -> Option<ProducerStats> {
        match self {
            Link::Shm { tx: Some(p), .. } => Some(p.stats()),
            _ => None,
        }
    }
}

/// Read exactly one `buf.len()`-byte message from a byte stream; `None` on EOF at a
/// message boundary.
fn read_message(rx: &mut File, buf: &mut [u8]) -> io::Result<Option<u64>> {
    let mut got = 0;
    while got < buf.len() {
        match rx.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(tag_of(buf)))
}

fn mq_send(q: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `q` is an open message queue descriptor; `msg` is valid for its length.
        let r = unsafe { libc::mq_send(q.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn mq_recv(q: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `q` is an open message queue descriptor; `buf` is writable for its
        // length, which is the queue's message size.
        let r = unsafe {
            libc::mq_receive(
                q.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Take ownership of a descriptor the kernel just returned.
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful syscall and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// A named pipe: (read end, write end), opened by this process without blocking; the name
/// is removed once both ends are open (the object lives on).
fn fifo() -> io::Result<(OwnedFd, OwnedFd)> {
    let path = std::env::temp_dir().join(unique_name("fifo"));
    let c = CString::new(path.to_str().expect("UTF-8 temp dir")).map_err(other)?;
    // SAFETY: a NUL-terminated path.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o600) })?;
    let open = |flags| {
        // SAFETY: a NUL-terminated path and valid flags.
        cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) }).map(own)
    };
    // The read end first, non-blocking (so open does not wait for a writer), then the
    // write end (which finds a reader), then make reads block again.
    let ends = open(libc::O_RDONLY | libc::O_NONBLOCK).and_then(|r| {
        let w = open(libc::O_WRONLY)?;
        // SAFETY: a valid descriptor; F_SETFL with plain O_RDONLY clears O_NONBLOCK.
        cvt(unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_RDONLY) })?;
        Ok((r, w))
    });
    let _ = std::fs::remove_file(&path);
    ends
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((own(fds[0]), own(fds[1])))
}

fn tcp_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a.into(), b.into()))
}

/// A new, already unlinked message queue of depth 10 for `size`-byte messages.
fn mqueue(size: usize) -> io::Result<OwnedFd> {
    let name = CString::new(format!("/{}", unique_name("mq"))).map_err(other)?;
    // SAFETY: an all-zero mq_attr is valid; we set the two fields mq_open reads.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = 10;
    attr.mq_msgsize = size as libc::c_long;
    // SAFETY: a NUL-terminated name, valid flags, a mode and a valid attr pointer (the
    // variadic arguments O_CREAT requires).
    let q = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
            &attr as *const libc::mq_attr,
        )
    };
    let q = cvt(q).map_err(|e| {
        other(format!(
            "mq_open for {size}-byte messages: {e} (see /proc/sys/fs/mqueue/msgsize_max)"
        ))
    })?;
    // SAFETY: a NUL-terminated name.
    unsafe { libc::mq_unlink(name.as_ptr()) };
    Ok(own(q))
}

/// Is `kind` compiled in, and does it take `size`-byte messages at all? (Peers need the
/// `peers` feature; this harness instantiates ringfire for powers of two only; the payload
/// floor is for small messages.)
pub fn check(kind: Kind, size: usize) -> io::Result<()> {
    if !kind.available() {
        return Err(other(format!(
            "{} is not compiled in: build with `--features peers`",
            kind.name()
        )));
    }
    #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
    peers::supported_size(kind.name(), size)?;
    if kind == Kind::FloorPayload && size > super::measure::FLOOR_PAYLOAD_MAX {
        return Err(other(format!(
            "floor-payload is a small-message reference (up to {} B)",
            super::measure::FLOOR_PAYLOAD_MAX
        )));
    }
    Ok(())
}

/// Can this machine carry `size`-byte messages over `kind`? [`check`], and POSIX queues
/// refuse messages above `/proc/sys/fs/mqueue/msgsize_max` to unprivileged users.
pub fn probe(kind: Kind, size: usize) -> io::Result<()> {
    check(kind, size)?;
    if kind == Kind::Mqueue {
        mqueue(size)?;
    }
    Ok(())
}

/// The parent's side of a transport, and what the child needs to build its own.
pub struct Prepared {
    /// The parent's link (for shmcast round trips, its receiving ring is opened later,
    /// by [`Prepared::after_ready`]).
    pub link: Link,
    /// Arguments that describe the child's side.
    pub spec: Vec<String>,
    /// Descriptors the child inherits (the parent closes its copies after spawning).
    pub pass: Vec<OwnedFd>,
    /// shmcast round trips: the ring the child creates, which the parent then consumes.
    pong: Option<(String, Kind)>,
    /// Peers: what the parent attaches once the child is ready.
    #[cfg_attr(not(any(feature = "ringfire", feature = "iceoryx2")), allow(dead_code))]
    peer_pong: Option<String>,
}

impl Prepared {
    /// Finish the parent's side once the child said it is ready.
    pub fn after_ready(&mut self) -> io::Result<()> {
        if let (Some((name, kind)), Link::Shm { rx, .. }) = (self.pong.take(), &mut self.link) {
            *rx = Some(
                Consumer::builder()
                    .wait_policy(kind.policy().expect("a shmcast kind"))
                    .tight_spin(kind.tight())
                    .open(&name)
                    .map_err(other)?,
            );
        }
        #[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
        if let (Some(pong), Link::Peer(p)) = (self.peer_pong.take(), &mut self.link) {
            p.after_ready(&pong)?;
        }
        Ok(())
    }
}

fn fd_arg(fd: &Option<OwnedFd>) -> String {
    fd.as_ref().map_or(-1, |f| f.as_raw_fd()).to_string()
}

/// Create the parent's side of `kind` for `size`-byte messages flowing `dir`.
pub fn prepare(kind: Kind, size: usize, dir: Dir, ring: RingSize) -> io::Result<Prepared> {
    assert!(size >= 8, "messages carry an 8-byte tag");
    check(kind, size)?;
    let both = dir == Dir::Both;
    let mut pass = Vec::new();
    #[allow(unused_mut)]
    let mut peer_pong = None;
    let (link, spec, pong) = match kind {
        Kind::ShmSpin | Kind::ShmLoose | Kind::ShmAdaptive | Kind::ShmSleep => {
            let policy = kind.policy().expect("a shmcast kind");
            let ping = unique_name("ping");
            let capacity = capacity_for(ring.capacity, size);
            let tx = Producer::builder()
                .capacity(capacity)
                .max_consumers(ring.max_consumers)
                .wait_policy(policy)
                .create(&ping)
                .map_err(other)?;
            let pong = both.then(|| (unique_name("pong"), kind));
            let mut spec = vec![ping, capacity.to_string()];
            if let Some((name, _)) = &pong {
                spec.push(name.clone());
            }
            (
                Link::Shm {
                    tx: Some(tx),
                    rx: None,
                },
                spec,
                pong,
            )
        }
        Kind::Pipe | Kind::Fifo => {
            let make = if kind == Kind::Pipe { pipe } else { fifo };
            let (child_r, parent_w) = make()?;
            let (parent_r, child_w) = if both {
                let (r, w) = make()?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            let spec = vec![child_r.as_raw_fd().to_string(), fd_arg(&child_w)];
            pass.push(child_r);
            pass.extend(child_w);
            (
                Link::Fd {
                    rx: parent_r.map(File::from),
                    tx: Some(File::from(parent_w)),
                    packet: false,
                },
                spec,
                None,
            )
        }
        Kind::UnixStream | Kind::UnixSeqpacket | Kind::Tcp => {
            let (mine, theirs) = match kind {
                Kind::UnixStream => {
                    let (a, b) = UnixStream::pair()?;
                    (OwnedFd::from(a), OwnedFd::from(b))
                }
                Kind::UnixSeqpacket => seqpacket_pair()?,
                _ => tcp_pair()?,
            };
            let fd = theirs.as_raw_fd().to_string();
            let spec = vec![fd.clone(), fd];
            pass.push(theirs);
            let tx = File::from(mine);
            (
                Link::Fd {
                    rx: Some(tx.try_clone()?),
                    tx: Some(tx),
                    packet: kind == Kind::UnixSeqpacket,
                },
                spec,
                None,
            )
        }
        Kind::Mqueue => {
            let ping = mqueue(size)?;
            let pong = if both { Some(mqueue(size)?) } else { None };
            let spec = vec![ping.as_raw_fd().to_string(), fd_arg(&pong)];
            let ping_dup = ping.try_clone()?;
            pass.push(ping);
            let pong_dup = pong.as_ref().map(|p| p.try_clone()).transpose()?;
            pass.extend(pong);
            (
                Link::Mq {
                    rx: pong_dup,
                    tx: Some(ping_dup),
                },
                spec,
                None,
            )
        }
        Kind::StreamFloor => {
            if both {
                return Err(other("the streaming floor is one-way"));
            }
            let ring = Spsc::create(size, ring.capacity)?;
            // SAFETY: `dup` returns a new descriptor owned by nobody else (or -1, checked).
            let fd = cvt(unsafe { libc::fcntl(ring.raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
            let fd = own(fd);
            let spec = vec![fd.as_raw_fd().to_string(), ring.slots().to_string()];
            pass.push(fd);
            (Link::Spsc(ring), spec, None)
        }
        #[cfg(feature = "ringfire")]
        Kind::Ringfire | Kind::RingfireLossy => {
            let (link, spec, pending) =
                peers::ringfire_parent(size, dir, ring, kind == Kind::Ringfire)?;
            peer_pong = pending;
            (Link::Peer(link), spec, None)
        }
        #[cfg(feature = "iceoryx2")]
        Kind::Iceoryx2 => {
            let (link, spec, pending) = peers::iceoryx2_parent(size, dir, ring)?;
            peer_pong = pending;
            (Link::Peer(link), spec, None)
        }
        #[cfg(not(feature = "ringfire"))]
        Kind::Ringfire | Kind::RingfireLossy => unreachable!("checked above"),
        #[cfg(not(feature = "iceoryx2"))]
        Kind::Iceoryx2 => unreachable!("checked above"),
        Kind::Floor | Kind::FloorPayload => {
            return Err(other("the floors are not message transports"))
        }
    };
    Ok(Prepared {
        link,
        spec,
        pass,
        pong,
        peer_pong,
    })
}

fn parse_fd(s: &str) -> io::Result<Option<OwnedFd>> {
    let fd: RawFd = s.parse().map_err(other)?;
    // SAFETY: the parent passed us this descriptor by inheritance and nothing else in this
    // process owns it.
    Ok((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Build the child's side from the parent's [`Prepared::spec`].
pub fn open_child(kind: Kind, size: usize, spec: &[String]) -> io::Result<Link> {
    let arg = |i: usize| {
        spec.get(i)
            .ok_or_else(|| other(format!("missing transport argument {i}")))
    };
    Ok(match kind {
        Kind::ShmSpin | Kind::ShmLoose | Kind::ShmAdaptive | Kind::ShmSleep => {
            let policy = kind.policy().expect("a shmcast kind");
            let rx = Consumer::builder()
                .wait_policy(policy)
                .tight_spin(kind.tight())
                .open(arg(0)?)
                .map_err(other)?;
            let capacity: usize = arg(1)?.parse().map_err(other)?;
            let tx = match spec.get(2) {
                Some(pong) => Some(
                    Producer::builder()
                        .capacity(capacity)
                        .max_consumers(4)
                        .wait_policy(policy)
                        .create(pong)
                        .map_err(other)?,
                ),
                None => None,
            };
            Link::Shm { tx, rx: Some(rx) }
        }
        Kind::Pipe | Kind::Fifo | Kind::UnixStream | Kind::UnixSeqpacket | Kind::Tcp => {
            let rx = parse_fd(arg(0)?)?.map(File::from);
            // Sockets: the same descriptor both ways.
            let tx = if arg(1)? == arg(0)? {
                rx.as_ref().map(|f| f.try_clone()).transpose()?
            } else {
                parse_fd(arg(1)?)?.map(File::from)
            };
            Link::Fd {
                rx,
                tx,
                packet: kind == Kind::UnixSeqpacket,
            }
        }
        Kind::Mqueue => Link::Mq {
            rx: parse_fd(arg(0)?)?,
            tx: parse_fd(arg(1)?)?,
        },
        Kind::StreamFloor => {
            let fd = parse_fd(arg(0)?)?.ok_or_else(|| other("stream floor: no descriptor"))?;
            let slots: u64 = arg(1)?.parse().map_err(other)?;
            Link::Spsc(Spsc::open(fd, size, slots)?)
        }
        #[cfg(feature = "ringfire")]
        Kind::Ringfire | Kind::RingfireLossy => Link::Peer(peers::ringfire_child(size, spec)?),
        #[cfg(feature = "iceoryx2")]
        Kind::Iceoryx2 => Link::Peer(peers::iceoryx2_child(size, spec)?),
        #[cfg(not(feature = "ringfire"))]
        Kind::Ringfire | Kind::RingfireLossy => {
            return Err(other(
                "ringfire is not compiled in: build with `--features peers`",
            ))
        }
        #[cfg(not(feature = "iceoryx2"))]
        Kind::Iceoryx2 => {
            return Err(other(
                "iceoryx2 is not compiled in: build with `--features peers`",
            ))
        }
        Kind::Floor | Kind::FloorPayload => {
            return Err(other("the floors are not message transports"))
        }
    })
}
