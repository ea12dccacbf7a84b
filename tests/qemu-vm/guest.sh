#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Runs in the guest of tests/qemu-vm/run.sh (busybox sh, cwd = the host
# directory): finds the libblkio-backed disks by serial number, checks their
# queue counts and runs guest-io on each.
fails=0
check() { # check DESCRIPTION COMMAND...
    d=$1
    shift
    if "$@"; then echo "ok - $d"; else echo "not ok - $d"; fails=$((fails + 1)); fi
}
for b in /sys/block/vd*; do
    s=$(cat "$b/serial" 2>/dev/null)
    case $s in qvm-*) eval "dev_${s#qvm-}=/dev/${b##*/}" ;; esac
done
for n in direct buffered vhost ro; do
    eval "dev=\${dev_$n:-}"
    check "guest sees the disk with serial qvm-$n (${dev:-missing})" [ -n "$dev" ]
done
queues() { ls -d "/sys/block/${1#/dev/}/mq/"* 2>/dev/null | wc -l; }
check "io_uring disk (num-queues=2, iothread): the guest has $(queues "$dev_direct") virtqueues" [ "$(queues "$dev_direct")" = 2 ]
check "vhost-user disk (num-queues=2): the guest has $(queues "$dev_vhost") virtqueues" [ "$(queues "$dev_vhost")" = 2 ]
run() { # run NAME ARGS...: guest-io with its lines prefixed by NAME
    name=$1
    shift
    ./guest-io "$@" >io.out 2>&1
    rc=$?
    sed "s/^\(ok\|not ok\) - /\1 - $name: /" io.out
    grep -q '^not ok' io.out && fails=$((fails + 1))
    [ $rc -ne 0 ] && ! grep -q '^not ok' io.out && { echo "not ok - $name: guest-io exited with $rc"; fails=$((fails + 1)); }
}
[ -n "$dev_direct" ] && run "io_uring cache.direct=on" rw "$dev_direct" 1
[ -n "$dev_buffered" ] && run "io_uring cache.direct=off" rw "$dev_buffered" 2
[ -n "$dev_vhost" ] && run "virtio-blk-vhost-user" rw "$dev_vhost" 3
[ -n "$dev_ro" ] && run "io_uring read-only" ro "$dev_ro" 9
sync
exit $((fails != 0))
