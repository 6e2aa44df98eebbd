"""Restarts (open_or_create, took_over, next_seq, OptionMismatch), inspection (inspect,
Producer.snapshot, Consumer.lag, consumer counts) and removal, in one process. The same
across processes, with SIGKILL, is in test_processes.py."""

import dataclasses
import json
import os
import threading
from pathlib import Path

import pytest

import shmcast
from conftest import HANG_GUARD


def recv_seq(c):
    """The next message's (seq, bytes), its view released."""
    with c.recv(timeout=HANG_GUARD) as view:
        return view.obj.seq, bytes(view)


def test_open_or_create_creates_then_refuses_a_second_producer_then_takes_over(name):
    p = shmcast.Producer.open_or_create(name, capacity=4096, remove_on_close=False)
    assert not p.took_over and p.next_seq == 0 and p.capacity == 4096
    for i in range(3):
        p.send(b"old %d" % i)
    assert p.next_seq == 3
    with pytest.raises(shmcast.ProducerAlive, match="live producer"):
        shmcast.Producer.open_or_create(name, capacity=4096)
    with pytest.raises(shmcast.ProducerAlive):
        shmcast.Producer.open(name)
    p.close()  # the segment stays: remove_on_close=False
    assert shmcast.inspect(name).producer.state is shmcast.ProducerState.CLOSED

    c = shmcast.Consumer(name, start="oldest")
    with shmcast.Producer.open_or_create(name) as p2:  # geometry unset: the segment's
        assert p2.took_over and p2.next_seq == 3 and p2.capacity == 4096
        assert "took_over=True" in repr(p2)
        p2.send(b"new")
        got = [recv_seq(c) for _ in range(4)]
        assert got == [(0, b"old 0"), (1, b"old 1"), (2, b"old 2"), (3, b"new")]
    with pytest.raises(shmcast.NotFound):  # p2 removed it (remove_on_close=True)
        shmcast.inspect(name)
    with shmcast.Producer.open_or_create(name) as p3:  # unset geometry: the defaults
        assert not p3.took_over and p3.capacity == 1 << 20


@pytest.mark.parametrize("option, value, found", [
    ("capacity", 8192, 4096),
    ("max_message", 100, 4096 // 4 - 24),
    ("max_consumers", 3, 4),
    ("mode", 0o640, 0o600),
])
def test_a_set_option_that_differs_from_the_segment_is_refused(name, option, value, found):
    shmcast.Producer(name, capacity=4096, max_consumers=4, remove_on_close=False).close()
    for take_over in (shmcast.Producer.open_or_create, shmcast.Producer.open):
        with pytest.raises(shmcast.OptionMismatch) as e:
            take_over(name, **{option: value})
        assert (e.value.option, e.value.requested, e.value.found) == (option, value, found)
        assert isinstance(e.value, ValueError)
        assert f"created with {option} {found}, not the {value}" in str(e.value)
    # Matching options are fine.
    with shmcast.Producer.open_or_create(name, **{option: found}) as p:
        assert p.took_over


def test_open_or_create_reports_invalid_options(name):
    with pytest.raises(shmcast.InvalidConfig, match="power of two"):
        shmcast.Producer.open_or_create(name, capacity=1000)
    with pytest.raises(shmcast.InvalidConfig, match="permission bits"):
        shmcast.Producer.open_or_create(name, mode=0o4600)
    with pytest.raises(shmcast.InvalidConfig, match="permission bits"):
        shmcast.Producer(name, mode=0o1777)
    with pytest.raises(shmcast.InvalidName):
        shmcast.Producer.open_or_create("a/b")
    with pytest.raises(FileNotFoundError):
        shmcast.inspect(name)  # nothing was created


def test_inspect_describes_the_segment_and_its_consumers(name):
    with shmcast.Producer(name, capacity=4096, max_consumers=4) as p:
        lossless = shmcast.Consumer(name)
        lossy = shmcast.Consumer(name, lossy=True)
        p.send(b"one")
        p.send(b"two")
        s = shmcast.inspect(name)
        assert (s.capacity, s.max_message, s.max_consumers) == (4096, 1000, 4)
        assert s.segment_size > 4096
        assert (s.owner_uid, s.mode) == (os.geteuid(), 0o600)
        assert s.producer == shmcast.ProducerInfo(
            state=shmcast.ProducerState.LIVE, pid=os.getpid(), tail=s.producer.tail,
            next_seq=2, claim=s.producer.claim, epoch=1, evicting=False)
        assert s.producer.tail > 0 and s.producer.claim >= s.producer.tail
        kinds = {c.kind: c for c in s.consumers}
        assert set(kinds) == {shmcast.SlotKind.LOSSLESS, shmcast.SlotKind.LOSSY}
        for c in s.consumers:
            assert c.alive and c.pid == os.getpid() and c.lag_messages == 2
            assert c.lag_bytes > 0 and not c.gating and c.raw_kind is None
        assert s.gating is None
        # Plain data: printable, comparable, serializable.
        assert "ProducerState.LIVE" in repr(s) or "'live'" in repr(s)
        d = s.to_dict()
        assert d["producer"]["state"] == "live"
        assert {c["kind"] for c in d["consumers"]} == {"lossless", "lossy"}
        assert json.loads(json.dumps(d)) == d
        assert dataclasses.replace(s) == s
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.capacity = 1

        # Fill the ring: the lossless consumer gates, the lossy one never does.
        while p.try_send(b"x" * 16):
            pass
        gating = shmcast.inspect(name).gating
        assert gating is not None and gating.kind == "lossless"
        lossless.close()
        (left,) = shmcast.inspect(name).consumers
        assert left.kind is shmcast.SlotKind.LOSSY
        lossy.close()
        assert shmcast.inspect(name).consumers == ()


def test_the_producer_snapshot_sees_itself_live_and_waits_for_no_reservation(name):
    with shmcast.Producer(name, capacity=4096) as p:
        c = shmcast.Consumer(name)
        p.send(b"x")
        s = p.snapshot()
        assert s.producer.state is shmcast.ProducerState.LIVE
        assert s.producer.pid == os.getpid() and s.producer.next_seq == 1
        assert [(x.kind, x.lag_messages) for x in s.consumers] == [("lossless", 1)]
        r = p.reserve(8)
        for call in (p.snapshot, p.consumers, lambda: p.next_seq):
            with pytest.raises(shmcast.MessageHeld):
                call()
        r.abort()
        assert p.consumers() == 1
        c.close()


def test_inspect_by_path_and_the_argument_errors(name, tmp_path):
    path = tmp_path / "segment"
    with shmcast.Producer(path=path, capacity=4096, remove_on_close=False) as p:
        with shmcast.Consumer(path=path):
            s = shmcast.inspect(path=path)
            assert s.capacity == 4096 and len(s.consumers) == 1 and s.mode == 0o600
            with pytest.raises(shmcast.ProducerAlive):
                shmcast.remove(path=path)
        assert p.consumers() == 0
    assert shmcast.inspect(path=str(path)).producer.state == "closed"
    shmcast.remove(path=path)
    assert not path.exists()
    with pytest.raises(shmcast.NotFound):
        shmcast.inspect(path=path)
    with pytest.raises(shmcast.NotFound, match="start the producer first"):
        shmcast.inspect(name)
    with pytest.raises(shmcast.InvalidName):
        shmcast.inspect("a/b")
    with pytest.raises(ValueError, match="exactly one"):
        shmcast.inspect(name, path=path)
    with pytest.raises(ValueError, match="exactly one"):
        shmcast.inspect()
    with pytest.raises(ValueError, match="not a descriptor"):
        shmcast.inspect(fd=-1)
    with pytest.raises(ValueError, match="not both"):
        shmcast.remove(name, path=path)


def test_inspect_by_descriptor(name):
    with shmcast.Producer(name, capacity=4096):
        fd = os.open(f"/dev/shm/{name}", os.O_RDONLY)
        try:
            s = shmcast.inspect(fd=fd)
        finally:
            os.close(fd)
        assert s.capacity == 4096 and s.producer.state == "live"


def test_a_lossless_consumer_lag_and_a_lapped_lossy_one(name):
    with shmcast.Producer(name, capacity=256) as p:
        c = shmcast.Consumer(name)
        lossy = shmcast.Consumer(name, lossy=True)
        assert c.lag() == shmcast.Lag(bytes=0, messages=0)
        p.send(b"a" * 8)
        p.send(b"b" * 8)
        assert c.lag() == shmcast.Lag(bytes=64, messages=2)
        view = c.recv()
        with pytest.raises(shmcast.MessageHeld):
            c.lag()
        view.release()
        assert c.lag().messages == 1
        assert c.recv_bytes() == b"b" * 8
        assert c.lag() == shmcast.Lag(0, 0)
        # The lossy consumer is lapped: the record at its position is gone.
        for _ in range(20):
            p.send(b"z" * 8)
            c.recv_bytes()
        held = None
        lag = lossy.lag()
        assert lag.bytes > 256 and lag.messages is None
        with pytest.raises(shmcast.Lagged):
            lossy.recv()
        held = lossy.recv()  # a private copy: lag still answers
        assert lossy.lag().messages is not None
        held.release()
        c.close()
        lossy.close()
        with pytest.raises(ValueError, match="closed"):
            c.lag()


def test_wait_for_consumers_returns_when_they_attach_and_times_out_otherwise(name):
    with shmcast.Producer(name, capacity=4096) as p:
        assert p.consumers() == 0
        assert p.wait_for_consumers(0) == 0
        with pytest.raises(shmcast.Timeout, match="0 of the 1 awaited") as e:
            p.wait_for_consumers(1, timeout=0.01)
        assert e.value.attached == 0 and isinstance(e.value, TimeoutError)
        first = shmcast.Consumer(name)
        attached = []
        go = threading.Event()

        def attach():
            go.wait()
            attached.append(shmcast.Consumer(name, lossy=True))

        t = threading.Thread(target=attach)
        t.start()
        go.set()
        # The thread attaches while this one waits (the GIL is released meanwhile).
        assert p.wait_for_consumers(2, timeout=HANG_GUARD) == 2
        t.join(HANG_GUARD)
        assert p.consumers() == 2
        with pytest.raises(shmcast.Timeout) as e:
            p.wait_for_consumers(3, timeout=0)
        assert e.value.attached == 2
        with pytest.raises(ValueError, match="timeout"):
            p.wait_for_consumers(1, timeout=-1)
        first.close()
        attached[0].close()
        assert p.consumers() == 0


def test_remove_refuses_a_live_producer_and_a_non_segment_force_does_not(name):
    p = shmcast.Producer(name, capacity=4096)
    with pytest.raises(shmcast.ProducerAlive, match=r"shmcast\.remove\(\.\.\., force=True\)"):
        shmcast.remove(name)
    shmcast.remove(name, force=True)  # the producer goes on, unseen by new consumers
    p.send(b"unseen")
    with pytest.raises(shmcast.NotFound):
        shmcast.Consumer(name)
    p.close()
    for force in (lambda n: shmcast.remove(n, force=True), shmcast.force_remove):
        with pytest.raises(shmcast.NotFound, match="does not exist"):
            force(name)
        with pytest.raises(shmcast.InvalidName, match="invalid segment name"):
            force("a/b")

    # Not a segment at all: refused by remove, inspect and open_or_create, not by force.
    junk = Path("/dev/shm") / name
    for force in (lambda n: shmcast.remove(n, force=True), shmcast.force_remove):
        junk.write_bytes(b"not a segment".ljust(65536, b"?"))
        with pytest.raises(shmcast.BadSegment, match="force=True"):
            shmcast.remove(name)
        with pytest.raises(shmcast.BadSegment, match="not a shmcast segment"):
            shmcast.inspect(name)
        with pytest.raises(shmcast.BadSegment):
            shmcast.Producer.open_or_create(name)
        assert junk.exists()
        force(name)
        assert not junk.exists()


def test_remove_path_refuses_a_live_producer_and_a_non_segment_force_does_not(tmp_path):
    path = tmp_path / "segment"
    with shmcast.Producer(path=path, capacity=4096, remove_on_close=False) as p:
        for remove in (shmcast.remove_path, lambda x: shmcast.remove(path=x)):
            with pytest.raises(shmcast.ProducerAlive, match="force=True"):
                remove(path)
        assert path.exists()
        shmcast.remove_path(str(path), force=True)  # unlinked under the live producer
        assert not path.exists()
        p.send(b"unseen")
    with pytest.raises(shmcast.NotFound):
        shmcast.remove_path(path)
    with pytest.raises(shmcast.NotFound, match="does not exist"):
        shmcast.remove_path(path, force=True)

    # A closed producer's segment: removed without force.
    shmcast.Producer(path=path, capacity=4096, remove_on_close=False).close()
    shmcast.remove_path(path)
    assert not path.exists()

    # Not a segment: refused, then removed by force (a FIFO too, without blocking).
    path.write_bytes(b"not a segment".ljust(65536, b"?"))
    with pytest.raises(shmcast.BadSegment, match="not a shmcast segment"):
        shmcast.remove_path(path)
    shmcast.remove(path=path, force=True)
    assert not path.exists()
    os.mkfifo(path)
    with pytest.raises(shmcast.BadSegment):
        shmcast.remove_path(path)
    shmcast.remove_path(path, force=True)
    assert not path.exists()
    with pytest.raises(TypeError):
        shmcast.remove_path(path, True)  # force is keyword-only
