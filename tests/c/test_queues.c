/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Queues on io_uring (docs/contract/abi.md §3, §5, §6.11–6.13): handles before and after
 * start, stable pointers, adding and removing with index reuse, errors,
 * and two queues used concurrently from two threads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sys/resource.h>

#include "harness.h"

#define MSG_MARK "bp must be non-NULL"

static void mark_message(void)
{
    blkio_create("x", NULL); /* sets MSG_MARK */
}

static void test_before_start(const char *path)
{
    struct blkio *b = NULL;
    blkio_create("io_uring", &b);
    mark_message();
    CHECK(blkio_get_queue(b, 0) == NULL, "created: get_queue(0) is NULL");
    CHECK(blkio_get_poll_queue(b, 0) == NULL, "created: get_poll_queue(0) is NULL");
    CHECK_STR(blkio_get_error_msg(), MSG_MARK, "NULL from get_queue leaves the message alone");
    CHECK_ERR(blkio_add_queue(b), -EBUSY, "Device must be started", "created: add_queue");
    CHECK_ERR(blkio_add_poll_queue(b), -EBUSY, "Device must be started",
              "created: add_poll_queue");
    CHECK_ERR(blkio_remove_queue(b, 0), -ENOENT, "no queue with index 0", "created: remove_queue");
    CHECK_ERR(blkio_remove_poll_queue(b, 0), -ENOENT, "no queue with index 0",
              "created: remove_poll_queue");

    blkio_set_str(b, "path", path);
    blkio_connect(b);
    CHECK(blkio_get_queue(b, 0) == NULL, "connected: get_queue(0) is NULL");
    CHECK(blkio_get_poll_queue(b, 0) == NULL, "connected: get_poll_queue(0) is NULL");
    CHECK_ERR(blkio_add_queue(b), -EBUSY, "Device must be started", "connected: add_queue");
    CHECK_ERR(blkio_add_poll_queue(b), -EBUSY, "Device must be started",
              "connected: add_poll_queue");
    CHECK_ERR(blkio_remove_queue(b, 0), -ENOENT, "no queue with index 0",
              "connected: remove_queue");
    blkio_destroy(&b);
}

static bool queue_works(struct blkioq *q, uint64_t off, uint32_t seed)
{
    uint8_t w[4096], r[4096];
    h_fill(w, sizeof(w), off, seed);
    memset(r, 0, sizeof(r));
    return h_write(q, off, w, sizeof(w), 0) == 0 && h_read(q, off, r, sizeof(r)) == 0 &&
           h_verify(r, sizeof(r), off, seed) < 0;
}

static void test_started(const char *path)
{
    struct blkio *b = h_open(path, "num-queues=2");
    struct blkioq *q0, *q1, *q2, *q3, *q1b;
    if (!b)
        return;
    q0 = blkio_get_queue(b, 0);
    q1 = blkio_get_queue(b, 1);
    mark_message();
    CHECK(q0 && q1 && q0 != q1, "started with 2 queues: 0 and 1 exist and differ");
    CHECK(blkio_get_queue(b, 0) == q0 && blkio_get_queue(b, 1) == q1,
          "same pointer on every get_queue call");
    CHECK(blkio_get_queue(b, 2) == NULL, "get_queue(2) out of range");
    CHECK(blkio_get_queue(b, -1) == NULL, "get_queue(-1)");
    CHECK(blkio_get_queue(b, -2147483647 - 1) == NULL, "get_queue(INT_MIN)");
    CHECK(blkio_get_queue(b, 2147483647) == NULL, "get_queue(INT_MAX)");
    CHECK(blkio_get_poll_queue(b, 0) == NULL, "no poll queue 0 (separate index space)");
    CHECK(blkio_get_poll_queue(b, -1) == NULL, "get_poll_queue(-1)");
    CHECK_STR(blkio_get_error_msg(), MSG_MARK, "NULL returns leave the message alone");

    CHECK_INT(blkio_add_queue(b), 2, "add_queue returns 2");
    CHECK_INT(blkio_add_queue(b), 3, "add_queue returns 3");
    q2 = blkio_get_queue(b, 2);
    q3 = blkio_get_queue(b, 3);
    CHECK(q2 && q3 && q2 != q3 && q2 != q0 && q3 != q1, "added queues are new handles");
    CHECK(blkio_get_queue(b, 0) == q0, "adding does not move existing handles");

    CHECK_OK(blkio_remove_queue(b, 1), "remove queue 1");
    CHECK(blkio_get_queue(b, 1) == NULL, "removed index is a hole");
    CHECK(blkio_get_queue(b, 2) == q2 && blkio_get_queue(b, 3) == q3,
          "other indexes do not shift");
    CHECK_ERR(blkio_remove_queue(b, 1), -ENOENT, "no queue with index 1", "remove queue 1 again");
    CHECK_ERR(blkio_remove_queue(b, -1), -ENOENT, "no queue with index -1", "remove queue -1");
    CHECK_ERR(blkio_remove_queue(b, 4), -ENOENT, "no queue with index 4", "remove queue 4");
    CHECK_ERR(blkio_remove_queue(b, -2147483647 - 1), -ENOENT,
              "no queue with index -2147483648", "remove queue INT_MIN");
    CHECK_ERR(blkio_remove_poll_queue(b, 0), -ENOENT, "no queue with index 0",
              "remove poll queue 0 (none exists)");
    CHECK_ERR(blkio_remove_poll_queue(b, -1), -ENOENT, "no queue with index -1",
              "remove poll queue -1");

    CHECK(queue_works(q0, 0, 1), "queue 0 works after removing queue 1");
    CHECK(queue_works(q3, 8192, 3), "queue 3 works");

    CHECK_INT(blkio_add_queue(b), 1, "add_queue reuses the lowest free index 1");
    q1b = blkio_get_queue(b, 1);
    CHECK(q1b != NULL, "queue 1 exists again");
    CHECK(q1b && queue_works(q1b, 4096, 2), "the new queue 1 works");
    CHECK_INT(blkio_add_queue(b), 4, "next add appends (4)");

    CHECK_OK(blkio_remove_queue(b, 0), "remove queue 0");
    CHECK_OK(blkio_remove_queue(b, 3), "remove queue 3");
    CHECK_INT(blkio_add_queue(b), 0, "add fills index 0 first");
    CHECK_INT(blkio_add_queue(b), 3, "then index 3");
    CHECK(queue_works(blkio_get_queue(b, 0), 0, 4), "the new queue 0 works");

    /* Removing a queue with a request in flight must not crash. */
    {
        static uint8_t pending[65536];
        struct blkioq *q = blkio_get_queue(b, 4);
        blkioq_read(q, 0, pending, sizeof(pending), NULL, 0);
        blkioq_do_io(q, NULL, 0, 0, NULL);
        blkioq_read(q, 0, pending, sizeof(pending), NULL, 0); /* not even submitted */
        CHECK_OK(blkio_remove_queue(b, 4), "remove a queue with requests in flight");
    }
    blkio_destroy(&b);
    CHECK(b == NULL, "destroy with several queues");
}

/* ------------------------------------------------------------------------
 * Two queues, two threads, no locking (docs/contract/abi.md §5 item 1). */

struct worker {
    struct blkioq *q;
    const char *path;
    uint64_t base;
    uint32_t seed;
    int errors;
    int done;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    enum { CHUNK = 16384, BATCH = 16, ROUNDS = 20 };
    uint8_t *wbuf = malloc(CHUNK * BATCH), *rbuf = malloc(CHUNK * BATCH);
    struct blkio_completion c[BATCH];
    for (int round = 0; round < ROUNDS; round++) {
        uint32_t seed = w->seed + (uint32_t)round;
        int n;
        for (int i = 0; i < BATCH; i++) {
            uint64_t off = w->base + (uint64_t)i * CHUNK;
            h_fill(wbuf + i * CHUNK, CHUNK, off, seed);
            blkioq_write(w->q, off, wbuf + i * CHUNK, CHUNK, (void *)(uintptr_t)i, 0);
        }
        n = blkioq_do_io(w->q, c, BATCH, BATCH, NULL);
        if (n != BATCH)
            w->errors++;
        for (int i = 0; i < n; i++)
            if (c[i].ret != 0)
                w->errors++;
        memset(rbuf, 0, CHUNK * BATCH);
        for (int i = 0; i < BATCH; i++)
            blkioq_read(w->q, w->base + (uint64_t)i * CHUNK, rbuf + i * CHUNK, CHUNK, NULL, 0);
        n = blkioq_do_io(w->q, c, BATCH, BATCH, NULL);
        if (n != BATCH)
            w->errors++;
        for (int i = 0; i < n; i++)
            if (c[i].ret != 0)
                w->errors++;
        if (h_verify(rbuf, CHUNK * BATCH, w->base, seed) >= 0)
            w->errors++;
        w->done++;
    }
    if (h_verify_file(w->path, w->base, CHUNK * BATCH, w->seed + ROUNDS - 1) != -1)
        w->errors++;
    free(wbuf);
    free(rbuf);
    return NULL;
}

static void test_threads(const char *path)
{
    struct blkio *b = h_open(path, "num-queues=2");
    struct worker w[2];
    pthread_t t[2];
    if (!b)
        return;
    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){blkio_get_queue(b, i), path, (uint64_t)i << 20, 7000 + 100 * (uint32_t)i,
                               0, 0};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        CHECK(w[i].errors == 0 && w[i].done == 20,
              "thread %d on queue %d: 20 rounds of writes and reads verified (%d errors)", i, i,
              w[i].errors);
    /* The control path may be used while queues are busy: properties from
     * the main thread during I/O in another. */
    {
        uint64_t cap = 0;
        w[0].errors = w[0].done = 0;
        pthread_create(&t[0], NULL, worker_main, &w[0]);
        for (int i = 0; i < 100; i++)
            blkio_get_uint64(b, "capacity", &cap);
        pthread_join(t[0], NULL);
        CHECK(w[0].errors == 0 && cap >= (2u << 20),
              "property reads while another thread does I/O");
    }
    /* Memory regions may be allocated, mapped, unmapped and freed while
     * other threads use the queues (docs/contract/abi.md §5 item 3). */
    {
        int failures = 0;
        for (int i = 0; i < 2; i++) {
            w[i].errors = w[i].done = 0;
            pthread_create(&t[i], NULL, worker_main, &w[i]);
        }
        for (int i = 0; i < 50; i++) {
            struct blkio_mem_region r;
            if (blkio_alloc_mem_region(b, &r, 65536) < 0) {
                failures++;
                continue;
            }
            if (blkio_map_mem_region(b, &r) < 0)
                failures++;
            memset(r.addr, i, r.len);
            blkio_unmap_mem_region(b, &r);
            blkio_free_mem_region(b, &r);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        CHECK(failures == 0 && w[0].errors == 0 && w[1].errors == 0,
              "region alloc/map/unmap/free while two threads do I/O (%d failures)", failures);
    }
    blkio_destroy(&b);
}

/*
 * A queue count above the open-file limit can never start: start refuses
 * it at once with -EMFILE (docs/contract/properties.md, "Queue counts")
 * and the instance stays connected, so a smaller count then starts.
 */
static void test_queue_count_limit(const char *path)
{
    struct rlimit old, low;
    struct blkio *b = NULL;
    char want[200];
    if (getrlimit(RLIMIT_NOFILE, &old) != 0) {
        CHECK(false, "getrlimit(RLIMIT_NOFILE)");
        return;
    }
    low = old;
    low.rlim_cur = 64;
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &low), "lower the open-file limit to 64");
    CHECK_OK(blkio_create("io_uring", &b), "create");
    CHECK_OK(blkio_set_str(b, "path", path), "set path");
    CHECK_OK(blkio_connect(b), "connect");
    CHECK_OK(blkio_set_int(b, "num-queues", 2147483647), "num-queues INT_MAX");
    snprintf(want, sizeof(want),
             "num_queues + num_poll_queues (2147483647) exceeds the open file limit (64): "
             "each queue needs a file descriptor");
    CHECK_ERR(blkio_start(b), -EMFILE, want, "start with INT_MAX queues");
    CHECK_OK(blkio_set_int(b, "num-queues", 40), "num-queues 40");
    CHECK_OK(blkio_set_int(b, "num-poll-queues", 25), "num-poll-queues 25");
    snprintf(want, sizeof(want),
             "num_queues + num_poll_queues (65) exceeds the open file limit (64): "
             "each queue needs a file descriptor");
    CHECK_ERR(blkio_start(b), -EMFILE, want, "start with 40 + 25 queues");
    CHECK_OK(blkio_set_int(b, "num-poll-queues", 0), "num-poll-queues 0");
    CHECK_OK(blkio_set_int(b, "num-queues", 2), "num-queues 2");
    CHECK_OK(blkio_start(b), "then start with 2 queues");
    CHECK(blkio_get_queue(b, 1) && queue_works(blkio_get_queue(b, 1), 0, 7),
          "queue 1 does I/O after the refused starts");
    blkio_destroy(&b);
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &old), "restore the open-file limit");
}

int main(void)
{
    const char *path = h_scratch(2 << 20);
    test_before_start(path);
    test_started(path);
    test_threads(path);
    test_queue_count_limit(path);
    return h_done();
}
