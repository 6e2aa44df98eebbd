//! shmcast's cross-process benchmark harness: every transport behind one interface, one
//! method, interleaved rounds, ratios measured in the same run.
//!
//! - [`transport`]: the transports (shmcast in three wait policies, the OS transports, the
//!   floors, and the peers ringfire and iceoryx2 with the `peers` feature);
//! - [`child`]: the second process (this binary re-executed);
//! - [`measure`]: round trips, one-way throughput, fan-out, idle cost, jitter;
//! - [`spsc`]: the streaming floor; `peers`: ringfire and iceoryx2 (feature `peers`);
//! - [`stats`], [`table`], [`args`], [`sys`]: percentiles, output, arguments, OS helpers;
//! - [`asynch`]: the asynchronous consumer's figures (wake-up latency, idle CPU, syscalls
//!   per message) with children of their own.
//!
//! Binaries: `pingpong` (the headline demo), `ipc_report` (everything), `async_report`
//! (the async consumer against the blocking one and a tokio `UnixStream`),
//! `callgrind_ops` (the instruction counts driven by `bench/callgrind.sh`);
//! `benches/ipc.rs` is the criterion front end (feature `criterion`).

#![deny(missing_docs)]

pub mod args;
pub mod asynch;
pub mod child;
pub mod measure;
#[cfg(any(feature = "ringfire", feature = "iceoryx2"))]
pub mod peers;
pub mod report;
pub mod spsc;
pub mod stats;
pub mod sys;
pub mod table;
pub mod transport;
