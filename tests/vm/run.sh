#!/bin/bash
# In-guest test suite: the drivers that need devices the host lacks (NVMe
# namespaces, zoned NVMe, virtio-blk disks with 512 and 4096-byte blocks,
# a vdpa_sim_blk vhost-vdpa device, a virtio-blk-pci device behind VFIO) run
# in ONE boot of the vmtest guest (shared/vmtest, TCG).
#
#   tests/vm/run.sh            build what is needed, boot once, run every test
#
# 1. builds the guest kernel + initramfs with shared/vmtest/build-guest.sh
#    into $VMTEST_GUESTDIR (default target/vmtest-guest; cached, ~1 min and
#    ~270 MB of Debian packages the first time, ~2 s afterwards);
# 2. builds the library (cargo build, debug) and the C tests tests/vm/test_*.c
#    against include/ and target/debug, into target/vmtest-run with the
#    library next to them (rpath $ORIGIN);
# 3. boots the guest with --nvme --nvme-zoned --blk --vdpa --vfio (NVMe with one poll queue
#    so io_uring poll queues can be tested) and runs tests/vm/guest.sh there;
# 4. relays the "ok - / not ok - / skip - " lines and ends with
#    "vm: N passed, M failed"; the exit status is non-zero on any failure.
#
# Environment: VMTEST_SHARED (default: ../shared next to the repository),
# VMTEST_GUESTDIR, VMTEST_TIMEOUT (seconds, default 900), CC (default cc).
# VMTEST_VFIO_PACKED=1 gives the VFIO disk packed=on (through the QEMU
# wrapper tests/vm/qemu-packed.sh), so virtio-blk-vfio-pci runs its tests on
# the packed virtqueue instead of the split one.
# Prints "skip - ..." and exits 0 only when the machine lacks something the
# guest needs (QEMU, the Debian tools, the package mirror, shared/vmtest).
set -u

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) ||
    ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${VMTEST_SHARED:-$ROOT/../shared}
V=$SHARED/vmtest
GUEST=${VMTEST_GUESTDIR:-$ROOT/target/vmtest-guest}
RUN=$ROOT/target/vmtest-run
CC=${CC:-cc}
T0=$(date +%s)

skip() {
    echo "skip - in-guest tests: $*"
    exit 0
}
fail() {
    echo "not ok - in-guest tests: $*"
    echo "vm: 0 passed, 1 failed"
    exit 1
}
elapsed() { echo $(($(date +%s) - T0)); }

[ -x "$V/run-in-vm.sh" ] && [ -x "$V/build-guest.sh" ] || skip "$V not found"
command -v "${VMTEST_QEMU:-qemu-system-x86_64}" >/dev/null ||
    skip "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
for tool in apt-get dpkg-deb xz gzip ldd; do
    command -v "$tool" >/dev/null || skip "$tool not found (needed to build the guest)"
done

# 1. the guest
mkdir -p "$ROOT/target"
LOG=$ROOT/target/vmtest-guest-build.log
if ! "$V/build-guest.sh" "$GUEST" >"$LOG" 2>&1; then
    if grep -qiE "Failed to fetch|Temporary failure|Could not resolve|Unable to locate package|apt-get update failed|Unable to connect" "$LOG"; then
        skip "the guest could not be built: Debian packages unavailable (see $LOG)"
    fi
    tail -n 20 "$LOG"
    fail "build-guest.sh failed (log: $LOG)"
fi
echo "# guest ready in $GUEST ($(elapsed) s)"

# 2. library and tests
(cd "$ROOT" && cargo build --quiet) || fail "cargo build failed"
rm -rf "$RUN"
mkdir -p "$RUN"
cp "$ROOT/target/debug/libblkio.so" "$RUN/libblkio.so.1" || fail "no target/debug/libblkio.so"
for src in "$ROOT"/tests/vm/test_*.c; do
    bin=$RUN/$(basename "$src" .c)
    "$CC" -std=gnu99 -Wall -Wextra -Werror -I"$ROOT/include" -o "$bin" "$src" \
        -L"$ROOT/target/debug" -lblkio -Wl,-rpath,'$ORIGIN' ||
        fail "compiling $(basename "$src") failed"
done
cp "$ROOT/tests/vm/guest.sh" "$RUN/"
echo "# library and $(ls "$RUN"/test_* | wc -l) test programs built ($(elapsed) s)"

# 3. one boot
OUT=$RUN/output.log
if [ "${VMTEST_VFIO_PACKED:-0}" = 1 ]; then
    export VMTEST_REAL_QEMU=${VMTEST_QEMU:-qemu-system-x86_64}
    export VMTEST_QEMU=$ROOT/tests/vm/qemu-packed.sh
    echo "# VFIO disk with packed=on (packed virtqueue)"
fi
"$V/run-in-vm.sh" --nvme --nvme-zoned --blk --vdpa --vfio --append nvme.poll_queues=1 \
    --timeout "${VMTEST_TIMEOUT:-900}" "$GUEST" "$RUN" -- sh ./guest.sh 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}

# 4. summary
passed=$(grep -c '^ok - ' "$OUT")
failed=$(grep -c '^not ok - ' "$OUT")
case $rc in
0) ;;
124) echo "not ok - the guest timed out"; failed=$((failed + 1)) ;;
125) echo "not ok - the guest could not be set up or died"; failed=$((failed + 1)) ;;
*) [ "$failed" -gt 0 ] || { echo "not ok - guest.sh exited with $rc"; failed=$((failed + 1)); } ;;
esac
echo "# in-guest run took $(elapsed) s in total"
echo "vm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
