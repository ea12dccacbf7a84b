/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-io_uring on the conventional namespace of the vmtest guest
 * (VMTEST_NVME_NG, its block device VMTEST_NVME_BLK, the controller
 * VMTEST_NVME_CTRL): connect errors, every property against sysfs and
 * docs/contract/properties.md §4, data written and read back (checked through the block
 * device), the library's request checks, device errors, two queues.
 */
#define _GNU_SOURCE
#include "../c/harness.h"
#include "vm.h"

static const char *ng, *blk, *ctrl;

static void connect_errors(void)
{
    struct blkio *b;
    const char *file = h_scratch(1 << 20);
    int fd, v = 0;

    struct {
        const char *path;
        int ret;
        const char *msg;
    } cases[] = {
        {"/dev/ng-does-not-exist", -ENOENT, "No such file or directory (os error 2)"},
        {file, -EINVAL, "The file must be a character device"},
        {blk, -EINVAL, "The file must be a character device"},
        {"/dev/null", -ENOTTY, "Inappropriate ioctl for device (os error 25)"},
        {ctrl, -ENOTTY, "Inappropriate ioctl for device (os error 25)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        blkio_create("nvme-io_uring", &b);
        blkio_set_str(b, "path", cases[i].path);
        CHECK_ERR(blkio_connect(b), cases[i].ret, cases[i].msg, "connect to %s", cases[i].path);
        blkio_get_int(b, "fd", &v);
        CHECK_INT(v, -1, "fd stays -1 after the failed connect to %s", cases[i].path);
        if (i == sizeof(cases) / sizeof(cases[0]) - 1) {
            /* The instance can still be connected with a corrected path. */
            blkio_set_str(b, "path", ng);
            CHECK_OK(blkio_connect(b), "connect after a failed attempt with the right path");
        }
        blkio_destroy(&b);
    }

    blkio_create("nvme-io_uring", &b);
    CHECK_ERR(blkio_connect(b), -EINVAL, "One of path and fd must be set", "connect without path/fd");
    blkio_destroy(&b);

    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    blkio_create("nvme-io_uring", &b);
    blkio_set_int(b, "fd", fd);
    CHECK_ERR(blkio_connect(b), -ENOTTY, "Inappropriate ioctl for device (os error 25)",
              "connect with the fd of /dev/null");
    CHECK(h_fd_is_open(fd), "the caller's fd stays open after the failed connect");
    blkio_destroy(&b);
    close(fd);

    /* fd of the namespace: used and owned (closed by destroy). */
    fd = open(ng, O_RDONLY | O_CLOEXEC);
    blkio_create("nvme-io_uring", &b);
    blkio_set_int(b, "fd", fd);
    CHECK_OK(blkio_connect(b), "connect with an fd of %s", ng);
    blkio_get_int(b, "fd", &v);
    CHECK_INT(v, fd, "fd property is the caller's descriptor");
    blkio_destroy(&b);
    CHECK(!h_fd_is_open(fd), "destroy closes the fd handed to a connected instance");
}

static void created_state(void)
{
    struct blkio *b;
    uint64_t u = 1;
    int v = 0;
    bool f = false;
    char *s = NULL;
    blkio_create("nvme-io_uring", &b);
    blkio_get_str(b, "driver", &s);
    CHECK_STR(s, "nvme-io_uring", "driver name");
    free(s);
    CHECK_ERR(blkio_get_uint64(b, "capacity", &u), -ENODEV, "Device must be connected",
              "capacity before connect");
    CHECK_ERR(blkio_get_int(b, "request-alignment", &v), -ENODEV, "Device must be connected",
              "request-alignment before connect");
    blkio_get_int(b, "zoned", &v);
    CHECK_INT(v, 0, "zoned is 0 before connect");
    blkio_get_bool(b, "supports-fua-natively", &f);
    CHECK_INT(f, 1, "supports-fua-natively before connect");
    blkio_get_bool(b, "flush-needed", &f);
    CHECK_INT(f, 1, "flush-needed before connect");
    blkio_get_int(b, "num-entries", &v);
    CHECK_INT(v, 128, "num-entries default");
    CHECK_ERR(blkio_get_bool(b, "direct", &f), -ENOENT, "Unknown property name",
              "no direct property");
    CHECK_ERR(blkio_set_int(b, "num-queues", 2), -ENODEV, "Device must be connected",
              "num-queues before connect");
    blkio_destroy(&b);
}

static void properties(struct blkio *b)
{
    long long lbs = vm_sysfs(blk, "queue/logical_block_size");
    long long sectors = vm_sysfs(blk, "size");
    long long hw_kb = vm_sysfs(blk, "queue/max_hw_sectors_kb");
    long long wz = vm_sysfs(blk, "queue/write_zeroes_max_bytes");
    long long disc = vm_sysfs(blk, "queue/discard_max_hw_bytes");
    long long max_transfer = 65536 * lbs < hw_kb * 1024 ? 65536 * lbs : hw_kb * 1024;
    char cache[32] = "";
    vm_sysfs_str(blk, "queue/write_cache", cache, sizeof(cache));

    CHECK(lbs > 0 && sectors > 0 && hw_kb > 0, "sysfs of %s readable", blk);
    CHECK_INT(vm_get_u64(b, "capacity"), sectors * 512, "capacity = sysfs size");
    CHECK_INT(vm_get_int(b, "request-alignment"), lbs, "request-alignment = logical block");
    CHECK_INT(vm_get_int(b, "buf-alignment"), lbs, "buf-alignment");
    CHECK_INT(vm_get_u64(b, "mem-region-alignment"), lbs, "mem-region-alignment");
    CHECK_INT(vm_get_int(b, "optimal-io-alignment"), lbs, "optimal-io-alignment");
    CHECK_INT(vm_get_int(b, "optimal-buf-alignment"), lbs > 4096 ? lbs : 4096,
              "optimal-buf-alignment");
    CHECK_INT(vm_get_int(b, "optimal-io-size"), 0, "optimal-io-size");
    CHECK_INT(vm_get_int(b, "discard-alignment"), lbs, "discard-alignment");
    CHECK_INT(vm_get_int(b, "discard-alignment-offset"), 0, "discard-alignment-offset");
    CHECK_INT(vm_get_int(b, "max-transfer"), max_transfer,
              "max-transfer = min(65536 LBAs, max_hw_sectors_kb)");
    CHECK_INT(vm_get_int(b, "max-transfer"), 524288, "max-transfer on QEMU (MDTS 7)");
    CHECK_INT(vm_get_u64(b, "max-write-zeroes-len"), wz > 0 ? 65536 * lbs : 0,
              "max-write-zeroes-len = 65536 LBAs when write zeroes is supported");
    CHECK_INT(vm_get_u64(b, "max-discard-len"), disc > 0 ? 0xFFFFFFFFll * lbs : 0,
              "max-discard-len = 2^32-1 LBAs when DSM is supported");
    CHECK_INT(vm_get_int(b, "max-segments"), sysconf(_SC_IOV_MAX), "max-segments");
    CHECK_INT(vm_get_int(b, "max-segment-len"), 0, "max-segment-len");
    CHECK_INT(vm_get_bool(b, "flush-needed"), strcmp(cache, "write back") == 0,
              "flush-needed = volatile write cache enabled (%s)", cache);
    CHECK_INT(vm_get_bool(b, "supports-fua-natively"), 1, "supports-fua-natively");
    CHECK_INT(vm_get_bool(b, "supports-poll-queues"), 0, "supports-poll-queues");
    CHECK_INT(vm_get_bool(b, "can-grow"), 0, "can-grow");
    CHECK_INT(vm_get_bool(b, "can-add-queues"), 1, "can-add-queues");
    CHECK_INT(vm_get_bool(b, "read-only"), 0, "read-only as set");
    CHECK_INT(vm_get_int(b, "zoned"), 0, "zoned (sysfs: %lld)", vm_sysfs(blk, "queue/nr_zones"));
    CHECK_INT(vm_get_u64(b, "zone-size"), 0, "zone-size");
    CHECK_INT(vm_get_u64(b, "nr-zones"), 0, "nr-zones");
    CHECK_INT(vm_get_int(b, "max-open-zones"), 0, "max-open-zones");
    CHECK_INT(vm_get_int(b, "max-active-zones"), 0, "max-active-zones");
    CHECK_INT(vm_get_bool(b, "append-support"), 0, "append-support");
    CHECK_INT(vm_get_u64(b, "zone-append-max-bytes"), 0, "zone-append-max-bytes");
    CHECK_INT(vm_get_int(b, "max-queues"), 2147483647, "max-queues");
    CHECK_INT(vm_get_u64(b, "max-mem-regions"), -1, "max-mem-regions");
    CHECK_INT(vm_get_bool(b, "needs-mem-regions"), 0, "needs-mem-regions");
    CHECK_INT(vm_get_bool(b, "needs-mem-region-fd"), 0, "needs-mem-region-fd");
    CHECK_INT(vm_get_bool(b, "may-pin-mem-regions"), 0, "may-pin-mem-regions");
    CHECK_INT(vm_get_int(b, "num-queues"), 1, "num-queues");
    CHECK_INT(vm_get_int(b, "num-poll-queues"), 0, "num-poll-queues");
}

static void setters_and_start(struct blkio *b)
{
    CHECK_ERR(blkio_set_int(b, "num-queues", -1), -EINVAL,
              "num-queues must be equal to or greater than 0", "num-queues -1");
    CHECK_ERR(blkio_set_int(b, "num-poll-queues", -1), -EINVAL,
              "num_poll_queues must be equal to or greater than 0", "num-poll-queues -1");
    CHECK_ERR(blkio_set_int(b, "num-entries", 0), -EINVAL, "num-entries must be greater than 0",
              "num-entries 0");
    CHECK_ERR(blkio_set_int(b, "zoned", 1), -EACCES, "Property is read-only", "zoned is read-only");
    CHECK_ERR(blkio_set_bool(b, "read-only", true), -EBUSY,
              "Cannot set property in connected state", "read-only after connect");
    CHECK_ERR(blkio_add_queue(b), -EBUSY, "Device must be started", "add_queue before start");
    blkio_set_int(b, "num-poll-queues", 1);
    CHECK_ERR(blkio_start(b), -EINVAL, "num_poll_queues must be 0", "start with a poll queue");
    blkio_set_int(b, "num-poll-queues", 0);
    blkio_set_int(b, "num-queues", 2);
    CHECK_OK(blkio_start(b), "start with 2 queues after the failed start");
    CHECK_ERR(blkio_add_poll_queue(b), -EINVAL, "poll queues not supported", "add_poll_queue");
    CHECK_INT(blkio_add_queue(b), 2, "add_queue gives index 2");
    CHECK(blkio_get_poll_queue(b, 0) == NULL, "no poll queue");
    CHECK_OK(blkio_remove_queue(b, 2), "remove the added queue");
}

static void data_path(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0), *q1 = blkio_get_queue(b, 1);
    const size_t len = 16384;
    uint8_t *buf = vm_alloc(len), *rd = vm_alloc(len), *odd = vm_alloc(len + 1);
    const char *msg;
    int ret;

    h_fill(buf, 8192, 65536, 1);
    blkioq_write(q, 65536, buf, 8192, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write 8 KiB");
    blkioq_read(q, 65536, rd, 8192, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read 8 KiB");
    CHECK_INT(h_verify(rd, 8192, 65536, 1), -1, "read back the pattern");
    CHECK_INT(vm_verify_dev(blk, 65536, 8192, 1, false), -1, "data visible through %s", blk);

    h_fill(buf, 4096, 131072, 2);
    blkioq_write(q, 131072, buf, 4096, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write with FUA");
    CHECK_INT(vm_verify_dev(blk, 131072, 4096, 2, false), -1, "FUA data on the device");

    /* writev 4K + 8K + 4K, readv 2 x 8K */
    h_fill(buf, len, 196608, 3);
    struct iovec wv[3] = {{buf, 4096}, {buf + 4096, 8192}, {buf + 12288, 4096}};
    blkioq_writev(q, 196608, wv, 3, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "writev 4K+8K+4K with FUA");
    memset(rd, 0, len);
    struct iovec rv[2] = {{rd, 8192}, {rd + 8192, 8192}};
    blkioq_readv(q, 196608, rv, 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "readv 2 x 8K");
    CHECK_INT(h_verify(rd, len, 196608, 3), -1, "readv data");

    /* Segments of 100 + 412 bytes: only the total must be aligned. */
    h_fill(buf, 512, 262144, 4);
    struct iovec sv[2] = {{buf, 100}, {buf + 100, 412}};
    blkioq_writev(q, 262144, sv, 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "writev of 100 + 412 bytes");
    CHECK_INT(vm_verify_dev(blk, 262144, 512, 4, false), -1, "odd segments reached the device");

    /* A write from an odd buffer address. */
    h_fill(odd + 1, 4096, 327680, 5);
    blkioq_write(q, 327680, odd + 1, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write from an odd address");
    CHECK_INT(vm_verify_dev(blk, 327680, 4096, 5, false), -1, "odd-address data on the device");

    /* write_zeroes with every flag combination: range zeroed, neighbours
     * intact. */
    for (uint32_t flags = 0; flags < 8; flags++) {
        uint64_t off = 1048576 + flags * 16384;
        vm_fill_dev(blk, off, 16384, 6);
        blkioq_write_zeroes(q, off + 4096, 8192, NULL, flags);
        CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write_zeroes flags %#x", flags);
        CHECK_INT(vm_verify_dev(blk, off + 4096, 8192, 0, true), -1, "zeroed (flags %#x)", flags);
        CHECK(vm_verify_dev(blk, off, 4096, 6, false) == -1 &&
                  vm_verify_dev(blk, off + 12288, 4096, 6, false) == -1,
              "neighbours intact (flags %#x)", flags);
    }

    vm_fill_dev(blk, 2097152, 16384, 7);
    blkioq_discard(q, 2097152, 16384, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "discard 16 KiB");
    CHECK_INT(vm_verify_dev(blk, 2097152, 16384, 0, true), -1,
              "discarded range reads back as zeroes (QEMU deallocates)");

    blkioq_flush(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "flush");

    /* Two queues see each other's data. */
    h_fill(buf, 4096, 393216, 8);
    blkioq_write(q1, 393216, buf, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q1, &msg), msg, 0, NULL, "write on queue 1");
    memset(rd, 0, 4096);
    blkioq_read(q, 393216, rd, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read on queue 0");
    CHECK_INT(h_verify(rd, 4096, 393216, 8), -1, "queue 0 sees queue 1's write");

    /* The largest transfer works; the library refuses one LBA more. */
    int max = (int)vm_get_int(b, "max-transfer");
    uint8_t *big = vm_alloc((size_t)max + 512);
    blkioq_read(q, 0, big, (size_t)max, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read of max-transfer (%d) bytes", max);
    blkioq_read(q, 0, big, (size_t)max + 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "len must not exceed property \"max-transfer\"",
              "read of max-transfer + 512");
    struct iovec bv[2] = {{big, (size_t)max}, {big + max, 512}};
    blkioq_readv(q, 0, bv, 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "len must not exceed property \"max-transfer\"",
              "readv totalling max-transfer + 512");
    free(big);

    /* do_io_interruptible with a mask while it has to sleep (upstream's
     * 128-byte sigmask made this -EINVAL). */
    sigset_t none;
    struct blkio_completion c;
    sigemptyset(&none);
    blkioq_read(q, 0, rd, 4096, NULL, 0);
    ret = blkioq_do_io_interruptible(q, &c, 1, 1, NULL, &none);
    CHECK_INT(ret, 1, "do_io_interruptible with a sigmask waits for the read");

    /* The completion fd, first asked for while a completion waits in the
     * ring (the driver registers it with the ring only then), is readable. */
    blkioq_read(q, 0, rd, 4096, NULL, 0);
    blkioq_do_io(q, NULL, 0, 0, NULL);
    usleep(500000);
    int efd = blkioq_get_completion_fd(q);
    CHECK(efd >= 0, "completion fd");
    struct pollfd pfd = {efd, POLLIN, 0};
    CHECK_INT(poll(&pfd, 1, VM_TIMEOUT_S * 1000), 1,
              "completion fd readable for a completion from before it was asked for");
    uint64_t cnt;
    CHECK_INT(read(efd, &cnt, 8), 8, "read the completion fd");
    CHECK_INT(vm_wait1(q, NULL), 0, "and reap the read");

    /* The completion fd becomes readable after a completion. */
    blkioq_read(q, 0, rd, 4096, NULL, 0);
    blkioq_do_io(q, NULL, 0, 0, NULL);
    CHECK_INT(poll(&pfd, 1, VM_TIMEOUT_S * 1000), 1, "completion fd readable");
    CHECK_INT(read(efd, &cnt, 8), 8, "read the completion fd");
    CHECK_INT(vm_wait1(q, NULL), 0, "and reap the read");

    /* Disabled (IORING_CQ_EVENTFD_DISABLED), the kernel does not signal it;
     * enabling again signals a completion that arrived meanwhile. */
    blkioq_set_completion_fd_enabled(q, false);
    blkioq_read(q, 0, rd, 4096, NULL, 0);
    CHECK_INT(vm_wait1(q, NULL), 0, "disabled: a read completes");
    CHECK_INT(poll(&pfd, 1, 0), 0, "disabled: the completion fd stays quiet");
    blkioq_read(q, 0, rd, 4096, NULL, 0);
    blkioq_do_io(q, NULL, 0, 0, NULL);
    usleep(500000);
    blkioq_set_completion_fd_enabled(q, true);
    CHECK_INT(poll(&pfd, 1, VM_TIMEOUT_S * 1000), 1, "enabled again: the fd is readable");
    CHECK_INT(read(efd, &cnt, 8), 8, "read the completion fd");
    CHECK_INT(vm_wait1(q, NULL), 0, "and reap the read");

    /* A memory region of the instance as the I/O buffer. */
    struct blkio_mem_region r;
    if (CHECK_OK(blkio_alloc_mem_region(b, &r, 65536), "allocate a 64 KiB region")) {
        CHECK_OK(blkio_map_mem_region(b, &r), "map it");
        h_fill(r.addr, 65536, 458752, 11);
        blkioq_write(q, 458752, r.addr, 65536, NULL, BLKIO_REQ_FUA);
        CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write 64 KiB from the region");
        CHECK_INT(vm_verify_dev(blk, 458752, 65536, 11, false), -1, "region data on the device");
        blkio_unmap_mem_region(b, &r);
        blkio_free_mem_region(b, &r);
    }

    free(buf);
    free(rd);
    free(odd);
}

static void checks_and_errors(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = vm_alloc(8192);
    uint64_t cap = (uint64_t)vm_get_u64(b, "capacity");
    const char *msg;
    const char *align = "start and len must be multiples of property \"request-alignment\"";

    blkioq_read(q, 100, buf, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, align, "read at start 100");
    blkioq_write(q, 0, buf, 100, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, align, "write of 100 bytes");
    blkioq_write_zeroes(q, 512, 100, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, align, "write_zeroes of 100 bytes");
    blkioq_discard(q, 100, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, align, "discard at 100");
    blkioq_read(q, 0, buf, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "len must be positive", "read of 0 bytes");
    blkioq_readv(q, 0, NULL, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "len must be positive", "readv with 0 iovecs");
    blkioq_write_zeroes(q, 0, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "len must be positive", "write_zeroes of 0");
    uint64_t wz = (uint64_t)vm_get_u64(b, "max-write-zeroes-len");
    blkioq_write_zeroes(q, 0, wz + 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL,
              "len must not exceed property \"max-write-zeroes-len\"",
              "write_zeroes above max-write-zeroes-len");
    uint64_t md = (uint64_t)vm_get_u64(b, "max-discard-len");
    blkioq_discard(q, 0, md + 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "len must not exceed property \"max-discard-len\"",
              "discard above max-discard-len");
    blkioq_read(q, 100, buf, 512, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "BLKIO_REQ_FUA is invalid for this request type",
              "flags are checked before alignment");
    blkioq_write(q, 0, buf, 512, NULL, 0x10);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "unsupported bits in request flags",
              "unknown flag bit");

    /* Device errors carry NVMe status messages. */
    blkioq_read(q, cap, buf, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "LBA out of range", "read at capacity");
    blkioq_write(q, cap - 512, buf, 1024, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "LBA out of range", "write straddling capacity");
    blkioq_write_zeroes(q, cap, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "LBA out of range", "write_zeroes at capacity");
    struct blkio_zone zones[2];
    blkioq_report_zones(q, 0, zones, 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -ENOTSUP, "Operation not supported",
              "report_zones on a conventional namespace");
    blkioq_reset_zone(q, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -ENOTSUP, "Operation not supported",
              "reset_zone on a conventional namespace");
    blkioq_report_zones(q, 0, zones, 2, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "BLKIO_REQ_FUA is invalid for this request type",
              "report_zones with FUA");
    free(buf);
}

static void read_only(void)
{
    struct blkio *b = h_driver_instance("nvme-io_uring", ng, "read-only=true", true);
    uint8_t *buf = vm_alloc(4096);
    const char *msg, *ro = "driver is in read-only mode";
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    CHECK_INT(vm_get_bool(b, "read-only"), 1, "read-only instance");
    vm_fill_dev(blk, 4194304, 4096, 9);
    blkioq_write(q, 4194304, buf, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: write");
    blkioq_write(q, 100, buf, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: misaligned empty write");
    struct iovec v = {buf, 4096};
    blkioq_writev(q, 4194304, &v, 1, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: writev");
    blkioq_write_zeroes(q, 4194304, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: write_zeroes");
    blkioq_discard(q, 4194304, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: discard");
    blkioq_reset_all_zones(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: reset_all_zones");
    blkioq_read(q, 4194304, buf, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read-only: read");
    CHECK_INT(h_verify(buf, 4096, 4194304, 9), -1, "read-only: data unchanged");
    blkioq_flush(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read-only: flush");
    blkio_destroy(&b);
    free(buf);
}

/* 64 reads on a ring of 4 entries: the request backlog takes the rest. */
static void small_ring(void)
{
    struct blkio *b = h_driver_instance("nvme-io_uring", ng, "num-entries=4", true);
    struct blkio_completion c[64];
    uint8_t *buf = vm_alloc(64 * 512);
    bool seen[64] = {false};
    int distinct = 0, bad = 0;
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    vm_fill_dev(blk, 8388608, 64 * 512, 10);
    for (int i = 0; i < 64; i++)
        blkioq_read(q, 8388608 + i * 512, buf + i * 512, 512, (void *)(intptr_t)i, 0);
    CHECK_INT(vm_wait(q, c, 64), 64, "64 reads on num-entries 4 complete");
    for (int i = 0; i < 64; i++) {
        intptr_t k = (intptr_t)c[i].user_data;
        bad += c[i].ret != 0;
        if (k >= 0 && k < 64 && !seen[k]) {
            seen[k] = true;
            distinct++;
        }
    }
    CHECK_INT(distinct, 64, "every user_data exactly once");
    CHECK_INT(bad, 0, "no failed read");
    CHECK_INT(h_verify(buf, 64 * 512, 8388608, 10), -1, "data of the 64 reads");
    blkio_destroy(&b);
    free(buf);
}

/* Event-driven use of a ring with one SQ entry: after blkioq_do_io
 * returns, requests it moved from the backlog into the ring must have
 * been submitted, or the completion fd never fires (docs/contract/requests.md §4.2:
 * "until ... nothing is left to submit"). */
static void event_driven_backlog(void)
{
    struct blkio *b = h_driver_instance("nvme-io_uring", ng, "num-entries=1", true);
    struct blkio_completion c[3];
    uint8_t *buf = vm_alloc(3 * 4096);
    uint64_t cnt;
    int got, fd;
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    fd = blkioq_get_completion_fd(q);
    for (int i = 0; i < 3; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    got = blkioq_do_io(q, c, 1, 1, NULL);
    CHECK_INT(got, 1, "first of 3 reads on num-entries 1");
    /* The application's protocol: wait for the fd, then reap. The fd
     * counts one per CQE, so a stale notification of the first read is
     * told apart from the ones of the others. */
    uint64_t notified = 0;
    for (int rounds = 0; got > 0 && got < 3 && rounds < 100; rounds++) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (read(fd, &cnt, 8) == 8)
            notified += cnt;
        if (notified > (uint64_t)got) {
            int n = blkioq_do_io(q, c, 0, 3, NULL);
            if (n < 0)
                break;
            got += n;
        } else if (poll(&pfd, 1, 10000) != 1) {
            break;
        }
    }
    CHECK_INT(got, 3, "the completion fd signals every backlogged read");
    blkio_destroy(&b);
    free(buf);
}

/* Destroy with writes in flight returns. */
static void destroy_in_flight(void)
{
    struct blkio *b = h_driver_instance("nvme-io_uring", ng, NULL, true);
    uint8_t *buf = vm_alloc(65536);
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    for (int i = 0; i < 8; i++)
        blkioq_write(q, 16777216 + i * 65536, buf, 65536, NULL, 0);
    blkioq_do_io(q, NULL, 0, 0, NULL);
    blkio_destroy(&b);
    CHECK(b == NULL, "destroy with 8 writes in flight returns");
    free(buf);
}

int main(void)
{
    struct blkio *b;
    if (!(ng = vm_env("VMTEST_NVME_NG")) || !(blk = vm_env("VMTEST_NVME_BLK")) ||
        !(ctrl = vm_env("VMTEST_NVME_CTRL")))
        return h_done();
    created_state();
    connect_errors();
    b = h_driver_instance("nvme-io_uring", ng, NULL, false);
    if (!b)
        return h_done();
    properties(b);
    setters_and_start(b);
    CHECK_INT(vm_get_u64(b, "capacity"), vm_sysfs(blk, "size") * 512,
              "capacity in the started state");
    data_path(b);
    checks_and_errors(b);
    blkio_destroy(&b);
    read_only();
    small_ring();
    event_driven_backlog();
    destroy_in_flight();
    return h_done();
}
