#!/usr/bin/env bash
# Benchmarks must never rot: build the benchmark package (shmcast-bench) with every feature
# (the peers ringfire and iceoryx2, criterion) and the root examples, then run each piece
# once with tiny counts: every criterion benchmark (`--test`), the IPC report in every
# output format (every transport, peers included, and the jitter figure), the async report
# (every consumer in every figure; strace's syscall count where strace is installed),
# pingpong, the callgrind instruction counts, and the producer/consumer demo. Nothing here
# asserts on speed: the numbers from a CI machine mean nothing; only that every transport,
# figure and output format still runs end to end, and that nothing is left in /dev/shm.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf -- '--- %s (t+%ss)\n' "$*" "$(( $(date +%s) - start ))"; }
target=${CARGO_TARGET_DIR:-target}
shm_before=$(ls /dev/shm | sort)

step "build shmcast-bench (--features full), its criterion bench, the root examples"
cargo build --release -p shmcast-bench --features full --bins
cargo bench -p shmcast-bench --features full --no-run
cargo build --release --examples

step "criterion, every benchmark once"
cargo bench -p shmcast-bench --features full --bench ipc -- --test

report=$target/release/ipc_report
step "ipc_report --smoke (markdown, csv, json)"
"$report" --smoke
"$report" --smoke --figures rt,tput --sizes 64 --tput-sizes 64 --format csv >/dev/null
"$report" --smoke --figures rt --sizes 64 \
  --transports floor,shmcast-spin,ringfire,iceoryx2,pipe --pin --format json >/dev/null

step "async_report --smoke (markdown; json, unpinned, without strace)"
"$target/release/async_report" --smoke
"$target/release/async_report" --smoke --figures wake,syscalls --no-pin --strace off \
  --format json >/dev/null

step "pingpong, tiny counts"
"$target/release/pingpong" --iterations 200 --warmup 50 --rounds 2 \
  --budget-secs 0.1 --throughput-secs 0.01

step "callgrind instruction counts, tiny counts"
# The build above has every feature: reuse it.
FEATURES=full BURSTS=20 WARMUP=5 bash bench/callgrind.sh

step "producer/consumer demo: 2000 messages through a named segment"
name="shmcast-smoke-$$"
"$target/release/examples/consumer" "$name" --count 2000 --open-timeout 10 &
consumer=$!
"$target/release/examples/producer" "$name" --rate 20000 --count 40000 >/dev/null &
producer=$!
wait "$consumer"
wait "$producer"
"$target/release/examples/consumer" --lossy --help >/dev/null

step "nothing left in /dev/shm"
left=$(comm -13 <(echo "$shm_before") <(ls /dev/shm | sort) | grep -E 'shmcast-bench|iox2|shmcast-smoke' || true)
if [ -n "$left" ]; then
  echo "left behind in /dev/shm:" >&2
  echo "$left" >&2
  exit 1
fi

step "bench smoke done"
