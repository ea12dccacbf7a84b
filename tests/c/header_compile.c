/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * blkio.h on its own: it must compile as strict C99
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic
 * and, through header_compile.cpp, as C++11
 *   g++ -std=c++11 -Wall -Wextra -Werror -pedantic
 * with nothing included before it. Every function is assigned to a pointer of
 * the exact type of docs/contract/abi.md §2.1, so a prototype that differs from the spec is
 * a compile error, and the program links every one of them against
 * libblkio (in C++ that also proves the extern "C" wrapper).
 */
#include "blkio.h"

#include <stdio.h>

typedef void (*any_fn)(void);

struct api_fn {
    const char *name;
    any_fn fn;
};

/* A pointer of the spec's type, initialised without a cast, then stored. */
#define API(ret, name, params)                                                 \
    static ret(*const name##_ptr) params = name;
#define ENTRY(ret, name, params) {#name, (any_fn)name##_ptr},

#define ABI_FUNCTIONS(X)                                                       \
    X(const char *, blkio_get_error_msg, (void))                               \
    X(int, blkio_create, (const char *driver, struct blkio **bp))              \
    X(int, blkio_connect, (struct blkio *b))                                   \
    X(int, blkio_start, (struct blkio *b))                                     \
    X(void, blkio_destroy, (struct blkio **bp))                                \
    X(int, blkio_get_bool, (struct blkio *b, const char *name, bool *value))   \
    X(int, blkio_get_int, (struct blkio *b, const char *name, int *value))     \
    X(int, blkio_get_uint64, (struct blkio *b, const char *name, uint64_t *value)) \
    X(int, blkio_get_str, (struct blkio *b, const char *name, char **value))   \
    X(int, blkio_set_bool, (struct blkio *b, const char *name, bool value))    \
    X(int, blkio_set_int, (struct blkio *b, const char *name, int value))      \
    X(int, blkio_set_uint64, (struct blkio *b, const char *name, uint64_t value)) \
    X(int, blkio_set_str, (struct blkio *b, const char *name, const char *value)) \
    X(int, blkio_alloc_mem_region,                                             \
      (struct blkio *b, struct blkio_mem_region *region, size_t len))          \
    X(void, blkio_free_mem_region,                                             \
      (struct blkio *b, const struct blkio_mem_region *region))                \
    X(int, blkio_map_mem_region,                                               \
      (struct blkio *b, const struct blkio_mem_region *region))                \
    X(void, blkio_unmap_mem_region,                                            \
      (struct blkio *b, const struct blkio_mem_region *region))                \
    X(struct blkioq *, blkio_get_queue, (struct blkio *b, int index))          \
    X(struct blkioq *, blkio_get_poll_queue, (struct blkio *b, int index))     \
    X(int, blkio_add_queue, (struct blkio *b))                                 \
    X(int, blkio_add_poll_queue, (struct blkio *b))                            \
    X(int, blkio_remove_queue, (struct blkio *b, int index))                   \
    X(int, blkio_remove_poll_queue, (struct blkio *b, int index))              \
    X(void, blkioq_read,                                                       \
      (struct blkioq *q, uint64_t start, void *buf, size_t len,                \
       void *user_data, uint32_t flags))                                       \
    X(void, blkioq_write,                                                      \
      (struct blkioq *q, uint64_t start, const void *buf, size_t len,          \
       void *user_data, uint32_t flags))                                       \
    X(void, blkioq_readv,                                                      \
      (struct blkioq *q, uint64_t start, const struct iovec *iovec,            \
       int iovcnt, void *user_data, uint32_t flags))                           \
    X(void, blkioq_writev,                                                     \
      (struct blkioq *q, uint64_t start, struct iovec *iovec, int iovcnt,      \
       void *user_data, uint32_t flags))                                       \
    X(void, blkioq_write_zeroes,                                               \
      (struct blkioq *q, uint64_t start, uint64_t len, void *user_data,        \
       uint32_t flags))                                                        \
    X(void, blkioq_discard,                                                    \
      (struct blkioq *q, uint64_t start, uint64_t len, void *user_data,        \
       uint32_t flags))                                                        \
    X(void, blkioq_flush, (struct blkioq *q, void *user_data, uint32_t flags)) \
    X(void, blkioq_report_zones,                                               \
      (struct blkioq *q, uint64_t offset, struct blkio_zone *zones,            \
       uint32_t nr_zones, void *user_data, uint32_t flags))                    \
    X(void, blkioq_close_zone,                                                 \
      (struct blkioq *q, uint64_t offset, void *user_data, uint32_t flags))    \
    X(void, blkioq_finish_zone,                                                \
      (struct blkioq *q, uint64_t offset, void *user_data, uint32_t flags))    \
    X(void, blkioq_open_zone,                                                  \
      (struct blkioq *q, uint64_t offset, void *user_data, uint32_t flags))    \
    X(void, blkioq_reset_zone,                                                 \
      (struct blkioq *q, uint64_t offset, void *user_data, uint32_t flags))    \
    X(void, blkioq_close_all_zones,                                            \
      (struct blkioq *q, void *user_data, uint32_t flags))                     \
    X(void, blkioq_finish_all_zones,                                           \
      (struct blkioq *q, void *user_data, uint32_t flags))                     \
    X(void, blkioq_open_all_zones,                                             \
      (struct blkioq *q, void *user_data, uint32_t flags))                     \
    X(void, blkioq_reset_all_zones,                                            \
      (struct blkioq *q, void *user_data, uint32_t flags))                     \
    X(int, blkioq_do_io,                                                       \
      (struct blkioq *q, struct blkio_completion *completions,                 \
       int min_completions, int max_completions, struct timespec *timeout))    \
    X(int, blkioq_do_io_interruptible,                                         \
      (struct blkioq *q, struct blkio_completion *completions,                 \
       int min_completions, int max_completions, struct timespec *timeout,     \
       const sigset_t *sig))                                                   \
    X(int, blkioq_get_completion_fd, (struct blkioq *q))                       \
    X(void, blkioq_set_completion_fd_enabled, (struct blkioq *q, bool enable))

ABI_FUNCTIONS(API)

static const struct api_fn functions[] = {ABI_FUNCTIONS(ENTRY)};

/* The enum constants are usable as request flags and zone values. */
static const uint32_t flags = BLKIO_REQ_FUA | BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK;
static const uint8_t zone_values[] = {
    BLKIO_ZONE_TYPE_CONVENTIONAL, BLKIO_ZONE_TYPE_SEQWRITE_REQ,
    BLKIO_ZONE_TYPE_SEQWRITE_PREF, BLKIO_ZONE_STATE_EMPTY,
    BLKIO_ZONE_STATE_IMP_OPEN, BLKIO_ZONE_STATE_EXP_OPEN,
    BLKIO_ZONE_STATE_CLOSED, BLKIO_ZONE_STATE_READONLY,
    BLKIO_ZONE_STATE_FULL, BLKIO_ZONE_STATE_OFFLINE,
};

#ifdef __cplusplus
#define LANGUAGE "C++"
#else
#define LANGUAGE "C"
#endif

int main(void)
{
    const size_t n = sizeof(functions) / sizeof(functions[0]);
    size_t i, linked = 0;

    for (i = 0; i < n; i++) {
        linked += functions[i].fn != NULL;
    }
    if (n != 43 || linked != n || flags != 7 || sizeof(zone_values) != 10) {
        printf("not ok - blkio.h in " LANGUAGE ": %u of %u functions linked"
               " (43 expected)\n", (unsigned)linked, (unsigned)n);
        return 1;
    }
    printf("ok - blkio.h in " LANGUAGE ": all 43 functions have the docs/contract/abi.md"
           " prototypes and link against libblkio\n");
    return 0;
}
