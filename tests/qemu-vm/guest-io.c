/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Runs inside the guest of tests/qemu-vm/run.sh on one virtio-blk disk whose
 * QEMU block node goes through libblkio. Built static on the host.
 *
 *   guest-io rw DEVICE TAG   write the layout with O_DIRECT from many threads,
 *                            fsync, read back and verify, then BLKDISCARD,
 *                            BLKZEROOUT and a zero-filled write (turned into
 *                            write-zeroes by detect-zeroes), verify, fsync
 *   guest-io ro DEVICE TAG   the disk must be read-only: opening it for
 *                            writing fails, reads verify the host's pattern
 *
 * Prints one "ok - " / "not ok - " line per check; exit status 1 if any
 * failed. layout.py computes the same layout and pattern on the host and
 * checks the image bytes after the guest has powered off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SECTOR 512u
#define MAX_EXTENTS 4096
#define THREADS 16
#define LAYOUT_END (40ull << 20) /* the extents fill [0, 40 MiB) */
#define RO_SIZE (4ull << 20)

/* Ranges changed after the first verification (layout.py has the same). */
#define DISCARD_OFF (4ull << 20)
#define DISCARD_LEN (1ull << 20)
#define ZEROOUT_OFF (9ull << 20)
#define ZEROOUT_LEN (3ull << 19)
#define SMALL_ZERO_OFF ((20ull << 20) + 512)
#define SMALL_ZERO_LEN 3584ull
#define ZERO_WRITE_OFF (16ull << 20)
#define ZERO_WRITE_LEN (1ull << 20)

struct extent {
    uint64_t off;
    uint64_t len;
};

static struct extent extents[MAX_EXTENTS];
static int n_extents;
static int fd;
static unsigned tag;
static int failures;

static void result(int good, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(int good, const char *fmt, ...)
{
    va_list ap;

    printf("%s - ", good ? "ok" : "not ok");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!good)
        failures++;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

/* xorshift64; layout.py implements the same sequence. */
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Non-overlapping extents of 512 B .. 1 MiB with gaps of 0..3 sectors. */
static void make_layout(void)
{
    uint64_t cur = 0;

    while (n_extents < MAX_EXTENTS) {
        unsigned k = rng() % 12;
        uint64_t len = (uint64_t)SECTOR << k;
        uint64_t gap = (rng() % 4) * SECTOR;

        if (k > 0)
            len += (rng() % (1u << k)) * SECTOR;
        if (len > (1u << 20))
            len = 1u << 20;
        if (cur + gap + len > LAYOUT_END)
            break;
        extents[n_extents].off = cur + gap;
        extents[n_extents].len = len;
        n_extents++;
        cur += gap + len;
    }
}

/* Sector at disk offset OFF: 16-byte header (offset, tag), then one byte. */
static void fill(unsigned char *buf, uint64_t off, uint64_t len, unsigned t)
{
    for (uint64_t i = 0; i < len; i += SECTOR) {
        uint64_t o = off + i, hdr[2] = {o, t};

        memcpy(buf + i, hdr, sizeof(hdr));
        memset(buf + i + 16, (int)(((o / SECTOR) * 7 + t) & 0xff), SECTOR - 16);
    }
}

static int all_zero(const unsigned char *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (buf[i])
            return 0;
    return 1;
}

static void *aligned(uint64_t len)
{
    void *p = NULL;

    if (posix_memalign(&p, 4096, len ? len : 4096)) {
        perror("posix_memalign");
        exit(2);
    }
    return p;
}

static int io_full(int write, void *buf, uint64_t len, uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        ssize_t n = write ? pwrite(fd, (char *)buf + done, len - done, (off_t)(off + done))
                          : pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (uint64_t)n;
    }
    return 0;
}

enum phase { WRITE, VERIFY, VERIFY_AFTER };

struct worker {
    pthread_t thread;
    int index;
    enum phase phase;
    int errors;
    int mismatches;
    uint64_t bytes;
};

/* Expected content of [off, off+len) after the discard/zero phase. */
static void expect_after(unsigned char *buf, uint64_t off, uint64_t len)
{
    static const uint64_t zeroed[][2] = {
        {DISCARD_OFF, DISCARD_LEN},
        {ZEROOUT_OFF, ZEROOUT_LEN},
        {SMALL_ZERO_OFF, SMALL_ZERO_LEN},
        {ZERO_WRITE_OFF, ZERO_WRITE_LEN},
    };

    fill(buf, off, len, tag);
    for (unsigned z = 0; z < sizeof(zeroed) / sizeof(zeroed[0]); z++) {
        uint64_t a = zeroed[z][0], b = a + zeroed[z][1];
        uint64_t lo = a > off ? a : off, hi = b < off + len ? b : off + len;

        if (lo < hi)
            memset(buf + (lo - off), 0, hi - lo);
    }
}

static void *work(void *arg)
{
    struct worker *w = arg;
    unsigned char *buf = aligned(1u << 20), *want = aligned(1u << 20);

    /* Extents are dealt round-robin: THREADS requests in flight. */
    for (int i = w->index; i < n_extents; i += THREADS) {
        struct extent *e = &extents[i];
        int ret;

        if (w->phase == WRITE) {
            fill(buf, e->off, e->len, tag);
            ret = io_full(1, buf, e->len, e->off);
        } else {
            memset(buf, 0xee, e->len);
            ret = io_full(0, buf, e->len, e->off);
            if (w->phase == VERIFY)
                fill(want, e->off, e->len, tag);
            else
                expect_after(want, e->off, e->len);
            if (ret == 0 && memcmp(buf, want, e->len)) {
                if (w->mismatches++ < 3)
                    printf("# mismatch in extent %d [%llu, +%llu)\n", i,
                           (unsigned long long)e->off, (unsigned long long)e->len);
            }
        }
        if (ret) {
            if (w->errors++ < 3)
                printf("# %s of extent %d [%llu, +%llu): %s\n", w->phase == WRITE ? "write" : "read",
                       i, (unsigned long long)e->off, (unsigned long long)e->len, strerror(-ret));
        }
        w->bytes += e->len;
    }
    free(buf);
    free(want);
    return NULL;
}

static void run_phase(enum phase phase, const char *what)
{
    struct worker w[THREADS];
    int errors = 0, mismatches = 0;
    uint64_t bytes = 0;

    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.index = i, .phase = phase};
        if (pthread_create(&w[i].thread, NULL, work, &w[i])) {
            perror("pthread_create");
            exit(2);
        }
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].thread, NULL);
        errors += w[i].errors;
        mismatches += w[i].mismatches;
        bytes += w[i].bytes;
    }
    result(errors == 0 && mismatches == 0,
           "%s: %d extents (512 B .. 1 MiB, %llu bytes) by %d threads: %d I/O errors, %d mismatches", what,
           n_extents, (unsigned long long)bytes, THREADS, errors, mismatches);
}

static void range_ioctl(unsigned long req, const char *name, uint64_t off, uint64_t len)
{
    uint64_t range[2] = {off, len};

    result(ioctl(fd, req, range) == 0, "%s [%llu, +%llu)%s%s", name, (unsigned long long)off,
           (unsigned long long)len, errno ? ": " : "", errno ? strerror(errno) : "");
}

static int rw_disk(const char *dev)
{
    unsigned char *zero = aligned(ZERO_WRITE_LEN), *buf = aligned(4u << 20), *want = aligned(4u << 20);

    fd = open(dev, O_RDWR | O_DIRECT);
    if (fd < 0) {
        result(0, "open %s O_RDWR|O_DIRECT: %s", dev, strerror(errno));
        return 1;
    }
    run_phase(WRITE, "O_DIRECT writes");
    result(fsync(fd) == 0, "fsync after the writes");
    run_phase(VERIFY, "O_DIRECT read back and compare");

    /* A gap between extents was never written: zeroes. */
    for (int i = 1; i < n_extents; i++) {
        uint64_t end = extents[i - 1].off + extents[i - 1].len;

        if (extents[i].off > end) {
            uint64_t len = extents[i].off - end;

            memset(buf, 0xee, len);
            result(io_full(0, buf, len, end) == 0 && all_zero(buf, len),
                   "never-written gap [%llu, +%llu) reads as zeroes", (unsigned long long)end,
                   (unsigned long long)len);
            break;
        }
    }

    errno = 0;
    range_ioctl(BLKDISCARD, "BLKDISCARD", DISCARD_OFF, DISCARD_LEN);
    errno = 0;
    range_ioctl(BLKZEROOUT, "BLKZEROOUT", ZEROOUT_OFF, ZEROOUT_LEN);
    errno = 0;
    range_ioctl(BLKZEROOUT, "BLKZEROOUT (unaligned to 4 KiB)", SMALL_ZERO_OFF, SMALL_ZERO_LEN);
    memset(zero, 0, ZERO_WRITE_LEN);
    result(io_full(1, zero, ZERO_WRITE_LEN, ZERO_WRITE_OFF) == 0, "O_DIRECT write of 1 MiB of zeroes at %llu",
           (unsigned long long)ZERO_WRITE_OFF);
    result(fsync(fd) == 0, "fsync after discard and write-zeroes");

    /* The changed ranges with 1 MiB of neighbours on each side. */
    static const uint64_t around[] = {DISCARD_OFF, ZEROOUT_OFF, SMALL_ZERO_OFF & ~((1ull << 20) - 1),
                                      ZERO_WRITE_OFF};
    for (unsigned i = 0; i < sizeof(around) / sizeof(around[0]); i++) {
        uint64_t off = around[i] - (1ull << 20), len = 4ull << 20;

        memset(buf, 0xee, len);
        expect_after(want, off, len);
        /* gaps between extents are zero: expect_after() filled them */
        for (uint64_t s = 0; s < len; s += SECTOR) {
            int in = 0;
            for (int e = 0; e < n_extents && !in; e++)
                in = off + s >= extents[e].off && off + s < extents[e].off + extents[e].len;
            if (!in)
                memset(want + s, 0, SECTOR);
        }
        result(io_full(0, buf, len, off) == 0 && memcmp(buf, want, len) == 0,
               "[%llu, +4 MiB) around a discarded/zeroed range reads as expected", (unsigned long long)off);
    }
    run_phase(VERIFY_AFTER, "all extents again after discard/zero");
    close(fd);
    free(zero);
    free(buf);
    free(want);
    return failures != 0;
}

static int ro_disk(const char *dev)
{
    unsigned char *buf = aligned(RO_SIZE), *want = aligned(RO_SIZE);
    int ro = -1, wfd;

    /* Linux may let a read-only disk be opened for writing; the writes fail. */
    wfd = open(dev, O_RDWR | O_DIRECT);
    if (wfd < 0) {
        result(errno == EROFS || errno == EACCES || errno == EPERM,
               "open of the read-only disk for writing fails: %s", strerror(errno));
    } else {
        uint64_t range[2] = {0, 4096};
        ssize_t n;
        int ret;

        memset(buf, 0, 4096);
        n = pwrite(wfd, buf, 4096, 0);
        result(n < 0, "O_DIRECT write to the read-only disk fails: %s", n < 0 ? strerror(errno) : "it succeeded");
        ret = ioctl(wfd, BLKZEROOUT, range);
        result(ret < 0, "BLKZEROOUT on the read-only disk fails: %s", ret < 0 ? strerror(errno) : "it succeeded");
        ret = ioctl(wfd, BLKDISCARD, range);
        result(ret < 0, "BLKDISCARD on the read-only disk fails: %s", ret < 0 ? strerror(errno) : "it succeeded");
        close(wfd);
    }
    fd = open(dev, O_RDONLY | O_DIRECT);
    if (fd < 0) {
        result(0, "open %s O_RDONLY|O_DIRECT: %s", dev, strerror(errno));
        return 1;
    }
    if (ioctl(fd, BLKROGET, &ro) < 0)
        ro = -errno;
    result(ro == 1, "BLKROGET says read-only (%d)", ro);
    fill(want, 0, RO_SIZE, tag);
    memset(buf, 0xee, RO_SIZE);
    result(io_full(0, buf, RO_SIZE, 0) == 0 && memcmp(buf, want, RO_SIZE) == 0,
           "O_DIRECT read of the host's 4 MiB pattern verifies");
    close(fd);
    free(buf);
    free(want);
    return failures != 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s rw|ro DEVICE TAG\n", argv[0]);
        return 2;
    }
    tag = (unsigned)strtoul(argv[3], NULL, 0);
    make_layout();
    if (strcmp(argv[1], "ro") == 0)
        return ro_disk(argv[2]);
    return rw_disk(argv[2]);
}
