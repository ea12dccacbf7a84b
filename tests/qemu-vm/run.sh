#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# A QEMU virtual machine whose disks go through our libblkio.so.1.
#
# Debian trixie's unchanged qemu-system-x86_64 (with qemu-block-extra's
# block-blkio.so) runs inside the cached trixie root filesystem that
# tests/qemu shares (tests/lib/trixie-rootfs.sh), under TCG, booting the
# small vmtest guest (../shared/vmtest) with four libblkio-backed disks:
#
#   qvm-direct    -blockdev driver=io_uring,cache.direct=on, discard=unmap,
#                 detect-zeroes=unmap; virtio-blk-pci num-queues=2 on an
#                 iothread
#   qvm-buffered  -blockdev driver=io_uring,cache.direct=off, discard=unmap
#   qvm-vhost     -blockdev driver=virtio-blk-vhost-user against a trixie
#                 qemu-storage-daemon export; guest RAM is
#                 memory-backend-memfd,share=on, which QEMU registers with
#                 the library as a memory region and the library hands to
#                 the daemon (checked in the daemon's /proc/PID/maps)
#   qvm-ro        -blockdev driver=io_uring,read-only=on
#
# In the guest, guest-io.c (static, built here) writes a pattern with
# O_DIRECT from 16 threads at 175 offsets with sizes from 512 B to 1 MiB,
# fsyncs, reads back and verifies, issues BLKDISCARD, BLKZEROOUT and a
# zero-filled write, and verifies again; the read-only disk must refuse
# writes. After poweroff layout.py checks every byte of each image on the
# host. While the guest runs, QEMU's /proc/PID/maps must map our build of
# libblkio.so.1 (same inode and sha256).
#
# Output: ok/not ok/skip lines and "N passed, M failed"; non-zero exit on a
# failure. Needs root; without it everything is skipped.
# Environment: BLKIO_QEMU_ROOTFS (default target/qemu-rootfs), BLKIO_LIB,
# VMTEST_SHARED (default ../shared), VMTEST_GUESTDIR (default
# target/vmtest-guest), QVM_TIMEOUT (guest time limit, default 480 s),
# QVM_KEEP=1 (keep the scratch directory: images, maps, logs).
# Time on 2 shared cores with cached root filesystem and guest: see README.

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
self="$repo/tests/qemu-vm/run.sh"
here="$repo/tests/qemu-vm"
ROOTFS=${BLKIO_QEMU_ROOTFS:-$repo/target/qemu-rootfs}
SHARED=${VMTEST_SHARED:-$repo/../shared}
GUEST=${VMTEST_GUESTDIR:-$repo/target/vmtest-guest}
MEM=512   # MiB of guest RAM
t0=$(date +%s)

pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $1${2:+: $2}"; fail=$((fail + 1)); }
skip() { echo "skip - $1"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
log() { echo "# $*" >&2; }

# shellcheck source=../lib/chroot-suite.sh
. "$repo/tests/lib/chroot-suite.sh"
qsd_pid=""
vm_pid=""
CHROOT_PIDS=(vm_pid qsd_pid)
CHROOT_KEEP=${QVM_KEEP:-0}
chroot_suite_start "$self" "QEMU VM tests" "$@"
[ -x "$SHARED/vmtest/run-in-vm.sh" ] || { skip "QEMU VM tests: $SHARED/vmtest not found"; finish; }

# --- root filesystem, guest, library, guest program -----------------------
chroot_suite_rootfs "$ROOTFS"
qver=$(chroot "$ROOTFS" qemu-system-x86_64 --version 2>&1 | head -n1)
module=$(find "$ROOTFS/usr/lib" -path '*/qemu/block-blkio.so' 2>/dev/null | head -n1)
if [[ $qver == *"version 10.0"* ]] && [ -n "$module" ] &&
    readelf -d "$module" | grep -q 'NEEDED.*\[libblkio\.so\.1\]'; then
    ok "trixie's $qver with ${module#"$ROOTFS"} (links libblkio.so.1)"
else
    not_ok "trixie's qemu-system-x86_64 10.0 and block-blkio.so" "${qver:-no qemu-system-x86_64}, module ${module:-missing}"
    finish
fi

mkdir -p "$repo/target"
glog="$repo/target/vmtest-guest-build.log"
if ! "$SHARED/vmtest/build-guest.sh" "$GUEST" >"$glog" 2>&1; then
    not_ok "build the vmtest guest" "log: $glog"
    finish
fi
log "guest ready ($(($(date +%s) - t0)) s)"

chroot_suite_library

scratch=$(mktemp -d "$repo/target/qemu-vm.XXXXXX")
mkdir -p "$scratch/lib" "$scratch/host" "$scratch/img" "$scratch/tmp"
cp "$lib" "$scratch/lib/libblkio.so.1"
lib_sum=$(sha256sum <"$scratch/lib/libblkio.so.1" | cut -d' ' -f1)
lib_ino=$(stat -c '%d:%i' "$scratch/lib/libblkio.so.1")
if ! cc -std=gnu11 -O2 -Wall -Wextra -Werror -static -pthread -o "$scratch/host/guest-io" \
    "$here/guest-io.c" 2>"$scratch/cc.log"; then
    not_ok "compile guest-io.c (static)" "$(head -n 3 "$scratch/cc.log" | tr '\n' ' ')"
    finish
fi
cp "$here/guest.sh" "$scratch/host/"

img=$scratch/img
truncate -s 64M "$img/direct.img" "$img/buffered.img" "$img/vhost.img"
truncate -s 4M "$img/ro.img"
python3 "$here/layout.py" fill-ro "$img/ro.img" 9 || { not_ok "write the read-only image's pattern"; finish; }
ro_sum=$(sha256sum <"$img/ro.img")

# The chroot sees the repository's target/ (guest, scratch, vmtest's
# temporary files) at the same path as the host.
chroot_mount_basics "$ROOTFS"
chroot_mnt "$ROOTFS$repo/target" --bind "$repo/target" || { not_ok "bind-mount target/ into the chroot"; finish; }

# --- qemu-storage-daemon (trixie's, in the chroot, distribution libraries) -
sock=$scratch/vhost.sock
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin qemu-storage-daemon \
    --blockdev "driver=file,node-name=vu,filename=$img/vhost.img,discard=unmap" \
    --export "type=vhost-user-blk,id=exp0,node-name=vu,addr.type=unix,addr.path=$sock,writable=on,num-queues=2" \
    >"$scratch/qsd.log" 2>&1 &
qsd_pid=$!
for _ in $(seq 1 100); do
    [ -S "$sock" ] && break
    sleep 0.1
done
[ -S "$sock" ] || { not_ok "qemu-storage-daemon export" "$(head -n 2 "$scratch/qsd.log" | tr '\n' ' ')"; finish; }

# --- the VM ----------------------------------------------------------------
args=(
    -object "memory-backend-memfd,id=ram0,size=${MEM}M,share=on" -machine memory-backend=ram0
    -object iothread,id=io0
    -blockdev "driver=io_uring,node-name=direct,filename=$img/direct.img,cache.direct=on,discard=unmap,detect-zeroes=unmap"
    -device virtio-blk-pci,drive=direct,serial=qvm-direct,num-queues=2,iothread=io0
    -blockdev "driver=io_uring,node-name=buffered,filename=$img/buffered.img,cache.direct=off,discard=unmap"
    -device virtio-blk-pci,drive=buffered,serial=qvm-buffered
    -blockdev "driver=virtio-blk-vhost-user,node-name=vhost,path=$sock,cache.direct=on,discard=unmap"
    -device virtio-blk-pci,drive=vhost,serial=qvm-vhost,num-queues=2
    -blockdev "driver=io_uring,node-name=ro,filename=$img/ro.img,read-only=on"
    -device virtio-blk-pci,drive=ro,serial=qvm-ro
)
printf '%s\n' "${args[@]}" >"$scratch/qemu-args"
out=$scratch/vm.out
QVM_ROOTFS=$ROOTFS QVM_LIBDIR=$scratch/lib QVM_ARGS=$scratch/qemu-args QVM_PIDFILE=$scratch/qemu.pid \
    VMTEST_QEMU="$here/qemu-chroot.sh" TMPDIR=$scratch/tmp \
    "$SHARED/vmtest/run-in-vm.sh" --blk --mem "$MEM" --timeout "${QVM_TIMEOUT:-480}" \
    "$GUEST" "$scratch/host" -- sh ./guest.sh >"$out" 2>&1 &
vm_pid=$!
tvm=$(date +%s)

# While the guest runs: which libblkio QEMU mapped, and the daemon's view of
# guest RAM.
qpid=""
mapped=""
for _ in $(seq 1 600); do
    [ -z "$qpid" ] && [ -s "$scratch/qemu.pid" ] && qpid=$(cat "$scratch/qemu.pid")
    if [ -n "$qpid" ]; then
        mapped=$(awk '$6 ~ /libblkio\.so/ { print $1, $6; exit }' "/proc/$qpid/maps" 2>/dev/null)
        [ -n "$mapped" ] && grep -q 'memfd:' "/proc/$qsd_pid/maps" 2>/dev/null && break
    fi
    kill -0 "$vm_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -n "$mapped" ]; then
    cp "/proc/$qpid/maps" "$scratch/qemu.maps" 2>/dev/null
    map_sum=$(sha256sum <"/proc/$qpid/map_files/${mapped%% *}" | cut -d' ' -f1)
    map_ino=$(stat -L -c '%d:%i' "/proc/$qpid/map_files/${mapped%% *}")
    others=$(awk '$6 ~ /libblkio\.so/ { print $6 }' "$scratch/qemu.maps" | sort -u |
        grep -v "^$ROOTFS$scratch/lib/libblkio.so.1$" | tr '\n' ' ')
    if [ "$map_sum" = "$lib_sum" ] && [ "$map_ino" = "$lib_ino" ] && [ -z "$others" ]; then
        ok "/proc/$qpid/maps of the running qemu-system-x86_64 maps ${mapped#* } only: our build (inode $lib_ino, sha256 ${lib_sum:0:16}…)"
    else
        not_ok "QEMU maps our libblkio.so.1" "${mapped#* }: sha256 $map_sum inode $map_ino (ours $lib_sum $lib_ino), other libblkio files mapped: ${others:-none}"
    fi
else
    not_ok "QEMU maps our libblkio.so.1" "no libblkio mapping seen in qemu (pid ${qpid:-unknown})"
fi
# memory-backend-memfd names its memfd after the backend type; the daemon
# maps it only if our library passed the guest RAM region over vhost-user.
ram=0
while read -r range _; do
    ram=$((ram + 0x${range#*-} - 0x${range%-*}))
done < <(grep 'memfd:memory-backend-memfd' "/proc/$qsd_pid/maps" 2>/dev/null)
if [ "$ram" -ge $((MEM << 20)) ]; then
    ok "qemu-storage-daemon maps the guest's RAM memfd ($((ram >> 20)) MiB): the library registered guest RAM as a memory region"
else
    not_ok "qemu-storage-daemon maps the guest's RAM memfd" "$(grep memfd "/proc/$qsd_pid/maps" 2>/dev/null | head -n 3 | tr '\n' ' ')"
fi

wait "$vm_pid"
vm_rc=$?
vm_pid=""
log "guest ran $(($(date +%s) - tvm)) s, exit $vm_rc"
while IFS= read -r line; do
    case $line in
        "ok - "*) ok "guest: ${line#ok - }" ;;
        "not ok - "*) not_ok "guest: ${line#not ok - }" ;;
    esac
done <"$out"
if [ "$vm_rc" -ne 0 ] && ! grep -q '^not ok - ' "$out"; then
    not_ok "the guest ran to the end" "exit $vm_rc: $(grep -v '^ok - ' "$out" | tail -n 5 | tr '\n' ' ')"
fi
[ "$vm_rc" -eq 0 ] || grep -v '^ok - ' "$out" | tail -n 15 | sed 's/^/# /' >&2

stop_pid qsd_pid

# --- the images, checked on the host ----------------------------------------
for d in direct:1:"io_uring cache.direct=on":detect-zeroes buffered:2:"io_uring cache.direct=off": \
    vhost:3:"virtio-blk-vhost-user":; do
    IFS=: read -r name tag desc extra <<<"$d"
    while IFS= read -r line; do
        case $line in
            "ok - "*) ok "host: ${line#ok - }" ;;
            "not ok - "*) not_ok "host: ${line#not ok - }" ;;
        esac
    done < <(python3 "$here/layout.py" check "$img/$name.img" "$tag" "$desc image" ${extra:+"$extra"} 2>&1)
done
if [ "$(sha256sum <"$img/ro.img")" = "$ro_sum" ]; then
    ok "host: read-only image unchanged"
else
    not_ok "host: read-only image unchanged"
fi

log "total time $(($(date +%s) - t0)) s"
chroot_cleanup
finish
