/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The "x.properties" introspection property (docs/introspection.md): a
 * read-only str whose value lists every property of the driver as
 * "NAME TYPE ACCESS" lines; it is not itself one of the driver's properties.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

/* The line for `name` in `table` ("name type access"), copied to `out`. */
static bool find_line(const char *table, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *l = table; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, name, n) == 0 && l[n] == ' ') {
            const char *end = strchr(l, '\n');
            size_t len = end ? (size_t)(end - l) : strlen(l);
            if (len >= outlen)
                len = outlen - 1;
            memcpy(out, l, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Every listed property can be read with its listed type's getter (or
 * fails with a state error), and a wrong-type getter gives -ENOTTY. */
static void check_types(struct blkio *b, const char *table, const char *state)
{
    char line[256];
    int bad = 0, lines = 0;
    const char *l = table;
    while (*l) {
        const char *end = strchr(l, '\n');
        char name[128], type[16], access[32];
        size_t len = end ? (size_t)(end - l) : strlen(l);
        int ret;
        if (len >= sizeof(line))
            len = sizeof(line) - 1;
        memcpy(line, l, len);
        line[len] = '\0';
        lines++;
        if (sscanf(line, "%127s %15s %31s", name, type, access) != 3) {
            h_report(false, line, "%s: line has three fields", state);
            return;
        }
        if (strcmp(type, "bool") == 0) {
            bool v;
            ret = blkio_get_bool(b, name, &v);
        } else if (strcmp(type, "int") == 0) {
            int v;
            ret = blkio_get_int(b, name, &v);
        } else if (strcmp(type, "uint64") == 0) {
            uint64_t v;
            ret = blkio_get_uint64(b, name, &v);
        } else if (strcmp(type, "str") == 0) {
            char *v = NULL;
            ret = blkio_get_str(b, name, &v);
            free(v);
        } else {
            ret = -1000;
        }
        if (ret != 0 && ret != -ENODEV) {
            h_report(false, line, "%s: typed getter of the listed type", state);
            bad++;
        }
        if (strcmp(access, "r") != 0 && strcmp(access, "rw:created") != 0 &&
            strcmp(access, "rw:connected") != 0) {
            h_report(false, line, "%s: access is r, rw:created or rw:connected", state);
            bad++;
        }
        l = end ? end + 1 : l + len;
    }
    CHECK(bad == 0 && lines == 32, "%s: all %d listed properties have a valid type and access",
          state, lines);
}

int main(void)
{
    struct blkio *b = NULL;
    char *table = NULL, *again = NULL;
    char line[256];
    const char *path = h_scratch(1 << 20);
    int v;

    if (!CHECK_OK(blkio_create("io_uring", &b), "create io_uring"))
        return h_done();

    CHECK_OK(blkio_get_str(b, "x.properties", &table), "read x.properties in created state");
    if (!table)
        return h_done();
    CHECK_INT(count_lines(table), 32, "io_uring lists its 32 properties");
    CHECK(table[strlen(table) - 1] == '\n', "every line ends in a newline");
    CHECK(find_line(table, "path", line, sizeof(line)) && strcmp(line, "path str rw:created") == 0,
          "path is listed as \"path str rw:created\"");
    CHECK(find_line(table, "num-queues", line, sizeof(line)) &&
              strcmp(line, "num-queues int rw:connected") == 0,
          "num-queues is listed as \"num-queues int rw:connected\"");
    CHECK(find_line(table, "capacity", line, sizeof(line)) &&
              strcmp(line, "capacity uint64 r") == 0,
          "capacity is listed as \"capacity uint64 r\"");
    CHECK(find_line(table, "direct", line, sizeof(line)) &&
              strcmp(line, "direct bool rw:created") == 0,
          "direct is listed as \"direct bool rw:created\"");
    CHECK(!find_line(table, "x.properties", line, sizeof(line)),
          "x.properties does not list itself");
    CHECK(!find_line(table, "queue-size", line, sizeof(line)),
          "a virtio-only property is not listed for io_uring");
    check_types(b, table, "created");

    /* It behaves like a read-only str property. */
    CHECK_ERR(blkio_get_int(b, "x.properties", &v), -ENOTTY, "Property is not an int",
              "blkio_get_int on x.properties");
    CHECK_ERR(blkio_set_str(b, "x.properties", "a"), -EACCES, "Property is read-only",
              "blkio_set_str on x.properties");
    CHECK_ERR(blkio_set_bool(b, "x.properties", true), -ENOTTY, "Property is not a bool",
              "blkio_set_bool on x.properties");
    CHECK_ERR(blkio_get_str(b, "x-properties", &again), -ENOENT, "Unknown property name",
              "x-properties is an ordinary unknown name");

    /* Same table after connect and start; the property counts are unchanged. */
    CHECK_OK(blkio_set_str(b, "path", path), "set path");
    CHECK_OK(blkio_connect(b), "connect");
    CHECK_OK(blkio_get_str(b, "x.properties", &again), "read x.properties when connected");
    CHECK_STR(again, table, "table is the same when connected");
    free(again);
    again = NULL;
    check_types(b, table, "connected");
    CHECK_OK(blkio_start(b), "start");
    CHECK_OK(blkio_get_str(b, "x.properties", &again), "read x.properties when started");
    CHECK_STR(again, table, "table is the same when started");
    free(again);

    free(table);
    blkio_destroy(&b);
    return h_done();
}
