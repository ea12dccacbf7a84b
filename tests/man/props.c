/* Prints every property of every driver's registry, one per line:
 * "DRIVER NAME TYPE ACCESS", read from the x.properties property of a
 * freshly created instance (docs/introspection.md). Used by
 * tests/man/run.sh to check that blkio(3) documents each of them. */
#include <blkio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const drivers[] = {
    "io_uring",
    "nvme-io_uring",
    "virtio-blk-vfio-pci",
    "virtio-blk-vhost-user",
    "virtio-blk-vhost-vdpa",
};

int main(void)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        struct blkio *b = NULL;
        char *table = NULL;
        int ret = blkio_create(drivers[i], &b);

        if (ret < 0) {
            fprintf(stderr, "blkio_create(%s): %s\n", drivers[i], strerror(-ret));
            return 1;
        }
        ret = blkio_get_str(b, "x.properties", &table);
        if (ret < 0) {
            fprintf(stderr, "%s: x.properties: %s\n", drivers[i], strerror(-ret));
            blkio_destroy(&b);
            return 1;
        }
        for (char *line = strtok(table, "\n"); line; line = strtok(NULL, "\n")) {
            printf("%s %s\n", drivers[i], line);
        }
        free(table);
        blkio_destroy(&b);
    }
    return 0;
}
