/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The io_uring driver on a real block device of the vmtest guest (argv[1]:
 * $VMTEST_BLK, $VMTEST_BLK_4K or $VMTEST_NVME_BLK): properties against
 * sysfs (docs/contract/properties.md §3), O_DIRECT data, write zeroes, discard, device
 * errors, read-only mode and poll queues where the device polls.
 */
#define _GNU_SOURCE
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "../c/harness.h"
#include "vm.h"

static const char *dev;
static long long lbs;

static void properties(void)
{
    struct blkio *b = h_driver_instance("io_uring", dev, "direct=true", false);
    struct blkio *buffered = h_driver_instance("io_uring", dev, NULL, false);
    long long pbs = vm_sysfs(dev, "queue/physical_block_size");
    long long gran = vm_sysfs(dev, "queue/discard_granularity");
    long long fua = vm_sysfs(dev, "queue/fua");
    long long io_poll = vm_sysfs(dev, "queue/io_poll");
    uint64_t size64 = 0;
    char cache[32] = "";
    int fd = open(dev, O_RDONLY);
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size64) < 0)
        size64 = 0;
    if (fd >= 0)
        close(fd);
    vm_sysfs_str(dev, "queue/write_cache", cache, sizeof(cache));
    if (!b || !buffered)
        goto out;

    CHECK_INT(vm_get_u64(b, "capacity"), vm_sysfs(dev, "size") * 512, "capacity = sysfs size");
    CHECK_INT(vm_get_u64(b, "capacity"), size64, "capacity = BLKGETSIZE64");
    CHECK_INT(vm_get_bool(b, "direct"), 1, "direct");
    CHECK_INT(vm_get_int(b, "request-alignment"), lbs, "direct: request-alignment = logical block");
    CHECK_INT(vm_get_int(b, "buf-alignment"), lbs, "direct: buf-alignment");
    CHECK_INT(vm_get_u64(b, "mem-region-alignment"), lbs, "direct: mem-region-alignment");
    CHECK_INT(vm_get_int(b, "optimal-io-alignment"), pbs, "optimal-io-alignment = physical block");
    CHECK_INT(vm_get_int(b, "optimal-io-size"), vm_sysfs(dev, "queue/optimal_io_size"),
              "optimal-io-size = sysfs");
    CHECK_INT(vm_get_int(b, "discard-alignment"), gran, "discard-alignment = discard_granularity");
    CHECK_INT(vm_get_int(b, "discard-alignment-offset"), 0, "discard-alignment-offset");
    CHECK_INT(vm_get_bool(b, "supports-fua-natively"), fua > 0, "supports-fua-natively = fua (%lld)",
              fua);
    CHECK_INT(vm_get_bool(b, "flush-needed"), strcmp(cache, "write back") == 0,
              "direct: flush-needed = write back cache (%s)", cache);
    CHECK_INT(vm_get_bool(b, "supports-poll-queues"), io_poll == 1,
              "direct: supports-poll-queues = (io_poll == 1) (io_poll %lld)", io_poll);
    CHECK_INT(vm_get_bool(b, "can-grow"), 0, "can-grow");
    CHECK_INT(vm_get_int(b, "max-transfer"), 0, "max-transfer");
    CHECK_INT(vm_get_int(b, "max-segments"), sysconf(_SC_IOV_MAX), "max-segments");
    CHECK_INT(vm_get_u64(b, "max-discard-len"), 0, "max-discard-len");
    CHECK_INT(vm_get_u64(b, "max-write-zeroes-len"), 0, "max-write-zeroes-len");
    CHECK_INT(vm_get_int(buffered, "request-alignment"), 1, "buffered: request-alignment 1");
    CHECK_INT(vm_get_bool(buffered, "supports-poll-queues"), 0, "buffered: no poll queues");
    CHECK_INT(vm_get_bool(buffered, "flush-needed"), 1, "buffered: flush-needed");
out:
    blkio_destroy(&b);
    blkio_destroy(&buffered);
}

static void data_path(void)
{
    struct blkio *b = h_driver_instance("io_uring", dev, "direct=true", true);
    const size_t len = 65536;
    uint8_t *buf = vm_alloc(len + 4096), *rd = vm_alloc(len + 4096);
    uint64_t cap;
    const char *msg;
    if (!b)
        goto out;
    struct blkioq *q = blkio_get_queue(b, 0);
    cap = (uint64_t)vm_get_u64(b, "capacity");

    h_fill(buf, len, 1048576, 30);
    blkioq_write(q, 1048576, buf, len, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "O_DIRECT write 64 KiB");
    blkioq_read(q, 1048576, rd, len, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "O_DIRECT read 64 KiB");
    CHECK_INT(h_verify(rd, len, 1048576, 30), -1, "read back the pattern");
    CHECK_INT(vm_verify_dev(dev, 1048576, len, 30, false), -1, "data on the device");

    h_fill(buf, 3 * 4096, 2097152, 31);
    struct iovec wv[3] = {{buf, 4096}, {buf + 4096, 4096}, {buf + 8192, 4096}};
    blkioq_writev(q, 2097152, wv, 3, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "writev 3 x 4K with FUA");
    memset(rd, 0, 3 * 4096);
    struct iovec rv[2] = {{rd, 8192}, {rd + 8192, 4096}};
    blkioq_readv(q, 2097152, rv, 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "readv 8K + 4K");
    CHECK_INT(h_verify(rd, 3 * 4096, 2097152, 31), -1, "readv data");
    blkioq_write(q, 2097152, buf, 4096, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write with FUA");

    /* Misaligned O_DIRECT requests: the kernel refuses them. */
    blkioq_read(q, (uint64_t)lbs / 2, rd, (size_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, NULL, "read at half a block");
    blkioq_read(q, 0, rd, (size_t)lbs / 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, NULL, "read of half a block");
    if (lbs > 512) {
        blkioq_read(q, 0, rd, 512, NULL, 0);
        CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, NULL, "512-byte read on a %lld-byte-block device",
                  lbs);
    }
    blkioq_read(q, 0, rd + 1, (size_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, NULL, "read into a buffer at an odd address");
    blkioq_read(q, 0, rd + lbs, (size_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read into a buffer at +logical block");

    /* write_zeroes with every flag combination. */
    for (uint32_t flags = 0; flags < 8; flags++) {
        uint64_t off = 4194304 + flags * 3 * 4096;
        vm_fill_dev(dev, off, 3 * 4096, 32);
        blkioq_write_zeroes(q, off + 4096, 4096, NULL, flags);
        CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write_zeroes flags %#x", flags);
        CHECK_INT(vm_verify_dev(dev, off + 4096, 4096, 0, true), -1, "zeroed (flags %#x)", flags);
        CHECK(vm_verify_dev(dev, off, 4096, 32, false) == -1 &&
                  vm_verify_dev(dev, off + 8192, 4096, 32, false) == -1,
              "neighbours intact (flags %#x)", flags);
    }
    blkioq_write_zeroes(q, (uint64_t)lbs / 2, (uint64_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, NULL, "write_zeroes at half a block");

    /* Discard: BLKDISCARD semantics (io_uring command or ioctl). */
    vm_fill_dev(dev, 8388608, 65536, 33);
    blkioq_discard(q, 8388608, 65536, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "discard 64 KiB");
    /* QEMU backs these disks with sparse raw files and deallocates. */
    CHECK_INT(vm_verify_dev(dev, 8388608, 65536, 0, true), -1,
              "discarded range reads back as zeroes");

    blkioq_flush(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "flush");

    blkioq_read(q, cap, rd, (size_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EIO, NULL, "read at capacity");
    blkioq_read(q, cap - (uint64_t)lbs, rd, 2 * (size_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EIO, NULL, "read straddling capacity");
    blkioq_write(q, cap, buf, (size_t)lbs, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -ENOSPC, NULL, "write at capacity");
    struct blkio_zone z;
    blkioq_report_zones(q, 0, &z, 1, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -ENOTSUP, "request not supported for this driver",
              "report_zones");
out:
    blkio_destroy(&b);
    free(buf);
    free(rd);
}

static void read_only(void)
{
    struct blkio *b = h_driver_instance("io_uring", dev, "direct=true,read-only=true", true);
    uint8_t *buf = vm_alloc(4096);
    const char *msg;
    if (!b)
        goto out;
    struct blkioq *q = blkio_get_queue(b, 0);
    CHECK_INT(vm_get_bool(b, "read-only"), 1, "read-only instance");
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, NULL, "read-only: write");
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, NULL, "read-only: write_zeroes");
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, "*", "read-only: discard");
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read-only: read");
out:
    blkio_destroy(&b);
    free(buf);
}

static void poll_queues(void)
{
    long long io_poll = vm_sysfs(dev, "queue/io_poll");
    struct blkio *b = h_driver_instance("io_uring", dev, "direct=true", false);
    uint8_t *buf = vm_alloc(8192), *rd = vm_alloc(8192);
    const char *msg;
    if (!b)
        goto out;
    blkio_set_int(b, "num-poll-queues", 1);
    if (io_poll != 1) {
        CHECK_ERR(blkio_start(b), -EINVAL, "Poll queues not supported",
                  "poll queue refused where io_poll is %lld", io_poll);
        goto out;
    }
    if (!CHECK_OK(blkio_start(b), "start with a poll queue (io_poll 1)"))
        goto out;
    struct blkioq *pq = blkio_get_poll_queue(b, 0);
    h_fill(buf, 8192, 12582912, 34);
    blkioq_write(pq, 12582912, buf, 8192, NULL, 0);
    CHECK_REQ(vm_wait1(pq, &msg), msg, 0, NULL, "poll queue: write");
    blkioq_read(pq, 12582912, rd, 8192, NULL, 0);
    CHECK_REQ(vm_wait1(pq, &msg), msg, 0, NULL, "poll queue: read");
    CHECK_INT(h_verify(rd, 8192, 12582912, 34), -1, "poll queue: data read back");
    CHECK_INT(blkioq_get_completion_fd(pq), -1, "poll queue: no completion fd");
    blkioq_flush(pq, NULL, 0);
    CHECK_REQ(vm_wait1(pq, &msg), msg, -ENOTSUP,
              "request not supported on poll queues for this driver", "poll queue: flush");
    CHECK(blkio_add_poll_queue(b) == 1, "add a second poll queue");
out:
    blkio_destroy(&b);
    free(buf);
    free(rd);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !argv[1][0]) {
        h_skip("usage: test_io_uring_blk BLOCK-DEVICE (no device given)");
        return h_done();
    }
    dev = argv[1];
    lbs = vm_sysfs(dev, "queue/logical_block_size");
    printf("# io_uring on %s (logical block %lld)\n", dev, lbs);
    if (!CHECK(lbs >= 512, "logical block size of %s from sysfs", dev))
        return h_done();
    properties();
    data_path();
    read_only();
    poll_queues();
    return h_done();
}
