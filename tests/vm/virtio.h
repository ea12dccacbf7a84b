/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The request checks every virtio-blk driver shares, for the in-guest tests
 * of virtio-blk-vhost-vdpa and virtio-blk-vfio-pci (docs/contract/requests.md §7.3, §8,
 * §9): data written and read back through mapped memory regions (patterns,
 * readv/writev with empty segments, FUA with exactly one completion, write
 * zeroes with each flag, discard, flush), 64 requests on a queue of 4,
 * event-driven and poll queues, read-only instances, and the requests that
 * must fail instead of hanging (a buffer outside the regions, more segments
 * than the queue can hold).
 *
 * Include after tests/c/harness.h and vm.h.
 */
#ifndef BLKIO_VM_VIRTIO_H
#define BLKIO_VM_VIRTIO_H

#include <sys/eventfd.h>

/* The device under test. */
struct vt_dev {
    const char *driver;
    const char *path;
    /* Queues the device has (all of them are exercised). */
    int queues;
    /* A discarded range reads back as zeroes on this device. */
    bool discard_zeroes;
};

/* Allocates and maps a region of `len` bytes; false (with a failed check)
 * on error. */
H_FN bool vt_region(struct blkio *b, size_t len, struct blkio_mem_region *r)
{
    int ret = blkio_alloc_mem_region(b, r, len);
    if (ret == 0 && (ret = blkio_map_mem_region(b, r)) < 0)
        blkio_free_mem_region(b, r);
    if (ret < 0)
        return h_report(false, blkio_get_error_msg(), "allocate and map a %zu-byte region", len);
    return true;
}

/* Reads `len` bytes at `off` through queue q into `buf` (mapped) and
 * checks them against the pattern `seed` (or zeroes). */
H_FN void vt_check_data(struct blkioq *q, uint8_t *buf, uint64_t off, size_t len, uint32_t seed,
                        bool zero, const char *what)
{
    const char *msg;
    memset(buf, 0xa5, len);
    blkioq_read(q, off, buf, len, NULL, 0);
    if (!CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "%s: read back", what))
        return;
    CHECK_INT(zero ? h_verify_byte(buf, len, 0) : h_verify(buf, len, off, seed), -1, "%s: data",
              what);
}

/* Writes and reads back on every queue, vectored I/O, FUA, write zeroes,
 * discard, flush, library checks and device errors. */
H_FN void vt_data(const struct vt_dev *d)
{
    char opts[64];
    struct blkio *b;
    struct blkio_mem_region r;
    const char *msg;
    struct blkio_completion c[4];
    struct timespec zero = {0, 0};
    snprintf(opts, sizeof(opts), "num-queues=%d", d->queues);
    b = h_driver_instance(d->driver, d->path, opts, true);
    if (!b || !vt_region(b, 1 << 20, &r)) {
        blkio_destroy(&b);
        return;
    }
    uint8_t *buf = r.addr, *rd = buf + 512 * 1024;
    uint64_t cap = (uint64_t)vm_get_u64(b, "capacity");

    for (int i = 0; i < d->queues; i++) {
        struct blkioq *q = blkio_get_queue(b, i);
        uint64_t off = 1048576 * (uint64_t)(i + 1);
        h_fill(buf, 65536, off, 40 + (uint32_t)i);
        blkioq_write(q, off, buf, 65536, NULL, 0);
        CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "queue %d: write 64 KiB", i);
        vt_check_data(q, rd, off, 65536, 40 + (uint32_t)i, false, "queue write 64 KiB");
    }
    /* Queues see each other's data. */
    if (d->queues > 1)
        vt_check_data(blkio_get_queue(b, 1), rd, 1048576, 65536, 40, false,
                      "queue 1 reads what queue 0 wrote");

    struct blkioq *q = blkio_get_queue(b, 0);
    /* writev / readv with odd segment sizes and empty segments. */
    h_fill(buf, 8192, 4194304, 41);
    struct iovec wv[5] = {{buf, 512}, {buf + 512, 0}, {buf + 512, 1024}, {buf + 1536, 2560},
                          {buf + 4096, 4096}};
    blkioq_writev(q, 4194304, wv, 5, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "writev 512+0+1024+2560+4096");
    memset(rd, 0, 8192);
    struct iovec rv[4] = {{rd, 1000}, {rd + 1000, 0}, {rd + 1000, 3096}, {rd + 4096, 4096}};
    blkioq_readv(q, 4194304, rv, 4, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "readv 1000+0+3096+4096");
    CHECK_INT(h_verify(rd, 8192, 4194304, 41), -1, "readv data");
    blkioq_readv(q, 4194304, rv, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "readv with 0 iovecs");
    blkioq_read(q, 4194304, rd, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read of 0 bytes");

    /* FUA write: one completion (the emulated flush is not reported). */
    h_fill(buf, 4096, 5242880, 42);
    blkioq_write(q, 5242880, buf, 4096, (void *)0x1234, BLKIO_REQ_FUA);
    int n = vm_wait(q, c, 1);
    CHECK(n == 1 && c[0].ret == 0 && c[0].user_data == (void *)0x1234, "write FUA completes");
    CHECK_INT(blkioq_do_io(q, c, 0, 4, &zero), 0, "write FUA: exactly one completion");
    vt_check_data(q, rd, 5242880, 4096, 42, false, "write FUA");
    blkioq_writev(q, 5242880, wv, 5, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "writev FUA");

    /* write zeroes with each flag combination, neighbours intact. */
    for (uint32_t flags = 0; flags < 8; flags++) {
        uint64_t off = 6291456 + flags * 12288;
        h_fill(buf, 12288, off, 43);
        blkioq_write(q, off, buf, 12288, NULL, 0);
        vm_wait1(q, NULL);
        blkioq_write_zeroes(q, off + 4096, 4096, NULL, flags);
        CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write_zeroes flags %#x", flags);
        CHECK_INT(blkioq_do_io(q, c, 0, 4, &zero), 0, "write_zeroes flags %#x: one completion",
                  flags);
        vt_check_data(q, rd, off + 4096, 4096, 0, true, "write_zeroes range");
        vt_check_data(q, rd, off, 4096, 43, false, "write_zeroes: data before");
        vt_check_data(q, rd, off + 8192, 4096, 43, false, "write_zeroes: data after");
    }

    h_fill(buf, 65536, 8388608, 44);
    blkioq_write(q, 8388608, buf, 65536, NULL, 0);
    vm_wait1(q, NULL);
    blkioq_discard(q, 8388608, 65536, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "discard 64 KiB");
    if (d->discard_zeroes)
        vt_check_data(q, rd, 8388608, 65536, 0, true, "discarded range");
    blkioq_flush(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "flush");

    /* Library checks (docs/contract/requests.md §7.3) and device errors. */
    blkioq_read(q, 100, rd, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "invalid start offset", "read at start 100");
    blkioq_write_zeroes(q, 4096, 100, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "invalid len or start offset",
              "write_zeroes of 100 bytes");
    blkioq_discard(q, 100, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "invalid len or start offset", "discard at 100");
    blkioq_read(q, 0, rd, 512, NULL, BLKIO_REQ_FUA);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "*", "read with FUA");
    blkioq_report_zones(q, 0, NULL, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -ENOTSUP, "request not supported for this driver",
              "report_zones");
    blkioq_read(q, cap, rd, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EIO, NULL, "read at capacity");
    blkioq_read(q, cap - 512, rd, 1024, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EIO, NULL, "read straddling capacity");

    /* Requests that upstream leaves hanging complete with an error. */
    uint8_t *unmapped = vm_alloc(4096);
    blkioq_read(q, 0, unmapped, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EFAULT, "buffer is not inside a mapped memory region",
              "read into a buffer outside the mapped regions");
    blkioq_read(q, 0, buf + (1 << 20) - 512, 1024, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EFAULT, "*", "read into a buffer crossing the region's end");
    free(unmapped);
    blkioq_read(q, 0, rd, 512, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "the queue still works afterwards");

    blkio_unmap_mem_region(b, &r);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);

    /* The data is on the device: a new instance reads it back. */
    b = h_driver_instance(d->driver, d->path, NULL, true);
    if (b && vt_region(b, 65536, &r)) {
        vt_check_data(blkio_get_queue(b, 0), r.addr, 1048576, 65536, 40, false,
                      "new instance reads what the first wrote");
        blkio_unmap_mem_region(b, &r);
        blkio_free_mem_region(b, &r);
    }
    blkio_destroy(&b);
}

/* A queue of 4 entries: 64 writes then 64 reads in one go all complete (the
 * request backlog), and a request with more segments than fit fails. */
H_FN void vt_small_queue(const struct vt_dev *d)
{
    struct blkio *b = h_driver_instance(d->driver, d->path, "queue-size=4", true);
    struct blkio_mem_region r;
    struct blkio_completion c[64];
    const char *msg;
    if (!b || !vt_region(b, 2 * 64 * 4096, &r)) {
        blkio_destroy(&b);
        return;
    }
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = r.addr, *rd = buf + 64 * 4096;
    CHECK_INT(vm_get_int(b, "queue-size"), 4, "queue-size 4");
    h_fill(buf, 64 * 4096, 16777216, 45);
    for (int i = 0; i < 64; i++)
        blkioq_write(q, 16777216 + (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    int n = vm_wait(q, c, 64);
    int good = 0;
    for (int i = 0; i < n; i++)
        good += c[i].ret == 0;
    CHECK(n == 64 && good == 64, "64 writes on a queue of 4 complete (%d, %d ok)", n, good);
    memset(rd, 0, 64 * 4096);
    for (int i = 0; i < 64; i++)
        blkioq_read(q, 16777216 + (uint64_t)i * 4096, rd + i * 4096, 4096, NULL, 0);
    n = vm_wait(q, c, 64);
    CHECK_INT(n, 64, "64 reads on a queue of 4 complete");
    CHECK_INT(h_verify(rd, 64 * 4096, 16777216, 45), -1, "64 reads: data");

    /* 3 segments need 5 descriptors: can never fit in 4. */
    struct iovec v[3] = {{rd, 512}, {rd + 4096, 512}, {rd + 8192, 512}};
    blkioq_readv(q, 0, v, 3, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "request needs more descriptors than queue-size allows",
              "readv of 3 segments on a queue of 4");
    blkioq_readv(q, 0, v, 2, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "readv of 2 segments on a queue of 4 (the queue moves on)");
    blkio_unmap_mem_region(b, &r);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);
}

/* Completion fd of a regular queue, and a poll queue. */
H_FN void vt_event_and_poll(const struct vt_dev *d)
{
    struct blkio *b = h_driver_instance(d->driver, d->path, NULL, true);
    struct blkio_mem_region r;
    struct blkio_completion c;
    const char *msg;
    if (!b || !vt_region(b, 65536, &r)) {
        blkio_destroy(&b);
        return;
    }
    struct blkioq *q = blkio_get_queue(b, 0);
    int fd = blkioq_get_completion_fd(q);
    CHECK(fd >= 0, "regular queue has a completion fd (%d)", fd);
    blkioq_set_completion_fd_enabled(q, true);
    h_fill(r.addr, 4096, 20971520, 46);
    blkioq_write(q, 20971520, r.addr, 4096, NULL, 0);
    CHECK_INT(blkioq_do_io(q, NULL, 0, 0, NULL), 0, "submit without waiting");
    struct pollfd pfd = {fd, POLLIN, 0};
    CHECK_INT(poll(&pfd, 1, VM_TIMEOUT_S * 1000), 1, "completion fd becomes readable");
    uint64_t count = 0;
    CHECK_INT(read(fd, &count, 8), 8, "completion fd read (count %" PRIu64 ")", count);
    struct timespec t = {VM_TIMEOUT_S, 0};
    int n = blkioq_do_io(q, &c, 1, 1, &t);
    CHECK(n == 1 && c.ret == 0, "the completion is there after the fd fired (%d)", n);
    blkioq_set_completion_fd_enabled(q, false);
    blkio_unmap_mem_region(b, &r);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);

    b = h_driver_instance(d->driver, d->path, "num-queues=0,num-poll-queues=1", true);
    if (!b || !vt_region(b, 65536, &r)) {
        blkio_destroy(&b);
        return;
    }
    CHECK(blkio_get_queue(b, 0) == NULL, "no regular queue");
    q = blkio_get_poll_queue(b, 0);
    CHECK_INT(blkioq_get_completion_fd(q), -1, "poll queue has no completion fd");
    vt_check_data(q, r.addr, 20971520, 4096, 46, false, "poll queue reads the event queue's write");
    blkioq_write_zeroes(q, 20971520, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "poll queue: write_zeroes");
    blkioq_discard(q, 20975616, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "poll queue: discard");
    blkioq_flush(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "poll queue: flush");
    vt_check_data(q, r.addr, 20971520, 4096, 0, true, "poll queue: zeroed");
    blkio_unmap_mem_region(b, &r);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);
}

/* A read-only instance refuses modifying requests and still reads. */
H_FN void vt_read_only(const struct vt_dev *d)
{
    struct blkio *b = h_driver_instance(d->driver, d->path, "read-only=true", true);
    struct blkio_mem_region r;
    const char *msg;
    if (!b || !vt_region(b, 65536, &r)) {
        blkio_destroy(&b);
        return;
    }
    struct blkioq *q = blkio_get_queue(b, 0);
    blkioq_write(q, 0, r.addr, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, "device is read-only", "read-only: write");
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, "device is read-only", "read-only: write_zeroes");
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, "device is read-only", "read-only: discard");
    blkioq_write(q, 100, r.addr, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EINVAL, "invalid start offset", "read-only: write at 100");
    vt_check_data(q, r.addr, 1048576, 65536, 40, false, "read-only: read");
    blkioq_flush(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read-only: flush");
    blkio_unmap_mem_region(b, &r);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);
}

/* Everything above. */
H_FN void vt_all(const struct vt_dev *d)
{
    vt_data(d);
    vt_small_queue(d);
    vt_event_and_poll(d);
    vt_read_only(d);
}

/* Property helpers shared by both tests. */
H_FN void vt_check_created_state(const char *driver)
{
    struct blkio *b = NULL;
    uint64_t u = 0;
    blkio_create(driver, &b);
    CHECK_ERR(blkio_get_uint64(b, "capacity", &u), -ENODEV, "Device must be connected", "%s: capacity before connect",
              driver);
    CHECK_ERR(blkio_get_uint64(b, "max-mem-regions", &u), -ENODEV, "Device must be connected",
              "%s: max-mem-regions before connect", driver);
    CHECK_INT(vm_get_u64(b, "mem-region-alignment"), 1, "%s: created mem-region-alignment", driver);
    CHECK_INT(vm_get_bool(b, "needs-mem-region-fd"), 1, "%s: created needs-mem-region-fd", driver);
    CHECK_INT(vm_get_int(b, "fd"), -1, "%s: created fd", driver);
    CHECK_INT(vm_get_int(b, "queue-size"), 256, "%s: created queue-size", driver);
    CHECK_INT(vm_get_int(b, "max-segments"), 1, "%s: created max-segments", driver);
    CHECK_INT(vm_get_bool(b, "flush-needed"), 1, "%s: created flush-needed", driver);
    blkio_destroy(&b);
}

/* The rows of docs/contract/properties.md §5 that are the same for every device. */
H_FN void vt_check_constant_properties(struct blkio *b)
{
    char *s = NULL;
    CHECK_INT(vm_get_int(b, "buf-alignment"), 1, "buf-alignment");
    CHECK_INT(vm_get_int(b, "optimal-buf-alignment"), 1, "optimal-buf-alignment");
    CHECK_INT(vm_get_bool(b, "can-add-queues"), 0, "can-add-queues");
    CHECK_INT(vm_get_bool(b, "can-grow"), 0, "can-grow");
    CHECK_INT(vm_get_bool(b, "may-pin-mem-regions"), 1, "may-pin-mem-regions");
    CHECK_INT(vm_get_bool(b, "needs-mem-regions"), 1, "needs-mem-regions");
    CHECK_INT(vm_get_bool(b, "supports-fua-natively"), 0, "supports-fua-natively");
    CHECK_INT(vm_get_bool(b, "supports-poll-queues"), 1, "supports-poll-queues");
    CHECK_INT(vm_get_int(b, "max-queue-size"), 32768, "max-queue-size");
    CHECK_INT(vm_get_int(b, "queue-size"), 256, "queue-size");
    CHECK_INT(vm_get_int(b, "num-queues"), 1, "num-queues");
    CHECK_INT(vm_get_int(b, "num-poll-queues"), 0, "num-poll-queues");
    CHECK_INT(vm_get_bool(b, "read-only"), 0, "read-only");
    if (blkio_get_str(b, "driver", &s) == 0)
        CHECK(strncmp(s, "virtio-blk-", 11) == 0, "driver name %s", s);
    free(s);
    CHECK_ERR(blkio_set_int(b, "queue-size", 3), -EINVAL, "queue_size must be a power of two",
              "queue-size 3");
    CHECK_ERR(blkio_set_int(b, "queue-size", 65536), -EINVAL, "queue_size must be smaller than 32768",
              "queue-size 65536");
    CHECK_ERR(blkio_set_int(b, "num-queues", -1), -EINVAL,
              "num_queues must be equal to or greater than 0", "num-queues -1");
    CHECK_ERR(blkio_set_str(b, "path", "/x"), -EBUSY, "Cannot set property in connected state", "path after connect");
}

#endif /* BLKIO_VM_VIRTIO_H */
