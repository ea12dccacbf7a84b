/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vfio-pci on the QEMU virtio-blk-pci device of the vmtest guest
 * (VMTEST_VFIO_BDF, bound to vfio-pci behind an emulated IOMMU): properties
 * against docs/contract/properties.md §5.3 and what sysfs tells about the device (its
 * PCI config space: MSI-X vectors), connect and start errors (§5), regions
 * of private memory, overlapping regions, then the shared virtio-blk
 * request checks of virtio.h on both queues.
 */
#define _GNU_SOURCE
#include "../c/harness.h"
#include "vm.h"
#include "virtio.h"

#define DRIVER "virtio-blk-vfio-pci"

static char path[256];

/* MSI-X table size from the device's PCI config space in sysfs, or -1. */
static int msix_vectors(void)
{
    char p[300];
    uint8_t cfg[256];
    int n = -1;
    snprintf(p, sizeof(p), "%s/config", path);
    FILE *f = fopen(p, "rb");
    if (!f)
        return -1;
    if (fread(cfg, 1, sizeof(cfg), f) == sizeof(cfg) && (cfg[6] & 0x10)) {
        for (int ptr = cfg[0x34] & ~3, i = 0; ptr >= 0x40 && i < 48; ptr = cfg[ptr + 1] & ~3, i++)
            if (cfg[ptr] == 0x11) {
                n = ((cfg[ptr + 2] | cfg[ptr + 3] << 8) & 0x7ff) + 1;
                break;
            }
    }
    fclose(f);
    return n;
}

static void properties(void)
{
    struct blkio *b = h_driver_instance(DRIVER, path, NULL, false);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int vectors = msix_vectors();
    if (!b)
        return;
    vt_check_constant_properties(b);
    CHECK_INT(vm_get_int(b, "max-queues"), vectors - 1,
              "max-queues = MSI-X vectors - 1 (QEMU: one per queue + config; %d)", vectors);
    CHECK_INT(vm_get_int(b, "max-queues"), cpus, "max-queues = vCPUs (QEMU's default)");
    CHECK_INT(vm_get_int(b, "fd"), -1, "fd");
    CHECK_INT(vm_get_bool(b, "needs-mem-region-fd"), 0, "needs-mem-region-fd false");
    /* docs/contract/properties.md §5.3 */
    CHECK_INT(vm_get_u64(b, "capacity"), 268435456, "§5.3 capacity (256 MiB image)");
    CHECK_INT(vm_get_int(b, "request-alignment"), 512, "§5.3 request-alignment");
    CHECK_INT(vm_get_int(b, "optimal-io-alignment"), 512, "§5.3 optimal-io-alignment");
    CHECK_INT(vm_get_int(b, "optimal-io-size"), 0, "§5.3 optimal-io-size");
    CHECK_INT(vm_get_int(b, "max-segment-len"), 0, "§5.3 max-segment-len (no SIZE_MAX)");
    CHECK_INT(vm_get_int(b, "max-segments"), 254, "§5.3 max-segments");
    CHECK_INT(vm_get_int(b, "max-transfer"), 0, "§5.3 max-transfer");
    CHECK_INT(vm_get_u64(b, "max-discard-len"), 2147483136, "§5.3 max-discard-len");
    CHECK_INT(vm_get_u64(b, "max-write-zeroes-len"), 2147483136, "§5.3 max-write-zeroes-len");
    CHECK_INT(vm_get_int(b, "discard-alignment"), 512, "§5.3 discard-alignment");
    CHECK_INT(vm_get_int(b, "discard-alignment-offset"), 0, "§5.3 discard-alignment-offset");
    CHECK_INT(vm_get_bool(b, "flush-needed"), 1, "§5.3 flush-needed (writeback cache)");
    CHECK_INT(vm_get_u64(b, "max-mem-regions"), 65535, "§5.3 max-mem-regions (DMA mappings)");
    CHECK_INT(vm_get_u64(b, "mem-region-alignment"), 4096, "§5.3 mem-region-alignment");
    CHECK_ERR(blkio_set_int(b, "fd", 3), -EBUSY, "Cannot set property in connected state",
              "fd after connect");

    blkio_set_int(b, "num-queues", (int)cpus + 1);
    char want[96];
    snprintf(want, sizeof(want), "num_queues + num_poll_queues must not be greater than %ld", cpus);
    CHECK_ERR(blkio_start(b), -EINVAL, want, "start with more queues than the device has");
    blkio_set_int(b, "num-queues", 1);
    blkio_set_int(b, "queue-size", 1024);
    CHECK_ERR(blkio_start(b), -EIO, "Trying to set up queue with 1024 descriptors, maximum is 256",
              "start with queue-size 1024");
    blkio_destroy(&b);

    b = h_driver_instance(DRIVER, path, "num-queues=1,num-poll-queues=1", true);
    if (b) {
        CHECK(blkio_get_queue(b, 0) && blkio_get_poll_queue(b, 0), "1 queue + 1 poll queue");
        CHECK_INT(vm_get_u64(b, "capacity"), 268435456, "started: capacity");
    }
    blkio_destroy(&b);
}

static void connect_errors(void)
{
    char file[300], other[] = "/sys/bus/pci/devices/0000:00:03.0";
    struct blkio *b = NULL, *first;
    snprintf(file, sizeof(file), "%s/vendor", path);
    struct {
        const char *path;
        int ret;
        const char *msg;
    } cases[] = {
        {"/sys/bus/pci/devices/0000:00:1f.7", -ENOENT, "No such file or directory (os error 2)"},
        {file, -ENOTDIR, "Not a directory (os error 20)"},
        {other, -ENOENT, "No such file or directory (os error 2)"},
        {"/sys/class/block/vda", -ENOENT, "No such file or directory (os error 2)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        blkio_create(DRIVER, &b);
        blkio_set_str(b, "path", cases[i].path);
        CHECK_ERR(blkio_connect(b), cases[i].ret, cases[i].msg, "connect to %s", cases[i].path);
        blkio_destroy(&b);
    }

    blkio_create(DRIVER, &b);
    CHECK_ERR(blkio_set_int(b, "fd", -1), -ENOENT, "fd property not supported", "fd probe");
    CHECK_ERR(blkio_connect(b), -EINVAL, "One of path and fd must be set", "connect without path");
    blkio_destroy(&b);

    first = h_driver_instance(DRIVER, path, NULL, false);
    blkio_create(DRIVER, &b);
    blkio_set_str(b, "path", path);
    CHECK_ERR(blkio_connect(b), -EBUSY, "Device or resource busy (os error 16)",
              "second instance on the same device");
    blkio_destroy(&first);
    CHECK_OK(blkio_connect(b), "the same instance connects once the device is free");
    blkio_destroy(&b);
    for (int i = 0; i < 3; i++) {
        b = h_driver_instance(DRIVER, path, NULL, true);
        CHECK(b != NULL, "create, connect, start, destroy again (%d)", i);
        blkio_destroy(&b);
    }
}

/* needs-mem-region-fd false: private memory works; overlaps are refused. */
static void regions(void)
{
    struct blkio *b = h_driver_instance(DRIVER, path, NULL, true);
    uint8_t *p = vm_alloc(16384);
    struct blkio_mem_region r = {.addr = p, .len = 16384, .fd = -1}, sub = r;
    const char *msg;
    if (!b)
        goto out;
    struct blkioq *q = blkio_get_queue(b, 0);
    CHECK_OK(blkio_map_mem_region(b, &r), "map 16 KiB of private memory (fd -1)");
    h_fill(p, 8192, 33554432, 50);
    blkioq_write(q, 33554432, p, 8192, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, 0, NULL, "write from private memory");
    vt_check_data(q, p + 8192, 33554432, 8192, 50, false, "read into private memory");
    sub.addr = p + 4096;
    sub.len = 4096;
    CHECK_ERR(blkio_map_mem_region(b, &sub), -EIO, NULL, "map a sub-range of a mapped region");
    char want[64];
    snprintf(want, sizeof(want), "Address %p is already mapped", (void *)(p + 4096));
    CHECK(strcmp(blkio_get_error_msg(), want) == 0, "overlap message \"%s\"",
          blkio_get_error_msg());
    blkio_unmap_mem_region(b, &r);
    blkioq_read(q, 33554432, p, 4096, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EFAULT, "buffer is not inside a mapped memory region",
              "read into an unmapped region");
    CHECK_OK(blkio_map_mem_region(b, &sub), "map the sub-range after the unmap");
out:
    blkio_destroy(&b);
    free(p);
}

int main(void)
{
    const char *bdf = vm_env("VMTEST_VFIO_BDF");
    if (!bdf)
        return h_done();
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
    vt_check_created_state(DRIVER);
    properties();
    connect_errors();
    regions();
    struct vt_dev d = {DRIVER, path, (int)sysconf(_SC_NPROCESSORS_ONLN), true};
    vt_all(&d);
    return h_done();
}
