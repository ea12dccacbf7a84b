/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A first libblkio program: writes a pattern through the io_uring driver to
 * an image file, reads it back, and checks the bytes both through libblkio
 * and with a plain pread(2) of the file.
 *
 *   cc demo.c $(pkg-config --cflags --libs blkio) -o demo
 *   ./demo [IMAGE]
 *
 * Without IMAGE a 1 MiB temporary image is created in $TMPDIR (or /tmp) and
 * removed at the end. Exits 0 when everything read back matches.
 */
#define _GNU_SOURCE
#include <blkio.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMAGE_SIZE (1024 * 1024)
#define IO_OFFSET 65536
#define IO_LEN 65536

static int fail(const char *what, int ret)
{
    fprintf(stderr, "demo: %s failed: %s (%s)\n", what, strerror(-ret),
            blkio_get_error_msg());
    return 1;
}

/* Submits nothing new; waits for exactly one completion on q. */
static int wait_one(struct blkioq *q, const char *what)
{
    struct blkio_completion c;
    int n = blkioq_do_io(q, &c, 1, 1, NULL);

    if (n != 1) {
        return fail(what, n < 0 ? n : -EIO);
    }
    if (c.ret != 0) {
        fprintf(stderr, "demo: %s completed with %s (%s)\n", what,
                strerror(-c.ret), c.error_msg ? c.error_msg : "");
        return 1;
    }
    return 0;
}

static int make_image(char *path, size_t size)
{
    const char *dir = getenv("TMPDIR");
    int fd;

    snprintf(path, 4096, "%s/blkio-demo.XXXXXX", dir && *dir ? dir : "/tmp");
    fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        perror("demo: creating the image");
        return -1;
    }
    close(fd);
    return 0;
}

static int run(const char *path)
{
    struct blkio *b = NULL;
    struct blkio_mem_region region;
    struct blkioq *q;
    uint64_t capacity, align;
    char *driver = NULL;
    unsigned char *buf, *check;
    int ret, fd, i;

    ret = blkio_create("io_uring", &b);
    if (ret < 0) {
        return fail("blkio_create(\"io_uring\")", ret);
    }
    ret = blkio_set_str(b, "path", path);
    if (ret < 0) {
        return fail("setting \"path\"", ret);
    }
    ret = blkio_connect(b);
    if (ret < 0) {
        return fail("blkio_connect", ret);
    }
    if ((ret = blkio_get_str(b, "driver", &driver)) < 0 ||
        (ret = blkio_get_uint64(b, "capacity", &capacity)) < 0 ||
        (ret = blkio_get_uint64(b, "mem-region-alignment", &align)) < 0) {
        return fail("reading properties", ret);
    }
    printf("opened %s with driver %s: capacity %" PRIu64
           " bytes, mem-region-alignment %" PRIu64 "\n",
           path, driver, capacity, align);
    free(driver);

    ret = blkio_start(b);
    if (ret < 0) {
        return fail("blkio_start", ret);
    }
    q = blkio_get_queue(b, 0);

    /* I/O buffers from a memory region, the way QEMU and fio do it. */
    ret = blkio_alloc_mem_region(b, &region, IO_LEN);
    if (ret < 0) {
        return fail("blkio_alloc_mem_region", ret);
    }
    ret = blkio_map_mem_region(b, &region);
    if (ret < 0) {
        return fail("blkio_map_mem_region", ret);
    }
    buf = region.addr;
    for (i = 0; i < IO_LEN; i++) {
        buf[i] = (unsigned char)(i * 7 + 3);
    }

    blkioq_write(q, IO_OFFSET, buf, IO_LEN, NULL, BLKIO_REQ_FUA);
    if (wait_one(q, "write")) {
        return 1;
    }
    printf("wrote %d bytes of pattern at offset %d (FUA)\n", IO_LEN, IO_OFFSET);

    memset(buf, 0, IO_LEN);
    blkioq_read(q, IO_OFFSET, buf, IO_LEN, NULL, 0);
    if (wait_one(q, "read")) {
        return 1;
    }
    for (i = 0; i < IO_LEN; i++) {
        if (buf[i] != (unsigned char)(i * 7 + 3)) {
            fprintf(stderr, "demo: byte %d read back as %u\n", i, buf[i]);
            return 1;
        }
    }
    printf("read %d bytes back through libblkio: pattern matches\n", IO_LEN);

    /* Independent check: the bytes are in the file itself. */
    check = malloc(IO_LEN);
    fd = open(path, O_RDONLY);
    if (!check || fd < 0 || pread(fd, check, IO_LEN, IO_OFFSET) != IO_LEN ||
        memcmp(check, buf, IO_LEN) != 0) {
        fprintf(stderr, "demo: pread(2) of %s does not show the pattern\n", path);
        return 1;
    }
    close(fd);
    free(check);
    printf("pread(2) of the image shows the same bytes\n");

    blkio_unmap_mem_region(b, &region);
    blkio_free_mem_region(b, &region);
    blkio_destroy(&b);
    return 0;
}

int main(int argc, char **argv)
{
    char tmp[4096];
    const char *path = argc > 1 ? argv[1] : NULL;
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 2) {
        fprintf(stderr, "usage: %s [IMAGE]\n", argv[0]);
        return 2;
    }
    if (!path) {
        if (make_image(tmp, IMAGE_SIZE) < 0) {
            return 1;
        }
        path = tmp;
        printf("created a %d KiB temporary image %s\n", IMAGE_SIZE / 1024, path);
    }
    ret = run(path);
    if (path == tmp) {
        unlink(tmp);
    }
    printf(ret == 0 ? "demo: success\n" : "demo: FAILED\n");
    return ret;
}
