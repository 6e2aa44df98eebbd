"""Per-message overhead of the C and Python bindings against Rust, measured in one run.

    bash .ci/python.sh                         # once: a venv with the package installed
    target/python-venv/bin/python ffi/bench/overhead.py [--rounds 5] [--count 1000000]

Builds the Rust peer (ffi/src/bin/shmcast-ffi-peer.rs) and ffi/examples/bench.c, then, in
interleaved rounds (so that load on the machine hits every language alike):

  one-way   a producer process sends COUNT messages of 64 B as fast as the consumer allows;
            the consumer (another process, same language) times first to last message.
            Producer pinned to CPU 0, consumer to CPU 1; both busy-spin.
  loop      one process, one named segment: try_send then try_recv + release, COUNT times.
            Pinned to CPU 1.

and prints ns/message (median and min of the rounds) and the ratio to Rust. With
--callgrind it also counts instructions per loop iteration under valgrind (the difference
between two run lengths, so start-up cancels out): stable on a shared machine, unlike time.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64


def build():
    out = subprocess.run(
        ["cargo", "build", "--release", "-p", "shmcast-ffi", "--message-format=json-render-diagnostics"],
        cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True).stdout
    peer = lib = None
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") != "compiler-artifact":
            continue
        if m["target"]["name"] == "shmcast-ffi-peer":
            peer = m["executable"]
        if m["target"]["name"] == "shmcast_ffi":
            lib = next(f for f in m["filenames"] if f.endswith(".so"))
    lib_dir = str(Path(lib).parent)
    bench_c = ROOT / "target" / "release" / "shmcast-ffi-bench"
    subprocess.run(
        [os.environ.get("CC", "cc"), "-std=c11", "-O2", f"-I{ROOT}/ffi/include",
         str(ROOT / "ffi/examples/bench.c"), "-L", lib_dir, "-lshmcast_ffi",
         f"-Wl,-rpath,{lib_dir}", "-o", str(bench_c)], check=True)
    return peer, str(bench_c)


def commands(peer, bench_c):
    py = [sys.executable, str(ROOT / "python/examples/bench.py")]
    return {
        "Rust": {
            "send": lambda n, c: [peer, "bench-send", n, c, str(SIZE), "--busy-spin", "--capacity", "1048576"],
            "recv": lambda n, c: [peer, "bench-recv", n, c, "--busy-spin"],
            "loop": lambda n, c: [peer, "bench-loop", n, c, str(SIZE), "--busy-spin", "--capacity", "1048576"],
        },
        "C": {
            "send": lambda n, c: [bench_c, "send", n, c, str(SIZE)],
            "recv": lambda n, c: [bench_c, "recv", n, c],
            "loop": lambda n, c: [bench_c, "loop", n, c, str(SIZE)],
        },
        "Python (view)": {
            "send": lambda n, c: py + ["send", n, c, str(SIZE)],
            "recv": lambda n, c: py + ["recv", n, c],
            "loop": lambda n, c: py + ["loop", n, c, str(SIZE)],
        },
        "Python (bytes)": {
            "send": lambda n, c: py + ["send", n, c, str(SIZE)],
            "recv": lambda n, c: py + ["recv-bytes", n, c],
            "loop": lambda n, c: py + ["loop-bytes", n, c, str(SIZE)],
        },
    }


def pinned(cpu, cmd):
    return ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") else cmd


def expect(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
        if line.startswith("error"):
            raise SystemExit(line)
    raise SystemExit(f"{proc.args} exited ({proc.wait()}) before '{prefix}'")


def one_way(cmds, count, tag):
    name = f"shmcast-bench-{os.getpid()}-{tag}"
    send = subprocess.Popen(pinned(0, cmds["send"](name, str(count))), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        expect(send, "ready")
        recv = subprocess.Popen(pinned(1, cmds["recv"](name, str(count))),
                                stdout=subprocess.PIPE, text=True)
        expect(recv, "attached")
        send.stdin.write("go\n")
        send.stdin.flush()
        line = expect(recv, "received")
        recv.wait(600)
        send.wait(600)
    finally:
        send.kill()
    ns = int(re.search(r" in (\d+) ns", line).group(1))
    return ns / (count - 1)


def loop(cmds, count, tag):
    name = f"shmcast-bench-{os.getpid()}-{tag}"
    out = subprocess.run(pinned(1, cmds["loop"](name, str(count))), stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    return int(re.search(r" in (\d+) ns", out).group(1)) / count


def instructions(cmd):
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=1_000_000, help="one-way messages per round")
    ap.add_argument("--loop-count", type=int, default=2_000_000)
    ap.add_argument("--callgrind", action="store_true")
    args = ap.parse_args()
    peer, bench_c = build()
    cmds = commands(peer, bench_c)
    # Warm-up: one short run of each.
    for lang, c in cmds.items():
        one_way(c, 10_000, "warm")
        loop(c, 10_000, "warm")
    results = {lang: {"one-way": [], "loop": []} for lang in cmds}
    for r in range(args.rounds):
        for lang, c in cmds.items():
            results[lang]["one-way"].append(one_way(c, args.count, f"r{r}"))
            results[lang]["loop"].append(loop(c, args.loop_count, f"r{r}"))
    print(f"{args.rounds} rounds, {SIZE}-byte messages; ns/message: median (min); ratio of medians to Rust")
    print(f"{'':16} {'one-way, 2 processes':>32} {'send+try_recv loop, 1 process':>34}")
    base = {k: statistics.median(results["Rust"][k]) for k in ("one-way", "loop")}
    for lang, res in results.items():
        cells = []
        for k in ("one-way", "loop"):
            med = statistics.median(res[k])
            cells.append(f"{med:9.1f} ({min(res[k]):7.1f})  x{med / base[k]:5.2f}")
        print(f"{lang:16} {cells[0]:>32} {cells[1]:>34}")
    if args.callgrind:
        print("\ninstructions per loop iteration (callgrind, (I(n2) - I(n1)) / (n2 - n1)):")
        n1, n2 = 20_000, 120_000
        base_ir = None
        for lang, c in cmds.items():
            i1 = instructions(c["loop"](f"shmcast-bench-{os.getpid()}-cg1", str(n1)))
            i2 = instructions(c["loop"](f"shmcast-bench-{os.getpid()}-cg2", str(n2)))
            per = (i2 - i1) / (n2 - n1)
            base_ir = base_ir or per
            print(f"{lang:16} {per:9.1f}  x{per / base_ir:5.2f}")


if __name__ == "__main__":
    main()
