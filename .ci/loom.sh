#!/usr/bin/env bash
# loom model checks of the ring (loom-tests/): release mode, each test run on its own and
# timed. Preemption bound 3 (LOOM_MAX_PREEMPTIONS overrides it), except for the
# three-thread delivery test, capped at 2: at 3 it explores ~2 million interleavings in
# ~10 minutes, at 2 about 50 000 in ~15 s. On 2 cores the models take ~1.5 minutes, plus
# ~2 minutes for a cold build (budget: 15 minutes).
#
#   .ci/loom.sh            # the suite
#   .ci/loom.sh --weaken   # the suite, then loom-tests/weaken.sh: every weakened ordering
#                          # must make a test fail (8 to 12 more minutes: one rebuild and
#                          # one suite run per weakening, at preemption bound 2)
set -euo pipefail
cd "$(dirname "$0")/.."

weaken=0
case "${1:-}" in
  "") ;;
  --weaken) weaken=1 ;;
  *) echo "usage: $0 [--weaken]" >&2; exit 2 ;;
esac

export RUSTFLAGS="--cfg shmcast_loom"
bound=${LOOM_MAX_PREEMPTIONS:-3}
# Tests whose bound is capped (name=cap).
declare -A cap=([every_consumer_gets_every_message_once_in_order_across_the_wrap]=2)
export RUST_BACKTRACE=${RUST_BACKTRACE:-0}
# Different RUSTFLAGS: keep these artifacts apart from the normal build's.
export CARGO_TARGET_DIR=${LOOM_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/loom}
budget=900
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

cargo test -q -p loom-tests --release --no-run
tests=$(cargo test -q -p loom-tests --release --test ring -- --list 2>/dev/null | sed -n 's/: test$//p')
[[ -n $tests ]] || { echo "no loom tests found" >&2; exit 1; }
echo "built in $(elapsed)s; preemption bound $bound"

failed=0
for t in $tests; do
  left=$(( budget - $(elapsed) ))
  (( left > 0 )) || { echo "loom suite exceeded ${budget}s" >&2; exit 1; }
  b=$bound
  [[ -z ${cap[$t]:-} ]] || (( b <= cap[$t] )) || b=${cap[$t]}
  t0=$(date +%s%N)
  if out=$(LOOM_MAX_PREEMPTIONS=$b timeout "$left" cargo test -q -p loom-tests --release --test ring -- \
             --exact "$t" --nocapture --test-threads=1 2>&1); then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [[ $result == ok ]] && grep -q ' 0 passed; 0 failed; 1 ignored' <<<"$out"; then
    result=ignored
  fi
  # The test's own line: "loom <label>: <n> iterations in <time> ...".
  info=$(sed -n 's/^loom \(.*\)$/\1/p' <<<"$out" | tail -1)
  printf '%-64s %-7s %6d ms  %s\n' "$t" "$result" "$ms" "$info"
  [[ $result == ok ]] || sed 's/^/    /' <<<"$out" | grep -v '^\s*$' | tail -25
done
echo "loom suite: $(elapsed)s total"
(( failed == 0 )) || exit 1

if (( weaken )); then
  bash loom-tests/weaken.sh
  echo "loom suite and weakenings: $(elapsed)s total"
fi
