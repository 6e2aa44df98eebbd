//! The peers shmcast is compared with, each used the way its authors use it for their
//! lowest latency (feature `peers`):
//!
//! - **ringfire 0.5.2**: `RingProducer<T>` / `RingConsumer<T>` over a `/dev/shm` file, a
//!   fixed-size `T` per ring (here `Bytes<N>`, `N` = the message size, one of
//!   [`RINGFIRE_SIZES`]), the consumer polling `try_recv` in a `spin_loop` loop (as ringfire's
//!   own `latency` and `ipc_compare` benches do; its README's "busy spin" row).
//!   `ringfire` uses `FlowControl::LosslessBackpressure` (shmcast's semantics: nothing is
//!   ever overwritten unread; the reader registers and publishes its cursor on every
//!   receive); `ringfire-lossy` the crate's default `LossyLatestWins`, which its benches use
//!   (round trips only: a lapped reader loses messages). Batches are `push_batch` /
//!   `recv_batch`.
//! - **iceoryx2 0.10**: `ipc::Service` publish-subscribe of `[u8]` slices, as iceoryx2's own
//!   `benchmarks/publish-subscribe`: round trips with history 0, a subscriber buffer of 1 and
//!   safe overflow, each side loaning its next sample before it polls `receive()` in a busy
//!   loop; streaming with a lossless service (no safe overflow, `RetryUntilDelivered`, a
//!   subscriber buffer sized like the other rings). Zero-copy both ways: the sender writes
//!   into the loaned sample, the receiver reads the sample in place. iceoryx2 has no batch
//!   API.
//!
//! Every busy wait has a hang guard (an error after 10 s without a message), so a dead peer
//! cannot spin the benchmark forever.

use super::transport::{other, unique_name, Dir, RingSize, QUIT};
use std::io;
use std::time::{Duration, Instant};

/// A busy wait gives up after this long without a message (a hang guard, not a figure).
const HANG: Duration = Duration::from_secs(10);

/// Spin-wait bookkeeping: checks the clock every 2^16 polls.
struct Guard {
    polls: u32,
    since: Option<Instant>,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            polls: 0,
            since: None,
        }
    }

    #[inline]
    fn spin(&mut self, what: &str) -> io::Result<()> {
        std::hint::spin_loop();
        self.polls = self.polls.wrapping_add(1);
        if self.polls & 0xffff == 0 {
            let since = *self.since.get_or_insert_with(Instant::now);
            if since.elapsed() > HANG {
                return Err(other(format!(
                    "{what}: no message for {HANG:?} (is the peer process alive?)"
                )));
            }
        }
        Ok(())
    }
}

/// One side of a peer transport. Tags are the first 8 bytes of each message.
pub trait PeerLink {
    /// Send one message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Busy-wait for the next message; return its tag.
    fn recv_tag(&mut self) -> io::Result<u64>;
    /// Busy-wait for the next message and send it back unless it is [`QUIT`]; its tag.
    fn echo(&mut self) -> io::Result<u64>;
    /// Send `msgs` with the peer's batch API (one by one if it has none).
    fn send_batch(&mut self, msgs: &[Vec<u8>]) -> io::Result<()>;
    /// Busy-wait until at least one message is there, then take up to `max` with the peer's
    /// batch API, calling `f` with each tag; how many.
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(u64)) -> io::Result<usize>;
    /// Round trips: attach the ring the child created (`pending` from the parent's setup).
    fn after_ready(&mut self, pending: &str) -> io::Result<()> {
        let _ = pending;
        Ok(())
    }
}

#[inline]
fn tag_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("messages are at least 8 bytes"))
}

/// The message sizes ringfire is instantiated for (each is a separate monomorphized ring
/// type, so every size costs build time): the harness's sizes.
pub const RINGFIRE_SIZES: [usize; 5] = [8, 64, 512, 4096, 65536];

/// Is `size` a message size both peers are built for here?
pub fn supported_size(kind_name: &str, size: usize) -> io::Result<()> {
    if kind_name.starts_with("ringfire") && !RINGFIRE_SIZES.contains(&size) {
        return Err(other(format!(
            "ringfire rings carry one fixed-size type; this harness instantiates \
             {RINGFIRE_SIZES:?} B, not {size} B"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// ringfire

#[cfg(feature = "ringfire")]
mod rf {
    use super::*;
    use ringfire::{FlowControl, RingConsumer, RingProducer, RingProducerBuilder};
    use std::path::PathBuf;

    /// A message of exactly `N` bytes, 8-byte aligned (ringfire's slots are `seq` + `T`).
    #[derive(Clone, Copy)]
    #[repr(C, align(8))]
    pub struct Bytes<const N: usize>(pub [u8; N]);

    /// How many slots hold about `bytes` bytes of `N`-byte messages (ringfire slots are
    /// an 8-byte sequence plus `T`): the power of two nearer in ratio, at least 16.
    pub fn slots_for<const N: usize>(bytes: usize) -> u64 {
        let s = (bytes / (N + 8)).max(16);
        let hi = s.next_power_of_two();
        let lo = (hi / 2).max(1);
        let pick = if hi == s || hi as f64 / s as f64 <= s as f64 / lo as f64 {
            hi
        } else {
            lo
        };
        pick.max(16) as u64
    }

    pub struct Link<const N: usize> {
        tx: Option<RingProducer<Bytes<N>>>,
        rx: Option<RingConsumer<Bytes<N>>>,
        /// The message being sent: the payload pattern of every transport (0x5a), its tag
        /// rewritten per send. ringfire sends a `T` by reference, so this is its message.
        item: Box<Bytes<N>>,
        batch: Vec<Bytes<N>>,
    }

    fn path(what: &str) -> PathBuf {
        PathBuf::from("/dev/shm").join(unique_name(what))
    }

    fn err(what: &str, e: ringfire::RingfireError) -> io::Error {
        other(format!("ringfire {what}: {e}"))
    }

    /// A ringfire ring of `slots` `N`-byte messages at `path`, created by this process.
    pub fn producer<const N: usize>(
        path: &std::path::Path,
        slots: u64,
        lossless: bool,
    ) -> io::Result<RingProducer<Bytes<N>>> {
        let flow = if lossless {
            FlowControl::LosslessBackpressure
        } else {
            FlowControl::LossyLatestWins
        };
        RingProducerBuilder::new(slots)
            .flow_control(flow)
            .file_mode(0o600)
            .build(path)
            .map_err(|e| err("create", e))
    }

    /// Attach a consumer to the fresh ringfire ring at `path`, from its first message.
    pub fn consumer<const N: usize>(path: &std::path::Path) -> io::Result<RingConsumer<Bytes<N>>> {
        // A fresh ring: "oldest" is its first message.
        RingConsumer::attach(path).map_err(|e| err("attach", e))
    }

    impl<const N: usize> Link<N> {
        fn new(
            tx: Option<RingProducer<Bytes<N>>>,
            rx: Option<RingConsumer<Bytes<N>>>,
        ) -> Box<Self> {
            Box::new(Link {
                tx,
                rx,
                item: Box::new(Bytes([0x5a; N])),
                batch: Vec::new(),
            })
        }

        /// The parent's side: creates the ping ring; the pong ring (round trips) is created
        /// by the child and attached in `after_ready`.
        pub fn parent(
            dir: Dir,
            ring: RingSize,
            lossless: bool,
        ) -> io::Result<(Box<Self>, Vec<String>, Option<String>)> {
            let ping = path("rf-ping");
            let slots = slots_for::<N>(ring.capacity);
            let tx = producer::<N>(&ping, slots, lossless)?;
            let pong = (dir == Dir::Both).then(|| path("rf-pong"));
            let mut spec = vec![
                ping.display().to_string(),
                slots.to_string(),
                u8::from(lossless).to_string(),
            ];
            let pong = pong.map(|p| p.display().to_string());
            spec.extend(pong.clone());
            Ok((Self::new(Some(tx), None), spec, pong))
        }

        pub fn child(spec: &[String]) -> io::Result<Box<Self>> {
            let bad = || other("ringfire: bad child spec");
            let rx = consumer::<N>(spec.first().ok_or_else(bad)?.as_ref())?;
            let slots: u64 = spec.get(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let lossless = spec.get(2).ok_or_else(bad)? == "1";
            let tx = match spec.get(3) {
                Some(p) => Some(producer::<N>(p.as_ref(), slots, lossless)?),
                None => None,
            };
            Ok(Self::new(tx, Some(rx)))
        }

        #[inline]
        fn rx(&mut self) -> &mut RingConsumer<Bytes<N>> {
            self.rx.as_mut().expect("a receiving side")
        }

        #[inline]
        fn next(&mut self) -> io::Result<Bytes<N>> {
            let mut g = Guard::new();
            loop {
                if let Some(v) = self.rx().try_recv() {
                    return Ok(v);
                }
                g.spin("ringfire")?;
            }
        }
    }

    impl<const N: usize> PeerLink for Link<N> {
        #[inline]
        fn send(&mut self, msg: &[u8]) -> io::Result<()> {
            debug_assert_eq!(msg.len(), N);
            self.item.0[..8].copy_from_slice(&msg[..8]);
            self.tx.as_mut().expect("a sending side").push(&self.item);
            Ok(())
        }

        #[inline]
        fn recv_tag(&mut self) -> io::Result<u64> {
            Ok(tag_of(&self.next()?.0))
        }

        #[inline]
        fn echo(&mut self) -> io::Result<u64> {
            let v = self.next()?;
            let tag = tag_of(&v.0);
            if tag != QUIT {
                self.tx.as_mut().expect("a sending side").push(&v);
            }
            Ok(tag)
        }

        fn send_batch(&mut self, msgs: &[Vec<u8>]) -> io::Result<()> {
            if self.batch.len() < msgs.len() {
                self.batch.resize(msgs.len(), Bytes([0x5a; N]));
            }
            for (b, m) in self.batch.iter_mut().zip(msgs) {
                b.0[..8].copy_from_slice(&m[..8]);
            }
            let tx = self.tx.as_mut().expect("a sending side");
            tx.push_batch(&self.batch[..msgs.len()]);
            Ok(())
        }

        fn after_ready(&mut self, pong: &str) -> io::Result<()> {
            self.rx = Some(consumer::<N>(pong.as_ref())?);
            Ok(())
        }

        fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(u64)) -> io::Result<usize> {
            if self.batch.len() < max {
                self.batch.resize(max, Bytes([0; N]));
            }
            let mut g = Guard::new();
            loop {
                let rx = self.rx.as_mut().expect("a receiving side");
                let n = rx.recv_batch(&mut self.batch[..max]);
                if n > 0 {
                    for b in &self.batch[..n] {
                        f(tag_of(&b.0));
                    }
                    return Ok(n);
                }
                g.spin("ringfire")?;
            }
        }
    }
}

#[cfg(feature = "ringfire")]
pub use rf::Bytes;

/// ringfire's producer and consumer for `N`-byte messages at `path` (for the instruction
/// counts, which drive them directly).
#[cfg(feature = "ringfire")]
pub mod ringfire_direct {
    pub use super::rf::{consumer, producer};
}

/// Dispatch `$body` with `$n` bound to the const message size `size`.
#[cfg(feature = "ringfire")]
macro_rules! with_size {
    ($size:expr, $n:ident => $body:expr) => {
        match $size {
            8 => {
                const $n: usize = 8;
                $body
            }
            64 => {
                const $n: usize = 64;
                $body
            }
            512 => {
                const $n: usize = 512;
                $body
            }
            4096 => {
                const $n: usize = 4096;
                $body
            }
            65536 => {
                const $n: usize = 65536;
                $body
            }
            s => Err(other(format!(
                "ringfire: no ring type for {s}-byte messages"
            ))),
        }
    };
}

/// The parent's side of a peer: the link, the child's spec, and what to attach once the
/// child is ready (see [`PeerLink::after_ready`]).
pub type Parent = (Box<dyn PeerLink>, Vec<String>, Option<String>);

/// Create the parent's side of a ringfire ring (lossless or not) for `size`-byte messages.
#[cfg(feature = "ringfire")]
pub fn ringfire_parent(
    size: usize,
    dir: Dir,
    ring: RingSize,
    lossless: bool,
) -> io::Result<Parent> {
    with_size!(size, N => {
        let (l, spec, pong) = rf::Link::<N>::parent(dir, ring, lossless)?;
        Ok((l as Box<dyn PeerLink>, spec, pong))
    })
}

/// The child's ringfire side from the parent's spec.
#[cfg(feature = "ringfire")]
pub fn ringfire_child(size: usize, spec: &[String]) -> io::Result<Box<dyn PeerLink>> {
    with_size!(size, N => Ok(rf::Link::<N>::child(spec)? as Box<dyn PeerLink>))
}

// ---------------------------------------------------------------------------------------
// iceoryx2

#[cfg(feature = "iceoryx2")]
mod ix {
    use super::*;
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::prelude::*;

    type Pub = Publisher<ipc::Service, [u8], ()>;
    type Sub = Subscriber<ipc::Service, [u8], ()>;
    type Loan = iceoryx2::sample_mut_uninit::SampleMutUninit<
        ipc::Service,
        [core::mem::MaybeUninit<u8>],
        (),
    >;
    type Factory =
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>;

    fn err(what: &str, e: impl std::fmt::Display) -> io::Error {
        other(format!("iceoryx2 {what}: {e}"))
    }

    /// Quiet logs (iceoryx2 logs service creation at info level by default).
    fn init() {
        set_log_level(LogLevel::Error);
    }

    /// A private iceoryx2 domain for one session (its own file prefix and root directory),
    /// so the session can remove everything it made, iceoryx2's persistent global
    /// management segment included, once both processes are done.
    fn domain(tag: &str) -> io::Result<Config> {
        let mut c = Config::default();
        c.global.prefix =
            FileName::new(format!("{tag}_").as_bytes()).map_err(|e| err("prefix", e))?;
        let root = std::env::temp_dir().join(tag);
        let root = format!("{}/", root.display());
        c.global
            .set_root_path(&Path::new(root.as_bytes()).map_err(|e| err("root path", e))?);
        Ok(c)
    }

    fn node(config: &Config) -> io::Result<Node<ipc::Service>> {
        init();
        NodeBuilder::new()
            .config(config)
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| err("node", e))
    }

    /// Subscriber buffer for streaming: about `bytes` of `size`-byte samples, 16 to 4096.
    fn stream_buffer(size: usize, bytes: usize) -> usize {
        (bytes / (size + 64)).clamp(16, 4096)
    }

    fn service(
        node: &Node<ipc::Service>,
        name: &str,
        dir: Dir,
        buffer: usize,
        create: bool,
    ) -> io::Result<Factory> {
        let name = ServiceName::new(name).map_err(|e| err("service name", e))?;
        let b = node.service_builder(&name).publish_subscribe::<[u8]>();
        let b = match dir {
            // As iceoryx2's own round-trip benchmark.
            Dir::Both => b
                .history_size(0)
                .subscriber_max_buffer_size(1)
                .enable_safe_overflow(true),
            // Lossless: the publisher retries while the subscriber's buffer is full.
            Dir::ParentSends => b
                .history_size(0)
                .subscriber_max_buffer_size(buffer)
                .enable_safe_overflow(false),
        }
        .max_publishers(1)
        .max_subscribers(1)
        .max_nodes(2);
        if create {
            b.create().map_err(|e| err("create service", e))
        } else {
            b.open().map_err(|e| err("open service", e))
        }
    }

    fn publisher(f: &Factory, size: usize, dir: Dir) -> io::Result<Pub> {
        let b = f.publisher_builder().initial_max_slice_len(size);
        let b = match dir {
            Dir::Both => b,
            Dir::ParentSends => b.backpressure_strategy(BackpressureStrategy::RetryUntilDelivered),
        };
        b.create().map_err(|e| err("publisher", e))
    }

    fn subscriber(f: &Factory) -> io::Result<Sub> {
        f.subscriber_builder()
            .create()
            .map_err(|e| err("subscriber", e))
    }

    pub struct Link {
        // Field order is drop order: the loan, ports, then services, then the node.
        /// The next sample, loaned ahead (iceoryx2's benchmark loans before it waits).
        loan: Option<Loan>,
        tx: Option<Pub>,
        rx: Option<Sub>,
        size: usize,
        services: Vec<Factory>,
        node: Option<Node<ipc::Service>>,
        /// The parent's domain and tag, removed when the parent's side is dropped.
        owned: Option<(Config, String)>,
    }

    impl Drop for Link {
        fn drop(&mut self) {
            self.loan = None;
            self.tx = None;
            self.rx = None;
            self.services.clear();
            self.node = None;
            if let Some((config, tag)) = self.owned.take() {
                // SAFETY: the domain is private to this session, and the child has dropped
                // its node before reporting `done` (or has been killed): nothing else uses
                // the segment.
                let _ = unsafe {
                    iceoryx2::testing::remove_global_mgmt_segment::<ipc::Service>(&config)
                };
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(tag));
            }
        }
    }

    impl Link {
        pub fn parent(
            size: usize,
            dir: Dir,
            ring: RingSize,
        ) -> io::Result<(Box<Self>, Vec<String>)> {
            let tag = unique_name("iox2");
            let config = domain(&tag)?;
            let node = node(&config)?;
            let buffer = stream_buffer(size, ring.capacity);
            let ping_name = "ping".to_string();
            let ping = service(&node, &ping_name, dir, buffer, true)?;
            let mut spec = vec![
                ping_name,
                u8::from(dir == Dir::Both).to_string(),
                buffer.to_string(),
                tag.clone(),
            ];
            let mut services = Vec::new();
            let tx = publisher(&ping, size, dir)?;
            services.push(ping);
            let mut rx = None;
            if dir == Dir::Both {
                let pong_name = "pong".to_string();
                let pong = service(&node, &pong_name, dir, buffer, true)?;
                rx = Some(subscriber(&pong)?);
                services.push(pong);
                spec.push(pong_name);
            }
            let mut l = Box::new(Link {
                loan: None,
                tx: Some(tx),
                rx,
                size,
                services,
                node: Some(node),
                owned: Some((config, tag)),
            });
            l.reloan()?;
            Ok((l, spec))
        }

        pub fn child(size: usize, spec: &[String]) -> io::Result<Box<Self>> {
            let bad = || other("iceoryx2: bad child spec");
            let config = domain(spec.get(3).ok_or_else(bad)?)?;
            let node = node(&config)?;
            let dir = if spec.get(1).ok_or_else(bad)? == "1" {
                Dir::Both
            } else {
                Dir::ParentSends
            };
            let buffer: usize = spec.get(2).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let ping = service(&node, spec.first().ok_or_else(bad)?, dir, buffer, false)?;
            let rx = subscriber(&ping)?;
            let mut services = vec![ping];
            let mut tx = None;
            if let Some(pong_name) = spec.get(4) {
                let pong = service(&node, pong_name, dir, buffer, false)?;
                tx = Some(publisher(&pong, size, dir)?);
                services.push(pong);
            }
            let mut l = Box::new(Link {
                loan: None,
                tx,
                rx: Some(rx),
                size,
                services,
                node: Some(node),
                owned: None,
            });
            l.reloan()?;
            Ok(l)
        }

        fn reloan(&mut self) -> io::Result<()> {
            if let Some(tx) = &self.tx {
                if self.loan.is_none() {
                    self.loan = Some(
                        tx.loan_slice_uninit(self.size)
                            .map_err(|e| err("loan", e))?,
                    );
                }
            }
            Ok(())
        }

        #[inline]
        fn send_bytes(&mut self, msg: &[u8]) -> io::Result<()> {
            let loan = match self.loan.take() {
                Some(l) => l,
                None => self
                    .tx
                    .as_ref()
                    .expect("a sending side")
                    .loan_slice_uninit(self.size)
                    .map_err(|e| err("loan", e))?,
            };
            loan.write_from_slice(msg)
                .send()
                .map_err(|e| err("send", e))?;
            Ok(())
        }
    }

    impl PeerLink for Link {
        #[inline]
        fn send(&mut self, msg: &[u8]) -> io::Result<()> {
            self.send_bytes(msg)?;
            self.reloan()
        }

        #[inline]
        fn recv_tag(&mut self) -> io::Result<u64> {
            let rx = self.rx.as_ref().expect("a receiving side");
            let mut g = Guard::new();
            loop {
                if let Some(s) = rx.receive().map_err(|e| err("receive", e))? {
                    return Ok(tag_of(s.payload()));
                }
                g.spin("iceoryx2")?;
            }
        }

        #[inline]
        fn echo(&mut self) -> io::Result<u64> {
            let mut g = Guard::new();
            loop {
                let rx = self.rx.as_ref().expect("a receiving side");
                if let Some(s) = rx.receive().map_err(|e| err("receive", e))? {
                    let tag = tag_of(s.payload());
                    if tag != QUIT {
                        self.send_bytes(s.payload())?;
                        drop(s);
                        self.reloan()?;
                    }
                    return Ok(tag);
                }
                g.spin("iceoryx2")?;
            }
        }

        fn send_batch(&mut self, msgs: &[Vec<u8>]) -> io::Result<()> {
            msgs.iter().try_for_each(|m| self.send(m))
        }

        fn recv_batch(&mut self, _max: usize, f: &mut dyn FnMut(u64)) -> io::Result<usize> {
            f(self.recv_tag()?);
            Ok(1)
        }
    }
}

/// The parent's iceoryx2 side: (link, child spec).
#[cfg(feature = "iceoryx2")]
pub fn iceoryx2_parent(size: usize, dir: Dir, ring: RingSize) -> io::Result<Parent> {
    let (l, spec) = ix::Link::parent(size, dir, ring)?;
    Ok((l as Box<dyn PeerLink>, spec, None))
}

/// The child's iceoryx2 side from the parent's spec.
#[cfg(feature = "iceoryx2")]
pub fn iceoryx2_child(size: usize, spec: &[String]) -> io::Result<Box<dyn PeerLink>> {
    Ok(ix::Link::child(size, spec)? as Box<dyn PeerLink>)
}
