"""The examples run and check their own results."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import HANG_GUARD

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_numpy_records_are_read_in_place(name):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "numpy_records.py"), "--messages", "2000",
         "--records-per-message", "16", "--name", name],
        capture_output=True, text=True, timeout=HANG_GUARD, env=os.environ,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok"), out.stdout
    assert "records=32000 messages=2000" in out.stdout
