"""Python processes (multiprocessing, spawned) and the Rust peer exchanging the
self-checking workload of ffi/examples/workload.h across process boundaries; and what
operating a segment across processes looks like: consumers and producers killed with
SIGKILL (inspection shows them dead, open_or_create takes a dead producer's segment over,
again and again, without losing or repeating a message), remove refusing a producer alive in
another process, wait_for_consumers counting consumers of other processes."""

import multiprocessing as mp
import os
import queue
import signal
import subprocess
import time

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
    """What a `workers` child reported on `status`, failing at once if it died first (or
    after the hang guard). A child that failed reports its traceback: fail with it."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        try:
            got = status.get(timeout=0.1)
        except queue.Empty:
            if not proc.is_alive():
                pytest.fail(f"{proc} exited ({proc.exitcode}) before reporting")
            if time.monotonic() > deadline:
                pytest.fail(f"{proc} reported nothing within the hang guard")
            continue
        if isinstance(got, str) and got.startswith("Traceback"):
            pytest.fail(f"{proc} failed:\n{got}")
        return got


def sigkill(proc):
    if proc.exitcode is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(HANG_GUARD)
    assert proc.exitcode == -signal.SIGKILL


def recv(c):
    """The next message's (seq, bytes), its view released."""
    with c.recv(timeout=HANG_GUARD) as view:
        return view.obj.seq, bytes(view)


def test_inspect_shows_consumers_in_other_processes_and_sigkilled_ones_dead(name):
    with shmcast.Producer(name, capacity=4096) as p:
        children = {}
        try:
            for lossy in (False, True):
                status = ctx.Queue()
                children[lossy] = start(workers.hold_consumer, name, status, lossy)
                assert child_status(children[lossy], status) == "attached"
            assert p.wait_for_consumers(2, timeout=HANG_GUARD) == 2
            for i in range(3):
                p.send(b"message %d" % i)
            slots = {c.pid: c for c in shmcast.inspect(name).consumers}
            assert set(slots) == {children[False].pid, children[True].pid}
            lossless, lossy = slots[children[False].pid], slots[children[True].pid]
            assert lossless.kind is shmcast.SlotKind.LOSSLESS
            assert lossy.kind is shmcast.SlotKind.LOSSY
            for slot in (lossless, lossy):
                assert slot.alive and not slot.gating
                assert slot.lag_messages == 3 and slot.lag_bytes > 0
            # Fill the ring: the lossless child gates the producer, the lossy one never does.
            sent = 3
            while p.try_send(b"x" * 8):
                sent += 1
            s = shmcast.inspect(name)
            assert s.gating is not None
            assert (s.gating.index, s.gating.pid) == (lossless.index, children[False].pid)
            assert [c.lag_messages for c in s.consumers] == [sent, sent]

            sigkill(children[True])
            slots = {c.pid: c for c in shmcast.inspect(name).consumers}
            assert not slots[children[True].pid].alive
            assert slots[children[False].pid].alive
            assert p.consumers() == 1
        finally:
            for child in children.values():
                sigkill(child)
        slots = {c.pid: c for c in shmcast.inspect(name).consumers}
        assert not any(c.alive for c in slots.values()), slots
        assert p.consumers() == 0
        # The producer reclaims the dead lossless consumer's space: it laps the ring many
        # times, and the slot shows evicted.
        for _ in range(1000):
            p.send(b"y" * 16, timeout=HANG_GUARD)
        s = p.snapshot()
        assert not any(c.alive for c in s.consumers)
        kinds = {c.pid: c.kind for c in s.consumers}
        assert kinds.get(children[False].pid) in (None, shmcast.SlotKind.EVICTED), kinds


def test_wait_for_consumers_attaching_in_other_processes(name):
    with shmcast.Producer(name, capacity=4096) as p:
        go = ctx.Event()
        statuses = [ctx.Queue() for _ in range(2)]
        children = [start(workers.hold_consumer, name, q, lossy, go)
                    for q, lossy in zip(statuses, (False, True))]
        try:
            with pytest.raises(shmcast.Timeout, match="0 of the 1 awaited") as e:
                p.wait_for_consumers(1, timeout=0)  # they wait for `go`
            assert e.value.attached == 0
            go.set()
            # Returns once both attached (whether it had to wait, and how long, is theirs).
            assert p.wait_for_consumers(2, timeout=HANG_GUARD) == 2
            for child, q in zip(children, statuses):
                assert child_status(child, q) == "attached"
            assert p.consumers() == 2
            # A third never comes: a Timeout that says how many there were.
            with pytest.raises(shmcast.Timeout) as e:
                p.wait_for_consumers(3, timeout=0.05)
            assert e.value.attached == 2 and isinstance(e.value, TimeoutError)
            assert "2 of the 3 awaited" in str(e.value)
            # A killed consumer no longer counts.
            sigkill(children[0])
            assert p.consumers() == 1
            with pytest.raises(shmcast.Timeout, match="1 of the 2 awaited") as e:
                p.wait_for_consumers(2, timeout=0.05)
            assert e.value.attached == 1
            assert p.wait_for_consumers(1, timeout=HANG_GUARD) == 1
        finally:
            for child in children:
                sigkill(child)
        assert p.consumers() == 0


def test_remove_refuses_a_producer_living_in_another_process_force_removes_it(name):
    status = ctx.Queue()
    child = start(workers.hold_producer, name, 3, status)
    try:
        assert child_status(child, status) == ("created", 3)
        old = shmcast.Consumer(name, start="oldest")
        with pytest.raises(shmcast.ProducerAlive, match=f"pid {child.pid}"):
            shmcast.remove(name)
        assert shmcast.inspect(name).producer.state == "live"  # refused: still there
        shmcast.remove(name, force=True)
        with pytest.raises(shmcast.NotFound):
            shmcast.inspect(name)
        # The name is free: a new producer creates a new segment. The old producer lives
        # on, unseen by new consumers; its consumers still read its segment.
        with shmcast.Producer.open_or_create(name, capacity=4096) as p:
            assert not p.took_over and p.next_seq == 0
            new = shmcast.Consumer(name, start="oldest")
            p.send(b"new 0")
            assert recv(new) == (0, b"new 0")
            live = shmcast.inspect(name).producer
            assert (live.state, live.pid, live.epoch) == ("live", os.getpid(), 1)
            assert recv(old) == (0, b"message 0")
            new.close()
    finally:
        sigkill(child)
    # The old segment, unlinked: drained, then its producer's death.
    assert [recv(old) for _ in range(2)] == [(1, b"message 1"), (2, b"message 2")]
    with pytest.raises(shmcast.ProducerDied):
        old.recv(timeout=HANG_GUARD)
    old.close()


def test_a_producer_service_killed_again_and_again_loses_and_repeats_nothing(name):
    """The restart loop: a producer process started with open_or_create (the same code for
    the first start and every restart) is killed with SIGKILL while it sends, four times;
    each next one takes over where the committed stream ends. Consumers in other processes
    follow the whole stream: the lossless ones see every sequence number once, in order,
    with the right bytes; the lossy one only increasing numbers, every gap announced."""
    lives, burst = 4, 300
    consumers = []
    handovers = []
    try:
        for life in range(lives):
            # A queue per child: a child killed while its queue's feeder thread holds the
            # queue's (cross-process) write lock would block every later child's reports.
            status = ctx.Queue()
            child = start(workers.restarting_producer, name, 3, burst, MAX_LEN, SEED, status)
            try:
                started = child_status(child, status)
                if life == 0:
                    assert started == ("created", 0)
                    for lossy in (False, False, True):
                        attached, result = ctx.Event(), ctx.Queue()
                        consumers.append((start(workers.follow_restarts, name, MAX_LEN, SEED,
                                                attached, result, lossy), result, lossy))
                        assert attached.wait(HANG_GUARD)
                else:
                    assert started == ("took over", handovers[-1])
                how, sent = child_status(child, status)
                assert how == "sent" and sent >= (handovers[-1] if handovers else 0) + burst
                if life == 1:
                    with pytest.raises(shmcast.ProducerAlive):
                        shmcast.Producer.open_or_create(name)
            finally:
                sigkill(child)
            died = shmcast.inspect(name).producer
            assert died.state is shmcast.ProducerState.DIED
            assert (died.pid, died.epoch) == (child.pid, life + 1)
            assert died.next_seq >= sent
            handovers.append(died.next_seq)

        # The last restart is this process: it ends the stream (closing removes the name).
        with shmcast.Producer.open_or_create(name, max_message=MAX_LEN) as p:
            assert p.took_over and p.next_seq == handovers[-1] and p.capacity == 4096
            assert p.wait_for_consumers(3, timeout=HANG_GUARD) == 3
            for _ in range(10):
                p.send(workload.message(SEED, p.next_seq, MAX_LEN))
            total = p.next_seq
        got = [(result.get(timeout=HANG_GUARD), lossy) for _, result, lossy in consumers]
        for proc, _, _ in consumers:
            join(proc)
    finally:
        for proc, _, _ in consumers:
            if proc.is_alive():
                proc.kill()

    nbytes, digest = expected_run(total)
    for (how, messages, b, lost, d, deaths, first), lossy in got:
        assert how == "ok", how
        assert 0 <= deaths <= lives
        if lossy:
            assert messages + lost == total
        else:
            assert (first, messages, b, lost, d) == (0, total, nbytes, 0, digest)


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
