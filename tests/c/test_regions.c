/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Memory regions on io_uring (docs/contract/abi.md §6.7–6.10, docs/contract/requests.md §8): allocation
 * (memfd, flags, layout), alignment errors, map/unmap rules and messages,
 * frees the library must ignore, I/O from region buffers, and destroy
 * with regions still allocated and mapped (run under valgrind for leaks).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/mman.h>

#include "harness.h"

static bool region_is_memfd(const struct blkio_mem_region *r)
{
    char proc[64], link[256] = "";
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", r->fd);
    if (readlink(proc, link, sizeof(link) - 1) < 0)
        return false;
    return strncmp(link, "/memfd:libblkio-buf", strlen("/memfd:libblkio-buf")) == 0;
}

/* Number of mappings of the library's memfd in /proc/self/maps. */
static int memfd_mappings(void)
{
    char line[512];
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "/memfd:libblkio-buf"))
            n++;
    fclose(f);
    return n;
}

static void test_alloc(const char *path)
{
    struct blkio *b = NULL;
    struct blkio_mem_region r, untouched;
    long page = sysconf(_SC_PAGESIZE);

    blkio_create("io_uring", &b);
    memset(&r, 0xab, sizeof(r));
    CHECK_ERR(blkio_alloc_mem_region(b, &r, 4096), -ENODEV, "Device must be connected",
              "alloc in created state");
    memset(&untouched, 0xab, sizeof(untouched));
    CHECK(memcmp(&r, &untouched, sizeof(r)) == 0, "region untouched on failure");
    {
        static uint8_t mem[8192] __attribute__((aligned(4096)));
        struct blkio_mem_region fake = {mem, 4096, 0, 0, -1, 0};
        CHECK_ERR(blkio_map_mem_region(b, &fake), -ENODEV, "Device must be connected",
                  "map in created state (alignment unknown)");
    }
    blkio_set_str(b, "path", path);
    CHECK_OK(blkio_connect(b), "connect");

    CHECK_OK(blkio_alloc_mem_region(b, &r, 65536), "alloc 64 KiB when connected");
    CHECK(r.addr != NULL && (uintptr_t)r.addr % (uintptr_t)page == 0, "addr is page-aligned");
    CHECK_INT(r.len, 65536, "len is exactly what was asked");
    CHECK_INT(r.iova, 0, "iova 0");
    CHECK_INT(r.fd_offset, 0, "fd_offset 0");
    CHECK_INT(r.flags, 0, "flags 0");
    CHECK(r.fd >= 0 && region_is_memfd(&r), "fd is the memfd \"libblkio-buf\"");
    CHECK(r.fd >= 0 && (fcntl(r.fd, F_GETFD) & FD_CLOEXEC), "region fd has FD_CLOEXEC");
    {
        struct stat st;
        CHECK(fstat(r.fd, &st) == 0 && st.st_size == 65536, "memfd is sized to len");
    }
    memset(r.addr, 0x77, r.len);
    CHECK(h_verify_byte(r.addr, r.len, 0x77) < 0, "region memory is writable");
    {
        /* The mapping is shared with the fd. */
        uint8_t byte = 0;
        CHECK(pread(r.fd, &byte, 1, 100) == 1 && byte == 0x77, "region is a shared mapping of fd");
    }

    memset(&untouched, 0xab, sizeof(untouched));
    untouched.len = 1;
    {
        struct blkio_mem_region z = untouched;
        CHECK_ERR(blkio_alloc_mem_region(b, &z, 0), -EINVAL, "Invalid argument (os error 22)",
                  "alloc of length 0");
        CHECK(memcmp(&z, &untouched, sizeof(z)) == 0, "region untouched when alloc fails");
    }
    {
        struct blkio_mem_region odd;
        CHECK_OK(blkio_alloc_mem_region(b, &odd, 1000),
                 "buffered (alignment 1): alloc of 1000 bytes");
        CHECK_INT(odd.len, 1000, "odd length kept");
        blkio_free_mem_region(b, &odd);
    }
    CHECK_OK(blkio_start(b), "start");
    {
        struct blkio_mem_region r2;
        CHECK_OK(blkio_alloc_mem_region(b, &r2, 8192), "alloc when started");
        CHECK(r2.fd != r.fd && r2.addr != r.addr, "a second region is distinct");
        blkio_free_mem_region(b, &r2);
        CHECK(!h_fd_is_open(r2.fd), "free closes the region fd");
    }
    blkio_free_mem_region(b, &r);
    CHECK(!h_fd_is_open(r.fd), "free closes the first region's fd");
    CHECK_INT(memfd_mappings(), 0, "free unmaps the memory");
    blkio_destroy(&b);
}

static void test_direct_alignment(const char *path)
{
    struct blkio *b = h_instance(path, "direct=true", false);
    struct blkio_mem_region r;
    uint64_t align = 0;
    char msg[128];
    if (!b) {
        h_skip("alignment checks need O_DIRECT in %s", h_test_dir());
        return;
    }
    blkio_get_uint64(b, "mem-region-alignment", &align);
    CHECK(align > 1, "direct: mem-region-alignment > 1 (%" PRIu64 ")", align);
    snprintf(msg, sizeof(msg), "len %" PRIu64 " violates mem-region-alignment %" PRIu64,
             align + 1, align);
    CHECK_ERR(blkio_alloc_mem_region(b, &r, align + 1), -EINVAL, msg,
              "alloc of a length that is not a multiple of the alignment");
    snprintf(msg, sizeof(msg), "len 100 violates mem-region-alignment %" PRIu64, align);
    CHECK_ERR(blkio_alloc_mem_region(b, &r, 100), -EINVAL, msg, "alloc of 100 bytes");
    CHECK_OK(blkio_alloc_mem_region(b, &r, align * 8), "alloc of 8 x alignment");

    /* Map rules, in order: addr, len, already mapped, state. */
    {
        struct blkio_mem_region bad = r;
        bad.addr = (uint8_t *)r.addr + 1;
        snprintf(msg, sizeof(msg), "addr 0x%" PRIxPTR " violates mem-region-alignment %" PRIu64,
                 (uintptr_t)bad.addr, align);
        CHECK_ERR(blkio_map_mem_region(b, &bad), -EINVAL, msg,
                  "connected: misaligned addr is reported before the state");
        bad.len = 100;
        CHECK_ERR(blkio_map_mem_region(b, &bad), -EINVAL, msg, "misaligned addr wins over len");
        bad = r;
        bad.len = align * 8 - 1;
        snprintf(msg, sizeof(msg), "len 0x%zx violates mem-region-alignment %" PRIu64, bad.len,
                 align);
        CHECK_ERR(blkio_map_mem_region(b, &bad), -EINVAL, msg, "misaligned len (hex)");
        CHECK_ERR(blkio_map_mem_region(b, &r), -EBUSY, "Device must be started",
                  "map before start");
    }
    CHECK_OK(blkio_start(b), "start");
    CHECK_OK(blkio_map_mem_region(b, &r), "map after start");
    CHECK_ERR(blkio_map_mem_region(b, &r), -EINVAL, "memory region already mapped", "double map");

    /* I/O from and into region memory with O_DIRECT. */
    {
        struct blkio_mem_region r2;
        struct blkioq *q = blkio_get_queue(b, 0);
        CHECK_OK(blkio_alloc_mem_region(b, &r2, align * 8), "alloc a second region");
        CHECK_OK(blkio_map_mem_region(b, &r2), "map the second region");
        h_fill(r.addr, r.len, 0, 42);
        CHECK_INT(h_write(q, 0, r.addr, r.len, 0), 0, "direct write from a region");
        memset(r2.addr, 0, r2.len);
        CHECK_INT(h_read(q, 0, r2.addr, r2.len), 0, "direct read into a region");
        CHECK(h_verify(r2.addr, r2.len, 0, 42) < 0, "region data round-trips");
        CHECK(h_verify_file(path, 0, r.len, 42) == -1, "file has the region's data");
        blkio_unmap_mem_region(b, &r2);
        blkio_free_mem_region(b, &r2);
    }
    blkio_destroy(&b);
}

static void test_map_unmap_free(const char *path)
{
    static uint8_t own[3 * 4096] __attribute__((aligned(4096)));
    struct blkio *b = h_open(path, NULL);
    struct blkio_mem_region r, modified, fake = {own, 4096, 0, 0, -1, 0};
    struct blkioq *q;
    if (!b)
        return;
    q = blkio_get_queue(b, 0);
    CHECK_OK(blkio_alloc_mem_region(b, &r, 16384), "alloc");

    /* Free of memory the library did not allocate: ignored. */
    blkio_free_mem_region(b, &fake);
    memset(own, 0x11, sizeof(own));
    CHECK(h_verify_byte(own, sizeof(own), 0x11) < 0, "free of a foreign region is ignored");

    /* Modified copy of an allocated region: ignored, nothing freed. */
    modified = r;
    modified.len = 8192;
    blkio_free_mem_region(b, &modified);
    modified = r;
    modified.flags = 1;
    blkio_free_mem_region(b, &modified);
    modified = r;
    modified.iova = 4096;
    blkio_free_mem_region(b, &modified);
    memset(r.addr, 0x22, r.len);
    CHECK(h_verify_byte(r.addr, r.len, 0x22) < 0 && h_fd_is_open(r.fd),
          "free of a modified region frees nothing");

    /* Mapped regions. Alignment 1 when buffered: any addr/len maps. */
    CHECK_OK(blkio_map_mem_region(b, &r), "map an allocated region");
    CHECK_ERR(blkio_map_mem_region(b, &r), -EINVAL, "memory region already mapped",
              "map it twice");
    blkio_free_mem_region(b, &r);
    memset(r.addr, 0x33, r.len);
    CHECK(h_verify_byte(r.addr, r.len, 0x33) < 0 && h_fd_is_open(r.fd),
          "free of a still-mapped region frees nothing");
    CHECK_OK(blkio_map_mem_region(b, &fake), "map memory the library did not allocate");
    modified = r;
    modified.len = 4096;
    CHECK_OK(blkio_map_mem_region(b, &modified), "a sub-range is a different region (no overlap check)");
    blkio_unmap_mem_region(b, &modified);

    /* I/O from a mapped region and from unmapped memory (needs-mem-regions
     * is false). */
    h_fill(r.addr, r.len, 0, 9);
    CHECK_INT(h_write(q, 0, r.addr, r.len, 0), 0, "write from a mapped region");
    memset(own, 0, sizeof(own));
    CHECK_INT(h_read(q, 4096, own, 4096), 0, "read into a foreign mapped region");
    CHECK(h_verify(own, 4096, 4096, 9) < 0, "data read back");

    blkio_unmap_mem_region(b, &r);
    blkio_unmap_mem_region(b, &r); /* not mapped any more: no effect */
    {
        struct blkio_mem_region never = {own + 4096, 4096, 0, 0, -1, 0};
        blkio_unmap_mem_region(b, &never);
    }
    CHECK(true, "unmap of unmapped/unknown regions does not crash");
    CHECK_OK(blkio_map_mem_region(b, &r), "map again after unmap");
    blkio_unmap_mem_region(b, &r);
    blkio_unmap_mem_region(b, &fake);

    {
        int fd = r.fd;
        blkio_free_mem_region(b, &r);
        CHECK(!h_fd_is_open(fd), "free after unmap closes the fd");
        blkio_free_mem_region(b, &r); /* double free: unknown now, ignored */
        CHECK(true, "a second free of the same region is ignored");
    }
    blkio_destroy(&b);
}

/* destroy with allocated and mapped regions releases everything. */
static void test_destroy_with_regions(const char *path)
{
    int fds_before = h_count_fds();
    struct blkio *b = h_open(path, NULL);
    struct blkio_mem_region r[4];
    if (!b)
        return;
    for (int i = 0; i < 4; i++)
        blkio_alloc_mem_region(b, &r[i], 4096 * (size_t)(i + 1));
    blkio_map_mem_region(b, &r[0]);
    blkio_map_mem_region(b, &r[1]);
    CHECK_INT(memfd_mappings(), 4, "four regions mapped into the process");
    blkio_destroy(&b);
    CHECK_INT(memfd_mappings(), 0, "destroy unmaps every allocated region");
    CHECK_INT(h_count_fds(), fds_before, "destroy closes every region fd");
    for (int i = 0; i < 4; i++)
        CHECK(!h_fd_is_open(r[i].fd), "region %d fd closed", i);
}

int main(void)
{
    const char *path = h_scratch(2 << 20);
    test_alloc(path);
    test_direct_alignment(path);
    test_map_unmap_free(path);
    test_destroy_with_regions(path);
    return h_done();
}
