#!/usr/bin/env bash
# Instructions per message, exact: callgrind counts every instruction executed, so the
# figures do not move with machine load (only with the code and the compiler).
#
# The driver (bench/src/bin/callgrind_ops.rs) runs one thread on a mapped segment (shmcast:
# a memfd; ringfire: a /dev/shm file), alternating bursts of 64 sends and 64 receives (+ drop)
# of 64-byte messages, after warm-up bursts. Each measured loop is its own `cg_*` function.
# For each (scenario, function) this script runs
#   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=<function>
# so the run's total ("Collected") is exactly that function's inclusive count, and divides
# it by the messages the loop handled. The loops add ~3 instructions per message of their
# own (counter, branch, result check), the same for every scenario.
#
#   bash bench/callgrind.sh                    # every scenario
#   BURSTS=5000 bash bench/callgrind.sh        # more bursts (the default 2000 is plenty)
#   PEERS=0 bash bench/callgrind.sh            # shmcast only (no ringfire build)
#   SCENARIOS="shmcast shmcast-batch" bash bench/callgrind.sh
#   FEATURES=full bash bench/callgrind.sh      # build with these features (default: peers),
#                                              # e.g. to reuse a build made with them
#
# Output: '#' comment lines, then one row per figure, whitespace-separated:
#   scenario  op  instructions_per_msg  collected_instructions  messages
set -euo pipefail
cd "$(dirname "$0")/.."

BURSTS=${BURSTS:-2000}
WARMUP=${WARMUP:-200}
PEERS=${PEERS:-1}

if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
  else
    echo "callgrind.sh: valgrind is required (apt-get install valgrind)" >&2
    exit 1
  fi
fi

features=()
default_scenarios="shmcast shmcast-send shmcast-batch shmcast-fanout-1 shmcast-fanout-4 shmcast-fanout-16"
if [ "$PEERS" = 1 ]; then
  features=(--features "${FEATURES:-peers}")
  default_scenarios="$default_scenarios ringfire ringfire-lossless"
fi
read -r -a scenarios <<<"${SCENARIOS:-$default_scenarios}"

cargo build -q --release -p shmcast-bench "${features[@]}" --bin callgrind_ops
bin=${CARGO_TARGET_DIR:-target}/release/callgrind_ops
work=$(mktemp -d "${TMPDIR:-/tmp}/shmcast-callgrind.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The measured functions of each scenario: "function:op" pairs.
functions() {
  case "$1" in
    shmcast) echo "cg_shmcast_send:try_send cg_shmcast_recv:try_recv+drop" ;;
    shmcast-send) echo "cg_shmcast_send_blocking:send" ;;
    shmcast-batch) echo "cg_shmcast_send_batch:send_batch cg_shmcast_recv_batch:recv_batch" ;;
    shmcast-fanout-*) echo "cg_shmcast_send:try_send" ;;
    ringfire | ringfire-lossless) echo "cg_ringfire_push:push cg_ringfire_recv:try_recv" ;;
    *) echo "callgrind.sh: unknown scenario '$1'" >&2; return 1 ;;
  esac
}

echo "# shmcast instruction counts (callgrind $(valgrind --version | sed 's/valgrind-//'), $(rustc --version | cut -d' ' -f2))"
echo "# 64-byte messages, bursts of 64 send then 64 receive, ${BURSTS} measured bursts after ${WARMUP} warm-up bursts"
printf '%-20s %-16s %20s %22s %10s\n' scenario op instructions_per_msg collected_instructions messages
for s in "${scenarios[@]}"; do
  fns=$(functions "$s")
  for pair in $fns; do
    fn=${pair%%:*}
    op=${pair#*:}
    log="$work/$s.$fn.log"
    if ! valgrind --tool=callgrind --callgrind-out-file="$work/$s.$fn.out" \
        --collect-atstart=no --toggle-collect="$fn" \
        "$bin" "$s" --bursts "$BURSTS" --warmup "$WARMUP" >"$work/$s.$fn.stdout" 2>"$log"; then
      echo "callgrind.sh: $s ($fn) failed:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    messages=$(sed -n 's/^messages \([0-9]*\)$/\1/p' "$work/$s.$fn.stdout")
    if [ -z "$collected" ] || [ -z "$messages" ] || [ "$collected" = 0 ]; then
      echo "callgrind.sh: $s ($fn): nothing collected (is '$fn' still a symbol?)" >&2
      exit 1
    fi
    per=$(awk -v c="$collected" -v m="$messages" 'BEGIN { printf "%.2f", c / m }')
    printf '%-20s %-16s %20s %22s %10s\n' "$s" "$op" "$per" "$collected" "$messages"
  done
done
