#!/bin/bash
# QEMU wrapper for tests/vm/run.sh with VMTEST_VFIO_PACKED=1: adds
# packed=on to the VFIO disk (the virtio-blk-pci device with serial
# vmtest-vfio), so virtio-blk-vfio-pci negotiates VIRTIO_F_RING_PACKED and
# runs its in-guest test on the packed virtqueue. Everything else is passed
# through unchanged to $VMTEST_REAL_QEMU (default qemu-system-x86_64).
args=()
for a in "$@"; do
    case $a in *serial=vmtest-vfio,*) a="$a,packed=on" ;; esac
    args+=("$a")
done
exec "${VMTEST_REAL_QEMU:-qemu-system-x86_64}" "${args[@]}"
