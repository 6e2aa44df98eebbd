/*
 * The self-checking workload the C examples, the Rust peer (ffi/src/bin/shmcast-ffi-peer.rs)
 * and the Python tests (python/tests/workload.py) exchange. Change all three together.
 *
 * Message i (i = 0, 1, ...) of a run with seed S and maximum length M:
 *   length   16 + mix(S ^ i) % (M - 15)          (16 to M bytes)
 *   bytes    [0, 8)        i, little-endian
 *            [8, len - 8)  byte j is (uint8_t)(i * 31 + j * 7 + S)
 *            [len - 8, len) FNV-1a 64 of bytes [0, len - 8), little-endian
 * mix() is splitmix64's finalizer. A run's digest is FNV-1a 64 folded over the checksums
 * of its messages in order, so a producer and a consumer can compare whole runs.
 */
#ifndef SHMCAST_WORKLOAD_H
#define SHMCAST_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#define WL_MIN_LEN 16u
#define WL_FNV_OFFSET 0xcbf29ce484222325ull
#define WL_FNV_PRIME 0x100000001b3ull

static inline uint64_t wl_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t wl_fnv(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t k = 0; k < n; k++) {
        h ^= p[k];
        h *= WL_FNV_PRIME;
    }
    return h;
}

static inline void wl_put64(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static inline uint64_t wl_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) v |= (uint64_t)p[k] << (8 * k);
    return v;
}

/* Length of message i; max_len >= WL_MIN_LEN. */
static inline size_t wl_len(uint64_t seed, uint64_t i, size_t max_len) {
    return WL_MIN_LEN + (size_t)(wl_mix(seed ^ i) % (uint64_t)(max_len - WL_MIN_LEN + 1));
}

/* Write message i (wl_len bytes) into buf; returns its checksum. */
static inline uint64_t wl_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t i) {
    wl_put64(buf, i);
    for (size_t j = 8; j < len - 8; j++) buf[j] = (uint8_t)(i * 31 + j * 7 + seed);
    uint64_t sum = wl_fnv(WL_FNV_OFFSET, buf, len - 8);
    wl_put64(buf + len - 8, sum);
    return sum;
}

/* Check a received message: NULL if it is message i of the run, else what is wrong. On
 * success *sum is its checksum. */
static inline const char *wl_check(const uint8_t *buf, size_t len, uint64_t seed, uint64_t i,
                                   size_t max_len, uint64_t *sum) {
    if (len < WL_MIN_LEN) return "shorter than 16 bytes";
    if (wl_get64(buf) != i) return "wrong index";
    if (len != wl_len(seed, i, max_len)) return "wrong length";
    uint64_t s = wl_fnv(WL_FNV_OFFSET, buf, len - 8);
    if (wl_get64(buf + len - 8) != s) return "bad checksum";
    for (size_t j = 8; j < len - 8; j++)
        if (buf[j] != (uint8_t)(i * 31 + j * 7 + seed)) return "wrong filler";
    *sum = s;
    return NULL;
}

/* Fold a message checksum into a run digest (start from WL_FNV_OFFSET). */
static inline uint64_t wl_digest(uint64_t digest, uint64_t sum) {
    uint8_t b[8];
    wl_put64(b, sum);
    return wl_fnv(digest, b, 8);
}

#endif
