import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import shmcast

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# How long a test waits on another process before it fails: a hang guard, not a timing
# assertion.
HANG_GUARD = 120.0


@pytest.fixture
def name(request):
    """A segment name unique to this test, removed afterwards whatever happened (by force:
    also a segment whose producer a test left alive, or an object that is not a segment)."""
    n = f"shmcast-py-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield n
    try:
        shmcast.force_remove(n)
    except shmcast.NotFound:
        pass


@pytest.fixture(scope="session")
def rust_peer():
    """The Rust peer (ffi/src/bin/shmcast-ffi-peer.rs): $SHMCAST_FFI_PEER, or built now with
    cargo from this repository."""
    path = os.environ.get("SHMCAST_FFI_PEER")
    if path:
        assert Path(path).is_file(), f"SHMCAST_FFI_PEER={path} does not exist"
        return path
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is needed to build the Rust peer (or set SHMCAST_FFI_PEER)")
    out = subprocess.run(
        [cargo, "build", "--release", "-p", "shmcast-ffi", "--bin", "shmcast-ffi-peer",
         "--message-format=json-render-diagnostics"],
        cwd=REPO, stdout=subprocess.PIPE, check=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and \
                msg["target"]["name"] == "shmcast-ffi-peer":
            return msg["executable"]
    pytest.fail("cargo did not report the shmcast-ffi-peer executable")
