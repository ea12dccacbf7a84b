/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Built by tests/pkgconfig/run.sh with nothing but
 * `cc ... $(pkg-config --cflags --libs blkio)` against an installed prefix:
 * calls every one of the 43 API functions and uses every flag/enum name,
 * struct and field of blkio.h, asserting real outcomes on an io_uring
 * instance over a scratch file (argv[1]).
 */
#define _POSIX_C_SOURCE 200809L
#include <blkio.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures, checks;

static void check(int ok, const char *what)
{
    checks++;
    if (!ok)
        failures++;
    printf("%s - pkg-config program: %s%s%s\n", ok ? "ok" : "not ok", what,
           ok ? "" : ": ", ok ? "" : blkio_get_error_msg());
}

/* Submits nothing new; waits for exactly one completion. */
static int wait1(struct blkioq *q, struct blkio_completion *c)
{
    struct timespec timeout = {10, 0};
    int n = blkioq_do_io(q, c, 1, 1, &timeout);
    return n == 1 ? c->ret : -1000 + n;
}

int main(int argc, char **argv)
{
    struct blkio *b = NULL;
    struct blkioq *q, *q1;
    struct blkio_mem_region region;
    struct blkio_completion c;
    struct blkio_zone zones[2];
    struct iovec iov[2];
    char *str = NULL;
    bool flag = true;
    int value = 0, index, fd;
    uint64_t capacity = 0, align = 0;
    sigset_t mask;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH-FILE\n", argv[0]);
        return 2;
    }

    /* Every flag and enum name, with the values of docs/contract/abi.md §2.3. */
    check(BLKIO_REQ_FUA == 1 && BLKIO_REQ_NO_UNMAP == 2 && BLKIO_REQ_NO_FALLBACK == 4,
          "BLKIO_REQ_* values");
    check(BLKIO_ZONE_TYPE_CONVENTIONAL == 1 && BLKIO_ZONE_TYPE_SEQWRITE_REQ == 2 &&
              BLKIO_ZONE_TYPE_SEQWRITE_PREF == 3,
          "BLKIO_ZONE_TYPE_* values");
    check(BLKIO_ZONE_STATE_EMPTY == 1 && BLKIO_ZONE_STATE_IMP_OPEN == 2 &&
              BLKIO_ZONE_STATE_EXP_OPEN == 3 && BLKIO_ZONE_STATE_CLOSED == 4 &&
              BLKIO_ZONE_STATE_READONLY == 0xD && BLKIO_ZONE_STATE_FULL == 0xE &&
              BLKIO_ZONE_STATE_OFFLINE == 0xF,
          "BLKIO_ZONE_STATE_* values");
    check(sizeof(struct blkio_mem_region) == 40 && sizeof(struct blkio_completion) == 32 &&
              sizeof(struct blkio_zone) == 64,
          "struct sizes 40/32/64");

    /* Life cycle and properties */
    check(blkio_create("io_uring", &b) == 0 && b, "blkio_create");
    check(blkio_set_str(b, "path", argv[1]) == 0, "blkio_set_str path");
    check(blkio_get_str(b, "path", &str) == 0 && str && strcmp(str, argv[1]) == 0,
          "blkio_get_str path");
    free(str);
    check(blkio_set_bool(b, "read-only", false) == 0, "blkio_set_bool read-only");
    check(blkio_get_bool(b, "read-only", &flag) == 0 && !flag, "blkio_get_bool read-only");
    check(blkio_connect(b) == 0, "blkio_connect");
    check(blkio_set_int(b, "num-queues", 1) == 0, "blkio_set_int num-queues");
    check(blkio_get_int(b, "num-queues", &value) == 0 && value == 1, "blkio_get_int num-queues");
    check(blkio_get_uint64(b, "capacity", &capacity) == 0 && capacity == 1 << 20,
          "blkio_get_uint64 capacity");
    check(blkio_set_uint64(b, "capacity", 0) == -EACCES, "blkio_set_uint64 on read-only capacity");
    check(blkio_set_bool(b, "nope", true) == -ENOENT &&
              strlen(blkio_get_error_msg()) > 0,
          "blkio_get_error_msg after an unknown property");
    check(blkio_start(b) == 0, "blkio_start");

    /* Queues */
    q = blkio_get_queue(b, 0);
    check(q != NULL, "blkio_get_queue 0");
    check(blkio_get_poll_queue(b, 0) == NULL, "blkio_get_poll_queue 0 is NULL");
    index = blkio_add_queue(b);
    check(index == 1 && (q1 = blkio_get_queue(b, 1)) != NULL, "blkio_add_queue");
    check(blkio_remove_queue(b, index) == 0 && blkio_get_queue(b, 1) == NULL,
          "blkio_remove_queue");
    index = blkio_add_poll_queue(b);
    check(index == 0 || index == -EINVAL, "blkio_add_poll_queue (0, or -EINVAL unsupported)");
    check(blkio_remove_poll_queue(b, 0) == (index == 0 ? 0 : -ENOENT), "blkio_remove_poll_queue");

    /* Memory */
    check(blkio_get_uint64(b, "mem-region-alignment", &align) == 0 && align >= 1,
          "mem-region-alignment");
    memset(&region, 0, sizeof(region));
    check(blkio_alloc_mem_region(b, &region, 1 << 16) == 0 && region.addr &&
              region.len == 1 << 16 && region.iova == 0 && region.fd_offset == 0 &&
              region.fd >= 0 && region.flags == 0,
          "blkio_alloc_mem_region fills every field");
    check(blkio_map_mem_region(b, &region) == 0, "blkio_map_mem_region");

    /* Requests */
    {
        char *buf = region.addr;
        memset(buf, 0x5a, 8192);
        blkioq_write(q, 0, buf, 4096, &c, BLKIO_REQ_FUA);
        check(wait1(q, &c) == 0 && c.user_data == &c && c.error_msg == NULL,
              "blkioq_write with FUA");
        iov[0].iov_base = buf + 4096;
        iov[0].iov_len = 1024;
        iov[1].iov_base = buf + 5120;
        iov[1].iov_len = 3072;
        blkioq_writev(q, 4096, iov, 2, NULL, 0);
        check(wait1(q, &c) == 0, "blkioq_writev");
        memset(buf, 0, 8192);
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        check(wait1(q, &c) == 0 && buf[0] == 0x5a && buf[4095] == 0x5a, "blkioq_read");
        blkioq_readv(q, 4096, iov, 2, NULL, 0);
        check(wait1(q, &c) == 0 && buf[4096] == 0x5a && buf[8191] == 0x5a, "blkioq_readv");
        blkioq_write_zeroes(q, 0, 4096, NULL, BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK);
        check(wait1(q, &c) == 0, "blkioq_write_zeroes");
        blkioq_read(q, 0, buf, 4096, NULL, 0);
        check(wait1(q, &c) == 0 && buf[0] == 0 && buf[4095] == 0, "zeroes read back");
        blkioq_discard(q, 4096, 4096, NULL, 0);
        check(wait1(q, &c) == 0, "blkioq_discard");
        blkioq_flush(q, NULL, 0);
        check(wait1(q, &c) == 0, "blkioq_flush");
    }

    /* Zone requests: not supported by io_uring on a regular file. */
    memset(zones, 0, sizeof(zones));
    blkioq_report_zones(q, 0, zones, 2, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_report_zones -> -ENOTSUP");
    check(zones[0].start == 0 && zones[0].len == 0 && zones[0].capacity == 0 &&
              zones[0].write_pointer == 0 && zones[0].zone_type == 0 &&
              zones[0].zone_state == 0 && zones[0].reset == 0 && zones[0].reserved_[0] == 0,
          "struct blkio_zone untouched");
    blkioq_open_zone(q, 0, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_open_zone -> -ENOTSUP");
    blkioq_close_zone(q, 0, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_close_zone -> -ENOTSUP");
    blkioq_finish_zone(q, 0, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_finish_zone -> -ENOTSUP");
    blkioq_reset_zone(q, 0, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_reset_zone -> -ENOTSUP");
    blkioq_open_all_zones(q, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_open_all_zones -> -ENOTSUP");
    blkioq_close_all_zones(q, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_close_all_zones -> -ENOTSUP");
    blkioq_finish_all_zones(q, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP, "blkioq_finish_all_zones -> -ENOTSUP");
    blkioq_reset_all_zones(q, NULL, 0);
    check(wait1(q, &c) == -ENOTSUP && c.error_msg != NULL, "blkioq_reset_all_zones -> -ENOTSUP");

    /* Completion fd and the interruptible wait */
    fd = blkioq_get_completion_fd(q);
    check(fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK), "blkioq_get_completion_fd");
    blkioq_set_completion_fd_enabled(q, true);
    blkioq_set_completion_fd_enabled(q, false);
    sigemptyset(&mask);
    blkioq_flush(q, NULL, 0);
    check(blkioq_do_io_interruptible(q, &c, 1, 1, NULL, &mask) == 1 && c.ret == 0,
          "blkioq_do_io_interruptible with a signal mask");
    check(blkioq_do_io(q, &c, 1, 1, NULL) == -EINVAL, "blkioq_do_io with nothing owed -> -EINVAL");

    blkio_unmap_mem_region(b, &region);
    blkio_free_mem_region(b, &region);
    blkio_destroy(&b);
    check(b == NULL, "blkio_destroy");

    printf("# %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
