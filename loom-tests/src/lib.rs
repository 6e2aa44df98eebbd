//! loom model checks of the shmcast ring: see `tests/ring.rs`, and `weaken.sh` for the
//! proof that each check fails when the ordering it guards is weakened.
//!
//! Everything is gated on `cfg(shmcast_loom)`: a plain `cargo test` builds this crate to
//! nothing and never compiles loom. Run the suite with
//!
//! ```text
//! RUSTFLAGS="--cfg shmcast_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release
//! ```
//!
//! or `.ci/loom.sh`.
