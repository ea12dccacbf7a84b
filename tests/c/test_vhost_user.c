/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vhost-user against a real qemu-storage-daemon (docs/contract/properties.md
 * §5–6, docs/contract/requests.md §4–8, docs/contract/virtio.md §7).
 *
 * Every section starts its own daemon on a private socket in a scratch
 * directory and stops it by PID (also at exit, so a failed check never
 * leaves one behind). Without qemu-storage-daemon the program prints
 * "skip - ..." and exits 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

#define MIB (1024ull * 1024)
#define DRIVER "virtio-blk-vhost-user"

/* ------------------------------------------------------------------------
 * qemu-storage-daemon */

static char qsd[4096];

static bool find_qsd(void)
{
    const char *env = getenv("QEMU_STORAGE_DAEMON");
    const char *path = getenv("PATH");
    char dirs[4096];
    if (env && *env) {
        snprintf(qsd, sizeof(qsd), "%s", env);
        return access(qsd, X_OK) == 0;
    }
    snprintf(dirs, sizeof(dirs), "%s:/usr/bin:/usr/local/bin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(qsd, sizeof(qsd), "%s/qemu-storage-daemon", d);
        if (access(qsd, X_OK) == 0)
            return true;
    }
    return false;
}

struct daemon {
    pid_t pid;
    char dir[1024];
    char sock[1100];
    char image[1100];
    char pidfile[1100];
};

#define MAX_DAEMONS 8
static struct daemon *daemons[MAX_DAEMONS];

static void daemon_reap(struct daemon *d, int sig)
{
    if (d->pid > 0) {
        kill(d->pid, sig);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

static void daemons_atexit(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (daemons[i])
            daemon_reap(daemons[i], SIGKILL);
}

/* Starts a daemon exporting `kind` ("file": a raw image of `size` bytes,
 * "null": null-co reading zeroes, "throttle": a raw image behind a throttle
 * group allowing 2 requests per second) with extra export options. */
static bool daemon_start(struct daemon *d, const char *kind, uint64_t size,
                         const char *export_opts)
{
    char node[1400], export[1600], object[128] = "";
    char file_node[1400] = "";
    char *argv[16];
    int argc = 0, status;
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "%s/blkio-vu-XXXXXX", h_test_dir());
    if (!mkdtemp(d->dir))
        return h_report(false, strerror(errno), "create a daemon directory");
    snprintf(d->sock, sizeof(d->sock), "%s/vhost.sock", d->dir);
    snprintf(d->image, sizeof(d->image), "%s/disk.img", d->dir);
    snprintf(d->pidfile, sizeof(d->pidfile), "%s/qsd.pid", d->dir);
    if (strcmp(kind, "null") == 0) {
        snprintf(node, sizeof(node),
                 "driver=null-co,node-name=disk,size=%llu,read-zeroes=on",
                 (unsigned long long)size);
    } else {
        int fd = open(d->image, O_CREAT | O_RDWR, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
            return h_report(false, strerror(errno), "create %s", d->image);
        close(fd);
        if (strcmp(kind, "throttle") == 0) {
            snprintf(object, sizeof(object), "throttle-group,id=tg0,x-iops-total=2");
            snprintf(file_node, sizeof(file_node),
                     "driver=file,node-name=file0,filename=%s", d->image);
            snprintf(node, sizeof(node),
                     "driver=throttle,node-name=disk,throttle-group=tg0,file=file0");
        } else {
            snprintf(node, sizeof(node), "driver=file,node-name=disk,filename=%s",
                     d->image);
        }
    }
    snprintf(export, sizeof(export),
             "type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,"
             "addr.path=%s,%s",
             d->sock, export_opts);

    argv[argc++] = qsd;
    if (*object) {
        argv[argc++] = "--object";
        argv[argc++] = object;
        argv[argc++] = "--blockdev";
        argv[argc++] = file_node;
    }
    argv[argc++] = "--blockdev";
    argv[argc++] = node;
    argv[argc++] = "--export";
    argv[argc++] = export;
    argv[argc++] = "--pidfile";
    argv[argc++] = d->pidfile;
    argv[argc] = NULL;

    fflush(stdout);
    d->pid = fork();
    if (d->pid < 0)
        return h_report(false, strerror(errno), "fork");
    if (d->pid == 0) {
        char log[1200];
        snprintf(log, sizeof(log), "%s/qsd.log", d->dir);
        int fd = open(log, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(qsd, argv);
        _exit(127);
    }
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (!daemons[i]) {
            daemons[i] = d;
            break;
        }
    }
    /* The pid file appears once the export is listening. */
    for (int ms = 0; ms < 20000; ms += 10) {
        if (access(d->pidfile, F_OK) == 0)
            return true;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return h_report(false, "exited early (see its qsd.log)",
                            "start qemu-storage-daemon (%s, %s)", kind, export_opts);
        }
        usleep(10000);
    }
    return h_report(false, "no pid file after 20 s", "start qemu-storage-daemon");
}

static void daemon_stop(struct daemon *d)
{
    char cmd[1200];
    daemon_reap(d, SIGTERM);
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (daemons[i] == d)
            daemons[i] = NULL;
    snprintf(cmd, sizeof(cmd), "%s/qsd.log", d->dir);
    unlink(cmd);
    unlink(d->image);
    unlink(d->sock);
    unlink(d->pidfile);
    rmdir(d->dir);
}

/* ------------------------------------------------------------------------
 * Instances and buffers */

/* A connected (and with `start`, started) instance on `sock`. `ro` sets
 * read-only; queue options are set between connect and start. */
static struct blkio *vu_open(const char *sock, bool ro, int queue_size, int nq,
                             int npq, bool start)
{
    struct blkio *b = NULL;
    int ret;
    if ((ret = blkio_create(DRIVER, &b)) < 0 ||
        (ret = blkio_set_str(b, "path", sock)) < 0 ||
        (ret = blkio_set_bool(b, "read-only", ro)) < 0 ||
        (ret = blkio_connect(b)) < 0 ||
        (queue_size && (ret = blkio_set_int(b, "queue-size", queue_size)) < 0) ||
        (ret = blkio_set_int(b, "num-queues", nq)) < 0 ||
        (ret = blkio_set_int(b, "num-poll-queues", npq)) < 0 ||
        (start && (ret = blkio_start(b)) < 0)) {
        char details[300];
        snprintf(details, sizeof(details), "%d %s", ret, blkio_get_error_msg());
        h_report(false, details, "open %s (queue-size %d, %d+%d queues)", sock,
                 queue_size, nq, npq);
        blkio_destroy(&b);
        return NULL;
    }
    return b;
}

/* A mapped region; its memory is returned, the region stored in *r. */
static uint8_t *vu_buffer(struct blkio *b, struct blkio_mem_region *r, size_t len)
{
    if (blkio_alloc_mem_region(b, r, len) < 0 || blkio_map_mem_region(b, r) < 0) {
        h_report(false, blkio_get_error_msg(), "allocate and map %zu bytes", len);
        exit(h_done() | 1);
    }
    return r->addr;
}

/* Waits for `n` completions (no timeout); returns how many arrived. */
static int wait_n(struct blkioq *q, struct blkio_completion *c, int n)
{
    int got = blkioq_do_io(q, c, n, n, NULL);
    if (got != n)
        h_report(false, blkio_get_error_msg(), "do_io returned %d, wanted %d", got, n);
    return got;
}

/* Submits one request through `submit` and checks its completion. */
#define EXPECT(q, want_ret, want_msg, what, ...)                               \
    do {                                                                       \
        struct blkio_completion c_;                                            \
        __VA_ARGS__;                                                           \
        if (wait_n((q), &c_, 1) == 1)                                          \
            CHECK_REQ(c_.ret, c_.error_msg, (want_ret), (want_msg), "%s", (what)); \
    } while (0)

/* Waits for `want` completions into `c` (room for `want`), all the waits
 * together within the timeout `*t`; returns how many arrived (fewer when a
 * wait fails) and stores in *failed how many of them failed. */
static int collect(struct blkioq *q, struct blkio_completion *c, int want,
                   struct timespec *t, int *failed)
{
    int got = 0;
    *failed = 0;
    while (got < want) {
        int n = blkioq_do_io(q, c, want - got, want - got, t);
        if (n < 0)
            break;
        for (int i = 0; i < n; i++)
            *failed += c[i].ret < 0;
        got += n;
    }
    return got;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * Sections */

static void test_properties(void)
{
    struct daemon d;
    struct blkio *b = NULL;
    uint64_t u;
    int v;
    bool flag;
    char *s = NULL;
    if (!daemon_start(&d, "file", 2 * MIB, "writable=on"))
        return;

    CHECK_OK(blkio_create(DRIVER, &b), "create " DRIVER);
    /* Created state: stored defaults readable, computed ones -ENODEV. */
    CHECK_ERR(blkio_get_uint64(b, "capacity", &u), -ENODEV, "Device must be connected",
              "capacity needs a connection");
    CHECK_ERR(blkio_get_int(b, "max-queues", &v), -ENODEV, "Device must be connected",
              "max-queues needs a connection");
    CHECK_ERR(blkio_get_uint64(b, "max-mem-regions", &u), -ENODEV,
              "Device must be connected", "max-mem-regions needs a connection");
    static const struct { const char *name; int value; } created_ints[] = {
        {"buf-alignment", 1}, {"discard-alignment", 512}, {"discard-alignment-offset", 0},
        {"fd", -1}, {"max-queue-size", 32768}, {"max-segment-len", 0},
        {"max-segments", 1}, {"max-transfer", 0}, {"num-poll-queues", 0},
        {"num-queues", 1}, {"optimal-buf-alignment", 1}, {"optimal-io-alignment", 512},
        {"optimal-io-size", 0}, {"queue-size", 256}, {"request-alignment", 512},
    };
    for (size_t i = 0; i < sizeof(created_ints) / sizeof(created_ints[0]); i++) {
        v = -12345;
        blkio_get_int(b, created_ints[i].name, &v);
        CHECK_INT(v, created_ints[i].value, "created: %s", created_ints[i].name);
    }
    blkio_get_bool(b, "needs-mem-region-fd", &flag);
    CHECK(flag, "created: needs-mem-region-fd true");
    blkio_get_bool(b, "flush-needed", &flag);
    CHECK(flag, "created: flush-needed true");
    blkio_get_uint64(b, "mem-region-alignment", &u);
    CHECK_INT(u, 1, "created: mem-region-alignment");
    CHECK_ERR(blkio_set_int(b, "fd", -1), -ENOENT, "fd property not supported",
              "setting fd is refused (QEMU's fd-support probe)");
    CHECK_ERR(blkio_set_int(b, "queue-size", 64), -ENODEV, "Device must be connected",
              "queue-size is a connected-state setting");
    CHECK_ERR(blkio_set_int(b, "num-entries", 8), -ENOENT, "Unknown property name",
              "num-entries does not exist on virtio");
    CHECK_ERR(blkio_connect(b), -EINVAL, "One of path and fd must be set",
              "connect without path");
    CHECK_OK(blkio_set_str(b, "path", d.sock), "set path");
    CHECK_OK(blkio_connect(b), "connect");

    CHECK_ERR(blkio_set_int(b, "fd", 3), -EBUSY, "Cannot set property in connected state",
              "fd after connect");
    CHECK_ERR(blkio_set_str(b, "path", "/x"), -EBUSY,
              "Cannot set property in connected state", "path after connect");
    CHECK_ERR(blkio_set_int(b, "queue-size", 0), -EINVAL, "queue_size must be greater than 0",
              "queue-size 0");
    CHECK_ERR(blkio_set_int(b, "queue-size", 48), -EINVAL,
              "queue_size must be a power of two", "queue-size 48");
    CHECK_ERR(blkio_set_int(b, "queue-size", 65536), -EINVAL,
              "queue_size must be smaller than 32768", "queue-size 65536");
    CHECK_OK(blkio_set_int(b, "queue-size", 32768), "queue-size 32768 is accepted");
    CHECK_OK(blkio_set_int(b, "queue-size", 256), "queue-size back to 256");
    CHECK_ERR(blkio_set_int(b, "num-queues", -1), -EINVAL,
              "num_queues must be equal to or greater than 0", "num-queues -1");
    CHECK_ERR(blkio_set_int(b, "num-poll-queues", -1), -EINVAL,
              "num_poll_queues must be equal to or greater than 0", "num-poll-queues -1");

    /* docs/contract/properties.md §5.1: a 2 MiB raw image, default export options. */
    static const struct { const char *name; int value; } ints[] = {
        {"buf-alignment", 1}, {"discard-alignment", 512}, {"discard-alignment-offset", 0},
        {"fd", -1}, {"max-queue-size", 32768}, {"max-queues", 1}, {"max-segment-len", 0},
        {"max-segments", 126}, {"max-transfer", 0}, {"num-poll-queues", 0},
        {"num-queues", 1}, {"optimal-buf-alignment", 1}, {"optimal-io-alignment", 512},
        {"optimal-io-size", 512}, {"queue-size", 256}, {"request-alignment", 512},
    };
    static const struct { const char *name; uint64_t value; } u64s[] = {
        {"capacity", 2 * MIB}, {"max-discard-len", 16 * MIB},
        {"max-write-zeroes-len", 16 * MIB}, {"mem-region-alignment", 1},
    };
    static const struct { const char *name; bool value; } bools[] = {
        {"can-add-queues", false}, {"can-grow", false}, {"flush-needed", false},
        {"may-pin-mem-regions", true}, {"needs-mem-region-fd", true},
        {"needs-mem-regions", true}, {"read-only", false},
        {"supports-fua-natively", false}, {"supports-poll-queues", true},
    };
    for (int state = 0; state < 2; state++) {
        const char *st = state ? "started" : "connected";
        if (state)
            CHECK_OK(blkio_start(b), "start");
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
            v = -12345;
            CHECK_OK(blkio_get_int(b, ints[i].name, &v), "%s: get %s", st, ints[i].name);
            CHECK_INT(v, ints[i].value, "%s: %s", st, ints[i].name);
        }
        for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++) {
            u = 12345;
            CHECK_OK(blkio_get_uint64(b, u64s[i].name, &u), "%s: get %s", st, u64s[i].name);
            CHECK_INT(u, u64s[i].value, "%s: %s", st, u64s[i].name);
        }
        /* The daemon's GET_MAX_MEM_SLOTS answer: 32 from qemu-storage-daemon
         * 7.2 (Debian bookworm), 509 from 10.0 (trixie). */
        u = 12345;
        CHECK_OK(blkio_get_uint64(b, "max-mem-regions", &u), "%s: get max-mem-regions", st);
        CHECK(u == 32 || u == 509, "%s: max-mem-regions is %llu, expected 32 or 509", st,
              (unsigned long long)u);
        for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
            flag = !bools[i].value;
            CHECK_OK(blkio_get_bool(b, bools[i].name, &flag), "%s: get %s", st,
                     bools[i].name);
            CHECK_INT(flag, bools[i].value, "%s: %s", st, bools[i].name);
        }
        CHECK_OK(blkio_get_str(b, "driver", &s), "%s: get driver", st);
        CHECK_STR(s, DRIVER, "%s: driver", st);
        free(s);
        CHECK_OK(blkio_get_str(b, "path", &s), "%s: get path", st);
        CHECK_STR(s, d.sock, "%s: path", st);
        free(s);
    }
    CHECK_ERR(blkio_set_int(b, "queue-size", 64), -EBUSY,
              "Cannot set property in started state", "queue-size after start");
    CHECK_ERR(blkio_add_queue(b), -ENOTSUP,
              "Driver does not support dynamically adding queues", "add_queue");
    CHECK_ERR(blkio_add_poll_queue(b), -ENOTSUP,
              "Driver does not support dynamically adding queues", "add_poll_queue");
    CHECK(blkio_get_queue(b, 0) != NULL, "queue 0 exists");
    CHECK(blkio_get_queue(b, 1) == NULL, "queue 1 does not");
    CHECK(blkio_get_poll_queue(b, 0) == NULL, "no poll queue");
    blkio_destroy(&b);
    daemon_stop(&d);
}

static void test_start_checks(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkio_mem_region r;
    if (!daemon_start(&d, "file", 2 * MIB, "writable=on,num-queues=2"))
        return;

    b = vu_open(d.sock, false, 0, 0, 0, false);
    if (b) {
        CHECK_ERR(blkio_start(b), -EINVAL,
                  "At least one of num_queues and num_poll_queues must be greater than 0",
                  "start with no queues");
        blkio_destroy(&b);
    }
    b = vu_open(d.sock, false, 0, 2, 1, false);
    if (b) {
        int v = 0;
        blkio_get_int(b, "max-queues", &v);
        CHECK_INT(v, 2, "max-queues follows the export's num-queues");
        CHECK_ERR(blkio_start(b), -EINVAL,
                  "num_queues + num_poll_queues must not be greater than 2",
                  "start with more queues than the device has");
        blkio_destroy(&b);
    }
    b = vu_open(d.sock, false, 0, 1, 0, false);
    if (b) {
        CHECK_OK(blkio_alloc_mem_region(b, &r, 65536), "allocate a region before start");
        CHECK_ERR(blkio_map_mem_region(b, &r), -EBUSY, "Device must be started",
                  "map before start");
        CHECK_OK(blkio_start(b), "start");
        CHECK_OK(blkio_map_mem_region(b, &r), "map after start");
        CHECK_ERR(blkio_map_mem_region(b, &r), -EINVAL, "memory region already mapped",
                  "map twice");
        blkio_unmap_mem_region(b, &r);
        CHECK_OK(blkio_map_mem_region(b, &r), "map again after unmap");
        blkio_unmap_mem_region(b, &r);
        struct blkio_mem_region nofd = r;
        nofd.fd = -1;
        CHECK_ERR(blkio_map_mem_region(b, &nofd), -EIO, "Bad file descriptor (os error 9)",
                  "a region without fd cannot be mapped");
        blkio_free_mem_region(b, &r);
        blkio_destroy(&b);
    }
    daemon_stop(&d);
}

static void test_data(int queue_size)
{
    struct daemon d;
    struct blkio *b;
    struct blkioq *q;
    struct blkio_mem_region r;
    struct blkio_completion c[1024];
    uint8_t *buf;
    const size_t chunk = 64 * 1024;
    if (!daemon_start(&d, "file", 8 * MIB, "writable=on"))
        return;
    b = vu_open(d.sock, false, queue_size, 1, 0, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    q = blkio_get_queue(b, 0);
    buf = vu_buffer(b, &r, 2 * MIB);

    /* Patterns at many offsets, read back and seen in the image file. */
    static const uint64_t offs[] = {0, 512, 4096, 65536 + 512, MIB - 512, 3 * MIB,
                                    8 * MIB - 64 * 1024};
    bool all_ok = true;
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        h_fill(buf, chunk, offs[i], 1);
        all_ok &= h_write(q, offs[i], buf, chunk, 0) == 0;
        memset(buf, 0, chunk);
        all_ok &= h_read(q, offs[i], buf, chunk) == 0;
        all_ok &= h_verify(buf, chunk, offs[i], 1) == -1;
        all_ok &= h_verify_file(d.image, offs[i], chunk, 1) == -1;
    }
    CHECK(all_ok, "q%d: 64 KiB patterns at 7 offsets read back and reach the image",
          queue_size);

    /* 1024 requests in flight: the request backlog holds what the ring
     * cannot. Each writes its own 4 KiB. */
    for (int i = 0; i < 1024; i++) {
        h_fill(buf + (size_t)i * 2048, 2048, (uint64_t)i * 2048, 2);
        blkioq_write(q, (uint64_t)i * 2048, buf + (size_t)i * 2048, 2048,
                     (void *)(uintptr_t)(i + 1), 0);
    }
    int n = wait_n(q, c, 1024);
    bool seen[1025] = {false}, ok = n == 1024;
    for (int i = 0; i < n; i++) {
        uintptr_t id = (uintptr_t)c[i].user_data;
        ok &= c[i].ret == 0 && id >= 1 && id <= 1024 && !seen[id];
        if (id <= 1024)
            seen[id] = true;
    }
    CHECK(ok, "q%d: 1024 writes in flight all complete once with 0", queue_size);
    memset(buf, 0, 2 * MIB);
    for (int i = 0; i < 1024; i++)
        blkioq_read(q, (uint64_t)i * 2048, buf + (size_t)i * 2048, 2048, NULL, 0);
    n = wait_n(q, c, 1024);
    ok = n == 1024;
    for (int i = 0; i < n; i++)
        ok &= c[i].ret == 0;
    CHECK(ok && h_verify(buf, 2 * MIB, 0, 2) == -1,
          "q%d: 1024 reads in flight return the data", queue_size);

    /* readv/writev with several segments, including empty ones. */
    {
        struct iovec w[5] = {{buf, 512}, {buf + 4096, 0}, {buf + 8192, 1536},
                             {buf + 20000, 3072}, {buf + 40000, 0}};
        struct iovec rv[3] = {{buf + 100000, 1000}, {buf + 200000, 3096}, {buf + 300000, 1024}};
        h_fill(buf, 512, 16384, 3);
        h_fill(buf + 8192, 1536, 16384 + 512, 3);
        h_fill(buf + 20000, 3072, 16384 + 2048, 3);
        EXPECT(q, 0, NULL, "writev of 5 segments (2 empty)",
               blkioq_writev(q, 16384, w, 5, NULL, 0));
        memset(buf + 100000, 0, 300000);
        EXPECT(q, 0, NULL, "readv of 3 segments",
               blkioq_readv(q, 16384, rv, 3, NULL, 0));
        CHECK(h_verify(buf + 100000, 1000, 16384, 3) == -1 &&
                  h_verify(buf + 200000, 3096, 16384 + 1000, 3) == -1 &&
                  h_verify(buf + 300000, 1024, 16384 + 4096, 3) == -1,
              "q%d: readv segments hold the writev data", queue_size);
        CHECK(h_verify_file(d.image, 16384, 5120, 3) == -1, "writev data is in the image");
        EXPECT(q, 0, NULL, "readv with 0 iovecs", blkioq_readv(q, 0, rv, 0, NULL, 0));
        EXPECT(q, 0, NULL, "read of 0 bytes", blkioq_read(q, 0, buf, 0, NULL, 0));
    }

    /* write_zeroes with each flag combination, discard, flush, FUA. */
    static const uint32_t wz_flags[] = {0, BLKIO_REQ_NO_UNMAP, BLKIO_REQ_NO_FALLBACK,
                                        BLKIO_REQ_FUA,
                                        BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK | BLKIO_REQ_FUA};
    for (size_t i = 0; i < sizeof(wz_flags) / sizeof(wz_flags[0]); i++) {
        uint64_t off = 4 * MIB + i * 65536;
        h_fill(buf, 65536, off, 4);
        h_write(q, off, buf, 65536, 0);
        EXPECT(q, 0, NULL, "write_zeroes", blkioq_write_zeroes(q, off + 4096, 8192, NULL,
                                                               wz_flags[i]));
        memset(buf, 0xAA, 65536);
        h_read(q, off, buf, 65536);
        CHECK(h_verify(buf, 4096, off, 4) == -1 &&
                  h_verify_byte(buf + 4096, 8192, 0) == -1 &&
                  h_verify(buf + 12288, 65536 - 12288, off + 12288, 4) == -1,
              "write_zeroes flags %#x zeroes exactly its range", wz_flags[i]);
    }
    h_fill(buf, 65536, 5 * MIB, 5);
    h_write(q, 5 * MIB, buf, 65536, 0);
    EXPECT(q, 0, NULL, "discard 32 KiB", blkioq_discard(q, 5 * MIB, 32768, NULL, 0));
    memset(buf, 0xAA, 65536);
    h_read(q, 5 * MIB, buf, 65536);
    CHECK(h_verify(buf + 32768, 32768, 5 * MIB + 32768, 5) == -1,
          "discard leaves the neighbouring data");
    EXPECT(q, 0, NULL, "flush", blkioq_flush(q, NULL, 0));

    h_fill(buf, 8192, 6 * MIB, 6);
    blkioq_write(q, 6 * MIB, buf, 8192, (void *)77, BLKIO_REQ_FUA);
    {
        struct blkio_completion one[2];
        struct timespec zero = {0, 0};
        int got = blkioq_do_io(q, one, 1, 2, NULL);
        CHECK(got == 1 && one[0].ret == 0 && one[0].user_data == (void *)77,
              "FUA write: one completion with 0 and its user_data");
        got = blkioq_do_io(q, one, 0, 2, &zero);
        CHECK_INT(got, 0, "FUA write: no second completion");
    }
    CHECK(h_verify_file(d.image, 6 * MIB, 8192, 6) == -1, "FUA data is in the image");
    {
        struct iovec fv[2] = {{buf, 4096}, {buf + 4096, 4096}};
        EXPECT(q, 0, NULL, "writev FUA", blkioq_writev(q, 6 * MIB, fv, 2, NULL, BLKIO_REQ_FUA));
    }

    /* A FUA write followed by a read with min_completions 1 (the flush
     * queued while reaping must be submitted before do_io returns). */
    blkioq_write(q, 6 * MIB, buf, 4096, (void *)1, BLKIO_REQ_FUA);
    blkioq_read(q, 7 * MIB, buf + 65536, 4096, (void *)2, 0);
    {
        int total = 0, guard = 0;
        while (total < 2 && guard++ < 100) {
            int got = blkioq_do_io(q, c, 1, 2, NULL);
            if (got < 0)
                break;
            total += got;
        }
        CHECK_INT(total, 2, "FUA write + read complete with min_completions 1");
    }
    blkio_destroy(&b);
    daemon_stop(&d);
}

static void test_errors(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkioq *q;
    struct blkio_mem_region r;
    uint8_t *buf;
    if (!daemon_start(&d, "file", 2 * MIB, "writable=on"))
        return;
    b = vu_open(d.sock, false, 4, 1, 0, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    q = blkio_get_queue(b, 0);
    buf = vu_buffer(b, &r, 65536);

    EXPECT(q, -EINVAL, "invalid start offset", "read at 100",
           blkioq_read(q, 100, buf, 512, NULL, 0));
    EXPECT(q, -EINVAL, "invalid start offset", "write at 100",
           blkioq_write(q, 100, buf, 512, NULL, 0));
    EXPECT(q, -EINVAL, "BLKIO_REQ_FUA is invalid for this request type", "read with FUA",
           blkioq_read(q, 0, buf, 512, NULL, BLKIO_REQ_FUA));
    EXPECT(q, -EINVAL, "unsupported bits in request flags", "flag 0x10",
           blkioq_read(q, 0, buf, 512, NULL, 0x10));
    EXPECT(q, -EINVAL, "invalid len or start offset", "write_zeroes at 100",
           blkioq_write_zeroes(q, 100, 512, NULL, 0));
    EXPECT(q, -EINVAL, "invalid len or start offset", "write_zeroes of 100 bytes",
           blkioq_write_zeroes(q, 0, 100, NULL, 0));
    EXPECT(q, -EINVAL, "invalid len or start offset", "discard of 100 bytes",
           blkioq_discard(q, 0, 100, NULL, 0));
    EXPECT(q, -EINVAL, "invalid len or start offset", "write_zeroes of 2^32 sectors",
           blkioq_write_zeroes(q, 0, 512ull << 32, NULL, 0));
    EXPECT(q, -EINVAL, "invalid len or start offset", "discard of 2^32 sectors",
           blkioq_discard(q, 0, 512ull << 32, NULL, 0));
    EXPECT(q, -ENOTSUP, "request not supported for this driver", "report_zones",
           blkioq_report_zones(q, 0, NULL, 0, NULL, 0));
    EXPECT(q, -ENOTSUP, "request not supported for this driver", "reset_zone",
           blkioq_reset_zone(q, 0, NULL, 0));
    EXPECT(q, -ENOTSUP, "request not supported for this driver", "finish_all_zones",
           blkioq_finish_all_zones(q, NULL, 0));
    EXPECT(q, -EIO, NULL, "read at capacity (device error)",
           blkioq_read(q, 2 * MIB, buf, 512, NULL, 0));
    EXPECT(q, -EIO, NULL, "read straddling capacity",
           blkioq_read(q, 2 * MIB - 512, buf, 1024, NULL, 0));
    EXPECT(q, -EIO, NULL, "read of 100 bytes (device error)",
           blkioq_read(q, 0, buf, 100, NULL, 0));
    {
        struct iovec v[3] = {{buf, 512}, {buf + 512, 512}, {buf + 1024, 512}};
        struct blkio_completion c[2];
        /* 3 segments need 5 descriptors on a queue of 4: refused, and the
         * queue keeps working. */
        blkioq_readv(q, 0, v, 3, (void *)1, 0);
        blkioq_read(q, 0, buf, 512, (void *)2, 0);
        int n = blkioq_do_io(q, c, 2, 2, NULL);
        CHECK_INT(n, 2, "too many segments: both requests complete");
        if (n == 2) {
            int bad = c[0].user_data == (void *)1 ? 0 : 1;
            CHECK_REQ(c[bad].ret, c[bad].error_msg, -EINVAL,
                      "request needs more descriptors than queue-size allows",
                      "readv with more segments than the queue has descriptors");
            CHECK_INT(c[1 - bad].ret, 0, "the read after it succeeds");
        }
        EXPECT(q, 0, NULL, "readv of 2 segments fits a queue of 4",
               blkioq_readv(q, 0, v, 2, NULL, 0));
    }
    {
        /* 16 reads on a queue of 4: the backlog feeds the ring. */
        struct blkio_completion c[16];
        for (int i = 0; i < 16; i++)
            blkioq_read(q, (uint64_t)i * 512, buf + i * 512, 512, NULL, 0);
        int n = wait_n(q, c, 16);
        bool ok = n == 16;
        for (int i = 0; i < n; i++)
            ok &= c[i].ret == 0;
        CHECK(ok, "16 reads on queue-size 4 complete");
    }
    {
        /* min_completions above what is outstanding. */
        struct blkio_completion c[2];
        CHECK_ERR(blkioq_do_io(q, c, 1, 2, NULL), -EINVAL,
                  "min_completions is larger than total outstanding requests",
                  "do_io with nothing outstanding");
    }
    blkio_destroy(&b);
    daemon_stop(&d);
}

static void test_read_only(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkioq *q;
    struct blkio_mem_region r;
    uint8_t *buf;
    if (!daemon_start(&d, "null", 4 * MIB, "writable=off"))
        return;
    b = vu_open(d.sock, false, 0, 1, 0, false);
    if (b) {
        CHECK_ERR(blkio_start(b), -EROFS, "Device is read-only",
                  "read-only export, read-only false: start fails");
        bool ro = true;
        blkio_get_bool(b, "read-only", &ro);
        CHECK(!ro, "read-only is not taken from the device");
        blkio_destroy(&b);
    }
    b = vu_open(d.sock, true, 0, 1, 0, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    q = blkio_get_queue(b, 0);
    buf = vu_buffer(b, &r, 65536);
    memset(buf, 0xAA, 4096);
    EXPECT(q, 0, NULL, "read-only: read", blkioq_read(q, 4096, buf, 4096, NULL, 0));
    CHECK(h_verify_byte(buf, 4096, 0) == -1, "null-co reads zeroes");
    EXPECT(q, -EBADF, "device is read-only", "read-only: write",
           blkioq_write(q, 0, buf, 4096, NULL, 0));
    {
        struct iovec v = {buf, 512};
        EXPECT(q, -EBADF, "device is read-only", "read-only: writev",
               blkioq_writev(q, 0, &v, 1, NULL, 0));
    }
    EXPECT(q, -EBADF, "device is read-only", "read-only: write_zeroes",
           blkioq_write_zeroes(q, 0, 4096, NULL, 0));
    EXPECT(q, -EBADF, "device is read-only", "read-only: discard",
           blkioq_discard(q, 0, 4096, NULL, 0));
    EXPECT(q, -EINVAL, "invalid start offset", "read-only: misaligned write reports the offset",
           blkioq_write(q, 100, buf, 512, NULL, 0));
    EXPECT(q, 0, NULL, "read-only: flush", blkioq_flush(q, NULL, 0));
    blkio_destroy(&b);
    daemon_stop(&d);
}

static void test_connect_errors(void)
{
    struct daemon d;
    struct blkio *b = NULL;
    char path[1200];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int s;
    if (!daemon_start(&d, "null", MIB, "writable=on"))
        return;

    snprintf(path, sizeof(path), "%s/missing.sock", d.dir);
    blkio_create(DRIVER, &b);
    blkio_set_str(b, "path", path);
    CHECK_ERR(blkio_connect(b), -ENOENT, "No such file or directory (os error 2)",
              "connect to a missing socket");
    blkio_destroy(&b);

    blkio_create(DRIVER, &b);
    blkio_set_str(b, "path", d.pidfile);
    CHECK_ERR(blkio_connect(b), -ECONNREFUSED, "Connection refused (os error 111)",
              "connect to a regular file");
    blkio_destroy(&b);

    /* A socket file nobody listens on. */
    snprintf(path, sizeof(path), "%s/dead.sock", d.dir);
    s = strlen(path) < sizeof(sa.sun_path) ? socket(AF_UNIX, SOCK_STREAM, 0) : -1;
    if (s >= 0)
        memcpy(sa.sun_path, path, strlen(path) + 1);
    if (s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(s);
        blkio_create(DRIVER, &b);
        blkio_set_str(b, "path", path);
        CHECK_ERR(blkio_connect(b), -ECONNREFUSED, "Connection refused (os error 111)",
                  "connect to a socket nobody listens on");
        blkio_destroy(&b);
        unlink(path);
    }

    /* The connection failures left the daemon usable. */
    b = vu_open(d.sock, false, 0, 1, 0, true);
    CHECK(b != NULL, "connect after failed attempts");
    blkio_destroy(&b);

    /* Instances can be created and destroyed repeatedly without leaking
     * descriptors. */
    int before = h_count_fds();
    for (int i = 0; i < 5; i++) {
        b = vu_open(d.sock, false, 0, 1, 0, true);
        blkio_destroy(&b);
    }
    CHECK_INT(h_count_fds(), before, "5 open/start/destroy cycles leak no descriptor");
    daemon_stop(&d);
}

/* Event-driven mode (docs/contract/requests.md §5): enable, submit, poll the fd, read it,
 * reap with min_completions 0; spurious wake-ups allowed. */
static void test_event_driven_and_poll_queues(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkio_mem_region r;
    struct blkio_completion c[64];
    uint8_t *buf;
    if (!daemon_start(&d, "file", 4 * MIB, "writable=on,num-queues=4"))
        return;
    b = vu_open(d.sock, false, 0, 2, 2, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    buf = vu_buffer(b, &r, MIB);
    struct blkioq *q = blkio_get_queue(b, 0), *q1 = blkio_get_queue(b, 1);
    struct blkioq *pq = blkio_get_poll_queue(b, 0), *pq1 = blkio_get_poll_queue(b, 1);
    CHECK(q && q1 && pq && pq1, "2 regular and 2 poll queues");
    int fd = blkioq_get_completion_fd(q);
    CHECK(fd >= 0, "regular queue has a completion fd");
    CHECK_INT(blkioq_get_completion_fd(pq), -1, "poll queue has none");
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK, "completion fd is nonblocking");
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC, "completion fd is close-on-exec");

    blkioq_set_completion_fd_enabled(q, true);
    h_fill(buf, 64 * 4096, 0, 9);
    for (int i = 0; i < 64; i++)
        blkioq_write(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "submit without waiting");
    int done = 0, wakeups = 0;
    while (done < 64 && wakeups < 10000) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t val;
        if (poll(&p, 1, 10000) != 1)
            break;
        wakeups++;
        if (read(fd, &val, sizeof(val)) != sizeof(val))
            continue;
        int n = blkioq_do_io(q, c, 0, 64, NULL);
        for (int i = 0; i < n; i++)
            done += c[i].ret == 0;
    }
    CHECK_INT(done, 64, "event-driven: 64 writes complete through the completion fd");
    blkioq_set_completion_fd_enabled(q, false);

    /* Data written on one queue is visible on the others. */
    memset(buf + 512 * 1024, 0, 64 * 4096);
    bool ok = true;
    struct blkioq *readers[3] = {q1, pq, pq1};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 16; i++)
            blkioq_read(readers[k], (uint64_t)i * 4096, buf + 512 * 1024 + i * 4096, 4096,
                        NULL, 0);
        ok &= wait_n(readers[k], c, 16) == 16;
        for (int i = 0; i < 16; i++)
            ok &= c[i].ret == 0;
        ok &= h_verify(buf + 512 * 1024, 16 * 4096, 0, 9) == -1;
    }
    CHECK(ok, "queue 1 and both poll queues read queue 0's data");

    /* Every request type works on a poll queue. */
    EXPECT(pq, 0, NULL, "poll queue: write FUA",
           blkioq_write(pq, MIB, buf, 4096, NULL, BLKIO_REQ_FUA));
    EXPECT(pq, 0, NULL, "poll queue: flush", blkioq_flush(pq, NULL, 0));
    EXPECT(pq, 0, NULL, "poll queue: write_zeroes", blkioq_write_zeroes(pq, MIB, 4096, NULL, 0));
    EXPECT(pq, 0, NULL, "poll queue: discard", blkioq_discard(pq, MIB, 4096, NULL, 0));
    {
        sigset_t none;
        sigemptyset(&none);
        CHECK_ERR(blkioq_do_io_interruptible(pq, c, 0, 1, NULL, &none), -ENOTSUP, NULL,
                  "poll queue: do_io_interruptible with a mask");
    }
    /* 1024 requests on a poll queue. */
    for (int i = 0; i < 1024; i++)
        blkioq_read(pq1, (uint64_t)(i % 64) * 4096, buf + 512 * 1024 + (i % 64) * 4096, 4096,
                    NULL, 0);
    {
        static struct blkio_completion many[1024];
        int n = wait_n(pq1, many, 1024);
        ok = n == 1024;
        for (int i = 0; i < n; i++)
            ok &= many[i].ret == 0;
        CHECK(ok, "poll queue: 1024 reads in flight complete");
    }
    blkio_destroy(&b);
    daemon_stop(&d);
}

static void on_usr1(int sig)
{
    (void)sig;
}

static void *send_usr1(void *arg)
{
    usleep(200 * 1000);
    pthread_kill(*(pthread_t *)arg, SIGUSR1);
    return NULL;
}

/* A throttled export (2 requests/s) keeps requests in flight long enough
 * to see -ETIME and -EINTR without relying on timing for the outcome. */
static void test_timeouts(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkio_mem_region r;
    struct blkio_completion c[8];
    uint8_t *buf;
    if (!daemon_start(&d, "throttle", MIB, "writable=on"))
        return;
    b = vu_open(d.sock, false, 0, 1, 0, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    struct blkioq *q = blkio_get_queue(b, 0);
    buf = vu_buffer(b, &r, 65536);
    for (int i = 0; i < 8; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    struct timespec t = {0, 50 * 1000 * 1000};
    int n = blkioq_do_io(q, c, 8, 8, &t);
    CHECK_ERR(n, -ETIME, "Timed out", "8 throttled reads do not finish in 50 ms");
    CHECK(t.tv_sec == 0 && t.tv_nsec == 0, "timeout is {0, 0} after -ETIME");

    /* Interruptible wait: SIGUSR1 blocked except while sleeping. */
    struct sigaction sa = {.sa_handler = on_usr1};
    sigset_t block, wait_mask;
    pthread_t self = pthread_self(), th;
    sigaction(SIGUSR1, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGUSR1);
    pthread_create(&th, NULL, send_usr1, &self);
    n = blkioq_do_io_interruptible(q, c, 8, 8, NULL, &wait_mask);
    pthread_join(th, NULL);
    pthread_sigmask(SIG_UNBLOCK, &block, NULL);
    /* A completion may have been put back before the signal; either way
     * the call was interrupted. */
    CHECK_ERR(n, -EINTR, "Interrupted system call (os error 4)",
              "do_io_interruptible returns -EINTR on SIGUSR1");

    /* Without a mask a signal does not end the wait: all 8 complete. */
    int total = 0, guard = 0;
    while (total < 8 && guard++ < 20) {
        n = blkioq_do_io(q, c, 1, 8, NULL);
        if (n < 0)
            break;
        total += n;
    }
    CHECK_INT(total, 8, "every throttled read completes later");
    blkio_destroy(&b);
    daemon_stop(&d);
}

/* The back-end dies with requests in flight. */
static void test_daemon_killed(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkio_mem_region r;
    struct blkio_completion c[64];
    uint8_t *buf;
    uint64_t cap;
    if (!daemon_start(&d, "throttle", MIB, "writable=on,num-queues=2"))
        return;
    b = vu_open(d.sock, false, 0, 1, 1, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    struct blkioq *q = blkio_get_queue(b, 0), *pq = blkio_get_poll_queue(b, 0);
    buf = vu_buffer(b, &r, 32 * 4096);
    for (int i = 0; i < 32; i++) {
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
        blkioq_read(pq, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    }
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "submit 32 reads (regular queue)");
    CHECK_INT(blkioq_do_io(pq, c, 0, 32, NULL) >= 0, 1, "submit 32 reads (poll queue)");
    daemon_reap(&d, SIGKILL);

    struct timespec t = {10, 0};
    double t0 = now();
    int failed;
    int got = collect(q, c, 32, &t, &failed);
    double took = now() - t0;
    CHECK(got == 32 && failed >= 1 && took < 1.0,
          "regular queue: every in-flight read completes within 1 s after the back-end "
          "was SIGKILLed (%d completions, %d failed, %.2f s)", got, failed, took);
    t0 = now();
    t = (struct timespec){10, 0};
    got = collect(pq, c, 32, &t, &failed);
    took = now() - t0;
    CHECK(got == 32 && failed >= 1 && took < 1.0,
          "poll queue: every in-flight read completes within 1 s after the back-end "
          "was SIGKILLed (%d completions, %d failed, %.2f s)", got, failed, took);
    EXPECT(q, -ENOTCONN, "device disconnected", "a later read fails at once",
           blkioq_read(q, 0, buf, 512, NULL, 0));
    CHECK_ERR(blkio_get_uint64(b, "capacity", &cap), -EIO, NULL,
              "capacity after the back-end died: -EIO (%s)", blkio_get_error_msg());
    blkio_unmap_mem_region(b, &r);
    blkio_destroy(&b);
    CHECK(b == NULL, "destroy after the back-end died");
    daemon_stop(&d);
}

/* The back-end is stopped (SIGSTOP) with requests in flight: a timed wait
 * ends with -ETIME, and after SIGCONT every request completes with its
 * data. */
static void test_daemon_stopped(void)
{
    struct daemon d;
    struct blkio *b;
    struct blkio_mem_region r;
    struct blkio_completion c[16];
    uint8_t *buf;
    if (!daemon_start(&d, "file", MIB, "writable=on"))
        return;
    b = vu_open(d.sock, false, 0, 1, 0, true);
    if (!b) {
        daemon_stop(&d);
        return;
    }
    struct blkioq *q = blkio_get_queue(b, 0);
    buf = vu_buffer(b, &r, 8 * 4096);
    memset(buf, 0x5a, 8 * 4096);
    for (int i = 0; i < 8; i++)
        blkioq_write(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    CHECK_INT(blkioq_do_io(q, c, 8, 8, NULL), 8, "8 writes before the stop");
    memset(buf, 0, 8 * 4096);
    kill(d.pid, SIGSTOP);
    for (int i = 0; i < 8; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    struct timespec t = {0, 300 * 1000 * 1000};
    double t0 = now();
    int n = blkioq_do_io(q, c, 8, 8, &t);
    double took = now() - t0;
    CHECK(n == -ETIME && took >= 0.29 && took < 2.0,
          "back-end stopped: a 300 ms wait for 8 reads ends with -ETIME (%d, %.2f s)", n,
          took);
    kill(d.pid, SIGCONT);
    int failed;
    t = (struct timespec){10, 0};
    int got = collect(q, c, 8, &t, &failed);
    bool data = true;
    for (int i = 0; i < 8 * 4096; i++)
        data = data && buf[i] == 0x5a;
    CHECK(got == 8 && failed == 0 && data,
          "after SIGCONT all 8 reads complete with the written data (%d completions, %d ok)",
          got, got - failed);
    blkio_unmap_mem_region(b, &r);
    blkio_destroy(&b);
    daemon_stop(&d);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL); /* the library must never raise it */
    if (!find_qsd()) {
        h_skip("qemu-storage-daemon is not installed: virtio-blk-vhost-user tests");
        return 0;
    }
    atexit(daemons_atexit);
    test_properties();
    test_start_checks();
    test_data(256);
    test_data(16);
    test_errors();
    test_read_only();
    test_connect_errors();
    test_event_driven_and_poll_queues();
    test_timeouts();
    test_daemon_killed();
    test_daemon_stopped();
    return h_done();
}
