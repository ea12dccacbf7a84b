/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io_uring properties (docs/contract/properties.md §1–3, docs/contract/abi.md §6.6): the 32 names and
 * their created-state values, values after connect on a regular file
 * (buffered and O_DIRECT, derived from sysfs like the spec's rule), type
 * mismatches, read-only and state errors, string conversions, setter
 * validation, and values that follow the file or a passed descriptor.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include "harness.h"

#define MSG_NODEV "Device must be connected"
#define MSG_CONNECTED "Cannot set property in connected state"
#define MSG_STARTED "Cannot set property in started state"
#define MSG_RO "Property is read-only"

enum type { T_BOOL, T_INT, T_U64, T_STR };
enum access { A_RO, A_CREATED, A_CONNECTED };

struct prop {
    const char *name;
    enum type type;
    enum access access;
    const char *created; /* value in the created state; NULL = -ENODEV */
};

/* docs/contract/properties.md §3, "Created state" column. */
static const struct prop props[] = {
    {"buf-alignment", T_INT, A_RO, NULL},
    {"can-add-queues", T_BOOL, A_RO, "true"},
    {"can-grow", T_BOOL, A_RO, "false"},
    {"capacity", T_U64, A_RO, NULL},
    {"direct", T_BOOL, A_CREATED, "false"},
    {"discard-alignment", T_INT, A_RO, NULL},
    {"discard-alignment-offset", T_INT, A_RO, NULL},
    {"driver", T_STR, A_RO, "io_uring"},
    {"fd", T_INT, A_CREATED, "-1"},
    {"flush-needed", T_BOOL, A_RO, "true"},
    {"max-discard-len", T_U64, A_RO, NULL},
    {"max-mem-regions", T_U64, A_RO, "18446744073709551615"},
    {"max-queues", T_INT, A_RO, "2147483647"},
    {"max-segment-len", T_INT, A_RO, NULL},
    {"max-segments", T_INT, A_RO, NULL},
    {"max-transfer", T_INT, A_RO, NULL},
    {"max-write-zeroes-len", T_U64, A_RO, NULL},
    {"may-pin-mem-regions", T_BOOL, A_RO, "false"},
    {"mem-region-alignment", T_U64, A_RO, NULL},
    {"needs-mem-region-fd", T_BOOL, A_RO, "false"},
    {"needs-mem-regions", T_BOOL, A_RO, "false"},
    {"num-entries", T_INT, A_CONNECTED, "128"},
    {"num-poll-queues", T_INT, A_CONNECTED, "0"},
    {"num-queues", T_INT, A_CONNECTED, "1"},
    {"optimal-buf-alignment", T_INT, A_RO, NULL},
    {"optimal-io-alignment", T_INT, A_RO, NULL},
    {"optimal-io-size", T_INT, A_RO, NULL},
    {"path", T_STR, A_CREATED, ""},
    {"read-only", T_BOOL, A_CREATED, "false"},
    {"request-alignment", T_INT, A_RO, NULL},
    {"supports-fua-natively", T_BOOL, A_RO, "false"},
    {"supports-poll-queues", T_BOOL, A_RO, "false"},
};
#define NPROPS (sizeof(props) / sizeof(props[0]))

/* Reads a property with its typed getter and formats it like get_str. */
static int get_typed(struct blkio *b, const struct prop *p, char *out, size_t size)
{
    int ret;
    switch (p->type) {
    case T_BOOL: {
        bool v = false;
        ret = blkio_get_bool(b, p->name, &v);
        snprintf(out, size, "%s", v ? "true" : "false");
        break;
    }
    case T_INT: {
        int v = 0;
        ret = blkio_get_int(b, p->name, &v);
        snprintf(out, size, "%d", v);
        break;
    }
    case T_U64: {
        uint64_t v = 0;
        ret = blkio_get_uint64(b, p->name, &v);
        snprintf(out, size, "%" PRIu64, v);
        break;
    }
    default: {
        char *v = NULL;
        ret = blkio_get_str(b, p->name, &v);
        snprintf(out, size, "%s", v ? v : "");
        free(v);
    }
    }
    return ret;
}

static void test_created_state(void)
{
    struct blkio *b = NULL;
    blkio_create("io_uring", &b);
    CHECK_INT(NPROPS, 32, "the io_uring property table has 32 entries");
    for (size_t i = 0; i < NPROPS; i++) {
        const struct prop *p = &props[i];
        char typed[64], *s = NULL;
        int ret = get_typed(b, p, typed, sizeof(typed));
        int sret = blkio_get_str(b, p->name, &s);
        if (p->created) {
            CHECK_OK(ret, "created: typed get of %s", p->name);
            CHECK_STR(typed, p->created, "created: %s value", p->name);
            CHECK_OK(sret, "created: get_str of %s", p->name);
            CHECK_STR(s, p->created, "created: %s as a string", p->name);
        } else {
            CHECK_ERR(ret, -ENODEV, MSG_NODEV, "created: %s needs a connection", p->name);
            CHECK_ERR(sret, -ENODEV, MSG_NODEV, "created: get_str %s needs a connection",
                      p->name);
        }
        free(s);
    }

    /* Names of other drivers, manual spellings and near misses. */
    {
        static const char *const unknown[] = {
            "queue-size", "max-queue-size", "zoned", "zone-size", "nr-zones",
            "num_entries", "num_queues", "Capacity", "capacity ", "", "driver\t",
        };
        for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
            int v;
            char *s = NULL;
            CHECK_ERR(blkio_get_int(b, unknown[i], &v), -ENOENT, "Unknown property name",
                      "get_int \"%s\" is unknown", unknown[i]);
            CHECK_ERR(blkio_get_str(b, unknown[i], &s), -ENOENT, "Unknown property name",
                      "get_str \"%s\" is unknown", unknown[i]);
            CHECK_ERR(blkio_set_str(b, unknown[i], "1"), -ENOENT, "Unknown property name",
                      "set_str \"%s\" is unknown", unknown[i]);
        }
    }
    blkio_destroy(&b);
}

/* ------------------------------------------------------------------------
 * Values after connect, derived like docs/contract/properties.md §3 says */

struct sysfs_facts {
    bool found;
    long logical_block_size; /* -1 = unknown */
    long fua;
    long io_poll;
};

static long read_long(const char *dir, const char *name)
{
    char path[600];
    long v = -1;
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* The queue attributes of the device holding `path` (st_dev), found as the
 * spec says: /sys/dev/block/MAJ:MIN, ../queue for a partition. */
static struct sysfs_facts sysfs_for(const char *path)
{
    struct sysfs_facts f = {false, -1, -1, -1};
    struct stat st;
    char dev[128], probe[200], queue[200];
    if (stat(path, &st) < 0)
        return f;
    snprintf(dev, sizeof(dev), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    if (access(dev, F_OK) < 0)
        return f;
    f.found = true;
    snprintf(probe, sizeof(probe), "%s/partition", dev);
    snprintf(queue, sizeof(queue), access(probe, F_OK) == 0 ? "%s/../queue" : "%s/queue", dev);
    f.logical_block_size = read_long(queue, "logical_block_size");
    f.fua = read_long(queue, "fua");
    f.io_poll = read_long(queue, "io_poll");
    return f;
}

static void check_connected_values(struct blkio *b, const char *path, bool direct,
                                   const char *state)
{
    struct sysfs_facts sf = sysfs_for(path);
    long page = sysconf(_SC_PAGESIZE);
    long iov_max = sysconf(_SC_IOV_MAX);
    long req_align = !direct ? 1 : sf.logical_block_size > 0 ? sf.logical_block_size : page;
    struct statfs sfs;
    long bsize = statfs(path, &sfs) == 0 ? (long)sfs.f_bsize : 0;
    long opt_io_align = bsize > req_align ? bsize : req_align;
    const char *mode = direct ? "direct" : "buffered";
    char want[64], got[64];

    struct {
        const char *name;
        long long value;
    } expected[] = {
        {"capacity", 2 << 20},
        {"request-alignment", req_align},
        {"buf-alignment", req_align},
        {"mem-region-alignment", req_align},
        {"optimal-io-alignment", opt_io_align},
        {"optimal-buf-alignment", page},
        {"optimal-io-size", 0},
        {"max-transfer", 0},
        {"max-segments", iov_max > 0 ? iov_max : 1024},
        {"max-segment-len", 0},
        {"max-write-zeroes-len", 0},
        {"max-discard-len", 0},
        {"discard-alignment", req_align},
        {"discard-alignment-offset", 0},
        {"can-grow", 1},
        {"read-only", 0},
        {"direct", direct},
        {"supports-fua-natively", sf.fua > 0},
        {"flush-needed", 1},
        {"needs-mem-regions", 0},
        {"needs-mem-region-fd", 0},
        {"may-pin-mem-regions", 0},
        {"max-queues", INT_MAX},
        {"num-queues", 1},
        {"num-poll-queues", 0},
        {"num-entries", 128},
        {"can-add-queues", 1},
    };

    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const struct prop *p = NULL;
        for (size_t j = 0; j < NPROPS; j++)
            if (strcmp(props[j].name, expected[i].name) == 0)
                p = &props[j];
        if (!p) {
            CHECK(false, "table knows %s", expected[i].name);
            continue;
        }
        if (p->type == T_BOOL)
            snprintf(want, sizeof(want), "%s", expected[i].value ? "true" : "false");
        else if (p->type == T_U64 && expected[i].value == -1)
            snprintf(want, sizeof(want), "18446744073709551615");
        else
            snprintf(want, sizeof(want), "%lld", expected[i].value);
        CHECK_OK(get_typed(b, p, got, sizeof(got)), "%s %s: read %s", state, mode, p->name);
        CHECK_STR(got, want, "%s %s: %s", state, mode, p->name);
    }

    {
        uint64_t u;
        blkio_get_uint64(b, "max-mem-regions", &u);
        CHECK(u == UINT64_MAX, "%s %s: max-mem-regions is UINT64_MAX", state, mode);
    }

    /* supports-poll-queues: direct and the device's io_poll is 1; without
     * sysfs the library falls back to a test read, so only buffered is
     * known then. */
    {
        bool v = true;
        CHECK_OK(blkio_get_bool(b, "supports-poll-queues", &v), "%s %s: read supports-poll-queues",
                 state, mode);
        if (!direct)
            CHECK(!v, "%s buffered: supports-poll-queues false", state);
        else if (sf.io_poll >= 0)
            CHECK_INT(v, sf.io_poll == 1, "%s direct: supports-poll-queues follows io_poll %ld",
                      state, sf.io_poll);
        else
            h_skip("%s direct: supports-poll-queues (no sysfs io_poll for the file's device)",
                   state);
    }

    /* fd: a library-owned descriptor with the right flags; path as set. */
    {
        int fd = -1, fl;
        char *s = NULL;
        CHECK_OK(blkio_get_int(b, "fd", &fd), "%s %s: read fd", state, mode);
        fl = fcntl(fd, F_GETFL);
        CHECK(fd >= 0 && fl != -1, "%s %s: fd property is an open descriptor (%d)", state, mode,
              fd);
        CHECK(fl != -1 && !!(fl & O_DIRECT) == direct, "%s %s: O_DIRECT on the fd matches",
              state, mode);
        CHECK(fl != -1 && (fl & O_ACCMODE) == O_RDWR, "%s %s: fd opened read-write", state, mode);
        CHECK(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC), "%s %s: fd has FD_CLOEXEC", state,
              mode);
        blkio_get_str(b, "path", &s);
        CHECK_STR(s, path, "%s %s: path as set", state, mode);
        free(s);
        blkio_get_str(b, "driver", &s);
        CHECK_STR(s, "io_uring", "%s %s: driver", state, mode);
        free(s);
    }
}

static void test_connected_values(const char *path, bool direct)
{
    struct blkio *b = h_instance(path, direct ? "direct=true" : NULL, false);
    if (!b) {
        if (direct)
            h_skip("O_DIRECT on %s (connect failed)", h_test_dir());
        return;
    }
    check_connected_values(b, path, direct, "connected");
    CHECK_OK(blkio_start(b), "start (%s)", direct ? "direct" : "buffered");
    check_connected_values(b, path, direct, "started");
    blkio_destroy(&b);
}

/* ------------------------------------------------------------------------
 * Accessor errors */

static void test_type_mismatch(const char *path)
{
    struct blkio *b = h_instance(path, NULL, false);
    bool bv;
    int iv;
    uint64_t uv;
    if (!b)
        return;

    CHECK_ERR(blkio_get_int(b, "capacity", &iv), -ENOTTY, "Property is not an int",
              "get_int on a uint64");
    CHECK_ERR(blkio_get_int(b, "path", &iv), -ENOTTY, "Property is not an int",
              "get_int on a str");
    CHECK_ERR(blkio_get_bool(b, "num-queues", &bv), -ENOTTY, "Property is not a bool",
              "get_bool on an int");
    CHECK_ERR(blkio_get_bool(b, "driver", &bv), -ENOTTY, "Property is not a bool",
              "get_bool on a str");
    CHECK_ERR(blkio_get_uint64(b, "direct", &uv), -ENOTTY,
              "Property is not an unsigned 64-bit integer", "get_uint64 on a bool");
    CHECK_ERR(blkio_get_uint64(b, "max-queues", &uv), -ENOTTY,
              "Property is not an unsigned 64-bit integer", "get_uint64 on an int");
    CHECK_ERR(blkio_set_uint64(b, "num-queues", 1), -ENOTTY,
              "Property is not an unsigned 64-bit int", "set_uint64 on an int (setter wording)");
    CHECK_ERR(blkio_set_int(b, "capacity", 1), -ENOTTY, "Property is not an int",
              "set_int on a read-only uint64: type checked before read-only");
    CHECK_ERR(blkio_set_bool(b, "path", true), -ENOTTY, "Property is not a bool",
              "set_bool on a str");
    CHECK_ERR(blkio_set_int(b, "read-only", 1), -ENOTTY, "Property is not an int",
              "set_int on a bool");
    CHECK_ERR(blkio_set_uint64(b, "max-queues", 1), -ENOTTY,
              "Property is not an unsigned 64-bit int", "set_uint64 on a read-only int");
    CHECK_ERR(blkio_get_int(b, "no-such-property", &iv), -ENOENT, "Unknown property name",
              "unknown name checked before the type");
    CHECK_ERR(blkio_get_int(b, "fd\xff", &iv), -EINVAL, "Invalid property name",
              "invalid UTF-8 name (getter)");
    CHECK_ERR(blkio_set_int(b, "\xc3\x28", 1), -EINVAL, "Invalid property name",
              "invalid UTF-8 name (setter)");
    CHECK_ERR(blkio_set_str(b, "\xc3\x28", "\xff"), -EINVAL, "Invalid property name",
              "invalid UTF-8 name checked before the value");
    CHECK_ERR(blkio_set_str(b, "path", "/tmp/\xff"), -EINVAL, "Invalid value string",
              "invalid UTF-8 value string");
    CHECK_ERR(blkio_set_str(b, "no-such", "\xff"), -EINVAL, "Invalid value string",
              "invalid UTF-8 value checked before the name lookup");
    blkio_destroy(&b);
}

/* -EACCES on every read-only property in every state. */
static void test_read_only(const char *path)
{
    struct blkio *b = NULL;
    blkio_create("io_uring", &b);
    blkio_set_str(b, "path", path);
    for (int state = 0; state < 3; state++) {
        static const char *const names[] = {"created", "connected", "started"};
        if (state == 1)
            blkio_connect(b);
        if (state == 2)
            blkio_start(b);
        for (size_t i = 0; i < NPROPS; i++) {
            const struct prop *p = &props[i];
            int ret;
            if (p->access != A_RO)
                continue;
            switch (p->type) {
            case T_BOOL:
                ret = blkio_set_bool(b, p->name, true);
                break;
            case T_INT:
                ret = blkio_set_int(b, p->name, 1);
                break;
            case T_U64:
                ret = blkio_set_uint64(b, p->name, 1);
                break;
            default:
                ret = blkio_set_str(b, p->name, "io_uring");
            }
            CHECK_ERR(ret, -EACCES, MSG_RO, "%s: set %s is refused", names[state], p->name);
        }
        CHECK_ERR(blkio_set_str(b, "capacity", "5"), -EACCES, MSG_RO,
                  "%s: set_str on a read-only uint64 (parse ok)", names[state]);
        CHECK_ERR(blkio_set_str(b, "capacity", "x"), -EINVAL,
                  "Value must be an unsigned 64-bit integer",
                  "%s: set_str parses before the read-only check", names[state]);
        CHECK_ERR(blkio_set_str(b, "can-grow", "yes"), -EINVAL,
                  "Value must be \"true\" or \"false\"",
                  "%s: bool parse error before read-only", names[state]);
        CHECK_ERR(blkio_set_str(b, "max-queues", "+3"), -EACCES, MSG_RO,
                  "%s: int parse ok then read-only", names[state]);
    }
    blkio_destroy(&b);
}

/* State errors of the writable properties, with exact messages. */
static void test_state_errors(const char *path)
{
    struct blkio *b = NULL;
    int v = 0;
    blkio_create("io_uring", &b);

    /* Created: connected-only setters need a connection; the state check
     * comes before the value check. */
    CHECK_ERR(blkio_set_int(b, "num-queues", 2), -ENODEV, MSG_NODEV, "created: set num-queues");
    CHECK_ERR(blkio_set_int(b, "num-queues", -1), -ENODEV, MSG_NODEV,
              "created: state checked before the num-queues value");
    CHECK_ERR(blkio_set_int(b, "num-poll-queues", 0), -ENODEV, MSG_NODEV,
              "created: set num-poll-queues");
    CHECK_ERR(blkio_set_int(b, "num-entries", 64), -ENODEV, MSG_NODEV,
              "created: set num-entries");
    CHECK_ERR(blkio_set_str(b, "num-entries", "64"), -ENODEV, MSG_NODEV,
              "created: set_str num-entries");
    CHECK_ERR(blkio_set_str(b, "num-entries", "sixty"), -EINVAL,
              "Value must be a signed 32-bit integer", "created: parse error before the state");
    CHECK_OK(blkio_set_bool(b, "direct", true), "created: set direct");
    CHECK_OK(blkio_set_bool(b, "direct", false), "created: reset direct");
    CHECK_OK(blkio_set_bool(b, "read-only", false), "created: set read-only");
    CHECK_OK(blkio_set_int(b, "fd", -1), "created: set fd -1");
    CHECK_OK(blkio_set_int(b, "fd", 12345), "created: any fd value is accepted by the setter");
    blkio_get_int(b, "fd", &v);
    CHECK_INT(v, 12345, "created: fd reads back as set");
    blkio_set_int(b, "fd", -1);
    CHECK_OK(blkio_set_str(b, "path", path), "created: set path");

    CHECK_OK(blkio_connect(b), "connect");
    CHECK_ERR(blkio_set_str(b, "path", path), -EBUSY, MSG_CONNECTED, "connected: set path");
    CHECK_ERR(blkio_set_int(b, "fd", 3), -EBUSY, MSG_CONNECTED, "connected: set fd");
    CHECK_ERR(blkio_set_bool(b, "read-only", true), -EBUSY, MSG_CONNECTED,
              "connected: set read-only");
    CHECK_ERR(blkio_set_bool(b, "direct", true), -EBUSY, MSG_CONNECTED, "connected: set direct");
    CHECK_ERR(blkio_set_str(b, "direct", "true"), -EBUSY, MSG_CONNECTED,
              "connected: set_str direct");

    CHECK_ERR(blkio_set_int(b, "num-queues", -1), -EINVAL,
              "num_queues must be equal to or greater than 0", "num-queues -1");
    CHECK_ERR(blkio_set_int(b, "num-queues", INT_MIN), -EINVAL,
              "num_queues must be equal to or greater than 0", "num-queues INT_MIN");
    CHECK_ERR(blkio_set_int(b, "num-poll-queues", -1), -EINVAL,
              "num_poll_queues must be equal to or greater than 0", "num-poll-queues -1");
    CHECK_ERR(blkio_set_int(b, "num-entries", 0), -EINVAL, "num-entries must be greater than 0",
              "num-entries 0");
    CHECK_ERR(blkio_set_int(b, "num-entries", -1), -EINVAL, "num-entries must be greater than 0",
              "num-entries -1");
    CHECK_ERR(blkio_set_str(b, "num-entries", "-7"), -EINVAL,
              "num-entries must be greater than 0", "set_str num-entries -7");
    blkio_get_int(b, "num-entries", &v);
    CHECK_INT(v, 128, "rejected values leave num-entries at its default");
    blkio_get_int(b, "num-queues", &v);
    CHECK_INT(v, 1, "rejected values leave num-queues at its default");

    CHECK_OK(blkio_set_int(b, "num-entries", 3), "num-entries 3 accepted");
    blkio_get_int(b, "num-entries", &v);
    CHECK_INT(v, 3, "num-entries reads back as set (not rounded)");
    CHECK_OK(blkio_set_int(b, "num-entries", 65536), "num-entries 65536 accepted by the setter");
    CHECK_ERR(blkio_start(b), -EINVAL, "Invalid argument (os error 22)",
              "start with num-entries 65536 fails in the kernel");
    CHECK(blkio_get_queue(b, 0) == NULL, "no queue after a failed start");
    CHECK_OK(blkio_set_int(b, "num-entries", 32768), "num-entries 32768 after a failed start");
    CHECK_OK(blkio_set_int(b, "num-queues", 2), "num-queues 2");
    CHECK_OK(blkio_set_str(b, "num-queues", "+2"), "set_str num-queues \"+2\"");
    CHECK_OK(blkio_start(b), "start retried with num-entries 32768");
    CHECK(blkio_get_queue(b, 1) != NULL && blkio_get_queue(b, 2) == NULL,
          "num-queues 2 gives queues 0 and 1");
    {
        char buf[4096];
        CHECK_INT(h_read(blkio_get_queue(b, 1), 0, buf, sizeof(buf)), 0,
                  "read on a 32768-entry ring");
    }

    CHECK_ERR(blkio_set_int(b, "num-queues", 1), -EBUSY, MSG_STARTED, "started: set num-queues");
    CHECK_ERR(blkio_set_int(b, "num-queues", -1), -EBUSY, MSG_STARTED,
              "started: state checked before the value");
    CHECK_ERR(blkio_set_int(b, "num-poll-queues", 0), -EBUSY, MSG_STARTED,
              "started: set num-poll-queues");
    CHECK_ERR(blkio_set_int(b, "num-entries", 8), -EBUSY, MSG_STARTED, "started: set num-entries");
    CHECK_ERR(blkio_set_str(b, "path", ""), -EBUSY, MSG_CONNECTED,
              "started: set path says \"connected state\"");
    CHECK_ERR(blkio_set_bool(b, "direct", false), -EBUSY, MSG_CONNECTED, "started: set direct");
    CHECK_ERR(blkio_set_int(b, "fd", -1), -EBUSY, MSG_CONNECTED, "started: set fd");
    CHECK_ERR(blkio_set_bool(b, "read-only", false), -EBUSY, MSG_CONNECTED,
              "started: set read-only");
    blkio_get_int(b, "num-entries", &v);
    CHECK_INT(v, 32768, "num-entries readable when started");
    blkio_destroy(&b);

    /* num-queues 0 is allowed; queues can be added later. */
    b = h_instance(path, NULL, false);
    if (b) {
        CHECK_OK(blkio_set_int(b, "num-queues", 0), "num-queues 0 accepted");
        CHECK_OK(blkio_start(b), "start with num-queues 0");
        CHECK(blkio_get_queue(b, 0) == NULL, "no queue with num-queues 0");
        CHECK_INT(blkio_add_queue(b), 0, "add_queue after starting with 0 queues");
        CHECK(blkio_get_queue(b, 0) != NULL, "added queue exists");
        blkio_destroy(&b);
    }
}

/* get_str on every type, set_str parsing rules (docs/contract/abi.md §6.6). */
static void test_strings(const char *path)
{
    struct blkio *b = NULL;
    char *s = NULL;
    int v = 0;
    blkio_create("io_uring", &b);

#define GET_STR(name, want, what)                                              \
    do {                                                                       \
        s = NULL;                                                              \
        CHECK_OK(blkio_get_str(b, name, &s), "get_str " name);                 \
        CHECK_STR(s, want, what);                                              \
        free(s);                                                               \
    } while (0)

    GET_STR("can-add-queues", "true", "bool true as a string");
    GET_STR("direct", "false", "bool false as a string");
    GET_STR("max-queues", "2147483647", "int as a string");
    GET_STR("fd", "-1", "negative int as a string");
    GET_STR("max-mem-regions", "18446744073709551615", "uint64 as a string");
    GET_STR("driver", "io_uring", "str as a string");

    blkio_set_int(b, "fd", INT_MIN);
    GET_STR("fd", "-2147483648", "INT_MIN as a string");

    /* int parsing */
    CHECK_OK(blkio_set_str(b, "fd", "+7"), "set_str int \"+7\"");
    blkio_get_int(b, "fd", &v);
    CHECK_INT(v, 7, "\"+7\" parses as 7");
    CHECK_OK(blkio_set_str(b, "fd", "-2147483648"), "set_str int \"-2147483648\"");
    blkio_get_int(b, "fd", &v);
    CHECK_INT(v, INT_MIN, "\"-2147483648\" parses as INT_MIN");
    CHECK_OK(blkio_set_str(b, "fd", "2147483647"), "set_str int \"2147483647\"");
    CHECK_OK(blkio_set_str(b, "fd", "-0"), "set_str int \"-0\"");
    blkio_get_int(b, "fd", &v);
    CHECK_INT(v, 0, "\"-0\" parses as 0");
    {
        static const char *const bad[] = {" 5", "5 ", "", "0x10", "2147483648", "-2147483649",
                                          "+", "-", "1.0", "1e3", "++1", "five", "٣"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            CHECK_ERR(blkio_set_str(b, "fd", bad[i]), -EINVAL,
                      "Value must be a signed 32-bit integer", "set_str int \"%s\" rejected",
                      bad[i]);
        blkio_get_int(b, "fd", &v);
        CHECK_INT(v, 0, "rejected strings leave the value alone");
    }
    blkio_set_int(b, "fd", -1);

    /* bool parsing */
    CHECK_OK(blkio_set_str(b, "direct", "true"), "set_str bool \"true\"");
    GET_STR("direct", "true", "bool set from a string");
    CHECK_OK(blkio_set_str(b, "direct", "false"), "set_str bool \"false\"");
    {
        static const char *const bad[] = {"1", "0", "TRUE", "True", " true", "true ", "", "yes",
                                          "on", "t"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            CHECK_ERR(blkio_set_str(b, "read-only", bad[i]), -EINVAL,
                      "Value must be \"true\" or \"false\"", "set_str bool \"%s\" rejected",
                      bad[i]);
    }

    /* uint64 parsing (every io_uring uint64 is read-only, so a good value
     * gets past the parser to -EACCES). */
    {
        static const char *const good[] = {"0", "+5", "18446744073709551615", "007"};
        static const char *const bad[] = {"-1", "-0", "", " 1", "1 ", "0x10",
                                          "18446744073709551616", "1e3", "+-1"};
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
            CHECK_ERR(blkio_set_str(b, "capacity", good[i]), -EACCES, MSG_RO,
                      "set_str uint64 \"%s\" parses", good[i]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            CHECK_ERR(blkio_set_str(b, "capacity", bad[i]), -EINVAL,
                      "Value must be an unsigned 64-bit integer", "set_str uint64 \"%s\" rejected",
                      bad[i]);
    }

    /* str */
    CHECK_OK(blkio_set_str(b, "path", path), "set_str str");
    GET_STR("path", path, "path reads back");
    CHECK_OK(blkio_set_str(b, "path", ""), "set_str empty path");
    GET_STR("path", "", "empty path reads back");
    blkio_set_str(b, "path", path);

    /* After connect: computed values as strings, and num-* from strings. */
    if (blkio_connect(b) == 0) {
        char want[32];
        GET_STR("capacity", "2097152", "capacity as a string");
        GET_STR("can-grow", "true", "can-grow as a string after connect");
        CHECK_OK(blkio_set_str(b, "num-entries", "+16"), "set_str num-entries \"+16\"");
        blkio_get_int(b, "num-entries", &v);
        CHECK_INT(v, 16, "num-entries from a string");
        blkio_get_int(b, "fd", &v);
        snprintf(want, sizeof(want), "%d", v);
        GET_STR("fd", want, "fd as a string after connect");
    }
#undef GET_STR
    blkio_destroy(&b);
}

/* capacity is re-read on every get. */
static void test_capacity_follows_file(void)
{
    const char *path = h_scratch(2 << 20);
    struct blkio *b = h_open(path, NULL);
    uint64_t cap = 0;
    int fd;
    if (!b)
        return;
    blkio_get_uint64(b, "capacity", &cap);
    CHECK_INT(cap, 2 << 20, "capacity of a 2 MiB file");
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && ftruncate(fd, 3 << 20) == 0, "grow the file outside the library");
    blkio_get_uint64(b, "capacity", &cap);
    CHECK_INT(cap, 3 << 20, "capacity follows an outside truncate");
    {
        char buf[1000];
        memset(buf, 0x5a, sizeof(buf));
        CHECK_INT(h_write(blkio_get_queue(b, 0), (4 << 20) + 24, buf, sizeof(buf), 0), 0,
                  "write past the end of the file");
        blkio_get_uint64(b, "capacity", &cap);
        CHECK_INT(cap, (4 << 20) + 1024, "capacity follows a write past the end");
    }
    CHECK(ftruncate(fd, 4096) == 0, "shrink the file outside the library");
    blkio_get_uint64(b, "capacity", &cap);
    CHECK_INT(cap, 4096, "capacity follows a shrink");
    close(fd);
    blkio_destroy(&b);
}

/* read-only and direct reflect a passed fd's flags (docs/contract/properties.md §7). */
static void test_fd_flags(const char *path)
{
    struct {
        int flags;
        bool set_ro, set_direct;
    } cases[] = {
        {O_RDONLY | O_DIRECT, false, false},
        {O_RDWR, true, true},
        {O_RDWR | O_DIRECT, true, false},
        {O_RDONLY, false, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct blkio *b = NULL;
        bool ro = !cases[i].set_ro, direct = !cases[i].set_direct;
        bool want_ro = (cases[i].flags & O_ACCMODE) == O_RDONLY;
        bool want_direct = !!(cases[i].flags & O_DIRECT);
        int fd = open(path, cases[i].flags | O_CLOEXEC);
        if (fd < 0) {
            h_skip("open %s with flags %#x: %s", path, cases[i].flags, strerror(errno));
            continue;
        }
        blkio_create("io_uring", &b);
        blkio_set_bool(b, "read-only", cases[i].set_ro);
        blkio_set_bool(b, "direct", cases[i].set_direct);
        blkio_set_int(b, "fd", fd);
        CHECK_OK(blkio_connect(b), "connect with fd flags %#x", cases[i].flags);
        blkio_get_bool(b, "read-only", &ro);
        blkio_get_bool(b, "direct", &direct);
        CHECK_INT(ro, want_ro, "read-only follows the fd (flags %#x, set %d)", cases[i].flags,
                  cases[i].set_ro);
        CHECK_INT(direct, want_direct, "direct follows the fd (flags %#x, set %d)",
                  cases[i].flags, cases[i].set_direct);
        blkio_destroy(&b);
    }

    /* With path: read-only and direct decide how the file is opened. */
    {
        struct blkio *b = h_instance(path, "read-only=true", false);
        int fd = -1;
        if (b) {
            blkio_get_int(b, "fd", &fd);
            CHECK_INT(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY,
                      "read-only=true opens the path O_RDONLY");
            blkio_destroy(&b);
        }
        b = h_instance(path, "direct=true", false);
        if (b) {
            blkio_get_int(b, "fd", &fd);
            CHECK((fcntl(fd, F_GETFL) & O_DIRECT) != 0, "direct=true opens the path O_DIRECT");
            blkio_destroy(&b);
        }
    }
}

int main(void)
{
    const char *path = h_scratch(2 << 20);

    test_created_state();
    test_connected_values(path, false);
    test_connected_values(path, true);
    test_type_mismatch(path);
    test_read_only(path);
    test_state_errors(path);
    test_strings(path);
    test_capacity_follows_file();
    test_fd_flags(path);
    return h_done();
}
