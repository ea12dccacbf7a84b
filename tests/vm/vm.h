/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Helpers for the tests that run inside the vmtest guest (tests/vm/run.sh):
 * device paths from the VMTEST_* environment, sysfs attributes of block
 * devices, aligned buffers, independent O_DIRECT access to block devices,
 * and waiting with a timeout so that a broken driver fails a check instead
 * of hanging the guest. Instances come from h_driver_instance().
 *
 * Include after tests/c/harness.h.
 */
#ifndef BLKIO_VM_H
#define BLKIO_VM_H

#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <sys/uio.h>
#include <time.h>

/* Seconds a test waits for completions before reporting a failure (TCG is
 * slow, but nothing here needs more than a fraction of this). */
#define VM_TIMEOUT_S 60

/* The value of a VMTEST_* variable, or NULL (with a skip line) if unset. */
H_FN const char *vm_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        h_skip("%s is not set (not running in the vmtest guest?)", name);
        return NULL;
    }
    return v;
}

/* Reads /sys/class/block/<basename of dev>/<attr> into buf; false if
 * missing. */
H_FN bool vm_sysfs_str(const char *dev, const char *attr, char *buf, size_t len)
{
    char path[512], copy[256];
    FILE *f;
    snprintf(copy, sizeof(copy), "%s", dev);
    snprintf(path, sizeof(path), "/sys/class/block/%s/%s", basename(copy), attr);
    f = fopen(path, "r");
    if (!f)
        return false;
    if (!fgets(buf, (int)len, f)) {
        fclose(f);
        return false;
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return true;
}

/* A numeric sysfs attribute, or -1. */
H_FN long long vm_sysfs(const char *dev, const char *attr)
{
    char buf[64];
    return vm_sysfs_str(dev, attr, buf, sizeof(buf)) ? strtoll(buf, NULL, 10) : -1;
}

/* A zeroed buffer aligned to 4096 bytes (freed by the caller). */
H_FN void *vm_alloc(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1) != 0) {
        printf("not ok - allocate %zu bytes\n", len);
        exit(1);
    }
    memset(p, 0, len ? len : 1);
    return p;
}

/* Waits for `n` completions (all of them, in any order) with a timeout.
 * Returns the do_io result (n on success). */
H_FN int vm_wait(struct blkioq *q, struct blkio_completion *c, int n)
{
    struct timespec t = {VM_TIMEOUT_S, 0};
    int got = 0;
    while (got < n) {
        int r = blkioq_do_io(q, c + got, n - got, n - got, &t);
        if (r < 0)
            return r;
        got += r;
    }
    return got;
}

/* Waits for one completion; returns its ret (or the do_io error) and
 * stores the message in *msg if msg is not NULL. */
H_FN int vm_wait1(struct blkioq *q, const char **msg)
{
    struct blkio_completion c;
    int r = vm_wait(q, &c, 1);
    if (msg)
        *msg = r < 0 ? blkio_get_error_msg() : c.error_msg;
    return r < 0 ? r : c.ret;
}

/* Independent access to a block device with O_DIRECT (buffers from
 * vm_alloc, offsets and lengths aligned to its logical block size).
 * Returns true when the whole range was transferred. */
H_FN bool vm_direct_io(const char *dev, bool write, uint64_t off, void *buf, size_t len)
{
    int fd = open(dev, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
    ssize_t n;
    if (fd < 0)
        return false;
    n = write ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
    if (write && n == (ssize_t)len && fdatasync(fd) < 0)
        n = -1;
    close(fd);
    return n == (ssize_t)len;
}

/* Verifies `len` bytes at `off` of `dev` against the pattern `seed`
 * (seed 0 with `zero`: against zeroes). -1 = all match, -2 = I/O failed,
 * else the first bad index. */
H_FN long long vm_verify_dev(const char *dev, uint64_t off, size_t len, uint32_t seed, bool zero)
{
    uint8_t *buf = vm_alloc(len);
    long long bad = -2;
    if (vm_direct_io(dev, false, off, buf, len))
        bad = zero ? h_verify_byte(buf, len, 0) : h_verify(buf, len, off, seed);
    free(buf);
    return bad;
}

/* Fills `len` bytes at `off` of `dev` with the pattern (setup). */
H_FN bool vm_fill_dev(const char *dev, uint64_t off, size_t len, uint32_t seed)
{
    uint8_t *buf = vm_alloc(len);
    bool ok;
    h_fill(buf, len, off, seed);
    ok = vm_direct_io(dev, true, off, buf, len);
    free(buf);
    return ok;
}

/* Typed property getters that report failures and return a sentinel. */
H_FN long long vm_get_int(struct blkio *b, const char *name)
{
    int v = -12345;
    if (blkio_get_int(b, name, &v) < 0)
        h_report(false, blkio_get_error_msg(), "get int %s", name);
    return v;
}

H_FN long long vm_get_u64(struct blkio *b, const char *name)
{
    uint64_t v = 0xdeadbeef;
    if (blkio_get_uint64(b, name, &v) < 0)
        h_report(false, blkio_get_error_msg(), "get uint64 %s", name);
    return (long long)v;
}

H_FN int vm_get_bool(struct blkio *b, const char *name)
{
    bool v = false;
    if (blkio_get_bool(b, name, &v) < 0) {
        h_report(false, blkio_get_error_msg(), "get bool %s", name);
        return -1;
    }
    return v;
}

#endif /* BLKIO_VM_H */
