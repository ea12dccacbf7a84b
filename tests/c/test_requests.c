/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Requests on the io_uring driver (docs/contract/requests.md §1–3, §7.1, §9): data
 * written and read back at many offsets and sizes, vectored I/O, FUA,
 * flush, write zeroes with every flag combination, discard, end-of-file
 * behaviour, flag validation and ordering, read-only instances, many
 * requests in flight on small rings, and completion fields.
 *
 * The data tests run buffered and with O_DIRECT in $BLKIO_TEST_DIR, and
 * again on $BLKIO_TEST_TMPFS when that is set.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/uio.h>

#include "harness.h"

#define FILE_SIZE (4u << 20)
#define BUF_SIZE (2u << 20)
/* Room for 1024 segments of up to 3 blocks with gaps at 4 KiB alignment. */
#define BUF_ALLOC (16u << 20)

static uint8_t *buf_a, *buf_b;

/* Waits for `n` completions and checks the fields every completion must
 * have: reserved_ zeroed, error_msg NULL on success. Returns the count. */
static int collect(struct blkioq *q, struct blkio_completion *c, int n, const char *what)
{
    int got;
    memset(c, 0xff, sizeof(*c) * (size_t)n);
    got = blkioq_do_io(q, c, n, n, NULL);
    if (got != n) {
        char details[300];
        snprintf(details, sizeof(details), "do_io returned %d (%s), expected %d", got,
                 got < 0 ? blkio_get_error_msg() : "", n);
        h_report(false, details, "%s: completions", what);
        return got;
    }
    for (int i = 0; i < n; i++) {
        bool zero = h_verify_byte(c[i].reserved_, sizeof(c[i].reserved_), 0) < 0;
        if (!zero || (c[i].ret == 0 && c[i].error_msg != NULL)) {
            h_report(false, "reserved_ not zero or error_msg set on success",
                     "%s: completion fields", what);
            return -1;
        }
    }
    return got;
}

/* One request, one completion; returns its ret (or a do_io failure). */
static int one(struct blkioq *q, const char *what)
{
    struct blkio_completion c;
    return collect(q, &c, 1, what) == 1 ? c.ret : -1000;
}

/* The fd's view must be the pattern too (pread, independent of the
 * library). */
static bool file_has(const char *path, uint64_t off, size_t len, uint32_t seed)
{
    return h_verify_file(path, off, len, seed) == -1;
}

/* ------------------------------------------------------------------------
 * Data tests */

struct target {
    const char *label; /* "ext4 buffered", ... */
    const char *path;
    struct blkio *b;
    struct blkioq *q;
    bool direct;
    bool tmpfs;       /* the file system ignores O_DIRECT alignment */
    bool zero_range;  /* the file system supports FALLOC_FL_ZERO_RANGE */
    uint64_t align; /* request-alignment */
};

static void rw_at(struct target *t, uint64_t off, size_t len, uint32_t seed, uint32_t flags)
{
    struct blkioq *q = t->q;
    int wret, rret;
    long long bad;
    h_fill(buf_a, len, off, seed);
    memset(buf_b, 0, len);
    blkioq_write(t->q, off, buf_a, len, NULL, flags);
    wret = one(q, "write");
    blkioq_read(t->q, off, buf_b, len, NULL, 0);
    rret = one(q, "read");
    bad = h_verify(buf_b, len, off, seed);
    if (!CHECK(wret == 0 && rret == 0 && bad < 0 && file_has(t->path, off, len, seed),
               "%s: write%s + read %zu bytes at %" PRIu64, t->label,
               flags ? " FUA" : "", len, off))
        printf("#   write %d, read %d, first bad byte %lld\n", wret, rret, bad);
}

static void test_offsets_sizes(struct target *t)
{
    uint32_t seed = 100;
    if (!t->direct) {
        static const uint64_t offs[] = {0, 1, 511, 4095, 4097, 65535, 1000003, FILE_SIZE - 140000};
        static const size_t sizes[] = {1, 3, 511, 4096, 4097, 65536, 131071};
        for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
            for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
                rw_at(t, offs[i], sizes[j], seed++, 0);
        rw_at(t, 3, BUF_SIZE - 7, seed++, 0);
    } else {
        uint64_t a = t->align;
        const uint64_t offs[] = {0, a, 3 * a, 65536, (1 << 20) + 5 * a, FILE_SIZE - (1 << 20)};
        const size_t sizes[] = {a, 2 * a, 4096, 65536 + a, 1 << 20};
        for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
            for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
                rw_at(t, offs[i], sizes[j], seed++, 0);
        rw_at(t, 0, BUF_SIZE, seed++, 0);
    }
    rw_at(t, t->direct ? t->align * 9 : 12345, t->direct ? 8 * t->align : 7777, seed++,
          BLKIO_REQ_FUA);
}

/* Segment layout for vectored tests: lengths vary, and segments are placed
 * with gaps so that they are not one contiguous buffer. */
static int make_iov(struct target *t, struct iovec *iov, int n, uint8_t *base, int variant)
{
    size_t pos = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        int k = variant ? n - 1 - i : i;
        if (t->direct)
            len = t->align * (size_t)(1 + (k * 7 + n) % 3);
        else
            len = 1 + (size_t)((k * 7919 + n * 31) % 900);
        iov[i].iov_base = base + pos;
        iov[i].iov_len = len;
        pos += len + (t->direct ? t->align : 1 + (size_t)(k % 5));
        total += len;
    }
    return (int)total;
}

static void test_vectored(struct target *t)
{
    static const int counts[] = {1, 2, 7, 64, 1024};
    static struct iovec wiov[1024], riov[1024];
    uint64_t start = t->direct ? t->align * 7 : 12347;
    for (size_t ci = 0; ci < sizeof(counts) / sizeof(counts[0]); ci++) {
        for (int fua = 0; fua < 2; fua++) {
            int n = counts[ci];
            uint32_t seed = 1000 + (uint32_t)(n * 2 + fua);
            int total = make_iov(t, wiov, n, buf_a, 0);
            int rtotal = make_iov(t, riov, n, buf_b, 1);
            uint64_t off = start;
            int wret, rret;
            bool data_ok = true;
            if (fua && n != 7)
                continue;
            for (int i = 0; i < n; i++) {
                h_fill(wiov[i].iov_base, wiov[i].iov_len, off, seed);
                off += wiov[i].iov_len;
            }
            memset(buf_b, 0, BUF_ALLOC);
            blkioq_writev(t->q, start, wiov, n, (void *)(uintptr_t)seed,
                          fua ? BLKIO_REQ_FUA : 0);
            wret = one(t->q, "writev");
            /* Read back with a different segmentation of the same total when
             * possible (same total is guaranteed: the lengths are permuted). */
            CHECK_INT(rtotal, total, "%s: read segmentation covers the written bytes", t->label);
            blkioq_readv(t->q, start, riov, n, NULL, 0);
            rret = one(t->q, "readv");
            off = start;
            for (int i = 0; i < n; i++) {
                if (h_verify(riov[i].iov_base, riov[i].iov_len, off, seed) >= 0)
                    data_ok = false;
                off += riov[i].iov_len;
            }
            CHECK_INT(wret, 0, "%s: writev%s with %d segments", t->label, fua ? " FUA" : "", n);
            CHECK_INT(rret, 0, "%s: readv with %d segments", t->label, n);
            CHECK(data_ok, "%s: readv of %d segments returns the writev data", t->label, n);
            CHECK(file_has(t->path, start, (size_t)total, seed),
                  "%s: pread sees the %d-segment writev data", t->label, n);
        }
    }
}

static void test_flush(struct target *t)
{
    blkioq_flush(t->q, (void *)0x1234, 0);
    CHECK_INT(one(t->q, "flush"), 0, "%s: flush", t->label);
}

static void test_write_zeroes(struct target *t)
{
    long long size_before = h_file_size(t->path);
    const uint64_t window = 64 * 1024;
    for (uint32_t flags = 0; flags < 8; flags++) {
        uint64_t base = 1024 * 1024 + flags * 128 * 1024;
        uint64_t zs, zl;
        struct blkio_completion extra[2];
        long long bad_zero, bad_before, bad_after;
        int ret;
        uint32_t seed = 2000 + flags;
        if (t->direct || flags % 2 == 0) {
            zs = 4096;
            zl = 16384;
        } else {
            zs = 1000;
            zl = 20001;
        }
        h_fill(buf_a, window, base, seed);
        blkioq_write(t->q, base, buf_a, window, NULL, 0);
        CHECK_INT(one(t->q, "write"), 0, "%s: prepare write_zeroes window", t->label);
        blkioq_write_zeroes(t->q, base + zs, zl, (void *)(uintptr_t)flags, flags);
        ret = one(t->q, "write_zeroes");
        /* Without FALLOC_FL_ZERO_RANGE (tmpfs) NO_UNMAP punches and
         * re-allocates the range instead: it must work everywhere. */
        CHECK_INT(ret, 0, "%s: write_zeroes flags %#x%s", t->label, flags,
                  t->zero_range ? "" : " (file system without ZERO_RANGE)");
        CHECK_INT(blkioq_do_io(t->q, extra, 0, 2, NULL), 0,
                  "%s: write_zeroes flags %#x gives exactly one completion", t->label, flags);
        memset(buf_b, 0xcc, window);
        blkioq_read(t->q, base, buf_b, window, NULL, 0);
        CHECK_INT(one(t->q, "read"), 0, "%s: read back write_zeroes window", t->label);
        bad_before = h_verify(buf_b, zs, base, seed);
        bad_zero = h_verify_byte(buf_b + zs, zl, 0);
        bad_after = h_verify(buf_b + zs + zl, window - zs - zl, base + zs + zl, seed);
        CHECK(bad_zero < 0, "%s: write_zeroes flags %#x zeroes %" PRIu64 "@%" PRIu64, t->label,
              flags, zl, base + zs);
        CHECK(bad_before < 0 && bad_after < 0,
              "%s: write_zeroes flags %#x leaves the neighbours intact", t->label, flags);
        CHECK_INT(h_file_size(t->path), size_before,
                  "%s: write_zeroes flags %#x inside the file keeps its size", t->label, flags);
    }

    /* Past the end: NO_UNMAP extends the file, otherwise the size stays. */
    {
        long long size = h_file_size(t->path);
        blkioq_write_zeroes(t->q, (uint64_t)size, 8192, NULL, 0);
        CHECK_INT(one(t->q, "write_zeroes"), 0, "%s: write_zeroes past the end", t->label);
        CHECK_INT(h_file_size(t->path), size,
                  "%s: write_zeroes past the end without NO_UNMAP keeps the size", t->label);
        blkioq_write_zeroes(t->q, (uint64_t)size, 8192, NULL, BLKIO_REQ_NO_UNMAP);
        CHECK_INT(one(t->q, "write_zeroes"), 0, "%s: write_zeroes NO_UNMAP past the end",
                  t->label);
        CHECK_INT(h_file_size(t->path), size + 8192,
                  "%s: write_zeroes NO_UNMAP past the end grows the file", t->label);
        memset(buf_b, 0xcc, 8192);
        blkioq_read(t->q, (uint64_t)size, buf_b, 8192, NULL, 0);
        CHECK(one(t->q, "read") == 0 && h_verify_byte(buf_b, 8192, 0) < 0,
              "%s: the grown range reads as zeros", t->label);
        blkioq_write_zeroes(t->q, (uint64_t)size + 8192, 4096, NULL,
                            BLKIO_REQ_NO_UNMAP | BLKIO_REQ_FUA);
        CHECK_INT(one(t->q, "write_zeroes"), 0, "%s: write_zeroes NO_UNMAP|FUA past the end",
                  t->label);
        CHECK_INT(h_file_size(t->path), size + 12288,
                  "%s: write_zeroes NO_UNMAP|FUA past the end grows the file", t->label);
        CHECK(truncate(t->path, size) == 0, "%s: restore the file size", t->label);
    }
}

static long long blocks_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_blocks : -1;
}

static void test_discard(struct target *t)
{
    const uint64_t base = 2 << 20, window = 512 * 1024;
    const uint64_t ds = 64 * 1024, dl = 256 * 1024;
    long long size = h_file_size(t->path), blocks_before, blocks_after;
    uint32_t seed = 3000;
    int ret;

    h_fill(buf_a, window, base, seed);
    blkioq_write(t->q, base, buf_a, window, NULL, 0);
    blkioq_flush(t->q, NULL, 0);
    CHECK(one(t->q, "write") == 0 && one(t->q, "flush") == 0, "%s: prepare discard window",
          t->label);
    blocks_before = blocks_of(t->path);
    blkioq_discard(t->q, base + ds, dl, (void *)7, 0);
    ret = one(t->q, "discard");
    CHECK_INT(ret, 0, "%s: discard %" PRIu64 "@%" PRIu64, t->label, dl, base + ds);
    blocks_after = blocks_of(t->path);
    memset(buf_b, 0xcc, window);
    blkioq_read(t->q, base, buf_b, window, NULL, 0);
    CHECK_INT(one(t->q, "read"), 0, "%s: read back the discarded window", t->label);
    CHECK(h_verify_byte(buf_b + ds, dl, 0) < 0, "%s: discarded range reads as zeros", t->label);
    CHECK(h_verify(buf_b, ds, base, seed) < 0 &&
              h_verify(buf_b + ds + dl, window - ds - dl, base + ds + dl, seed) < 0,
          "%s: discard leaves the neighbours intact", t->label);
    CHECK_INT(h_file_size(t->path), size, "%s: discard keeps the file size", t->label);
    if (!CHECK(blocks_before - blocks_after >= (long long)(dl / 512),
               "%s: discard deallocates the blocks (st_blocks drops by %" PRIu64 ")", t->label,
               dl / 512))
        printf("#   st_blocks %lld -> %lld\n", blocks_before, blocks_after);

    if (!t->direct) {
        /* Unaligned range: partial blocks are zeroed as well. */
        h_fill(buf_a, 65536, base, seed + 1);
        /* One at a time: requests in flight together are unordered. */
        blkioq_write(t->q, base, buf_a, 65536, NULL, 0);
        ret = one(t->q, "write");
        blkioq_discard(t->q, base + 100, 5000, NULL, 0);
        ret = ret ? ret : one(t->q, "discard");
        blkioq_read(t->q, base, buf_b, 65536, NULL, 0);
        ret = ret ? ret : one(t->q, "read");
        CHECK_INT(ret, 0, "%s: unaligned discard completes", t->label);
        CHECK(h_verify_byte(buf_b + 100, 5000, 0) < 0 && h_verify(buf_b, 100, base, seed + 1) < 0 &&
                  h_verify(buf_b + 5100, 65536 - 5100, base + 5100, seed + 1) < 0,
              "%s: unaligned discard zeroes exactly its range", t->label);
    }
}

static void test_end_of_file(struct target *t)
{
    uint64_t size = (uint64_t)h_file_size(t->path);
    uint64_t tail = t->direct ? t->align : 100;
    uint32_t seed = 4000;
    int ret;

    h_fill(buf_a, 65536, size - 65536, seed);
    blkioq_write(t->q, size - 65536, buf_a, 65536, NULL, 0);
    CHECK_INT(one(t->q, "write"), 0, "%s: write the last 64 KiB", t->label);

    memset(buf_b, 0xaa, 8192);
    blkioq_read(t->q, size + 4096, buf_b, 4096, NULL, 0);
    ret = one(t->q, "read");
    CHECK(ret == 0 && h_verify_byte(buf_b, 4096, 0) < 0,
          "%s: read entirely past the end completes with 0 and zeros", t->label);
    memset(buf_b, 0xaa, 8192);
    blkioq_read(t->q, size, buf_b, 8192, NULL, 0);
    ret = one(t->q, "read");
    CHECK(ret == 0 && h_verify_byte(buf_b, 8192, 0) < 0,
          "%s: read at the end completes with 0 and zeros", t->label);

    memset(buf_b, 0xaa, 8192);
    blkioq_read(t->q, size - tail, buf_b, 2 * tail, NULL, 0);
    ret = one(t->q, "read");
    CHECK_INT(ret, 0, "%s: read straddling the end", t->label);
    CHECK(h_verify(buf_b, tail, size - tail, seed) < 0,
          "%s: straddling read returns the bytes before the end", t->label);
    CHECK(h_verify_byte(buf_b + tail, tail, 0) < 0,
          "%s: straddling read zero-fills the rest", t->label);

    /* readv straddling the end, the boundary inside the second segment. */
    {
        struct iovec iov[3];
        size_t l0 = t->direct ? t->align : 60;
        memset(buf_b, 0xaa, 8 * l0);
        iov[0].iov_base = buf_b;
        iov[0].iov_len = l0;
        iov[1].iov_base = buf_b + 2 * l0;
        iov[1].iov_len = 2 * l0;
        iov[2].iov_base = buf_b + 5 * l0;
        iov[2].iov_len = l0;
        blkioq_readv(t->q, size - 2 * l0, iov, 3, NULL, 0);
        ret = one(t->q, "readv");
        CHECK_INT(ret, 0, "%s: readv straddling the end", t->label);
        CHECK(h_verify(buf_b, l0, size - 2 * l0, seed) < 0 &&
                  h_verify(buf_b + 2 * l0, l0, size - l0, seed) < 0,
              "%s: readv straddling returns the bytes before the end", t->label);
        CHECK(h_verify_byte(buf_b + 3 * l0, l0, 0) < 0 && h_verify_byte(buf_b + 5 * l0, l0, 0) < 0,
              "%s: readv straddling zero-fills the rest of the segments", t->label);
        CHECK(h_verify_byte(buf_b + l0, l0, 0xaa) < 0 && h_verify_byte(buf_b + 4 * l0, l0, 0xaa) < 0,
              "%s: readv straddling leaves the gaps between segments alone", t->label);
    }
    CHECK_INT(h_file_size(t->path), size, "%s: reads past the end keep the size", t->label);

    /* Zero-length requests complete with 0. */
    blkioq_read(t->q, 0, buf_b, 0, NULL, 0);
    CHECK_INT(one(t->q, "read"), 0, "%s: zero-length read", t->label);
    blkioq_write(t->q, 0, buf_a, 0, NULL, 0);
    CHECK_INT(one(t->q, "write"), 0, "%s: zero-length write", t->label);
    blkioq_readv(t->q, 0, (struct iovec *)buf_a, 0, NULL, 0);
    CHECK_INT(one(t->q, "readv"), 0, "%s: readv with 0 iovecs", t->label);
    blkioq_writev(t->q, 0, (struct iovec *)buf_a, 0, NULL, 0);
    CHECK_INT(one(t->q, "writev"), 0, "%s: writev with 0 iovecs", t->label);
}

/* O_DIRECT rules are the kernel's: misaligned requests fail with -EINVAL
 * and no message. */
static void test_direct_misaligned(struct target *t)
{
    struct blkio_completion c;
    if (t->align < 2)
        return;
    blkioq_read(t->q, t->align / 2, buf_b, t->align, NULL, 0);
    CHECK(collect(t->q, &c, 1, "read") == 1 && c.ret == -EINVAL && c.error_msg == NULL,
          "%s: read at a misaligned start fails with -EINVAL from the kernel", t->label);
    blkioq_write(t->q, t->align / 2, buf_a, t->align, NULL, 0);
    CHECK(collect(t->q, &c, 1, "write") == 1 && c.ret == -EINVAL && c.error_msg == NULL,
          "%s: write at a misaligned start fails with -EINVAL", t->label);
    blkioq_read(t->q, 0, buf_b, 100, NULL, 0);
    CHECK(collect(t->q, &c, 1, "read") == 1 && c.ret == -EINVAL,
          "%s: read of a misaligned length fails with -EINVAL", t->label);
}

static void data_tests(const char *dir, const char *fs, bool direct)
{
    struct target t = {0};
    char label[64];
    const char *path = h_tmpfile(dir, FILE_SIZE);
    int align = 1;
    snprintf(label, sizeof(label), "%s %s", fs, direct ? "direct" : "buffered");
    t.label = label;
    if (!path) {
        CHECK(false, "%s: create a scratch file in %s", label, dir);
        return;
    }
    /* O_DIRECT may be unsupported by the file system: then skip. */
    if (direct) {
        int fd = open(path, O_RDWR | O_DIRECT);
        if (fd < 0) {
            h_skip("%s: O_DIRECT not supported in %s", label, dir);
            return;
        }
        close(fd);
    }
    t.path = path;
    t.direct = direct;
    {
        struct statfs sfs;
        int fd = open(path, O_RDWR);
        t.tmpfs = statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
        t.zero_range = fd >= 0 && fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096) == 0;
        if (fd >= 0)
            close(fd);
    }
    t.b = h_open(path, direct ? "direct=true" : NULL);
    if (!t.b)
        return;
    t.q = blkio_get_queue(t.b, 0);
    blkio_get_int(t.b, "request-alignment", &align);
    t.align = (uint64_t)align;
    printf("# %s: %s, request-alignment %d\n", label, path, align);

    test_offsets_sizes(&t);
    test_vectored(&t);
    test_flush(&t);
    test_write_zeroes(&t);
    test_discard(&t);
    test_end_of_file(&t);
    if (direct && !t.tmpfs) /* tmpfs ignores O_DIRECT alignment */
        test_direct_misaligned(&t);
    blkio_destroy(&t.b);
}

/* ------------------------------------------------------------------------
 * Library checks */

struct flag_case {
    const char *what;
    int type; /* 0 read, 1 write, 2 readv, 3 writev, 4 write_zeroes, 5 discard, 6 flush, 7 zone */
    uint32_t flags;
    const char *msg;
};

static void submit_type(struct blkioq *q, int type, void *ud, uint32_t flags)
{
    static struct iovec iov = {NULL, 0};
    static struct blkio_zone zones[2];
    iov.iov_base = buf_a;
    iov.iov_len = 512;
    switch (type) {
    case 0: blkioq_read(q, 0, buf_b, 512, ud, flags); break;
    case 1: blkioq_write(q, 0, buf_a, 512, ud, flags); break;
    case 2: blkioq_readv(q, 0, &iov, 1, ud, flags); break;
    case 3: blkioq_writev(q, 0, &iov, 1, ud, flags); break;
    case 4: blkioq_write_zeroes(q, 0, 512, ud, flags); break;
    case 5: blkioq_discard(q, 0, 512, ud, flags); break;
    case 6: blkioq_flush(q, ud, flags); break;
    default: blkioq_report_zones(q, 0, zones, 2, ud, flags); break;
    }
}

#define UNSUPPORTED "unsupported bits in request flags"
#define BAD_FUA "BLKIO_REQ_FUA is invalid for this request type"
#define BAD_NO_UNMAP "BLKIO_REQ_NO_UNMAP is invalid for this request type"
#define BAD_NO_FALLBACK "BLKIO_REQ_NO_FALLBACK is invalid for this request type"

static void test_flags(struct blkioq *q)
{
    static const struct flag_case cases[] = {
        {"read flags 8", 0, 8, UNSUPPORTED},
        {"read flags 0x80000000", 0, 0x80000000u, UNSUPPORTED},
        {"write flags 8|FUA", 1, 8 | BLKIO_REQ_FUA, UNSUPPORTED},
        {"write_zeroes flags 0x10|all", 4, 0x17, UNSUPPORTED},
        {"flush flags 0xffffffff", 6, 0xffffffffu, UNSUPPORTED},
        {"read FUA", 0, BLKIO_REQ_FUA, BAD_FUA},
        {"readv FUA", 2, BLKIO_REQ_FUA, BAD_FUA},
        {"read NO_UNMAP|NO_FALLBACK|FUA", 0, 7, BAD_FUA},
        {"flush NO_UNMAP", 6, BLKIO_REQ_NO_UNMAP, BAD_NO_UNMAP},
        {"flush NO_UNMAP|NO_FALLBACK", 6, BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK, BAD_NO_UNMAP},
        {"flush FUA", 6, BLKIO_REQ_FUA, BAD_FUA},
        {"write NO_UNMAP", 1, BLKIO_REQ_NO_UNMAP, BAD_NO_UNMAP},
        {"writev NO_FALLBACK", 3, BLKIO_REQ_NO_FALLBACK, BAD_NO_FALLBACK},
        {"write FUA|NO_FALLBACK", 1, BLKIO_REQ_FUA | BLKIO_REQ_NO_FALLBACK, BAD_NO_FALLBACK},
        {"discard FUA", 5, BLKIO_REQ_FUA, BAD_FUA},
        {"discard NO_UNMAP", 5, BLKIO_REQ_NO_UNMAP, BAD_NO_UNMAP},
        {"discard NO_FALLBACK", 5, BLKIO_REQ_NO_FALLBACK, BAD_NO_FALLBACK},
        {"report_zones FUA (flags before -ENOTSUP)", 7, BLKIO_REQ_FUA, BAD_FUA},
        {"report_zones flags 8", 7, 8, UNSUPPORTED},
    };
    struct blkio_completion c;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        submit_type(q, cases[i].type, (void *)(uintptr_t)(i + 1), cases[i].flags);
        if (collect(q, &c, 1, cases[i].what) != 1)
            continue;
        CHECK(c.ret == -EINVAL && c.user_data == (void *)(uintptr_t)(i + 1),
              "%s: -EINVAL for its user_data (ret %d)", cases[i].what, c.ret);
        CHECK_STR(c.error_msg, cases[i].msg, "%s: message", cases[i].what);
    }

    /* Allowed flags pass. */
    {
        static const struct {
            int type;
            uint32_t flags;
        } ok[] = {{1, BLKIO_REQ_FUA},
                  {3, BLKIO_REQ_FUA},
                  {4, BLKIO_REQ_FUA | BLKIO_REQ_NO_FALLBACK},
                  {4, BLKIO_REQ_NO_FALLBACK}};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
            submit_type(q, ok[i].type, NULL, ok[i].flags);
            CHECK_INT(one(q, "allowed flags"), 0, "request type %d accepts flags %#x", ok[i].type,
                      ok[i].flags);
        }
        /* All three write-zeroes flags pass validation. */
        submit_type(q, 4, NULL, 7);
        if (collect(q, &c, 1, "write_zeroes flags 7") == 1)
            CHECK(c.ret == 0, "write_zeroes accepts flags 0x7 (ret %d)", c.ret);
    }

    /* iovcnt -1 is checked before the flags. */
    {
        struct iovec iov = {buf_a, 512};
        blkioq_readv(q, 0, &iov, -1, (void *)11, 0);
        blkioq_writev(q, 0, &iov, -1, (void *)12, 8);
        blkioq_readv(q, 0, &iov, -2147483647 - 1, (void *)13, BLKIO_REQ_FUA);
        if (collect(q, &c, 1, "readv iovcnt -1") == 1)
            CHECK(c.ret == -EINVAL && c.user_data == (void *)11 && c.error_msg &&
                      !strcmp(c.error_msg,
                              "iovcnt must be non-negative and fit in a signed 32-bit integer"),
                  "readv iovcnt -1 fails with the iovcnt message");
        if (collect(q, &c, 1, "writev iovcnt -1") == 1)
            CHECK(c.ret == -EINVAL && c.user_data == (void *)12 && c.error_msg &&
                      !strcmp(c.error_msg,
                              "iovcnt must be non-negative and fit in a signed 32-bit integer"),
                  "writev iovcnt -1 with bad flags: iovcnt checked first");
        if (collect(q, &c, 1, "readv iovcnt INT_MIN") == 1)
            CHECK(c.ret == -EINVAL && c.error_msg && strstr(c.error_msg, "iovcnt"),
                  "readv iovcnt INT_MIN fails with the iovcnt message");
    }
}

/* docs/contract/requests.md §1: backlog completions first, oldest first. */
static void test_ordering(struct blkioq *q)
{
    struct blkio_completion c[4];
    blkioq_read(q, 0, buf_b, 4096, (void *)1, 0);
    blkioq_read(q, 4096, buf_b + 4096, 4096, (void *)2, BLKIO_REQ_FUA);
    blkioq_read(q, 8192, buf_b + 8192, 4096, (void *)3, 0);
    blkioq_flush(q, (void *)4, BLKIO_REQ_NO_UNMAP);
    if (collect(q, c, 4, "ordering") != 4)
        return;
    CHECK(c[0].user_data == (void *)2 && c[0].ret == -EINVAL, "first: the bad read");
    CHECK(c[1].user_data == (void *)4 && c[1].ret == -EINVAL, "second: the bad flush");
    CHECK(((c[2].user_data == (void *)1 && c[3].user_data == (void *)3) ||
           (c[2].user_data == (void *)3 && c[3].user_data == (void *)1)) &&
              c[2].ret == 0 && c[3].ret == 0,
          "then the two good reads");
}

static void test_zone_requests(struct blkioq *q)
{
    static const char *const names[] = {
        "report_zones",   "open_zone",     "close_zone",      "finish_zone",    "reset_zone",
        "open_all_zones", "close_all_zones", "finish_all_zones", "reset_all_zones",
    };
    struct blkio_zone zones[4];
    struct blkio_completion c[9];
    memset(zones, 0x5a, sizeof(zones));
    blkioq_report_zones(q, 0, zones, 4, (void *)0, 0);
    blkioq_open_zone(q, 0, (void *)1, 0);
    blkioq_close_zone(q, 0, (void *)2, 0);
    blkioq_finish_zone(q, 0, (void *)3, 0);
    blkioq_reset_zone(q, 0, (void *)4, 0);
    blkioq_open_all_zones(q, (void *)5, 0);
    blkioq_close_all_zones(q, (void *)6, 0);
    blkioq_finish_all_zones(q, (void *)7, 0);
    blkioq_reset_all_zones(q, (void *)8, 0);
    if (collect(q, c, 9, "zone requests") != 9)
        return;
    for (int i = 0; i < 9; i++) {
        uintptr_t ud = (uintptr_t)c[i].user_data;
        CHECK(ud < 9 && c[i].ret == -ENOTSUP && c[i].error_msg &&
                  !strcmp(c[i].error_msg, "request not supported for this driver"),
              "%s: -ENOTSUP \"request not supported for this driver\"",
              ud < 9 ? names[ud] : "?");
    }
    CHECK(h_verify_byte(zones, sizeof(zones), 0x5a) < 0, "report_zones leaves the array alone");
}

/* One request's completion must be -EINVAL with `msg`. */
static void check_einval(struct blkioq *q, const char *msg, const char *what)
{
    struct blkio_completion c;
    if (collect(q, &c, 1, what) == 1)
        CHECK_REQ(c.ret, c.error_msg, -EINVAL, msg, "%s: -EINVAL \"%s\"", what, msg);
}

/* Offsets the kernel would misread: a start above INT64_MAX is a negative
 * file offset, and -1 means "the current file position", so a write there
 * would land at offset 0. Every one must fail at call time and leave the
 * file alone. */
static void test_big_offsets(struct blkioq *q, const char *path)
{
    static const char *start_msg = "start must fit in a signed 64-bit integer";
    static const char *sum_msg = "start + len must fit in a signed 64-bit integer";
    const uint64_t max = (uint64_t)INT64_MAX;
    struct blkio_completion c;
    struct iovec iov[2];
    uint32_t seed = 4242;

    if (!CHECK(h_write_file(path, 0, 65536, seed), "big offsets: pattern at offset 0"))
        return;
    h_fill(buf_a, 4096, 0, seed + 1); /* different data than the file's */

    blkioq_write(q, UINT64_MAX, buf_a, 512, NULL, 0);
    check_einval(q, start_msg, "write of 512 bytes at 2^64-1");
    blkioq_write(q, UINT64_MAX, buf_a, 512, NULL, BLKIO_REQ_FUA);
    check_einval(q, start_msg, "FUA write at 2^64-1");
    blkioq_write(q, 1ull << 63, buf_a, 4096, NULL, 0);
    check_einval(q, start_msg, "write at 2^63");
    blkioq_write(q, max - 511, buf_a, 1024, NULL, 0);
    check_einval(q, sum_msg, "write at 2^63-512 of 1024 bytes");
    iov[0].iov_base = buf_a;
    iov[0].iov_len = 512;
    blkioq_writev(q, UINT64_MAX, iov, 1, NULL, 0);
    check_einval(q, start_msg, "writev at 2^64-1");
    iov[1].iov_base = buf_a + 512;
    iov[1].iov_len = 512;
    blkioq_writev(q, max - 1023, iov, 2, NULL, 0);
    check_einval(q, sum_msg, "writev at 2^63-1024 of 2 x 512 bytes");
    blkioq_write_zeroes(q, UINT64_MAX, 4096, NULL, 0);
    check_einval(q, start_msg, "write_zeroes at 2^64-1");
    blkioq_write_zeroes(q, 4096, UINT64_MAX - 4095, NULL, BLKIO_REQ_NO_UNMAP);
    check_einval(q, sum_msg, "write_zeroes at 4096 of 2^64-4096 bytes");
    blkioq_discard(q, UINT64_MAX - 4095, 4096, NULL, 0);
    check_einval(q, start_msg, "discard at 2^64-4096");
    CHECK(file_has(path, 0, 65536, seed),
          "no write, writev, write_zeroes or discard at a bad offset changed the file's "
          "first 64 KiB");

    memset(buf_b, 0x5a, 4096);
    blkioq_read(q, UINT64_MAX, buf_b, 512, NULL, 0);
    check_einval(q, start_msg, "read of 512 bytes at 2^64-1");
    blkioq_read(q, (1ull << 63) + 4096, buf_b, 4096, NULL, 0);
    check_einval(q, start_msg, "read at 2^63 + 4096");
    blkioq_readv(q, max, iov, 2, NULL, 0);
    check_einval(q, sum_msg, "readv at 2^63-1 of 1024 bytes");
    CHECK(h_verify_byte(buf_b, 4096, 0x5a) < 0, "reads at bad offsets leave the buffer alone");

    /* The largest valid end still goes to the kernel: reading 512 bytes
     * ending exactly at 2^63-1 past the end of the file returns zeroes. */
    blkioq_read(q, max - 512, buf_b, 512, NULL, 0);
    CHECK(collect(q, &c, 1, "read ending at 2^63-1") == 1 && c.ret == 0 &&
              h_verify_byte(buf_b, 512, 0) < 0,
          "read of 512 bytes ending at 2^63-1 succeeds with zeroes (past the end)");

    blkioq_read(q, 0, buf_b, (size_t)UINT32_MAX + 1, (void *)9, 0);
    CHECK(collect(q, &c, 1, "read of 4 GiB") == 1 && c.ret == -EINVAL && c.error_msg &&
              !strcmp(c.error_msg, "len must fit in an unsigned 32-bit integer"),
          "read longer than 4 GiB - 1 fails with -EINVAL \"len must fit...\"");
    blkioq_write(q, 0, buf_a, (size_t)UINT32_MAX + 1, (void *)9, 0);
    CHECK(collect(q, &c, 1, "write of 4 GiB") == 1 && c.ret == -EINVAL,
          "write longer than 4 GiB - 1 fails with -EINVAL");
}

static void test_read_only_instance(const char *path)
{
    struct blkio *b = h_open(path, "read-only=true");
    struct blkioq *q;
    /* Initialised: CHECK's arguments (c.ret in the message) may be
     * evaluated before the condition that fills it. */
    struct blkio_completion c = {0};
    struct iovec iov = {buf_a, 4096};
    if (!b)
        return;
    q = blkio_get_queue(b, 0);
    h_write_file(path, 0, 4096, 77);
    blkioq_write(q, 0, buf_a, 4096, NULL, 0);
    CHECK(collect(q, &c, 1, "ro write") == 1 && c.ret == -EBADF, "read-only: write -EBADF (%d)",
          c.ret);
    blkioq_writev(q, 0, &iov, 1, NULL, BLKIO_REQ_FUA);
    CHECK(collect(q, &c, 1, "ro writev") == 1 && c.ret == -EBADF, "read-only: writev -EBADF (%d)",
          c.ret);
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK(collect(q, &c, 1, "ro write_zeroes") == 1 && c.ret == -EBADF,
          "read-only: write_zeroes -EBADF (%d)", c.ret);
    blkioq_write_zeroes(q, 0, 4096, NULL, BLKIO_REQ_NO_UNMAP | BLKIO_REQ_FUA);
    CHECK(collect(q, &c, 1, "ro write_zeroes") == 1 && c.ret == -EBADF,
          "read-only: write_zeroes NO_UNMAP|FUA -EBADF (%d)", c.ret);
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK(collect(q, &c, 1, "ro discard") == 1 && c.ret == -EBADF,
          "read-only: discard -EBADF (%d)", c.ret);
    CHECK(h_verify_file(path, 0, 4096, 77) == -1, "read-only: the file is unchanged");
    memset(buf_b, 0, 4096);
    blkioq_read(q, 0, buf_b, 4096, NULL, 0);
    CHECK(one(q, "ro read") == 0 && h_verify(buf_b, 4096, 0, 77) < 0,
          "read-only: read works");
    blkioq_flush(q, NULL, 0);
    CHECK_INT(one(q, "ro flush"), 0, "read-only: flush works");
    blkio_destroy(&b);
}

/* Many requests in flight on a small ring all complete with the right
 * data (the request backlog). */
static void test_many_in_flight(const char *path, int entries, int count, size_t size)
{
    char opts[64];
    struct blkio *b;
    struct blkioq *q;
    struct blkio_completion *c = calloc((size_t)count, sizeof(*c));
    uint8_t *seen = calloc((size_t)count, 1);
    uint8_t *data = malloc((size_t)count * size);
    int n, bad_ud = 0, bad_ret = 0, bad_data = 0;
    snprintf(opts, sizeof(opts), "num-entries=%d", entries);
    b = h_open(path, opts);
    if (!b)
        goto out;
    q = blkio_get_queue(b, 0);

    for (int i = 0; i < count; i++) {
        h_fill(data + (size_t)i * size, size, (uint64_t)i * size, 5000 + (uint32_t)count);
        blkioq_write(q, (uint64_t)i * size, data + (size_t)i * size, size,
                     (void *)(uintptr_t)(i + 1), 0);
    }
    n = collect(q, c, count, "many writes");
    for (int i = 0; i < n; i++) {
        uintptr_t ud = (uintptr_t)c[i].user_data;
        if (ud < 1 || ud > (uintptr_t)count || seen[ud - 1]++)
            bad_ud++;
        if (c[i].ret)
            bad_ret++;
    }
    CHECK(n == count && !bad_ud && !bad_ret,
          "%d writes with num-entries %d: each user_data once, all ret 0", count, entries);
    CHECK(h_verify_file(path, 0, (size_t)count * size, 5000 + (uint32_t)count) == -1,
          "%d writes with num-entries %d: file content", count, entries);

    memset(data, 0, (size_t)count * size);
    memset(seen, 0, (size_t)count);
    bad_ud = bad_ret = 0;
    for (int i = 0; i < count; i++)
        blkioq_read(q, (uint64_t)i * size, data + (size_t)i * size, size,
                    (void *)(uintptr_t)(i + 1), 0);
    /* Collect in uneven batches: max smaller than what is available. */
    n = 0;
    while (n < count) {
        int want = count - n < 37 ? count - n : 37;
        int got = blkioq_do_io(q, c + n, 1, want, NULL);
        if (got <= 0)
            break;
        n += got;
    }
    for (int i = 0; i < n; i++) {
        uintptr_t ud = (uintptr_t)c[i].user_data;
        if (ud < 1 || ud > (uintptr_t)count || seen[ud - 1]++)
            bad_ud++;
        if (c[i].ret)
            bad_ret++;
    }
    for (int i = 0; i < count; i++)
        if (h_verify(data + (size_t)i * size, size, (uint64_t)i * size, 5000 + (uint32_t)count) >= 0)
            bad_data++;
    CHECK(n == count && !bad_ud && !bad_ret && !bad_data,
          "%d reads with num-entries %d: all complete with the right data", count, entries);
    blkio_destroy(&b);
out:
    free(c);
    free(seen);
    free(data);
}

int main(void)
{
    const char *path;
    struct blkio *b;

    if (posix_memalign((void **)&buf_a, 4096, BUF_ALLOC) ||
        posix_memalign((void **)&buf_b, 4096, BUF_ALLOC))
        return 1;

    data_tests(h_test_dir(), "dir", false);
    data_tests(h_test_dir(), "dir", true);
    if (h_tmpfs_dir()) {
        data_tests(h_tmpfs_dir(), "tmpfs", false);
        data_tests(h_tmpfs_dir(), "tmpfs", true);
    } else {
        h_skip("tmpfs data tests (BLKIO_TEST_TMPFS not set)");
    }

    path = h_scratch(FILE_SIZE);
    b = h_open(path, NULL);
    if (b) {
        struct blkioq *q = blkio_get_queue(b, 0);
        test_flags(q);
        test_ordering(q);
        test_zone_requests(q);
        test_big_offsets(q, path);
        blkio_destroy(&b);
    }
    test_read_only_instance(path);
    test_many_in_flight(path, 128, 1024, 4096);
    test_many_in_flight(path, 3, 100, 512);
    test_many_in_flight(path, 1, 50, 1000);
    return h_done();
}
