#!/usr/bin/env bash
# Miri stage: the heap-backed ring under Miri with strict provenance.
#
# * tests/in_process.rs (threads, futex wake-ups, lossy seqlock copies) over several
#   scheduler seeds (MIRI_SEEDS, a Miri range, default 0..4), iteration counts scaled down
#   under cfg(miri);
# * the library's unit tests and tests/fuzz_regressions.rs (hostile heap segments), which
#   are single-threaded: one seed.
#
# Not run: doctests and the other integration tests, which create shared-memory segments
# (shm_open, memfd_create, mmap of a file, OFD locks) or spawn processes, none of which
# Miri supports.
#
#   MIRI_SEEDS=0..16 bash .ci/miri.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add miri rust-src --toolchain nightly
fi
cargo +nightly miri --version
cargo +nightly miri setup >/dev/null

MIRI_SEEDS=${MIRI_SEEDS:-0..4}
base="-Zmiri-strict-provenance ${MIRIFLAGS:-}"
start=$(date +%s)

MIRIFLAGS="$base" cargo +nightly miri test --lib --test fuzz_regressions
echo "miri: unit and regression tests done at t+$(( $(date +%s) - start ))s"

# Seeds run in parallel inside one Miri process; the first failing seed is reported.
MIRIFLAGS="$base -Zmiri-many-seeds=$MIRI_SEEDS" cargo +nightly miri test --test in_process
echo "miri: in_process over seeds $MIRI_SEEDS done; stage took $(( $(date +%s) - start ))s"
