/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * blkioq_do_io / blkioq_do_io_interruptible / completion fd on io_uring
 * (docs/contract/abi.md §6.15–6.18, docs/contract/requests.md §4–6): argument validation and its order,
 * counting rules, submit-only calls, partial returns, timeouts, the
 * event-driven and polling modes, and poll queues.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <time.h>

#include "harness.h"

static uint8_t *buf;

static bool ts_eq(const struct timespec *ts, long sec, long nsec)
{
    return ts->tv_sec == sec && ts->tv_nsec == nsec;
}

static void test_validation(struct blkioq *q)
{
    struct blkio_completion c[4];
    struct timespec ts;
    sigset_t none;
    sigemptyset(&none);

#define V(expr, msg, what)                                                     \
    CHECK_ERR((expr), -EINVAL, msg, what)

    ts = (struct timespec){-1, 5};
    V(blkioq_do_io(q, NULL, -1, -2, &ts), "tv_sec cannot be negative",
      "1: tv_sec < 0 wins over every other problem");
    CHECK(ts_eq(&ts, -1, 5), "timespec untouched after the tv_sec failure");
    ts = (struct timespec){0, 1000000000};
    V(blkioq_do_io(q, NULL, -1, -2, &ts), "tv_nsec must be less than one second",
      "2: tv_nsec = 1e9");
    CHECK(ts_eq(&ts, 0, 1000000000), "timespec untouched after the tv_nsec failure");
    ts = (struct timespec){3, -1};
    V(blkioq_do_io(q, c, 0, 1, &ts), "tv_nsec must be less than one second", "2: tv_nsec < 0");
    ts = (struct timespec){7, 999999999};
    V(blkioq_do_io(q, NULL, -1, -2, &ts), "min_completions cannot be negative",
      "3: min < 0 (valid timespec)");
    CHECK(ts_eq(&ts, 7, 999999999), "timespec untouched after the min failure");
    V(blkioq_do_io(q, NULL, 0, -1, &ts), "max_completions cannot be negative", "4: max < 0");
    V(blkioq_do_io(q, NULL, 2, 1, &ts), "min_completions must be less than or equal to max_completions",
      "5: min > max (checked before completions == NULL)");
    V(blkioq_do_io(q, NULL, 0, 1, &ts), "max_completions must be 0 when completions is NULL",
      "6: completions NULL with max 1");
    V(blkioq_do_io(q, c, 1, 1, &ts), "min_completions is larger than total outstanding requests",
      "7: min 1 with nothing outstanding");
    CHECK(ts_eq(&ts, 7, 999999999), "timespec untouched after every validation failure");
    V(blkioq_do_io_interruptible(q, c, 1, 0, NULL, &none),
      "min_completions must be less than or equal to max_completions",
      "do_io_interruptible validates the same way");
    V(blkioq_do_io_interruptible(q, c, 1, 1, NULL, NULL),
      "min_completions is larger than total outstanding requests",
      "do_io_interruptible with sig NULL validates the same way");

    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "do_io(q, NULL, 0, 0, NULL) with nothing to do");
    CHECK_INT(blkioq_do_io(q, c, 0, 4, NULL), 0, "do_io min 0 with nothing outstanding");
    ts = (struct timespec){1, 0};
    CHECK_INT(blkioq_do_io(q, c, 0, 4, &ts), 0, "do_io min 0 with a timeout and nothing to do");
    CHECK(ts_eq(&ts, 1, 0), "timespec unchanged when nothing was submitted or waited for");
#undef V
}

/* The outstanding count includes backlog and in-flight requests; entries
 * gathered before a failure are not lost. */
static void test_counting(struct blkioq *q)
{
    struct blkio_completion c[8];
    int n;

    blkioq_read(q, 0, buf, 512, (void *)1, 8);   /* completion backlog */
    blkioq_read(q, 0, buf + 512, 512, (void *)2, 0); /* ring */
    CHECK_ERR(blkioq_do_io(q, c, 3, 3, NULL), -EINVAL,
              "min_completions is larger than total outstanding requests",
              "min 3 with 2 outstanding (1 backlog, 1 in the ring)");
    n = blkioq_do_io(q, c, 2, 2, NULL);
    CHECK_INT(n, 2, "min 2 returns both afterwards (nothing lost)");
    CHECK(n == 2 && c[0].user_data == (void *)1 && c[0].ret == -EINVAL &&
              c[1].user_data == (void *)2 && c[1].ret == 0,
          "the backlog entry first, then the read");

    /* Library-detected failures only: deterministic partial returns. */
    for (int i = 0; i < 5; i++)
        blkioq_flush(q, (void *)(uintptr_t)(10 + i), BLKIO_REQ_FUA);
    n = blkioq_do_io(q, c, 0, 2, NULL);
    CHECK(n == 2 && c[0].user_data == (void *)10 && c[1].user_data == (void *)11,
          "max 2 of 5 available returns the oldest two");
    n = blkioq_do_io(q, c, 0, 8, NULL);
    CHECK(n == 3 && c[0].user_data == (void *)12 && c[2].user_data == (void *)14,
          "the next call returns the remaining three");

    /* Ring completions: max smaller than what is available. */
    for (int i = 0; i < 5; i++)
        blkioq_read(q, (uint64_t)i * 512, buf + i * 512, 512, (void *)(uintptr_t)(20 + i), 0);
    n = blkioq_do_io(q, c, 5, 5, NULL) ;
    CHECK_INT(n, 5, "five reads complete");
    for (int i = 0; i < 5; i++)
        blkioq_read(q, (uint64_t)i * 512, buf + i * 512, 512, (void *)(uintptr_t)(30 + i), 0);
    n = blkioq_do_io(q, c, 1, 1, NULL);
    CHECK_INT(n, 1, "max 1 returns one completion");
    n += blkioq_do_io(q, c + 1, 4, 4, NULL);
    CHECK_INT(n, 5, "the rest is returned by the next call (min 4 = what is still owed)");
    {
        int seen = 0;
        for (int i = 0; i < 5 && n == 5; i++)
            seen |= 1 << ((uintptr_t)c[i].user_data - 30);
        CHECK_INT(seen, 0x1f, "every user_data returned exactly once");
    }

    /* Gathered entries are put back when the call fails (#7 after
     * gathering). */
    blkioq_write(q, 0, buf, 512, (void *)40, 0x10);
    CHECK_ERR(blkioq_do_io(q, c, 2, 2, NULL), -EINVAL,
              "min_completions is larger than total outstanding requests",
              "min 2 with one backlog entry");
    n = blkioq_do_io(q, c, 1, 1, NULL);
    CHECK(n == 1 && c[0].user_data == (void *)40 && c[0].ret == -EINVAL,
          "the entry is still there after the failed call");
}

/* min 0 submits without waiting; NULL completions submit only. */
static void test_submit_only(struct blkioq *q, int efd)
{
    struct blkio_completion c[2];
    struct pollfd pfd = {efd, POLLIN, 0};
    uint64_t v;
    int n = 0;
    while (read(efd, &v, 8) == 8) /* drain */
        ;
    h_fill(buf, 4096, 8192, 7);
    blkioq_write(q, 8192, buf, 4096, (void *)50, 0);
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "do_io(q, NULL, 0, 0, NULL) submits");
    CHECK_INT(poll(&pfd, 1, 10000), 1, "the completion fd becomes readable after the submit-only call");
    /* min 0 now returns what is complete without waiting */
    for (int i = 0; i < 1000000 && n == 0; i++)
        n = blkioq_do_io(q, c, 0, 2, NULL);
    CHECK(n == 1 && c[0].user_data == (void *)50 && c[0].ret == 0,
          "min 0 returns the completed write");
    CHECK_INT(blkioq_do_io(q, c, 0, 2, NULL), 0, "and nothing more");
}

static void test_timeouts(struct blkioq *q, struct blkioq *dq, const char *bigfile, size_t big)
{
    struct blkio_completion c[2];
    struct timespec ts;
    int n;

    /* A request that completes: timeout updated (elapsed subtracted). */
    ts = (struct timespec){5, 0};
    blkioq_read(q, 0, buf, 4096, (void *)60, 0);
    n = blkioq_do_io(q, c, 1, 1, &ts);
    CHECK(n == 1 && c[0].ret == 0, "do_io with a 5 s timeout returns the read");
    CHECK(ts.tv_sec >= 0 && ts.tv_sec <= 5 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000 &&
              !(ts.tv_sec == 5 && ts.tv_nsec > 0),
          "timespec holds the remaining time (%ld.%09ld)", (long)ts.tv_sec, ts.tv_nsec);

    /* Only backlog entries: no wait, timespec unchanged. */
    ts = (struct timespec){3, 7};
    blkioq_read(q, 0, buf, 4096, (void *)61, BLKIO_REQ_FUA);
    n = blkioq_do_io(q, c, 1, 1, &ts);
    CHECK(n == 1 && c[0].user_data == (void *)61, "backlog entry returned with a timeout");
    CHECK(ts_eq(&ts, 3, 7), "timespec unchanged when nothing had to be submitted or waited for");

    /* A zero timeout with min 1 and a large O_DIRECT read just submitted:
     * the device cannot have answered, so -ETIME is expected; if it did
     * answer, the call must have returned the completion. */
    if (!dq) {
        h_skip("-ETIME with a zero timeout (O_DIRECT unavailable in %s)", h_test_dir());
        return;
    }
    {
        int etime = 0, fast = 0;
        for (int attempt = 0; attempt < 5 && !etime; attempt++) {
            memset(buf, 0, big);
            ts = (struct timespec){0, 0};
            blkioq_read(dq, 0, buf, big, (void *)62, 0);
            n = blkioq_do_io(dq, c, 1, 1, &ts);
            if (n == -ETIME) {
                etime++;
                CHECK_STR(blkio_get_error_msg(), "Timer expired (os error 62)",
                          "-ETIME message");
                CHECK(ts_eq(&ts, 0, 0), "timespec {0, 0} after -ETIME");
                n = blkioq_do_io(dq, c, 1, 1, NULL);
                CHECK(n == 1 && c[0].user_data == (void *)62 && c[0].ret == 0,
                      "the timed-out request completes in a later call");
                CHECK(h_verify(buf, big, 0, 99) < 0, "and its data is right");
            } else {
                fast++;
                CHECK(n == 1 && c[0].user_data == (void *)62 && c[0].ret == 0 && ts_eq(&ts, 0, 0),
                      "zero timeout: either -ETIME or the completion (got %d)", n);
            }
        }
        if (!etime)
            h_skip("-ETIME never observed in %d attempts: the device answered at once", fast);
        (void)bigfile;
    }

    /* -ETIME after a completion was gathered: it is kept for the next
     * call (docs/contract/requests.md §4.4). */
    {
        int kept = 0;
        for (int attempt = 0; attempt < 5 && !kept; attempt++) {
            ts = (struct timespec){0, 0};
            blkioq_flush(dq, (void *)64, BLKIO_REQ_NO_UNMAP);
            blkioq_read(dq, 0, buf, big, (void *)65, 0);
            n = blkioq_do_io(dq, c, 2, 2, &ts);
            if (n == -ETIME) {
                kept++;
                n = blkioq_do_io(dq, c, 2, 2, NULL);
                CHECK(n == 2 && c[0].user_data == (void *)64 && c[0].ret == -EINVAL &&
                          c[1].user_data == (void *)65 && c[1].ret == 0,
                      "after -ETIME the gathered completion comes first, then the read");
            } else {
                CHECK_INT(n, 2, "zero timeout, min 2: otherwise both completions");
            }
        }
        if (!kept)
            h_skip("-ETIME after partial progress never observed");
    }

    /* A short timeout that expires while a large read is in flight. */
    {
        ts = (struct timespec){0, 1000}; /* 1 µs */
        blkioq_read(dq, 0, buf, big, (void *)63, 0);
        n = blkioq_do_io(dq, c, 1, 1, &ts);
        if (n == -ETIME) {
            CHECK(ts_eq(&ts, 0, 0), "1 µs timeout: -ETIME sets the timespec to {0, 0}");
            n = blkioq_do_io(dq, c, 1, 1, NULL);
        }
        CHECK(n == 1 && c[0].user_data == (void *)63 && c[0].ret == 0,
              "1 µs timeout: the read is returned (now or later)");
    }
}

/* The application protocol of docs/contract/requests.md §5: submit with do_io(q, NULL,
 * 0, 0, NULL), poll the fd, read 8 bytes, reap with min 0, loop. */
static void event_loop(struct blkioq *q, const char *mode)
{
    int efd = blkioq_get_completion_fd(q);
    struct blkio_completion c[64];
    int got = 0, wakeups = 0, bad_reads = 0;
    uint64_t v;
    while (read(efd, &v, 8) == 8)
        ;
    for (int i = 0; i < 64; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, (void *)(uintptr_t)(100 + i), 0);
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "%s: submit 64 reads", mode);
    while (got < 64) {
        struct pollfd pfd = {efd, POLLIN, 0};
        int n;
        if (poll(&pfd, 1, 10000) != 1)
            break;
        wakeups++;
        if (read(efd, &v, 8) != 8)
            bad_reads++;
        n = blkioq_do_io(q, c + got, 0, 64 - got, NULL);
        if (n < 0)
            break;
        got += n;
    }
    CHECK_INT(bad_reads, 0, "%s: every wake-up had 8 bytes to read", mode);
    CHECK_INT(got, 64, "%s: event-driven loop collects all 64 completions (%d wake-ups)", mode,
              wakeups);
}

/* Event-driven mode: wait on the completion fd, then reap with min 0. */
static void test_event_driven(struct blkio *b, struct blkioq *q)
{
    int efd = blkioq_get_completion_fd(q);
    int fl = fcntl(efd, F_GETFL), fdfl = fcntl(efd, F_GETFD);
    char link[64] = "", proc[64];
    struct blkio_completion c[64];
    uint64_t v;

    CHECK(efd >= 0, "completion fd is a descriptor (%d)", efd);
    CHECK(fl != -1 && (fl & O_NONBLOCK), "completion fd has O_NONBLOCK");
    CHECK(fdfl != -1 && (fdfl & FD_CLOEXEC), "completion fd has FD_CLOEXEC");
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", efd);
    CHECK(readlink(proc, link, sizeof(link) - 1) > 0 && strcmp(link, "anon_inode:[eventfd]") == 0,
          "completion fd is an eventfd (%s)", link);
    CHECK_INT(blkioq_get_completion_fd(q), efd, "same completion fd on every call");

    {
        int add = blkio_add_queue(b);
        struct blkioq *q1 = blkio_get_queue(b, 1);
        struct blkioq *q2 = blkio_get_queue(b, add);
        int f1 = q1 ? blkioq_get_completion_fd(q1) : -2;
        int f2 = q2 ? blkioq_get_completion_fd(q2) : -3;
        CHECK(f1 >= 0 && f2 >= 0 && f1 != efd && f2 != efd && f1 != f2,
              "completion fds are distinct per queue (%d %d %d)", efd, f1, f2);
    }

    while (read(efd, &v, 8) == 8)
        ;
    CHECK(read(efd, &v, 8) == -1 && errno == EAGAIN, "reading an empty completion fd gives EAGAIN");

    event_loop(q, "buffered");

    /* blkioq_set_completion_fd_enabled(false) stops the kernel's signals
     * (IORING_CQ_EVENTFD_DISABLED); enabling again signals the completions
     * that arrived meanwhile. */
    {
        struct pollfd pfd = {efd, POLLIN, 0};
        blkioq_set_completion_fd_enabled(q, false);
        while (read(efd, &v, 8) == 8)
            ;
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        CHECK_INT(h_wait1(q, NULL), 0, "disabled: a read completes in blkioq_do_io");
        CHECK_INT(poll(&pfd, 1, 0), 0, "disabled: its completion did not signal the fd");
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "disabled: submit a read");
        usleep(100000); /* it completes, unsignalled */
        CHECK_INT(poll(&pfd, 1, 0), 0, "disabled: the fd stays quiet");
        blkioq_set_completion_fd_enabled(q, true);
        CHECK_INT(poll(&pfd, 1, 0), 1, "enabling signals the completion waiting in the ring");
        while (read(efd, &v, 8) == 8)
            ;
        CHECK_INT(h_wait1(q, NULL), 0, "and the read is returned");
        blkioq_set_completion_fd_enabled(q, true);
        CHECK_INT(poll(&pfd, 1, 0), 0, "enabling an enabled fd signals nothing");
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        blkioq_do_io(q, NULL, 0, 0, NULL);
        CHECK_INT(poll(&pfd, 1, 10000), 1, "enabled: the completion signals the fd");
        CHECK_INT(h_wait1(q, NULL), 0, "the read completes (enabled)");
    }

    /* Library-detected failures signal the fd too. */
    {
        struct pollfd pfd = {efd, POLLIN, 0};
        while (read(efd, &v, 8) == 8)
            ;
        blkioq_read(q, 0, buf, 4096, (void *)7, BLKIO_REQ_FUA);
        CHECK_INT(poll(&pfd, 1, 0), 1, "completion fd readable right after a flag failure");
        CHECK(read(efd, &v, 8) == 8 && v >= 1, "eventfd counter is at least 1");
        blkioq_report_zones(q, 0, NULL, 0, (void *)8, 0);
        CHECK_INT(poll(&pfd, 1, 0), 1, "completion fd readable after an unsupported request");
        CHECK_INT(blkioq_do_io(q, c, 2, 2, NULL), 2, "both failures returned");
    }
}

/* The eventfd counter of descriptor fd (fdinfo "eventfd-count", in hex), or -1
 * when fd is not an eventfd. */
static long long eventfd_count(int fd)
{
    char path[64], line[128];
    long long count = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "eventfd-count: %llx", &count) == 1)
            break;
    fclose(f);
    return count;
}

/* The completion fd is signalled by the kernel only once the application has
 * asked for it (docs/contract/requests.md §5): block mode never pays for it,
 * and completions that arrived before the first blkioq_get_completion_fd
 * still make the fd readable. */
static void test_lazy_completion_fd(const char *path)
{
    struct blkio_completion c[1];
    struct blkio *b;
    struct blkioq *q;
    struct pollfd pfd = {-1, POLLIN, 0};
    int before[256], nbefore = 0, efd, n = 0;
    long long unsignalled = -1;
    uint64_t v;

    /* Block mode, the fd never asked for: the kernel does not signal it. */
    for (int fd = 0; fd < 256; fd++)
        before[fd] = h_fd_is_open(fd);
    b = h_open(path, "num-queues=1");
    if (!b)
        return;
    q = blkio_get_queue(b, 0);
    for (int i = 0; i < 100; i++) {
        blkioq_read(q, (uint64_t)(i % 64) * 4096, buf, 4096, (void *)(uintptr_t)i, 0);
        if (blkioq_do_io(q, c, 1, 1, NULL) == 1 && c[0].user_data == (void *)(uintptr_t)i &&
            c[0].ret == 0)
            n++;
    }
    CHECK_INT(n, 100, "block mode without the completion fd: 100 reads complete");
    for (int fd = 0; fd < 256; fd++)
        if (!before[fd] && eventfd_count(fd) >= 0) {
            nbefore++;
            unsignalled = eventfd_count(fd);
        }
    CHECK(nbefore == 1 && unsignalled == 0,
          "the queue's eventfd was not signalled by 100 completions (%d new eventfds, count %lld)",
          nbefore, unsignalled);

    /* The fd asked for after the completion is already in the CQ. */
    blkioq_read(q, 0, buf, 4096, (void *)1, 0);
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "submit a read before asking for the fd");
    usleep(100000); /* the buffered read completes (it usually did in the submit) */
    efd = blkioq_get_completion_fd(q);
    CHECK(efd >= 0 && !before[efd] && eventfd_count(efd) >= 0,
          "blkioq_get_completion_fd returns the queue's eventfd (%d)", efd);
    pfd.fd = efd;
    CHECK_INT(poll(&pfd, 1, 5000), 1, "a completion waiting in the ring makes the new fd readable");
    CHECK(read(efd, &v, 8) == 8 && v >= 1, "its counter is at least 1");
    CHECK(blkioq_do_io(q, c, 1, 1, NULL) == 1 && c[0].user_data == (void *)1 && c[0].ret == 0,
          "and the read is returned");

    /* From now on the kernel signals it for every completion. */
    CHECK_INT(poll(&pfd, 1, 0), 0, "the fd is quiet with nothing in flight");
    blkioq_read(q, 4096, buf, 4096, (void *)2, 0);
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "submit a read after asking for the fd");
    CHECK_INT(poll(&pfd, 1, 5000), 1, "its completion makes the fd readable");
    CHECK(blkioq_do_io(q, c, 1, 1, NULL) == 1 && c[0].user_data == (void *)2 && c[0].ret == 0,
          "and the read is returned");
    CHECK_INT(blkioq_get_completion_fd(q), efd, "the same fd on the next call");
    blkio_destroy(&b);
}

/* Polling mode: spin with min 0. */
static void test_polling(struct blkioq *q, const char *mode)
{
    struct blkio_completion c[16];
    int got = 0;
    long spins = 0;
    for (int i = 0; i < 16; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    while (got < 16 && spins < 50000000) {
        int n = blkioq_do_io(q, c + got, 0, 16 - got, NULL);
        if (n < 0)
            break;
        got += n;
        spins++;
    }
    CHECK_INT(got, 16, "%s: polling with min 0 collects all 16 reads (%ld calls)", mode, spins);
    CHECK_INT(blkioq_do_io_interruptible(q, c, 0, 16, NULL, NULL), 0,
              "%s: do_io_interruptible with sig NULL and nothing left", mode);
    blkioq_read(q, 0, buf, 4096, (void *)70, 0);
    CHECK(blkioq_do_io_interruptible(q, c, 1, 1, NULL, NULL) == 1 && c[0].user_data == (void *)70,
          "%s: do_io_interruptible with sig NULL waits like do_io", mode);
}

static void test_poll_queues(const char *path, bool direct)
{
    struct blkio *b = h_instance(path, direct ? "direct=true" : NULL, false);
    bool supported = true;
    const char *mode = direct ? "direct" : "buffered";
    if (!b)
        return;
    blkio_get_bool(b, "supports-poll-queues", &supported);
    if (!supported) {
        CHECK_OK(blkio_set_int(b, "num-poll-queues", 1), "%s: num-poll-queues 1 accepted", mode);
        CHECK_ERR(blkio_start(b), -EINVAL, "Poll queues not supported",
                  "%s: start with a poll queue fails", mode);
        CHECK(blkio_get_queue(b, 0) == NULL, "%s: still not started", mode);
        blkio_set_int(b, "num-poll-queues", 0);
        CHECK_OK(blkio_start(b), "%s: start retried without poll queues", mode);
        CHECK_ERR(blkio_add_poll_queue(b), -EINVAL, "Poll queues not supported",
                  "%s: add_poll_queue fails", mode);
        CHECK(blkio_get_poll_queue(b, 0) == NULL, "%s: no poll queue", mode);
        blkio_destroy(&b);
        if (direct)
            h_skip("poll queue behaviour: supports-poll-queues is false for %s", path);
        return;
    }

    /* The device can poll: exercise a poll queue. */
    {
        struct blkioq *pq;
        struct blkio_completion c[2];
        sigset_t none;
        int n;
        sigemptyset(&none);
        blkio_set_int(b, "num-poll-queues", 1);
        CHECK_OK(blkio_start(b), "%s: start with a poll queue", mode);
        pq = blkio_get_poll_queue(b, 0);
        CHECK(pq != NULL, "%s: poll queue 0 exists", mode);
        if (!pq) {
            blkio_destroy(&b);
            return;
        }
        blkio_create("x", NULL); /* set a known message */
        CHECK_INT(blkioq_get_completion_fd(pq), -1, "poll queue has no completion fd");
        CHECK_STR(blkio_get_error_msg(), "bp must be non-NULL",
                  "get_completion_fd -1 on a poll queue leaves the message alone");
        CHECK_ERR(blkioq_do_io_interruptible(pq, c, 0, 1, NULL, &none), -ENOTSUP,
                  "blkioq_do_io_interruptible() is not supported on poll queues",
                  "do_io_interruptible with a mask on a poll queue");
        CHECK_ERR(blkioq_do_io_interruptible(pq, c, 2, 1, NULL, &none), -EINVAL,
                  "min_completions must be less than or equal to max_completions",
                  "argument validation before the poll-queue check");
        blkioq_flush(pq, (void *)1, 0);
        n = blkioq_do_io(pq, c, 1, 1, NULL);
        CHECK(n == 1 && c[0].ret == -ENOTSUP && c[0].error_msg &&
                  !strcmp(c[0].error_msg, "request not supported on poll queues for this driver"),
              "flush on a poll queue: -ENOTSUP");
        h_fill(buf, 4096, 0, 5);
        blkioq_write(pq, 0, buf, 4096, NULL, 0);
        n = blkioq_do_io(pq, c, 1, 1, NULL);
        CHECK(n == 1 && c[0].ret == 0, "write on a poll queue");
        CHECK_INT(blkio_add_poll_queue(b), 1, "add_poll_queue gives index 1");
    }
    blkio_destroy(&b);
}

/* Small rings where a reaped completion needs a follow-up request (the
 * tmpfs write-zeroes NO_UNMAP emulation: punch, then allocate; a read
 * straddling the end of the file: the rest is read again and hits EOF): a
 * timed do_io waiting for every request must return them all, never
 * -ETIME while they can complete. */
static void test_follow_ups(const char *dir, const char *what, bool direct)
{
    for (int entries = 2; entries <= 4; entries++) {
        char opts[64];
        const char *path = h_tmpfile(dir, 1 << 20);
        struct blkio *b;
        struct blkioq *q;
        struct blkio_completion c[16];
        int count = 16, got = 0, bad = 0, n = 0;
        if (!path)
            return;
        snprintf(opts, sizeof(opts), "num-entries=%d%s", entries, direct ? ",direct=true" : "");
        b = h_open(path, opts);
        if (!b)
            return;
        q = blkio_get_queue(b, 0);
        for (int mode = 0; mode < 2; mode++) {
            struct timespec ts = {5, 0};
            if (mode == 0 && direct)
                continue;
            memset(buf, 0x5a, (size_t)count * 8192);
            for (int i = 0; i < count; i++) {
                if (mode == 0)
                    blkioq_write_zeroes(q, (uint64_t)i * 65536, 65536, (void *)(intptr_t)i,
                                        BLKIO_REQ_NO_UNMAP);
                else /* 4 KiB before the end, 8 KiB long */
                    blkioq_read(q, (1 << 20) - 4096, buf + (size_t)i * 8192, 8192,
                                (void *)(intptr_t)i, 0);
            }
            /* Submit-only calls (max 0 reaps nothing, the backlog refills
             * the free SQ entries) put more requests in the kernel than
             * the SQ holds, so that their follow-ups cannot all be queued
             * at once. */
            for (int i = 0; i < 4; i++) {
                blkioq_do_io(q, c, 0, 0, NULL);
                usleep(20000);
            }
            got = 0;
            bad = 0;
            while (got < count) {
                n = blkioq_do_io(q, c, count - got, 16, &ts);
                if (n <= 0)
                    break;
                for (int i = 0; i < n; i++)
                    bad += c[i].ret != 0;
                got += n;
            }
            if (mode == 1)
                for (int i = 0; i < count; i++)
                    bad += h_verify_byte(buf + (size_t)i * 8192 + 4096, 4096, 0) >= 0;
            CHECK(got == count && bad == 0,
                  "%s%s num-entries %d: %d %s complete in one timed do_io (got %d, "
                  "%d bad, last %d %s)",
                  what, direct ? " direct" : "", entries, count,
                  mode == 0 ? "write_zeroes NO_UNMAP" : "reads straddling EOF", got, bad, n,
                  n < 0 ? blkio_get_error_msg() : "");
            if (got < count) /* collect the rest before the next mode */
                while (got < count && (n = blkioq_do_io(q, c, 1, 16, NULL)) > 0)
                    got += n;
        }
        blkio_destroy(&b);
    }
}

int main(void)
{
    const size_t big = 8 << 20;
    const char *path = h_scratch(4 << 20);
    const char *bigfile = h_scratch(big);
    struct blkio *b, *db;
    if (posix_memalign((void **)&buf, 4096, big))
        return 1;

    b = h_open(path, "num-queues=2");
    if (!b)
        return h_done();
    test_validation(blkio_get_queue(b, 0));
    test_counting(blkio_get_queue(b, 0));
    test_submit_only(blkio_get_queue(b, 0), blkioq_get_completion_fd(blkio_get_queue(b, 0)));

    /* Data on disk for O_DIRECT reads (holes would not reach the device). */
    CHECK(h_write_file(bigfile, 0, big, 99), "write %zu bytes of data for O_DIRECT reads", big);
    db = h_open(bigfile, "direct=true");
    test_timeouts(blkio_get_queue(b, 0), db ? blkio_get_queue(db, 0) : NULL, bigfile, big);

    test_event_driven(b, blkio_get_queue(b, 0));
    test_lazy_completion_fd(path);
    if (db)
        event_loop(blkio_get_queue(db, 0), "direct");
    /* O_DIRECT reads complete asynchronously, so polling really spins;
     * buffered ones usually complete during the submit. */
    test_polling(blkio_get_queue(db ? db : b, db ? 0 : 1), db ? "direct" : "buffered");
    test_polling(blkio_get_queue(b, 1), "buffered");
    blkio_destroy(&db);
    blkio_destroy(&b);

    test_follow_ups(h_test_dir(), "dir", false);
    test_follow_ups(h_test_dir(), "dir", true);
    if (h_tmpfs_dir())
        test_follow_ups(h_tmpfs_dir(), "tmpfs", false);
    else
        h_skip("follow-ups on tmpfs (BLKIO_TEST_TMPFS not set)");
    test_poll_queues(path, false);
    test_poll_queues(path, true);
    return h_done();
}
