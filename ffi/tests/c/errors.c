/*
 * Error paths of the C interface, from C: every NULL pointer, bad names and options,
 * too-large messages, calls out of order, the wrong kind of handle, buffers too small, and
 * the end-of-stream and producer-takeover outcomes. Each check names what it expects; the
 * program prints every failed check and ends with "errors: N passed, M failed", exiting 1
 * if any failed. Run by tests/c_interop.rs (linked statically) with a segment-name prefix
 * as its only argument; every segment it creates starts with that prefix.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmcast.h"

static int passed, failed;
static char prefix[128];

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            passed++;                                                     \
        } else {                                                          \
            failed++;                                                     \
            printf("FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            printf(__VA_ARGS__);                                          \
            printf(" (last error: %s)\n", shmcast_last_error());          \
        }                                                                 \
    } while (0)

/* The calling thread's last error contains `text` (or `text` is NULL). */
static int last_error_has(const char *text) {
    return text == NULL || strstr(shmcast_last_error(), text) != NULL;
}

/* `call` returns `want` and the last error contains `text` (if not NULL). */
#define EXPECT(call, want, text)                                                            \
    do {                                                                                    \
        shmcast_status got_ = (call);                                                       \
        CHECK(got_ == (want), "%s returned %s (%d), expected %s", #call,                    \
              shmcast_status_str(got_), (int)got_, shmcast_status_str(want));               \
        if (got_ != SHMCAST_OK && !last_error_has(text))                                    \
            CHECK(0, "%s: message lacks \"%s\"", #call, (const char *)(text));              \
    } while (0)

static const char *seg(const char *suffix) {
    static char names[16][192];
    static int next;
    char *n = names[next++ % 16];
    snprintf(n, sizeof names[0], "%s-%s", prefix, suffix);
    return n;
}

static shmcast_producer *make_producer(const char *name, uint64_t capacity, uint64_t max_message) {
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = capacity;
    o.max_message = max_message;
    shmcast_producer *p = NULL;
    EXPECT(shmcast_producer_create(name, &o, &p), SHMCAST_OK, NULL);
    return p;
}

static shmcast_consumer *make_consumer(const char *name, int lossy) {
    shmcast_consumer_options o = shmcast_consumer_options_default();
    o.lossy = (uint32_t)lossy;
    shmcast_consumer *c = NULL;
    EXPECT(shmcast_consumer_open(name, &o, &c), SHMCAST_OK, NULL);
    return c;
}

static void statuses(void) {
    CHECK(strcmp(shmcast_status_str(SHMCAST_OK), "success") == 0, "OK text");
    CHECK(strcmp(shmcast_status_str(9999), "unknown status") == 0, "unknown code text");
    CHECK(strcmp(shmcast_status_str(-1), "unknown status") == 0, "negative code text");
    CHECK(shmcast_version() != NULL && strlen(shmcast_version()) > 0, "version");
    CHECK(shmcast_last_error() != NULL, "last error is never NULL");
}

static void null_pointers(void) {
    const char *name = seg("null");
    shmcast_producer *p = (shmcast_producer *)0x1;
    EXPECT(shmcast_producer_create(NULL, NULL, &p), SHMCAST_NULL_POINTER, "name is NULL");
    CHECK(p == NULL, "a failed create leaves NULL in *out");
    EXPECT(shmcast_producer_create(name, NULL, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    shmcast_consumer *c = (shmcast_consumer *)0x1;
    EXPECT(shmcast_consumer_open(name, NULL, &c), SHMCAST_NOT_FOUND, "start the producer first");
    CHECK(c == NULL, "a failed open leaves NULL in *out");
    EXPECT(shmcast_producer_create_path(NULL, NULL, &p), SHMCAST_NULL_POINTER, "path is NULL");
    EXPECT(shmcast_producer_create_anonymous(NULL, NULL), SHMCAST_NULL_POINTER, "out");
    EXPECT(shmcast_producer_create_in_process(NULL, NULL), SHMCAST_NULL_POINTER, "out");
    EXPECT(shmcast_producer_open(NULL, NULL, &p), SHMCAST_NULL_POINTER, "name is NULL");
    EXPECT(shmcast_consumer_open(NULL, NULL, &c), SHMCAST_NULL_POINTER, "name is NULL");
    EXPECT(shmcast_consumer_open_path(NULL, NULL, &c), SHMCAST_NULL_POINTER, "path is NULL");
    EXPECT(shmcast_consumer_attach(NULL, NULL, &c), SHMCAST_NULL_POINTER, "producer is NULL");
    EXPECT(shmcast_remove(NULL), SHMCAST_NULL_POINTER, "name is NULL");
    EXPECT(shmcast_producer_send(NULL, "x", 1), SHMCAST_NULL_POINTER, "producer is NULL");
    EXPECT(shmcast_consumer_recv(NULL, NULL), SHMCAST_NULL_POINTER, "consumer is NULL");
    EXPECT(shmcast_producer_close(NULL), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_close(NULL), SHMCAST_OK, NULL);

    p = make_producer(name, 4096, 0);
    c = make_consumer(name, 0);
    uint8_t *slot = (uint8_t *)0x1;
    EXPECT(shmcast_producer_send(p, NULL, 5), SHMCAST_NULL_POINTER, "data is NULL");
    EXPECT(shmcast_producer_try_send(p, NULL, 5), SHMCAST_NULL_POINTER, "data is NULL");
    EXPECT(shmcast_producer_send_timeout(p, NULL, 5, 1000), SHMCAST_NULL_POINTER, "data");
    EXPECT(shmcast_producer_reserve(p, 4, NULL), SHMCAST_NULL_POINTER, "data is NULL");
    EXPECT(shmcast_producer_send_batch(p, NULL, 2), SHMCAST_NULL_POINTER, "msgs is NULL");
    shmcast_slice batch[3] = {{"a", 1}, {NULL, 4}, {"c", 1}};
    EXPECT(shmcast_producer_send_batch(p, batch, 3), SHMCAST_NULL_POINTER, "msgs[1].data");
    EXPECT(shmcast_producer_get_info(p, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    EXPECT(shmcast_producer_get_stats(p, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    shmcast_message m;
    EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_EMPTY, "no message");
    /* Nothing of the refused calls was sent. */
    EXPECT(shmcast_producer_send(p, NULL, 0), SHMCAST_OK, NULL); /* empty message: fine */
    EXPECT(shmcast_producer_send_batch(p, NULL, 0), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv(c, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    uint8_t buf[16];
    shmcast_recv_info info;
    EXPECT(shmcast_consumer_recv_into(c, NULL, 16, &info), SHMCAST_NULL_POINTER, "buf is NULL");
    EXPECT(shmcast_consumer_recv_into(c, buf, 16, NULL), SHMCAST_NULL_POINTER, "info is NULL");
    EXPECT(shmcast_consumer_get_stats(c, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    EXPECT(shmcast_consumer_is_lossy(c, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.len == 0 && m.seq == 0 && m.data != NULL, "the empty message is message 0");
    EXPECT(shmcast_consumer_release(c), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_EMPTY, NULL);
    CHECK(m.data == NULL && m.len == 0, "a failed receive zeroes the view");
    (void)slot;
    shmcast_consumer_close(c);
    shmcast_producer_close(p);
}

static void bad_names_and_options(void) {
    shmcast_producer *p = NULL;
    shmcast_consumer *c = NULL;
    char long_name[260];
    memset(long_name, 'a', 201);
    long_name[201] = '\0';
    const char *bad[] = {"", "a/b", ".hidden", "sp ace", "\xff\xfe", long_name};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        EXPECT(shmcast_producer_create(bad[k], NULL, &p), SHMCAST_INVALID_NAME,
               "invalid segment name");
        EXPECT(shmcast_consumer_open(bad[k], NULL, &c), SHMCAST_INVALID_NAME,
               "invalid segment name");
        EXPECT(shmcast_producer_open(bad[k], NULL, &p), SHMCAST_INVALID_NAME,
               "invalid segment name");
    }
    EXPECT(shmcast_remove("a/b"), SHMCAST_INVALID_NAME, "a/b");
    EXPECT(shmcast_remove(seg("never-created")), SHMCAST_NOT_FOUND, "never-created");

    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 1000;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_CONFIG,
           "invalid ring configuration");
    o = shmcast_producer_options_default();
    o.capacity = 4096;
    o.max_message = 4096;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_CONFIG, "invalid ring");
    o = shmcast_producer_options_default();
    o.max_consumers = 0;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_CONFIG, "invalid ring");
    o = shmcast_producer_options_default();
    o.wait.kind = 9;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_ARGUMENT, "wait.kind 9");
    CHECK(p == NULL, "no handle from a refused create");
    EXPECT(shmcast_consumer_open(seg("cfg"), NULL, &c), SHMCAST_NOT_FOUND, NULL);

    shmcast_consumer_options co = shmcast_consumer_options_default();
    co.start = 5;
    p = make_producer(seg("opts"), 4096, 0);
    EXPECT(shmcast_consumer_open(seg("opts"), &co, &c), SHMCAST_INVALID_ARGUMENT, "start 5");
    co = shmcast_consumer_options_default();
    co.wait.kind = 3;
    EXPECT(shmcast_consumer_open(seg("opts"), &co, &c), SHMCAST_INVALID_ARGUMENT, "wait.kind 3");
    EXPECT(shmcast_consumer_open_fd(-1, NULL, &c), SHMCAST_INVALID_ARGUMENT, "fd -1");
    EXPECT(shmcast_consumer_open_path("", NULL, &c), SHMCAST_INVALID_ARGUMENT, "path is empty");

    /* Exists already; live producer; no such segment. */
    shmcast_producer *p2 = NULL;
    EXPECT(shmcast_producer_create(seg("opts"), NULL, &p2), SHMCAST_ALREADY_EXISTS,
           "already exists");
    EXPECT(shmcast_producer_open(seg("opts"), NULL, &p2), SHMCAST_PRODUCER_ALIVE, "live producer");
    EXPECT(shmcast_consumer_open(seg("missing"), NULL, &c), SHMCAST_NOT_FOUND, "does not exist");
    shmcast_producer_close(p);
}

static void too_large(void) {
    const char *name = seg("large");
    shmcast_producer *p = make_producer(name, 4096, 100);
    shmcast_consumer *c = make_consumer(name, 0);
    shmcast_producer_info info;
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    CHECK(info.capacity == 4096 && info.max_message == 100 && info.fd >= 0, "info");
    uint8_t big[101] = {0};
    EXPECT(shmcast_producer_send(p, big, 101), SHMCAST_TOO_LARGE,
           "message of 101 bytes exceeds the segment's maximum of 100 bytes");
    EXPECT(shmcast_producer_try_send(p, big, 101), SHMCAST_TOO_LARGE, "exceeds");
    EXPECT(shmcast_producer_send_timeout(p, big, 101, 1000000), SHMCAST_TOO_LARGE, "exceeds");
    uint8_t *slot = (uint8_t *)0x1;
    EXPECT(shmcast_producer_reserve(p, 101, &slot), SHMCAST_TOO_LARGE, "exceeds");
    CHECK(slot == NULL, "a refused reservation leaves NULL");
    EXPECT(shmcast_producer_try_reserve(p, 101, &slot), SHMCAST_TOO_LARGE, "exceeds");
    shmcast_slice batch[2] = {{"ok", 2}, {big, 101}};
    EXPECT(shmcast_producer_send_batch(p, batch, 2), SHMCAST_TOO_LARGE, "exceeds");
    EXPECT(shmcast_producer_send(p, big, SIZE_MAX), SHMCAST_INVALID_ARGUMENT, "largest object");
    shmcast_message m;
    EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_EMPTY, NULL); /* nothing was sent */
    EXPECT(shmcast_producer_send(p, big, 100), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.len == 100, "the largest message passes");
    shmcast_consumer_close(c); /* with the message held: released by close */
    shmcast_producer_close(p);
}

static void wrong_state_and_handles(void) {
    const char *name = seg("state");
    shmcast_producer *p = make_producer(name, 4096, 0);
    shmcast_consumer *c = make_consumer(name, 0);
    uint8_t *slot = NULL;
    EXPECT(shmcast_producer_commit(p), SHMCAST_WRONG_STATE, "no reservation to commit");
    EXPECT(shmcast_producer_abort(p), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_reserve(p, 8, &slot), SHMCAST_OK, NULL);
    CHECK(slot != NULL && ((uintptr_t)slot % 8) == 0, "reserved bytes are 8-byte aligned");
    memcpy(slot, "reserved", 8);
    EXPECT(shmcast_producer_send(p, "x", 1), SHMCAST_WRONG_STATE, "reservation is outstanding");
    EXPECT(shmcast_producer_reserve(p, 1, &slot), SHMCAST_WRONG_STATE, "outstanding");
    EXPECT(shmcast_producer_send_batch(p, NULL, 0), SHMCAST_WRONG_STATE, "outstanding");
    shmcast_producer_stats ps;
    EXPECT(shmcast_producer_get_stats(p, &ps), SHMCAST_WRONG_STATE, "outstanding");
    shmcast_producer_info pi;
    EXPECT(shmcast_producer_get_info(p, &pi), SHMCAST_OK, NULL);
    shmcast_consumer *c2 = NULL;
    EXPECT(shmcast_consumer_attach(p, NULL, &c2), SHMCAST_WRONG_STATE, "outstanding");
    EXPECT(shmcast_producer_commit(p), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_commit(p), SHMCAST_WRONG_STATE, "no reservation");
    EXPECT(shmcast_producer_get_stats(p, &ps), SHMCAST_OK, NULL);
    CHECK(ps.messages == 1, "one message committed, got %llu", (unsigned long long)ps.messages);

    shmcast_message m;
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.len == 8 && memcmp(m.data, "reserved", 8) == 0, "zero-copy message arrives");
    CHECK(((uintptr_t)m.data % 8) == 0, "payloads are 8-byte aligned");
    shmcast_message m2;
    EXPECT(shmcast_consumer_recv(c, &m2), SHMCAST_WRONG_STATE, "release first");
    EXPECT(shmcast_consumer_try_recv(c, &m2), SHMCAST_WRONG_STATE, "release first");
    uint8_t buf[16];
    shmcast_recv_info ri;
    EXPECT(shmcast_consumer_recv_into(c, buf, 16, &ri), SHMCAST_WRONG_STATE, "release first");
    shmcast_consumer_stats cs;
    EXPECT(shmcast_consumer_get_stats(c, &cs), SHMCAST_WRONG_STATE, "release it first");
    CHECK(memcmp(m.data, "reserved", 8) == 0, "the view stays valid until released");
    EXPECT(shmcast_consumer_release(c), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_release(c), SHMCAST_OK, NULL); /* idempotent */
    EXPECT(shmcast_consumer_get_stats(c, &cs), SHMCAST_OK, NULL);
    CHECK(cs.messages == 1, "consumer counted one message");

    /* The wrong kind of handle is recognized and left intact. */
    EXPECT(shmcast_producer_send((shmcast_producer *)c, "x", 1), SHMCAST_INVALID_HANDLE,
           "not a live producer handle");
    EXPECT(shmcast_producer_close((shmcast_producer *)c), SHMCAST_INVALID_HANDLE, "producer");
    EXPECT(shmcast_consumer_recv((shmcast_consumer *)p, &m), SHMCAST_INVALID_HANDLE,
           "not a live consumer handle");
    EXPECT(shmcast_consumer_close((shmcast_consumer *)p), SHMCAST_INVALID_HANDLE, "consumer");
    EXPECT(shmcast_producer_send(p, "after", 5), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.len == 5 && memcmp(m.data, "after", 5) == 0, "both handles still work");
    shmcast_consumer_release(c);

    /* Closing with a reservation outstanding aborts it; consumers see the end. */
    EXPECT(shmcast_producer_reserve(p, 4, &slot), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_DISCONNECTED, "closed the stream");
    EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_DISCONNECTED, "closed the stream");
    EXPECT(shmcast_consumer_recv_into(c, buf, 16, &ri), SHMCAST_DISCONNECTED, NULL);
    shmcast_consumer_close(c);
}

static void buffers_empty_full_timeout(void) {
    const char *name = seg("full");
    shmcast_producer *p = make_producer(name, 256, 0);
    shmcast_consumer *c = make_consumer(name, 0);
    shmcast_message m;
    shmcast_recv_info ri;
    uint8_t buf[64];
    EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_EMPTY, "no message is available");
    EXPECT(shmcast_consumer_recv_timeout(c, &m, 1000000), SHMCAST_TIMEOUT,
           "timed out waiting for a message");
    EXPECT(shmcast_consumer_try_recv_into(c, buf, 64, &ri), SHMCAST_EMPTY, NULL);
    EXPECT(shmcast_consumer_recv_into_timeout(c, buf, 64, &ri, 1000000), SHMCAST_TIMEOUT, NULL);

    EXPECT(shmcast_producer_send(p, "hello world", 11), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv_into(c, buf, 4, &ri), SHMCAST_BUFFER_TOO_SMALL,
           "does not fit the buffer of 4 bytes");
    CHECK(ri.len == 11 && ri.seq == 0, "BUFFER_TOO_SMALL reports the size needed");
    EXPECT(shmcast_consumer_recv_into(c, NULL, 0, &ri), SHMCAST_BUFFER_TOO_SMALL, NULL);
    CHECK(ri.len == 11, "a NULL, 0-byte buffer asks the size");
    EXPECT(shmcast_consumer_recv_into(c, buf, sizeof buf, &ri), SHMCAST_OK, NULL);
    CHECK(ri.len == 11 && ri.seq == 0 && memcmp(buf, "hello world", 11) == 0,
          "the kept message arrives whole");
    /* A kept message can also be taken as a view. */
    EXPECT(shmcast_producer_send(p, "second", 6), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv_into(c, buf, 2, &ri), SHMCAST_BUFFER_TOO_SMALL, NULL);
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.len == 6 && m.seq == 1 && memcmp(m.data, "second", 6) == 0, "kept, then viewed");
    shmcast_consumer_release(c);

    /* Fill the ring: the lossless consumer gates the producer. */
    int sent = 0;
    shmcast_status st;
    while ((st = shmcast_producer_try_send(p, "0123456789abcdef", 16)) == SHMCAST_OK) sent++;
    CHECK(st == SHMCAST_FULL, "try_send ends with FULL, got %s", shmcast_status_str(st));
    CHECK(strstr(shmcast_last_error(), "ring is full") != NULL, "FULL message");
    CHECK(sent > 0, "some messages fit");
    EXPECT(shmcast_producer_send_timeout(p, "x", 1, 1000000), SHMCAST_TIMEOUT,
           "timed out waiting for space in the ring");
    uint8_t *slot;
    EXPECT(shmcast_producer_try_reserve(p, 16, &slot), SHMCAST_FULL, "ring is full");
    for (int k = 0; k < sent; k++) {
        EXPECT(shmcast_consumer_try_recv(c, &m), SHMCAST_OK, NULL);
        shmcast_consumer_release(c);
    }
    EXPECT(shmcast_producer_try_send(p, "room again", 10), SHMCAST_OK, NULL);
    shmcast_consumer_close(c);
    shmcast_producer_close(p);
}

static void lossy_lag(void) {
    /* In-process ring: messages sent with send (not reserve) while a lossy consumer reads. */
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 256;
    shmcast_producer *p = NULL;
    EXPECT(shmcast_producer_create_in_process(&o, &p), SHMCAST_OK, NULL);
    shmcast_consumer_options co = shmcast_consumer_options_default();
    co.lossy = 1;
    shmcast_consumer *c = NULL, *c2 = NULL;
    EXPECT(shmcast_consumer_attach(p, &co, &c), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_attach(p, &co, &c2), SHMCAST_OK, NULL);
    int32_t lossy = 0;
    EXPECT(shmcast_consumer_is_lossy(c, &lossy), SHMCAST_OK, NULL);
    CHECK(lossy == 1, "is_lossy");
    uint8_t msg[16];
    for (uint8_t k = 0; k < 100; k++) {
        memset(msg, k, sizeof msg);
        EXPECT(shmcast_producer_try_send(p, msg, sizeof msg), SHMCAST_OK, NULL); /* never FULL */
    }
    uint8_t buf[16];
    shmcast_recv_info ri;
    EXPECT(shmcast_consumer_try_recv_into(c, buf, sizeof buf, &ri), SHMCAST_LAGGED, "lost");
    CHECK(ri.lost > 0 && ri.lost < 100, "LAGGED counts the lost messages: %llu",
          (unsigned long long)ri.lost);
    uint64_t lost = ri.lost;
    EXPECT(shmcast_consumer_try_recv_into(c, buf, sizeof buf, &ri), SHMCAST_OK, NULL);
    CHECK(ri.seq == lost && buf[0] == (uint8_t)lost, "goes on at the oldest message present");
    /* The view calls report the count too. */
    shmcast_message m;
    EXPECT(shmcast_consumer_try_recv(c2, &m), SHMCAST_LAGGED, "lost");
    CHECK(m.lost == lost && m.data == NULL, "view LAGGED count %llu", (unsigned long long)m.lost);
    EXPECT(shmcast_consumer_try_recv(c2, &m), SHMCAST_OK, NULL);
    CHECK(m.seq == lost && m.len == 16 && m.data[0] == (uint8_t)lost, "lossy view is a copy");
    shmcast_consumer_stats cs;
    EXPECT(shmcast_consumer_get_stats(c2, &cs), SHMCAST_OK, NULL); /* lossy: allowed */
    EXPECT(shmcast_consumer_release(c2), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    /* Drain, then the end of the stream. */
    shmcast_status st;
    int n = 0;
    while ((st = shmcast_consumer_try_recv_into(c, buf, sizeof buf, &ri)) == SHMCAST_OK) n++;
    CHECK(st == SHMCAST_DISCONNECTED, "drained, then DISCONNECTED (got %s)",
          shmcast_status_str(st));
    CHECK((uint64_t)n + 1 + lost == 100, "every message read or counted lost (%d)", n);
    shmcast_consumer_close(c);
    shmcast_consumer_close(c2);
}

static void takeover_anonymous_path(void) {
    /* Takeover: the stream continues where the committed data ends. */
    const char *name = seg("takeover");
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 4096;
    o.remove_on_close = 0;
    shmcast_producer *p = NULL;
    EXPECT(shmcast_producer_create(name, &o, &p), SHMCAST_OK, NULL);
    for (int k = 0; k < 3; k++) EXPECT(shmcast_producer_send(p, "old", 3), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    shmcast_consumer *c = NULL;
    EXPECT(shmcast_consumer_open(name, NULL, &c), SHMCAST_OK, NULL); /* name still there */
    EXPECT(shmcast_producer_open(name, NULL, &p), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_send(p, "new", 3), SHMCAST_OK, NULL);
    shmcast_message m;
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.seq == 3 && m.len == 3 && memcmp(m.data, "new", 3) == 0, "seq continues: %llu",
          (unsigned long long)m.seq);
    shmcast_consumer_release(c);
    shmcast_consumer_close(c);
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL); /* removes the name */
    EXPECT(shmcast_consumer_open(name, NULL, &c), SHMCAST_NOT_FOUND, NULL);

    /* Anonymous memfd segment, opened through its descriptor. */
    EXPECT(shmcast_producer_create_anonymous(NULL, &p), SHMCAST_OK, NULL);
    shmcast_producer_info info;
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    CHECK(info.fd >= 0, "anonymous segments have a descriptor");
    EXPECT(shmcast_consumer_open_fd(info.fd, NULL, &c), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_send(p, "fd", 2), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    CHECK(m.len == 2 && memcmp(m.data, "fd", 2) == 0, "memfd round trip");
    shmcast_consumer_close(c);
    shmcast_producer_close(p);

    /* A file path. */
    char path[256];
    snprintf(path, sizeof path, "/tmp/%s-path", prefix);
    unlink(path);
    EXPECT(shmcast_producer_create_path(path, NULL, &p), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_open_path(path, NULL, &c), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_send(p, "path", 4), SHMCAST_OK, NULL);
    shmcast_recv_info ri;
    uint8_t buf[8];
    EXPECT(shmcast_consumer_recv_into(c, buf, sizeof buf, &ri), SHMCAST_OK, NULL);
    CHECK(ri.len == 4 && memcmp(buf, "path", 4) == 0, "path round trip");
    shmcast_consumer_close(c);
    shmcast_producer_close(p);
    CHECK(access(path, F_OK) != 0, "closing removes the file");
    EXPECT(shmcast_consumer_open_path(path, NULL, &c), SHMCAST_NOT_FOUND, NULL);
}

static void *fail_on_other_thread(void *arg) {
    shmcast_producer *p = NULL;
    shmcast_status st = shmcast_producer_create("a/b", NULL, &p);
    *(int *)arg = st == SHMCAST_INVALID_NAME &&
                  strstr(shmcast_last_error(), "invalid segment name \"a/b\"") != NULL;
    return NULL;
}

static void last_error_is_per_thread(void) {
    shmcast_consumer *c = NULL;
    EXPECT(shmcast_consumer_open(seg("absent"), NULL, &c), SHMCAST_NOT_FOUND, "absent");
    char before[512];
    snprintf(before, sizeof before, "%s", shmcast_last_error());
    int ok = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_on_other_thread, &ok) == 0, "thread");
    pthread_join(t, NULL);
    CHECK(ok, "the other thread saw its own error");
    CHECK(strcmp(before, shmcast_last_error()) == 0, "this thread's error is unchanged");
    shmcast_producer *p = NULL;
    EXPECT(shmcast_producer_create_in_process(NULL, &p), SHMCAST_OK, NULL);
    CHECK(strcmp(before, shmcast_last_error()) == 0, "a success leaves the last error");
    shmcast_producer_close(p);
}

int main(int argc, char **argv) {
    if (argc != 2 || strlen(argv[1]) > 100) {
        fprintf(stderr, "usage: %s SEGMENT-NAME-PREFIX\n", argv[0]);
        return 2;
    }
    snprintf(prefix, sizeof prefix, "%s", argv[1]);
    statuses();
    null_pointers();
    bad_names_and_options();
    too_large();
    wrong_state_and_handles();
    buffers_empty_full_timeout();
    lossy_lag();
    takeover_anonymous_path();
    last_error_is_per_thread();
    printf("errors: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
