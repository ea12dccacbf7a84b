/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The binary layout of blkio.h as programs compiled against upstream's
 * header see it: sizes, alignments and field offsets of the three public
 * structs (docs/contract/abi.md §2.2) and the values of the enum constants (§2.3).
 * Needs only the header; tests/run.sh compiles and runs it.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <signal.h>
#include <stdalign.h>
#include <sys/uio.h>
#include <time.h>

/* Offset and size of one field, checked against the spec's table. */
#define FIELD(type, field, off, size)                                          \
    do {                                                                       \
        CHECK_INT(offsetof(struct type, field), off,                           \
                  "offsetof(struct " #type ", " #field ") == " #off);          \
        CHECK_INT(sizeof(((struct type *)0)->field), size,                     \
                  "size of " #type "." #field " == " #size);                   \
    } while (0)

#define LAYOUT(type, size, align)                                              \
    do {                                                                       \
        CHECK_INT(sizeof(struct type), size, "sizeof(struct " #type ") == " #size); \
        CHECK_INT(alignof(struct type), align,                                 \
                  "alignof(struct " #type ") == " #align);                     \
    } while (0)

#define CONSTANT(name, value) CHECK_INT(name, value, #name " == " #value)

/* The enums are anonymous, so their constants have type int. */
#define INT_CONSTANT(name)                                                     \
    CHECK_INT(sizeof(name), sizeof(int), "sizeof(" #name ") == sizeof(int)")

int main(void)
{
    LAYOUT(blkio_mem_region, 40, 8);
    FIELD(blkio_mem_region, addr, 0, 8);
    FIELD(blkio_mem_region, len, 8, 8);
    FIELD(blkio_mem_region, iova, 16, 8);
    FIELD(blkio_mem_region, fd_offset, 24, 8);
    FIELD(blkio_mem_region, fd, 32, 4);
    FIELD(blkio_mem_region, flags, 36, 4);

    LAYOUT(blkio_completion, 32, 8);
    FIELD(blkio_completion, user_data, 0, 8);
    FIELD(blkio_completion, error_msg, 8, 8);
    FIELD(blkio_completion, ret, 16, 4);
    FIELD(blkio_completion, reserved_, 20, 12);

    LAYOUT(blkio_zone, 64, 8);
    FIELD(blkio_zone, start, 0, 8);
    FIELD(blkio_zone, len, 8, 8);
    FIELD(blkio_zone, capacity, 16, 8);
    FIELD(blkio_zone, write_pointer, 24, 8);
    FIELD(blkio_zone, zone_type, 32, 1);
    FIELD(blkio_zone, zone_state, 33, 1);
    FIELD(blkio_zone, reset, 34, 1);
    FIELD(blkio_zone, reserved_, 35, 29);

    CONSTANT(BLKIO_REQ_FUA, 1);
    CONSTANT(BLKIO_REQ_NO_UNMAP, 2);
    CONSTANT(BLKIO_REQ_NO_FALLBACK, 4);
    CONSTANT(BLKIO_ZONE_TYPE_CONVENTIONAL, 0x1);
    CONSTANT(BLKIO_ZONE_TYPE_SEQWRITE_REQ, 0x2);
    CONSTANT(BLKIO_ZONE_TYPE_SEQWRITE_PREF, 0x3);
    CONSTANT(BLKIO_ZONE_STATE_EMPTY, 0x1);
    CONSTANT(BLKIO_ZONE_STATE_IMP_OPEN, 0x2);
    CONSTANT(BLKIO_ZONE_STATE_EXP_OPEN, 0x3);
    CONSTANT(BLKIO_ZONE_STATE_CLOSED, 0x4);
    CONSTANT(BLKIO_ZONE_STATE_READONLY, 0xD);
    CONSTANT(BLKIO_ZONE_STATE_FULL, 0xE);
    CONSTANT(BLKIO_ZONE_STATE_OFFLINE, 0xF);
    INT_CONSTANT(BLKIO_REQ_FUA);
    INT_CONSTANT(BLKIO_ZONE_TYPE_CONVENTIONAL);
    INT_CONSTANT(BLKIO_ZONE_STATE_EMPTY);

    /* The system types in the prototypes, as callers compile them. */
    CHECK_INT(sizeof(bool), 1, "sizeof(bool) == 1");
    CHECK_INT(sizeof(size_t), 8, "sizeof(size_t) == 8");
    CHECK_INT(sizeof(struct iovec), 16, "sizeof(struct iovec) == 16");
    CHECK_INT(offsetof(struct iovec, iov_len), 8, "offsetof(struct iovec, iov_len) == 8");
    CHECK_INT(sizeof(struct timespec), 16, "sizeof(struct timespec) == 16");
    CHECK_INT(offsetof(struct timespec, tv_nsec), 8,
              "offsetof(struct timespec, tv_nsec) == 8");
    CHECK_INT(sizeof(sigset_t), 128, "sizeof(sigset_t) == 128");
    return h_done();
}
