/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The call patterns of QEMU's block/blkio.c, replayed against each target
 * (io_uring buffered and direct; vhost-user on qemu-storage-daemon when the
 * driver exists):
 *
 *  - fd-passing probe: blkio_set_int(b, "fd", -1) in the created state
 *    (docs/contract/properties.md: io_uring, nvme-io_uring and vhost-vdpa accept it,
 *    vhost-user and vfio-pci refuse with -ENOENT "fd property not
 *    supported"), then QEMU opening the path itself and passing the fd, or
 *    falling back to "path";
 *  - open: the properties QEMU reads after connect and the limits
 *    validation of blkio_refresh_limits();
 *  - the bounce-buffer pool: one region allocated and mapped, buffers carved
 *    out of it for concurrent requests, the pool resized (unmap, free,
 *    alloc, map) and finally left for blkio_destroy to free;
 *  - RAM-block registration: memfd regions created outside the library
 *    (with fd_offset) mapped and unmapped while another thread runs I/O,
 *    then used directly as request buffers;
 *  - completions through the completion fd (fd handler: read the eventfd,
 *    then blkioq_do_io(q, &c, 0, 1, NULL) until it returns 0) alternating
 *    with polling (blkioq_do_io without waiting), toggling
 *    blkioq_set_completion_fd_enabled.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include "harness.h"
#include "targets.h"

#define DEV_SIZE (64ull << 20)
#define MIB (1ull << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* QEMU's BlkioCoData: one per request, the completion writes `ret`. */
struct req {
    bool done;
    int ret;
};

/* QEMU's completion fd handler: read (reset) the eventfd, then fetch
 * completions one at a time. Returns how many requests completed. */
static int fd_handler(struct blkioq *q, int fd)
{
    struct blkio_completion c;
    uint64_t val;
    int n = 0;
    if (read(fd, &val, sizeof(val)) < 0 && errno != EAGAIN)
        return -1;
    while (blkioq_do_io(q, &c, 0, 1, NULL) == 1) {
        struct req *r = c.user_data;
        r->done = true;
        r->ret = c.ret;
        n++;
    }
    return n;
}

/* Waits through the completion fd until `count` requests completed (at
 * most 30 s: a hang guard, not a timing check). Returns the number seen. */
static int wait_via_fd(struct blkioq *q, int fd, int count)
{
    int seen = 0;
    double deadline = now() + 30;
    while (seen < count && now() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 1000);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        r = fd_handler(q, fd);
        if (r < 0)
            return -1;
        seen += r;
    }
    return seen;
}

/* ------------------------------------------------------------------------
 * fd-passing probe (QEMU >= 8.1 blkio_virtio_blk_connect) */

static void test_fd_probe(const char *io_uring_path, const struct target *vu)
{
    static const struct {
        const char *driver;
        bool accepts_fd;
    } drivers[] = {
        {"io_uring", true},
        {"nvme-io_uring", true},
        {"virtio-blk-vhost-vdpa", true},
        {"virtio-blk-vhost-user", false},
        {"virtio-blk-vfio-pci", false},
    };
    struct blkio *b;
    int ret, fd, value;
    char *str = NULL;
    bool flag;

    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        b = NULL;
        ret = blkio_create(drivers[i].driver, &b);
        if (ret < 0) {
            h_skip("fd probe on %s: driver not available (%s)", drivers[i].driver,
                   blkio_get_error_msg());
            continue;
        }
        ret = blkio_set_int(b, "fd", -1);
        if (drivers[i].accepts_fd) {
            CHECK_OK(ret, "%s: QEMU's fd probe blkio_set_int(\"fd\", -1) succeeds",
                     drivers[i].driver);
            value = 0;
            CHECK_OK(blkio_get_int(b, "fd", &value), "%s: fd readable after the probe",
                     drivers[i].driver);
            CHECK_INT(value, -1, "%s: fd is -1 after the probe", drivers[i].driver);
        } else {
            CHECK_ERR(ret, -ENOENT, "fd property not supported",
                      "%s: QEMU's fd probe is refused, so QEMU sets \"path\"",
                      drivers[i].driver);
        }
        blkio_destroy(&b);
    }

    /* Probe succeeded: QEMU opens the path itself and passes the fd. */
    fd = open(io_uring_path, O_RDWR | O_CLOEXEC);
    b = NULL;
    if (fd < 0 || blkio_create("io_uring", &b) < 0) {
        h_report(false, strerror(errno), "open the scratch file for fd passing");
        if (fd >= 0)
            close(fd);
        return;
    }
    CHECK_OK(blkio_set_int(b, "fd", -1), "io_uring fd passing: probe");
    CHECK_OK(blkio_set_int(b, "fd", fd), "io_uring fd passing: set fd %d", fd);
    CHECK_OK(blkio_connect(b), "io_uring fd passing: connect");
    value = -2;
    blkio_get_int(b, "fd", &value);
    CHECK_INT(value, fd, "io_uring fd passing: fd property is QEMU's descriptor");
    if (blkio_get_str(b, "path", &str) == 0) {
        CHECK_STR(str, "", "io_uring fd passing: path stays empty");
        free(str);
    }
    flag = true;
    CHECK_OK(blkio_get_bool(b, "read-only", &flag), "io_uring fd passing: read-only readable");
    CHECK(!flag, "io_uring fd passing: read-only false for an O_RDWR descriptor");
    if (blkio_start(b) == 0) {
        struct blkioq *q = blkio_get_queue(b, 0);
        char wbuf[4096], rbuf[4096] = {0}; /* initialised: valgrind cannot see io_uring writes */
        h_fill(wbuf, sizeof(wbuf), 8192, 11);
        CHECK_INT(h_write(q, 8192, wbuf, sizeof(wbuf), 0), 0,
                  "io_uring fd passing: write through the passed fd");
        CHECK_INT(h_read(q, 8192, rbuf, sizeof(rbuf)), 0,
                  "io_uring fd passing: read through the passed fd");
        CHECK(memcmp(wbuf, rbuf, sizeof(wbuf)) == 0, "io_uring fd passing: data read back");
    } else {
        h_report(false, blkio_get_error_msg(), "io_uring fd passing: start");
    }
    blkio_destroy(&b);
    CHECK(!h_fd_is_open(fd), "io_uring fd passing: blkio_destroy closed the passed fd");

    /* A read-only open (QEMU opens O_RDONLY without BDRV_O_RDWR). */
    fd = open(io_uring_path, O_RDONLY | O_CLOEXEC);
    b = NULL;
    if (fd >= 0 && blkio_create("io_uring", &b) == 0) {
        blkio_set_int(b, "fd", -1);
        CHECK_OK(blkio_set_int(b, "fd", fd), "io_uring read-only fd passing: set fd");
        CHECK_OK(blkio_connect(b), "io_uring read-only fd passing: connect");
        flag = false;
        blkio_get_bool(b, "read-only", &flag);
        CHECK(flag, "io_uring read-only fd passing: read-only true for an O_RDONLY fd");
        if (blkio_start(b) == 0) {
            struct blkioq *q = blkio_get_queue(b, 0);
            char buf[512] = {0};
            CHECK_INT(h_read(q, 8192, buf, sizeof(buf)), 0,
                      "io_uring read-only fd passing: read works");
            CHECK_INT(h_write(q, 8192, buf, sizeof(buf), 0), -EBADF,
                      "io_uring read-only fd passing: write completes with -EBADF");
        }
        blkio_destroy(&b);
    } else if (fd >= 0) {
        close(fd);
    }

    /* Probe succeeded but QEMU's own open failed: it falls back to "path";
     * the probe's -1 must count as "fd unset". */
    b = NULL;
    if (blkio_create("io_uring", &b) == 0) {
        blkio_set_int(b, "fd", -1);
        CHECK_OK(blkio_set_str(b, "path", io_uring_path),
                 "io_uring: path after the fd probe");
        CHECK_OK(blkio_connect(b), "io_uring: connect with path after fd=-1 probe");
        value = -1;
        blkio_get_int(b, "fd", &value);
        CHECK(value >= 0, "io_uring: fd property shows the library's descriptor (%d)", value);
        blkio_destroy(&b);
    }

    /* vhost-user: the probe fails, QEMU sets the socket path and connects. */
    if (vu) {
        b = NULL;
        if (blkio_create(vu->driver, &b) == 0) {
            CHECK_ERR(blkio_set_int(b, "fd", -1), -ENOENT, "fd property not supported",
                      "vhost-user: fd probe refused");
            CHECK_OK(blkio_set_str(b, "path", vu->path), "vhost-user: path after the probe");
            CHECK_OK(blkio_connect(b), "vhost-user: connect after the refused probe");
            blkio_destroy(&b);
        }
    }
}

/* ------------------------------------------------------------------------
 * Open: properties QEMU reads, limits validation */

static bool is_power_of_2(int v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

struct qemu_state {
    bool needs_mem_regions, needs_mem_region_fd, may_pin;
    uint64_t mem_region_alignment;
    int request_alignment;
};

/* blkio_file_open + blkio_refresh_limits on a connected instance. */
static bool qemu_read_properties(const struct target *t, struct blkio *b, struct qemu_state *s)
{
    int req = 0, opt_io = -1, max_transfer = -1, buf_align = 0, opt_buf = 0, max_seg = 0;
    uint64_t capacity = 0;
    char why[200] = "";
    bool ok = true;

    ok &= CHECK_OK(blkio_get_bool(b, "needs-mem-regions", &s->needs_mem_regions),
                   "%s: needs-mem-regions", t->name);
    ok &= CHECK_OK(blkio_get_bool(b, "needs-mem-region-fd", &s->needs_mem_region_fd),
                   "%s: needs-mem-region-fd", t->name);
    ok &= CHECK_OK(blkio_get_uint64(b, "mem-region-alignment", &s->mem_region_alignment),
                   "%s: mem-region-alignment", t->name);
    ok &= CHECK_OK(blkio_get_bool(b, "may-pin-mem-regions", &s->may_pin),
                   "%s: may-pin-mem-regions", t->name);
    ok &= CHECK_OK(blkio_get_uint64(b, "capacity", &capacity), "%s: capacity", t->name);
    CHECK_INT(capacity, DEV_SIZE, "%s: capacity is the image size", t->name);

    if (blkio_get_int(b, "request-alignment", &req) < 0 ||
        blkio_get_int(b, "optimal-io-size", &opt_io) < 0 ||
        blkio_get_int(b, "max-transfer", &max_transfer) < 0 ||
        blkio_get_int(b, "buf-alignment", &buf_align) < 0 ||
        blkio_get_int(b, "optimal-buf-alignment", &opt_buf) < 0 ||
        blkio_get_int(b, "max-segments", &max_seg) < 0)
        snprintf(why, sizeof(why), "a limit property failed: %s", blkio_get_error_msg());
    else if (!is_power_of_2(req))
        snprintf(why, sizeof(why), "request-alignment %d not a power of 2", req);
    else if (opt_io < 0 || opt_io % req)
        snprintf(why, sizeof(why), "optimal-io-size %d not a multiple of %d", opt_io, req);
    else if (max_transfer < 0 || max_transfer % req || (opt_io && max_transfer % opt_io))
        snprintf(why, sizeof(why), "max-transfer %d", max_transfer);
    else if (buf_align < 1 || opt_buf < 1 || max_seg < 1)
        snprintf(why, sizeof(why), "buf-alignment %d optimal-buf-alignment %d max-segments %d",
                 buf_align, opt_buf, max_seg);
    ok &= h_report(why[0] == '\0', why,
                   "%s: limits pass QEMU's blkio_refresh_limits validation "
                   "(request-alignment %d, max-segments %d)",
                   t->name, req, max_seg);
    s->request_alignment = req;
    return ok;
}

/* ------------------------------------------------------------------------
 * Bounce-buffer pool */

#define NBUF 8

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return a > 1 ? (v + a - 1) / a * a : v;
}

/* Allocates and maps a pool of at least `bytes` + 128 KiB, like
 * blkio_resize_bounce_pool. */
static int pool_alloc(struct blkio *b, struct blkio_mem_region *pool, uint64_t bytes,
                      uint64_t align)
{
    int ret = blkio_alloc_mem_region(b, pool, align_up(bytes + 128 * 1024, align));
    if (ret < 0)
        return ret;
    ret = blkio_map_mem_region(b, pool);
    if (ret < 0) {
        blkio_free_mem_region(b, pool);
        memset(pool, 0, sizeof(*pool));
    }
    return ret;
}

static void test_bounce_pool(const struct target *t)
{
    static const size_t sizes[NBUF] = {4096,  65536, 8192,   131072,
                                       4096, 262144, 12288, 32768};
    struct qemu_state s;
    struct blkio_mem_region pool = {0};
    struct req reqs[NBUF];
    struct iovec iov[NBUF];
    uint64_t offs[NBUF];
    struct blkio *b;
    struct blkioq *q;
    int fd, fds_before = h_count_fds(), bad, submit_bad = 0;
    size_t total = 0;

    b = target_connect(t);
    if (!b)
        return;
    if (!qemu_read_properties(t, b, &s) || !target_start(t, &b, 1, 0)) {
        blkio_destroy(&b);
        return;
    }
    q = blkio_get_queue(b, 0);
    fd = blkioq_get_completion_fd(q);
    CHECK(fd >= 0, "%s: queue 0 has a completion fd (%d)", t->name, fd);
    blkioq_set_completion_fd_enabled(q, true);

    for (int i = 0; i < NBUF; i++)
        total += sizes[i];
    if (!CHECK_OK(pool_alloc(b, &pool, total, s.mem_region_alignment),
                  "%s: bounce pool of %zu bytes allocated and mapped", t->name, total))
        goto out;
    CHECK(pool.fd >= 0 && pool.len % (s.mem_region_alignment ? s.mem_region_alignment : 1) == 0,
          "%s: pool region has an fd and an aligned length", t->name);

    /* Carve the buffers back to back and write them concurrently. */
    {
        size_t pos = 0;
        for (int i = 0; i < NBUF; i++) {
            iov[i].iov_base = (char *)pool.addr + pos;
            iov[i].iov_len = sizes[i];
            offs[i] = (uint64_t)i * 3 * MIB + (uint64_t)i * 4096;
            h_fill(iov[i].iov_base, sizes[i], offs[i], 21);
            pos += sizes[i];
            reqs[i] = (struct req){0};
            blkioq_writev(q, offs[i], &iov[i], 1, &reqs[i], 0);
            /* blkio_submit_io: submit, reap nothing */
            submit_bad += blkioq_do_io(q, NULL, 0, 0, NULL) != 0;
        }
    }
    CHECK_INT(submit_bad, 0, "%s: blkioq_do_io(q, NULL, 0, 0, NULL) after each enqueue returns 0",
              t->name);
    CHECK_INT(wait_via_fd(q, fd, NBUF), NBUF,
              "%s: %d concurrent pool writes complete through the completion fd", t->name, NBUF);
    bad = 0;
    for (int i = 0; i < NBUF; i++)
        bad += !reqs[i].done || reqs[i].ret != 0;
    CHECK_INT(bad, 0, "%s: every pool write succeeded", t->name);
    bad = 0;
    for (int i = 0; i < NBUF; i++)
        bad += h_verify_file(t->image, offs[i], sizes[i], 21) != -1;
    CHECK_INT(bad, 0, "%s: the image holds every pool write (pread)", t->name);

    /* Read back into the buffers carved in the opposite order. */
    memset(pool.addr, 0xee, pool.len);
    {
        size_t pos = 0;
        for (int i = NBUF - 1; i >= 0; i--) {
            iov[i].iov_base = (char *)pool.addr + pos;
            pos += sizes[i];
            reqs[i] = (struct req){0};
            blkioq_readv(q, offs[i], &iov[i], 1, &reqs[i], 0);
            blkioq_do_io(q, NULL, 0, 0, NULL);
        }
    }
    CHECK_INT(wait_via_fd(q, fd, NBUF), NBUF, "%s: %d concurrent pool reads complete", t->name,
              NBUF);
    bad = 0;
    for (int i = 0; i < NBUF; i++)
        bad += !reqs[i].done || reqs[i].ret != 0 ||
               h_verify(iov[i].iov_base, sizes[i], offs[i], 21) != -1;
    CHECK_INT(bad, 0, "%s: pool reads return the data", t->name);

    /* A request larger than the pool: QEMU resizes it (no buffers are
     * allocated at that point). */
    blkio_unmap_mem_region(b, &pool);
    blkio_free_mem_region(b, &pool);
    memset(&pool, 0, sizeof(pool));
    if (CHECK_OK(pool_alloc(b, &pool, 4 * MIB, s.mem_region_alignment),
                 "%s: pool resized to 4 MiB + 128 KiB", t->name)) {
        struct iovec big = {pool.addr, 4 * MIB};
        struct req r = {0};
        h_fill(pool.addr, 4 * MIB, 40 * MIB, 22);
        blkioq_writev(q, 40 * MIB, &big, 1, &r, BLKIO_REQ_FUA);
        blkioq_do_io(q, NULL, 0, 0, NULL);
        wait_via_fd(q, fd, 1);
        CHECK(r.done && r.ret == 0, "%s: 4 MiB FUA write through the resized pool (ret %d)",
              t->name, r.ret);
        memset(pool.addr, 0, 4 * MIB);
        r = (struct req){0};
        blkioq_readv(q, 40 * MIB, &big, 1, &r, 0);
        blkioq_do_io(q, NULL, 0, 0, NULL);
        wait_via_fd(q, fd, 1);
        CHECK(r.done && r.ret == 0 && h_verify(pool.addr, 4 * MIB, 40 * MIB, 22) == -1,
              "%s: 4 MiB read through the resized pool returns the data", t->name);
    }

    /* write_zeroes with the flags blkio_co_pwrite_zeroes derives from
     * QEMU's BDRV_REQ_{FUA,MAY_UNMAP,NO_FALLBACK}; discard; flush. */
    {
        static const uint32_t zflags[] = {
            BLKIO_REQ_NO_UNMAP,
            0,
            BLKIO_REQ_FUA | BLKIO_REQ_NO_UNMAP,
            BLKIO_REQ_FUA,
            BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK,
            BLKIO_REQ_NO_FALLBACK,
        };
        struct req zr[6] = {{0}}, dr = {0}, fr = {0};
        uint8_t *zero_check = malloc(64 * 1024);
        int zbad = 0;
        for (int i = 0; i < 6; i++) {
            blkioq_write_zeroes(q, 40 * MIB + (uint64_t)i * 128 * 1024, 64 * 1024, &zr[i],
                                zflags[i]);
            blkioq_do_io(q, NULL, 0, 0, NULL);
        }
        blkioq_discard(q, 44 * MIB - 1 * MIB, 1 * MIB, &dr, 0);
        blkioq_do_io(q, NULL, 0, 0, NULL);
        CHECK_INT(wait_via_fd(q, fd, 7), 7, "%s: write-zeroes x6 and discard complete", t->name);
        for (int i = 0; i < 6; i++)
            zbad += !zr[i].done || zr[i].ret != 0;
        CHECK_INT(zbad, 0, "%s: write-zeroes with each QEMU flag mapping succeeded", t->name);
        CHECK(dr.done && dr.ret == 0, "%s: discard succeeded (ret %d)", t->name, dr.ret);
        blkioq_flush(q, &fr, 0);
        blkioq_do_io(q, NULL, 0, 0, NULL);
        wait_via_fd(q, fd, 1);
        CHECK(fr.done && fr.ret == 0, "%s: flush succeeded (ret %d)", t->name, fr.ret);
        zbad = 0;
        for (int i = 0; i < 6; i++) {
            int zfd = open(t->image, O_RDONLY);
            ssize_t n = pread(zfd, zero_check, 64 * 1024,
                              (off_t)(40 * MIB + (uint64_t)i * 128 * 1024));
            close(zfd);
            zbad += n != 64 * 1024 || h_verify_byte(zero_check, 64 * 1024, 0) != -1;
            /* the neighbouring 64 KiB keep the FUA write's data */
            zbad += h_verify_file(t->image, 40 * MIB + (uint64_t)i * 128 * 1024 + 64 * 1024,
                                  64 * 1024, 22) != -1;
        }
        CHECK_INT(zbad, 0, "%s: zeroed ranges read as zeroes, neighbours intact (pread)",
                  t->name);
        free(zero_check);
    }

out:
    /* The pool stays allocated and mapped: blkio_destroy frees it. */
    blkio_destroy(&b);
    CHECK_INT(h_count_fds(), fds_before,
              "%s: blkio_destroy releases the pool's memfd and every other descriptor", t->name);
}

/* ------------------------------------------------------------------------
 * RAM-block registration while another thread does I/O */

struct io_worker {
    struct blkioq *q;
    void *buf;
    size_t len;
    uint64_t base;
    bool stop; /* both accessed with __atomic builtins */
    int loops;
    int errors;
};

static void *io_worker_main(void *arg)
{
    struct io_worker *w = arg;
    while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
        uint64_t off = w->base + (uint64_t)(w->loops % 16) * w->len;
        uint32_t seed = 100 + (uint32_t)w->loops;
        struct blkio_completion c;
        h_fill(w->buf, w->len, off, seed);
        blkioq_write(w->q, off, w->buf, w->len, NULL, 0);
        if (blkioq_do_io(w->q, &c, 1, 1, NULL) != 1 || c.ret != 0)
            w->errors++;
        memset(w->buf, 0, w->len);
        blkioq_read(w->q, off, w->buf, w->len, NULL, 0);
        if (blkioq_do_io(w->q, &c, 1, 1, NULL) != 1 || c.ret != 0 ||
            h_verify(w->buf, w->len, off, seed) != -1)
            w->errors++;
        __atomic_store_n(&w->loops, w->loops + 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_external_regions(const struct target *t)
{
    struct blkio_mem_region worker_region = {0};
    struct io_worker w = {0};
    struct qemu_state s;
    pthread_t thread;
    struct blkio *b;
    struct blkioq *q;
    int map_failures = 0, rounds = 0, ret;
    bool double_map_checked = false;

    b = target_connect(t);
    if (!b)
        return;
    memset(&s, 0, sizeof(s));
    blkio_get_uint64(b, "mem-region-alignment", &s.mem_region_alignment);
    if (!target_start(t, &b, 2, 0))
        return;
    q = blkio_get_queue(b, 1);

    if (!CHECK_OK(blkio_alloc_mem_region(b, &worker_region, 256 * 1024),
                  "%s: region for the I/O thread", t->name) ||
        !CHECK_OK(blkio_map_mem_region(b, &worker_region), "%s: map it", t->name)) {
        blkio_destroy(&b);
        return;
    }
    w.q = q;
    w.buf = worker_region.addr;
    w.len = 64 * 1024;
    w.base = 8 * MIB;
    if (pthread_create(&thread, NULL, io_worker_main, &w) != 0) {
        h_report(false, strerror(errno), "%s: start the I/O thread", t->name);
        blkio_destroy(&b);
        return;
    }

    /* Main thread: RAM blocks come and go (memory hotplug, bdrv_register_buf)
     * until both sides did enough rounds to overlap. */
    for (double deadline = now() + 60;
         (rounds < 40 || __atomic_load_n(&w.loops, __ATOMIC_RELAXED) < 64) && now() < deadline;
         rounds++) {
        int mfd = memfd_create("qemu-test-ram", MFD_CLOEXEC);
        void *whole, *view;
        struct blkio_mem_region ra, rb;
        if (mfd < 0 || ftruncate(mfd, 2 * MIB) < 0) {
            map_failures++;
            break;
        }
        whole = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        view = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, MIB);
        ra = (struct blkio_mem_region){.addr = whole, .len = 2 * MIB, .fd = mfd};
        rb = (struct blkio_mem_region){.addr = view, .len = MIB, .fd = mfd, .fd_offset = MIB};
        map_failures += blkio_map_mem_region(b, &ra) != 0;
        map_failures += blkio_map_mem_region(b, &rb) != 0;
        if (!double_map_checked) {
            CHECK_ERR(blkio_map_mem_region(b, &ra), -EINVAL, "memory region already mapped",
                      "%s: mapping the same RAM block twice is refused", t->name);
            double_map_checked = true;
        }
        blkio_unmap_mem_region(b, &rb);
        blkio_unmap_mem_region(b, &ra);
        munmap(view, MIB);
        munmap(whole, 2 * MIB);
        close(mfd);
    }
    __atomic_store_n(&w.stop, true, __ATOMIC_RELAXED);
    pthread_join(thread, NULL);
    CHECK_INT(map_failures, 0, "%s: %d rounds of mapping/unmapping external memfd regions "
              "(whole and at fd_offset 1 MiB) while another thread does I/O", t->name, rounds);
    CHECK(w.loops >= 64 && w.errors == 0,
          "%s: the I/O thread's %d verified write/read rounds all succeeded (%d errors)",
          t->name, w.loops, w.errors);

    /* Guest RAM used directly as request buffers (BDRV_REQ_REGISTERED_BUF):
     * the region is a view at fd_offset 1 MiB; the data is filled and
     * checked through a second mapping of the whole memfd. */
    {
        int mfd = memfd_create("qemu-test-ram", MFD_CLOEXEC);
        uint8_t *whole = MAP_FAILED, *view = MAP_FAILED;
        struct blkio_mem_region rv;
        struct blkio_completion c;
        if (mfd >= 0 && ftruncate(mfd, 2 * MIB) == 0) {
            whole = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
            view = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, MIB);
        }
        if (whole == MAP_FAILED || view == MAP_FAILED) {
            h_report(false, strerror(errno), "%s: create a memfd RAM block", t->name);
        } else {
            struct blkioq *q0 = blkio_get_queue(b, 0);
            rv = (struct blkio_mem_region){.addr = view, .len = MIB, .fd = mfd, .fd_offset = MIB};
            ret = blkio_map_mem_region(b, &rv);
            CHECK_OK(ret, "%s: map a RAM-block view at fd_offset 1 MiB", t->name);
            h_fill(whole + MIB, MIB, 30 * MIB, 31);
            blkioq_write(q0, 30 * MIB, view, MIB, NULL, 0);
            CHECK(blkioq_do_io(q0, &c, 1, 1, NULL) == 1 && c.ret == 0,
                  "%s: write from the RAM-block view", t->name);
            CHECK(h_verify_file(t->image, 30 * MIB, MIB, 31) == -1,
                  "%s: the image holds what was written through the other mapping", t->name);
            memset(whole + MIB, 0, MIB);
            blkioq_read(q0, 30 * MIB, view, MIB, NULL, 0);
            CHECK(blkioq_do_io(q0, &c, 1, 1, NULL) == 1 && c.ret == 0 &&
                      h_verify(whole + MIB, MIB, 30 * MIB, 31) == -1,
                  "%s: a read into the view is visible through the other mapping", t->name);
            blkio_unmap_mem_region(b, &rv);
        }
        if (view != MAP_FAILED)
            munmap(view, MIB);
        if (whole != MAP_FAILED)
            munmap(whole, 2 * MIB);
        if (mfd >= 0)
            close(mfd);
    }

    /* QEMU refuses unaligned RAM blocks itself; the library must too. */
    if (s.mem_region_alignment > 1) {
        struct blkio_mem_region bad = worker_region;
        bad.addr = (char *)worker_region.addr + 1;
        bad.len = (size_t)s.mem_region_alignment;
        ret = blkio_map_mem_region(b, &bad);
        CHECK(ret == -EINVAL && strstr(blkio_get_error_msg(), "violates mem-region-alignment"),
              "%s: a region at an unaligned address is refused (%d \"%s\")", t->name, ret,
              blkio_get_error_msg());
    }

    blkio_unmap_mem_region(b, &worker_region);
    blkio_free_mem_region(b, &worker_region);
    blkio_destroy(&b);
}

/* ------------------------------------------------------------------------
 * Completion fd enabled/disabled: fd handler vs. polling */

static void test_completion_fd_toggle(const struct target *t)
{
    enum { N = 64, BS = 4096 };
    struct blkio_mem_region region = {0};
    struct blkio *b = target_open(t);
    struct blkioq *q;
    int fd, flags, via_fd = 0, via_poll = 0, bad = 0, spurious = 0;

    if (!b)
        return;
    q = blkio_get_queue(b, 0);
    fd = blkioq_get_completion_fd(q);
    flags = fcntl(fd, F_GETFL);
    CHECK(flags >= 0 && (flags & O_NONBLOCK), "%s: the completion fd is non-blocking", t->name);
    if (!CHECK_OK(blkio_alloc_mem_region(b, &region, N * BS), "%s: buffer region", t->name) ||
        !CHECK_OK(blkio_map_mem_region(b, &region), "%s: map it", t->name)) {
        blkio_destroy(&b);
        return;
    }

    for (int i = 0; i < N; i++) {
        bool enabled = (i / 4) % 2 == 0;
        char *buf = (char *)region.addr + (size_t)i * BS;
        struct blkio_completion c = {0};
        int got = 0;
        double deadline = now() + 30;

        blkioq_set_completion_fd_enabled(q, enabled);
        h_fill(buf, BS, 16 * MIB + (uint64_t)i * BS, 41);
        blkioq_write(q, 16 * MIB + (uint64_t)i * BS, buf, BS, (void *)(uintptr_t)(i + 1), 0);
        if (blkioq_do_io(q, NULL, 0, 0, NULL) != 0)
            bad++;
        while (got == 0 && now() < deadline) {
            if (enabled) {
                /* aio fd handler: wait for the fd, reset it, fetch */
                struct pollfd p = {.fd = fd, .events = POLLIN};
                uint64_t val;
                if (poll(&p, 1, 1000) <= 0)
                    continue;
                if (read(fd, &val, sizeof(val)) < 0 && errno != EAGAIN)
                    break;
                got = blkioq_do_io(q, &c, 0, 1, NULL);
                spurious += got == 0;
            } else {
                /* aio poll handler: non-blocking fetch, busy loop */
                got = blkioq_do_io(q, &c, 0, 1, NULL);
            }
        }
        if (got != 1 || c.ret != 0 || c.user_data != (void *)(uintptr_t)(i + 1))
            bad++;
        else if (enabled)
            via_fd++;
        else
            via_poll++;
    }
    CHECK_INT(bad, 0, "%s: %d writes completed via the fd (enabled) and %d by polling "
              "(disabled), each with its user_data (%d spurious wake-ups)",
              t->name, via_fd, via_poll, spurious);
    CHECK(h_verify_file(t->image, 16 * MIB, N * BS, 41) == -1,
          "%s: the image holds the %d writes", t->name, N);
    {
        uint64_t val;
        ssize_t n = read(fd, &val, sizeof(val));
        CHECK(n == 8 || (n < 0 && errno == EAGAIN),
              "%s: reading the drained completion fd does not block", t->name);
    }
    blkio_unmap_mem_region(b, &region);
    blkio_free_mem_region(b, &region);
    blkio_destroy(&b);
}

int main(void)
{
    struct target targets[MAX_TARGETS];
    const struct target *vu = NULL;
    int n;

    alarm(300); /* hang guard: the default SIGALRM action ends the test */
    n = targets_init(targets, (off_t)DEV_SIZE, 2);
    for (int i = 0; i < n; i++)
        if (!target_is_io_uring(&targets[i]))
            vu = &targets[i];
    test_fd_probe(targets[0].path, vu);
    for (int i = 0; i < n; i++) {
        test_bounce_pool(&targets[i]);
        test_external_regions(&targets[i]);
        test_completion_fd_toggle(&targets[i]);
    }
    targets_fini(targets, n);
    return h_done();
}
