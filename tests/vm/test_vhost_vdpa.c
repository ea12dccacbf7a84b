/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vhost-vdpa on the vdpa_sim_blk device of the vmtest guest
 * (VMTEST_VDPA): every property against the device's own configuration
 * space and features (read here with the vhost-vdpa ioctls before the
 * library opens the device) and against docs/contract/properties.md §5.2; connect errors
 * and the fd property (§6.2, docs/contract/abi.md §6.3); start errors; then the shared
 * virtio-blk request checks of virtio.h.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/vhost.h>
#include <sys/ioctl.h>

#include "../c/harness.h"
#include "vm.h"
#include "virtio.h"

#define DRIVER "virtio-blk-vhost-vdpa"

static const char *dev;

/* What the device says about itself. */
static struct {
    uint64_t features;
    uint16_t max_ring;
    uint8_t cfg[60];
} own;

static bool read_own_config(void)
{
    struct {
        struct vhost_vdpa_config hdr;
        uint8_t buf[60];
    } c = {{0, 60}, {0}};
    uint32_t id = 0;
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    bool ok = fd >= 0 && ioctl(fd, VHOST_VDPA_GET_DEVICE_ID, &id) == 0 &&
              ioctl(fd, VHOST_GET_FEATURES, &own.features) == 0 &&
              ioctl(fd, VHOST_VDPA_GET_VRING_NUM, &own.max_ring) == 0 &&
              ioctl(fd, VHOST_VDPA_GET_CONFIG, &c) == 0;
    if (fd >= 0)
        close(fd);
    memcpy(own.cfg, c.buf, 60);
    CHECK(ok && id == 2, "read the device's features and config with vhost-vdpa ioctls (id %u)",
          id);
    return ok;
}

static uint32_t cfg32(int off)
{
    uint32_t v;
    memcpy(&v, own.cfg + off, 4);
    return v;
}

static bool has(int bit)
{
    /* The driver's mask (docs/contract/virtio.md §2.1) | ACCESS_PLATFORM. */
    uint64_t mask = 0x120007E66ull | (1ull << 33);
    return (own.features & mask) >> bit & 1;
}

static void properties(void)
{
    struct blkio *b = h_driver_instance(DRIVER, dev, NULL, false);
    uint64_t cap;
    if (!b)
        return;
    memcpy(&cap, own.cfg, 8);
    long long blk = has(6) ? cfg32(20) : 512;
    long long seg_len = has(1) ? (cfg32(8) > INT_MAX ? INT_MAX : cfg32(8)) : 0;
    long long segs = has(2) ? (cfg32(12) > INT_MAX ? INT_MAX : cfg32(12)) : 1;
    long long xfer = has(1) && has(2) ? seg_len * segs : 0;
    uint16_t nq;
    memcpy(&nq, own.cfg + 34, 2);

    vt_check_constant_properties(b);
    CHECK_INT(vm_get_u64(b, "capacity"), cap * 512, "capacity = 512 x cfg.capacity");
    CHECK_INT(vm_get_int(b, "request-alignment"), blk, "request-alignment = blk_size");
    CHECK_INT(vm_get_int(b, "optimal-io-alignment"), has(10) ? blk << own.cfg[24] : blk,
              "optimal-io-alignment");
    CHECK_INT(vm_get_int(b, "optimal-io-size"), has(10) ? blk * cfg32(28) : 0, "optimal-io-size");
    CHECK_INT(vm_get_int(b, "discard-alignment-offset"), has(10) ? blk * own.cfg[25] : 0,
              "discard-alignment-offset");
    CHECK_INT(vm_get_int(b, "max-segment-len"), seg_len, "max-segment-len");
    CHECK_INT(vm_get_int(b, "max-segments"), segs, "max-segments");
    CHECK_INT(vm_get_int(b, "max-transfer"), xfer > INT_MAX ? INT_MAX : xfer, "max-transfer");
    CHECK_INT(vm_get_u64(b, "max-discard-len"), has(13) ? 512ull * cfg32(36) : 0,
              "max-discard-len");
    CHECK_INT(vm_get_u64(b, "max-write-zeroes-len"), has(14) ? 512ull * cfg32(48) : 0,
              "max-write-zeroes-len");
    CHECK_INT(vm_get_int(b, "discard-alignment"), has(13) ? 512ll * cfg32(44) : 512,
              "discard-alignment");
    CHECK_INT(vm_get_bool(b, "flush-needed"), has(11) ? own.cfg[32] != 0 : has(9),
              "flush-needed");
    CHECK_INT(vm_get_int(b, "max-queues"), has(12) ? (nq ? nq : 1) : 1, "max-queues");
    CHECK_INT(vm_get_u64(b, "max-mem-regions"), -1, "max-mem-regions = 2^64-1");
    CHECK_INT(vm_get_u64(b, "mem-region-alignment"), 4096, "mem-region-alignment");
    CHECK_INT(vm_get_bool(b, "needs-mem-region-fd"), 1, "needs-mem-region-fd");
    CHECK_INT(vm_get_int(b, "fd"), -1, "fd stays -1 when path was used");

    /* docs/contract/properties.md §5.2, vdpa_sim_blk. */
    CHECK_INT(vm_get_u64(b, "capacity"), 134217728, "§5.2 capacity");
    CHECK(vm_get_int(b, "max-segment-len") == 4096 && vm_get_int(b, "max-segments") == 32 &&
              vm_get_int(b, "max-transfer") == 131072,
          "§5.2 max-segment-len/max-segments/max-transfer 4096/32/131072");
    CHECK_INT(vm_get_int(b, "discard-alignment"), 262144, "§5.2 discard-alignment");
    CHECK_INT(vm_get_u64(b, "max-discard-len"), 2199023255040ull, "§5.2 max-discard-len");

    CHECK_ERR(blkio_set_int(b, "fd", 5), -EBUSY, "Cannot set property in connected state", "fd after connect");
    blkio_set_int(b, "num-queues", 2);
    CHECK_ERR(blkio_start(b), -EINVAL, "num_queues + num_poll_queues must not be greater than 1",
              "start with 2 queues");
    blkio_set_int(b, "num-queues", 0);
    CHECK_ERR(blkio_start(b), -EINVAL,
              "At least one of num_queues and num_poll_queues must be greater than 0",
              "start with no queue");
    blkio_set_int(b, "num-queues", 1);
    blkio_set_int(b, "queue-size", own.max_ring * 2);
    char want[128];
    snprintf(want, sizeof(want), "Trying to set up queue with %d descriptors, maximum is %u",
             own.max_ring * 2, own.max_ring);
    CHECK_ERR(blkio_start(b), -EINVAL, want, "start with queue-size above the device's maximum");
    blkio_destroy(&b);

    b = h_driver_instance(DRIVER, dev, NULL, true);
    if (b) {
        CHECK_INT(vm_get_u64(b, "capacity"), cap * 512, "started: capacity");
        CHECK_INT(vm_get_u64(b, "mem-region-alignment"), 4096, "started: mem-region-alignment");
    }
    blkio_destroy(&b);
}

static void connect_errors(void)
{
    const char *paths[] = {"/dev/vhost-vdpa-does-not-exist", "/dev/null"};
    struct blkio *b = NULL, *first;
    int fd;
    for (size_t i = 0; i < 2; i++) {
        blkio_create(DRIVER, &b);
        blkio_set_str(b, "path", paths[i]);
        CHECK_ERR(blkio_connect(b), -EIO, "Failed to connect to vDPA device path", "connect to %s",
                  paths[i]);
        CHECK_INT(vm_get_int(b, "fd"), -1, "fd stays -1 after the failed connect");
        blkio_destroy(&b);
    }

    /* The kernel allows one opener: a second instance fails. */
    first = h_driver_instance(DRIVER, dev, NULL, false);
    blkio_create(DRIVER, &b);
    blkio_set_str(b, "path", dev);
    CHECK_ERR(blkio_connect(b), -EIO, "Failed to connect to vDPA device path",
              "second instance on a busy device");
    blkio_destroy(&first);
    CHECK_OK(blkio_connect(b), "the same instance connects once the device is free");
    blkio_destroy(&b);

    blkio_create(DRIVER, &b);
    CHECK_OK(blkio_set_int(b, "fd", -1), "QEMU's fd probe: set fd -1 in created state");
    CHECK_ERR(blkio_connect(b), -EINVAL, "One of path and fd must be set", "connect without path");
    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    blkio_set_int(b, "fd", fd);
    CHECK_ERR(blkio_connect(b), -EIO, "Failed to use to vDPA device fd", "connect with /dev/null fd");
    CHECK(h_fd_is_open(fd), "the caller's fd stays open after the failed connect");
    close(fd);
    blkio_destroy(&b);

    /* QEMU's way: it opens the device O_RDWR and passes the fd. */
    fd = open(dev, O_RDWR | O_CLOEXEC);
    blkio_create(DRIVER, &b);
    blkio_set_int(b, "fd", fd);
    blkio_set_str(b, "path", dev);
    CHECK_ERR(blkio_connect(b), -EINVAL, "path and fd cannot be set at the same time",
              "connect with path and fd");
    blkio_set_str(b, "path", "");
    CHECK_OK(blkio_connect(b), "connect with the device fd");
    CHECK_INT(vm_get_int(b, "fd"), fd, "fd reports the caller's descriptor");
    CHECK_OK(blkio_start(b), "start with the device fd");
    struct blkio_mem_region r;
    if (vt_region(b, 4096, &r)) {
        const char *msg;
        struct blkioq *q = blkio_get_queue(b, 0);
        blkioq_read(q, 0, r.addr, 4096, NULL, 0);
        CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "read through the fd instance");
    }
    blkio_destroy(&b);
    CHECK(!h_fd_is_open(fd), "destroy closed the fd the library owned");
}

/* A region with fd -1 maps (upstream does not check), like upstream. */
static void private_memory(void)
{
    struct blkio *b = h_driver_instance(DRIVER, dev, NULL, true);
    void *p = vm_alloc(8192);
    struct blkio_mem_region r = {.addr = p, .len = 8192, .fd = -1};
    struct blkio_mem_region again;
    if (!b)
        goto out;
    CHECK_OK(blkio_map_mem_region(b, &r), "map a region of private memory (fd -1)");
    blkio_unmap_mem_region(b, &r);
    if (vt_region(b, 8192, &again)) {
        struct blkio_mem_region half = again;
        half.len = 4096;
        CHECK_ERR(blkio_map_mem_region(b, &half), -EIO, NULL,
                  "map a range overlapping a mapped region");
        CHECK(strncmp(blkio_get_error_msg(), "Address 0x", 10) == 0 &&
                  strstr(blkio_get_error_msg(), "is already mapped"),
              "overlap message: %s", blkio_get_error_msg());
    }
out:
    blkio_destroy(&b);
    free(p);
}

int main(void)
{
    struct vt_dev d = {DRIVER, NULL, 1, false};
    dev = vm_env("VMTEST_VDPA");
    if (!dev)
        return h_done();
    d.path = dev;
    vt_check_created_state(DRIVER);
    if (read_own_config())
        properties();
    connect_errors();
    private_memory();
    vt_all(&d);
    return h_done();
}
