# shellcheck shell=bash
# run_scratch COMMAND...: runs COMMAND (at most 600 s) as tests/run.sh runs
# the C tests: the library under test ($libdir) on LD_LIBRARY_PATH and
# fresh scratch directories in BLKIO_TEST_DIR (under $TMPDIR or /var/tmp)
# and BLKIO_TEST_TMPFS (under /dev/shm when it is a tmpfs), removed after.
# Needs $libdir set by the caller; returns COMMAND's status.
run_scratch() {
    local scratch tmpfs="" rc
    scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/blkio-scratch.XXXXXX")
    if [ "$(stat -f -c %T /dev/shm 2> /dev/null)" = tmpfs ]; then
        tmpfs=$(mktemp -d /dev/shm/blkio-scratch.XXXXXX)
    fi
    BLKIO_TEST_DIR=$scratch BLKIO_TEST_TMPFS=$tmpfs LD_LIBRARY_PATH=$libdir \
        timeout -k 10 600 "$@"
    rc=$?
    rm -rf "$scratch" ${tmpfs:+"$tmpfs"}
    return "$rc"
}
