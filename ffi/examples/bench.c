/*
 * The C rows of the binding-overhead benchmark (ffi/bench/overhead.sh), mirroring the
 * Rust peer's bench-send/bench-recv/bench-loop roles and python/examples/bench.py.
 *
 *   bench send NAME COUNT SIZE   create NAME, print "ready", wait for a line on stdin, send
 *                                COUNT messages of SIZE bytes (busy-spin when full)
 *   bench recv NAME COUNT        attach, print "attached", receive COUNT messages in place
 *                                (recv + release); print "received N in T ns" (first to last)
 *   bench loop NAME COUNT SIZE   one process: try_send then try_recv + release, COUNT times;
 *                                print "loop N in T ns"
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmcast.h"

static void die(const char *what, shmcast_status st) {
    printf("error %s: %s\n", what, shmcast_last_error());
    fflush(stdout);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static shmcast_producer *create(const char *name) {
    shmcast_producer_options o = shmcast_producer_options_default();
    o.wait.kind = SHMCAST_WAIT_BUSY_SPIN;
    shmcast_producer *p;
    shmcast_status st = shmcast_producer_create(name, &o, &p);
    if (st != SHMCAST_OK) die("create", st);
    return p;
}

static shmcast_consumer *attach(const char *name) {
    shmcast_consumer_options o = shmcast_consumer_options_default();
    o.wait.kind = SHMCAST_WAIT_BUSY_SPIN;
    shmcast_consumer *c;
    shmcast_status st = shmcast_consumer_open(name, &o, &c);
    if (st != SHMCAST_OK) die("open", st);
    return c;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s send|recv|loop NAME COUNT [SIZE]\n", argv[0]);
        return 2;
    }
    const char *role = argv[1], *name = argv[2];
    uint64_t count = strtoull(argv[3], NULL, 10);
    size_t size = argc > 4 ? (size_t)strtoull(argv[4], NULL, 10) : 64;
    uint8_t *msg = calloc(1, size + 8);
    if (!msg) return 1;
    shmcast_status st;
    if (!strcmp(role, "send")) {
        shmcast_producer *p = create(name);
        printf("ready\n");
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 1;
        for (uint64_t i = 0; i < count; i++) {
            memcpy(msg, &i, size < 8 ? size : 8);
            if ((st = shmcast_producer_send(p, msg, size)) != SHMCAST_OK) die("send", st);
        }
        printf("sent\n");
        fflush(stdout);
        shmcast_producer_close(p);
    } else if (!strcmp(role, "recv")) {
        shmcast_consumer *c = attach(name);
        printf("attached\n");
        fflush(stdout);
        uint64_t start = 0, bytes = 0;
        shmcast_message m;
        for (uint64_t i = 0; i < count; i++) {
            if ((st = shmcast_consumer_recv(c, &m)) != SHMCAST_OK) die("recv", st);
            if (i == 0) start = now_ns();
            bytes += m.len;
            shmcast_consumer_release(c);
        }
        uint64_t ns = now_ns() - start;
        printf("received %" PRIu64 " in %" PRIu64 " ns (bytes %" PRIu64 ")\n", count, ns, bytes);
        shmcast_consumer_close(c);
    } else if (!strcmp(role, "loop")) {
        shmcast_producer *p = create(name);
        shmcast_consumer *c = attach(name);
        shmcast_message m;
        uint64_t sum = 0, start = now_ns();
        for (uint64_t i = 0; i < count; i++) {
            if ((st = shmcast_producer_try_send(p, msg, size)) != SHMCAST_OK) die("try_send", st);
            if ((st = shmcast_consumer_try_recv(c, &m)) != SHMCAST_OK) die("try_recv", st);
            sum += m.data[0];
            shmcast_consumer_release(c);
        }
        uint64_t ns = now_ns() - start;
        printf("loop %" PRIu64 " in %" PRIu64 " ns (sum %" PRIu64 ")\n", count, ns, sum);
        shmcast_consumer_close(c);
        shmcast_producer_close(p);
    } else {
        fprintf(stderr, "unknown role %s\n", role);
        return 2;
    }
    free(msg);
    return 0;
}
