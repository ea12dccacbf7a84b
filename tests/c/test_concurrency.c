/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Concurrency (docs/thread-safety.md):
 *   1. one io_uring instance with N queues (2, 5 and 8), one thread per
 *      queue, each doing random reads and writes on its own range of the
 *      file, several requests in flight, waiting event-driven on the queue's
 *      completion fd (poll, then blkioq_do_io(q, c, 0, n, NULL)); every read
 *      is checked against the thread's shadow copy, and the file is checked
 *      with pread at the end;
 *   2. threads creating, connecting, starting and destroying instances in
 *      parallel, each making its own kind of deliberate error and checking
 *      that blkio_get_error_msg() still gives its own message after the
 *      other threads' failures and its own successful calls;
 *   3. while queue threads do I/O, another thread reads properties and
 *      allocates, maps, unmaps and frees memory regions on the same
 *      instance.
 * Run plainly, under helgrind and against a ThreadSanitizer build of the
 * library by tests/threads/run.sh. CONC_ROUNDS scales the work (default 1).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#define BLOCK 4096u
#define RANGE_BLOCKS 64u /* per thread: 256 KiB */
#define MAX_QUEUES 8
#define DEPTH 8

static int rounds = 1;

/* ------------------------------------------------------------------------
 * 1. One queue per thread */

struct qthread {
    struct blkio *b;
    struct blkioq *q;
    const char *path;
    int index;
    unsigned seed;
    uint32_t shadow[RANGE_BLOCKS]; /* pattern seed of each block, 0: zeroes */
    /* results, reported by the main thread */
    unsigned writes, reads, bad_reads, failed_reqs, polls;
    char error[256];
};

static void qt_fail(struct qthread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void qt_fail(struct qthread *t, const char *fmt, ...)
{
    va_list ap;
    if (t->error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof(t->error), fmt, ap);
    va_end(ap);
}

static bool block_ok(const uint8_t *buf, uint64_t off, uint32_t seed)
{
    return seed ? h_verify(buf, BLOCK, off, seed) < 0 : h_verify_byte(buf, BLOCK, 0) < 0;
}

/* Waits for `pending` completions on the completion fd. */
static bool qt_reap(struct qthread *t, int fd, int pending, struct blkio_completion *done,
                    int *ndone)
{
    *ndone = 0;
    /* Submit everything queued; nothing may be waited for (min 0). */
    int n = blkioq_do_io(t->q, done, 0, pending, NULL);
    if (n < 0) {
        qt_fail(t, "blkioq_do_io(min 0) returned %d: %s", n, blkio_get_error_msg());
        return false;
    }
    *ndone = n;
    while (*ndone < pending) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t cnt;
        int r = poll(&p, 1, 10000);
        if (r == 0) {
            qt_fail(t, "no completion fd event within 10 s (%d of %d done)", *ndone, pending);
            return false;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            qt_fail(t, "poll: %s", strerror(errno));
            return false;
        }
        t->polls++;
        if (read(fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN) {
            qt_fail(t, "read completion fd: %s", strerror(errno));
            return false;
        }
        n = blkioq_do_io(t->q, done + *ndone, 0, pending - *ndone, NULL);
        if (n < 0) {
            qt_fail(t, "blkioq_do_io after poll returned %d: %s", n, blkio_get_error_msg());
            return false;
        }
        *ndone += n;
    }
    return true;
}

static void *queue_thread(void *arg)
{
    struct qthread *t = arg;
    uint8_t *bufs = aligned_alloc(BLOCK, (size_t)DEPTH * BLOCK);
    uint64_t base = (uint64_t)t->index * RANGE_BLOCKS * BLOCK;
    int fd;
    if (!bufs) {
        qt_fail(t, "aligned_alloc");
        return NULL;
    }
    memset(bufs, 0, (size_t)DEPTH * BLOCK);
    if (blkioq_set_completion_fd_enabled(t->q, true), (fd = blkioq_get_completion_fd(t->q)) < 0) {
        qt_fail(t, "blkioq_get_completion_fd returned %d", fd);
        free(bufs);
        return NULL;
    }
    for (int batch = 0; batch < 40 * rounds && !t->error[0]; batch++) {
        int depth = 1 + rand_r(&t->seed) % DEPTH, ndone;
        unsigned blk[DEPTH];
        bool is_write[DEPTH];
        uint32_t wseed[DEPTH];
        struct blkio_completion done[DEPTH];
        /* distinct blocks within one batch */
        for (int i = 0; i < depth; i++) {
            bool dup;
            do {
                blk[i] = rand_r(&t->seed) % RANGE_BLOCKS;
                dup = false;
                for (int j = 0; j < i; j++)
                    dup |= blk[j] == blk[i];
            } while (dup);
            uint8_t *buf = bufs + (size_t)i * BLOCK;
            uint64_t off = base + (uint64_t)blk[i] * BLOCK;
            is_write[i] = rand_r(&t->seed) % 2;
            if (is_write[i]) {
                wseed[i] = ((uint32_t)t->index << 24) | (uint32_t)(batch * DEPTH + i + 1);
                h_fill(buf, BLOCK, off, wseed[i]);
                blkioq_write(t->q, off, buf, BLOCK, (void *)(uintptr_t)i, 0);
            } else {
                memset(buf, 0xa5, BLOCK);
                blkioq_read(t->q, off, buf, BLOCK, (void *)(uintptr_t)i, 0);
            }
        }
        if (!qt_reap(t, fd, depth, done, &ndone))
            break;
        for (int k = 0; k < ndone; k++) {
            int i = (int)(uintptr_t)done[k].user_data;
            uint64_t off = base + (uint64_t)blk[i] * BLOCK;
            if (i < 0 || i >= depth) {
                qt_fail(t, "completion with unknown user_data %d", i);
                continue;
            }
            if (done[k].ret != 0) {
                t->failed_reqs++;
                qt_fail(t, "request on block %u failed: %d", blk[i], done[k].ret);
                continue;
            }
            if (is_write[i]) {
                t->shadow[blk[i]] = wseed[i];
                t->writes++;
            } else {
                t->reads++;
                if (!block_ok(bufs + (size_t)i * BLOCK, off, t->shadow[blk[i]])) {
                    t->bad_reads++;
                    qt_fail(t, "read of block %u returned other data", blk[i]);
                }
            }
        }
    }
    free(bufs);
    return NULL;
}

/* 3. A control-path thread on the same instance: properties and regions. */
struct control {
    struct blkio *b;
    atomic_bool stop;
    unsigned iterations, failures;
    char error[256];
};

static void *control_thread(void *arg)
{
    struct control *c = arg;
    while (!atomic_load(&c->stop)) {
        uint64_t cap = 0;
        int nq = 0;
        struct blkio_mem_region r;
        if (blkio_get_uint64(c->b, "capacity", &cap) < 0 || cap == 0 ||
            blkio_get_int(c->b, "num-queues", &nq) < 0 || nq < 2) {
            c->failures++;
            snprintf(c->error, sizeof(c->error), "properties: capacity %llu num-queues %d: %s",
                     (unsigned long long)cap, nq, blkio_get_error_msg());
            break;
        }
        if (blkio_alloc_mem_region(c->b, &r, 65536) < 0) {
            c->failures++;
            snprintf(c->error, sizeof(c->error), "alloc_mem_region: %s", blkio_get_error_msg());
            break;
        }
        memset(r.addr, 0x11, r.len);
        if (blkio_map_mem_region(c->b, &r) < 0) {
            c->failures++;
            snprintf(c->error, sizeof(c->error), "map_mem_region: %s", blkio_get_error_msg());
            blkio_free_mem_region(c->b, &r);
            break;
        }
        blkio_unmap_mem_region(c->b, &r);
        blkio_free_mem_region(c->b, &r);
        c->iterations++;
    }
    return NULL;
}

static void test_queues(int nq)
{
    size_t size = (size_t)nq * RANGE_BLOCKS * BLOCK;
    const char *path = h_scratch((off_t)size);
    char opts[64];
    struct qthread *t = calloc((size_t)nq, sizeof(*t));
    pthread_t tid[MAX_QUEUES], ctid;
    struct control ctl = {0};
    struct blkio *b;
    bool all_ok = true;
    unsigned writes = 0, reads = 0, polls = 0;

    snprintf(opts, sizeof(opts), "num-queues=%d", nq);
    b = h_open(path, opts);
    if (!b || !t) {
        free(t);
        return;
    }
    for (int i = 0; i < nq; i++) {
        t[i].b = b;
        t[i].q = blkio_get_queue(b, i);
        t[i].path = path;
        t[i].index = i;
        t[i].seed = 0x5eed0000u + (unsigned)(nq * 16 + i);
        if (!t[i].q) {
            h_report(false, blkio_get_error_msg(), "%d queues: blkio_get_queue(%d)", nq, i);
            blkio_destroy(&b);
            free(t);
            return;
        }
    }
    ctl.b = b;
    atomic_init(&ctl.stop, false);
    for (int i = 0; i < nq; i++)
        pthread_create(&tid[i], NULL, queue_thread, &t[i]);
    pthread_create(&ctid, NULL, control_thread, &ctl);
    for (int i = 0; i < nq; i++)
        pthread_join(tid[i], NULL);
    atomic_store(&ctl.stop, true);
    pthread_join(ctid, NULL);

    for (int i = 0; i < nq; i++) {
        if (t[i].error[0]) {
            all_ok = false;
            h_report(false, t[i].error, "%d queues: thread %d", nq, i);
        }
        writes += t[i].writes;
        reads += t[i].reads;
        polls += t[i].polls;
    }
    h_report(all_ok && writes > 0 && reads > 0, NULL,
             "%d queues, one thread each: %u writes, %u reads verified, %u completion fd "
             "wake-ups, no failed request",
             nq, writes, reads, polls);
    h_report(ctl.failures == 0 && ctl.iterations > 0, ctl.error,
             "%d queues: %u property reads and region alloc/map/unmap/free rounds "
             "on the same instance meanwhile",
             nq, ctl.iterations);
    blkio_destroy(&b);
    CHECK(b == NULL, "%d queues: destroy", nq);

    /* The file holds exactly what the shadows say. */
    {
        unsigned bad = 0;
        for (int i = 0; i < nq; i++) {
            for (unsigned k = 0; k < RANGE_BLOCKS; k++) {
                uint64_t off = ((uint64_t)i * RANGE_BLOCKS + k) * BLOCK;
                uint8_t buf[BLOCK];
                int fd = open(path, O_RDONLY);
                ssize_t n = pread(fd, buf, BLOCK, (off_t)off);
                close(fd);
                if (n != BLOCK || !block_ok(buf, off, t[i].shadow[k]))
                    bad++;
            }
        }
        CHECK_INT(bad, 0, "%d queues: every block of the file (pread) holds its last "
                          "acknowledged write", nq);
    }
    free(t);
}

/* ------------------------------------------------------------------------
 * 2. Instances in parallel, thread-local error messages */

#define LIFE_THREADS 6

struct lthread {
    int kind;
    const char *path;
    unsigned ok_cycles, mismatches, unexpected;
    char error[700];
};

/* Each kind makes a failure with its own errno and message. Returns the
 * failing call's result; *b may be an instance to destroy. */
static int make_error(int kind, const char *path, struct blkio **b)
{
    int v;
    switch (kind) {
    case 0:
        return blkio_create("no-such-driver", b);
    case 1:
        if (blkio_create("io_uring", b) < 0)
            return 1;
        return blkio_connect(*b); /* neither path nor fd */
    case 2:
        if (blkio_create("io_uring", b) < 0)
            return 1;
        return blkio_set_int(*b, "no-such-property", 1);
    case 3:
        if (blkio_create("io_uring", b) < 0 || blkio_set_str(*b, "path", path) < 0 ||
            blkio_connect(*b) < 0)
            return 1;
        return blkio_set_int(*b, "num-queues", -1);
    case 4:
        if (blkio_create("io_uring", b) < 0)
            return 1;
        return blkio_get_int(*b, "capacity", &v) + 0 * v; /* not connected */
    default:
        if (blkio_create("io_uring", b) < 0 || blkio_set_str(*b, "path", path) < 0 ||
            blkio_connect(*b) < 0 || blkio_start(*b) < 0)
            return 1;
        return blkio_set_int(*b, "num-queues", 2); /* started: read-only */
    }
}

static void *life_thread(void *arg)
{
    struct lthread *t = arg;
    int want_ret;
    char want_msg[256];
    struct blkio *b = NULL;

    /* What this kind's failure looks like, in this thread. */
    want_ret = make_error(t->kind, t->path, &b);
    snprintf(want_msg, sizeof(want_msg), "%s", blkio_get_error_msg());
    blkio_destroy(&b);
    if (want_ret >= 0 || !want_msg[0]) {
        snprintf(t->error, sizeof(t->error), "kind %d: the deliberate error returned %d \"%s\"",
                 t->kind, want_ret, want_msg);
        t->unexpected++;
        return NULL;
    }
    for (int i = 0; i < 30 * rounds; i++) {
        struct blkio *ok = NULL;
        struct blkio_completion c;
        struct blkioq *q;
        uint8_t buf[512] = {0};
        int ret = make_error(t->kind, t->path, &b);
        blkio_destroy(&b);
        if (ret != want_ret || strcmp(blkio_get_error_msg(), want_msg) != 0) {
            t->mismatches++;
            snprintf(t->error, sizeof(t->error), "kind %d: got %d \"%.250s\", expected %d \"%.250s\"",
                     t->kind, ret, blkio_get_error_msg(), want_ret, want_msg);
        }
        /* A full successful life cycle with one read: successful calls never
         * touch the message, other threads' failures never do either. */
        if (blkio_create("io_uring", &ok) < 0 || blkio_set_str(ok, "path", t->path) < 0 ||
            blkio_connect(ok) < 0 || blkio_set_int(ok, "num-queues", 1 + i % 3) < 0 ||
            blkio_start(ok) < 0 || !(q = blkio_get_queue(ok, 0))) {
            t->unexpected++;
            snprintf(t->error, sizeof(t->error), "kind %d: life cycle failed: %s", t->kind,
                     blkio_get_error_msg());
            blkio_destroy(&ok);
            break;
        }
        blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
        if (blkioq_do_io(q, &c, 1, 1, NULL) != 1 || c.ret != 0) {
            t->unexpected++;
            snprintf(t->error, sizeof(t->error), "kind %d: read failed", t->kind);
        }
        blkio_destroy(&ok);
        if (strcmp(blkio_get_error_msg(), want_msg) != 0) {
            t->mismatches++;
            snprintf(t->error, sizeof(t->error),
                     "kind %d: after successful calls the message is \"%.250s\", expected \"%.250s\"",
                     t->kind, blkio_get_error_msg(), want_msg);
        } else {
            t->ok_cycles++;
        }
    }
    return NULL;
}

static void test_lifecycles(void)
{
    const char *path = h_scratch(1024 * 1024);
    struct lthread t[LIFE_THREADS] = {{0}};
    pthread_t tid[LIFE_THREADS];
    unsigned cycles = 0;
    bool ok = true;
    char msgs[LIFE_THREADS][256];
    struct blkio *b = NULL;

    /* The six deliberate errors differ from each other (else the check
     * below could not tell whose message a thread sees). */
    for (int k = 0; k < LIFE_THREADS; k++) {
        make_error(k, path, &b);
        snprintf(msgs[k], sizeof(msgs[k]), "%s", blkio_get_error_msg());
        blkio_destroy(&b);
    }
    for (int k = 0; k < LIFE_THREADS; k++)
        for (int j = 0; j < k; j++)
            if (strcmp(msgs[k], msgs[j]) == 0)
                ok = h_report(false, msgs[k], "deliberate errors %d and %d differ", j, k);
    CHECK(ok, "the %d deliberate errors have %d different messages", LIFE_THREADS,
          LIFE_THREADS);

    for (int k = 0; k < LIFE_THREADS; k++) {
        t[k].kind = k;
        t[k].path = path;
        pthread_create(&tid[k], NULL, life_thread, &t[k]);
    }
    ok = true;
    for (int k = 0; k < LIFE_THREADS; k++) {
        pthread_join(tid[k], NULL);
        if (t[k].mismatches || t[k].unexpected) {
            ok = false;
            h_report(false, t[k].error, "life-cycle thread %d", k);
        }
        cycles += t[k].ok_cycles;
    }
    h_report(ok && cycles == (unsigned)(LIFE_THREADS * 30 * rounds), NULL,
             "%d threads creating/connecting/starting/destroying instances in parallel "
             "(%u cycles): blkio_get_error_msg() keeps each thread's own message",
             LIFE_THREADS, cycles);
}

int main(void)
{
    const char *r = getenv("CONC_ROUNDS");
    if (r && atoi(r) > 0)
        rounds = atoi(r);
    test_queues(2);
    test_queues(5);
    test_queues(8);
    test_lifecycles();
    return h_done();
}
