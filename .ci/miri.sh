#!/usr/bin/env bash
# Miri stage: the heap-backed ring under Miri with strict provenance.
#
# * the library's unit tests, tests/fuzz_regressions.rs (hostile heap segments) and
#   tests/defects.rs (the regression tests of issue 10, among them the two programs that
#   were UB: a held message overwritten after `evict_after`, a reservation written through
#   `&mut [u8]` while a lossy reader loads the same words), one seed;
# * tests/in_process.rs (threads, futex wake-ups, lossy seqlock copies on a ring small
#   enough to be lapped many times, exact loss counts) and the threaded defects test over
#   several scheduler seeds (MIRI_SEEDS, a Miri range, default 0..4), iteration counts
#   scaled down under cfg(miri).
#
# Not run: doctests and the other integration tests, which create shared-memory segments
# (shm_open, memfd_create, mmap of a file, OFD locks) or spawn processes, none of which
# Miri supports.
#
#   MIRI_SEEDS=0..16 bash .ci/miri.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
  rustup component add miri rust-src --toolchain nightly
fi
cargo +nightly miri --version
cargo +nightly miri setup >/dev/null

MIRI_SEEDS=${MIRI_SEEDS:-0..4}
base="-Zmiri-strict-provenance ${MIRIFLAGS:-}"
# Miri's own build of the crate and its test dependencies: apart from the normal build.
export CARGO_TARGET_DIR=${MIRI_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/miri}
start=$(date +%s)

MIRIFLAGS="$base" cargo +nightly miri test -p shmcast --lib --test fuzz_regressions --test defects
echo "miri: unit, regression and defect tests done at t+$(( $(date +%s) - start ))s"

# Seeds run in parallel inside one Miri process; the first failing seed is reported.
MIRIFLAGS="$base -Zmiri-many-seeds=$MIRI_SEEDS" cargo +nightly miri test -p shmcast \
  --test in_process
MIRIFLAGS="$base -Zmiri-many-seeds=$MIRI_SEEDS" cargo +nightly miri test -p shmcast \
  --test defects -- reservations_race
echo "miri: threaded tests over seeds $MIRI_SEEDS done; stage took $(( $(date +%s) - start ))s"
