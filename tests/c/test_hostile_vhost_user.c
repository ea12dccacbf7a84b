/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vhost-user against a hostile back-end (tests/hostile/server.py):
 * one misbehaviour per scenario, each on its own server process and socket
 * (docs/virtio-device-trust.md, docs/robustness.md).
 *
 * For every scenario the client must see what the table below says, within
 * a bounded time: the call that meets the fault (connect, start or a
 * request) fails with a negative errno and a message naming the fault, or
 * the requests complete with -EIO, or a wait ends with -ETIME. A request
 * reported successful must have read exactly the disk's contents. No
 * scenario may leak a file descriptor, and the server must exit cleanly
 * (it checks nothing itself, but a crash in it would make an error
 * scenario pass for the wrong reason).
 *
 * Run by tests/hostile/run.sh (plain and under valgrind), which sets
 * BLKIO_HOSTILE_SERVER to the server script; without it the program prints
 * "skip - ..." and exits 0. BLKIO_HOSTILE_ONLY=<name> runs one scenario.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

#define DRIVER "virtio-blk-vhost-user"
#define DISK_SIZE (1024 * 1024)
#define REGION_LEN (64 * 1024)
/* The wire module's reply timeout is 10 s: a stage may take that long. */
#define STAGE_LIMIT 14.0
/* Requests: a well-behaved server answers in milliseconds. */
#define IO_LIMIT_S 5

enum stage { NONE, CONNECT, START, MAP };
static const char *const stage_names[] = {"none", "connect", "start", "map"};

/* What the requests see after a successful start. */
enum io {
    IO_OK,      /* reads return the disk, a write reads back */
    IO_EIO,     /* some requests of a batch fail with -EIO, the queue stays broken */
    IO_TWICE,   /* the batch succeeds, the repeated entries break the queue */
    IO_STATUS,  /* every request fails with -EPROTO (bad status byte), queue usable */
    IO_HANG,    /* nothing completes: -ETIME within the caller's timeout */
    IO_BEYOND,  /* capacity 0: the device fails every read (-EIO) */
};

struct scenario {
    const char *name;
    enum stage fails_at;
    int err;           /* the failing call's return value */
    const char *msg;   /* a substring of its message */
    enum io io;
    int num_queues;    /* set before start (0: leave the default) */
    int64_t max_queues; /* expected "max-queues" (0: not checked) */
    int64_t alignment; /* expected "request-alignment" (0: not checked) */
    int64_t max_segments; /* expected "max-segments" (0: not checked) */
};

static const struct scenario scenarios[] = {
    {"good", NONE, 0, NULL, IO_OK, 0, 1, 512, 126},
    /* Malformed replies. */
    {"reply-code", CONNECT, -EIO,
     "vhost-user reply to GET_FEATURES has request code 15", IO_OK, 0, 0, 0, 0},
    {"reply-short-u64", CONNECT, -EIO,
     "vhost-user GET_FEATURES reply has size 4, expected 8", IO_OK, 0, 0, 0, 0},
    {"reply-short-config", CONNECT, -EIO,
     "vhost-user GET_CONFIG reply has size 20, expected 72", IO_OK, 0, 0, 0, 0},
    {"reply-huge", CONNECT, -EIO,
     "vhost-user GET_PROTOCOL_FEATURES reply has size 2147483647, expected 8", IO_OK, 0, 0, 0,
     0},
    {"reply-no-reply-flag", CONNECT, -EIO,
     "vhost-user reply to GET_FEATURES has flags 0x1, expected version 1 with the reply bit",
     IO_OK, 0, 0, 0, 0},
    {"reply-bad-version", CONNECT, -EIO,
     "vhost-user reply to GET_MAX_MEM_SLOTS has flags 0x6", IO_OK, 0, 0, 0, 0},
    {"reply-unknown-flag", CONNECT, -EIO,
     "vhost-user reply to GET_QUEUE_NUM has flags 0x25", IO_OK, 0, 0, 0, 0},
    {"reply-short-ack", START, -EIO, "vhost-user SET_VRING_ADDR reply has size 4, expected 8",
     IO_OK, 0, 0, 0, 0},
    {"reply-header-only", CONNECT, -EIO, "did not reply to GET_FEATURES within 10 s", IO_OK, 0,
     0, 0, 0},
    {"reply-with-fd", NONE, 0, NULL, IO_OK, 0, 1, 512, 0},
    {"nack-set-vring-addr", START, -EIO, "vhost-user back-end refused SET_VRING_ADDR", IO_OK, 0,
     0, 0, 0},
    {"nack-add-mem-reg", START, -EIO, "vhost-user back-end refused ADD_MEM_REG", IO_OK, 0, 0, 0,
     0},
    {"no-protocol-features", CONNECT, -EIO,
     "vhost-user back-end does not offer VHOST_USER_F_PROTOCOL_FEATURES", IO_OK, 0, 0, 0, 0},
    {"queue-num-0", CONNECT, -EIO,
     "vhost-user reply to GET_QUEUE_NUM: 0 queues, expected at least 1", IO_OK, 0, 0, 0, 0},
    {"silent-get-features", CONNECT, -EIO,
     "vhost-user back-end did not reply to GET_FEATURES within 10 s", IO_OK, 0, 0, 0, 0},
    /* The connection closed at each handshake step. */
    {"close-at-set-owner", CONNECT, -EIO, "vhost-user", IO_OK, 0, 0, 0, 0},
    {"close-at-get-features", CONNECT, -EIO,
     "vhost-user back-end closed the connection before replying to GET_FEATURES", IO_OK, 0, 0,
     0, 0},
    {"close-at-set-features", CONNECT, -EIO, "vhost-user", IO_OK, 0, 0, 0, 0},
    {"close-at-get-protocol-features", CONNECT, -EIO,
     "vhost-user back-end closed the connection before replying to GET_PROTOCOL_FEATURES",
     IO_OK, 0, 0, 0, 0},
    {"close-at-set-protocol-features", CONNECT, -EIO, "vhost-user", IO_OK, 0, 0, 0, 0},
    {"close-at-get-queue-num", CONNECT, -EIO,
     "vhost-user back-end closed the connection before replying to GET_QUEUE_NUM", IO_OK, 0, 0,
     0, 0},
    {"close-at-get-max-mem-slots", CONNECT, -EIO,
     "vhost-user back-end closed the connection before replying to GET_MAX_MEM_SLOTS", IO_OK,
     0, 0, 0, 0},
    {"close-at-get-config", CONNECT, -EIO,
     "vhost-user back-end closed the connection before replying to GET_CONFIG", IO_OK, 0, 0, 0,
     0},
    {"close-at-add-mem-reg", START, -EIO,
     "vhost-user back-end closed the connection before replying to ADD_MEM_REG", IO_OK, 0, 0,
     0, 0},
    {"close-at-set-vring-num", START, -EIO,
     "vhost-user back-end closed the connection before replying to SET_VRING_NUM", IO_OK, 0, 0,
     0, 0},
    {"close-at-set-vring-base", START, -EIO,
     "vhost-user back-end closed the connection before replying to SET_VRING_BASE", IO_OK, 0,
     0, 0, 0},
    {"close-at-set-vring-addr", START, -EIO,
     "vhost-user back-end closed the connection before replying to SET_VRING_ADDR", IO_OK, 0,
     0, 0, 0},
    {"close-at-set-vring-kick", START, -EIO,
     "vhost-user back-end closed the connection before replying to SET_VRING_KICK", IO_OK, 0,
     0, 0, 0},
    {"close-at-set-vring-call", START, -EIO,
     "vhost-user back-end closed the connection before replying to SET_VRING_CALL", IO_OK, 0,
     0, 0, 0},
    {"close-at-set-vring-enable", START, -EIO,
     "vhost-user back-end closed the connection before replying to SET_VRING_ENABLE", IO_OK,
     0, 0, 0, 0},
    /* Config space. */
    {"capacity-0", NONE, 0, NULL, IO_BEYOND, 0, 1, 512, 0},
    {"blk-size-0", NONE, 0, NULL, IO_OK, 0, 1, 512, 0},
    {"blk-size-520", NONE, 0, NULL, IO_OK, 0, 1, 512, 0},
    {"seg-max-0", NONE, 0, NULL, IO_OK, 0, 1, 512, 1},
    {"num-queues-0", NONE, 0, NULL, IO_OK, 0, 1, 512, 0},
    {"num-queues-0", START, -EINVAL, "must not be greater than 1", IO_OK, 2, 1, 0, 0},
    {"num-queues-huge", NONE, 0, NULL, IO_OK, 0, 1, 512, 0},
    {"num-queues-huge", START, -EINVAL, "must not be greater than 1", IO_OK, 2, 1, 0, 0},
    {"queue-num-2", NONE, 0, NULL, IO_OK, 2, 2, 512, 0},
    {"queue-num-2", START, -EINVAL, "must not be greater than 2", IO_OK, 3, 2, 0, 0},
    /* Used ring and status byte. */
    {"used-id-out-of-range", NONE, 0, NULL, IO_EIO, 0, 0, 0, 0},
    {"used-id-repeated", NONE, 0, NULL, IO_EIO, 0, 0, 0, 0},
    {"used-len-huge", NONE, 0, NULL, IO_OK, 0, 0, 0, 0},
    {"used-idx-jump", NONE, 0, NULL, IO_EIO, 0, 0, 0, 0},
    {"complete-twice", NONE, 0, NULL, IO_TWICE, 0, 0, 0, 0},
    {"status-garbage", NONE, 0, NULL, IO_STATUS, 0, 0, 0, 0},
    {"never-complete", NONE, 0, NULL, IO_HANG, 0, 0, 0, 0},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * The server process */

static pid_t server_pid;

static void server_kill(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
}

static bool server_start(const char *script, const char *sock, const char *scenario)
{
    unlink(sock);
    server_pid = fork();
    if (server_pid < 0)
        return h_report(false, strerror(errno), "fork the server");
    if (server_pid == 0) {
        const char *python = getenv("BLKIO_HOSTILE_PYTHON");
        if (!python || !*python)
            python = "python3";
        execlp(python, python, script, sock, scenario, (char *)NULL);
        _exit(127);
    }
    for (double end = now() + 10; now() < end;) {
        int status;
        if (access(sock, F_OK) == 0)
            return true;
        if (waitpid(server_pid, &status, WNOHANG) == server_pid) {
            server_pid = 0;
            return h_report(false, "server exited before listening", "%s: start server",
                            scenario);
        }
        usleep(10 * 1000);
    }
    server_kill();
    return h_report(false, "no socket after 10 s", "%s: start server", scenario);
}

/* The server exits by itself once the client hung up; status 0 means it
 * did what the scenario says without failing itself. */
static void server_check_exit(const char *label)
{
    int status = -1;
    for (double end = now() + 5; now() < end;) {
        if (waitpid(server_pid, &status, WNOHANG) == server_pid) {
            server_pid = 0;
            break;
        }
        usleep(10 * 1000);
    }
    if (server_pid > 0) {
        server_kill();
        h_report(false, "still running 5 s after the client hung up", "%s: server exits",
                 label);
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s: server exits with status 0 (it did not fail itself)", label);
}

/* ------------------------------------------------------------------------
 * Requests */

/* The server's disk: byte i is (i % 4096 + i / 4096) % 256. */
static long long verify_disk(const uint8_t *buf, size_t len, uint64_t off)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t o = off + i;
        if (buf[i] != (uint8_t)((o & 4095) + (o >> 12)))
            return (long long)i;
    }
    return -1;
}

/* Waits for `n` completions until IO_LIMIT_S; returns how many came, or the
 * negative do_io result. */
static int collect(struct blkioq *q, struct blkio_completion *c, int n)
{
    int got = 0;
    double end = now() + IO_LIMIT_S;
    while (got < n) {
        double left = end - now();
        struct timespec ts = {0, 0};
        int r;
        if (left <= 0)
            break;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        r = blkioq_do_io(q, c + got, 1, n - got, &ts);
        if (r < 0)
            return got ? got : r;
        got += r;
    }
    return got;
}

/* Two reads of 4 KiB in one batch (at 0 and 8 KiB) into the region; each
 * completion either fails with a message or returns the disk's bytes.
 * Returns the number that failed, or -1 when they did not all complete. */
static int read_pair(const char *label, struct blkioq *q, uint8_t *buf, int *err)
{
    struct blkio_completion c[2];
    int n, failed = 0;
    memset(buf, 0xa5, 2 * 4096);
    blkioq_read(q, 0, buf, 4096, (void *)0, 0);
    blkioq_read(q, 8192, buf + 4096, 4096, (void *)1, 0);
    n = collect(q, c, 2);
    if (!CHECK_INT(n, 2, "%s: both reads of a batch complete within %d s", label, IO_LIMIT_S))
        return -1;
    for (int i = 0; i < 2; i++) {
        uintptr_t which = (uintptr_t)c[i].user_data;
        if (c[i].ret == 0) {
            CHECK_INT(verify_disk(buf + 4096 * which, 4096, 8192 * which), -1,
                      "%s: a read reported successful returned the disk's bytes", label);
        } else {
            /* A status byte gives no message (error_msg NULL), like a
             * device error on io_uring; a broken queue names the fault. */
            failed++;
            *err = c[i].ret;
            if (c[i].ret == -EIO)
                CHECK_STR(c[i].error_msg, "device wrote an invalid used ring entry",
                          "%s: a read failing with -EIO names the device error", label);
        }
    }
    return failed;
}

static void run_io(const struct scenario *s, const char *label, struct blkioq *q, uint8_t *buf)
{
    struct blkio_completion c;
    int err = 0, failed;
    switch (s->io) {
    case IO_OK:
        failed = read_pair(label, q, buf, &err);
        CHECK_INT(failed, 0, "%s: reads succeed", label);
        h_fill(buf, 4096, 16384, 7);
        blkioq_write(q, 16384, buf, 4096, NULL, 0);
        CHECK_INT(collect(q, &c, 1) == 1 ? c.ret : -1000, 0, "%s: write", label);
        memset(buf + 8192, 0, 4096);
        blkioq_read(q, 16384, buf + 8192, 4096, NULL, 0);
        CHECK_INT(collect(q, &c, 1) == 1 ? c.ret : -1000, 0, "%s: read back", label);
        CHECK_INT(h_verify(buf + 8192, 4096, 16384, 7), -1, "%s: read back what was written",
                  label);
        break;
    case IO_EIO:
    case IO_TWICE:
    case IO_STATUS: {
        int want = s->io == IO_STATUS ? -EPROTO : -EIO;
        failed = read_pair(label, q, buf, &err);
        if (s->io == IO_STATUS)
            CHECK_INT(failed, 2, "%s: both reads fail", label);
        else if (s->io == IO_TWICE)
            CHECK_INT(failed, 0, "%s: both reads succeed (completed once each)", label);
        else
            CHECK(failed >= 1, "%s: at least one read of the batch fails (%d)", label, failed);
        if (failed > 0)
            CHECK_INT(err, want, "%s: failed reads complete with %d", label, want);
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        CHECK_INT(collect(q, &c, 1) == 1 ? c.ret : -1000, want,
                  "%s: a later read completes with %d too", label, want);
        if (s->io == IO_STATUS)
            CHECK_STR(c.error_msg, "device returned an unknown virtio-blk status",
                      "%s: its error_msg", label);
        break;
    }
    case IO_HANG: {
        struct timespec ts = {1, 0};
        struct blkio_completion c2;
        double t0 = now(), dt;
        int r;
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        r = blkioq_do_io(q, &c2, 1, 1, &ts);
        dt = now() - t0;
        CHECK_INT(r, -ETIME, "%s: waiting for a request the device never completes", label);
        CHECK(dt < 3, "%s: the 1 s wait ended after %.2f s", label, dt);
        break;
    }
    case IO_BEYOND:
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        CHECK_INT(collect(q, &c, 1) == 1 ? c.ret : -1000, -EIO,
                  "%s: a read beyond the capacity fails", label);
        break;
    }
}

/* Checks the outcome of one stage; returns false when the scenario ends
 * there (expected failure, or an unexpected one). */
static bool stage_result(const struct scenario *s, const char *label, enum stage stage, int ret,
                         double elapsed)
{
    const char *msg = blkio_get_error_msg();
    CHECK(elapsed < STAGE_LIMIT, "%s: %s returns within %.0f s (%.2f s)", label,
          stage_names[stage], STAGE_LIMIT, elapsed);
    if (s->fails_at != stage) {
        if (ret < 0) {
            char details[400];
            snprintf(details, sizeof(details), "%d %s", ret, msg);
            h_report(false, details, "%s: %s succeeds", label, stage_names[stage]);
            return false;
        }
        return true;
    }
    if (CHECK_INT(ret, s->err, "%s: %s fails", label, stage_names[stage]))
        h_report(msg && strstr(msg, s->msg), msg, "%s: the message contains \"%s\"", label,
                 s->msg);
    return false;
}

static void check_int_prop(struct blkio *b, const char *label, const char *name, int64_t want)
{
    int v = -1;
    if (want == 0)
        return;
    CHECK_OK(blkio_get_int(b, name, &v), "%s: get %s", label, name);
    CHECK_INT(v, want, "%s: %s", label, name);
}

static void run_scenario(const char *script, const char *dir, const struct scenario *s, int n)
{
    char sock[1200], label[128];
    struct blkio *b = NULL;
    struct blkio_mem_region region;
    bool have_region = false;
    int fds_before, ret;
    double t0;

    snprintf(label, sizeof(label), "%s%s", s->name, s->num_queues > 1 ? " (2 queues)" : "");
    snprintf(sock, sizeof(sock), "%s/hostile-%d-%d.sock", dir, (int)getpid(), n);
    if (!server_start(script, sock, s->name))
        return;
    fds_before = h_count_fds();

    ret = blkio_create(DRIVER, &b);
    if (!CHECK_OK(ret, "%s: create", label))
        goto out;
    CHECK_OK(blkio_set_str(b, "path", sock), "%s: set path", label);
    t0 = now();
    ret = blkio_connect(b);
    if (!stage_result(s, label, CONNECT, ret, now() - t0))
        goto out;
    check_int_prop(b, label, "max-queues", s->max_queues);
    check_int_prop(b, label, "request-alignment", s->alignment);
    check_int_prop(b, label, "max-segments", s->max_segments);
    if (s->io == IO_BEYOND) {
        uint64_t cap = 1;
        CHECK_OK(blkio_get_uint64(b, "capacity", &cap), "%s: get capacity", label);
        CHECK_INT(cap, 0, "%s: capacity", label);
    }
    if (s->num_queues)
        CHECK_OK(blkio_set_int(b, "num-queues", s->num_queues), "%s: set num-queues", label);
    t0 = now();
    ret = blkio_start(b);
    if (!stage_result(s, label, START, ret, now() - t0))
        goto out;
    ret = blkio_alloc_mem_region(b, &region, REGION_LEN);
    if (!CHECK_OK(ret, "%s: alloc region", label))
        goto out;
    have_region = true;
    t0 = now();
    ret = blkio_map_mem_region(b, &region);
    if (!stage_result(s, label, MAP, ret, now() - t0))
        goto out;
    for (int i = 0; i < (s->num_queues > 1 ? s->num_queues : 1); i++) {
        char qlabel[160];
        snprintf(qlabel, sizeof(qlabel), "%s, queue %d", label, i);
        run_io(s, qlabel, blkio_get_queue(b, i), region.addr);
    }
    blkio_unmap_mem_region(b, &region);
out:
    if (have_region)
        blkio_free_mem_region(b, &region);
    t0 = now();
    blkio_destroy(&b);
    CHECK(now() - t0 < 3, "%s: destroy returns at once (%.2f s)", label, now() - t0);
    CHECK_INT(h_count_fds(), fds_before, "%s: no file descriptor leaked", label);
    server_check_exit(label);
    unlink(sock);
}

int main(void)
{
    const char *script = getenv("BLKIO_HOSTILE_SERVER");
    const char *only = getenv("BLKIO_HOSTILE_ONLY");
    char dir[1024];
    if (!script || !*script) {
        h_skip("BLKIO_HOSTILE_SERVER is not set (tests/hostile/run.sh runs this program)");
        return h_done();
    }
    snprintf(dir, sizeof(dir), "%s/blkio-hostile-XXXXXX", h_test_dir());
    if (!mkdtemp(dir)) {
        h_report(false, strerror(errno), "create a socket directory");
        return h_done();
    }
    atexit(server_kill);
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        if (!only || strcmp(only, scenarios[i].name) == 0)
            run_scenario(script, dir, &scenarios[i], (int)i);
    rmdir(dir);
    return h_done();
}
