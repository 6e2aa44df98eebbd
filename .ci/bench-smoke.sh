#!/usr/bin/env bash
# Benchmarks must never rot: build every benchmark and example, run each criterion
# benchmark once (`--test`), then the IPC report and pingpong with tiny counts. Nothing here
# asserts on speed: the numbers from a CI machine mean nothing; only that every transport,
# figure and output format still runs end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf -- '--- %s (t+%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "build benches and examples"
cargo bench --no-run
cargo build --release --examples

step "criterion, every benchmark once"
cargo bench --bench ipc -- --test

step "ipc_report --smoke (markdown, csv, json)"
cargo run --release --example ipc_report -- --smoke
cargo run --release --example ipc_report -- --smoke --figures rt,tput --sizes 64 \
  --tput-sizes 64 --format csv >/dev/null
cargo run --release --example ipc_report -- --smoke --figures rt --sizes 64 \
  --transports floor,shmcast-spin,pipe --pin --format json >/dev/null

step "pingpong, tiny counts"
cargo run --release --example pingpong -- --iterations 200 --warmup 50 \
  --budget-secs 0.1 --throughput-secs 0.01

step "bench smoke done"
