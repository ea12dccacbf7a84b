/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The call patterns of fio's libblkio engine (engines/libblkio.c), replayed
 * against each target (io_uring buffered and direct; vhost-user on
 * qemu-storage-daemon when the driver exists):
 *
 *  - setup(): create, "direct" (tolerating -ENOENT), "read-only", "path",
 *    connect, read "capacity", destroy; then init() creates the instance
 *    again;
 *  - properties given as strings (libblkio_pre_connect_props /
 *    libblkio_pre_start_props go through blkio_set_str), num-entries /
 *    queue-size with blkio_set_int;
 *  - one instance with one queue per job thread (num-queues N), each thread
 *    driving only its queue with its own buffers: a region from
 *    blkio_alloc_mem_region rounded up to mem-region-alignment
 *    (iomem_alloc()) or, when the driver does not need region fds, fio's
 *    own memory mapped with fd -1 (post_init());
 *  - the three wait modes: "block" (blkioq_do_io with min), "eventfd"
 *    (completion fd made blocking, read(), then blkioq_do_io without
 *    waiting) and "loop" (busy blkioq_do_io without waiting); vectored and
 *    plain requests; trim as discard or as write-zeroes; sync as flush;
 *  - hipri: a separate poll queue (num-poll-queues 1) in loop mode when the
 *    target supports poll queues, skipped otherwise.
 *
 * Every thread verifies the data it wrote (through the library and with
 * pread on the image).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sys/mman.h>

#include "harness.h"
#include "targets.h"

#define DEV_SIZE (64ull << 20)
#define NJOBS 4
#define IODEPTH 8
#define NBLOCKS 96 /* per job */

enum wait_mode { WAIT_BLOCK, WAIT_EVENTFD, WAIT_LOOP };
static const char *const wait_names[] = {"block", "eventfd", "loop"};

struct job {
    const struct target *t;
    int index;
    struct blkioq *q;
    bool poll_queue;
    enum wait_mode wait;
    bool vectored;
    bool trim_as_zeroes;
    uint8_t *buf; /* IODEPTH * bs bytes */
    size_t bs;
    uint64_t base; /* first byte of the job's slice */
    int completion_fd;
    /* results */
    int errors;
    char first_error[200];
    int writes, reads, trims;
};

static void job_error(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_error(struct job *j, const char *fmt, ...)
{
    if (j->errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->first_error, sizeof(j->first_error), fmt, ap);
        va_end(ap);
    }
}

/* fio_blkio_getevents(): at least `min`, at most `max` completions. */
static int getevents(struct job *j, struct blkio_completion *c, int min, int max)
{
    int n = 0, ret;
    uint64_t event;
    switch (j->wait) {
    case WAIT_BLOCK:
        return blkioq_do_io(j->q, c, min, max, NULL);
    case WAIT_EVENTFD:
        n = blkioq_do_io(j->q, c, 0, max, NULL); /* submits, reaps what is there */
        if (n < 0)
            return n;
        while (n < min) {
            ret = (int)read(j->completion_fd, &event, sizeof(event));
            if (ret != (int)sizeof(event))
                return -errno;
            ret = blkioq_do_io(j->q, c + n, 0, max - n, NULL);
            if (ret < 0)
                return ret;
            n += ret;
        }
        return n;
    case WAIT_LOOP:
        while (n < min) {
            ret = blkioq_do_io(j->q, c + n, 0, max - n, NULL);
            if (ret < 0)
                return ret;
            n += ret;
        }
        return n;
    }
    return -EINVAL;
}

enum ddir { DDIR_READ, DDIR_WRITE, DDIR_TRIM };

/* fio_blkio_queue() for one io_u (slot = index into the job's buffer). */
static void queue_io(struct job *j, enum ddir dir, int slot, uint64_t off, struct iovec *iovs)
{
    void *buf = j->buf + (size_t)slot * j->bs;
    void *ud = (void *)(uintptr_t)(slot + 1);
    switch (dir) {
    case DDIR_READ:
        if (j->vectored) {
            iovs[slot] = (struct iovec){buf, j->bs};
            blkioq_readv(j->q, off, &iovs[slot], 1, ud, 0);
        } else {
            blkioq_read(j->q, off, buf, j->bs, ud, 0);
        }
        break;
    case DDIR_WRITE:
        if (j->vectored) {
            iovs[slot] = (struct iovec){buf, j->bs};
            blkioq_writev(j->q, off, &iovs[slot], 1, ud, 0);
        } else {
            blkioq_write(j->q, off, buf, j->bs, ud, 0);
        }
        break;
    case DDIR_TRIM:
        if (j->trim_as_zeroes)
            blkioq_write_zeroes(j->q, off, j->bs, ud, 0);
        else
            blkioq_discard(j->q, off, j->bs, ud, 0);
        break;
    }
}

/* Runs `dir` over blocks first..last-1 (step) of the job's slice with
 * IODEPTH requests in flight; writes fill the pattern first, reads verify
 * it (or zeroes for `expect_zero`). */
static void run_pass(struct job *j, enum ddir dir, int first, int step, bool expect_zero)
{
    struct blkio_completion comps[IODEPTH];
    struct iovec iovs[IODEPTH];
    uint64_t slot_off[IODEPTH];
    bool busy[IODEPTH] = {false};
    int next = first, inflight = 0;

    while (next < NBLOCKS || inflight > 0) {
        /* queue while there are free slots */
        for (int s = 0; s < IODEPTH && next < NBLOCKS; s++) {
            if (busy[s])
                continue;
            slot_off[s] = j->base + (uint64_t)next * j->bs;
            if (dir == DDIR_WRITE)
                h_fill(j->buf + (size_t)s * j->bs, j->bs, slot_off[s], 60 + (uint32_t)j->index);
            else if (dir == DDIR_READ)
                memset(j->buf + (size_t)s * j->bs, 0xee, j->bs);
            queue_io(j, dir, s, slot_off[s], iovs);
            busy[s] = true;
            inflight++;
            next += step;
        }
        /* fio reaps at least one, at most what is in flight */
        int n = getevents(j, comps, 1, inflight);
        if (n < 0) {
            job_error(j, "getevents: %d %s", n, blkio_get_error_msg());
            return;
        }
        for (int i = 0; i < n; i++) {
            int s = (int)(uintptr_t)comps[i].user_data - 1;
            if (s < 0 || s >= IODEPTH || !busy[s]) {
                job_error(j, "completion with unknown user_data %p", comps[i].user_data);
                return;
            }
            busy[s] = false;
            inflight--;
            if (comps[i].ret != 0) {
                job_error(j, "%s at %" PRIu64 ": ret %d %s",
                          dir == DDIR_READ ? "read" : dir == DDIR_WRITE ? "write" : "trim",
                          slot_off[s], comps[i].ret,
                          comps[i].error_msg ? comps[i].error_msg : "");
                continue;
            }
            if (dir == DDIR_READ) {
                uint8_t *b = j->buf + (size_t)s * j->bs;
                long long bad = expect_zero ? h_verify_byte(b, j->bs, 0)
                                            : h_verify(b, j->bs, slot_off[s],
                                                       60 + (uint32_t)j->index);
                if (bad != -1)
                    job_error(j, "read at %" PRIu64 ": byte %lld differs", slot_off[s], bad);
                j->reads++;
            } else if (dir == DDIR_WRITE) {
                j->writes++;
            } else {
                j->trims++;
            }
        }
    }
}

static void flush(struct job *j)
{
    struct blkio_completion c;
    blkioq_flush(j->q, (void *)(uintptr_t)1, 0);
    if (getevents(j, &c, 1, 1) != 1 || c.ret != 0)
        job_error(j, "flush failed: %d", c.ret);
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    run_pass(j, DDIR_WRITE, 0, 1, false);
    if (!j->poll_queue) /* io_uring poll queues take reads and writes only */
        flush(j);
    run_pass(j, DDIR_READ, 0, 1, false);
    if (!j->poll_queue) {
        run_pass(j, DDIR_TRIM, 0, 2, false);
        flush(j);
        run_pass(j, DDIR_READ, 0, 2, true);
        run_pass(j, DDIR_READ, 1, 2, false);
    }
    return NULL;
}

/* setup(): the throw-away instance that only reads the capacity. */
static void test_setup_phase(const struct target *t)
{
    struct blkio *b = NULL;
    uint64_t capacity = 0;
    int ret;

    if (!CHECK_OK(blkio_create(t->driver, &b), "%s: setup: create", t->name))
        return;
    ret = blkio_set_bool(b, "direct", t->direct);
    CHECK(ret == 0 || ret == -ENOENT, "%s: setup: \"direct\" set or absent (%d)", t->name, ret);
    CHECK_OK(blkio_set_bool(b, "read-only", false), "%s: setup: read-only false", t->name);
    CHECK_OK(blkio_set_str(b, "path", t->path), "%s: setup: path", t->name);
    CHECK_OK(blkio_connect(b), "%s: setup: connect", t->name);
    CHECK_OK(blkio_get_uint64(b, "capacity", &capacity), "%s: setup: capacity", t->name);
    CHECK_INT(capacity, DEV_SIZE, "%s: setup: capacity is the device size", t->name);
    blkio_destroy(&b);
}

/* init() of a shared instance: NJOBS queues (and one poll queue when
 * `hipri` and supported), then one thread per queue. */
static void test_jobs(const struct target *t, bool hipri)
{
    struct blkio_mem_region regions[NJOBS + 1];
    bool region_used[NJOBS + 1] = {false};
    void *fio_mem[NJOBS + 1] = {NULL};
    struct job jobs[NJOBS + 1];
    pthread_t threads[NJOBS + 1];
    uint64_t mra = 1;
    bool needs_fd = true, poll_ok = false;
    int njobs = NJOBS, ret;
    struct blkio *b = NULL;
    const char *label = hipri ? "hipri" : "jobs";

    if (blkio_create(t->driver, &b) < 0) {
        h_report(false, blkio_get_error_msg(), "%s: %s: create", t->name, label);
        return;
    }
    ret = blkio_set_bool(b, "direct", t->direct);
    if ((ret != 0 && ret != -ENOENT) || blkio_set_bool(b, "read-only", false) < 0 ||
        blkio_set_str(b, "path", t->path) < 0 || blkio_connect(b) < 0) {
        h_report(false, blkio_get_error_msg(), "%s: %s: configure and connect", t->name, label);
        blkio_destroy(&b);
        return;
    }
    /* libblkio_num_entries / libblkio_queue_size (set_int), then
     * libblkio_pre_start_props (set_str) */
    if (target_is_io_uring(t)) {
        CHECK_OK(blkio_set_int(b, "num-entries", 16), "%s: %s: num-entries 16", t->name, label);
        CHECK_OK(blkio_set_str(b, "num-entries", "32"),
                 "%s: %s: pre_start_props \"num-entries=32\" via blkio_set_str", t->name, label);
    } else {
        CHECK_OK(blkio_set_int(b, "queue-size", 128), "%s: %s: queue-size 128", t->name, label);
    }
    CHECK_OK(blkio_set_str(b, "num-queues", "4"), "%s: %s: num-queues \"4\" via blkio_set_str",
             t->name, label);
    if (hipri) {
        bool supported = false;
        blkio_get_bool(b, "supports-poll-queues", &supported);
        if (!supported) {
            h_skip("%s: hipri (poll queue): supports-poll-queues is false", t->name);
            blkio_destroy(&b);
            return;
        }
        njobs = NJOBS - 1; /* the daemon has NJOBS virtqueues in all */
    }
    if (!target_start(t, &b, njobs, hipri ? 1 : 0))
        return;
    blkio_get_uint64(b, "mem-region-alignment", &mra);
    blkio_get_bool(b, "needs-mem-region-fd", &needs_fd);

    int total = njobs + (hipri ? 1 : 0);
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < total; i++) {
        struct job *j = &jobs[i];
        size_t len;
        j->t = t;
        j->index = i;
        j->poll_queue = hipri && i == njobs;
        j->q = j->poll_queue ? blkio_get_poll_queue(b, 0) : blkio_get_queue(b, i);
        j->wait = j->poll_queue ? WAIT_LOOP : (enum wait_mode)(i % 3);
        j->vectored = i % 2 == 1;
        j->trim_as_zeroes = i == 3;
        j->bs = (size_t)4096 << (i % 3); /* 4, 8, 16 KiB */
        j->base = (uint64_t)i * (DEV_SIZE / (NJOBS + 1) / (1 << 20) << 20); /* 1 MiB aligned */
        j->completion_fd = -1;
        len = j->bs * IODEPTH;
        if (!j->q) {
            h_report(false, NULL, "%s: %s: queue for job %d", t->name, label, i);
            goto out;
        }
        if (i % 2 == 0 || needs_fd) {
            /* iomem_alloc(): size rounded up to mem-region-alignment */
            len = mra > 1 ? (len + mra - 1) / mra * mra : len;
            if (blkio_alloc_mem_region(b, &regions[i], len) < 0 ||
                blkio_map_mem_region(b, &regions[i]) < 0) {
                h_report(false, blkio_get_error_msg(), "%s: %s: job %d region", t->name, label, i);
                goto out;
            }
            region_used[i] = true;
            j->buf = regions[i].addr;
        } else {
            /* post_init(): fio's own page-aligned memory, mapped with fd -1 */
            struct blkio_mem_region r;
            if (posix_memalign(&fio_mem[i], 4096, len) != 0) {
                h_report(false, NULL, "%s: %s: job %d memory", t->name, label, i);
                goto out;
            }
            r = (struct blkio_mem_region){.addr = fio_mem[i], .len = len, .fd = -1};
            if (!CHECK_OK(blkio_map_mem_region(b, &r),
                          "%s: %s: job %d maps fio's own buffer with fd -1", t->name, label, i))
                goto out;
            j->buf = fio_mem[i];
        }
        if (j->wait == WAIT_EVENTFD) {
            int flags;
            blkioq_set_completion_fd_enabled(j->q, true);
            j->completion_fd = blkioq_get_completion_fd(j->q);
            flags = fcntl(j->completion_fd, F_GETFL);
            if (flags < 0 || fcntl(j->completion_fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
                h_report(false, strerror(errno), "%s: %s: job %d makes its completion fd blocking",
                         t->name, label, i);
                goto out;
            }
        }
    }
    if (hipri) {
        CHECK(blkioq_get_completion_fd(jobs[njobs].q) == -1,
              "%s: hipri: the poll queue has no completion fd", t->name);
        /* A device that cannot poll fails polled I/O (docs/contract/requests.md §6 [Q]). */
        struct blkio_completion c;
        blkioq_read(jobs[njobs].q, jobs[njobs].base, jobs[njobs].buf, 4096, NULL, 0);
        ret = blkioq_do_io(jobs[njobs].q, &c, 1, 1, NULL);
        if (ret == 1 && c.ret == -ENOTSUP) {
            h_skip("%s: hipri: the device cannot poll (polled read completed with -ENOTSUP)",
                   t->name);
            total = njobs; /* run the regular jobs alongside nothing */
        } else {
            poll_ok = CHECK(ret == 1 && c.ret == 0, "%s: hipri: a polled read completes (%d, %d)",
                            t->name, ret, ret == 1 ? c.ret : 0);
            if (!poll_ok)
                total = njobs;
        }
    }

    for (int i = 0; i < total; i++)
        if (pthread_create(&threads[i], NULL, job_main, &jobs[i]) != 0) {
            total = i;
            h_report(false, strerror(errno), "%s: %s: start thread %d", t->name, label, i);
            break;
        }
    for (int i = 0; i < total; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < total; i++) {
        struct job *j = &jobs[i];
        int expect_reads = NBLOCKS + (j->poll_queue ? 0 : NBLOCKS);
        h_report(j->errors == 0 && j->writes == NBLOCKS && j->reads == expect_reads,
                 j->first_error,
                 "%s: %s: %s %d (%s wait, %s, %zu KiB blocks, depth %d): %d writes, %d verified "
                 "reads, %d %s",
                 t->name, label, j->poll_queue ? "poll queue" : "queue", j->poll_queue ? 0 : i,
                 wait_names[j->wait], j->vectored ? "vectored" : "plain", j->bs / 1024, IODEPTH,
                 j->writes, j->reads, j->trims, j->trim_as_zeroes ? "write-zeroes" : "discards");
        /* Independent check: odd blocks hold the pattern on the image. */
        long long bad = -1;
        for (int k = 1; k < NBLOCKS && bad == -1; k += 2)
            bad = h_verify_file(t->image, j->base + (uint64_t)k * j->bs, j->bs,
                                60 + (uint32_t)j->index);
        CHECK(bad == -1, "%s: %s: job %d's data is on the image (pread)", t->name, label, i);
    }
out:
    for (int i = 0; i <= NJOBS; i++)
        if (region_used[i]) {
            blkio_unmap_mem_region(b, &regions[i]);
            blkio_free_mem_region(b, &regions[i]);
        }
    blkio_destroy(&b);
    for (int i = 0; i <= NJOBS; i++)
        free(fio_mem[i]);
}

int main(void)
{
    struct target targets[MAX_TARGETS];
    int n;

    alarm(300); /* hang guard: the default SIGALRM action ends the test */
    n = targets_init(targets, (off_t)DEV_SIZE, NJOBS);
    for (int i = 0; i < n; i++) {
        test_setup_phase(&targets[i]);
        test_jobs(&targets[i], false);
        test_jobs(&targets[i], true);
    }
    targets_fini(targets, n);
    return h_done();
}
