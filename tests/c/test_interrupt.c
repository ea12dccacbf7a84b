/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Signals and blkioq_do_io* on io_uring (docs/contract/abi.md §6.15–6.16, docs/contract/requests.md
 * §4.5):
 *
 * - blkioq_do_io_interruptible with a mask that lets SIGUSR1 through ends
 *   with -EINTR "Interrupted system call (os error 4)" when SIGUSR1 arrives
 *   while it sleeps (upstream's io_uring passed a 128-byte sigset and got
 *   -EINVAL instead: a masked wait must work at all);
 * - blkioq_do_io is not ended by a signal: the handler runs and the call
 *   returns the completion.
 *
 * To make the call sleep, the request is a large O_DIRECT read of data on
 * disk (tens of milliseconds). Two ways to deliver the signal:
 *
 * 1. Deterministic: SIGUSR1 is blocked and already pending when the call
 *    starts; the mask passed to the call unblocks it, so the kernel reports
 *    -EINTR as soon as it would sleep.
 * 2. Asynchronous: another thread sends SIGUSR1 a few milliseconds after
 *    the call started. A fast device may finish first; that attempt is then
 *    repeated (up to 5 times) and -EINTR must be seen at least once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "harness.h"

#define BIG (64u << 20)
#define EINTR_MSG "Interrupted system call (os error 4)"

static volatile sig_atomic_t handled;
static uint8_t *buf;
static pthread_t main_thread;

static void on_usr1(int sig)
{
    (void)sig;
    handled++;
}

static void *send_later(void *arg)
{
    struct timespec delay = {0, 5 * 1000 * 1000};
    (void)arg;
    nanosleep(&delay, NULL);
    pthread_kill(main_thread, SIGUSR1);
    return NULL;
}

/* Consumes a SIGUSR1 that is still pending (blocked) in this thread. */
static void drain_pending(void)
{
    sigset_t usr1, pending;
    struct timespec zero = {0, 0};
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigpending(&pending);
    if (sigismember(&pending, SIGUSR1))
        sigtimedwait(&usr1, NULL, &zero);
}

static void block_usr1(bool block)
{
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &usr1, NULL);
}

/* Collects the read after an interrupted call and checks it. */
static void finish_read(struct blkioq *q, const char *what)
{
    struct blkio_completion c;
    int n = blkioq_do_io(q, &c, 1, 1, NULL);
    CHECK(n == 1 && c.ret == 0 && c.user_data == (void *)1,
          "%s: the read completes in the next call (n %d)", what, n);
    CHECK(h_verify_byte(buf, 4096, 0x5a) < 0 && h_verify_byte(buf + BIG - 4096, 4096, 0x5a) < 0,
          "%s: with the file's data", what);
}

/* 1. Pending signal, unblocked only by the call's mask. */
static void test_pending(struct blkioq *q, const sigset_t *allow, bool with_timeout)
{
    const char *what = with_timeout ? "pending signal, timeout" : "pending signal";
    struct blkio_completion c;
    int attempts = 0, eintr = 0;
    while (attempts < 5 && !eintr) {
        struct timespec ts = {30, 0};
        int n, before = handled;
        attempts++;
        memset(buf, 0, BIG);
        blkioq_read(q, 0, buf, BIG, (void *)1, 0);
        pthread_kill(pthread_self(), SIGUSR1); /* blocked: stays pending */
        n = blkioq_do_io_interruptible(q, &c, 1, 1, with_timeout ? &ts : NULL, allow);
        if (n == -EINTR) {
            eintr++;
            CHECK_ERR(n, -EINTR, EINTR_MSG, "%s: do_io_interruptible returns -EINTR", what);
            CHECK_INT(handled, before + 1, "%s: the handler ran once", what);
            if (with_timeout)
                CHECK(ts.tv_sec <= 30 && !(ts.tv_sec == 30 && ts.tv_nsec > 0) &&
                          ts.tv_nsec < 1000000000,
                      "%s: timespec updated (%ld.%09ld)", what, (long)ts.tv_sec, ts.tv_nsec);
            finish_read(q, what);
        } else {
            /* The device answered before the kernel looked for signals. */
            CHECK(n == 1 && c.ret == 0, "%s: otherwise the completion (got %d)", what, n);
            drain_pending();
        }
    }
    CHECK(eintr > 0, "%s: -EINTR observed (%d attempts)", what, attempts);
}

/* docs/contract/requests.md §4.4: completions gathered before the wait was interrupted
 * are not lost; the next call returns them first. */
static void test_partial_progress(struct blkioq *q, const sigset_t *allow)
{
    struct blkio_completion c[2];
    int attempts = 0, eintr = 0;
    while (attempts < 5 && !eintr) {
        int n;
        attempts++;
        blkioq_flush(q, (void *)2, BLKIO_REQ_FUA); /* completion backlog */
        blkioq_read(q, 0, buf, BIG, (void *)1, 0);
        pthread_kill(pthread_self(), SIGUSR1);
        n = blkioq_do_io_interruptible(q, c, 2, 2, NULL, allow);
        if (n == -EINTR) {
            eintr++;
            n = blkioq_do_io(q, c, 2, 2, NULL);
            CHECK(n == 2 && c[0].user_data == (void *)2 && c[0].ret == -EINVAL &&
                      c[1].user_data == (void *)1 && c[1].ret == 0,
                  "after -EINTR the gathered completion comes first, then the read (n %d)", n);
        } else {
            CHECK(n == 2, "partial progress: otherwise both completions (got %d)", n);
            drain_pending();
        }
    }
    CHECK(eintr > 0, "partial progress: -EINTR observed (%d attempts)", attempts);
}

/* 2. A signal sent by another thread while the call sleeps. */
static void test_async(struct blkioq *q, const sigset_t *allow)
{
    struct blkio_completion c;
    int attempts = 0, eintr = 0;
    while (attempts < 5 && !eintr) {
        pthread_t killer;
        int n, before = handled;
        attempts++;
        memset(buf, 0, BIG);
        blkioq_read(q, 0, buf, BIG, (void *)1, 0);
        pthread_create(&killer, NULL, send_later, NULL);
        n = blkioq_do_io_interruptible(q, &c, 1, 1, NULL, allow);
        pthread_join(killer, NULL);
        if (n == -EINTR) {
            eintr++;
            CHECK_ERR(n, -EINTR, EINTR_MSG, "signal from a thread: -EINTR");
            CHECK_INT(handled, before + 1, "signal from a thread: the handler ran");
            finish_read(q, "signal from a thread");
        } else {
            CHECK(n == 1 && c.ret == 0, "signal from a thread: otherwise the completion (%d)", n);
            drain_pending();
        }
    }
    CHECK(eintr > 0, "signal from a thread: -EINTR observed (%d attempts)", attempts);
}

/* 3. blkioq_do_io (and the interruptible one with sig NULL) is not ended by
 *    a signal whose handler runs during the wait. */
static void test_not_interruptible(struct blkioq *q)
{
    static const char *const names[] = {"do_io", "do_io with timeout",
                                        "do_io_interruptible(sig NULL)"};
    block_usr1(false);
    for (int variant = 0; variant < 3; variant++) {
        struct blkio_completion c;
        struct timespec ts = {30, 0};
        pthread_t killer;
        int n, before = handled;
        memset(buf, 0, BIG);
        blkioq_read(q, 0, buf, BIG, (void *)1, 0);
        pthread_create(&killer, NULL, send_later, NULL);
        if (variant == 0)
            n = blkioq_do_io(q, &c, 1, 1, NULL);
        else if (variant == 1)
            n = blkioq_do_io(q, &c, 1, 1, &ts);
        else
            n = blkioq_do_io_interruptible(q, &c, 1, 1, NULL, NULL);
        pthread_join(killer, NULL);
        CHECK(n == 1 && c.ret == 0 && c.user_data == (void *)1,
              "%s: a signal does not end the call (got %d)", names[variant], n);
        CHECK(h_verify_byte(buf, 4096, 0x5a) < 0 && h_verify_byte(buf + BIG - 4096, 4096, 0x5a) < 0,
              "%s: the read's data", names[variant]);
        CHECK_INT(handled, before + 1, "%s: the handler ran", names[variant]);
    }
    block_usr1(true);
}

/* 4. A masked wait without any signal must simply work. */
static void test_masked_wait(struct blkioq *q, const sigset_t *allow)
{
    for (int t = 0; t < 2; t++) {
        struct blkio_completion c;
        struct timespec ts = {30, 0};
        int n;
        memset(buf, 0, BIG);
        blkioq_read(q, 0, buf, BIG, (void *)1, 0);
        n = blkioq_do_io_interruptible(q, &c, 1, 1, t ? &ts : NULL, allow);
        CHECK(n == 1 && c.ret == 0,
              "do_io_interruptible with a mask%s and no signal returns the completion (%d %s)",
              t ? " and a timeout" : "", n, n < 0 ? blkio_get_error_msg() : "");
    }
}

/* 5. A request the kernel refuses at submit time (a readv with more than
 * 1024 iovecs: io_uring_enter(to_submit=2) returns 1) must not keep the
 * request behind it from being submitted: the masked, timed wait returns
 * both completions long before its timeout. */
static void test_refused_at_submit(struct blkioq *q, const sigset_t *allow)
{
    enum { NIOV = 1025 };
    static struct iovec iov[NIOV];
    struct blkio_completion c[2];
    struct timespec ts = {10, 0}, t0, t1;
    int n, got = 0, readv_ret = 1, read_ret = 1;
    double secs;
    for (int i = 0; i < NIOV; i++) {
        iov[i].iov_base = buf + (size_t)i * 4096;
        iov[i].iov_len = 4096;
    }
    memset(buf + (8u << 20), 0, 4096);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    blkioq_readv(q, 0, iov, NIOV, (void *)1, 0);
    blkioq_read(q, 1u << 20, buf + (8u << 20), 4096, (void *)2, 0);
    while (got < 2) {
        n = blkioq_do_io_interruptible(q, c + got, 2 - got, 2 - got, &ts, allow);
        if (n <= 0)
            break;
        got += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (int i = 0; i < got; i++) {
        if (c[i].user_data == (void *)1)
            readv_ret = c[i].ret;
        else if (c[i].user_data == (void *)2)
            read_ret = c[i].ret;
    }
    CHECK(got == 2 && secs < 5, "refused readv + read: both complete (%d, %.2f s, %s)", got,
          secs, got < 2 ? blkio_get_error_msg() : "");
    CHECK_INT(readv_ret, -EINVAL, "readv of %d iovecs completes with -EINVAL", NIOV);
    CHECK(read_ret == 0 && h_verify_byte(buf + (8u << 20), 4096, 0x5a) < 0,
          "the read submitted after it completes with the data (ret %d)", read_ret);
}

int main(void)
{
    const char *path = h_scratch(BIG);
    struct sigaction sa;
    sigset_t allow;
    struct blkio *b;
    struct blkioq *q;
    int fd;

    /* valgrind does not emulate io_uring_enter's signal mask (it aborts). */
    {
        const char *preload = getenv("LD_PRELOAD");
        if (preload && strstr(preload, "vgpreload")) {
            h_skip("signal masks of io_uring_enter are not supported under valgrind");
            return h_done();
        }
    }
    main_thread = pthread_self();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);

    /* O_DIRECT reads of written data reach the device and take a while. */
    fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0) {
        h_skip("O_DIRECT unsupported in %s: cannot make a wait long enough", h_test_dir());
        return h_done();
    }
    close(fd);
    if (posix_memalign((void **)&buf, 4096, BIG))
        return 1;
    memset(buf, 0x5a, BIG);
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, buf, BIG, 0) == (ssize_t)BIG && fdatasync(fd) == 0,
          "write %u MiB of data", BIG >> 20);
    close(fd);

    b = h_open(path, "direct=true");
    if (!b)
        return h_done();
    q = blkio_get_queue(b, 0);

    /* The waiting thread blocks SIGUSR1; the calls' mask lets it through. */
    block_usr1(true);
    pthread_sigmask(SIG_BLOCK, NULL, &allow);
    sigdelset(&allow, SIGUSR1);

    test_masked_wait(q, &allow);
    test_pending(q, &allow, false);
    test_pending(q, &allow, true);
    test_partial_progress(q, &allow);
    test_async(q, &allow);
    test_not_interruptible(q);
    test_refused_at_submit(q, &allow);

    blkio_destroy(&b);
    return h_done();
}
