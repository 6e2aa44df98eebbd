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


def hold_consumer(name, status):
    """Attach a lossless consumer, report "attached" on `status`, then wait to be killed."""
    try:
        c = shmcast.Consumer(name)
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
