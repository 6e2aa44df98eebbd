#!/usr/bin/env bash
# Python bindings: create a virtual environment, install maturin, pytest and NumPy into it,
# build and install python/ exactly as a user would (`pip install ./python`), check the pyo3
# crate (rustfmt, clippy), and run the pytest suite. The suite talks to the Rust peer
# (ffi/src/bin/shmcast-ffi-peer.rs), built here first.
#
#   PYTHON=python3.12 bash .ci/python.sh       # another interpreter (default: python3)
#   SHMCAST_VENV=/tmp/venv bash .ci/python.sh  # where the venv lives (default: target/python-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf -- '--- %s (t+%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

PYTHON=${PYTHON:-python3}
VENV=${SHMCAST_VENV:-$PWD/target/python-venv}
# The pyo3 crate is not in the root workspace: give its builds their own target directory.
PY_TARGET=$PWD/target/python

step "virtual environment ($VENV)"
if ! command -v "$PYTHON" >/dev/null; then
  echo "python: $PYTHON not found; set PYTHON to a Python 3.9+ interpreter" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    if command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
"$VENV/bin/python" --version
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  'maturin>=1.9.4,<2' 'pytest>=7' 'numpy>=1.21'

step "build the Rust peer"
cargo build --release -p shmcast-ffi --bin shmcast-ffi-peer
export SHMCAST_FFI_PEER=$PWD/target/release/shmcast-ffi-peer

step "pip install ./python"
CARGO_TARGET_DIR=$PY_TARGET "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  --force-reinstall --no-deps ./python

step "rustfmt and clippy (python/)"
cargo fmt --manifest-path python/Cargo.toml -- --check
PYO3_PYTHON=$VENV/bin/python CARGO_TARGET_DIR=$PY_TARGET \
  cargo clippy --manifest-path python/Cargo.toml --all-targets -- -D warnings

step "pytest"
# From the repository root, so that `import shmcast` finds the installed package, not the
# sources in python/shmcast (which have no compiled module).
"$VENV/bin/python" -m pytest -p no:cacheprovider -q python/tests

step "python done"
