#!/usr/bin/env bash
# virtio-blk-vhost-user against a hostile back-end: tests/hostile/server.py
# (one misbehaviour per scenario: malformed replies, hang-ups and silence at
# each handshake step, hostile config space and used rings) driven by the C
# client tests/c/test_hostile_vhost_user.c, once plainly and once under
# valgrind (leak check, errors fail). docs/robustness.md lists the scenarios.
#
# Prints the client's ok/not ok lines (prefixed "valgrind: " for the second
# run). About 27 s plain and 33 s under valgrind on 2 cores; two scenarios
# each wait for the 10 s reply timeout.
#
# usage: tests/hostile/run.sh   (BLKIO_HOSTILE_ONLY=<scenario> for one)
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}

if [ -n "${BLKIO_LIB:-}" ]; then
    libdir=$(dirname "$BLKIO_LIB")
else
    cargo build -q || { echo "not ok - cargo build"; exit 1; }
    libdir=$target/debug
    ln -sf libblkio.so "$libdir/libblkio.so.1"
fi

python=$(command -v python3 > /dev/null && python3 -c 'import sys; print(sys.executable)')
if [ -z "$python" ]; then
    echo "skip - python3 is not installed"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/blkio-hostile.XXXXXX")
trap 'rm -rf "$work"' EXIT
client=$work/test_hostile_vhost_user
if ! cc -std=gnu11 -Wall -Wextra -Werror -Iinclude -o "$client" \
    tests/c/test_hostile_vhost_user.c -L"$libdir" -lblkio -lpthread; then
    echo "not ok - tests/c/test_hostile_vhost_user.c does not compile"
    exit 1
fi

export BLKIO_HOSTILE_SERVER=$root/tests/hostile/server.py
export BLKIO_HOSTILE_PYTHON=$python
export LD_LIBRARY_PATH=$libdir
export BLKIO_TEST_DIR=${BLKIO_TEST_DIR:-$work}

status=0
start=$SECONDS
timeout -k 5 300 "$client" || status=1
echo "# plain run: $((SECONDS - start)) s"

if ! command -v valgrind > /dev/null; then
    echo "skip - valgrind is not installed"
    exit "$status"
fi
start=$SECONDS
log=$work/client.log
timeout -k 5 600 valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
    --error-exitcode=99 --log-file="$work/vg.%p" "$client" > "$log" 2>&1
vstatus=$?
sed -n 's/^\(ok\|not ok\|skip\) - /\1 - valgrind: /p; /^# /p' "$log"
errors=$(cat "$work"/vg.* 2> /dev/null)
if [ -n "$errors" ]; then
    echo "$errors" | head -60
fi
if [ "$vstatus" -eq 0 ] && [ -z "$errors" ]; then
    echo "ok - valgrind: no memory errors or definite leaks in the client and the library"
else
    echo "not ok - valgrind: exit status $vstatus (99: memory errors or leaks)"
    status=1
fi
echo "# valgrind run: $((SECONDS - start)) s"
exit "$status"
