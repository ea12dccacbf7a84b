/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * One benchmark program for every libblkio.so.1 (ours, upstream's) and for a
 * raw io_uring loop, so that the columns of benches/run.sh differ only in the
 * library the dynamic loader picked (LD_LIBRARY_PATH). It is compiled once
 * against include/blkio.h; the path of the libblkio object actually loaded is
 * printed (dladdr on blkio_create) so that a wrong column cannot go unseen.
 *
 *   bench TARGET MODE QD BS OP COUNT SECONDS QUEUES
 *
 * TARGET  lib:DRIVER:PATH (blkio_create(DRIVER), property path=PATH),
 *         raw:PATH or rawfixed:PATH (io_uring by hand, the second with the
 *         file registered and IOSQE_FIXED_FILE, as a tuned program does)
 * MODE    block  blkioq_do_io(min=1) / io_uring_enter(min_complete=1)
 *         event  blkioq_do_io(NULL, 0, 0) to submit, poll(2) on the
 *                completion fd, read its 8 bytes, blkioq_do_io(c, 0, n)
 *         batch  submit QD, reap with min = max = requests in flight
 * OP      randread, randwrite, read (sequential)
 * COUNT   stop after this many I/Os (0: run SECONDS)
 * QUEUES  queues, one thread each (library and raw alike)
 *
 * Prints one line: "ios=N secs=S iops=I lib=PATH".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "blkio.h"

enum mode { BLOCK, EVENT, BATCH };

static struct {
    enum mode mode;
    int qd, queues, write, random;
    size_t bs;
    uint64_t count, size;
    double seconds;
    const char *path;
    int raw, fixed;
    struct blkio *b;
    char *buf;
} cfg;

static void die(const char *what, int err)
{
    fprintf(stderr, "bench: %s: %s (%s)\n", what, strerror(err < 0 ? -err : err),
            cfg.raw ? "" : blkio_get_error_msg());
    exit(1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* xorshift offsets, block aligned, inside the target */
static uint64_t next_offset(uint64_t *state, uint64_t *seq)
{
    uint64_t blocks = cfg.size / cfg.bs;
    if (!cfg.random) {
        uint64_t o = *seq;
        *seq = (*seq + 1) % blocks;
        return o * cfg.bs;
    }
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (x % blocks) * cfg.bs;
}

struct result {
    uint64_t ios;
    double secs;
};

/* ---- the library side ---------------------------------------------------- */

static void lib_queue(struct blkioq *q, char *buf, int slot, uint64_t off)
{
    void *p = buf + (size_t)slot * cfg.bs;
    if (cfg.write)
        blkioq_write(q, off, p, cfg.bs, (void *)(uintptr_t)slot, 0);
    else
        blkioq_read(q, off, p, cfg.bs, (void *)(uintptr_t)slot, 0);
}

static void *lib_thread(void *arg)
{
    int index = (int)(uintptr_t)arg;
    struct blkioq *q = blkio_get_queue(cfg.b, index);
    struct blkio_completion done[256];
    char *buf = cfg.buf + (size_t)index * cfg.qd * cfg.bs;
    uint64_t state = 0x9e3779b97f4a7c15ull + index, seq = 0;
    uint64_t ios = 0, next_check = 64;
    int in_flight = cfg.qd, stopping = 0, fd = -1;
    struct result *r = calloc(1, sizeof(*r));

    if (!q)
        die("blkio_get_queue", EINVAL);
    if (cfg.mode == EVENT) {
        fd = blkioq_get_completion_fd(q);
        blkioq_set_completion_fd_enabled(q, true);
    }
    double start = now();
    for (int s = 0; s < cfg.qd; s++)
        lib_queue(q, buf, s, next_offset(&state, &seq));
    while (in_flight > 0) {
        int n;
        if (cfg.mode == BLOCK) {
            n = blkioq_do_io(q, done, 1, in_flight, NULL);
        } else if (cfg.mode == BATCH) {
            n = blkioq_do_io(q, done, in_flight, in_flight, NULL);
        } else {
            n = blkioq_do_io(q, NULL, 0, 0, NULL);
            if (n < 0)
                die("blkioq_do_io", n);
            for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                uint64_t v;
                if (poll(&p, 1, -1) < 0)
                    die("poll", errno);
                if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    die("read completion fd", errno);
                n = blkioq_do_io(q, done, 0, in_flight, NULL);
                if (n != 0)
                    break;
            }
        }
        if (n < 0)
            die("blkioq_do_io", n);
        ios += n;
        if (!stopping) {
            if (cfg.count)
                stopping = ios >= cfg.count;
            else if (ios >= next_check) {
                next_check = ios + 64;
                stopping = now() - start >= cfg.seconds;
            }
        }
        for (int i = 0; i < n; i++) {
            if (done[i].ret != 0)
                die("request", done[i].ret);
            if (stopping)
                in_flight--;
            else
                lib_queue(q, buf, (int)(uintptr_t)done[i].user_data,
                          next_offset(&state, &seq));
        }
    }
    r->ios = ios;
    r->secs = now() - start;
    return r;
}

static void lib_setup(const char *driver)
{
    struct blkio_mem_region region;
    int ret;
    Dl_info info;

    if (dladdr((void *)blkio_create, &info) && info.dli_fname)
        printf("lib=%s ", info.dli_fname);
    if ((ret = blkio_create(driver, &cfg.b)) < 0)
        die("blkio_create", ret);
    if ((ret = blkio_set_str(cfg.b, "path", cfg.path)) < 0)
        die("path", ret);
    if ((ret = blkio_connect(cfg.b)) < 0)
        die("blkio_connect", ret);
    if ((ret = blkio_set_int(cfg.b, "num-queues", cfg.queues)) < 0)
        die("num-queues", ret);
    if ((ret = blkio_start(cfg.b)) < 0)
        die("blkio_start", ret);
    if ((ret = blkio_get_uint64(cfg.b, "capacity", &cfg.size)) < 0)
        die("capacity", ret);
    size_t len = (size_t)cfg.queues * cfg.qd * cfg.bs;
    len = (len + 2 * 1024 * 1024 - 1) & ~(size_t)(2 * 1024 * 1024 - 1);
    if ((ret = blkio_alloc_mem_region(cfg.b, &region, len)) < 0)
        die("blkio_alloc_mem_region", ret);
    if ((ret = blkio_map_mem_region(cfg.b, &region)) < 0)
        die("blkio_map_mem_region", ret);
    cfg.buf = region.addr;
}

/* ---- the raw io_uring side ---------------------------------------------- */

struct ring {
    int fd, file;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned pending;
};

static void ring_init(struct ring *r, int file)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    r->fd = (int)syscall(__NR_io_uring_setup, 128, &p);
    if (r->fd < 0)
        die("io_uring_setup", errno);
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_len > sq_len)
        sq_len = cq_len;
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED || !(p.features & IORING_FEAT_SINGLE_MMAP))
        die("mmap sq ring", errno);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED)
        die("mmap sqes", errno);
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(sq + p.cq_off.head);
    r->cq_tail = (unsigned *)(sq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(sq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
    r->file = file;
    if (cfg.fixed) {
        if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_FILES, &file, 1) < 0)
            die("IORING_REGISTER_FILES", errno);
        r->file = 0;
    }
    r->pending = 0;
}

static void raw_queue(struct ring *r, char *buf, int slot, uint64_t off)
{
    unsigned tail = *r->sq_tail, i = tail & *r->sq_mask;
    struct io_uring_sqe *e = &r->sqes[i];
    memset(e, 0, sizeof(*e));
    e->opcode = cfg.write ? IORING_OP_WRITE : IORING_OP_READ;
    e->flags = cfg.fixed ? IOSQE_FIXED_FILE : 0;
    e->fd = r->file;
    e->off = off;
    e->addr = (uintptr_t)(buf + (size_t)slot * cfg.bs);
    e->len = (unsigned)cfg.bs;
    e->user_data = (unsigned)slot;
    r->sq_array[i] = i;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    r->pending++;
}

static void *raw_thread(void *arg)
{
    int index = (int)(uintptr_t)arg;
    struct ring ring;
    char *buf = cfg.buf + (size_t)index * cfg.qd * cfg.bs;
    uint64_t state = 0x9e3779b97f4a7c15ull + index, seq = 0;
    uint64_t ios = 0, next_check = 64;
    int in_flight = cfg.qd, stopping = 0;
    int slots[256];
    struct result *res = calloc(1, sizeof(*res));
    int file = open(cfg.path, O_RDWR | O_CLOEXEC);

    if (file < 0)
        die("open", errno);
    ring_init(&ring, file);
    double start = now();
    for (int s = 0; s < cfg.qd; s++)
        raw_queue(&ring, buf, s, next_offset(&state, &seq));
    while (in_flight > 0) {
        unsigned want = cfg.mode == BATCH ? (unsigned)in_flight : 1;
        if (syscall(__NR_io_uring_enter, ring.fd, ring.pending, want, IORING_ENTER_GETEVENTS,
                    NULL, 0) < 0)
            die("io_uring_enter", errno);
        ring.pending = 0;
        unsigned head = *ring.cq_head, tail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
        int n = 0;
        for (; head != tail; head++) {
            struct io_uring_cqe *c = &ring.cqes[head & *ring.cq_mask];
            if (c->res != (int)cfg.bs)
                die("raw request", c->res);
            slots[n++] = (int)c->user_data;
        }
        __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
        ios += n;
        if (!stopping) {
            if (cfg.count)
                stopping = ios >= cfg.count;
            else if (ios >= next_check) {
                next_check = ios + 64;
                stopping = now() - start >= cfg.seconds;
            }
        }
        for (int i = 0; i < n; i++) {
            if (stopping)
                in_flight--;
            else
                raw_queue(&ring, buf, slots[i], next_offset(&state, &seq));
        }
    }
    res->ios = ios;
    res->secs = now() - start;
    close(ring.fd);
    close(file);
    return res;
}

static void raw_setup(void)
{
    int fd = open(cfg.path, O_RDONLY | O_CLOEXEC);
    off_t end;
    if (fd < 0)
        die("open", errno);
    end = lseek(fd, 0, SEEK_END);
    close(fd);
    cfg.size = (uint64_t)end;
    size_t len = (size_t)cfg.queues * cfg.qd * cfg.bs;
    cfg.buf = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
    memset(cfg.buf, 0, len);
    printf("lib=none ");
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: bench TARGET MODE QD BS OP COUNT SECONDS QUEUES\n");
        return 2;
    }
    char *target = argv[1];
    cfg.mode = !strcmp(argv[2], "block") ? BLOCK : !strcmp(argv[2], "event") ? EVENT : BATCH;
    cfg.qd = atoi(argv[3]);
    cfg.bs = (size_t)atol(argv[4]);
    cfg.write = !strcmp(argv[5], "randwrite");
    cfg.random = strcmp(argv[5], "read") != 0;
    cfg.count = strtoull(argv[6], NULL, 10);
    cfg.seconds = atof(argv[7]);
    cfg.queues = atoi(argv[8]);
    if (cfg.qd < 1 || cfg.qd > 128 || cfg.queues < 1 || cfg.queues > 16) {
        fprintf(stderr, "bench: QD 1..128, QUEUES 1..16\n");
        return 2;
    }
    if (!strncmp(target, "lib:", 4)) {
        char *driver = target + 4, *colon = strchr(driver, ':');
        if (!colon)
            return 2;
        *colon = '\0';
        cfg.path = colon + 1;
        lib_setup(driver);
    } else {
        cfg.raw = 1;
        cfg.fixed = !strncmp(target, "rawfixed:", 9);
        cfg.path = strchr(target, ':') + 1;
        raw_setup();
    }
    if (cfg.mode == EVENT && cfg.raw) {
        fprintf(stderr, "bench: the raw loop has no event mode\n");
        return 2;
    }
    pthread_t threads[16];
    for (int i = 0; i < cfg.queues; i++)
        pthread_create(&threads[i], NULL, cfg.raw ? raw_thread : lib_thread,
                       (void *)(uintptr_t)i);
    uint64_t ios = 0;
    double secs = 0;
    for (int i = 0; i < cfg.queues; i++) {
        struct result *r;
        pthread_join(threads[i], (void **)&r);
        ios += r->ios;
        if (r->secs > secs)
            secs = r->secs;
        free(r);
    }
    printf("ios=%llu secs=%.3f iops=%.0f\n", (unsigned long long)ios, secs, ios / secs);
    if (cfg.b)
        blkio_destroy(&cfg.b);
    return 0;
}
