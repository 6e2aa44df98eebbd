"""Process entry points for the multiprocessing tests (importable by spawned children)."""

import time
import traceback

import shmcast
import workload


def produce(name, count, max_len, seed, ready, go, capacity=8192, stall_after=None):
    """Create the segment, signal `ready`, wait for `go`, send `count` workload messages
    (send, try_send, reserve and send_batch in turn); return via exit code."""
    with shmcast.Producer(name, capacity=capacity, max_message=max_len) as p:
        ready.set()
        go.wait()
        i = 0
        while i < count:
            if stall_after is not None and i == stall_after:
                ready.set()
                while True:
                    time.sleep(3600)
            way = (i // 8) % 4
            if way == 3 and i % 8 == 0:
                end = min(i + 8, count, stall_after if stall_after is not None else count)
                p.send_batch([workload.message(seed, k, max_len) for k in range(i, end)])
                i = end
                continue
            m = workload.message(seed, i, max_len)
            if way == 0:
                p.send(m)
            elif way == 1:
                if not p.try_send(memoryview(m)):
                    p.send(bytearray(m), timeout=60)
            else:
                with p.reserve(len(m)) as buf:
                    buf[:] = m
            i += 1


def consume(name, max_len, seed, attached, result, lossy=False):
    """Attach, signal `attached`, check every message until the stream ends; put
    (how, messages, bytes, lost, digest) into `result`."""
    c = shmcast.Consumer(name, lossy=lossy)
    attached.set()
    result.put(check_stream(c, max_len, seed))


def check_stream(c, max_len, seed):
    """Receive and check every message until the stream ends; return
    (how, messages, bytes, lost, digest)."""
    messages = nbytes = lost = 0
    d = workload.FNV_OFFSET
    expect = None
    while True:
        try:
            with c.recv(timeout=60) as view:
                seq = view.obj.seq
                assert expect is None or seq == expect, f"expected {expect}, got {seq}"
                d = workload.digest(d, workload.check(view, seed, seq, max_len))
                messages += 1
                nbytes += len(view)
                expect = seq + 1
        except shmcast.Lagged as e:
            lost += e.lost
            expect = None if expect is None else expect + e.lost
        except shmcast.Disconnected:
            return ("ok", messages, nbytes, lost, d)
        except shmcast.ProducerDied:
            return ("producer-died", messages, nbytes, lost, d)


def hold_consumer(name, status, lossy=False, go=None):
    """Attach a consumer (after `go` is set, if given), report "attached" on `status`, then
    wait to be killed."""
    try:
        if go is not None:
            go.wait()
        c = shmcast.Consumer(name, lossy=lossy)
        status.put("attached")
    except BaseException:
        status.put(traceback.format_exc())
        raise
    while c is not None:
        time.sleep(3600)


def hold_producer(name, count, status, capacity=4096):
    """open_or_create the segment (kept on close), send `count` messages, report
    ("created" or "took over", next_seq) on `status`, then wait to be killed."""
    try:
        p = shmcast.Producer.open_or_create(name, capacity=capacity, remove_on_close=False)
        for i in range(count):
            p.send(b"message %d" % i)
        status.put(("took over" if p.took_over else "created", p.next_seq))
    except BaseException:
        status.put(traceback.format_exc())
        raise
    while p is not None:
        time.sleep(3600)


def restarting_producer(name, consumers, burst, max_len, seed, status, capacity=4096):
    """One life of a producer service: open_or_create the segment (kept on close), report
    ("created" or "took over", next_seq), wait for `consumers` consumers, then send workload
    messages for ever (message i carries sequence number i: `send` and `reserve` in turn),
    reporting ("sent", next_seq) once after `burst` messages; killed by the test while it
    sends (or waits for space, or holds a reservation)."""
    try:
        p = shmcast.Producer.open_or_create(name, capacity=capacity, max_message=max_len,
                                            remove_on_close=False)
        status.put(("took over" if p.took_over else "created", p.next_seq))
        p.wait_for_consumers(consumers, timeout=600)
        sent = 0
        while True:
            seq = p.next_seq
            m = workload.message(seed, seq, max_len)
            if seq % 2:
                p.send(m)
            else:
                with p.reserve(len(m)) as buf:
                    buf[:] = m
            sent += 1
            if sent == burst:
                status.put(("sent", p.next_seq))
    except BaseException:
        status.put(traceback.format_exc())
        raise


def follow_restarts(name, max_len, seed, attached, result, lossy=False, hang_guard=120.0):
    """Attach, signal `attached`, then receive and check every message across producer
    deaths and takeovers (after ProducerDied, keep receiving: the next producer continues
    the stream) until the stream is closed; put (how, messages, bytes, lost, digest,
    deaths, first_seq) into `result`. A lossless consumer must see 0, 1, 2, ... with no gap
    or duplicate; a lossy one increasing numbers, each gap announced by Lagged."""
    c = shmcast.Consumer(name, lossy=lossy)
    attached.set()
    messages = nbytes = lost = deaths = 0
    d = workload.FNV_OFFSET
    expect = first = None
    dead_since = None
    while True:
        try:
            with c.recv(timeout=hang_guard) as view:
                seq = view.obj.seq
                assert expect is None or seq == expect, f"expected {expect}, got {seq}"
                d = workload.digest(d, workload.check(view, seed, seq, max_len))
                first = seq if first is None else first
                messages += 1
                nbytes += len(view)
                expect = seq + 1
            dead_since = None
        except shmcast.Lagged as e:
            assert lossy, "a lossless consumer lagged"
            lost += e.lost
            expect = None if expect is None else expect + e.lost
        except shmcast.ProducerDied:
            # Between a death and the takeover: poll (a hang guard, not a timing check).
            if dead_since is None:
                deaths += 1
                dead_since = time.monotonic()
            elif time.monotonic() - dead_since > hang_guard:
                result.put(("no takeover", messages, nbytes, lost, d, deaths, first))
                return
            time.sleep(0.001)
        except shmcast.Disconnected:
            result.put(("ok", messages, nbytes, lost, d, deaths, first))
            return
        except BaseException:
            result.put((traceback.format_exc(), messages, nbytes, lost, d, deaths, first))
            raise
