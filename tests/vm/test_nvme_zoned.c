/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-io_uring on the zoned (ZNS) namespace of the vmtest guest
 * (VMTEST_ZNS_NG, block device VMTEST_ZNS_BLK): the zoned properties
 * against sysfs, zone reports, zone management state transitions and the
 * data rules of sequential-write-required zones (docs/contract/requests.md §7.2).
 */
#define _GNU_SOURCE
#include "../c/harness.h"
#include "vm.h"

static const char *ng, *blk;
static uint64_t zone_size, nr_zones, lbs, capacity;

static void properties(struct blkio *b)
{
    long long chunk = vm_sysfs(blk, "queue/chunk_sectors");
    long long hw_kb = vm_sysfs(blk, "queue/max_hw_sectors_kb");
    char model[32] = "";
    vm_sysfs_str(blk, "queue/zoned", model, sizeof(model));
    lbs = (uint64_t)vm_sysfs(blk, "queue/logical_block_size");
    capacity = (uint64_t)vm_sysfs(blk, "size") * 512;
    zone_size = (uint64_t)chunk * 512;
    nr_zones = (uint64_t)vm_sysfs(blk, "queue/nr_zones");

    CHECK_STR(model, "host-managed", "%s is host-managed", blk);
    CHECK_INT(vm_get_int(b, "zoned"), 2, "zoned = 2 (host-managed)");
    CHECK_INT(vm_get_u64(b, "capacity"), capacity, "capacity = sysfs size");
    CHECK_INT(vm_get_int(b, "request-alignment"), lbs, "request-alignment = logical block (%llu)",
              (unsigned long long)lbs);
    CHECK_INT(vm_get_u64(b, "zone-size"), zone_size, "zone-size = chunk_sectors x 512");
    CHECK_INT(vm_get_u64(b, "nr-zones"), nr_zones, "nr-zones = sysfs nr_zones");
    CHECK_INT(vm_get_int(b, "max-open-zones"), vm_sysfs(blk, "queue/max_open_zones"),
              "max-open-zones = sysfs (0 = no limit)");
    CHECK_INT(vm_get_int(b, "max-active-zones"), vm_sysfs(blk, "queue/max_active_zones"),
              "max-active-zones = sysfs");
    CHECK_INT(vm_get_bool(b, "append-support"), 1, "append-support");
    CHECK_INT(vm_get_u64(b, "zone-append-max-bytes"), vm_sysfs(blk, "queue/zone_append_max_bytes"),
              "zone-append-max-bytes = sysfs zone_append_max_bytes (ZASL 0: the MDTS limit)");
    CHECK_INT(vm_get_int(b, "max-transfer"),
              65536 * (long long)lbs < hw_kb * 1024 ? 65536 * (long long)lbs : hw_kb * 1024,
              "max-transfer = min(65536 LBAs, max_hw_sectors_kb)");
    CHECK_INT(vm_get_u64(b, "max-write-zeroes-len"), 65536 * lbs, "max-write-zeroes-len");
    CHECK_INT(vm_get_u64(b, "max-discard-len"), 0xFFFFFFFFull * lbs, "max-discard-len");
    CHECK_INT(vm_get_int(b, "discard-alignment"), lbs, "discard-alignment");
    CHECK_INT(nr_zones, 16, "the guest's ZNS namespace has 16 zones");
}

/* Reports up to `n` zones from `offset` into `z`, an array of `cap` >= n
 * entries filled with 0xA5 first. Returns the completion's ret. */
static int report_in(struct blkioq *q, uint64_t offset, struct blkio_zone *z, unsigned n,
                     unsigned cap, const char **msg)
{
    memset(z, 0xA5, sizeof(*z) * cap);
    blkioq_report_zones(q, offset, z, n, NULL, 0);
    return vm_wait1(q, msg);
}

#define report(q, offset, z, n, msg) report_in(q, offset, z, n, sizeof(z) / sizeof(z[0]), msg)

/* State and write pointer of zone `i`, or -1 on failure. */
static int zone_state(struct blkioq *q, unsigned i, uint64_t *wp)
{
    struct blkio_zone z[1];
    if (report(q, i * zone_size, z, 1, NULL) != 1)
        return -1;
    if (wp)
        *wp = z[0].write_pointer;
    return z[0].zone_state;
}

static int run(struct blkioq *q, const char **msg)
{
    return vm_wait1(q, msg);
}

static void reports(struct blkioq *q)
{
    struct blkio_zone z[64];
    const char *msg;
    bool good = true;
    uint8_t fill[sizeof(z[0])];
    memset(fill, 0xA5, sizeof(fill));

    CHECK_REQ(report(q, 0, z, 64, &msg), msg, (int)nr_zones, NULL, "report from 0, room for 64");
    for (unsigned i = 0; i < nr_zones; i++) {
        static const uint8_t zero[29];
        good &= z[i].start == i * zone_size && z[i].len == zone_size &&
                z[i].capacity == zone_size && z[i].write_pointer == z[i].start &&
                z[i].zone_type == BLKIO_ZONE_TYPE_SEQWRITE_REQ && z[i].zone_state == BLKIO_ZONE_STATE_EMPTY &&
                z[i].reset == 0 && memcmp(z[i].reserved_, zero, 29) == 0;
    }
    CHECK(good, "every zone: start, len, capacity, EMPTY with wp = start, SEQWRITE_REQ");
    CHECK(memcmp(&z[nr_zones], fill, sizeof(fill)) == 0, "entry after the last zone untouched");

    CHECK_REQ(report(q, 0, z, 4, &msg), msg, 4, NULL, "report with room for 4 (partial)");
    CHECK(memcmp(&z[4], fill, sizeof(fill)) == 0, "entries past the result untouched");
    CHECK_REQ(report(q, 3 * zone_size + 12345, z, 2, &msg), msg, 2, NULL,
              "report from inside zone 3");
    CHECK_INT(z[0].start, 3 * zone_size, "the report starts at zone 3");
    CHECK_REQ(report(q, (nr_zones - 2) * zone_size, z, 8, &msg), msg, 2, NULL,
              "report near the end with room for 8");
    CHECK(z[1].start == (nr_zones - 1) * zone_size && memcmp(&z[2], fill, sizeof(fill)) == 0,
          "the last zone is the last entry written");
    CHECK_REQ(report(q, 0, z, 0, &msg), msg, 0, NULL, "report with nr_zones 0");
    CHECK_REQ(report(q, capacity, z, 4, &msg), msg, -EINVAL, "LBA out of range",
              "report at capacity");
}

static void management(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = vm_alloc(65536), *rd = vm_alloc(65536);
    const char *msg;
    uint64_t wp = 0;
    struct blkio_zone z[16];

    /* A write at the write pointer opens zone 0 implicitly. */
    h_fill(buf, 16384, 0, 20);
    blkioq_write(q, 0, buf, 16384, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "write at the write pointer of zone 0");
    CHECK_INT(zone_state(q, 0, &wp), BLKIO_ZONE_STATE_IMP_OPEN, "zone 0 IMP_OPEN");
    CHECK_INT(wp, 16384, "write pointer advanced by 16 KiB");
    blkioq_read(q, 0, rd, 16384, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "read zone 0");
    CHECK_INT(h_verify(rd, 16384, 0, 20), -1, "zone 0 data");
    CHECK_INT(vm_verify_dev(blk, 0, 16384, 20, false), -1, "zone 0 data through %s", blk);

    blkioq_write(q, 65536, buf, 4096, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, -EIO, "Nvme Error", "write away from the write pointer");
    blkioq_write_zeroes(q, 16384, 8192, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "write_zeroes at the write pointer");
    CHECK(zone_state(q, 0, &wp) == BLKIO_ZONE_STATE_IMP_OPEN && wp == 24576,
          "write_zeroes advanced the pointer");
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "discard inside zone 0");

    blkioq_open_zone(q, zone_size, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "open zone 1");
    CHECK_INT(zone_state(q, 1, NULL), BLKIO_ZONE_STATE_EXP_OPEN, "zone 1 EXP_OPEN");
    blkioq_close_zone(q, 0, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "close zone 0");
    CHECK_INT(zone_state(q, 0, NULL), BLKIO_ZONE_STATE_CLOSED, "zone 0 CLOSED");
    blkioq_write(q, 24576, buf, 4096, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "write to the closed zone at its pointer");
    CHECK_INT(zone_state(q, 0, NULL), BLKIO_ZONE_STATE_IMP_OPEN, "zone 0 IMP_OPEN again");
    blkioq_finish_zone(q, 0, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "finish zone 0");
    CHECK_INT(zone_state(q, 0, &wp), BLKIO_ZONE_STATE_FULL, "zone 0 FULL");
    CHECK_INT(wp, zone_size, "a FULL zone reports write_pointer = start + zone-size");
    blkioq_write(q, 28672, buf, 4096, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, -EIO, "Nvme Error", "write to a FULL zone");
    blkioq_reset_zone(q, 0, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "reset zone 0");
    CHECK(zone_state(q, 0, &wp) == BLKIO_ZONE_STATE_EMPTY && wp == 0, "zone 0 EMPTY at its start");
    memset(rd, 0xFF, 16384);
    blkioq_read(q, 0, rd, 16384, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "read the reset zone");
    CHECK_INT(h_verify_byte(rd, 16384, 0), -1, "a reset zone reads back as zeroes");

    blkioq_reset_zone(q, 4096, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, -ENOTSUP, "Operation not supported",
              "reset_zone at an offset that is not a zone start");
    blkioq_read(q, zone_size - 4096, rd, 8192, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, -EIO, "Nvme Error", "read across a zone boundary");

    /* All-zone forms: zone 1 EXP_OPEN, write zones 2 and 3. */
    blkioq_write(q, 2 * zone_size, buf, 4096, NULL, 0);
    blkioq_write(q, 3 * zone_size, buf, 4096, NULL, 0);
    CHECK_INT(vm_wait1(q, NULL) | vm_wait1(q, NULL), 0, "writes to zones 2 and 3");
    blkioq_close_all_zones(q, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "close_all_zones");
    report(q, 0, z, 16, NULL);
    CHECK(z[0].zone_state == BLKIO_ZONE_STATE_EMPTY && z[1].zone_state == BLKIO_ZONE_STATE_CLOSED &&
              z[2].zone_state == BLKIO_ZONE_STATE_CLOSED &&
              z[3].zone_state == BLKIO_ZONE_STATE_CLOSED,
          "close_all: open zones CLOSED, empty ones left alone");
    blkioq_open_all_zones(q, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "open_all_zones");
    report(q, 0, z, 16, NULL);
    CHECK(z[0].zone_state == BLKIO_ZONE_STATE_EMPTY && z[1].zone_state == BLKIO_ZONE_STATE_EXP_OPEN &&
              z[3].zone_state == BLKIO_ZONE_STATE_EXP_OPEN,
          "open_all: closed zones EXP_OPEN");
    blkioq_finish_all_zones(q, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "finish_all_zones");
    report(q, 0, z, 16, NULL);
    CHECK(z[0].zone_state == BLKIO_ZONE_STATE_EMPTY && z[1].zone_state == BLKIO_ZONE_STATE_FULL &&
              z[2].zone_state == BLKIO_ZONE_STATE_FULL && z[2].write_pointer == 3 * zone_size,
          "finish_all: open zones FULL");
    blkioq_reset_all_zones(q, NULL, 0);
    CHECK_REQ(run(q, &msg), msg, 0, NULL, "reset_all_zones");
    bool empty = report(q, 0, z, 16, NULL) == 16;
    for (int i = 0; i < 16 && empty; i++)
        empty = z[i].zone_state == BLKIO_ZONE_STATE_EMPTY && z[i].write_pointer == z[i].start;
    CHECK(empty, "reset_all: every zone EMPTY");
    free(buf);
    free(rd);
}

static void read_only(void)
{
    struct blkio *b = h_driver_instance("nvme-io_uring", ng, "read-only=true", true);
    struct blkio_zone z[2];
    const char *msg, *ro = "driver is in read-only mode";
    if (!b)
        return;
    struct blkioq *q = blkio_get_queue(b, 0);
    CHECK_REQ(report(q, 0, z, 2, &msg), msg, 2, NULL, "read-only: report_zones works");
    blkioq_reset_zone(q, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: reset_zone refused");
    blkioq_finish_all_zones(q, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: finish_all_zones refused");
    blkioq_open_zone(q, 0, NULL, 0);
    CHECK_REQ(vm_wait1(q, &msg), msg, -EBADF, ro, "read-only: open_zone refused");
    CHECK_INT(zone_state(q, 0, NULL), BLKIO_ZONE_STATE_EMPTY, "read-only: zone 0 still EMPTY");
    blkio_destroy(&b);
}

int main(void)
{
    struct blkio *b;
    if (!(ng = vm_env("VMTEST_ZNS_NG")) || !(blk = vm_env("VMTEST_ZNS_BLK")))
        return h_done();
    b = h_driver_instance("nvme-io_uring", ng, NULL, false);
    if (!b)
        return h_done();
    properties(b);
    if (blkio_start(b) < 0 || zone_size == 0) {
        h_report(false, blkio_get_error_msg(), "start on the zoned namespace");
        blkio_destroy(&b);
        return h_done();
    }
    reports(blkio_get_queue(b, 0));
    management(b);
    blkio_destroy(&b);
    read_only();
    return h_done();
}
