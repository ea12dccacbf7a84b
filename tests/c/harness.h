/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Tiny test harness for the C test programs (tests/c/test_*.c).
 *
 * Every check prints one line, "ok - <description>" or
 * "not ok - <description>: <details>"; missing prerequisites print
 * "skip - <why>". h_done() prints a summary comment and returns the exit
 * status (non-zero when a check failed).
 *
 * Helpers: scratch files in $BLKIO_TEST_DIR (default /tmp) and
 * $BLKIO_TEST_TMPFS (only if set), offset-based data patterns, and
 * h_open(), which creates, configures, connects and starts an io_uring
 * instance (h_driver_instance() for any driver).
 *
 * Header-only; include it once per program, after defining _GNU_SOURCE.
 */
#ifndef BLKIO_TEST_HARNESS_H
#define BLKIO_TEST_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkio.h"

/* Every helper is static and may be unused by a given program. */
#define H_FN static __attribute__((unused))

static unsigned h_checks, h_failures;

H_FN void h_vreport(bool ok, const char *details, const char *fmt, va_list ap)
{
    h_checks++;
    if (!ok)
        h_failures++;
    fputs(ok ? "ok - " : "not ok - ", stdout);
    vprintf(fmt, ap);
    if (!ok && details)
        printf(": %s", details);
    putchar('\n');
    fflush(stdout);
}

H_FN bool h_report(bool ok, const char *details, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
H_FN bool h_report(bool ok, const char *details, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    h_vreport(ok, details, fmt, ap);
    va_end(ap);
    return ok;
}

/* CHECK(cond, fmt, ...): the failure details are the condition's text and
 * the source line. Evaluates to the outcome. */
#define CHECK(cond, ...)                                                       \
    h_report(!!(cond), "failed: " #cond " at " __FILE__ ":" H_STR(__LINE__),   \
             __VA_ARGS__)
#define H_STR(x) H_STR2(x)
#define H_STR2(x) #x

/* CHECK_INT(actual, expected, fmt, ...): integers, details show both. */
#define CHECK_INT(actual, expected, ...)                                       \
    h_check_int((long long)(actual), (long long)(expected), __LINE__,          \
                __VA_ARGS__)
H_FN bool h_check_int(long long got, long long want, int line,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
H_FN bool h_check_int(long long got, long long want, int line,
                        const char *fmt, ...)
{
    char details[160];
    va_list ap;
    snprintf(details, sizeof(details), "got %lld, expected %lld (line %d)",
             got, want, line);
    va_start(ap, fmt);
    h_vreport(got == want, details, fmt, ap);
    va_end(ap);
    return got == want;
}

/* CHECK_STR(actual, expected, fmt, ...): NUL-terminated strings (NULL ok). */
#define CHECK_STR(actual, expected, ...)                                       \
    h_check_str((actual), (expected), __LINE__, __VA_ARGS__)
H_FN bool h_check_str(const char *got, const char *want, int line,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
H_FN bool h_check_str(const char *got, const char *want, int line,
                        const char *fmt, ...)
{
    char details[640];
    bool ok = got && want ? strcmp(got, want) == 0 : got == want;
    va_list ap;
    snprintf(details, sizeof(details), "got \"%.250s\", expected \"%.250s\" (line %d)",
             got ? got : "(null)", want ? want : "(null)", line);
    va_start(ap, fmt);
    h_vreport(ok, details, fmt, ap);
    va_end(ap);
    return ok;
}

/* CHECK_ERR(ret, -ERRNO, "message", fmt, ...): a failed call's return value
 * and blkio_get_error_msg(). A NULL message only checks the return value. */
#define CHECK_ERR(ret, want_ret, want_msg, ...)                                \
    h_check_err((ret), (want_ret), (want_msg), __LINE__, __VA_ARGS__)
H_FN bool h_check_err(int got, int want, const char *want_msg, int line,
                        const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
H_FN bool h_check_err(int got, int want, const char *want_msg, int line,
                        const char *fmt, ...)
{
    const char *msg = blkio_get_error_msg();
    bool ok = got == want && (!want_msg || strcmp(msg, want_msg) == 0);
    char details[700];
    va_list ap;
    snprintf(details, sizeof(details),
             "got %d \"%.250s\", expected %d \"%.250s\" (line %d)", got, msg,
             want, want_msg ? want_msg : "*", line);
    va_start(ap, fmt);
    h_vreport(ok, details, fmt, ap);
    va_end(ap);
    return ok;
}

/* CHECK_OK(ret, fmt, ...): an int-returning API call succeeded (ret == 0). */
#define CHECK_OK(ret, ...) h_check_err((ret), 0, NULL, __LINE__, __VA_ARGS__)

/* CHECK_REQ(ret, msg, want_ret, want_msg, ...): a completion's ret and
 * error_msg (want_msg NULL: the message must be NULL; "*": any). `ret` is
 * evaluated first, so it may be the call that sets `msg`. */
static int h_req_ret __attribute__((unused));
#define CHECK_REQ(ret, msg, want_ret, want_msg, ...)                           \
    (h_req_ret = (ret),                                                        \
     h_check_req(h_req_ret, (msg), (want_ret), (want_msg), __LINE__, __VA_ARGS__))
H_FN bool h_check_req(int got, const char *msg, int want, const char *want_msg, int line,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
H_FN bool h_check_req(int got, const char *msg, int want, const char *want_msg, int line,
                      const char *fmt, ...)
{
    bool msg_ok = want_msg == NULL ? msg == NULL
                  : strcmp(want_msg, "*") == 0 ? true
                  : msg && strcmp(msg, want_msg) == 0;
    bool ok = got == want && msg_ok;
    char details[700];
    va_list ap;
    snprintf(details, sizeof(details), "got %d \"%.250s\", expected %d \"%.250s\" (line %d)",
             got, msg ? msg : "(null)", want, want_msg ? want_msg : "(null)", line);
    va_start(ap, fmt);
    h_vreport(ok, details, fmt, ap);
    va_end(ap);
    return ok;
}

H_FN void h_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
H_FN void h_skip(const char *fmt, ...)
{
    va_list ap;
    fputs("skip - ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Ends the program: summary line and exit status. */
H_FN int h_done(void)
{
    printf("# %u checks, %u failed\n", h_checks, h_failures);
    return h_failures ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * Scratch files */

#define H_MAX_TMP 64
static char *h_tmp_paths[H_MAX_TMP];
static int h_tmp_count;

H_FN void h_cleanup(void)
{
    for (int i = 0; i < h_tmp_count; i++) {
        unlink(h_tmp_paths[i]);
        free(h_tmp_paths[i]);
    }
    h_tmp_count = 0;
}

/* $BLKIO_TEST_DIR, or /tmp. */
H_FN const char *h_test_dir(void)
{
    const char *d = getenv("BLKIO_TEST_DIR");
    return d && *d ? d : "/tmp";
}

/* $BLKIO_TEST_TMPFS, or NULL when unset. */
H_FN const char *h_tmpfs_dir(void)
{
    const char *d = getenv("BLKIO_TEST_TMPFS");
    return d && *d ? d : NULL;
}

/* Creates a file of `size` bytes (a hole) in `dir` that is removed at exit.
 * Returns its path (owned by the harness) or NULL. */
H_FN const char *h_tmpfile(const char *dir, off_t size)
{
    char path[4096];
    int fd;
    if (h_tmp_count == H_MAX_TMP)
        return NULL;
    snprintf(path, sizeof(path), "%s/blkio-test-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, size) < 0) {
        close(fd);
        unlink(path);
        return NULL;
    }
    close(fd);
    if (h_tmp_count == 0)
        atexit(h_cleanup);
    h_tmp_paths[h_tmp_count++] = strdup(path);
    return h_tmp_paths[h_tmp_count - 1];
}

/* A scratch file in $BLKIO_TEST_DIR; aborts the program if that fails. */
H_FN const char *h_scratch(off_t size)
{
    const char *p = h_tmpfile(h_test_dir(), size);
    if (!p) {
        printf("not ok - create a scratch file in %s: %s\n", h_test_dir(),
               strerror(errno));
        exit(1);
    }
    return p;
}

/* Size of a file in bytes, or -1. */
H_FN long long h_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* ------------------------------------------------------------------------
 * Data patterns: the byte at absolute file offset `off` for `seed`. Data
 * written at any offset can be verified however it is split up. */

static inline uint8_t h_pattern_byte(uint64_t off, uint32_t seed)
{
    uint64_t x = (off + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)seed * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 32);
}

H_FN void h_fill(void *buf, size_t len, uint64_t off, uint32_t seed)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = h_pattern_byte(off + i, seed);
}

/* Index of the first byte that differs from the pattern, or -1. */
H_FN long long h_verify(const void *buf, size_t len, uint64_t off, uint32_t seed)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != h_pattern_byte(off + i, seed))
            return (long long)i;
    return -1;
}

/* Index of the first byte that is not `value`, or -1. */
H_FN long long h_verify_byte(const void *buf, size_t len, uint8_t value)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != value)
            return (long long)i;
    return -1;
}

/* Verifies `len` bytes of the file at `off` against the pattern with
 * pread (through the page cache, independent of the library). Returns the
 * first mismatching index, -1 when all match, -2 on a short read. */
H_FN long long h_verify_file(const char *path, uint64_t off, size_t len, uint32_t seed)
{
    long long bad;
    uint8_t *buf = malloc(len ? len : 1);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? pread(fd, buf, len, (off_t)off) : -1;
    if (fd >= 0)
        close(fd);
    bad = n == (ssize_t)len ? h_verify(buf, len, off, seed) : -2;
    free(buf);
    return bad;
}

/* Writes the pattern into the file with pwrite (setup, not under test). */
H_FN bool h_write_file(const char *path, uint64_t off, size_t len, uint32_t seed)
{
    uint8_t *buf = malloc(len ? len : 1);
    int fd = open(path, O_WRONLY);
    ssize_t n = -1;
    h_fill(buf, len, off, seed);
    if (fd >= 0) {
        n = pwrite(fd, buf, len, (off_t)off);
        if (fdatasync(fd) < 0)
            n = -1;
        close(fd);
    }
    free(buf);
    return n == (ssize_t)len;
}

/* ------------------------------------------------------------------------
 * Instances */

/* Creates a `driver` instance and sets "path" (if not NULL) plus the
 * comma-separated "name=value" options (each with blkio_set_str, before
 * connect for path/fd/read-only/direct, between connect and start for the
 * rest).
 * With `start` false the instance is only connected. Reports a failed
 * check and returns NULL on any error. */
H_FN struct blkio *h_driver_instance(const char *driver, const char *path, const char *options,
                                     bool start)
{
    static const char *const early[] = {"path", "fd", "read-only", "direct"};
    struct blkio *b = NULL;
    char opts[512];
    int ret = blkio_create(driver, &b);
    if (ret < 0) {
        h_report(false, blkio_get_error_msg(), "create %s instance", driver);
        return NULL;
    }
    if (path && (ret = blkio_set_str(b, "path", path)) < 0)
        goto fail;
    for (int pass = 0; pass < 2; pass++) {
        char *save = NULL;
        snprintf(opts, sizeof(opts), "%s", options ? options : "");
        for (char *kv = strtok_r(opts, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            bool is_early = false;
            if (!eq) {
                h_report(false, kv, "option syntax is name=value");
                goto fail_quiet;
            }
            *eq = '\0';
            for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++)
                is_early |= strcmp(kv, early[i]) == 0;
            if (is_early != (pass == 0))
                continue;
            if ((ret = blkio_set_str(b, kv, eq + 1)) < 0)
                goto fail;
        }
        if (pass == 0 && (ret = blkio_connect(b)) < 0)
            goto fail;
    }
    if (start && (ret = blkio_start(b)) < 0)
        goto fail;
    return b;
fail:
    {
        char details[400];
        snprintf(details, sizeof(details), "%d %s", ret, blkio_get_error_msg());
        h_report(false, details, "set up %s on %s with \"%s\"", driver,
                 path ? path : "(fd)", options ? options : "");
    }
fail_quiet:
    blkio_destroy(&b);
    return NULL;
}

/* An io_uring instance (see h_driver_instance). */
H_FN struct blkio *h_instance(const char *path, const char *options, bool start)
{
    return h_driver_instance("io_uring", path, options, start);
}

/* A started instance (see h_instance). */
H_FN struct blkio *h_open(const char *path, const char *options)
{
    return h_instance(path, options, true);
}

/* Waits for exactly one completion (no timeout) and returns its `ret`, or
 * the negative do_io result. `c` may be NULL. */
H_FN int h_wait1(struct blkioq *q, struct blkio_completion *c)
{
    struct blkio_completion tmp;
    int n = blkioq_do_io(q, c ? c : &tmp, 1, 1, NULL);
    if (n < 0)
        return n;
    if (n != 1)
        return -1000;
    return (c ? c : &tmp)->ret;
}

/* Synchronous wrappers: submit one request and wait for it. */
H_FN int h_read(struct blkioq *q, uint64_t off, void *buf, size_t len)
{
    blkioq_read(q, off, buf, len, NULL, 0);
    return h_wait1(q, NULL);
}

H_FN int h_write(struct blkioq *q, uint64_t off, const void *buf, size_t len, uint32_t flags)
{
    blkioq_write(q, off, buf, len, NULL, flags);
    return h_wait1(q, NULL);
}

/* Number of open file descriptors of this process (for leak checks). */
H_FN int h_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

H_FN bool h_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

#endif /* BLKIO_TEST_HARNESS_H */
