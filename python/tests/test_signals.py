"""Ctrl-C (SIGINT) interrupts a call blocked in shmcast: the GIL is released while it
waits, and it checks for signals between slices of the wait."""

import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import HANG_GUARD

BLOCKED = {
    "recv": """
        c = shmcast.Consumer(name)
        print("ready", flush=True)
        c.recv()
    """,
    "recv_bytes with a timeout": """
        c = shmcast.Consumer(name)
        print("ready", flush=True)
        c.recv_bytes(timeout=3600)
    """,
    "send to a full ring": """
        c = shmcast.Consumer(name)
        while p.try_send(b"x" * 16):
            pass
        print("ready", flush=True)
        p.send(b"x" * 16)
    """,
    "wait_for_consumers": """
        print("ready", flush=True)
        p.wait_for_consumers(1)
    """,
    "wait_for_consumers with a timeout": """
        print("ready", flush=True)
        p.wait_for_consumers(2, timeout=3600)
    """,
    "reserve in a full ring": """
        c = shmcast.Consumer(name)
        while p.try_send(b"x" * 16):
            pass
        print("ready", flush=True)
        p.reserve(16)
    """,
}


@pytest.mark.parametrize("call", sorted(BLOCKED))
def test_ctrl_c_interrupts_a_blocked_call(name, call):
    # The default handler explicitly: a child of a background job inherits SIGINT ignored.
    script = "import shmcast, signal, sys\nname = sys.argv[1]\n" \
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n" \
        "p = shmcast.Producer(name, capacity=256)\ntry:\n" \
        + textwrap.indent(textwrap.dedent(BLOCKED[call]), "    ") \
        + "    print('returned', flush=True)\n" \
        "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
    child = subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=HANG_GUARD)
    finally:
        child.kill()
    assert out.strip() == "interrupted"
    assert child.returncode == 0
