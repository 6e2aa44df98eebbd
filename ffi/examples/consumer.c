/*
 * shmcast C example: attach to a named segment and check every message of the workload in
 * workload.h until the stream ends, using every way of receiving in turn: recv (in place),
 * try_recv, recv_timeout and recv_into (a copy, sometimes first into a buffer too small).
 *
 *   cc -std=c11 -O2 -Iffi/include ffi/examples/consumer.c -Ltarget/release -lshmcast_ffi \
 *      -Wl,-rpath,$PWD/target/release -o consumer
 *   ./producer demo 100000 --wait-go &   ./consumer demo
 *
 * Options: --max-len N and --seed S (as given to the producer), --lossy (never slow the
 * producer down; count lost messages), --oldest (start at the oldest message still in the
 * ring instead of the next one), --busy-spin, --no-tight-spin (options.tight_spin = 0:
 * while a blocking receive spins, run the full poll each time instead of polling the next
 * record's stamp alone, which is the default).
 *
 * Prints "attached" once attached, then at the end one of
 *   ok messages=N bytes=B lost=L digest=D            the producer closed the stream
 *   producer-died messages=N bytes=B lost=L digest=D  the producer died
 * and exits 0; any wrong message or unexpected status: "error ..." and exit 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmcast.h"
#include "workload.h"

static void fail(const char *what, shmcast_status st) {
    printf("error %s: %s (%d): %s\n", what, shmcast_status_str(st), (int)st,
           shmcast_last_error());
    fflush(stdout);
    exit(1);
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *end != '\0') {
        fprintf(stderr, "consumer: %s: not a number: %s\n", what, s);
        exit(2);
    }
    return (uint64_t)v;
}

struct run {
    uint64_t seed;
    size_t max_len;
    int lossy;
    uint64_t messages, bytes, lost, digest;
    uint64_t next_seq; /* lossless: the sequence number expected next */
    int started;
};

/* Check one received message (the `seq`-th of the stream). */
static void take(struct run *r, const uint8_t *data, size_t len, uint64_t seq) {
    /* Lossless: every message in order. Lossy: in order, past the ones reported lost. */
    if (r->started && seq != r->next_seq) {
        printf("error expected message %" PRIu64 ", got %" PRIu64 "\n", r->next_seq, seq);
        exit(1);
    }
    uint64_t sum;
    const char *why = wl_check(data, len, r->seed, seq, r->max_len, &sum);
    if (why) {
        printf("error message %" PRIu64 " (%zu bytes): %s\n", seq, len, why);
        exit(1);
    }
    r->started = 1;
    r->next_seq = seq + 1;
    r->messages++;
    r->bytes += len;
    r->digest = wl_digest(r->digest, sum);
}

static void finish(struct run *r, const char *how) {
    printf("%s messages=%" PRIu64 " bytes=%" PRIu64 " lost=%" PRIu64 " digest=%016" PRIx64 "\n",
           how, r->messages, r->bytes, r->lost, r->digest);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s NAME [--max-len N] [--seed S] [--lossy] [--oldest] [--busy-spin] "
                "[--no-tight-spin]\n",
                argv[0]);
        return 2;
    }
    struct run r = {.seed = 1, .max_len = 300, .digest = WL_FNV_OFFSET};
    shmcast_consumer_options opts = shmcast_consumer_options_default();
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "--max-len") && a + 1 < argc)
            r.max_len = (size_t)parse_u64(argv[++a], "--max-len");
        else if (!strcmp(argv[a], "--seed") && a + 1 < argc)
            r.seed = parse_u64(argv[++a], "--seed");
        else if (!strcmp(argv[a], "--lossy"))
            opts.lossy = 1;
        else if (!strcmp(argv[a], "--oldest"))
            opts.start = SHMCAST_START_OLDEST;
        else if (!strcmp(argv[a], "--busy-spin"))
            opts.wait.kind = SHMCAST_WAIT_BUSY_SPIN;
        else if (!strcmp(argv[a], "--no-tight-spin"))
            opts.tight_spin = 0;
        else {
            fprintf(stderr, "consumer: unknown argument %s\n", argv[a]);
            return 2;
        }
    }
    r.lossy = opts.lossy != 0;

    shmcast_consumer *c = NULL;
    shmcast_status st = shmcast_consumer_open(argv[1], &opts, &c);
    if (st != SHMCAST_OK) fail("shmcast_consumer_open", st);
    printf("attached\n");
    fflush(stdout);

    uint8_t *buf = malloc(r.max_len);
    if (!buf) return 1;
    for (uint64_t n = 0;; n++) {
        shmcast_message m;
        unsigned way = (unsigned)(n % 4);
        if (way == 3) {
            /* A copy. Every 8th time offer a buffer too small first: the message must be
             * kept, and the call must say how much room it needs. */
            shmcast_recv_info info;
            st = SHMCAST_OK;
            if (n % 8 == 7) {
                st = shmcast_consumer_recv_into(c, buf, 8, &info);
                if (st == SHMCAST_OK) fail("recv_into an 8-byte buffer accepted a message", st);
                if (st == SHMCAST_BUFFER_TOO_SMALL && (info.len <= 8 || info.len > r.max_len))
                    fail("BUFFER_TOO_SMALL with an impossible length", st);
            }
            if (st != SHMCAST_LAGGED) st = shmcast_consumer_recv_into(c, buf, r.max_len, &info);
            if (st == SHMCAST_OK) {
                take(&r, buf, info.len, info.seq);
                continue;
            }
            m.lost = info.lost;
        } else {
            if (way == 0) {
                st = shmcast_consumer_recv(c, &m);
            } else if (way == 1) {
                while ((st = shmcast_consumer_try_recv(c, &m)) == SHMCAST_EMPTY) {
                }
            } else {
                while ((st = shmcast_consumer_recv_timeout(c, &m, 20000000)) == SHMCAST_TIMEOUT) {
                }
            }
            if (st == SHMCAST_OK) {
                take(&r, m.data, m.len, m.seq);
                if ((st = shmcast_consumer_release(c)) != SHMCAST_OK) fail("release", st);
                continue;
            }
        }
        if (st == SHMCAST_LAGGED && r.lossy) {
            if (m.lost == 0) fail("LAGGED without a count", st);
            r.lost += m.lost;
            r.next_seq += m.lost; /* it goes on at the oldest message still present */
            continue;
        }
        if (st == SHMCAST_DISCONNECTED) {
            finish(&r, "ok");
            break;
        }
        if (st == SHMCAST_PRODUCER_DIED) {
            finish(&r, "producer-died");
            break;
        }
        fail("receive", st);
    }
    free(buf);
    if ((st = shmcast_consumer_close(c)) != SHMCAST_OK) fail("shmcast_consumer_close", st);
    return 0;
}
