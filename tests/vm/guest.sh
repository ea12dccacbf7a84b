#!/bin/sh
# Runs inside the vmtest guest (started by tests/vm/run.sh), in the host
# directory that holds the test binaries: runs every test once, relaying
# their "ok - / not ok - / skip - " lines. A test that fails its checks
# exits 1 after printing its "not ok" lines; any other non-zero status
# (a crash, a signal) becomes a "not ok" line here.
cd "$(dirname "$0")" || exit 1
status=0

run() {
    name=$1
    shift
    echo "# --- $name"
    start=$(cut -d' ' -f1 /proc/uptime)
    "$@" 2>&1
    rc=$?
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "# --- $name: exit status $rc ($start s -> $end s guest uptime)"
    case $rc in
    0) ;;
    1) status=1 ;;
    *) echo "not ok - $name ended abnormally with status $rc"; status=1 ;;
    esac
}

run nvme-io_uring ./test_nvme_io_uring
run nvme-io_uring-zoned ./test_nvme_zoned
run "io_uring on $VMTEST_BLK" ./test_io_uring_blk "$VMTEST_BLK"
run "io_uring on $VMTEST_BLK_4K" ./test_io_uring_blk "$VMTEST_BLK_4K"
run "io_uring on $VMTEST_NVME_BLK" ./test_io_uring_blk "$VMTEST_NVME_BLK"
run virtio-blk-vhost-vdpa ./test_vhost_vdpa
run virtio-blk-vfio-pci ./test_vfio_pci
exit $status
