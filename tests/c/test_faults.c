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

static void test_truncated_in_flight(const char *path)
{
    enum { N = 32, LEN = 32768 };
    static uint8_t buf[N * LEN];
    struct blkio_completion c[N];
    int ok = 0, zero = 0, wrong = 0, low_failed = 0, got = 0;
    if (!h_write_file(path, 0, N * LEN, 5)) {
        CHECK(false, "write the 1 MiB pattern");
        return;
    }
    struct blkio *b = h_open(path, NULL);
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    memset(buf, 0xee, sizeof(buf));
    for (int i = 0; i < N; i++)
        blkioq_read(q, (uint64_t)i * LEN, buf + i * LEN, LEN, (void *)(uintptr_t)i, 0);
    CHECK_INT(blkioq_do_io(q, c, 0, 0, NULL), 0, "submit 32 reads of 32 KiB");
    CHECK_INT(truncate(path, 2 * LEN), 0, "truncate the file to 64 KiB with them in flight");
    struct timespec t = {10, 0};
    while (got < N) {
        int n = blkioq_do_io(q, c, N - got, N - got, &t);
        if (n <= 0)
            break;
        for (int k = 0; k < n; k++) {
            int i = (int)(uintptr_t)c[k].user_data;
            bool data = h_verify(buf + i * LEN, LEN, (uint64_t)i * LEN, 5) < 0;
            bool zeros = h_verify_byte(buf + i * LEN, LEN, 0) < 0;
            if (c[k].ret == 0 && data)
                ok++;
            else if (c[k].ret == 0 && zeros && i >= 2)
                zero++; /* counts reads that ran past the new end */
            else
                wrong++;
            low_failed += i < 2 && !(c[k].ret == 0 && data);
        }
        got += n;
    }
    CHECK(got == N && ok + zero == N && wrong == 0 && low_failed == 0,
          "truncated in flight: %d of %d complete, %d with the file's data, %d with zeros "
          "(past the new end), %d otherwise, %d wrong below the new end",
          got, N, ok, zero, wrong, low_failed);
    /* The same reads after the truncation: 2 below the end, 30 beyond. */
    ok = zero = wrong = got = 0;
    memset(buf, 0xee, sizeof(buf));
    for (int i = 0; i < N; i++)
        blkioq_read(q, (uint64_t)i * LEN, buf + i * LEN, LEN, (void *)(uintptr_t)i, 0);
    t = (struct timespec){10, 0};
    while (got < N) {
        int n = blkioq_do_io(q, c, N - got, N - got, &t);
        if (n <= 0)
            break;
        for (int k = 0; k < n; k++) {
            int i = (int)(uintptr_t)c[k].user_data;
            bool data = h_verify(buf + i * LEN, LEN, (uint64_t)i * LEN, 5) < 0;
            bool zeros = h_verify_byte(buf + i * LEN, LEN, 0) < 0;
            ok += c[k].ret == 0 && i < 2 && data;
            zero += c[k].ret == 0 && i >= 2 && zeros;
            wrong += !(c[k].ret == 0 && (i < 2 ? data : zeros));
        }
        got += n;
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
