/*
 * shmcast C example: create a named segment and publish COUNT self-checking messages of
 * variable length (see workload.h), using every way of sending in turn: send, try_send,
 * send_timeout, reserve/commit (with aborted reservations in between) and send_batch.
 *
 *   cc -std=c11 -O2 -Iffi/include ffi/examples/producer.c -Ltarget/release -lshmcast_ffi \
 *      -Wl,-rpath,$PWD/target/release -o producer
 *   ./producer demo 100000 &   ./consumer demo
 *
 * Options: --max-len N (largest message, >= 16; default 300), --seed S (default 1),
 * --capacity BYTES (power of two; default 65536), --wait-go (print "ready", then wait for a
 * line on stdin before sending: lets a test attach its consumers first), --stall-after K
 * (stop after K messages and wait to be killed: for producer-death tests), --busy-spin.
 * Prints "sent messages=N bytes=B digest=D" at the end; closing the producer ends the
 * stream for the consumers.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmcast.h"
#include "workload.h"

#define BLOCK 8 /* messages per way of sending */

static void die(const char *what, shmcast_status st) {
    fprintf(stderr, "producer: %s failed: %s (%d): %s\n", what, shmcast_status_str(st), (int)st,
            shmcast_last_error());
    exit(1);
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *end != '\0') {
        fprintf(stderr, "producer: %s: not a number: %s\n", what, s);
        exit(2);
    }
    return (uint64_t)v;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s NAME COUNT [--max-len N] [--seed S] [--capacity BYTES] [--wait-go] "
                "[--stall-after K] [--busy-spin]\n",
                argv[0]);
        return 2;
    }
    const char *name = argv[1];
    uint64_t count = parse_u64(argv[2], "COUNT");
    size_t max_len = 300;
    uint64_t seed = 1, capacity = 65536, stall_after = UINT64_MAX;
    int wait_go = 0, busy_spin = 0;
    for (int a = 3; a < argc; a++) {
        if (!strcmp(argv[a], "--max-len") && a + 1 < argc)
            max_len = (size_t)parse_u64(argv[++a], "--max-len");
        else if (!strcmp(argv[a], "--seed") && a + 1 < argc)
            seed = parse_u64(argv[++a], "--seed");
        else if (!strcmp(argv[a], "--capacity") && a + 1 < argc)
            capacity = parse_u64(argv[++a], "--capacity");
        else if (!strcmp(argv[a], "--stall-after") && a + 1 < argc)
            stall_after = parse_u64(argv[++a], "--stall-after");
        else if (!strcmp(argv[a], "--wait-go"))
            wait_go = 1;
        else if (!strcmp(argv[a], "--busy-spin"))
            busy_spin = 1;
        else {
            fprintf(stderr, "producer: unknown argument %s\n", argv[a]);
            return 2;
        }
    }
    if (max_len < WL_MIN_LEN) {
        fprintf(stderr, "producer: --max-len must be at least %u\n", WL_MIN_LEN);
        return 2;
    }

    shmcast_producer_options opts = shmcast_producer_options_default();
    opts.capacity = capacity;
    opts.max_message = max_len;
    if (busy_spin) opts.wait.kind = SHMCAST_WAIT_BUSY_SPIN;
    shmcast_producer *p = NULL;
    shmcast_status st = shmcast_producer_create(name, &opts, &p);
    if (st != SHMCAST_OK) die("shmcast_producer_create", st);
    shmcast_producer_info info;
    if ((st = shmcast_producer_get_info(p, &info)) != SHMCAST_OK) die("get_info", st);
    printf("ready capacity=%" PRIu64 " max_message=%" PRIu64 "\n", info.capacity,
           info.max_message);
    fflush(stdout);
    if (wait_go) {
        char line[64];
        if (!fgets(line, sizeof line, stdin)) {
            fprintf(stderr, "producer: stdin closed before the go line\n");
            shmcast_producer_close(p);
            return 1;
        }
    }

    uint8_t *scratch = malloc(max_len * BLOCK);
    if (!scratch) return 1;
    uint64_t digest = WL_FNV_OFFSET, bytes = 0, aborted = 0;
    for (uint64_t i = 0; i < count;) {
        if (i == stall_after) {
            printf("stalled %" PRIu64 "\n", i);
            fflush(stdout);
            for (;;) pause(); /* until killed */
        }
        unsigned way = (unsigned)((i / BLOCK) % 5);
        if (way == 3 && i % BLOCK == 0) {
            /* One batch for the whole block: one publication. */
            shmcast_slice batch[BLOCK];
            size_t n = 0;
            for (; n < BLOCK && i + n < count && i + n < stall_after; n++) {
                size_t len = wl_len(seed, i + n, max_len);
                uint8_t *buf = scratch + n * max_len;
                digest = wl_digest(digest, wl_fill(buf, len, seed, i + n));
                bytes += len;
                batch[n].data = buf;
                batch[n].len = len;
            }
            if ((st = shmcast_producer_send_batch(p, batch, n)) != SHMCAST_OK)
                die("shmcast_producer_send_batch", st);
            i += n;
            continue;
        }
        size_t len = wl_len(seed, i, max_len);
        if (way == 2) {
            /* Zero-copy: fill the ring in place. Every third, abort a reservation first:
             * consumers must never see it. */
            uint8_t *slot;
            if (i % 3 == 0) {
                st = shmcast_producer_try_reserve(p, len, &slot);
                if (st == SHMCAST_OK) {
                    memset(slot, 0xAB, len);
                    if ((st = shmcast_producer_abort(p)) != SHMCAST_OK) die("abort", st);
                    aborted++;
                } else if (st != SHMCAST_FULL) {
                    die("shmcast_producer_try_reserve", st);
                }
            }
            if ((st = shmcast_producer_reserve(p, len, &slot)) != SHMCAST_OK)
                die("shmcast_producer_reserve", st);
            digest = wl_digest(digest, wl_fill(slot, len, seed, i));
            if ((st = shmcast_producer_commit(p)) != SHMCAST_OK) die("commit", st);
        } else {
            digest = wl_digest(digest, wl_fill(scratch, len, seed, i));
            if (way == 0) {
                st = shmcast_producer_send(p, scratch, len);
            } else if (way == 1) {
                st = shmcast_producer_try_send(p, scratch, len);
                /* Full: wait for room in 1 ms slices. */
                while (st == SHMCAST_FULL || st == SHMCAST_TIMEOUT)
                    st = shmcast_producer_send_timeout(p, scratch, len, 1000000);
            } else {
                while ((st = shmcast_producer_send_timeout(p, scratch, len, 50000000)) ==
                       SHMCAST_TIMEOUT) {
                }
            }
            if (st != SHMCAST_OK) die("send", st);
        }
        bytes += len;
        i++;
    }
    printf("sent messages=%" PRIu64 " bytes=%" PRIu64 " digest=%016" PRIx64 " aborted=%" PRIu64
           "\n",
           count, bytes, digest, aborted);
    fflush(stdout);
    free(scratch);
    if ((st = shmcast_producer_close(p)) != SHMCAST_OK) die("shmcast_producer_close", st);
    return 0;
}
