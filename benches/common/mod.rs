//! The benchmark harness shared by `benches/ipc.rs` (criterion) and the `pingpong` and
//! `ipc_report` examples (pulled in with `#[path]`): every transport, cross-process, one
//! method. See `measure` for the method and `transport` for the transports.

// Each target that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod child;
pub mod measure;
pub mod sys;
pub mod table;
pub mod transport;
