#!/usr/bin/env bash
# Fuzz stage: build every cargo-fuzz target in fuzz/ (libFuzzer, AddressSanitizer, debug
# assertions and overflow checks, optimized) and run each for FUZZ_SECONDS, FUZZ_JOBS at a
# time. Each run starts from the committed seeds (fuzz/seeds/<target>) plus the corpus kept
# from earlier runs (FUZZ_CORPUS_DIR/<target>); at the end, seeds, kept corpus and new finds
# are minimized together (libFuzzer -merge=1) into the kept corpus, which CI caches. The tree
# is never written to, except fuzz/artifacts/ on a failure. Fails on any crash, panic, leak,
# timeout or OOM; prints executions, exec/s, coverage and corpus size per target.
#
#   FUZZ_SECONDS=300 bash .ci/fuzz.sh              # longer runs (default 45 s per target)
#   FUZZ_TARGETS="framing" bash .ci/fuzz.sh        # some targets only
#   FUZZ_JOBS=1 bash .ci/fuzz.sh                   # one target at a time (default: 2)
#   FUZZ_DEBUG_ASSERTIONS=0 bash .ci/fuzz.sh       # without debug assertions
#   FUZZ_CACHE=/path bash .ci/fuzz.sh              # cache root (default ~/.cache/shmcast-fuzz)
#   FUZZ_CORPUS_DIR=/path bash .ci/fuzz.sh         # kept corpus (default $FUZZ_CACHE/corpus)
#   FUZZ_TARGET_DIR=/path bash .ci/fuzz.sh         # build dir (default $FUZZ_CACHE/target)
#   FUZZ_KEEP_CORPUS=0 bash .ci/fuzz.sh            # run from the seeds only, keep nothing
#
# Cache FUZZ_CACHE between CI runs: the corpus so each run goes on where the last stopped,
# the build dir so the stage does not rebuild libFuzzer and the dependencies every time.
# Reproduce a crash: cd fuzz && cargo +nightly fuzz run <target> <artifact>
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-45}
FUZZ_JOBS=${FUZZ_JOBS:-2}
FUZZ_CACHE=${FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shmcast-fuzz}
FUZZ_CORPUS_DIR=${FUZZ_CORPUS_DIR:-$FUZZ_CACHE/corpus}
FUZZ_KEEP_CORPUS=${FUZZ_KEEP_CORPUS:-1}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-hostile_segment hostile_stream op_sequences framing slot_scribble threads}"

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
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ_CACHE/target}"
mkdir -p "$CARGO_TARGET_DIR"
start=$(date +%s)
# One target builds alone; several build together (`cargo fuzz build` builds all).
build_target=()
if [ "${#TARGETS[@]}" -eq 1 ]; then
  build_target=("${TARGETS[0]}")
fi
build_log="${TMPDIR:-/tmp}/shmcast-fuzz-build.log"
if ! cargo +nightly fuzz build "${build_flags[@]}" "${build_target[@]}" >"$build_log" 2>&1; then
  tail -n 60 "$build_log"
  echo "fuzz: build failed" >&2
  exit 1
fi
echo "fuzz: built in $(( $(date +%s) - start ))s (target dir $CARGO_TARGET_DIR)"

bin_dir=$CARGO_TARGET_DIR/$(rustc +nightly -vV | sed -n 's/^host: //p')/release
work=$(mktemp -d "${TMPDIR:-/tmp}/shmcast-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ "$FUZZ_KEEP_CORPUS" = 1 ]; then
  echo "fuzz: kept corpus in $FUZZ_CORPUS_DIR"
fi

max_len() {
  case "$1" in
    hostile_segment) echo 70000 ;; # a segment: header + slots + ring (capacities up to 64 KiB)
    *) echo 4096 ;;
  esac
}

count() { { find "$1" -maxdepth 1 -type f 2>/dev/null || true; } | wc -l; }

run_target() {
  local t=$1 new="$work/new/$t" artifacts="$work/artifacts/$t/" rc=0
  local kept="$FUZZ_CORPUS_DIR/$t"
  mkdir -p "$new" "$artifacts"
  local dirs=("$new")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  if [ "$FUZZ_KEEP_CORPUS" = 1 ] && [ -d "$kept" ]; then
    dirs+=("$kept")
  fi
  echo "$(count "seeds/$t") $( [ "$FUZZ_KEEP_CORPUS" = 1 ] && count "$kept" || echo 0)" \
    >"$work/$t.start"
  # New finds go to the first directory; the seeds and the kept corpus are only read.
  "$bin_dir/$t" "${dirs[@]}" \
    -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
    >"$work/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t.rc"
  if [ "$rc" = 0 ] && [ "$FUZZ_KEEP_CORPUS" = 1 ]; then
    # Minimize seeds + kept + new into a fresh directory, then swap it in whole (an
    # interrupted merge leaves the old corpus intact).
    local merged="$FUZZ_CORPUS_DIR/.$t.merging"
    rm -rf "$merged"
    mkdir -p "$merged"
    if "$bin_dir/$t" -merge=1 "$merged" "${dirs[@]:1}" "$new" -max_len="$(max_len "$t")" \
      -timeout=10 -rss_limit_mb=2048 >"$work/$t.merge.log" 2>&1; then
      rm -rf "$kept"
      mv "$merged" "$kept"
    else
      echo "fuzz: $t: merge failed, kept corpus unchanged" >>"$work/$t.log"
      rm -rf "$merged"
      echo 1 >"$work/$t.rc"
    fi
  fi
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
printf '\n%-16s %11s %7s %6s %7s %14s %7s  %s\n' target executions exec/s cov ft \
  'seeds+kept' 'corpus' result
for t in "${TARGETS[@]}"; do
  if [ "$(cat "$work/$t.rc" 2>/dev/null)" = 0 ]; then result=ok; else result=FAILED; status=1; fi
  log="$work/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  read -r nseeds nkept <"$work/$t.start" || true
  if [ "$FUZZ_KEEP_CORPUS" = 1 ]; then
    corp=$(count "$FUZZ_CORPUS_DIR/$t")
  else
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  fi
  printf '%-16s %11s %7s %6s %7s %14s %7s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "${nseeds:-?}+${nkept:-?}" "${corp:-?}" "$result"
  if [ "$result" = FAILED ]; then
    echo "--- $t: what failed ---"
    grep -m 2 -A 6 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|merge failed' "$log" || true
    echo "--- $t: last lines of the libFuzzer log ---"
    { grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse|RELOAD)' "$log" || true; } | tail -n 40
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
