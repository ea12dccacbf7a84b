/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The devices the client-pattern tests (test_qemu_patterns.c,
 * test_fio_patterns.c) run against: io_uring on a scratch file, buffered
 * and O_DIRECT, and virtio-blk-vhost-user on a qemu-storage-daemon export
 * when the library has that driver and the daemon is installed.
 * Include after harness.h.
 *
 * A qemu-storage-daemon exporting a scratch raw image over vhost-user-blk:
 *
 *   struct qsd d;
 *   char why[256];
 *   if (!qsd_start(&d, size, num_queues, why, sizeof(why)))
 *       h_skip("vhost-user: %s", why);
 *   ... blkio_set_str(b, "path", d.sock) ...
 *   qsd_stop(&d);
 *
 * The image lives next to the socket in a private directory under
 * $BLKIO_TEST_DIR, so the tests can check it with pread independently of
 * the library. The daemon is killed at exit if the test forgets to stop it.
 */
#ifndef BLKIO_TEST_TARGETS_H
#define BLKIO_TEST_TARGETS_H

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

struct qsd {
    pid_t pid;
    char dir[200];
    char sock[256];
    char image[256];
    char log[256];
};

static pid_t qsd_live_pid;

H_FN void qsd_kill_at_exit(void)
{
    if (qsd_live_pid > 0) {
        kill(qsd_live_pid, SIGTERM);
        waitpid(qsd_live_pid, NULL, 0);
        qsd_live_pid = 0;
    }
}

H_FN void qsd_stop(struct qsd *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        if (qsd_live_pid == d->pid)
            qsd_live_pid = 0;
        d->pid = 0;
    }
    unlink(d->sock);
    unlink(d->image);
    unlink(d->log);
    rmdir(d->dir);
}

/* Whether the library has the vhost-user driver (blkio_create succeeds). */
H_FN bool qsd_driver_available(char *why, size_t why_len)
{
    struct blkio *b = NULL;
    int ret = blkio_create("virtio-blk-vhost-user", &b);
    if (ret < 0) {
        snprintf(why, why_len, "blkio_create(\"virtio-blk-vhost-user\") failed: %d %s",
                 ret, blkio_get_error_msg());
        return false;
    }
    blkio_destroy(&b);
    return true;
}

/* Starts the daemon on a fresh zero-filled image of `size` bytes with
 * `num_queues` virtqueues. On failure fills `why` and returns false. */
H_FN bool qsd_start(struct qsd *d, off_t size, int num_queues, char *why, size_t why_len)
{
    char blockdev[600], export[700];
    struct timespec tick = {0, 20 * 1000 * 1000};
    int status, fd;

    memset(d, 0, sizeof(*d));
    if (!qsd_driver_available(why, why_len))
        return false;
    snprintf(d->dir, sizeof(d->dir), "%s/blkio-qsd-XXXXXX", h_test_dir());
    if (!mkdtemp(d->dir)) {
        snprintf(why, why_len, "mkdtemp in %s: %s", h_test_dir(), strerror(errno));
        return false;
    }
    snprintf(d->sock, sizeof(d->sock), "%s/vhost.sock", d->dir);
    snprintf(d->image, sizeof(d->image), "%s/disk.img", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/qsd.log", d->dir);
    fd = open(d->image, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, size) < 0) {
        snprintf(why, why_len, "create %s: %s", d->image, strerror(errno));
        if (fd >= 0)
            close(fd);
        qsd_stop(d);
        return false;
    }
    close(fd);
    snprintf(blockdev, sizeof(blockdev),
             "driver=file,node-name=file0,filename=%s,discard=unmap", d->image);
    snprintf(export, sizeof(export),
             "type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,"
             "addr.path=%s,writable=on,num-queues=%d",
             d->sock, num_queues);
    fflush(stdout);
    d->pid = fork();
    if (d->pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        qsd_stop(d);
        return false;
    }
    if (d->pid == 0) {
        int log = open(d->log, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        execlp("qemu-storage-daemon", "qemu-storage-daemon", "--blockdev", blockdev,
               "--export", export, (char *)NULL);
        _exit(127);
    }
    qsd_live_pid = d->pid;
    atexit(qsd_kill_at_exit);
    /* Wait (at most 10 s) for the socket, noticing an early exit. */
    for (int i = 0; i < 500; i++) {
        struct stat st;
        if (stat(d->sock, &st) == 0 && S_ISSOCK(st.st_mode))
            return true;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            qsd_live_pid = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
                snprintf(why, why_len, "qemu-storage-daemon is not installed");
            } else {
                char line[160] = "";
                FILE *f = fopen(d->log, "r");
                if (f) {
                    if (!fgets(line, sizeof(line), f))
                        line[0] = '\0';
                    line[strcspn(line, "\n")] = '\0';
                    fclose(f);
                }
                snprintf(why, why_len, "qemu-storage-daemon exited (status 0x%x): %s",
                         status, line);
            }
            qsd_stop(d);
            return false;
        }
        nanosleep(&tick, NULL);
    }
    snprintf(why, why_len, "qemu-storage-daemon did not create %s", d->sock);
    qsd_stop(d);
    return false;
}

/* ------------------------------------------------------------------------
 * Targets */

struct target {
    char name[64];       /* prefix of the check descriptions */
    const char *driver;
    char path[256];      /* "path" property */
    char image[256];     /* the file holding the data, for pread checks */
    bool direct;         /* io_uring "direct" */
    struct qsd qsd;      /* vhost-user only */
};

#define MAX_TARGETS 3

/* Fills `t` with io_uring (buffered and direct, each on its own scratch
 * file of `size` bytes) and, when available, vhost-user on a daemon with
 * `num_queues` queues. Returns the count; prints a skip line for what is
 * missing. */
H_FN int targets_init(struct target *t, off_t size, int num_queues)
{
    char why[300];
    int n = 0;
    for (int direct = 0; direct <= 1; direct++, n++) {
        memset(&t[n], 0, sizeof(t[n]));
        snprintf(t[n].name, sizeof(t[n].name), "io_uring %s", direct ? "direct" : "buffered");
        t[n].driver = "io_uring";
        t[n].direct = direct;
        snprintf(t[n].path, sizeof(t[n].path), "%s", h_scratch(size));
        snprintf(t[n].image, sizeof(t[n].image), "%s", t[n].path);
    }
    memset(&t[n], 0, sizeof(t[n]));
    if (qsd_start(&t[n].qsd, size, num_queues, why, sizeof(why))) {
        snprintf(t[n].name, sizeof(t[n].name), "vhost-user");
        t[n].driver = "virtio-blk-vhost-user";
        snprintf(t[n].path, sizeof(t[n].path), "%s", t[n].qsd.sock);
        snprintf(t[n].image, sizeof(t[n].image), "%s", t[n].qsd.image);
        n++;
    } else {
        h_skip("vhost-user checks: %s", why);
    }
    return n;
}

H_FN void targets_fini(struct target *t, int n)
{
    for (int i = 0; i < n; i++)
        if (t[i].qsd.pid > 0)
            qsd_stop(&t[i].qsd);
}

H_FN bool target_is_io_uring(const struct target *t)
{
    return strcmp(t->driver, "io_uring") == 0;
}

/* Creates and connects an instance for `t` (path, and "direct" for
 * io_uring). Reports a failed check and returns NULL on error. */
H_FN struct blkio *target_connect(const struct target *t)
{
    struct blkio *b = NULL;
    int ret = blkio_create(t->driver, &b);
    if (ret == 0)
        ret = blkio_set_str(b, "path", t->path);
    if (ret == 0 && target_is_io_uring(t))
        ret = blkio_set_bool(b, "direct", t->direct);
    if (ret == 0)
        ret = blkio_connect(b);
    if (ret < 0) {
        char details[400];
        snprintf(details, sizeof(details), "%d %s", ret, blkio_get_error_msg());
        h_report(false, details, "%s: create and connect", t->name);
        blkio_destroy(&b);
        return NULL;
    }
    return b;
}

/* Sets the queue counts on a connected instance and starts it; destroys it
 * and returns false (with a failed check) on error. */
H_FN bool target_start(const struct target *t, struct blkio **b, int num_queues,
                       int num_poll_queues)
{
    int ret = blkio_set_int(*b, "num-queues", num_queues);
    if (ret == 0)
        ret = blkio_set_int(*b, "num-poll-queues", num_poll_queues);
    if (ret == 0)
        ret = blkio_start(*b);
    if (ret < 0) {
        char details[400];
        snprintf(details, sizeof(details), "%d %s", ret, blkio_get_error_msg());
        h_report(false, details, "%s: start with %d queues and %d poll queues", t->name,
                 num_queues, num_poll_queues);
        blkio_destroy(b);
        return false;
    }
    return true;
}

/* A started instance with one queue, or NULL. */
H_FN struct blkio *target_open(const struct target *t)
{
    struct blkio *b = target_connect(t);
    if (b && !target_start(t, &b, 1, 0))
        return NULL;
    return b;
}

#endif /* BLKIO_TEST_TARGETS_H */
