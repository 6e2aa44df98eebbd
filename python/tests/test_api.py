"""The Python API in one process: views, reservations, errors, waiting."""

import array
import inspect
import threading

import numpy as np
import pytest

import shmcast
from conftest import HANG_GUARD


def test_a_message_arrives_in_place_as_a_read_only_view(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        p.send(b"hello")
        with c.recv() as view:
            assert bytes(view) == b"hello"
            assert view.readonly
            assert isinstance(view.obj, shmcast.Message)
            assert view.obj.seq == 0 and len(view.obj) == 5
            with pytest.raises(TypeError):
                view[0] = 1


def test_a_released_view_can_not_be_read_nor_exported_again(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        p.send(b"gone")
        view = c.recv()
        message = view.obj
        view.release()
        with pytest.raises(ValueError):
            view[0]
        assert not message.valid
        with pytest.raises(BufferError, match="was released"):
            memoryview(message)


def test_recv_refuses_while_the_previous_view_is_exported(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        p.send(b"12345678")
        p.send(b"second")
        view = c.recv()
        with pytest.raises(shmcast.MessageHeld):
            c.recv()
        with pytest.raises(shmcast.MessageHeld):
            c.recv_bytes()
        # An array made from the view holds the message too, after the view is released.
        arr = np.frombuffer(view, dtype=np.uint8)
        message = view.obj
        view.release()
        assert message.valid
        with pytest.raises(shmcast.MessageHeld):
            c.recv()
        assert arr.tolist() == list(b"12345678")
        del arr
        assert not message.valid
        assert c.recv_bytes() == b"second"


def test_a_second_export_of_the_message_keeps_it_until_both_are_released(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        p.send(b"twice")
        view = c.recv()
        again = memoryview(view.obj)
        view.release()
        assert bytes(again) == b"twice"  # still held
        with pytest.raises(shmcast.MessageHeld):
            c.try_recv()
        again.release()
        assert c.try_recv() is None


def test_the_producer_waits_for_a_held_view(name):
    with shmcast.Producer(name, capacity=256) as p, shmcast.Consumer(name) as c:
        p.send(b"x" * 16)
        view = c.recv()
        while p.try_send(b"y" * 16):
            pass
        assert bytes(view) == b"x" * 16  # never overwritten while held
        with pytest.raises(shmcast.Timeout):
            p.send(b"y" * 16, timeout=0.01)
        view.release()
        assert p.try_send(b"y" * 16)


def test_reserve_commits_on_leaving_the_block_and_aborts_on_an_exception(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        with p.reserve(8) as buf:
            assert not buf.readonly and len(buf) == 8
            buf[:] = b"reserved"
        with pytest.raises(RuntimeError):
            with p.reserve(5) as buf:
                buf[:] = b"never"
                raise RuntimeError("abort it")
        p.send(b"after")
        assert c.recv_bytes() == b"reserved"
        assert c.recv_bytes() == b"after"
        assert c.try_recv() is None


def test_commit_is_refused_while_the_reservation_is_exported(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        r = p.reserve(16)
        assert len(r) == 16
        arr = np.frombuffer(r, dtype="<u8")  # writable, in place
        arr[:] = [1, 2]
        with pytest.raises(shmcast.MessageHeld):
            r.commit()
        with pytest.raises(shmcast.MessageHeld):
            p.send(b"meanwhile")
        del arr
        r.commit()
        with pytest.raises(BufferError, match="committed or aborted"):
            memoryview(r)
        with pytest.raises(ValueError, match="already committed"):
            r.commit()
        r.abort()  # finished already: nothing to do
        got = np.frombuffer(c.recv_bytes(), dtype="<u8")
        assert got.tolist() == [1, 2]


def test_closing_a_consumer_with_a_view_exported_detaches_when_it_is_released(name):
    with shmcast.Producer(name, capacity=256) as p:
        c = shmcast.Consumer(name)
        p.send(b"x" * 16)
        view = c.recv()
        c.close()
        assert c.closed
        with pytest.raises(ValueError, match="closed"):
            c.try_recv()
        assert bytes(view) == b"x" * 16  # still mapped and held: the producer waits
        while p.try_send(b"y" * 16):
            pass
        assert bytes(view) == b"x" * 16
        view.release()  # detaches: the producer is no longer gated
        assert p.try_send(b"y" * 16)


def test_closing_a_producer_with_a_reservation_exported_waits_for_it(name):
    p = shmcast.Producer(name, capacity=4096)
    c = shmcast.Consumer(name)
    p.send(b"before")
    r = p.reserve(4)
    view = memoryview(r)
    p.close()
    assert p.closed
    view[:] = b"late"  # still ours to write: nothing was unmapped
    with pytest.raises(ValueError, match="closed"):
        p.send(b"after close")
    view.release()
    with pytest.raises(ValueError, match="closed"):
        r.commit()  # the close aborted it
    assert list(c) == [b"before"]


def test_dropping_a_reservation_aborts_it(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        r = p.reserve(4)
        memoryview(r)[:] = b"lost"
        del r
        p.send(b"kept")
        assert c.recv_bytes() == b"kept"
        assert c.try_recv_bytes() is None


def test_send_accepts_any_buffer_in_c_order(name):
    with shmcast.Producer(name, capacity=1 << 16) as p, shmcast.Consumer(name) as c:
        grid = np.arange(24, dtype=np.int32).reshape(4, 6)
        strided = grid[:, ::2]  # not contiguous
        sources = [
            b"bytes",
            bytearray(b"bytearray"),
            memoryview(b"..memoryview..")[2:-2],
            array.array("i", [1, 2, 3]),
            strided,
            np.float64(2.5),
            b"",
        ]
        for s in sources:
            p.send(s)
        p.send_batch([b"a", bytearray(b"bc"), strided])
        assert p.try_send(strided)
        expected = [bytes(memoryview(s)) if not isinstance(s, np.ndarray) else s.tobytes()
                    for s in sources]
        expected += [b"a", b"bc", strided.tobytes(), strided.tobytes()]
        assert [c.recv_bytes(timeout=5) for _ in expected] == expected


def test_full_rings_and_deadlines(name):
    with shmcast.Producer(name, capacity=256) as p, shmcast.Consumer(name) as c:
        sent = 0
        while p.try_send(b"0123456789abcdef"):
            sent += 1
        assert sent > 0
        with pytest.raises(shmcast.Timeout) as e:
            p.send(b"0123456789abcdef", timeout=0.01)
        assert isinstance(e.value, TimeoutError)
        with pytest.raises(shmcast.Timeout):
            p.reserve(16, timeout=0.01)
        assert p.try_reserve(16) is None
        for _ in range(sent):
            assert c.recv_bytes() == b"0123456789abcdef"
        with pytest.raises(shmcast.Timeout):
            c.recv(timeout=0.01)
        with pytest.raises(shmcast.Timeout):
            c.recv_bytes(timeout=0)
        assert c.try_recv() is None
        r = p.try_reserve(3)
        assert r is not None
        r.abort()


def test_errors_are_exceptions_with_the_core_messages(name, tmp_path):
    with pytest.raises(shmcast.InvalidName, match="invalid segment name") as e:
        shmcast.Producer("a/b")
    assert isinstance(e.value, ValueError)
    with pytest.raises(shmcast.InvalidName):
        shmcast.Consumer(".hidden")
    with pytest.raises(shmcast.NotFound, match="start the producer first") as e:
        shmcast.Consumer(name)
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(shmcast.InvalidConfig, match="invalid ring configuration"):
        shmcast.Producer(name, capacity=1000)
    with pytest.raises(shmcast.InvalidConfig):
        shmcast.Producer(name, capacity=4096, max_message=4096)
    with pytest.raises(ValueError, match="wait="):
        shmcast.Producer(name, wait="sometimes")
    with pytest.raises(ValueError, match="not both"):
        shmcast.Producer(name, path=tmp_path / "x")
    with shmcast.Producer(name, capacity=4096, max_message=100) as p:
        with pytest.raises(shmcast.AlreadyExists, match="already exists") as e:
            shmcast.Producer(name)
        assert isinstance(e.value, FileExistsError)
        with pytest.raises(shmcast.ProducerAlive):
            shmcast.Producer.open(name)
        with pytest.raises(shmcast.MessageTooLarge, match="exceeds the segment's maximum of 100"):
            p.send(b"x" * 101)
        with pytest.raises(shmcast.MessageTooLarge):
            p.try_send(b"x" * 101)
        with pytest.raises(shmcast.MessageTooLarge):
            p.reserve(101)
        with pytest.raises(shmcast.MessageTooLarge):
            p.send_batch([b"ok", b"x" * 101])
        with pytest.raises(ValueError, match="start="):
            shmcast.Consumer(name, start="middle")
        c = shmcast.Consumer(name)
        with pytest.raises(ValueError, match="timeout"):
            c.recv(timeout=-1)
        assert c.try_recv() is None  # nothing of the refused sends arrived
        with pytest.raises(TypeError):
            p.send(12)
        c.close()
        with pytest.raises(ValueError, match="closed"):
            c.recv()
    with pytest.raises(shmcast.NotFound):
        shmcast.remove(name)  # the producer removed it on close
    with pytest.raises(shmcast.InvalidName):
        shmcast.remove("a/b")


def test_a_lossy_consumer_reports_what_it_lost(name):
    with shmcast.Producer(name, capacity=256) as p:
        c = shmcast.Consumer(name, lossy=True)
        assert c.lossy
        for i in range(100):
            assert p.try_send(bytes([i]) * 16)  # never full: lossy consumers do not gate
        with pytest.raises(shmcast.Lagged) as e:
            c.recv()
        assert 0 < e.value.lost < 100
        view = c.recv()
        assert view.obj.seq == e.value.lost
        assert bytes(view) == bytes([e.value.lost]) * 16
        # Lossy views are private copies: holding one blocks nothing.
        rest = list(c.recv_bytes() for _ in range(100 - e.value.lost - 1))
        assert rest[-1] == bytes([99]) * 16
        view.release()


def test_iteration_yields_bytes_until_the_producer_closes(name):
    p = shmcast.Producer(name, capacity=4096)
    c = shmcast.Consumer(name)
    for i in range(5):
        p.send(str(i).encode())
    p.close()
    p.close()  # idempotent
    assert p.closed
    assert list(c) == [b"0", b"1", b"2", b"3", b"4"]
    with pytest.raises(shmcast.Disconnected):
        c.recv()


def test_a_new_producer_takes_over_the_stream(name):
    p = shmcast.Producer(name, capacity=4096, remove_on_close=False)
    p.send(b"one")
    p.close()
    c = shmcast.Consumer(name, start="oldest")
    with shmcast.Producer.open(name) as p2:
        p2.send(b"two")
        with c.recv(timeout=5) as got:
            assert bytes(got) == b"one" and got.obj.seq == 0
        with c.recv(timeout=5) as got:
            assert bytes(got) == b"two" and got.obj.seq == 1


def test_a_segment_in_a_file(tmp_path):
    path = tmp_path / "segment"
    with shmcast.Producer(path=path, capacity=4096) as p:
        with shmcast.Consumer(path=str(path)) as c:
            p.send(b"file")
            assert c.recv_bytes() == b"file"
    assert not path.exists()


def test_the_gil_is_released_while_recv_waits(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        got = []
        waiting = threading.Event()

        def reader():
            waiting.set()
            got.append(c.recv_bytes(timeout=60))

        t = threading.Thread(target=reader)
        t.start()
        waiting.wait()
        # If recv held the GIL while waiting, this thread could not run until it gave up.
        p.send(b"wake up")
        t.join(60)
        assert got == [b"wake up"]


def test_a_handle_is_used_by_one_thread_at_a_time(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        waiting = threading.Event()
        t = threading.Thread(target=lambda: (waiting.set(), c.recv_bytes(timeout=60)))
        t.start()
        waiting.wait()
        try:
            # The reader holds the consumer while it waits (at least until our send).
            for _ in range(1000):
                try:
                    c.stats()
                except RuntimeError as e:
                    assert "another thread" in str(e)
                    break
            else:
                pytest.fail("a consumer busy in another thread was not reported")
        finally:
            p.send(b"done")
            t.join(60)


def test_stats_count_messages(name):
    with shmcast.Producer(name, capacity=4096) as p, shmcast.Consumer(name) as c:
        p.send(b"a")
        p.send(b"b")
        c.recv_bytes()
        assert p.stats()["messages"] == 2
        assert c.stats()["messages"] == 1
        v = c.recv()
        with pytest.raises(shmcast.MessageHeld):
            c.stats()
        v.release()
        assert repr(p).startswith("<shmcast.Producer")


def _tight_message(i):
    """Message ``i`` of the tight-spin stream: its index, then 0 to 200 bytes of filler."""
    return i.to_bytes(8, "little") + bytes((i + k) & 0xFF for k in range(i * 13 % 201))


# ``{}``: the default (on); ``tight_spin=False``: the opt-out, every spin the full poll.
@pytest.mark.parametrize("option", [{}, {"tight_spin": False}], ids=["default", "off"])
def test_a_busy_spinning_consumer_gets_a_stream_in_order_across_the_wrap(name, option):
    count = 3000  # about 400 KB of records through a 4 KiB ring: ~100 laps
    with shmcast.Producer(name, capacity=4096) as p, \
            shmcast.Consumer(name, wait="busy-spin", **option) as c:
        assert c.tight_spin is option.get("tight_spin", True)
        failed = []

        def produce():
            try:
                for i in range(count):
                    p.send(_tight_message(i), timeout=HANG_GUARD)
            except BaseException as e:  # reported below, in the test's thread
                failed.append(e)

        # The consumer keeps finding the ring empty while this thread sends, so it takes
        # messages from its spin loop (with the GIL released, which lets the producer run):
        # the tight one by default, the full poll with tight_spin=False.
        t = threading.Thread(target=produce)
        t.start()
        try:
            for i in range(count):
                if i % 2 == 0:
                    with c.recv(timeout=HANG_GUARD) as view:
                        assert (view.obj.seq, bytes(view)) == (i, _tight_message(i))
                else:
                    assert c.recv_bytes(timeout=HANG_GUARD) == _tight_message(i)
        finally:
            t.join(HANG_GUARD)
        assert not t.is_alive() and failed == []
        assert c.try_recv() is None
        assert c.stats()["messages"] == count


def test_tight_spin_is_on_by_default_and_refuses_nothing(name, tmp_path):
    default = inspect.signature(shmcast.Consumer).parameters["tight_spin"].default
    assert default is True
    with shmcast.Producer(name, capacity=4096) as p:
        with shmcast.Consumer(name) as c:
            assert c.tight_spin is True
        with shmcast.Consumer(name, lossy=True) as c:
            assert c.tight_spin is False  # a lossy consumer has no tight spin
        for wait in ["adaptive", "busy-spin", "spin-yield", "sleep"]:
            for lossy in [False, True]:
                for tight in [True, False]:
                    options = dict(wait=wait, lossy=lossy, tight_spin=tight)
                    with shmcast.Consumer(name, **options) as c:
                        assert c.tight_spin is (tight and not lossy)
                        assert c.lossy is lossy
                        p.send(wait.encode())
                        assert c.recv_bytes(timeout=HANG_GUARD) == wait.encode()
        with shmcast.Consumer(name, start="oldest", allow_foreign_owner=True) as c:
            assert c.tight_spin
        with shmcast.Consumer(name, start="oldest", allow_foreign_owner=True,
                              tight_spin=False) as c:
            assert not c.tight_spin
    with shmcast.Producer(path=tmp_path / "segment", capacity=4096) as p:
        for tight in [True, False]:
            with shmcast.Consumer(path=tmp_path / "segment", tight_spin=tight) as c:
                assert c.tight_spin is tight
                p.send(b"file")
                assert c.recv_bytes(timeout=HANG_GUARD) == b"file"
    # What was refused before still is, with the option on or off.
    for tight in [False, True]:
        with pytest.raises(ValueError, match="wait="):
            shmcast.Consumer(name, wait="sometimes", tight_spin=tight)
        with pytest.raises(shmcast.NotFound):
            shmcast.Consumer(name, tight_spin=tight)
