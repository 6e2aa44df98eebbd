"""The Python rows of the binding-overhead benchmark (ffi/bench/overhead.sh), mirroring
ffi/examples/bench.c and the Rust peer's bench roles. Busy-spin waits on both sides.

    bench.py send NAME COUNT SIZE     create, print "ready", wait for a line on stdin, send
    bench.py recv NAME COUNT          attach, print "attached", receive in place
                                      (``with consumer.recv() as view``), time first to last
    bench.py recv-bytes NAME COUNT    as recv, with ``recv_bytes()`` (a copy)
    bench.py loop NAME COUNT SIZE     one process: try_send, then try_recv + release
    bench.py loop-bytes NAME COUNT SIZE  as loop, with ``try_recv_bytes()``
"""

import sys
import time

import shmcast


def main(argv):
    role, name, count = argv[0], argv[1], int(argv[2])
    size = int(argv[3]) if len(argv) > 3 else 64
    msg = bytes(size)
    if role == "send":
        p = shmcast.Producer(name, wait="busy-spin")
        print("ready", flush=True)
        sys.stdin.readline()
        send = p.send
        for _ in range(count):
            send(msg)
        print("sent", flush=True)
        p.close()
    elif role in ("recv", "recv-bytes"):
        c = shmcast.Consumer(name, wait="busy-spin")
        print("attached", flush=True)
        total = 0
        if role == "recv":
            with c.recv() as v:
                total += len(v)
            start = time.perf_counter_ns()
            recv = c.recv
            for _ in range(count - 1):
                with recv() as v:
                    total += len(v)
        else:
            total += len(c.recv_bytes())
            start = time.perf_counter_ns()
            recv_bytes = c.recv_bytes
            for _ in range(count - 1):
                total += len(recv_bytes())
        ns = time.perf_counter_ns() - start
        print(f"received {count} in {ns} ns (bytes {total})", flush=True)
        c.close()
    elif role in ("loop", "loop-bytes"):
        p = shmcast.Producer(name, wait="busy-spin")
        c = shmcast.Consumer(name, wait="busy-spin")
        try_send, total = p.try_send, 0
        start = time.perf_counter_ns()
        if role == "loop":
            try_recv = c.try_recv
            for _ in range(count):
                try_send(msg)
                v = try_recv()
                total += v[0]
                v.release()
        else:
            try_recv_bytes = c.try_recv_bytes
            for _ in range(count):
                try_send(msg)
                total += len(try_recv_bytes())
        ns = time.perf_counter_ns() - start
        print(f"loop {count} in {ns} ns (sum {total})", flush=True)
        c.close()
        p.close()
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main(sys.argv[1:])
