/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Faults underneath io_uring (docs/robustness.md):
 *   1. a full file system: a 1 MiB tmpfs mounted in a private mount
 *      namespace (needs root; skipped otherwise), a 4 MiB sparse file on
 *      it, 4 KiB writes until it is full: the writes that do not fit
 *      complete with -ENOSPC, and every write acknowledged as successful
 *      reads back (with the library and with pread);
 *   2. the backing file truncated from 1 MiB to 64 KiB right after 32
 *      reads covering it were submitted: a regular file can grow
 *      (`can-grow` true), so a read past its end succeeds with zeros
 *      (docs/contract/requests.md); each read must return either the
 *      file's data (it ran before the truncation, or lies below the new
 *      end) or zeros, never the stale bytes of the buffer; the same reads
 *      after the truncation give the data below the end and zeros beyond;
 *   3. durability across a crash of the process: a child writes with
 *      BLKIO_REQ_FUA, and another with a plain write followed by a
 *      completed flush, then SIGKILLs itself at once; the parent reopens
 *      the file and finds the data.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include "harness.h"

#define BLOCK 4096

static void test_full_file_system(void)
{
    char dir[] = "/tmp/blkio-enospc-XXXXXX", path[64];
    static uint8_t buf[BLOCK], back[BLOCK];
    bool acked[1024] = {false};
    int ok = 0, enospc = 0, other = 0, bad = 0;
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", "", MS_REC | MS_PRIVATE, NULL) != 0) {
        h_skip("full file system: needs root for a private tmpfs mount");
        return;
    }
    if (!mkdtemp(dir) || mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
        CHECK(false, "mount a 1 MiB tmpfs: %s", strerror(errno));
        return;
    }
    snprintf(path, sizeof(path), "%s/disk", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 1024 * BLOCK) == 0, "a 4 MiB sparse file on it");
    close(fd);
    struct blkio *b = h_open(path, NULL);
    if (b) {
        struct blkioq *q = blkio_get_queue(b, 0);
        for (int i = 0; i < 1024; i++) {
            h_fill(buf, BLOCK, (uint64_t)i * BLOCK, 7);
            int ret = h_write(q, (uint64_t)i * BLOCK, buf, BLOCK, 0);
            if (ret == 0) {
                ok++;
                acked[i] = true;
            } else if (ret == -ENOSPC) {
                enospc++;
            } else {
                other++;
            }
        }
        CHECK(ok > 0 && enospc > 0 && other == 0,
              "writes on a full file system: %d succeed, %d complete with -ENOSPC, %d otherwise",
              ok, enospc, other);
        for (int i = 0; i < 1024; i++) {
            if (!acked[i])
                continue;
            memset(back, 0, BLOCK);
            if (h_read(q, (uint64_t)i * BLOCK, back, BLOCK) != 0 ||
                h_verify(back, BLOCK, (uint64_t)i * BLOCK, 7) >= 0 ||
                h_verify_file(path, (uint64_t)i * BLOCK, BLOCK, 7) != -1)
                bad++;
        }
        CHECK_INT(bad, 0, "every acknowledged write reads back (library and pread; %d blocks)",
                  ok);
        blkio_destroy(&b);
    }
    unlink(path);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

enum { TRUNC_READS = 32, TRUNC_LEN = 32768 };

/* Queues the TRUNC_READS reads that cover the 1 MiB file, read i into
 * buf + i * TRUNC_LEN (user_data i), over a buffer of stale 0xee bytes. */
static void queue_reads(struct blkioq *q, uint8_t *buf)
{
    memset(buf, 0xee, TRUNC_READS * TRUNC_LEN);
    for (int i = 0; i < TRUNC_READS; i++)
        blkioq_read(q, (uint64_t)i * TRUNC_LEN, buf + i * TRUNC_LEN, TRUNC_LEN,
                    (void *)(uintptr_t)i, 0);
}

/* What read i left in its buffer. */
enum outcome { DATA, ZEROS, OTHER };

/* Waits (10 s) for the reads queued by queue_reads; sets outcome[i] to
 * DATA (ret 0, the file's pattern), ZEROS (ret 0, all zeros) or OTHER
 * (also for a read that did not complete). Returns the number of
 * completions. */
static int wait_reads(struct blkioq *q, const uint8_t *buf, enum outcome outcome[])
{
    struct blkio_completion c[TRUNC_READS];
    struct timespec t = {10, 0};
    int got = 0;
    for (int i = 0; i < TRUNC_READS; i++)
        outcome[i] = OTHER;
    while (got < TRUNC_READS) {
        int n = blkioq_do_io(q, c, TRUNC_READS - got, TRUNC_READS - got, &t);
        if (n <= 0)
            break;
        for (int k = 0; k < n; k++) {
            int i = (int)(uintptr_t)c[k].user_data;
            const uint8_t *p = buf + i * TRUNC_LEN;
            if (c[k].ret == 0 && h_verify(p, TRUNC_LEN, (uint64_t)i * TRUNC_LEN, 5) < 0)
                outcome[i] = DATA;
            else if (c[k].ret == 0 && h_verify_byte(p, TRUNC_LEN, 0) < 0)
                outcome[i] = ZEROS;
            else
                outcome[i] = OTHER;
        }
        got += n;
    }
    return got;
}

static void test_truncated_in_flight(const char *path)
{
    enum { N = TRUNC_READS, LEN = TRUNC_LEN, BELOW = 2 /* reads below the new end */ };
    static uint8_t buf[N * LEN];
    enum outcome outcome[N];
    struct blkio_completion c[1];
    int ok = 0, zero = 0, wrong = 0, low_failed = 0, got;
    if (!h_write_file(path, 0, N * LEN, 5)) {
        CHECK(false, "write the 1 MiB pattern");
        return;
    }
    struct blkio *b = h_open(path, NULL);
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    queue_reads(q, buf);
    CHECK_INT(blkioq_do_io(q, c, 0, 0, NULL), 0, "submit 32 reads of 32 KiB");
    CHECK_INT(truncate(path, BELOW * LEN), 0, "truncate the file to 64 KiB with them in flight");
    got = wait_reads(q, buf, outcome);
    for (int i = 0; i < N; i++) {
        ok += outcome[i] == DATA;
        zero += outcome[i] == ZEROS && i >= BELOW; /* reads that ran past the new end */
        wrong += outcome[i] == OTHER || (outcome[i] == ZEROS && i < BELOW);
        low_failed += i < BELOW && outcome[i] != DATA;
    }
    CHECK(got == N && ok + zero == N && wrong == 0 && low_failed == 0,
          "truncated in flight: %d of %d complete, %d with the file's data, %d with zeros "
          "(past the new end), %d otherwise, %d wrong below the new end",
          got, N, ok, zero, wrong, low_failed);
    /* The same reads after the truncation: 2 below the end, 30 beyond. */
    ok = zero = wrong = 0;
    queue_reads(q, buf);
    got = wait_reads(q, buf, outcome);
    for (int i = 0; i < N; i++) {
        ok += i < BELOW && outcome[i] == DATA;
        zero += i >= BELOW && outcome[i] == ZEROS;
        wrong += outcome[i] != (i < BELOW ? DATA : ZEROS);
    }
    CHECK(got == N && ok == 2 && zero == N - 2 && wrong == 0,
          "after the truncation: the 2 reads below the end return the data, the 30 beyond "
          "read zeros (%d with data, %d with zeros, %d otherwise)", ok, zero, wrong);
    blkio_destroy(&b);
}

static void test_durability(const char *path)
{
    static uint8_t buf[2 * BLOCK];
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct blkio *b = h_open(path, NULL);
        if (!b)
            _exit(2);
        struct blkioq *q = blkio_get_queue(b, 0);
        h_fill(buf, 2 * BLOCK, 0, 11);
        if (h_write(q, 0, buf, BLOCK, BLKIO_REQ_FUA) != 0)
            _exit(3);
        blkioq_write(q, BLOCK, buf + BLOCK, BLOCK, NULL, 0);
        if (h_wait1(q, NULL) != 0)
            _exit(4);
        blkioq_flush(q, NULL, 0);
        if (h_wait1(q, NULL) != 0)
            _exit(5);
        kill(getpid(), SIGKILL);
        _exit(6);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
          "the writer was killed right after its FUA write and its flush (status %#x)",
          status);
    CHECK_INT(h_verify_file(path, 0, BLOCK, 11), -1, "the FUA write is in the file");
    CHECK_INT(h_verify_file(path, BLOCK, BLOCK, 11), -1, "the flushed write is in the file");
    struct blkio *b = h_open(path, NULL);
    if (b) {
        memset(buf, 0, sizeof(buf));
        CHECK(h_read(blkio_get_queue(b, 0), 0, buf, 2 * BLOCK) == 0 &&
                  h_verify(buf, 2 * BLOCK, 0, 11) < 0,
              "a new instance reads both back");
        blkio_destroy(&b);
    }
}

int main(void)
{
    test_durability(h_scratch(1 << 20));
    test_truncated_in_flight(h_scratch(1 << 20));
    test_full_file_system();
    return h_done();
}
