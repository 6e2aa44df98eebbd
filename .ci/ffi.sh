#!/usr/bin/env bash
# C bindings (ffi/): rustfmt, clippy and docs of the package; the committed header must be
# exactly what cbindgen generates (tests/header.rs with --features header-check, built in the
# dev profile: cbindgen and syn take minutes to build in release); then the package's tests:
# the C examples and the C error-path test, built with `cc`, run against each other and the
# Rust peer (tests/c_interop.rs). `cargo test --workspace --release` runs those too.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf -- '--- %s (t+%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

if ! command -v "${CC:-cc}" >/dev/null; then
  apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null
fi

step "rustfmt, clippy, docs (shmcast-ffi)"
cargo fmt -p shmcast-ffi -- --check
cargo clippy -p shmcast-ffi --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p shmcast-ffi

step "header: byte-for-byte what cbindgen generates"
cargo test -p shmcast-ffi --features header-check --test header

step "tests: C examples against C and Rust, C error paths"
cargo test -p shmcast-ffi --release

step "ffi done"
