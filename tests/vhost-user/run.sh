#!/usr/bin/env bash
# virtio-blk-vhost-user suite: builds the library (debug) and
# tests/c/test_vhost_user.c against it, then runs the program, which starts
# its own qemu-storage-daemon instances on private sockets. Prints the
# program's "ok - " / "not ok - " / "skip - " lines; exits non-zero when a
# check failed or the program could not be built or run.
#
# usage: tests/vhost-user/run.sh
# env:   QEMU_STORAGE_DAEMON  daemon binary (default: from PATH)
#        BLKIO_TEST_DIR       scratch directory (default: a fresh temp dir)
#        CARGO_TARGET_DIR     as for cargo
set -u

cd "$(dirname "$0")/../.." || exit 1
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
libdir=$target/debug
work=$target/tests
mkdir -p "$work"

if ! cargo build --quiet; then
    echo "not ok - vhost-user suite: cargo build failed"
    exit 1
fi
ln -sf libblkio.so "$libdir/libblkio.so.1"

prog=$work/test_vhost_user
if ! cc -std=gnu11 -Wall -Wextra -Werror -Iinclude -o "$prog" tests/c/test_vhost_user.c \
    -L"$libdir" -lblkio -lpthread; then
    echo "not ok - vhost-user suite: tests/c/test_vhost_user.c does not compile"
    exit 1
fi

scratch=""
if [ -z "${BLKIO_TEST_DIR:-}" ]; then
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/blkio-vhost-user.XXXXXX")
    export BLKIO_TEST_DIR=$scratch
fi
LD_LIBRARY_PATH=$libdir timeout -k 10 900 "$prog"
status=$?
[ -z "$scratch" ] || rm -rf "$scratch"
if [ "$status" -gt 128 ] || [ "$status" -eq 124 ]; then
    echo "not ok - vhost-user suite: test_vhost_user died (status $status)"
fi
exit "$status"
