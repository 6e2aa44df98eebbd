#!/usr/bin/env bash
# Proof that the loom checks bite: apply one named weakening of an ordering or fence in
# src/ring.rs (one, for a combination, in the loom model of the liveness locks) at a time
# to a temporary copy of the crate (the working tree is never touched), run the loom suite
# on the copy, and report which tests fail and how.
#
#   loom-tests/weaken.sh              # every weakening
#   loom-tests/weaken.sh NAME...      # only these; NAME+NAME applies several at once
#   loom-tests/weaken.sh --list       # names, guarded tests, what they change
#
# Exit status: 0 if every weakening is caught by at least one test (or, for the few marked
# redundant below, is not caught, as explained there); 1 otherwise, or if a weakening no
# longer applies because the code it targets changed.
#
# Environment: LOOM_MAX_PREEMPTIONS (default 2; WEAKEN_DEEP_PREEMPTIONS, default 3, for
# the tests listed in `deep` below), WEAKEN_TARGET_DIR (cargo target dir;
# default $CARGO_TARGET_DIR/loom-weaken, or target/loom-weaken), WEAKEN_TIMEOUT (seconds per
# suite run, default 900), WEAKEN_TEST_THREADS (default 2), WEAKEN_KEEP=1 (keep the copy
# and one log per weakening).
#
# Takes 8 to 12 minutes on 2 cores: per weakening, one rebuild of shmcast and the tests
# (~10 s) and one run of the suite (a caught weakening usually fails within seconds, but
# the other tests run to the end).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

# name|guarded tests|perl substitution (must match exactly once)|change|expected outcome
# (empty: some test fails; "redundant: why": no test can fail)|file (default src/ring.rs)
weakenings=(
  "stamp-release|1 2|s/(r\.word\(res\.pos\)\.store\(res\.pos, )Release\)/\${1}Relaxed)/g|publication stamp store Release->Relaxed (RingProducer::publish_stamps)|"
  "stamp-acquire|1 2|s/(let stamp = self\.region\.word\(idx\)\.load\()Acquire(\);\s*if stamp != c \{\s*return self\.not_published)/\${1}Relaxed\${2}/g|stamp load Acquire->Relaxed (RingConsumer::poll)|"
  "padding-stamp-release|1|s/(r\.word\(res\.start\)\.store\(res\.start, )Release\)/\${1}Relaxed)/g|padding stamp store Release->Relaxed (RingProducer::publish_stamps)|"
  "cursor-release|6a|s/(\.cursor\s*\.store\(self\.cursor, )Release\)/\${1}Relaxed)/g|cursor store Release->Relaxed (RingConsumer::publish)|"
  "cursor-acquire|6a|s/(let c = slot\.cursor\.load\()Acquire\)/\${1}Relaxed)/g|cursor load Acquire->Relaxed (RingProducer::scan_gate)|"
  "sleeper-fence|4a 4c|s/(\} else \{\s*)fence\(SeqCst\);(\s*\}\s*(?:\/\/[^\n]*\s*)*if self\.ready\(\))/\${1}\/\/ weakened: fence removed\${2}/g|sleeper fence removed (RingConsumer::sleep, symmetric mode: loom does not model membarrier)|"
  "waker-fence|4a 4c|s/fence\(SeqCst\);(\s*\}\s*if h\.data\.sleepers\.load\(Relaxed\) != 0 \{)/\/\/ weakened: fence removed\${1}/g|waker fence removed (RingProducer::wake_consumers, symmetric mode)|"
  "space-sleep-fence|4b|s/(h\.space\.sleepers\.swap\(1, Relaxed\);(?:\s*\/\/[^\n]*)*\s*)fence\(SeqCst\);/\${1}\/\/ weakened: fence removed/g|producer space-sleep fence removed (RingProducer::sleep_for_space)|"
  "space-waker-fence|4b|s/(self\.published = self\.cursor;(?:\s*\/\/[^\n]*)*\s*)fence\(SeqCst\);/\${1}\/\/ weakened: fence removed/g|space waker fence removed (RingConsumer::publish)|"
  "close-release|5|s/(h\.control\.state\.store\(PRODUCER_CLOSED, )Release\)/\${1}Relaxed)/g|close state store Release->Relaxed (RingProducer::close)|redundant: every commit is followed by the fence(SeqCst) in wake_consumers, a release fence that the later CLOSED store inherits; and close unlocks after the CLOSED store, which check_ended's lock probe acquires (try close-release+waker-fence+lock-probe-acquire)"
  "close-acquire|5|s/(if control\.state\.load\()Acquire(\) == PRODUCER_CLOSED\s*&&)/\${1}Relaxed\${2}/g|close state load Acquire->Relaxed (RingConsumer::check_ended)|redundant: check_ended also waits until the producer lock is free, and close unlocks after storing CLOSED: the lock probe acquires (try close-acquire+lock-probe-acquire)"
  "lock-probe-acquire|5 6b|s/(self\.locks\[id\.byte\(\) as usize\]\.load\()Ordering::Acquire\)/\${1}Ordering::Relaxed)/g|liveness-lock probe Acquire->Relaxed, in the loom model of the OFD locks (region_model.rs Region::held_by_other)||src/region_model.rs"
  "close-fence|5b|s/(self\.region\.unlock\(LockId::Producer\);\s*)fence\(SeqCst\);/\${1}\/\/ weakened: fence removed/g|close fence removed (RingProducer::close)|redundant: close bumps the futex word and wakes unconditionally; the futex's own word check orders that, no Dekker needed"
  "wake-clear-after-bump|4a 4c|s/(futex\.sleepers\.store\(0, Relaxed\);)(\s*(?:\/\/[^\n]*\s*)*)(futex\.word\.fetch_add\(1, Release\);)/\${3}\${2}\${1}/g|flag cleared after the word bump instead of before (wake_generation)|"
  "wake-bump-relaxed|4a 4c|s/(futex\.word\.fetch_add\(1, )Release\)/\${1}Relaxed)/g|futex word bump Release->Relaxed (wake_generation)|"
  "sleeper-flag-store|4a 4c|s/h\.data\.sleepers\.swap\(1, Relaxed\);/h.data.sleepers.store(1, Relaxed);/g|sleepers flag set by a plain store instead of a swap (RingConsumer::sleep)|redundant: whether the waker's clear lands after the sleeper's set is decided by the word, not by the RMW (a sleeper that read the bumped word is ordered after the clear; one that read the old word returns from the futex at once)"
  "attach-fence|6a|s/(slot\.state\.store\(state, Release\);(?:\s*\/\/[^\n]*)*\s*)fence\(SeqCst\);/\${1}\/\/ weakened: fence removed/g|attach fence removed (RingConsumer::register)|"
  "claim-fence|6a 7|s/(h\.producer\.claim\.store\(claim, Release\);(?:\s*\/\/[^\n]*)*\s*)fence\(SeqCst\);/\${1}\/\/ weakened: fence removed/g|claim fence removed (RingProducer::refresh)|"
  "lossy-fence|7|s/(\/\/ Seqlock validation:[^\n]*\n(?:\s*\/\/[^\n]*\n)*\s*)fence\(Acquire\);/\${1}\/\/ weakened: fence removed/g|seqlock validation fence(Acquire) removed (RingConsumer::poll_lossy)|"
  "lossy-stamp-acquire|7|s/(let stamp = self\.region\.word\(idx\)\.load\()Acquire(\);\s*if stamp != c \{\s*fence\(Acquire\))/\${1}Relaxed\${2}/g|stamp load Acquire->Relaxed (RingConsumer::poll_lossy)|"
  "detach-release|6b|s/(\.store\(slot_state\(slot_generation\(self\.state\), SLOT_FREE\), )Release\)/\${1}Relaxed)/g|slot state store Release->Relaxed (RingConsumer::detach)|"
  "state-acquire|6b|s/(let state = slot\.state\.load\()Acquire\)/\${1}Relaxed)/g|slot state load Acquire->Relaxed (RingProducer::scan_gate)|"
  "detach-fence|6b|s/(\/\/ Dekker with .sleep_for_space., as in .publish.\.\s*)fence\(SeqCst\);/\${1}\/\/ weakened: fence removed/g|detach fence removed (RingConsumer::detach)|"
)

# Test function -> the property label used in tests/ring.rs and above.
labels='
every_consumer_gets_every_message_once_in_order_across_the_wrap 1
a_consumer_never_reads_a_record_before_it_is_complete 2
the_producer_never_overwrites_an_unreleased_record 3
a_consumer_asleep_on_an_empty_ring_is_woken_by_a_publish 4a
every_consumer_asleep_in_one_generation_is_woken 4c
a_producer_asleep_on_a_full_ring_is_woken_by_a_release 4b
close_is_observed_only_after_the_last_message 5
a_blocking_consumer_sees_the_close_after_the_last_message 5b
an_attaching_consumer_is_never_skipped_by_the_gate 6a
a_detaching_consumer_frees_the_producer_after_its_last_read 6b
a_lapped_lossy_consumer_counts_exactly_what_it_lost 7
'

entry() {
  local w
  for w in "${weakenings[@]}"; do
    [[ ${w%%|*} == "$1" ]] && { printf '%s\n' "$w"; return 0; }
  done
  return 1
}
field() { cut -d'|' -f"$2" <<<"$1"; }

if [[ ${1:-} == --list ]]; then
  for w in "${weakenings[@]}"; do
    printf '%-22s guards %-5s %s\n' "$(field "$w" 1)" "$(field "$w" 2)" "$(field "$w" 4)"
    [[ -z $(field "$w" 5) ]] || printf '%-35s (%s)\n' "" "$(field "$w" 5)"
  done
  exit 0
fi

runs=("$@")
if [[ ${#runs[@]} -eq 0 ]]; then
  for w in "${weakenings[@]}"; do runs+=("${w%%|*}"); done
fi
for r in "${runs[@]}"; do
  IFS=+ read -ra parts <<<"$r"
  for n in "${parts[@]}"; do
    entry "$n" >/dev/null || { echo "unknown weakening '$n' (see --list)" >&2; exit 2; }
  done
done

export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2}
export RUSTFLAGS="--cfg shmcast_loom"
export CARGO_TARGET_DIR=${WEAKEN_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/loom-weaken}
export RUST_BACKTRACE=0
timeout_s=${WEAKEN_TIMEOUT:-900}
# Tests whose interleavings of interest need one more preemption (cheap at 3; the rest of
# the suite runs at LOOM_MAX_PREEMPTIONS).
deep=(a_detaching_consumer_frees_the_producer_after_its_last_read)
deep_bound=${WEAKEN_DEEP_PREEMPTIONS:-3}
threads=${WEAKEN_TEST_THREADS:-2}

# The copy lives at a fixed path next to its build output: cargo's dependency info then
# always names the files it was built from, and extracting with fresh mtimes (-m) makes
# every run rebuild what it copied.
work=$CARGO_TARGET_DIR/crate
rm -rf "$work"
mkdir -p "$work"
[[ -n ${WEAKEN_KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
# The crate as it is in the working tree, minus build output and history.
tar -C "$root" --exclude=./target --exclude=./.git --exclude=./fuzz -cf - . |
  tar -C "$work" -m -xf -
files=$(for w in "${weakenings[@]}"; do f=$(field "$w" 6); echo "${f:-src/ring.rs}"; done | sort -u)
for f in $files; do cp "$work/$f" "$work/${f//\//_}.orig"; done

echo "weakening a copy in $work; LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS ($deep_bound for ${deep[*]})"
printf '%-34s %-7s %6s  %s\n' weakening guards time "failing tests (how they fail)"
status=0
for r in "${runs[@]}"; do
  IFS=+ read -ra parts <<<"$r"
  guards= expect=
  for f in $files; do cp "$work/${f//\//_}.orig" "$work/$f"; done
  applied=1
  for n in "${parts[@]}"; do
    w=$(entry "$n")
    guards="$guards${guards:+,}$(field "$w" 2)"
    # A combination is expected to be caught even if one part alone is redundant.
    (( ${#parts[@]} > 1 )) || expect=$(field "$w" 5)
    file=$(field "$w" 6)
    if ! SUBST=$(field "$w" 3) perl -0777 -i -ne '
          my $n = eval "\$_ =~ $ENV{SUBST}"; die $@ if $@;
          print; END { $? = ($n == 1 ? 0 : 3) }' "$work/${file:-src/ring.rs}"; then
      applied=0
    fi
  done
  if (( !applied )); then
    printf '%-34s %-7s %6s  %s\n' "$r" "$guards" - "DOES NOT APPLY: the code changed; update weaken.sh"
    status=1
    continue
  fi
  log="$work/$r.log"
  start=$(date +%s)
  set +e
  skips=()
  for t in "${deep[@]}"; do skips+=(--skip "$t"); done
  (cd "$work" && timeout "$timeout_s" cargo test -q -p loom-tests --release --test ring -- \
    --test-threads="$threads" "${skips[@]}") >"$log" 2>&1
  rc=$?
  if [[ $rc != 124 ]]; then
    (cd "$work" && LOOM_MAX_PREEMPTIONS=$deep_bound timeout "$timeout_s" cargo test -q \
      -p loom-tests --release --test ring -- --test-threads="$threads" --exact "${deep[@]}") \
      >>"$log" 2>&1 || rc=$(( rc == 0 ? $? : rc ))
  fi
  set -e
  secs=$(( $(date +%s) - start ))
  # libtest prints "thread '<test>' (<tid>) panicked at <where>:" then the message.
  failed=$(LABELS=$labels perl -ne '
      BEGIN { %l = split " ", $ENV{LABELS} }
      if (/^thread .(\w+). .*panicked at (\S+)/) { ($t, $at) = ($1, $2); next }
      if (defined $t) {
        $how = /deadlock/i ? "deadlock"
             : /Causality violation/ ? "data race"
             : /[Cc]orrupt/ ? "stale header"
             : /branches/ ? "branch limit"
             : $at =~ m{^loom-tests/} ? "wrong messages" : "panic";
        $n = $l{$t} // $t;
        push @f, "$n ($how)" unless $seen{$t}++;
        undef $t;
      }
      END { print join(", ", sort @f) }' "$log")
  if [[ $rc == 124 ]]; then
    failed="${failed:+$failed; }TIMEOUT after ${timeout_s}s"
    status=1
  elif [[ $rc != 0 && -z $failed ]]; then
    failed="build or harness failure (exit $rc):"
    status=1
  fi
  if [[ -z $failed ]]; then
    if [[ -n $expect ]]; then
      failed="none, as expected ($expect)"
    else
      failed="NONE: the suite does not detect this weakening"
      status=1
    fi
  elif [[ -n $expect ]]; then
    failed="$failed (unexpected: marked $expect)"
    status=1
  fi
  printf '%-34s %-7s %5ss  %s\n' "$r" "$guards" "$secs" "$failed"
  [[ $failed != build* ]] || tail -20 "$log"
done
exit $status
