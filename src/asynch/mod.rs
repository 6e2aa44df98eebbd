//! Asynchronous receive and send (feature `tokio`): futures and streams for tokio or any
//! other executor, and a pollable descriptor for event loops.
//!
//! | handle | awaits | stream of | event loops |
//! |:--|:--|:--|:--|
//! | [`AsyncConsumer`] (lossless) | `recv()` → in-place [`Message`](crate::Message), `recv_vec()` | `Vec<u8>` | [`AsyncConsumer::arm`] + `try_recv` |
//! | [`AsyncLossyConsumer`] | `recv_into(&mut buf)`, `recv_vec()` | `Vec<u8>` (`Lagged` yielded, goes on) | `arm` + `try_recv_into` |
//! | [`AsyncProducer`] | `send(msg)`, `reserve(len)` → in-place [`Reserved`](crate::Reserved) | | `arm(fd, len)` + `try_send` |
//!
//! Each wraps the blocking handle (`AsyncConsumer::new(consumer)`), so every way to open
//! or create a segment works, and the blocking handle's other operations stay available
//! (`get_mut`). The futures are runtime-agnostic (no timer, no reactor: only wakers).
//!
//! ```
//! use shmcast::{AsyncConsumer, AsyncProducer, Consumer, Producer, RecvError};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("shmcast-doc-async-{}", std::process::id());
//! let mut producer = AsyncProducer::new(Producer::builder().capacity(1 << 12).create(&name)?);
//! // Usually in another process:
//! let mut consumer = AsyncConsumer::new(Consumer::builder().open(&name)?);
//!
//! let reader = tokio::spawn(async move {
//!     let mut total = 0;
//!     loop {
//!         match consumer.recv().await {
//!             Ok(msg) => total += msg.len(), // in place; released when dropped
//!             Err(RecvError::Disconnected) => return Ok(total),
//!             Err(e) => return Err(e),
//!         }
//!     }
//! });
//! for i in 0..10_000u32 {
//!     producer.send(&i.to_le_bytes()).await?; // waits while the ring (4 KiB) is full
//! }
//! drop(producer); // closes the stream
//! assert_eq!(reader.await??, 40_000);
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//! - **Cancel-safe.** A message is taken from the ring, or a message published, only in the
//!   poll that completes the future: dropping a `recv`, `send` or `reserve` future before
//!   it completes (a `select!` branch that lost, a timeout) loses nothing, consumes
//!   nothing and reserves nothing; the handle stays usable and the next call reuses the
//!   registered wait.
//! - **Errors** are the blocking API's: `Disconnected` after the producer closed the stream
//!   and every message was received; `ProducerDied` after a producer died without closing
//!   (noticed at once through the producer's death notice, see below; within 20 ms where
//!   there is none); `Evicted`, `Lagged` (lossy),
//!   `Corrupt`, `Forked` (a handle inherited across `fork`).
//! - **Fairness.** After 128 operations in a row that completed without waiting, a poll
//!   yields to the executor once (as tokio's cooperative budget does), so a flooded
//!   consumer does not starve the other tasks of its thread.
//!
//! # How it waits
//! The futex a producer wakes cannot be awaited: it is a word in shared memory, and no
//! descriptor or waker watches it. This module keeps the rings' eventcount protocol
//! unchanged (a handle that finds nothing announces a sleep on the futex line, re-checks,
//! and the peer wakes the line only if someone announced) and lets a **waiter thread**
//! sleep on the words on behalf of every waiting task of the process: one
//! `futex_waitv(2)` call (Linux 5.16+) watches up to 127 distinct words (every handle of a
//! segment in this process shares its word) plus a private control word through which a
//! registration adds a word. When the producer wakes the line, the waiter thread wakes,
//! and wakes every task whose word changed.
//!
//! - **While data flows** a receive that finds a message completes at once: no syscall,
//!   no registration, the blocking handle's fast path. A send that finds room likewise.
//! - **A handle that runs dry** announces (one atomic swap and a fence), registers (a
//!   mutex and a few stores; no syscall when its word is already watched, which it stays
//!   for a second after the last wait on it) and returns `Pending`. The producer's next
//!   publication then makes one `FUTEX_WAKE` for the whole sleep generation, as for a
//!   blocking sleeper.
//! - **Idle costs (almost) nothing.** An idle consumer has no thread of its own, and the
//!   waiter thread sleeps without a timeout tick: besides the data word it watches each
//!   segment's **death notice**, a robust futex word that a thread of the producer's
//!   process owns (see [`Producer`](crate::Producer)). When that process dies, however it
//!   dies (`SIGKILL` included), the kernel marks the word and wakes the waiter thread,
//!   which confirms the death on the producer's liveness lock (one `fcntl`) and hands the
//!   tasks back (their next poll reports `ProducerDied`). Close and eviction arrive with a
//!   wake of the data word; a stream stuck on a corrupt record is reported by the poll
//!   before the task would register. Because any process that maps the segment could
//!   scribble the notice, the waiter still probes the lock once every 5 s while a task
//!   waits: over 10 s idle, 4 sleeps of the waiter thread and 2 `fcntl`s, about 0.5 ms of
//!   CPU (it was 511 sleeps, 499 probes and 26 ms with a 20 ms tick). A producer without a
//!   notice (its thread could not be started) is probed every 20 ms, as a blocking
//!   consumer probes.
//! - **Without `futex_waitv`** (Linux before 5.16, a seccomp filter that refuses it, or
//!   the environment variable `SHMCAST_FUTEX_WAITV=0`) each waiter thread watches one word
//!   with `FUTEX_WAIT`: one thread per distinct futex word (per segment and direction), and
//!   the producer's liveness is probed every 20 ms (one word per wait: no notice).
//!
//! ## Why a waiter thread (measurements)
//! `bench/src/bin/async_report.rs` measures it (`cargo run --release -p shmcast-bench --bin
//! async_report`; method and tables in bench/README.md, "Async wake-up"). On the project's
//! 2-vCPU VM, pinned, 64-byte messages sent 1-5 ms apart so the consumer sleeps each time
//! (5 interleaved rounds; load average 1.2-2.4; blocking figures, dominated by the VM waking
//! a halted vCPU):
//!
//! | wake-up latency | p50 | p99 |
//! |:--|--:|--:|
//! | `AsyncConsumer`, tokio multi-thread | 64 µs | 146 µs |
//! | `AsyncConsumer`, tokio current-thread | 63 µs | 170 µs |
//! | blocking `Consumer`, adaptive | 33 µs | 1.7 ms |
//! | tokio `UnixStream`, multi-thread | 59 µs | 406 µs |
//!
//! The waiter costs one thread hop (producer `FUTEX_WAKE`, the waiter's `futex_waitv`
//! returns, an eventfd write, the worker's `epoll_wait`): 1.6-2.2x the blocking consumer's
//! p50 over six runs, about a tokio `UnixStream`'s. While data flows it makes no syscall
//! (0.001 per message under strace). Idle, it costs about 50 µs of CPU per second (a
//! backstop liveness probe every 5 s), less than a blocking consumer's 20 ms-bounded
//! sleeps (2-3 ms per second) and close to a tokio `UnixStream` in `epoll_wait`.
//!
//! The alternatives: a thread per waiting handle (`spawn_blocking` around the blocking
//! `recv`) wakes as fast as the blocking consumer but costs a thread per handle and cannot
//! be cancelled; io_uring's `IORING_OP_FUTEX_WAIT` (Linux 6.7+) would let the futex wake
//! complete on the executor's own epoll through a registered eventfd, saving the thread
//! hop, but needs a recent kernel, is refused by common container seccomp profiles, and
//! would tie the futures to one reactor; a tokio `UnixStream` is what a reactor-driven
//! wake-up costs and is measured beside it.
//!
//! # Event loops
//! [`EventFd`] is an eventfd that an armed handle's waits signal: register it with epoll
//! or mio, and on readiness [`EventFd::clear`] it, drain the handle with `try_recv` until
//! `Empty`, and `arm` it again (`arm` returns `true` if the handle is ready at once: drain
//! again instead of waiting). The ring itself cannot provide a descriptor (see
//! [`EventFd`]).

mod consumer;
mod event_fd;
mod producer;
mod sys;
mod wait;
mod waiter;

pub use consumer::{AsyncConsumer, AsyncLossyConsumer};
pub use event_fd::EventFd;
/// The `Stream` trait the consumers implement (from `futures-core`), re-exported so that
/// code can name it without depending on `futures-core` itself.
pub use futures_core::Stream;
pub use producer::AsyncProducer;
pub use waiter::WaiterStats;

/// Test hook (feature `test-hooks`): this process does without `futex_waitv` from now on,
/// as on a kernel without it: the waiter, if it is made after this call, watches one futex
/// word per thread, and blocking sleeps do not watch the producer's death notice. Not part
/// of the API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub fn without_futex_waitv() {
    crate::os::futex::disable_waitv();
}

/// Counters of this process's waiter threads (all asynchronous handles): how many waits
/// were registered, how many of them needed a syscall of their own, how often the threads
/// slept and woke tasks. For benchmarks and monitoring.
///
/// # Examples
/// ```
/// let stats = shmcast::asynch::waiter_stats();
/// assert!(stats.pokes <= stats.registrations);
/// ```
pub fn waiter_stats() -> WaiterStats {
    waiter::stats()
}
