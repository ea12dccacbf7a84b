#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# QEMU wrapper for tests/qemu-vm/run.sh, given to the vmtest runner as
# VMTEST_QEMU: runs Debian trixie's unchanged qemu-system-x86_64 inside the
# root filesystem $QVM_ROOTFS with our library first on LD_LIBRARY_PATH
# ($QVM_LIBDIR), appends the arguments in $QVM_ARGS (one per line: guest RAM,
# iothread, the libblkio disks) and writes its PID (which stays QEMU's, exec)
# to $QVM_PIDFILE. The runner's paths are valid inside the root filesystem
# because run.sh bind-mounts the repository's target/ at the same path.
mapfile -t extra <"$QVM_ARGS"
echo $$ >"$QVM_PIDFILE"
exec chroot "$QVM_ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    LD_LIBRARY_PATH="$QVM_LIBDIR" qemu-system-x86_64 "$@" "${extra[@]}"
