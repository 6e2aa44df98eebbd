#!/usr/bin/env bash
# loom model checks of the production ring (src/loom_tests.rs, compiled with
# --cfg shmcast_loom): release mode, each test run on its own and timed, with the number of
# interleavings it explored. Each test has its own preemption bound (3 for small models, 2,
# or 1 for the one that explodes at 2); LOOM_MAX_PREEMPTIONS overrides them all.
#
#   .ci/loom.sh                 # the suite
#   .ci/loom.sh NAME...         # some tests (substring of the name)
#
# The mutation runner (.ci/mutants.sh) reuses this suite to show that weakening an ordering
# makes a test fail.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg shmcast_loom"
export RUST_BACKTRACE=${RUST_BACKTRACE:-0}
# Different RUSTFLAGS: keep these artifacts apart from the normal build's.
export CARGO_TARGET_DIR=${LOOM_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/loom}
budget=${LOOM_BUDGET:-1200}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

cargo test -q --lib --release --no-run
tests=$(cargo test -q --lib --release -- --list 2>/dev/null | sed -n 's/^loom_tests::\(.*\): test$/\1/p')
[[ -n $tests ]] || { echo "no loom tests found" >&2; exit 1; }
if (( $# > 0 )); then
  tests=$(for t in $tests; do for f in "$@"; do if [[ $t == *"$f"* ]]; then echo "$t"; fi; done; done | sort -u)
fi
echo "built in $(elapsed)s; preemption bounds: ${LOOM_MAX_PREEMPTIONS:-per test}"

failed=0
for t in $tests; do
  left=$(( budget - $(elapsed) ))
  (( left > 0 )) || { echo "loom suite exceeded ${budget}s" >&2; exit 1; }
  t0=$(date +%s%N)
  if out=$(timeout "$left" cargo test -q --lib --release -- \
             --exact "loom_tests::$t" --nocapture --test-threads=1 2>&1); then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  # The test's own line: "loom <label>: <n> iterations in <time> ...".
  info=$(sed -n 's/^loom \(.*\)$/\1/p' <<<"$out" | tr '\n' ' ')
  printf '%-72s %-7s %7d ms  %s\n' "$t" "$result" "$ms" "$info"
  [[ $result == ok ]] || sed 's/^/    /' <<<"$out" | grep -v '^\s*$' | tail -25
done
echo "loom suite: $(elapsed)s total"
(( failed == 0 ))
