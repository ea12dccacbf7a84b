/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A deliberate data race (two threads increment a global without a lock):
 * tests/threads/run.sh checks that the race detector reports it, so the
 * suite cannot pass because the detector sees nothing.
 */
#include <pthread.h>
#include <stdio.h>

static long counter;

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        counter++;
    return NULL;
}

int main(void)
{
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    pthread_create(&b, NULL, bump, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("%ld\n", counter);
    return 0;
}
