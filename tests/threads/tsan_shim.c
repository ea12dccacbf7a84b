/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Linked only into the ThreadSanitizer build of tests/c/test_concurrency.c.
 * Nightly rustc's LLVM instruments memset/memcpy/memmove as calls to
 * __tsan_memset/__tsan_memcpy/__tsan_memmove, which the older TSan runtime
 * of the system's C compiler lacks. These forward to the libc functions,
 * which that runtime intercepts and checks, so the accesses are still seen.
 */
#include <string.h>

void *__tsan_memset(void *dst, int c, size_t n);
void *__tsan_memcpy(void *dst, const void *src, size_t n);
void *__tsan_memmove(void *dst, const void *src, size_t n);

void *__tsan_memset(void *dst, int c, size_t n)
{
    return memset(dst, c, n);
}

void *__tsan_memcpy(void *dst, const void *src, size_t n)
{
    return memcpy(dst, src, n);
}

void *__tsan_memmove(void *dst, const void *src, size_t n)
{
    return memmove(dst, src, n);
}
