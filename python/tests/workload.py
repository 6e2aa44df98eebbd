"""The self-checking workload of ffi/examples/workload.h, in Python (keep the three in
step: C, ffi/src/bin/shmcast-ffi-peer.rs, this file).

Message i of a run with seed S and maximum length M: 16 + mix(S ^ i) % (M - 15) bytes;
i as u64 LE, filler bytes (i*31 + j*7 + S) mod 256 at offsets j in [8, len-8), then the
FNV-1a 64 of everything before as u64 LE. A run's digest folds the checksums in order."""

MIN_LEN = 16
FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_M64 = (1 << 64) - 1
_SEVENS = bytes((7 * j) & 0xFF for j in range(1 << 16))
_SHIFT = [bytes((x + b) & 0xFF for x in range(256)) for b in range(256)]


def mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def fnv(h: int, data) -> int:
    for b in bytes(data):
        h = ((h ^ b) * _FNV_PRIME) & _M64
    return h


def length(seed: int, i: int, max_len: int) -> int:
    return MIN_LEN + mix(seed ^ i) % (max_len - MIN_LEN + 1)


def _filler(seed: int, i: int, n: int) -> bytes:
    # byte j (from 8) is (i*31 + seed + 7j) mod 256: a shifted slice of the 7j table
    return _SEVENS[8 : 8 + n].translate(_SHIFT[(i * 31 + seed) & 0xFF])


def message(seed: int, i: int, max_len: int) -> bytes:
    n = length(seed, i, max_len)
    head = i.to_bytes(8, "little") + _filler(seed, i, n - 16)
    return head + fnv(FNV_OFFSET, head).to_bytes(8, "little")


def check(data, seed: int, i: int, max_len: int) -> int:
    """The message's checksum; AssertionError if it is not message i."""
    data = bytes(data)
    assert len(data) >= MIN_LEN, f"message {i}: {len(data)} bytes"
    assert int.from_bytes(data[:8], "little") == i, f"message {i}: wrong index"
    assert len(data) == length(seed, i, max_len), f"message {i}: wrong length {len(data)}"
    sum_ = fnv(FNV_OFFSET, data[:-8])
    assert int.from_bytes(data[-8:], "little") == sum_, f"message {i}: bad checksum"
    assert data[8:-8] == _filler(seed, i, len(data) - 16), f"message {i}: wrong filler"
    return sum_


def digest(d: int, sum_: int) -> int:
    return fnv(d, sum_.to_bytes(8, "little"))
