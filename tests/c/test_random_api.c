/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Random API sequences on io_uring, over a file in $BLKIO_TEST_DIR and one
 * in $BLKIO_TEST_TMPFS: long seeded sequences mixing valid reads, writes,
 * write zeroes, discards and flushes (checked against a shadow copy of the
 * file) with hostile calls (NULL handles and pointers, unknown names,
 * wrong types, calls in the wrong state, bad queue indexes, bogus and
 * twice-freed regions, negative and huge counts, offsets at and past
 * 2^63, start + len overflowing, bad do_io arguments).
 *
 * Invariants: every failed call returns a negative errno with a non-empty
 * blkio_get_error_msg(); every failed request completes with a negative
 * errno; every successful read returns what was last written; nothing
 * hangs (each wait has a timeout). Leaks: tests/run.sh also runs this
 * under valgrind.
 *
 * The seed is printed; BLKIO_SEED=<n> replays it. BLKIO_STEPS sets the
 * number of steps per file (default 1500).
 */
#include <sys/uio.h>
#include <time.h>

#include "harness.h"

#define FILE_SIZE (1u << 20)
#define MAX_LEN (64u * 1024)

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* Counters of one sequence. */
struct stats {
    unsigned calls, failures_bad, failures_ok, reads_verified, mismatches, requests_bad;
    unsigned waits_bad;
};

/* A call that must fail: negative errno and a message. */
static void must_fail(struct stats *st, int ret, const char *what)
{
    const char *msg = blkio_get_error_msg();
    st->calls++;
    if (ret < 0 && ret >= -4095 && msg && *msg) {
        st->failures_ok++;
        return;
    }
    st->failures_bad++;
    printf("# %s: ret %d, message \"%s\"\n", what, ret, msg ? msg : "(null)");
}

/* Waits for the one request in flight; returns its ret (or a do_io error). */
static int wait1(struct stats *st, struct blkioq *q)
{
    struct blkio_completion c;
    struct timespec ts = {.tv_sec = 10};
    int n = blkioq_do_io(q, &c, 1, 1, &ts);
    if (n != 1) {
        st->waits_bad++;
        printf("# do_io for one completion returned %d (%s)\n", n, blkio_get_error_msg());
        return n < 0 ? n : -1000;
    }
    if (c.ret > 0 || c.ret < -4095) {
        st->requests_bad++;
        printf("# completion ret %d\n", c.ret);
    }
    return c.ret;
}

/* A request that must fail: completes with a negative errno. */
static void request_must_fail(struct stats *st, struct blkioq *q, const char *what)
{
    int ret = wait1(st, q);
    st->calls++;
    if (ret >= 0) {
        st->requests_bad++;
        printf("# %s completed with %d\n", what, ret);
    }
}

static void hostile(struct stats *st, struct blkio *b, struct blkioq *q, uint8_t *buf)
{
    static const char *const names[] = {"", "no-such-property", "capacity ", "CAPACITY",
                                        "num_queues", "path\n", "\xff\xfe"};
    struct blkio_mem_region r, bogus;
    struct iovec iov[2] = {{buf, 512}, {buf + 512, 512}};
    struct blkio_completion c[2];
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    uint64_t u;
    int v;
    bool bv;
    char *s = NULL;

    switch (below(22)) {
    case 0:
        must_fail(st, blkio_set_int(NULL, "num-queues", 1), "set_int on NULL");
        break;
    case 1:
        must_fail(st, blkio_get_int(b, names[below(7)], &v), "get_int of an unknown name");
        break;
    case 2:
        must_fail(st, blkio_get_bool(b, "capacity", &bv), "get_bool of a uint64");
        break;
    case 3:
        must_fail(st, blkio_set_str(b, "path", "/nonexistent"), "set path when started");
        break;
    case 4:
        must_fail(st, blkio_set_int(b, "num-queues", -(int)below(1u << 31)), "num-queues < 0");
        break;
    case 5:
        must_fail(st, blkio_get_uint64(b, NULL, &u), "get_uint64 with NULL name");
        break;
    case 6:
        must_fail(st, blkio_get_str(b, "driver", NULL), "get_str into NULL");
        break;
    case 7:
        must_fail(st, blkio_set_str(b, "capacity", "1"), "set a read-only property");
        break;
    case 8:
        st->calls++;
        if (blkio_get_queue(b, below(2) ? -1 - (int)below(100) : 1 + (int)below(1000))) {
            st->failures_bad++;
            printf("# get_queue of a bad index returned a queue\n");
        }
        break;
    case 9:
        must_fail(st, blkio_remove_queue(b, 1 + (int)below(1000)), "remove a missing queue");
        break;
    case 10:
        bogus = (struct blkio_mem_region){.addr = (void *)(uintptr_t)(rnd() | 1),
                                          .len = (size_t)rnd(),
                                          .fd = -1 - (int)below(10),
                                          .fd_offset = (int64_t)rnd()};
        /* io_uring registers nothing, so mapping may succeed; a failure
         * must follow the convention. Unmap and free must ignore it. */
        if ((v = blkio_map_mem_region(b, &bogus)) < 0)
            must_fail(st, v, "map a bogus region");
        else
            st->calls++;
        blkio_unmap_mem_region(b, &bogus);
        blkio_unmap_mem_region(b, &bogus);
        blkio_free_mem_region(b, &bogus);
        break;
    case 11:
        must_fail(st, blkio_alloc_mem_region(b, &r, 0), "alloc a region of length 0");
        must_fail(st, blkio_alloc_mem_region(b, NULL, 4096), "alloc into NULL");
        break;
    case 12:
        st->calls++;
        if (blkio_alloc_mem_region(b, &r, 4096 * (1 + below(4))) < 0) {
            st->failures_bad++;
            printf("# alloc_mem_region failed: %s\n", blkio_get_error_msg());
            break;
        }
        if (below(2) && blkio_map_mem_region(b, &r) == 0) {
            must_fail(st, blkio_map_mem_region(b, &r), "map a region twice");
            blkio_unmap_mem_region(b, &r);
            blkio_unmap_mem_region(b, &r);
        }
        blkio_free_mem_region(b, &r);
        blkio_free_mem_region(b, &r); /* the second free is ignored */
        break;
    case 13:
        must_fail(st, blkioq_do_io(q, NULL, 0, 1 + (int)below(100), &ts),
                  "do_io with NULL completions and max > 0");
        break;
    case 14:
        must_fail(st, blkioq_do_io(q, c, 2, 1, &ts), "do_io with min > max");
        break;
    case 15:
        must_fail(st, blkioq_do_io(q, c, -1 - (int)below(100), 2, &ts), "do_io with min < 0");
        break;
    case 16:
        blkioq_readv(q, 0, iov, -1 - (int)below(1000), NULL, 0);
        request_must_fail(st, q, "readv with iovcnt < 0");
        break;
    case 17:
        blkioq_read(q, (1ULL << 63) + below(1ULL << 62), buf, 512, NULL, 0);
        request_must_fail(st, q, "read at a start >= 2^63");
        break;
    case 18:
        blkioq_write(q, UINT64_MAX - below(511), buf, 512, NULL, 0);
        request_must_fail(st, q, "write at start 2^64-1-k");
        break;
    case 19:
        blkioq_read(q, 0, buf, 512, NULL, 0xFFFFFFF0u | (uint32_t)below(16));
        request_must_fail(st, q, "read with unknown flags");
        break;
    case 20:
        blkioq_read(NULL, 0, buf, 512, NULL, 0);
        blkioq_flush(NULL, NULL, 0);
        must_fail(st, blkioq_do_io(NULL, c, 0, 1, &ts), "do_io on NULL");
        break;
    default:
        st->calls++;
        if (blkio_get_str(b, "driver", &s) != 0 || !s || strcmp(s, "io_uring") != 0) {
            st->failures_bad++;
            printf("# get_str driver failed\n");
        }
        free(s);
        break;
    }
}

static void run_sequence(const char *dir, const char *where, uint64_t seed, unsigned steps)
{
    struct stats st = {0};
    const char *path = h_tmpfile(dir, FILE_SIZE);
    uint8_t *shadow = calloc(1, FILE_SIZE);  /* expected contents */
    uint8_t *known = calloc(1, FILE_SIZE);   /* 0 after a discard: content undefined */
    uint8_t *buf = NULL;
    struct blkio *b;
    struct blkioq *q;

    if (!path || !shadow || !known || posix_memalign((void **)&buf, 4096, MAX_LEN) != 0) {
        CHECK(false, "%s: set up the scratch file and buffers", where);
        goto out_free;
    }
    memset(buf, 0, MAX_LEN);
    memset(known, 1, FILE_SIZE);
    b = h_open(path, "");
    if (!b)
        goto out_free;
    q = blkio_get_queue(b, 0);
    rng_state = seed ? seed : 1;

    for (unsigned i = 0; i < steps; i++) {
        uint64_t off = below(FILE_SIZE);
        uint32_t len = (uint32_t)(1 + below(MAX_LEN));
        uint32_t op = (uint32_t)below(10);
        int ret;

        if (off + len > FILE_SIZE)
            len = (uint32_t)(FILE_SIZE - off);
        if (op >= 7) {
            hostile(&st, b, q, buf);
            continue;
        }
        st.calls++;
        switch (op) {
        case 0:
        case 1: /* write, sometimes FUA */
            for (uint32_t k = 0; k < len; k++)
                buf[k] = (uint8_t)rnd();
            blkioq_write(q, off, buf, len, NULL, below(4) ? 0 : BLKIO_REQ_FUA);
            if ((ret = wait1(&st, q)) == 0) {
                memcpy(shadow + off, buf, len);
                memset(known + off, 1, len);
            } else {
                printf("# write %u at %llu failed: %d\n", len, (unsigned long long)off, ret);
                st.requests_bad++;
            }
            break;
        case 2:
        case 3: /* read and verify */
            memset(buf, 0xA5, len);
            blkioq_read(q, off, buf, len, NULL, 0);
            if ((ret = wait1(&st, q)) != 0) {
                printf("# read %u at %llu failed: %d\n", len, (unsigned long long)off, ret);
                st.requests_bad++;
                break;
            }
            for (uint32_t k = 0; k < len; k++) {
                if (known[off + k] && buf[k] != shadow[off + k]) {
                    st.mismatches++;
                    printf("# read at %llu: byte %u is %#x, expected %#x\n",
                           (unsigned long long)off, k, buf[k], shadow[off + k]);
                    break;
                }
            }
            st.reads_verified++;
            break;
        case 4: /* write zeroes, sector aligned */
            off &= ~511ULL;
            len = (len + 511) & ~511u;
            if (off + len > FILE_SIZE)
                len = (uint32_t)(FILE_SIZE - off);
            blkioq_write_zeroes(q, off, len, NULL, below(2) ? BLKIO_REQ_NO_UNMAP : 0);
            if ((ret = wait1(&st, q)) == 0) {
                memset(shadow + off, 0, len);
                memset(known + off, 1, len);
            } else {
                printf("# write_zeroes %u at %llu failed: %d\n", len, (unsigned long long)off,
                       ret);
                st.requests_bad++;
            }
            break;
        case 5: /* discard: contents undefined afterwards */
            off &= ~511ULL;
            len = (len + 511) & ~511u;
            if (off + len > FILE_SIZE)
                len = (uint32_t)(FILE_SIZE - off);
            blkioq_discard(q, off, len, NULL, 0);
            if ((ret = wait1(&st, q)) == 0)
                memset(known + off, 0, len);
            else if (ret != -ENOTSUP)
                st.requests_bad++;
            break;
        default:
            blkioq_flush(q, NULL, 0);
            if (wait1(&st, q) != 0)
                st.requests_bad++;
            break;
        }
    }
    blkio_destroy(&b);
    CHECK(b == NULL, "%s: destroy sets the handle to NULL", where);

    CHECK_INT(st.failures_bad, 0,
              "%s seed %llu: %u of %u hostile calls failed with a negative errno and a message",
              where, (unsigned long long)seed, st.failures_ok, st.failures_ok + st.failures_bad);
    CHECK_INT(st.requests_bad, 0, "%s seed %llu: every request completed as expected (%u calls)",
              where, (unsigned long long)seed, st.calls);
    CHECK_INT(st.waits_bad, 0, "%s seed %llu: every wait got its completion in time", where,
              (unsigned long long)seed);
    CHECK_INT(st.mismatches, 0, "%s seed %llu: %u reads returned what was last written", where,
              (unsigned long long)seed, st.reads_verified);
    /* The file itself, read back without the library. */
    {
        int fd = open(path, O_RDONLY);
        uint8_t *all = malloc(FILE_SIZE);
        long bad = -1;
        if (fd >= 0 && all && pread(fd, all, FILE_SIZE, 0) == (ssize_t)FILE_SIZE) {
            for (long k = 0; k < (long)FILE_SIZE; k++)
                if (known[k] && all[k] != shadow[k]) {
                    bad = k;
                    break;
                }
            CHECK(bad < 0, "%s seed %llu: the file holds the shadow copy (first difference %ld)",
                  where, (unsigned long long)seed, bad);
        } else {
            CHECK(false, "%s: read the file back", where);
        }
        if (fd >= 0)
            close(fd);
        free(all);
    }
out_free:
    free(shadow);
    free(known);
    free(buf);
}

int main(void)
{
    const char *env = getenv("BLKIO_SEED");
    const char *steps_env = getenv("BLKIO_STEPS");
    uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    unsigned steps = steps_env && *steps_env ? (unsigned)strtoul(steps_env, NULL, 0) : 1500;

    printf("# seed %llu (replay with BLKIO_SEED=%llu), %u steps per file\n",
           (unsigned long long)seed, (unsigned long long)seed, steps);
    run_sequence(h_test_dir(), "file", seed, steps);
    if (h_tmpfs_dir())
        run_sequence(h_tmpfs_dir(), "tmpfs", seed + 1, steps);
    else
        printf("skip - tmpfs: BLKIO_TEST_TMPFS is not set\n");
    return h_done();
}
