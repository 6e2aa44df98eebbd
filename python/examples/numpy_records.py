"""Fixed-size records, in place, with NumPy.

A producer process fills each message's records directly in the shared ring
(``Producer.reserve`` + ``numpy.frombuffer`` on the writable view); this process reads them
in place (``numpy.frombuffer`` on the received view): no copy on either side.

    python examples/numpy_records.py [--messages N] [--records-per-message K]

Rules of the zero-copy views: an array made from a view holds that view's message (or
reservation). Delete the array before leaving the ``with`` block, so that the reservation
can be committed and the received message handed back to the producer.
"""

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

import shmcast

# 32-byte records, 8-byte aligned like the ring's payloads.
RECORD = np.dtype(
    [
        ("seq", "<u8"),
        ("time_ns", "<u8"),
        ("price", "<f8"),
        ("qty", "<i4"),
        ("side", "u1"),
        ("_pad", "V3"),
    ]
)
assert RECORD.itemsize == 32


def produce(name, messages, per_message, ready, go):
    size = per_message * RECORD.itemsize
    with shmcast.Producer(name, capacity=1 << 20, max_message=size) as p:
        ready.set()
        go.wait()
        seq = np.arange(per_message, dtype="<u8")
        for m in range(messages):
            with p.reserve(size) as buf:
                recs = np.frombuffer(buf, dtype=RECORD)  # writable, in the ring
                recs["seq"] = seq + m * per_message
                recs["time_ns"] = time.monotonic_ns()
                recs["price"] = 100.0 + (recs["seq"] % 1000) * 0.01
                recs["qty"] = (recs["seq"] % 7).astype("<i4") + 1
                recs["side"] = recs["seq"] % 2
                del recs  # release it: leaving the block commits the reservation


def consume(name, messages, per_message):
    ready, go = mp.Event(), mp.Event()
    producer = mp.Process(target=produce, args=(name, messages, per_message, ready, go))
    producer.start()
    try:
        if not ready.wait(60):
            sys.exit("the producer did not start")
        c = shmcast.Consumer(name)
        go.set()
        records, notional, next_seq = 0, 0.0, 0
        while True:
            try:
                with c.recv(timeout=60) as view:
                    recs = np.frombuffer(view, dtype=RECORD)  # read-only, in the ring
                    if recs["seq"][0] != next_seq or not np.array_equal(
                        recs["seq"], np.arange(next_seq, next_seq + len(recs), dtype="<u8")
                    ):
                        sys.exit(f"records out of order at {next_seq}")
                    notional += float(np.dot(recs["price"], recs["qty"]))
                    records += len(recs)
                    next_seq += len(recs)
                    del recs  # release it: leaving the block hands the space back
            except shmcast.Disconnected:
                break
        producer.join(60)
    finally:
        if producer.is_alive():
            producer.kill()
    expected = np.arange(messages * per_message, dtype="<u8")
    want = float(np.dot(100.0 + (expected % 1000) * 0.01, (expected % 7) + 1))
    ok = records == messages * per_message and abs(notional - want) <= 1e-9 * abs(want)
    print(f"records={records} messages={messages} notional={notional:.2f} "
          f"{'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--records-per-message", type=int, default=64)
    ap.add_argument("--name", default=f"shmcast-numpy-{os.getpid()}")
    args = ap.parse_args()
    return consume(args.name, args.messages, args.records_per_message)


if __name__ == "__main__":
    sys.exit(main())
