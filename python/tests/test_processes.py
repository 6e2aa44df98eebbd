"""Python processes (multiprocessing, spawned) and the Rust peer exchanging the
self-checking workload of ffi/examples/workload.h across process boundaries."""

import multiprocessing as mp
import os
import queue
import signal
import subprocess

import pytest

import shmcast
import workers
import workload
from conftest import HANG_GUARD

COUNT = 3000
MAX_LEN = 300
SEED = 7

ctx = mp.get_context("spawn")


def expected_run(count=COUNT, seed=SEED, max_len=MAX_LEN):
    d, nbytes = workload.FNV_OFFSET, 0
    for i in range(count):
        m = workload.message(seed, i, max_len)
        d = workload.digest(d, workload.check(m, seed, i, max_len))
        nbytes += len(m)
    return nbytes, d


def start(target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def join(p):
    p.join(HANG_GUARD)
    if p.is_alive():
        p.kill()
        pytest.fail(f"{p} did not finish within the hang guard")
    assert p.exitcode == 0, f"{p} failed: exit code {p.exitcode}"


def test_python_processes_exchange_every_message(name):
    ready, go = ctx.Event(), ctx.Event()
    producer = start(workers.produce, name, COUNT, MAX_LEN, SEED, ready, go)
    assert ready.wait(HANG_GUARD)
    results = ctx.Queue()
    consumers = []
    for lossy in (False, False, True):
        attached = ctx.Event()
        consumers.append(start(workers.consume, name, MAX_LEN, SEED, attached, results, lossy))
        assert attached.wait(HANG_GUARD)
    go.set()
    join(producer)
    got = [results.get(timeout=HANG_GUARD) for _ in consumers]
    for c in consumers:
        join(c)
    nbytes, digest = expected_run()
    lossless = [g for g in got if g[3] == 0 and g[1] == COUNT]
    assert len(lossless) >= 2, got
    for how, messages, b, lost, d in lossless:
        assert (how, messages, b, d) == ("ok", COUNT, nbytes, digest)
    for how, messages, b, lost, d in got:
        assert how == "ok" and messages + lost == COUNT, got


def run_rust(rust_peer, *args):
    return subprocess.Popen([rust_peer, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def read_line(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.split()
        assert not line.startswith("error"), line
    pytest.fail(f"the Rust peer exited ({proc.wait()}) without a '{prefix}' line")


def fields(words):
    return dict(w.split("=", 1) for w in words[1:])


def test_a_rust_producer_feeds_python_consumers(name, rust_peer):
    rust = run_rust(rust_peer, "produce", name, str(COUNT), "--max-len", str(MAX_LEN),
                    "--seed", str(SEED), "--capacity", "8192", "--wait-go")
    try:
        read_line(rust, "ready")
        results = ctx.Queue()
        attached = ctx.Event()
        lossy = start(workers.consume, name, MAX_LEN, SEED, attached, results, True)
        assert attached.wait(HANG_GUARD)
        here = shmcast.Consumer(name)
        rust.stdin.write("go\n")
        rust.stdin.flush()
        mine = workers.check_stream(here, MAX_LEN, SEED)
        sent = fields(read_line(rust, "sent"))
        assert rust.wait(HANG_GUARD) == 0
        other = results.get(timeout=HANG_GUARD)
        join(lossy)
    finally:
        rust.kill()
    assert mine[0] == "ok"
    assert (mine[1], mine[2], format(mine[4], "016x")) == (
        int(sent["messages"]), int(sent["bytes"]), sent["digest"])
    assert other[0] == "ok" and other[1] + other[3] == COUNT


def test_a_python_producer_feeds_rust_consumers(name, rust_peer):
    ready, go = ctx.Event(), ctx.Event()
    producer = start(workers.produce, name, COUNT, MAX_LEN, SEED, ready, go)
    assert ready.wait(HANG_GUARD)
    rust = [run_rust(rust_peer, "consume", name, "--max-len", str(MAX_LEN), "--seed", str(SEED),
                     *extra) for extra in ([], ["--lossy"])]
    try:
        for r in rust:
            read_line(r, "attached")
        go.set()
        join(producer)
        lossless = fields(read_line(rust[0], "ok"))
        lossy = fields(read_line(rust[1], "ok"))
        for r in rust:
            assert r.wait(HANG_GUARD) == 0
    finally:
        for r in rust:
            r.kill()
    nbytes, digest = expected_run()
    assert lossless == {"messages": str(COUNT), "bytes": str(nbytes), "lost": "0",
                        "digest": format(digest, "016x")}
    assert int(lossy["messages"]) + int(lossy["lost"]) == COUNT


def test_consumers_drain_then_report_a_killed_producer(name):
    ready, go = ctx.Event(), ctx.Event()
    producer = start(workers.produce, name, COUNT, MAX_LEN, SEED, ready, go, 8192, 1000)
    assert ready.wait(HANG_GUARD)
    ready.clear()
    results = ctx.Queue()
    attached = ctx.Event()
    consumer = start(workers.consume, name, MAX_LEN, SEED, attached, results, False)
    assert attached.wait(HANG_GUARD)
    go.set()
    assert ready.wait(HANG_GUARD)  # stalled after 1000 messages
    os.kill(producer.pid, signal.SIGKILL)
    producer.join(HANG_GUARD)
    how, messages, *_ = results.get(timeout=HANG_GUARD)
    join(consumer)
    assert (how, messages) == ("producer-died", 1000)


def child_status(proc, status):
    """What a `workers.hold_*` child reported, failing at once if it died first."""
    while True:
        try:
            return status.get(timeout=0.1)
        except queue.Empty:
            if not proc.is_alive():
                pytest.fail(f"{proc} exited ({proc.exitcode}) before reporting")


def sigkill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(HANG_GUARD)
    assert proc.exitcode == -signal.SIGKILL


def test_inspect_shows_a_sigkilled_consumer_dead_and_it_gates_nothing(name):
    with shmcast.Producer(name, capacity=4096) as p:
        status = ctx.Queue()
        child = start(workers.hold_consumer, name, status)
        try:
            assert child_status(child, status) == "attached"
            assert p.wait_for_consumers(1, timeout=HANG_GUARD) == 1
            (slot,) = shmcast.inspect(name).consumers
            assert slot.alive and slot.pid == child.pid
            assert slot.kind is shmcast.SlotKind.LOSSLESS
            for _ in range(4096 // 32):  # fill the ring: the child gates the producer
                p.try_send(b"x" * 8)
            gating = shmcast.inspect(name).gating
            assert gating is not None and (gating.index, gating.pid) == (slot.index, child.pid)
        finally:
            sigkill(child)
        (slot,) = shmcast.inspect(name).consumers
        assert not slot.alive and slot.pid == child.pid
        assert p.consumers() == 0
        # The producer reclaims the dead consumer's space: it laps the ring many times.
        for _ in range(1000):
            p.send(b"y" * 16, timeout=HANG_GUARD)
        assert not any(c.alive for c in p.snapshot().consumers)


def test_open_or_create_takes_over_from_a_sigkilled_producer(name):
    status = ctx.Queue()
    child = start(workers.hold_producer, name, 5, status)
    try:
        assert child_status(child, status) == ("created", 5)
        c = shmcast.Consumer(name, start="oldest")
        # Never a second producer while the first lives.
        with pytest.raises(shmcast.ProducerAlive, match="live producer"):
            shmcast.Producer.open_or_create(name)
        with pytest.raises(shmcast.ProducerAlive, match=f"pid {child.pid}"):
            shmcast.remove(name)
        live = shmcast.inspect(name).producer
        assert (live.state, live.pid, live.next_seq) == ("live", child.pid, 5)
    finally:
        sigkill(child)
    died = shmcast.inspect(name).producer
    assert died.state is shmcast.ProducerState.DIED and died.next_seq == 5
    # The consumer drains what was committed, then learns of the death.
    for i in range(5):
        with c.recv(timeout=HANG_GUARD) as view:
            assert (view.obj.seq, bytes(view)) == (i, b"message %d" % i)
    with pytest.raises(shmcast.ProducerDied):
        c.recv(timeout=HANG_GUARD)
    with shmcast.Producer.open_or_create(name) as p:  # removes the name on close
        assert p.took_over and p.next_seq == 5 and p.capacity == 4096
        p.send(b"after")
        with c.recv(timeout=HANG_GUARD) as view:  # the stream goes on, no gap
            assert (view.obj.seq, bytes(view)) == (5, b"after")
        s = p.snapshot()
        assert (s.producer.state, s.producer.pid, s.producer.epoch) == ("live", os.getpid(), 2)
    with pytest.raises(shmcast.NotFound):
        shmcast.inspect(name)


def test_python_takes_over_from_a_killed_rust_producer(name, rust_peer):
    rust = run_rust(rust_peer, "produce", name, str(COUNT), "--max-len", str(MAX_LEN),
                    "--seed", str(SEED), "--capacity", "65536", "--wait-go",
                    "--stall-after", "100")
    try:
        read_line(rust, "ready")
        c = shmcast.Consumer(name)
        rust.stdin.write("go\n")
        rust.stdin.flush()
        read_line(rust, "stalled")
        with pytest.raises(shmcast.ProducerAlive):
            shmcast.Producer.open_or_create(name)
    finally:
        rust.kill()
        rust.wait(HANG_GUARD)
    assert shmcast.inspect(name).producer.state == "died"
    with shmcast.Producer.open_or_create(name, capacity=65536) as p:
        assert p.took_over and p.next_seq == 100
        p.send(b"from python")
        # The consumer reads the Rust producer's 100 messages, then Python's: whether or
        # not it noticed the death in between (it did not have to), no gap, no duplicate.
        for i in range(101):
            try:
                with c.recv(timeout=HANG_GUARD) as view:
                    assert view.obj.seq == i
                    if i < 100:
                        workload.check(view, SEED, i, MAX_LEN)
                    else:
                        assert bytes(view) == b"from python"
            except shmcast.ProducerDied:
                assert i == 100, f"ProducerDied after {i} messages"
                with c.recv(timeout=HANG_GUARD) as view:
                    assert (view.obj.seq, bytes(view)) == (100, b"from python")
