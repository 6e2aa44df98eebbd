//! # shmcast-bridge
//!
//! Carry [shmcast] rings between hosts over [zenoh]: rings inside a host, zenoh
//! between hosts.
//!
//! ```text
//!  host A                                         host B
//!  producer ─▶ ring "ticks" ─▶ Exporter ══zenoh══▶ Importer ─▶ ring "ticks" ─▶ consumers
//!                     └─▶ local consumers          (TCP, peer/client/router)
//! ```
//!
//! - An [`Exporter`] attaches to a ring as one of its consumers (lossless, so it gates the
//!   producer, or lossy) and publishes each message on a key expression, behind a 48-byte
//!   [header](wire) that carries the message's sequence number in the source ring, the
//!   exporter's own publication number and the identity of the source stream.
//! - An [`Importer`] subscribes to the key expression and produces every message into a
//!   local ring, which it creates (or takes over from a dead importer), so consumers on the
//!   far host read it like any other ring.
//! - Loss is never hidden: the importer compares the numbers and counts every missing
//!   message exactly ([`ImportStats`]) and logs it: lost between the hosts, never published
//!   by a lossy export that fell behind, or lost around an exporter restart. A restarted
//!   importer resumes from a position it saves beside the ring, so even what was published
//!   while it was down is counted exactly.
//!
//! ```no_run
//! use shmcast_bridge::{ExportOptions, Exporter, ImportOptions, Importer, RingRef, ZenohOptions};
//! // Host B: import first (zenoh does not store what nobody subscribes to).
//! let session_b = ZenohOptions::loopback_connect(7447).open()?;
//! let importer = Importer::start(&session_b, ImportOptions::new("ticks-b", "shmcast/ticks"))?;
//! // Host A: export the ring "ticks".
//! let session_a = ZenohOptions::loopback_listen(7447).open()?;
//! let mut exporter = Exporter::new(
//!     &session_a,
//!     ExportOptions::new(RingRef::Name("ticks".into()), "shmcast/ticks"),
//! )?;
//! exporter.run()?; // until the ring is closed
//! importer.wait_end(None);
//! let stats = importer.stop();
//! println!("imported {}, lost {}", stats.imported, stats.lost());
//! # Ok::<(), shmcast_bridge::BridgeError>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod config;
mod error;
mod export;
mod import;
mod state;
mod throttle;
pub mod tracker;
pub mod wire;

pub use config::{ZenohOptions, DEMO_PORT};
pub use error::BridgeError;
pub use export::{
    Congestion, ExportEnd, ExportOptions, ExportStats, ExportStatsHandle, Exporter, RingRef,
    StopHandle,
};
pub use import::{ImportOptions, ImportStats, ImportStatsHandle, Importer};
pub use zenoh;
