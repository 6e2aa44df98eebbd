/*
 * Error paths of the C interface, from C: every NULL pointer, bad names and options,
 * too-large messages, calls out of order, the wrong kind of handle, buffers too small, the
 * end-of-stream and producer-takeover outcomes, open_or_create, inspection and removal,
 * and, in forked child processes killed with SIGKILL, a dead consumer, a dead producer,
 * consumers waited for, and a producer restarted again and again without losing or
 * repeating a message. Each check names what it expects; the program prints every failed
 * check and ends with "errors: N passed, M failed", exiting 1
 * if any failed. Run by tests/c_interop.rs (linked statically) with a segment-name prefix
 * as its only argument; every segment it creates starts with that prefix.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
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
    /* Every code has its own text (EXHAUSTED, FORKED were once "unknown status"). */
    shmcast_status codes[] = {SHMCAST_EXHAUSTED, SHMCAST_FORKED, SHMCAST_OPTION_MISMATCH,
                              SHMCAST_OTHER, SHMCAST_PANIC};
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++)
        CHECK(strcmp(shmcast_status_str(codes[k]), "unknown status") != 0, "text of %d",
              (int)codes[k]);
    CHECK(strstr(shmcast_status_str(SHMCAST_OPTION_MISMATCH), "created with") != NULL,
          "OPTION_MISMATCH text");
    CHECK(strcmp(shmcast_producer_state_str(SHMCAST_PRODUCER_STATE_DIED), "died") == 0, "died");
    CHECK(strcmp(shmcast_producer_state_str(77), "unknown") == 0, "unknown state");
    CHECK(strcmp(shmcast_slot_kind_str(SHMCAST_SLOT_LOSSY), "lossy") == 0, "lossy");
    CHECK(strcmp(shmcast_slot_kind_str(0), "unknown") == 0, "unknown kind");
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
    EXPECT(shmcast_remove_path(NULL), SHMCAST_NULL_POINTER, "path is NULL");
    EXPECT(shmcast_force_remove(NULL), SHMCAST_NULL_POINTER, "name is NULL");
    int32_t created = 7;
    p = (shmcast_producer *)0x1;
    EXPECT(shmcast_producer_open_or_create(NULL, NULL, &p, &created), SHMCAST_NULL_POINTER,
           "name is NULL");
    CHECK(p == NULL && created == 0, "a failed open_or_create clears *out and *created");
    EXPECT(shmcast_producer_open_or_create(name, NULL, NULL, &created), SHMCAST_NULL_POINTER,
           "out is NULL");
    shmcast_segment_info si;
    shmcast_slot_info slots[2];
    size_t count = 99;
    EXPECT(shmcast_inspect(NULL, &si, slots, 2, &count), SHMCAST_NULL_POINTER, "name is NULL");
    CHECK(count == 0, "a failed inspect clears *count");
    EXPECT(shmcast_inspect(name, NULL, slots, 2, &count), SHMCAST_NULL_POINTER, "info is NULL");
    EXPECT(shmcast_inspect(name, &si, slots, 2, NULL), SHMCAST_NULL_POINTER, "count is NULL");
    EXPECT(shmcast_inspect(name, &si, NULL, 2, &count), SHMCAST_NULL_POINTER,
           "slots is NULL but cap is 2");
    EXPECT(shmcast_inspect(name, &si, NULL, SIZE_MAX, &count), SHMCAST_NULL_POINTER, "slots");
    EXPECT(shmcast_inspect(name, &si, slots, SIZE_MAX, &count), SHMCAST_INVALID_ARGUMENT,
           "largest array");
    EXPECT(shmcast_inspect(name, &si, NULL, 0, &count), SHMCAST_NOT_FOUND, "does not exist");
    EXPECT(shmcast_inspect_path(NULL, &si, slots, 2, &count), SHMCAST_NULL_POINTER, "path");
    EXPECT(shmcast_inspect_fd(-1, &si, slots, 2, &count), SHMCAST_INVALID_ARGUMENT, "fd -1");
    EXPECT(shmcast_inspect_fd(0, NULL, slots, 2, &count), SHMCAST_NULL_POINTER, "info is NULL");
    EXPECT(shmcast_producer_snapshot(NULL, &si, slots, 2, &count), SHMCAST_NULL_POINTER,
           "producer is NULL");
    EXPECT(shmcast_producer_next_seq(NULL, NULL), SHMCAST_NULL_POINTER, "producer is NULL");
    EXPECT(shmcast_producer_consumers(NULL, NULL), SHMCAST_NULL_POINTER, "producer is NULL");
    EXPECT(shmcast_producer_wait_for_consumers(NULL, 1, 0, NULL), SHMCAST_NULL_POINTER,
           "producer is NULL");
    EXPECT(shmcast_consumer_lag(NULL, NULL), SHMCAST_NULL_POINTER, "consumer is NULL");
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
    EXPECT(shmcast_producer_next_seq(p, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    EXPECT(shmcast_producer_consumers(p, NULL), SHMCAST_NULL_POINTER, "out is NULL");
    EXPECT(shmcast_producer_snapshot(p, NULL, slots, 2, &count), SHMCAST_NULL_POINTER, "info");
    EXPECT(shmcast_producer_snapshot(p, &si, NULL, 1, &count), SHMCAST_NULL_POINTER, "slots");
    EXPECT(shmcast_producer_snapshot(p, &si, slots, 2, NULL), SHMCAST_NULL_POINTER, "count");
    EXPECT(shmcast_consumer_lag(c, NULL), SHMCAST_NULL_POINTER, "out is NULL");
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
        EXPECT(shmcast_producer_open_or_create(bad[k], NULL, &p, NULL), SHMCAST_INVALID_NAME,
               "invalid segment name");
        shmcast_segment_info si;
        size_t count;
        EXPECT(shmcast_inspect(bad[k], &si, NULL, 0, &count), SHMCAST_INVALID_NAME,
               "invalid segment name");
        EXPECT(shmcast_force_remove(bad[k]), SHMCAST_INVALID_NAME, "invalid segment name");
    }
    EXPECT(shmcast_remove("a/b"), SHMCAST_INVALID_NAME, "a/b");
    EXPECT(shmcast_remove(seg("never-created")), SHMCAST_NOT_FOUND, "never-created");
    EXPECT(shmcast_force_remove(seg("never-created")), SHMCAST_NOT_FOUND, "does not exist");
    EXPECT(shmcast_remove_path("/tmp/shmcast-no-such-segment-file"), SHMCAST_NOT_FOUND,
           "does not exist");

    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 1000;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_CONFIG,
           "invalid ring configuration");
    o = shmcast_producer_options_default();
    o.capacity = 4096;
    o.max_message = 4096;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_CONFIG, "invalid ring");
    o = shmcast_producer_options_default();
    o.max_consumers = 4097;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_CONFIG, "invalid ring");
    o = shmcast_producer_options_default();
    o.wait.kind = 9;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_ARGUMENT, "wait.kind 9");
    CHECK(p == NULL, "no handle from a refused create");
    o = shmcast_producer_options_default();
    o.mode = 04600;
    EXPECT(shmcast_producer_create(seg("cfg"), &o, &p), SHMCAST_INVALID_ARGUMENT,
           "beyond the permission bits");
    EXPECT(shmcast_producer_open_or_create(seg("cfg"), &o, &p, NULL), SHMCAST_INVALID_ARGUMENT,
           "beyond the permission bits");
    o = shmcast_producer_options_default();
    o.capacity = 1000;
    int32_t created = 7;
    EXPECT(shmcast_producer_open_or_create(seg("cfg"), &o, &p, &created), SHMCAST_INVALID_CONFIG,
           "invalid ring configuration");
    CHECK(p == NULL && created == 0, "no handle from a refused open_or_create");
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

/* The first open_or_create creates, a second one while the producer lives is refused, one
 * after it closed (remove_on_close 0) takes over and continues the stream; set geometry
 * options are checked against the segment, unset (0) ones accept it. */
static void open_or_create(void) {
    const char *name = seg("ooc");
    shmcast_producer_options o = shmcast_producer_options_default();
    CHECK(o.capacity == 0 && o.max_message == 0 && o.max_consumers == 0 && o.mode == 0,
          "default geometry is unset");
    o.capacity = 4096;
    o.max_consumers = 4;
    o.remove_on_close = 0;
    shmcast_producer *p = NULL, *p2 = (shmcast_producer *)0x1;
    int32_t created = -1;
    EXPECT(shmcast_producer_open_or_create(name, &o, &p, &created), SHMCAST_OK, NULL);
    CHECK(created == 1, "the first open_or_create creates (created=%d)", (int)created);
    shmcast_producer_info info;
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    CHECK(info.capacity == 4096 && info.took_over == 0, "created with the options");
    uint64_t seq = 99;
    EXPECT(shmcast_producer_next_seq(p, &seq), SHMCAST_OK, NULL);
    CHECK(seq == 0, "a new stream starts at 0");
    for (int k = 0; k < 3; k++) EXPECT(shmcast_producer_send(p, "old", 3), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_next_seq(p, &seq), SHMCAST_OK, NULL);
    CHECK(seq == 3, "next_seq after 3 sends: %llu", (unsigned long long)seq);

    /* Never a second producer. */
    created = -1;
    EXPECT(shmcast_producer_open_or_create(name, &o, &p2, &created), SHMCAST_PRODUCER_ALIVE,
           "already has a live producer");
    CHECK(p2 == NULL && created == 0, "refused: *out NULL, *created 0");
    EXPECT(shmcast_producer_open(name, NULL, &p2), SHMCAST_PRODUCER_ALIVE, "live producer");
    EXPECT(shmcast_remove(name), SHMCAST_PRODUCER_ALIVE, "has a live producer");
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL); /* the segment stays */

    shmcast_segment_info si;
    size_t count = 9;
    EXPECT(shmcast_inspect(name, &si, NULL, 0, &count), SHMCAST_OK, NULL);
    CHECK(si.producer_state == SHMCAST_PRODUCER_STATE_CLOSED && si.next_seq == 3 &&
              si.epoch == 1 && count == 0,
          "closed segment: state %s next_seq %llu epoch %u count %zu",
          shmcast_producer_state_str(si.producer_state), (unsigned long long)si.next_seq,
          si.epoch, count);

    /* A set option that differs from the segment is refused, naming both values. */
    shmcast_producer_options bad = o;
    bad.capacity = 8192;
    EXPECT(shmcast_producer_open_or_create(name, &bad, &p, NULL), SHMCAST_OPTION_MISMATCH,
           "created with capacity 4096, not the 8192");
    bad = o;
    bad.max_consumers = 3;
    EXPECT(shmcast_producer_open_or_create(name, &bad, &p, NULL), SHMCAST_OPTION_MISMATCH,
           "max_consumers 4, not the 3");
    bad = o;
    bad.mode = 0640;
    EXPECT(shmcast_producer_open_or_create(name, &bad, &p, NULL), SHMCAST_OPTION_MISMATCH,
           "mode");
    bad = o;
    bad.max_message = 100;
    EXPECT(shmcast_producer_open(name, &bad, &p), SHMCAST_OPTION_MISMATCH, "max_message");
    CHECK(p == NULL, "no handle from a mismatch");

    /* Unset options accept the segment's geometry; matching set ones too. */
    shmcast_consumer_options co = shmcast_consumer_options_default();
    co.start = SHMCAST_START_OLDEST;
    shmcast_consumer *c = NULL;
    EXPECT(shmcast_consumer_open(name, &co, &c), SHMCAST_OK, NULL);
    shmcast_producer_options unset = shmcast_producer_options_default();
    unset.remove_on_close = 0;
    created = -1;
    EXPECT(shmcast_producer_open_or_create(name, &unset, &p, &created), SHMCAST_OK, NULL);
    CHECK(created == 0, "took over (created=%d)", (int)created);
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    CHECK(info.capacity == 4096 && info.took_over == 1, "the segment's geometry, taken over");
    EXPECT(shmcast_producer_next_seq(p, &seq), SHMCAST_OK, NULL);
    CHECK(seq == 3, "next_seq continues: %llu", (unsigned long long)seq);
    EXPECT(shmcast_producer_send(p, "new", 3), SHMCAST_OK, NULL);
    shmcast_message m;
    for (uint64_t k = 0; k < 4; k++) {
        EXPECT(shmcast_consumer_recv_timeout(c, &m, 10000000000u), SHMCAST_OK, NULL);
        CHECK(m.seq == k && m.len == 3 && memcmp(m.data, k < 3 ? "old" : "new", 3) == 0,
              "message %llu of the continued stream", (unsigned long long)k);
        shmcast_consumer_release(c);
    }
    EXPECT(shmcast_producer_snapshot(p, &si, NULL, 0, &count), SHMCAST_BUFFER_TOO_SMALL,
           "consumer slots in use: 1, but the array holds 0");
    CHECK(si.epoch == 2 && si.producer_state == SHMCAST_PRODUCER_STATE_LIVE && count == 1,
          "a takeover is epoch 2 (%u), live (%s)", si.epoch,
          shmcast_producer_state_str(si.producer_state));
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_open(name, &o, &p), SHMCAST_OK, NULL); /* matching: accepted */
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL); /* open's remove_on_close: 0 */
    shmcast_consumer_close(c);

    /* NULL options and a NULL `created` are fine; remove, then remove again. */
    EXPECT(shmcast_producer_open_or_create(name, NULL, &p, NULL), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    CHECK(info.took_over == 1 && info.capacity == 4096, "NULL options take over as is");
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL); /* NULL opts: removes the name */
    EXPECT(shmcast_remove(name), SHMCAST_NOT_FOUND, NULL);
    EXPECT(shmcast_producer_open_or_create(name, NULL, &p, &created), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    CHECK(created == 1 && info.capacity == 1u << 20, "unset options create with the defaults");
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
}

static const shmcast_slot_info *slot_of_kind(const shmcast_slot_info *s, size_t n,
                                             uint32_t kind) {
    for (size_t k = 0; k < n; k++)
        if (s[k].kind == kind) return &s[k];
    return NULL;
}

static void inspection(void) {
    const char *name = seg("inspect");
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 4096;
    o.max_consumers = 4;
    shmcast_producer *p = NULL;
    EXPECT(shmcast_producer_create(name, &o, &p), SHMCAST_OK, NULL);
    shmcast_consumer *c = make_consumer(name, 0), *lossy = make_consumer(name, 1);
    EXPECT(shmcast_producer_send(p, "one", 3), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_send(p, "two", 3), SHMCAST_OK, NULL);

    shmcast_segment_info si;
    shmcast_slot_info slots[4];
    size_t count = 0;
    EXPECT(shmcast_inspect(name, &si, NULL, 0, &count), SHMCAST_BUFFER_TOO_SMALL,
           "pass an array of info.max_consumers (4) entries");
    CHECK(count == 2 && si.capacity == 4096 && si.max_consumers == 4,
          "too small an array still gets the info and the count");
    memset(slots, 0xff, sizeof slots);
    EXPECT(shmcast_inspect(name, &si, slots, 1, &count), SHMCAST_BUFFER_TOO_SMALL, NULL);
    CHECK(count == 2 && slots[0].index == 0 && slots[1].index == 0xffffffffu,
          "the first cap slots are written, no more");
    EXPECT(shmcast_inspect(name, &si, slots, si.max_consumers, &count), SHMCAST_OK, NULL);
    CHECK(count == 2, "two consumers: %zu", count);
    CHECK(si.producer_state == SHMCAST_PRODUCER_STATE_LIVE &&
              si.producer_pid == (uint32_t)getpid() && si.next_seq == 2 && si.epoch == 1 &&
              si.evicting == 0 && si.tail > 0 && si.claim >= si.tail,
          "producer: state %s pid %u next_seq %llu", shmcast_producer_state_str(si.producer_state),
          si.producer_pid, (unsigned long long)si.next_seq);
    CHECK(si.max_message == 4096 / 4 - 24 && si.segment_size > 4096, "geometry");
    CHECK(si.has_mode && si.mode == 0600 && si.has_owner_uid && si.owner_uid == geteuid(),
          "mode %o, owner %u", si.mode, si.owner_uid);
    const shmcast_slot_info *ls = slot_of_kind(slots, count, SHMCAST_SLOT_LOSSLESS);
    const shmcast_slot_info *ly = slot_of_kind(slots, count, SHMCAST_SLOT_LOSSY);
    CHECK(ls && ly, "one lossless and one lossy slot");
    if (ls && ly) {
        CHECK(ls->alive && ls->pid == (uint32_t)getpid() && ls->has_lag_messages &&
                  ls->lag_messages == 2 && ls->lag_bytes > 0 && !ls->gating &&
                  ls->raw_kind == 0 && ls->index < 4,
              "lossless slot: alive %u lag %llu/%llu", ls->alive,
              (unsigned long long)ls->lag_messages, (unsigned long long)ls->lag_bytes);
        CHECK(ly->alive && ly->has_lag_messages && ly->lag_messages == 2 && !ly->gating,
              "lossy slot");
    }

    /* Lag from the consumers themselves. */
    shmcast_lag lag;
    EXPECT(shmcast_consumer_lag(c, &lag), SHMCAST_OK, NULL);
    CHECK(lag.has_messages && lag.messages == 2 && ls && lag.bytes == ls->lag_bytes,
          "lossless lag %llu messages, %llu bytes", (unsigned long long)lag.messages,
          (unsigned long long)lag.bytes);
    shmcast_message m;
    EXPECT(shmcast_consumer_recv(c, &m), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_lag(c, &lag), SHMCAST_WRONG_STATE, "release it first");
    CHECK(lag.bytes == 0 && lag.has_messages == 0, "a refused lag is zeroed");
    EXPECT(shmcast_consumer_release(c), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_lag(c, &lag), SHMCAST_OK, NULL);
    CHECK(lag.has_messages && lag.messages == 1, "one left: %llu",
          (unsigned long long)lag.messages);
    EXPECT(shmcast_consumer_recv(lossy, &m), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_lag(lossy, &lag), SHMCAST_OK, NULL); /* holding a copy: fine */
    CHECK(lag.has_messages && lag.messages == 1, "lossy lag");
    shmcast_consumer_release(lossy);

    /* Counting and waiting for consumers. */
    size_t n = 0;
    EXPECT(shmcast_producer_consumers(p, &n), SHMCAST_OK, NULL);
    CHECK(n == 2, "two consumers attached: %zu", n);
    EXPECT(shmcast_producer_wait_for_consumers(p, 2, 1000000000u, &n), SHMCAST_OK, NULL);
    CHECK(n == 2, "wait_for_consumers returns the count");
    EXPECT(shmcast_producer_wait_for_consumers(p, 3, 1000000u, &n), SHMCAST_TIMEOUT,
           "timed out with 2 of the 3 awaited consumers attached");
    CHECK(n == 2, "the count at the deadline");
    EXPECT(shmcast_producer_wait_for_consumers(p, 0, 0, NULL), SHMCAST_OK, NULL);

    /* The producer's own snapshot; refused while a reservation is outstanding. */
    EXPECT(shmcast_producer_snapshot(p, &si, slots, 4, &count), SHMCAST_OK, NULL);
    CHECK(count == 2 && si.producer_state == SHMCAST_PRODUCER_STATE_LIVE && si.next_seq == 2,
          "own snapshot: %zu slots, %s", count, shmcast_producer_state_str(si.producer_state));
    uint8_t *slot;
    uint64_t seq;
    EXPECT(shmcast_producer_reserve(p, 8, &slot), SHMCAST_OK, NULL);
    EXPECT(shmcast_producer_snapshot(p, &si, slots, 4, &count), SHMCAST_WRONG_STATE,
           "outstanding");
    EXPECT(shmcast_producer_next_seq(p, &seq), SHMCAST_WRONG_STATE, "outstanding");
    EXPECT(shmcast_producer_consumers(p, &n), SHMCAST_WRONG_STATE, "outstanding");
    EXPECT(shmcast_producer_wait_for_consumers(p, 1, 0, &n), SHMCAST_WRONG_STATE, "outstanding");
    EXPECT(shmcast_producer_abort(p), SHMCAST_OK, NULL);

    /* Fill the ring: the lossless consumer gates the producer, the lossy one never does. */
    while (shmcast_producer_try_send(p, "0123456789abcdef", 16) == SHMCAST_OK) {
    }
    EXPECT(shmcast_inspect(name, &si, slots, 4, &count), SHMCAST_OK, NULL);
    ls = slot_of_kind(slots, count, SHMCAST_SLOT_LOSSLESS);
    ly = slot_of_kind(slots, count, SHMCAST_SLOT_LOSSY);
    CHECK(ls && ls->gating && ly && !ly->gating, "the lossless consumer gates");
    shmcast_consumer_close(c);
    EXPECT(shmcast_inspect(name, &si, slots, 4, &count), SHMCAST_OK, NULL);
    CHECK(count == 1 && slots[0].kind == SHMCAST_SLOT_LOSSY, "a closed consumer frees its slot");
    shmcast_consumer_close(lossy);

    /* remove refuses a live producer; force_remove does not. */
    EXPECT(shmcast_remove(name), SHMCAST_PRODUCER_ALIVE, "force_remove");
    EXPECT(shmcast_force_remove(name), SHMCAST_OK, NULL);
    EXPECT(shmcast_inspect(name, &si, slots, 4, &count), SHMCAST_NOT_FOUND, NULL);
    EXPECT(shmcast_producer_send(p, "unseen", 6), SHMCAST_OK, NULL); /* still mapped */
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);

    /* A named object that is not a segment: inspect and remove refuse, force_remove not. */
    const char *junk = seg("junk");
    char shm_name[220];
    snprintf(shm_name, sizeof shm_name, "/%s", junk);
    int fd = shm_open(shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0, "shm_open %s", shm_name);
    if (fd >= 0) {
        /* Large enough for a header, with a foreign first word: refused at once (a short or
         * all-zero object could be a segment still being created, which open_or_create
         * waits for). */
        CHECK(ftruncate(fd, 65536) == 0, "ftruncate junk");
        CHECK(write(fd, "not a segment, just some bytes", 30) == 30, "write junk");
        close(fd);
        EXPECT(shmcast_inspect(junk, &si, slots, 4, &count), SHMCAST_BAD_SEGMENT, NULL);
        EXPECT(shmcast_producer_open_or_create(junk, NULL, &p, NULL), SHMCAST_BAD_SEGMENT, NULL);
        EXPECT(shmcast_remove(junk), SHMCAST_BAD_SEGMENT, "shmcast::force_remove");
        EXPECT(shmcast_force_remove(junk), SHMCAST_OK, NULL);
        EXPECT(shmcast_force_remove(junk), SHMCAST_NOT_FOUND, "does not exist");
    }

    /* Anonymous segments by descriptor; segments in files by path. */
    EXPECT(shmcast_producer_create_anonymous(&o, &p), SHMCAST_OK, NULL);
    shmcast_producer_info info;
    EXPECT(shmcast_producer_get_info(p, &info), SHMCAST_OK, NULL);
    c = NULL;
    EXPECT(shmcast_consumer_open_fd(info.fd, NULL, &c), SHMCAST_OK, NULL);
    EXPECT(shmcast_inspect_fd(info.fd, &si, slots, 4, &count), SHMCAST_OK, NULL);
    CHECK(si.capacity == 4096 && count == 1 && slots[0].alive &&
              si.producer_state == SHMCAST_PRODUCER_STATE_LIVE,
          "anonymous segment by descriptor");
    shmcast_consumer_close(c);
    shmcast_producer_close(p);

    char path[256];
    snprintf(path, sizeof path, "/tmp/%s-path", prefix);
    unlink(path);
    o.remove_on_close = 0;
    EXPECT(shmcast_producer_create_path(path, &o, &p), SHMCAST_OK, NULL);
    EXPECT(shmcast_inspect_path(path, &si, slots, 4, &count), SHMCAST_OK, NULL);
    CHECK(si.capacity == 4096 && count == 0 && si.has_mode && si.mode == 0600, "by path");
    EXPECT(shmcast_remove_path(path), SHMCAST_PRODUCER_ALIVE, "live producer");
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    CHECK(access(path, F_OK) == 0, "remove_on_close 0 keeps the file");
    EXPECT(shmcast_remove_path(path), SHMCAST_OK, NULL);
    CHECK(access(path, F_OK) != 0, "remove_path removed it");
}

/* Fork a child that runs `body` and then reports 'R' (ready) or 'E' on the pipe and waits to
 * be killed. Returns its pid; *ready says whether it reported 'R'. */
static pid_t spawn_child(int (*body)(const char *), const char *name, int *ready) {
    int fds[2];
    *ready = 0;
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        char r = body(name) == 0 ? 'R' : 'E';
        if (write(fds[1], &r, 1) != 1) _exit(3);
        for (;;) pause(); /* until SIGKILL: no close, no cleanup */
    }
    close(fds[1]);
    char r = 0;
    if (pid > 0 && read(fds[0], &r, 1) == 1) *ready = r == 'R';
    close(fds[0]);
    return pid;
}

static void kill_child(pid_t pid) {
    int status = 0;
    CHECK(kill(pid, SIGKILL) == 0, "kill child %d", (int)pid);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status), "child %d killed", (int)pid);
}

static int child_consumer(const char *name) {
    shmcast_consumer *c = NULL;
    return shmcast_consumer_open(name, NULL, &c) == SHMCAST_OK ? 0 : 1;
}

static int child_producer(const char *name) {
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 4096;
    o.remove_on_close = 0;
    shmcast_producer *p = NULL;
    int32_t created = 0;
    if (shmcast_producer_open_or_create(name, &o, &p, &created) != SHMCAST_OK || !created)
        return 1;
    for (int k = 0; k < 5; k++)
        if (shmcast_producer_send(p, "before", 6) != SHMCAST_OK) return 1;
    return 0;
}

/* Real processes: a consumer killed with SIGKILL shows dead and stops gating; a producer
 * killed with SIGKILL shows died, consumers drain then get PRODUCER_DIED, and
 * open_or_create takes over (refused while it lived), continuing the sequence. */
static void killed_processes(void) {
    const char *name = seg("killed-consumer");
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 4096;
    shmcast_producer *p = NULL;
    EXPECT(shmcast_producer_create(name, &o, &p), SHMCAST_OK, NULL);
    int ready;
    pid_t child = spawn_child(child_consumer, name, &ready);
    CHECK(child > 0 && ready, "consumer child attached");
    if (child <= 0) return;
    shmcast_segment_info si;
    shmcast_slot_info slots[16];
    size_t count = 0, n = 0;
    EXPECT(shmcast_inspect(name, &si, slots, 16, &count), SHMCAST_OK, NULL);
    CHECK(count == 1 && slots[0].alive && slots[0].pid == (uint32_t)child,
          "the child's slot is alive (count %zu, pid %u)", count, slots[0].pid);
    EXPECT(shmcast_producer_wait_for_consumers(p, 1, 60000000000u, &n), SHMCAST_OK, NULL);
    kill_child(child);
    EXPECT(shmcast_inspect(name, &si, slots, 16, &count), SHMCAST_OK, NULL);
    CHECK(count == 1 && !slots[0].alive && slots[0].kind == SHMCAST_SLOT_LOSSLESS,
          "a SIGKILLed consumer's slot shows dead (count %zu, alive %u)", count, slots[0].alive);
    EXPECT(shmcast_producer_consumers(p, &n), SHMCAST_OK, NULL);
    CHECK(n == 0, "a dead consumer is not counted: %zu", n);
    /* It does not gate the producer: the ring laps it many times (hang guard 60 s each). */
    shmcast_status st = SHMCAST_OK;
    int sent = 0;
    for (; sent < 1000 && st == SHMCAST_OK; sent++)
        st = shmcast_producer_send_timeout(p, "0123456789abcdef", 16, 60000000000u);
    CHECK(st == SHMCAST_OK, "send %d past a dead consumer: %s", sent, shmcast_status_str(st));
    shmcast_producer_close(p);

    name = seg("killed-producer");
    child = spawn_child(child_producer, name, &ready);
    CHECK(child > 0 && ready, "producer child sent its messages");
    if (child <= 0) return;
    shmcast_consumer_options co = shmcast_consumer_options_default();
    co.start = SHMCAST_START_OLDEST;
    shmcast_consumer *c = NULL;
    EXPECT(shmcast_consumer_open(name, &co, &c), SHMCAST_OK, NULL);
    int32_t created = -1;
    EXPECT(shmcast_producer_open_or_create(name, NULL, &p, &created), SHMCAST_PRODUCER_ALIVE,
           "live producer");
    EXPECT(shmcast_remove(name), SHMCAST_PRODUCER_ALIVE, "pid");
    EXPECT(shmcast_inspect(name, &si, slots, 16, &count), SHMCAST_OK, NULL);
    CHECK(si.producer_state == SHMCAST_PRODUCER_STATE_LIVE && si.producer_pid == (uint32_t)child,
          "the child is the live producer (%s)", shmcast_producer_state_str(si.producer_state));
    kill_child(child);
    EXPECT(shmcast_inspect(name, &si, slots, 16, &count), SHMCAST_OK, NULL);
    CHECK(si.producer_state == SHMCAST_PRODUCER_STATE_DIED && si.next_seq == 5,
          "a SIGKILLed producer shows died (%s, next_seq %llu)",
          shmcast_producer_state_str(si.producer_state), (unsigned long long)si.next_seq);
    shmcast_message m;
    for (uint64_t k = 0; k < 5; k++) {
        EXPECT(shmcast_consumer_recv_timeout(c, &m, 60000000000u), SHMCAST_OK, NULL);
        CHECK(m.seq == k && m.len == 6, "drained message %llu", (unsigned long long)k);
        shmcast_consumer_release(c);
    }
    EXPECT(shmcast_consumer_recv_timeout(c, &m, 60000000000u), SHMCAST_PRODUCER_DIED,
           "died without closing");
    shmcast_producer_options unset = shmcast_producer_options_default();
    unset.remove_on_close = 1; /* this one removes the name when it closes */
    EXPECT(shmcast_producer_open_or_create(name, &unset, &p, &created), SHMCAST_OK, NULL);
    CHECK(created == 0, "the dead producer's segment is taken over");
    uint64_t seq = 0;
    EXPECT(shmcast_producer_next_seq(p, &seq), SHMCAST_OK, NULL);
    CHECK(seq == 5, "next_seq continues after the dead producer's: %llu",
          (unsigned long long)seq);
    EXPECT(shmcast_producer_send(p, "after", 5), SHMCAST_OK, NULL);
    EXPECT(shmcast_consumer_recv_timeout(c, &m, 60000000000u), SHMCAST_OK, NULL);
    CHECK(m.seq == 5 && m.len == 5 && memcmp(m.data, "after", 5) == 0,
          "the consumer goes on with the new producer: seq %llu", (unsigned long long)m.seq);
    shmcast_consumer_release(c);
    EXPECT(shmcast_inspect(name, &si, slots, 16, &count), SHMCAST_OK, NULL);
    CHECK(si.epoch == 2 && si.producer_pid == (uint32_t)getpid(), "epoch %u", si.epoch);
    shmcast_consumer_close(c);
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    EXPECT(shmcast_remove(name), SHMCAST_NOT_FOUND, NULL); /* removed on close */
}

/* A hang guard for waits on child processes, never a timing assertion. */
#define HANG_GUARD_MS 120000
#define HANG_GUARD_NS 120000000000u

/* What a child process reports on its pipe. */
typedef struct {
    char what;
    uint64_t value;
} report;

static void send_report(int fd, char what, uint64_t value) {
    report r;
    memset(&r, 0, sizeof r);
    r.what = what;
    r.value = value;
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
}

/* The next report from `fd`; 0 on success, -1 if the child closed the pipe (it died) or said
 * nothing within the hang guard. */
static int read_report(int fd, report *r) {
    size_t got = 0;
    memset(r, 0, sizeof *r);
    while (got < sizeof *r) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, HANG_GUARD_MS) <= 0) return -1;
        ssize_t k = read(fd, (char *)r + got, sizeof *r - got);
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

/* Fork a child that runs `body(name, arg, out)` with `out` the write end of a pipe; returns
 * its pid and the read end in *in. */
static pid_t fork_reporting(void (*body)(const char *, int, int), const char *name, int arg,
                            int *in) {
    int fds[2];
    *in = -1;
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        body(name, arg, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    *in = fds[0];
    return pid;
}

/* The read end of the pipe that gates gated_consumer (inherited through fork). */
static int gate_fd = -1;

/* A consumer (lossy if `lossy`) that attaches once it read a byte from gate_fd, reports 'A'
 * (or 'E'), and waits to be killed. */
static void gated_consumer(const char *name, int lossy, int out) {
    char go;
    struct pollfd pfd = {.fd = gate_fd, .events = POLLIN};
    if (poll(&pfd, 1, HANG_GUARD_MS) <= 0 || read(gate_fd, &go, 1) != 1) _exit(2);
    shmcast_consumer_options o = shmcast_consumer_options_default();
    o.lossy = (uint32_t)lossy;
    shmcast_consumer *c = NULL;
    if (shmcast_consumer_open(name, &o, &c) != SHMCAST_OK) {
        send_report(out, 'E', 0);
        _exit(1);
    }
    send_report(out, 'A', 0);
    for (;;) pause(); /* until SIGKILL */
}

/* wait_for_consumers counts consumers of other processes: it returns once they attached,
 * times out saying how many there are, and stops counting a killed one. */
static void waited_for_consumers(void) {
    const char *name = seg("wait-consumers");
    shmcast_producer *p = make_producer(name, 4096, 0);
    int gate[2];
    CHECK(pipe(gate) == 0, "pipe");
    gate_fd = gate[0];
    int in[2] = {-1, -1};
    pid_t kids[2];
    for (int k = 0; k < 2; k++) kids[k] = fork_reporting(gated_consumer, name, k, &in[k]);
    close(gate[0]);
    CHECK(kids[0] > 0 && kids[1] > 0, "forked two consumers");
    size_t n = 99;
    EXPECT(shmcast_producer_wait_for_consumers(p, 1, 0, &n), SHMCAST_TIMEOUT,
           "0 of the 1 awaited"); /* they wait for the gate */
    CHECK(n == 0, "none attached yet: %zu", n);
    CHECK(write(gate[1], "gg", 2) == 2, "open the gate");
    /* Returns once both attached, whether it had to wait or not. */
    EXPECT(shmcast_producer_wait_for_consumers(p, 2, HANG_GUARD_NS, &n), SHMCAST_OK, NULL);
    CHECK(n == 2, "both attached: %zu", n);
    for (int k = 0; k < 2; k++) {
        report r;
        CHECK(read_report(in[k], &r) == 0 && r.what == 'A', "consumer %d attached ('%c')", k,
              r.what);
    }
    EXPECT(shmcast_producer_wait_for_consumers(p, 3, 10000000u, &n), SHMCAST_TIMEOUT,
           "timed out with 2 of the 3 awaited consumers attached");
    CHECK(n == 2, "the count at the deadline: %zu", n);
    if (kids[0] > 0) kill_child(kids[0]);
    EXPECT(shmcast_producer_consumers(p, &n), SHMCAST_OK, NULL);
    CHECK(n == 1, "a killed consumer no longer counts: %zu", n);
    EXPECT(shmcast_producer_wait_for_consumers(p, 2, 10000000u, &n), SHMCAST_TIMEOUT,
           "1 of the 2 awaited");
    CHECK(n == 1, "the count at the deadline: %zu", n);
    if (kids[1] > 0) kill_child(kids[1]);
    EXPECT(shmcast_producer_consumers(p, &n), SHMCAST_OK, NULL);
    CHECK(n == 0, "none left: %zu", n);
    close(gate[1]);
    close(in[0]);
    close(in[1]);
    gate_fd = -1;
    EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
}

/* The restart loop's messages: message `seq` is 8 to 64 bytes, `seq` (native order) then
 * bytes that depend on `seq` and their offset. */
#define RESTART_LIVES 4
#define RESTART_BURST 300
#define RESTART_CONSUMERS 2

static size_t restart_len(uint64_t seq) { return 8 + (size_t)(seq * 7 % 57); }

static void restart_fill(uint8_t *buf, uint64_t seq) {
    memcpy(buf, &seq, 8);
    for (size_t j = 8; j < restart_len(seq); j++) buf[j] = (uint8_t)(seq * 31 + j);
}

static int restart_check(const shmcast_message *m, uint64_t seq) {
    uint8_t want[64];
    restart_fill(want, seq);
    return m->seq == seq && m->len == restart_len(seq) && memcmp(m->data, want, m->len) == 0;
}

/* One life of a producer service: open_or_create (kept on close), report 'C' (created) or
 * 'T' (took over) with next_seq, wait for the consumers, then send for ever (send and
 * reserve in turn), reporting 'S' with next_seq once after RESTART_BURST messages. Killed
 * by the parent while it sends, waits for space or holds a reservation. */
static void restart_producer(const char *name, int unused, int out) {
    (void)unused;
    shmcast_producer_options o = shmcast_producer_options_default();
    o.capacity = 4096;
    o.remove_on_close = 0;
    shmcast_producer *p = NULL;
    int32_t created = -1;
    uint64_t seq = 0;
    size_t n = 0;
    if (shmcast_producer_open_or_create(name, &o, &p, &created) != SHMCAST_OK ||
        shmcast_producer_next_seq(p, &seq) != SHMCAST_OK) {
        send_report(out, 'E', 0);
        _exit(1);
    }
    send_report(out, created ? 'C' : 'T', seq);
    if (shmcast_producer_wait_for_consumers(p, RESTART_CONSUMERS, HANG_GUARD_NS, &n) !=
        SHMCAST_OK) {
        send_report(out, 'E', 1);
        _exit(1);
    }
    for (uint64_t sent = 1;; sent++) {
        shmcast_status st = shmcast_producer_next_seq(p, &seq);
        uint8_t buf[64];
        uint8_t *slot = NULL;
        if (st == SHMCAST_OK && seq % 2) {
            restart_fill(buf, seq);
            st = shmcast_producer_send(p, buf, restart_len(seq));
        } else if (st == SHMCAST_OK) {
            st = shmcast_producer_reserve(p, restart_len(seq), &slot);
            if (st == SHMCAST_OK) {
                restart_fill(slot, seq);
                st = shmcast_producer_commit(p);
            }
        }
        if (st != SHMCAST_OK) {
            send_report(out, 'E', 2);
            _exit(1);
        }
        if (sent == RESTART_BURST) send_report(out, 'S', seq + 1);
    }
}

/* A lossless consumer following the stream across deaths and takeovers: reports 'A' once
 * attached; checks that message i is the i-th, with its bytes; after PRODUCER_DIED keeps
 * receiving (the next producer goes on); at DISCONNECTED reports 'D' with the count and 'N'
 * with the deaths it saw, and exits 0. Any other outcome: 'X' (wrong message, its seq), 'F'
 * (a status) or 'H' (no takeover within the hang guard), exit 1. */
static void restart_consumer(const char *name, int unused, int out) {
    (void)unused;
    shmcast_consumer *c = NULL;
    if (shmcast_consumer_open(name, NULL, &c) != SHMCAST_OK) {
        send_report(out, 'E', 0);
        _exit(1);
    }
    send_report(out, 'A', 0);
    uint64_t expect = 0, deaths = 0, dead_polls = 0;
    for (;;) {
        shmcast_message m;
        shmcast_status st = shmcast_consumer_recv_timeout(c, &m, HANG_GUARD_NS);
        if (st == SHMCAST_OK) {
            if (!restart_check(&m, expect)) {
                send_report(out, 'X', m.seq);
                _exit(1);
            }
            expect++;
            dead_polls = 0;
            shmcast_consumer_release(c);
        } else if (st == SHMCAST_PRODUCER_DIED) {
            /* Between a death and the takeover: poll, 1 ms apart, at most the hang guard. */
            if (dead_polls == 0) deaths++;
            if (++dead_polls > HANG_GUARD_MS) {
                send_report(out, 'H', expect);
                _exit(1);
            }
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        } else if (st == SHMCAST_DISCONNECTED) {
            send_report(out, 'D', expect);
            send_report(out, 'N', deaths);
            _exit(0);
        } else {
            send_report(out, 'F', (uint64_t)st);
            _exit(1);
        }
    }
}

/* The restart loop: a producer process started with open_or_create is killed with SIGKILL
 * while it sends, RESTART_LIVES times; each next one takes over where the committed stream
 * ends; then this process takes over and closes the stream. Two consumer processes follow
 * the whole stream and must see every sequence number once, in order, with its bytes. */
static void restart_loop(void) {
    const char *name = seg("restart-loop");
    pid_t consumers[RESTART_CONSUMERS];
    int from_consumer[RESTART_CONSUMERS];
    int started = 0, ok = 1;
    uint64_t handover = 0;
    shmcast_segment_info si;
    shmcast_slot_info slots[16];
    size_t count = 0;
    for (int life = 0; life < RESTART_LIVES && ok; life++) {
        int in = -1;
        pid_t child = fork_reporting(restart_producer, name, 0, &in);
        CHECK(child > 0, "fork producer %d", life);
        if (child <= 0) {
            ok = 0;
            break;
        }
        report r;
        ok = read_report(in, &r) == 0 && r.what == (life == 0 ? 'C' : 'T') &&
             r.value == handover;
        CHECK(ok, "life %d: started '%c' at %llu, expected '%c' at %llu", life, r.what,
              (unsigned long long)r.value, life == 0 ? 'C' : 'T', (unsigned long long)handover);
        for (; life == 0 && ok && started < RESTART_CONSUMERS; started++) {
            consumers[started] = fork_reporting(restart_consumer, name, 0,
                                                &from_consumer[started]);
            report a;
            ok = consumers[started] > 0 && read_report(from_consumer[started], &a) == 0 &&
                 a.what == 'A';
            CHECK(ok, "consumer %d attached", started);
            if (consumers[started] <= 0) break;
        }
        if (ok) {
            ok = read_report(in, &r) == 0 && r.what == 'S' && r.value == handover + RESTART_BURST;
            CHECK(ok, "life %d: sent '%c' up to %llu, expected %llu", life, r.what,
                  (unsigned long long)r.value, (unsigned long long)(handover + RESTART_BURST));
        }
        if (life == 1) {
            shmcast_producer *second = NULL;
            EXPECT(shmcast_producer_open_or_create(name, NULL, &second, NULL),
                   SHMCAST_PRODUCER_ALIVE, "live producer");
        }
        kill_child(child);
        close(in);
        EXPECT(shmcast_inspect(name, &si, slots, 16, &count), SHMCAST_OK, NULL);
        CHECK(si.producer_state == SHMCAST_PRODUCER_STATE_DIED &&
                  si.producer_pid == (uint32_t)child && si.epoch == (uint32_t)life + 1 &&
                  si.next_seq >= handover + RESTART_BURST,
              "life %d died: %s, pid %u, epoch %u, next_seq %llu", life,
              shmcast_producer_state_str(si.producer_state), si.producer_pid, si.epoch,
              (unsigned long long)si.next_seq);
        handover = si.next_seq;
    }

    /* The last restart is this process: it closes the stream (and removes the name). */
    shmcast_producer_options o = shmcast_producer_options_default();
    shmcast_producer *p = NULL;
    int32_t created = -1;
    uint64_t total = 0;
    EXPECT(shmcast_producer_open_or_create(name, &o, &p, &created), SHMCAST_OK, NULL);
    if (p != NULL) {
        CHECK(created == 0, "the last restart took over");
        EXPECT(shmcast_producer_next_seq(p, &total), SHMCAST_OK, NULL);
        CHECK(total == handover, "next_seq %llu after the last death, expected %llu",
              (unsigned long long)total, (unsigned long long)handover);
        size_t n = 0;
        if (ok)
            EXPECT(shmcast_producer_wait_for_consumers(p, RESTART_CONSUMERS, HANG_GUARD_NS, &n),
                   SHMCAST_OK, NULL);
        for (int k = 0; k < 10; k++, total++) {
            uint8_t buf[64];
            restart_fill(buf, total);
            EXPECT(shmcast_producer_send(p, buf, restart_len(total)), SHMCAST_OK, NULL);
        }
        EXPECT(shmcast_producer_close(p), SHMCAST_OK, NULL);
    }
    for (int k = 0; k < started; k++) {
        report d, n;
        /* After a failure, stop it and read what it said (its reports stay in the pipe). */
        if (!ok) kill(consumers[k], SIGKILL);
        int got = read_report(from_consumer[k], &d) == 0;
        got = got && read_report(from_consumer[k], &n) == 0;
        int status = 0;
        pid_t waited = waitpid(consumers[k], &status, 0);
        close(from_consumer[k]);
        if (!ok) {
            printf("after the failure above, consumer %d reported '%c' %llu\n", k,
                   d.what ? d.what : '-', (unsigned long long)d.value);
            continue;
        }
        CHECK(got && d.what == 'D' && d.value == total && n.what == 'N' &&
                  n.value <= RESTART_LIVES,
              "consumer %d: '%c' %llu (expected 'D' %llu), then '%c' %llu deaths seen", k,
              d.what ? d.what : '-', (unsigned long long)d.value, (unsigned long long)total,
              n.what ? n.what : '-', (unsigned long long)n.value);
        CHECK(waited == consumers[k] && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "consumer %d exited (status %d)", k, status);
    }
    shmcast_force_remove(name); /* after a failure; NOT_FOUND otherwise */
}

/* tight_spin: message `i` of the stream is tight_len(i) bytes, its index then filler. */
#define TIGHT_COUNT 5000
static size_t tight_len(uint64_t i) { return 8 + (size_t)(i * 13 % 201); }

static void tight_fill(uint8_t *buf, uint64_t i) {
    memcpy(buf, &i, 8);
    for (size_t k = 8; k < tight_len(i); k++) buf[k] = (uint8_t)(i + k);
}

/* Whether `data` (`len` bytes) is message `i`. */
static int tight_is(const uint8_t *data, size_t len, uint64_t i) {
    uint8_t want[256];
    if (len != tight_len(i)) return 0;
    tight_fill(want, i);
    return memcmp(data, want, len) == 0;
}

/* Sends the stream, then closes the producer (the end of the stream). */
static void *tight_producer(void *arg) {
    shmcast_producer *p = arg;
    uint8_t buf[256];
    uintptr_t sent = 0;
    while (sent < TIGHT_COUNT) {
        tight_fill(buf, sent);
        if (shmcast_producer_send(p, buf, tight_len(sent)) != SHMCAST_OK) break;
        sent++;
    }
    shmcast_producer_close(p);
    return (void *)sent;
}

/* A lossless busy-spinning consumer with tight_spin as `opts` leave it, its producer in
 * another thread: every message once and in order, across more than a hundred laps of a
 * 4 KiB ring (the consumer keeps finding the ring empty, so it takes records from its spin
 * loop: the tight one when on, the full poll when off), then the end of the stream. Also:
 * the same setting is accepted with a lossy consumer (which ignores it) and a policy that
 * sleeps at once. */
static void tight_stream(const char *suffix, shmcast_consumer_options o) {
    const unsigned ts = o.tight_spin;
    const char *name = seg(suffix);
    shmcast_producer *p = make_producer(name, 4096, 0);
    if (!p) return;
    shmcast_consumer *c = NULL, *lossy = NULL, *sleepy = NULL;
    EXPECT(shmcast_consumer_open(name, &o, &c), SHMCAST_OK, NULL);
    shmcast_consumer_options lo = o;
    lo.lossy = 1;
    EXPECT(shmcast_consumer_open(name, &lo, &lossy), SHMCAST_OK, NULL);
    shmcast_consumer_close(lossy); /* of these two only the opening is checked */
    shmcast_consumer_options so = o;
    so.wait.kind = SHMCAST_WAIT_ADAPTIVE;
    so.wait.spins = 0;
    so.wait.yields = 0;
    if (so.tight_spin) so.tight_spin = 2; /* any nonzero value */
    EXPECT(shmcast_consumer_open(name, &so, &sleepy), SHMCAST_OK, NULL);
    shmcast_consumer_close(sleepy);
    if (!c) {
        shmcast_producer_close(p);
        return;
    }

    pthread_t t;
    if (pthread_create(&t, NULL, tight_producer, p) != 0) {
        CHECK(0, "start the producer thread (tight_spin %u)", ts);
        shmcast_consumer_close(c);
        shmcast_producer_close(p);
        return;
    }
    uint64_t got = 0;
    shmcast_status st = SHMCAST_OK;
    int wrong = 0;
    uint8_t buf[256];
    for (;; got++) {
        shmcast_message m;
        if (got % 2 == 0) { /* in place */
            st = shmcast_consumer_recv(c, &m);
            if (st != SHMCAST_OK) break;
            wrong = m.seq != got || !tight_is(m.data, m.len, got);
            shmcast_consumer_release(c);
        } else { /* a copy */
            shmcast_recv_info info;
            st = shmcast_consumer_recv_into(c, buf, sizeof buf, &info);
            if (st != SHMCAST_OK) break;
            wrong = info.seq != got || !tight_is(buf, info.len, got);
        }
        if (wrong) break;
    }
    CHECK(!wrong, "tight_spin %u: message %llu is wrong or out of order", ts,
          (unsigned long long)got);
    CHECK(st == SHMCAST_DISCONNECTED || wrong,
          "tight_spin %u: the stream ended with %s after %llu messages", ts,
          shmcast_status_str(st), (unsigned long long)got);
    /* Closing the consumer first lets a producer blocked on it (after a failure) finish. */
    shmcast_consumer_close(c);
    void *sent = NULL;
    pthread_join(t, &sent);
    CHECK((uintptr_t)sent == TIGHT_COUNT, "tight_spin %u: the producer sent %llu messages", ts,
          (unsigned long long)(uintptr_t)sent);
    CHECK(got == TIGHT_COUNT, "tight_spin %u: received %llu of %d messages", ts,
          (unsigned long long)got, TIGHT_COUNT);
}

/* tight_spin is on by default; the stream across laps runs with it on (the default) and
 * with it off (0: every spin runs the full poll), so that both receive paths stay covered. */
static void tight_spin(void) {
    shmcast_consumer_options o = shmcast_consumer_options_default();
    CHECK(o.tight_spin == 1, "tight_spin is on by default (got %u)", (unsigned)o.tight_spin);
    o.wait.kind = SHMCAST_WAIT_BUSY_SPIN;
    tight_stream("tight-on", o); /* the default */
    o.tight_spin = 0;
    tight_stream("tight-off", o); /* the opt-out */
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
    open_or_create();
    inspection();
    killed_processes(); /* these fork: before any thread is started */
    waited_for_consumers();
    restart_loop();
    tight_spin(); /* starts threads: after the forks */
    last_error_is_per_thread();
    printf("errors: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
