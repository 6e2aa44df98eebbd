#!/usr/bin/env bash
# Fuzz stage: build every cargo-fuzz target in fuzz/ (libFuzzer, AddressSanitizer, overflow
# checks) and run each for FUZZ_SECONDS (default 60) from its committed seeds, copied to a
# scratch corpus so the tree stays clean. Fails on any crash, panic, leak, timeout or OOM, and
# prints executions, exec/s and coverage per target.
#
#   FUZZ_SECONDS=300 bash .ci/fuzz.sh              # longer runs
#   FUZZ_TARGETS="framing" bash .ci/fuzz.sh        # some targets only
#   FUZZ_JOBS=1 bash .ci/fuzz.sh                   # one target at a time (default: 2)
#   FUZZ_DEBUG_ASSERTIONS=0 bash .ci/fuzz.sh       # without debug assertions
#   FUZZ_TARGET_DIR=/path bash .ci/fuzz.sh         # build elsewhere (default: fuzz/target)
#
# Reproduce a crash: cd fuzz && cargo +nightly fuzz run <target> <artifact>
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-2}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-hostile_segment op_sequences framing slot_scribble}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal || {
    echo "fuzz: a nightly toolchain is required (cargo-fuzz needs -Z flags)" >&2
    exit 1
  }
fi
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
cargo fuzz --version

# cargo-fuzz's default build: optimized, with debug assertions and overflow checks (an
# arithmetic overflow on hostile input is a finding). FUZZ_DEBUG_ASSERTIONS=0 builds with
# `-O` (neither), e.g. to look past a known assertion failure.
build_flags=()
if [ "${FUZZ_DEBUG_ASSERTIONS:-1}" = 0 ]; then
  build_flags=(-O)
fi

cd fuzz
# The fuzz build has its own flags (sanitizer, coverage): keep it apart from other builds.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
start=$(date +%s)
# One target builds alone; several build together (`cargo fuzz build` builds all).
build_target=()
if [ "${#TARGETS[@]}" -eq 1 ]; then
  build_target=("${TARGETS[0]}")
fi
if ! cargo +nightly fuzz build "${build_flags[@]}" "${build_target[@]}" >"${TMPDIR:-/tmp}/shmcast-fuzz-build.log" 2>&1; then
  tail -n 60 "${TMPDIR:-/tmp}/shmcast-fuzz-build.log"
  echo "fuzz: build failed" >&2
  exit 1
fi
echo "fuzz: built in $(( $(date +%s) - start ))s"

bin_dir=$CARGO_TARGET_DIR/$(rustc +nightly -vV | sed -n 's/^host: //p')/release
work=$(mktemp -d "${TMPDIR:-/tmp}/shmcast-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

max_len() {
  case "$1" in
    hostile_segment) echo 70000 ;; # a segment: header + slots + ring (capacities up to 64 KiB)
    *) echo 4096 ;;
  esac
}

run_target() {
  local t=$1 corpus="$work/corpus/$t" artifacts="$work/artifacts/$t/" rc=0
  mkdir -p "$corpus" "$artifacts"
  if [ -d "seeds/$t" ]; then
    cp -r "seeds/$t/." "$corpus/"
  fi
  "$bin_dir/$t" "$corpus" \
    -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
    >"$work/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t.rc"
}

# Run FUZZ_JOBS targets at a time.
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do
    wait -n || true
  done
  run_target "$t" &
done
wait

status=0
printf '\n%-16s %12s %9s %7s %8s %6s  %s\n' target executions exec/s cov ft corpus result
for t in "${TARGETS[@]}"; do
  if [ "$(cat "$work/$t.rc" 2>/dev/null)" = 0 ]; then result=ok; else result=FAILED; status=1; fi
  log="$work/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  printf '%-16s %12s %9s %7s %8s %6s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result"
  if [ "$result" = FAILED ]; then
    echo "--- $t: what failed ---"
    grep -m 2 -A 6 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$log" || true
    echo "--- $t: last lines of the libFuzzer log ---"
    grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -n 40
    for a in "$work/artifacts/$t/"*; do
      [ -e "$a" ] || continue
      mkdir -p artifacts/"$t"
      cp "$a" artifacts/"$t"/
      echo "artifact: fuzz/artifacts/$t/$(basename "$a") (base64 below)"
      base64 -w 0 "$a" | head -c 20000
      echo
      echo "reproduce: cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $t artifacts/$t/$(basename "$a")"
    done
  fi
done
echo "fuzz: done in $(( $(date +%s) - start ))s"
exit "$status"
