#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Unchanged QEMU tools against our libblkio.so.1.
#
# Builds (once, cached; tests/lib/trixie-rootfs.sh) a minimal Debian trixie
# root filesystem holding the distribution's qemu-utils and qemu-block-extra
# (whose block-blkio.so module links libblkio.so.1), then runs qemu-io / qemu-img inside it (chroot) with
# our freshly built libblkio.so.1 put in front of the distribution's copy via
# LD_LIBRARY_PATH, and proves that ours is the one that got mapped.
#
# Output: one `ok - ...`, `not ok - ...` or `skip - ...` line per check and a
# closing `N passed, M failed` line; the exit status is non-zero if any check
# failed.
#
# Environment:
#   BLKIO_QEMU_ROOTFS   cache directory of the root filesystem
#                       (default: <repo>/target/qemu-rootfs)
#   BLKIO_LIB           library to test (default: target/debug/libblkio.so,
#                       built with `cargo build --lib` first)
#   BLKIO_QEMU_REBUILD  set to 1 to rebuild the root filesystem
#
# Needs root (debootstrap, chroot, mounts). Without root every check is
# skipped. All mounts live in a private mount namespace (unshare) and are
# also unmounted by an EXIT trap (tests/lib/chroot-suite.sh).

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
self="$repo/tests/qemu/run.sh"
ROOTFS=${BLKIO_QEMU_ROOTFS:-$repo/target/qemu-rootfs}
LIBDIR_IN=/blkio-test/lib            # inside the chroot
WORK_IN=/blkio-test/work             # inside the chroot, shared with the host
ARCH_LIBDIR=/usr/lib/x86_64-linux-gnu

pass=0
fail=0
out=""   # output of the last command run by a check
LOGDIR="$repo/target/qemu-logs"   # full output of failed checks
rm -rf "$LOGDIR"
ok()     { echo "ok - $1"; pass=$((pass + 1)); }
not_ok() {
    fail=$((fail + 1))
    if [ -n "${out:-}" ]; then
        mkdir -p "$LOGDIR"
        printf '%s\n' "$out" >"$LOGDIR/failure-$fail.log"
    fi
    echo "not ok - $1${2:+: $2}${out:+ (output: target/qemu-logs/failure-$fail.log)}"
}
skip()   { echo "skip - $1"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
log()    { echo "# $*" >&2; }

# shellcheck source=../lib/chroot-suite.sh
. "$repo/tests/lib/chroot-suite.sh"
qsd_pid=""
CHROOT_PIDS=(qsd_pid)
chroot_suite_start "$self" "QEMU client tests" "$@"

# ---------------------------------------------------------------------------
# Root filesystem (cached)
# ---------------------------------------------------------------------------

t0=$(date +%s)
chroot_suite_rootfs "$ROOTFS"

# ---------------------------------------------------------------------------
# Library under test and the chroot's mounts
# ---------------------------------------------------------------------------

chroot_suite_library
scratch=$(mktemp -d "$repo/target/qemu-run.XXXXXX")
mkdir -p "$scratch/lib" "$scratch/work"
cp "$lib" "$scratch/lib/libblkio.so.1"
lib_sum=$(sha256sum <"$lib" | cut -d' ' -f1)
work="$scratch/work"     # the same directory is $WORK_IN in the chroot

chroot_mount_basics "$ROOTFS"
chroot_mnt "$ROOTFS/blkio-test" --bind "$scratch" || { not_ok "mount $scratch"; finish; }

T=120   # seconds allowed for any single command
# inchroot <cmd...>: run in the chroot with our library first in the path.
inchroot() {
    timeout -k 5 "$T" chroot "$ROOTFS" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        LD_LIBRARY_PATH="${CHROOT_LD_PATH-$LIBDIR_IN}" ${EXTRA_ENV:+"$EXTRA_ENV"} "$@"
}

# rc_problem <rc>: describe a crash or timeout, empty when the rc is ordinary.
rc_problem() {
    case $1 in
        124 | 137) echo "timed out after ${T}s" ;;
        1[3-9][0-9] | 2[0-5][0-9]) echo "killed by signal $(($1 - 128))" ;;
    esac
}

# expect_ok <desc> <cmd...>: command succeeds, prints no error or failed
# pattern verification.
expect_ok() {
    local desc=$1 rc prob
    shift
    out=$("$@" 2>&1)
    rc=$?
    prob=$(rc_problem "$rc")
    if [ "$rc" -ne 0 ]; then
        not_ok "$desc" "exit $rc${prob:+ ($prob)}; $(echo "$out" | grep -vE '^(wrote|read|discard) |ops/sec' | head -n 3 | tr '\n' ' ')"
    elif echo "$out" | grep -iE 'fail|error|abort|assert|mismatch' | grep -qv 'No errors were found'; then
        not_ok "$desc" "$(echo "$out" | grep -iE 'fail|error|abort|assert|mismatch' | head -n 3 | tr '\n' ' ')"
    else
        ok "$desc"
    fi
}

# expect_err <desc> <regex> <cmd...>: command fails cleanly (non-zero exit, no
# crash, no hang) and its output matches <regex>; then the same command with
# upstream's libblkio must print the very same text (messages are part of
# the contract, README.md of the spec).
expect_err() {
    local desc=$1 re=$2 rc prob ours up
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    ours=$out
    prob=$(rc_problem "$rc")
    if [ -n "$prob" ]; then
        not_ok "$desc" "$prob"
    elif [ "$rc" -eq 0 ]; then
        not_ok "$desc" "succeeded; expected an error matching /$re/"
    elif ! echo "$out" | grep -qE "$re"; then
        not_ok "$desc" "error does not match /$re/: $(echo "$out" | head -n 3 | tr '\n' ' ')"
    else
        ok "$desc: $(echo "$out" | grep -vE 'ops/sec|^(read|wrote) ' | head -n 1)"
    fi
    up=$(CHROOT_LD_PATH="" "$@" 2>&1)
    if [ "$ours" = "$up" ]; then
        ok "$desc: same output as upstream libblkio"
    else
        out="$(diff <(echo "$up") <(echo "$ours"))"
        not_ok "$desc: same output as upstream libblkio" \
            "$(echo "$out" | grep '^[<>]' | head -n 2 | tr '\n' ' ')"
    fi
}

qio() { inchroot qemu-io "$@"; }
qimg() { inchroot qemu-img "$@"; }

# ---------------------------------------------------------------------------
# Which library is used
# ---------------------------------------------------------------------------

module=$(find "$ROOTFS/usr/lib" -path '*/qemu/block-blkio.so' 2>/dev/null | head -n1)
if [ -n "$module" ] && readelf -d "$module" | grep -q 'NEEDED.*\[libblkio\.so\.1\]'; then
    ok "QEMU's ${module#"$ROOTFS"} links libblkio.so.1"
else
    not_ok "QEMU's block-blkio.so module exists and links libblkio.so.1" "${module:-module not found}"
    finish
fi
if [ -f "$ROOTFS$ARCH_LIBDIR/libblkio.so.1" ] &&
    [ "$(sha256sum <"$ROOTFS$ARCH_LIBDIR/libblkio.so.1" | cut -d' ' -f1)" != "$lib_sum" ]; then
    ok "the distribution's own libblkio.so.1 is installed and differs from ours"
else
    not_ok "the distribution's own libblkio.so.1 is installed and differs from ours"
fi

inchroot qemu-img create -q -f raw "$WORK_IN/probe.img" 1M >/dev/null 2>&1

# The dynamic linker's log names the copy that got initialised.
out=$(EXTRA_ENV=LD_DEBUG=libs qio --image-opts "driver=io_uring,filename=$WORK_IN/probe.img" -c 'read 0 512' 2>&1)
if echo "$out" | grep -q "calling init: $LIBDIR_IN/libblkio.so.1" &&
    ! echo "$out" | grep -qE "calling init: (/usr)?/lib/x86_64-linux-gnu/libblkio"; then
    ok "LD_DEBUG=libs: qemu-io initialised $LIBDIR_IN/libblkio.so.1, not the distribution's"
else
    not_ok "LD_DEBUG=libs: qemu-io initialised $LIBDIR_IN/libblkio.so.1" \
        "$(echo "$out" | grep -E 'libblkio|error' | head -n 3 | tr '\n' ' ')"
fi

# The mapping of a running qemu-io is byte-identical to the library we built.
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$LIBDIR_IN" \
    qemu-io --image-opts "driver=io_uring,filename=$WORK_IN/probe.img" \
    -c 'read 0 512' -c 'sleep 5000' >/dev/null 2>&1 &
pid=$!
mapped=""
for _ in $(seq 1 100); do
    mapped=$(awk '$6 ~ /libblkio\.so/ { print $1, $6; exit }' "/proc/$pid/maps" 2>/dev/null)
    [ -n "$mapped" ] && break
    sleep 0.05
done
map_sum=""
if [ -n "$mapped" ]; then
    # map_files/ opens the very file that is mapped, whatever its name.
    map_sum=$(sha256sum <"/proc/$pid/map_files/${mapped%% *}" | cut -d' ' -f1)
    map_dev=$(stat -L -c '%d:%i' "/proc/$pid/map_files/${mapped%% *}" 2>/dev/null)
    our_dev=$(stat -c '%d:%i' "$scratch/lib/libblkio.so.1")
fi
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -n "$mapped" ] && [ "$map_sum" = "$lib_sum" ] && [ "$map_dev" = "$our_dev" ]; then
    ok "/proc/PID/maps of a running qemu-io maps ${mapped#* } = our build (sha256 ${lib_sum:0:12}…)"
else
    not_ok "/proc/PID/maps of a running qemu-io maps our library" \
        "mapped '${mapped:-nothing}' sha256 ${map_sum:-none} inode ${map_dev:-?} vs ours $lib_sum inode ${our_dev:-?}"
    finish
fi

# ---------------------------------------------------------------------------
# The request script, run through blkio and through QEMU's file driver
# ---------------------------------------------------------------------------

# Each -c is one qemu-io command; every write is followed by a verifying read.
# Offsets, lengths and vector segments are multiples of 4 KiB here.
io_aligned=(
    -c 'write -P 0xab 0 4k' -c 'read -P 0xab 0 4k'
    -c 'write -P 0x11 64k 64k' -c 'read -P 0x11 64k 64k'
    -c 'write -P 0x44 8M 16M' -c 'read -P 0x44 8M 16M'
    # vectored
    -c 'writev -P 0x66 44M 4k 8k 1M' -c 'readv -P 0x66 44M 1M 12k'
    # concurrent
    -c 'aio_write -P 0x77 48M 64k' -c 'aio_write -P 0x78 49M 1M' -c 'aio_write -P 0x79 50M 100k'
    -c 'aio_write -P 0x7a 52M 4k 4k 4k' -c 'aio_flush'
    -c 'aio_read -P 0x77 48M 64k' -c 'aio_read -P 0x78 49M 1M' -c 'aio_read -P 0x79 50M 100k'
    -c 'aio_read -P 0x7a 52M 12k' -c 'aio_flush'
    # FUA
    -c 'write -f -P 0x88 53M 128k' -c 'read -P 0x88 53M 128k'
    -c 'writev -f -P 0x89 54M 4k 4k' -c 'read -P 0x89 54M 8k'
    # write zeroes with each flag combination (-u may unmap, -n no fallback)
    -c 'write -z 8M 1M' -c 'read -P 0 8M 1M' -c 'read -P 0x44 9M 4k'
    -c 'write -z -u 10M 1M' -c 'read -P 0 10M 1M'
    -c 'write -z -n 12M 64k' -c 'read -P 0 12M 64k'
    -c 'write -z -u -n 13M 64k' -c 'read -P 0 13M 64k'
    -c 'write -z -f 14M 64k' -c 'read -P 0 14M 64k'
    -c 'write -z -f -u 15M 64k' -c 'read -P 0 15M 64k' -c 'read -P 0x44 16M 4k'
    # discard and flush
    -c 'discard 18M 1M' -c 'discard 20M 4k'
    -c 'flush'
    -c 'write -P 0xcd 63M 1M' -c 'read -P 0xcd 63M 1M' -c 'flush'
)
# 300 requests in flight at once: more than an io_uring ring (num-entries
# 128) or a virtqueue (256 descriptors) holds, so the library's backlog works.
for i in $(seq 0 299); do
    io_aligned+=(-c "aio_write -P 0x91 $((41 * 1048576 + i * 4096)) 4k")
done
io_aligned+=(-c 'aio_flush')
for i in $(seq 0 299); do
    io_aligned+=(-c "aio_read -P 0x91 $((41 * 1048576 + i * 4096)) 4k")
done
io_aligned+=(-c 'aio_flush' -c 'read -P 0x91 41M 1200k')
# Odd offsets, lengths and segments, in ranges the aligned script leaves alone.
io_unaligned=(
    -c 'write -P 0x22 25166824 3000' -c 'read -P 0x22 25166824 3000'
    -c 'write -P 0x33 25170945 1' -c 'read -P 0x33 25170945 1' -c 'read -P 0x22 25169724 100'
    -c 'write -P 0x45 26214399 16777217' -c 'read -P 0x45 26214399 16777217'
    -c 'writev -P 0x67 45088769 100 200 300' -c 'readv -P 0x67 45088769 600'
    -c 'aio_write -P 0x7b 57671681 100000' -c 'aio_write -P 0x7c 58720768 3k' -c 'aio_flush'
    -c 'aio_read -P 0x7b 57671681 100000' -c 'aio_read -P 0x7c 58720768 1k 2k' -c 'aio_flush'
    -c 'write -f -P 0x8a 59768839 5000' -c 'read -P 0x8a 59768839 5000'
    -c 'write -P 0x5e 60M 2M' -c 'write -z 62914659 5000' -c 'read -P 0 62914659 5000'
    -c 'read -P 0x5e 60M 99' -c 'write -z -u 63964673 3000' -c 'read -P 0 63964673 3000'
    -c 'discard 65011713 4095' -c 'flush'
)
IMG_SIZE=64M

# The same requests through our library, QEMU's file driver and (for the
# differential checks) the distribution's upstream libblkio 1.5.0.
qio_ours()     { qio "$@"; }
qio_upstream() { CHROOT_LD_PATH="" qio "$@"; }
new_image() { inchroot qemu-img create -q -f raw "$WORK_IN/$1" $IMG_SIZE; }
# normalised <output>: drop timing lines, sort (aio completions interleave).
normalised() { echo "$1" | grep -v 'ops/sec' | sort; }
same_images() { # same_images <desc> <a> <b>
    if cmp -s "$work/$2" "$work/$3"; then
        ok "$1"
    else
        out="" not_ok "$1" "$(cmp "$work/$2" "$work/$3" 2>&1 | head -n1)"
    fi
}

for direct in on off; do
    script=("${io_aligned[@]}")
    what="aligned"
    # With cache.direct=on QEMU's blkio driver hands sub-sector head/tail
    # padding segments straight to O_DIRECT, which the kernel refuses; so do
    # upstream libblkio and QEMU (checked differentially below).
    if [ "$direct" = off ]; then
        script+=("${io_unaligned[@]}")
        what="aligned+unaligned"
    fi
    new_image "blkio-$direct.img"
    new_image "file-$direct.img"
    expect_ok "io_uring cache.direct=$direct, $what: patterns up to 16 MiB, vectored, concurrent, FUA, write-zeroes with each flag, discard, flush" \
        qio --image-opts "driver=io_uring,filename=$WORK_IN/blkio-$direct.img,cache.direct=$direct" "${script[@]}"
    expect_ok "file driver cache.direct=$direct, $what: the same script (reference)" \
        qio --image-opts "driver=file,filename=$WORK_IN/file-$direct.img,cache.direct=$direct" "${script[@]}"
    same_images "io_uring cache.direct=$direct: image byte-identical to QEMU's file driver" \
        "blkio-$direct.img" "file-$direct.img"
done

# Differential: the full script (unaligned parts included, also with
# cache.direct=on) must produce the same qemu-io output and the same image
# with our library as with upstream's. Discards are left out: upstream's
# io_uring discard uses a fallocate mode Linux refuses (QEMU ignores the
# error and the data stays), ours deallocates (docs/contract/requests.md §7.1 [Q]); the
# file-driver comparison above and the check below cover ours.
diff_script=()
for arg in "${io_aligned[@]}" "${io_unaligned[@]}"; do
    if [[ $arg == discard* ]]; then
        unset 'diff_script[-1]' # its -c
        continue
    fi
    diff_script+=("$arg")
done
out=$(EXTRA_ENV=LD_DEBUG=libs qio_upstream --image-opts "driver=io_uring,filename=$WORK_IN/probe.img" -c 'read 0 512' 2>&1)
if echo "$out" | grep -qE "calling init: (/usr)?/lib/x86_64-linux-gnu/libblkio\.so\.1$"; then
    ok "reference runs use the distribution's upstream libblkio ($(readlink "$ROOTFS$ARCH_LIBDIR/libblkio.so.1"))"
    for direct in on off; do
        new_image "ours-$direct.img"
        new_image "upstream-$direct.img"
        out_ours=$(qio_ours --image-opts "driver=io_uring,filename=$WORK_IN/ours-$direct.img,cache.direct=$direct" \
            "${diff_script[@]}" 2>&1)
        rc_ours=$?
        out_up=$(qio_upstream --image-opts "driver=io_uring,filename=$WORK_IN/upstream-$direct.img,cache.direct=$direct" \
            "${diff_script[@]}" 2>&1)
        rc_up=$?
        if [ "$rc_ours" = "$rc_up" ] && [ "$(normalised "$out_ours")" = "$(normalised "$out_up")" ]; then
            ok "io_uring cache.direct=$direct, full script without discard: qemu-io output and status identical to upstream libblkio (exit $rc_ours, $(echo "$out_ours" | grep -c 'failed') failed requests)"
        else
            out="$(diff <(normalised "$out_up") <(normalised "$out_ours"))"
            not_ok "io_uring cache.direct=$direct, full script without discard: qemu-io output identical to upstream libblkio" \
                "exit $rc_ours vs $rc_up; $(echo "$out" | grep '^[<>]' | head -n 4 | tr '\n' ' ')"
        fi
        same_images "io_uring cache.direct=$direct, full script without discard: image byte-identical to upstream libblkio's" \
            "ours-$direct.img" "upstream-$direct.img"
    done
else
    not_ok "reference runs use the distribution's upstream libblkio" \
        "$(echo "$out" | grep -E 'libblkio' | head -n 3 | tr '\n' ' ')"
fi

blk="driver=io_uring,filename=$WORK_IN/blkio-off.img"
expect_ok "io_uring: a new qemu-io process (cache.direct=on) reads back the patterns" \
    qio --image-opts "$blk,cache.direct=on" -c 'read -P 0xab 0 4k' -c 'read -P 0x44 16M 4k' \
    -c 'read -P 0 8M 1M' -c 'read -P 0xcd 63M 1M' -c 'readv -P 0x7a 52M 3k 9k' -c 'read -P 0x45 26218496 8M'

# ---------------------------------------------------------------------------
# qemu-img
# ---------------------------------------------------------------------------

expect_ok "qemu-img info through io_uring" qimg info --image-opts "$blk"
if echo "$out" | grep -q 'virtual size: 64 MiB (67108864 bytes)'; then
    ok "qemu-img info reports the capacity read through blkio (64 MiB)"
else
    not_ok "qemu-img info reports the capacity read through blkio" "$(echo "$out" | grep -i size)"
fi

# A qcow2 source with data and holes, written by QEMU's file driver.
src="$WORK_IN/src.qcow2"
inchroot qemu-img create -q -f qcow2 "$src" 32M
inchroot qemu-io -f qcow2 "$src" -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 5M 3333k' \
    -c 'write -P 0x02 20M 1M' -c 'write -P 0x01 31M 1M' -c 'write -z 2M 1M' >/dev/null
for direct in on off; do
    dst="$WORK_IN/convert-$direct.raw"
    inchroot qemu-img create -q -f raw "$dst" 32M
    # Fill the target with garbage so that zero ranges must really be written.
    inchroot qemu-io -f raw "$dst" -c 'write -P 0xee 0 32M' >/dev/null
    tgt="driver=io_uring,filename=$dst,cache.direct=$direct"
    expect_ok "qemu-img convert qcow2 -> io_uring target (cache.direct=$direct)" \
        qimg convert -n -f qcow2 "$src" --target-image-opts "$tgt"
    expect_ok "qemu-img compare: qcow2 source vs io_uring target (cache.direct=$direct)" \
        qimg compare --image-opts "driver=qcow2,file.driver=file,file.filename=$src" "driver=raw,file.driver=io_uring,file.filename=$dst,file.cache.direct=$direct"
    echo "$out" | grep -q 'Images are identical' ||
        not_ok "qemu-img compare says identical (cache.direct=$direct)" "$out"
    out_q="$WORK_IN/out-$direct.qcow2"
    expect_ok "qemu-img convert io_uring source -> qcow2 (cache.direct=$direct)" \
        qimg convert --image-opts "$tgt" -O qcow2 "$out_q"
    expect_ok "qemu-img compare: converted-out qcow2 vs original (file driver)" \
        qimg compare -f qcow2 -F qcow2 "$src" "$out_q"
done

# qcow2 metadata and data written through blkio (format driver over
# io_uring). Buffered: qcow2 reads its 104-byte header, which cache.direct=on
# turns into padded sub-sector segments that O_DIRECT refuses (upstream too).
q2="$WORK_IN/over-blkio.qcow2"
inchroot qemu-img create -q -f qcow2 "$q2" 32M
expect_ok "qemu-img convert into a qcow2 image stored through io_uring" \
    qimg convert -n -f qcow2 "$src" --target-image-opts "driver=qcow2,file.driver=io_uring,file.filename=$q2"
expect_ok "qemu-img check of that qcow2 image through io_uring" \
    qimg check --image-opts "driver=qcow2,file.driver=io_uring,file.filename=$q2"
expect_ok "qemu-img compare of that qcow2 image (file driver) with the source" \
    qimg compare -f qcow2 -F qcow2 "$src" "$q2"
q2opts="driver=qcow2,file.driver=io_uring,file.filename=$q2,file.cache.direct=on"
out_ours=$(qimg info --image-opts "$q2opts" 2>&1)
rc_ours=$?
out_up=$(CHROOT_LD_PATH="" qimg info --image-opts "$q2opts" 2>&1)
rc_up=$?
if [ "$rc_ours" = "$rc_up" ] && [ "$out_ours" = "$out_up" ] && [ -z "$(rc_problem "$rc_ours")" ]; then
    ok "qcow2 over io_uring with cache.direct=on: same outcome as upstream libblkio (exit $rc_ours)"
else
    out="$out_ours"
    not_ok "qcow2 over io_uring with cache.direct=on: same outcome as upstream libblkio" \
        "exit $rc_ours vs $rc_up: $(echo "$out_ours" | head -n 1) / $(echo "$out_up" | head -n 1)"
fi

# qemu-img bench: write a pattern with queue depth 16, then read it back.
bench="$WORK_IN/bench.img"
inchroot qemu-img create -q -f raw "$bench" 16M
for direct in on off; do
    expect_ok "qemu-img bench write, depth 16 (cache.direct=$direct)" \
        qimg bench -w -c 2048 -d 16 -s 4k --pattern=0x3c --image-opts "driver=io_uring,filename=$bench,cache.direct=$direct"
    expect_ok "qemu-img bench read, depth 16 (cache.direct=$direct)" \
        qimg bench -c 2048 -d 16 -s 4k --image-opts "driver=io_uring,filename=$bench,cache.direct=$direct"
    expect_ok "data written by qemu-img bench verifies (cache.direct=$direct)" \
        qio -f raw "$bench" -c 'read -P 0x3c 0 8M' -c 'read -P 0 8M 8M'
    inchroot qemu-io -f raw "$bench" -c 'write -z 0 16M' >/dev/null
done

# Discard deallocates: the range reads back as zeroes and its blocks are freed.
for direct in on off; do
    new_image "discard-$direct.img"
    inchroot qemu-io -f raw "$WORK_IN/discard-$direct.img" -c 'write -P 0x44 0 4M' >/dev/null
    before=$(stat -c %b "$work/discard-$direct.img")
    expect_ok "io_uring cache.direct=$direct: discard of 1 MiB reads back as zeroes, neighbours intact" \
        qio --image-opts "driver=io_uring,filename=$WORK_IN/discard-$direct.img,cache.direct=$direct" \
        -c 'discard 1M 1M' -c 'read -P 0 1M 1M' -c 'read -P 0x44 0 1M' -c 'read -P 0x44 2M 2M'
    after=$(stat -c %b "$work/discard-$direct.img")
    if [ "$after" -lt "$before" ] && [ "$(stat -c %s "$work/discard-$direct.img")" = 67108864 ]; then
        ok "io_uring cache.direct=$direct: discard freed blocks ($before -> $after) and kept the size"
    else
        out="" not_ok "io_uring cache.direct=$direct: discard freed blocks and kept the size" "$before -> $after blocks"
    fi
done

# ---------------------------------------------------------------------------
# Read-only opens and bad paths
# ---------------------------------------------------------------------------

expect_ok "read-only open (qemu-io -r) reads" qio -r --image-opts "$blk" -c 'read -P 0xab 0 512'
expect_err "read-only open refuses a write" 'read-only|Permission denied|Bad file descriptor' \
    qio -r --image-opts "$blk" -c 'write -P 0 0 512'
expect_err "read-only open refuses write-zeroes" 'read-only|Permission denied|Bad file descriptor' \
    qio -r --image-opts "$blk" -c 'write -z 0 512'
expect_ok "image unchanged after refused writes" qio -r --image-opts "$blk" -c 'read -P 0xab 0 512'
expect_err "missing path: clean error" 'No such file or directory' \
    qio --image-opts "driver=io_uring,filename=$WORK_IN/does-not-exist" -c 'read 0 512'
expect_err "missing path (qemu-img info): clean error" 'No such file or directory' \
    qimg info --image-opts "driver=io_uring,filename=$WORK_IN/does-not-exist"
mkdir -p "$work/dir"
expect_err "directory: clean error" 'must be a block device or a regular file|Is a directory' \
    qio --image-opts "driver=io_uring,filename=$WORK_IN/dir" -c 'read 0 512'
expect_err "directory, read-only: clean error" 'must be a block device or a regular file|Is a directory' \
    qio -r --image-opts "driver=io_uring,filename=$WORK_IN/dir" -c 'read 0 512'
expect_err "character device /dev/null: clean error" 'must be a block device or a regular file' \
    qio -r --image-opts "driver=io_uring,filename=/dev/null" -c 'read 0 512'

# ---------------------------------------------------------------------------
# vhost-user against a qemu-storage-daemon on the host
# ---------------------------------------------------------------------------

# The vhost-user script: QEMU's blkio driver ignores max-write-zeroes-len
# and max-discard-len (16 MiB with qemu-storage-daemon, which answers larger
# requests with EIO) and unaligned discards fail with EINVAL, upstream
# libblkio included; those cases are compared with upstream in vu_edge.
vu_script=()
for arg in "${io_aligned[@]}" "${io_unaligned[@]}"; do
    if [ "$arg" = 'discard 65011713 4095' ]; then
        unset 'vu_script[-1]'
        continue
    fi
    vu_script+=("$arg")
done
vu_edge=(-c 'write -z 0 17M' -c 'write -z -u 1M 20M' -c 'discard 0 20M' -c 'discard 65011713 4095'
    -c 'discard 1M 4095' -c 'read -P 0xab 0 4k' -c 'read -P 0x44 16M 4k')

vhost_user_tests() {
    local i vu vu_up vu_raw vu_raw_up ref="vhost-ref.img"
    local sock_in="$WORK_IN/vhost.sock" sock_up_in="$WORK_IN/vhost-up.sock"
    rm -f "$work/vhost.sock" "$work/vhost-up.sock"
    truncate -s $IMG_SIZE "$work/vhost-ours.img" "$work/vhost-up.img"
    new_image "$ref"
    # Two exports: one driven by our library, one by upstream's (the
    # differential); discard=unmap so that discards reach the file as with
    # qemu-io's file driver.
    timeout -k 5 900 qemu-storage-daemon \
        --blockdev "driver=file,node-name=ours,filename=$work/vhost-ours.img,discard=unmap" \
        --export "type=vhost-user-blk,id=exp0,node-name=ours,addr.type=unix,addr.path=$work/vhost.sock,writable=on" \
        --blockdev "driver=file,node-name=up,filename=$work/vhost-up.img,discard=unmap" \
        --export "type=vhost-user-blk,id=exp1,node-name=up,addr.type=unix,addr.path=$work/vhost-up.sock,writable=on" \
        >"$work/qsd.log" 2>&1 &
    qsd_pid=$!
    for i in $(seq 1 100); do
        [ -S "$work/vhost.sock" ] && [ -S "$work/vhost-up.sock" ] && break
        sleep 0.1
    done
    if [ ! -S "$work/vhost.sock" ] || [ ! -S "$work/vhost-up.sock" ]; then
        out=$(cat "$work/qsd.log")
        not_ok "qemu-storage-daemon serves two vhost-user-blk exports" "$(echo "$out" | head -n 2 | tr '\n' ' ')"
        return
    fi
    vu="driver=virtio-blk-vhost-user,path=$sock_in,cache.direct=on"
    vu_up="driver=virtio-blk-vhost-user,path=$sock_up_in,cache.direct=on"
    vu_raw="driver=raw,file.driver=virtio-blk-vhost-user,file.path=$sock_in,file.cache.direct=on"
    vu_raw_up="driver=raw,file.driver=virtio-blk-vhost-user,file.path=$sock_up_in,file.cache.direct=on"

    # virtio-blk needs memory regions: QEMU bounces every request through
    # its pool, so odd offsets and segments work here.
    expect_ok "vhost-user, aligned+unaligned: patterns up to 16 MiB, vectored, concurrent, FUA, write-zeroes with each flag, discard, flush" \
        qio --image-opts "$vu" "${vu_script[@]}"
    out_ours=$out
    expect_ok "file driver: the same script (vhost-user reference)" \
        qio --image-opts "driver=file,filename=$WORK_IN/$ref" "${vu_script[@]}"
    out_up=$(qio_upstream --image-opts "$vu_up" "${vu_script[@]}" 2>&1)
    if [ "$(normalised "$out_ours")" = "$(normalised "$out_up")" ]; then
        ok "vhost-user: qemu-io output identical to upstream libblkio's"
    else
        out="$(diff <(normalised "$out_up") <(normalised "$out_ours"))"
        not_ok "vhost-user: qemu-io output identical to upstream libblkio's" \
            "$(echo "$out" | grep '^[<>]' | head -n 4 | tr '\n' ' ')"
    fi
    expect_ok "vhost-user: qemu-img compare with the file-driver reference" \
        qimg compare --image-opts "$vu_raw" "driver=raw,file.driver=file,file.filename=$WORK_IN/$ref"
    out_ours=$(qio --image-opts "$vu" "${vu_edge[@]}" 2>&1)
    rc_ours=$?
    out_up=$(qio_upstream --image-opts "$vu_up" "${vu_edge[@]}" 2>&1)
    rc_up=$?
    if [ "$rc_ours" = "$rc_up" ] && [ "$(normalised "$out_ours")" = "$(normalised "$out_up")" ]; then
        ok "vhost-user: oversized write-zeroes/discard and unaligned discard end as with upstream libblkio ($(echo "$out_ours" | grep -c failed) refused)"
    else
        out="$(diff <(normalised "$out_up") <(normalised "$out_ours"))"
        not_ok "vhost-user: oversized write-zeroes/discard and unaligned discard end as with upstream libblkio" \
            "exit $rc_ours vs $rc_up; $(echo "$out" | grep '^[<>]' | head -n 4 | tr '\n' ' ')"
    fi
    expect_ok "vhost-user: qemu-img info" qimg info --image-opts "$vu"
    if echo "$out" | grep -q 'virtual size: 64 MiB (67108864 bytes)'; then
        ok "vhost-user: qemu-img info reports the export's capacity (64 MiB)"
    else
        not_ok "vhost-user: qemu-img info reports the export's capacity" "$(echo "$out" | grep -i size)"
    fi

    # qemu-img on the first 32 MiB of the export (a raw node with size=32M).
    # Every step is repeated silently with upstream on the other export, so
    # that both exports must end up byte-identical.
    expect_ok "vhost-user: qemu-img convert qcow2 -> vhost-user export" \
        qimg convert -n -f qcow2 "$src" --target-image-opts "$vu_raw,size=32M"
    CHROOT_LD_PATH="" qimg convert -n -f qcow2 "$src" --target-image-opts "$vu_raw_up,size=32M" >/dev/null 2>&1
    expect_ok "vhost-user: qemu-img compare qcow2 source with the export" \
        qimg compare --image-opts "driver=qcow2,file.driver=file,file.filename=$src" "$vu_raw,size=32M"
    expect_ok "vhost-user: qemu-img convert vhost-user export -> qcow2" \
        qimg convert --image-opts "$vu_raw,size=32M" -O qcow2 "$WORK_IN/vhost-out.qcow2"
    expect_ok "vhost-user: converted-out image identical to the source" \
        qimg compare -f qcow2 -F qcow2 "$src" "$WORK_IN/vhost-out.qcow2"
    expect_ok "vhost-user: qemu-img bench write, depth 16" \
        qimg bench -w -c 2048 -d 16 -s 4k -o 32M --pattern=0x3c --image-opts "$vu"
    CHROOT_LD_PATH="" qimg bench -w -c 2048 -d 16 -s 4k -o 32M --pattern=0x3c --image-opts "$vu_up" >/dev/null 2>&1
    expect_ok "vhost-user: qemu-img bench read, depth 16" \
        qimg bench -c 2048 -d 16 -s 4k -o 32M --image-opts "$vu"
    expect_ok "vhost-user: bench data verifies" qio --image-opts "$vu" -c 'read -P 0x3c 32M 8M'
    expect_err "vhost-user: cache.direct=off refused cleanly" 'cache.direct=off is not supported' \
        qio --image-opts "driver=virtio-blk-vhost-user,path=$sock_in,cache.direct=off" -c 'read 0 512'
    expect_err "vhost-user: read-only open refuses a write" 'read-only|Bad file descriptor' \
        qio -r --image-opts "$vu" -c 'write -P 0 0 512'
    stop_pid qsd_pid
    same_images "vhost-user: export driven by our library byte-identical to upstream's after the daemon exits" \
        "vhost-ours.img" "vhost-up.img"
    expect_err "vhost-user: missing socket: clean error" 'No such file or directory' \
        qio --image-opts "driver=virtio-blk-vhost-user,path=$WORK_IN/no-such.sock,cache.direct=on" -c 'read 0 512'
    expect_err "vhost-user: regular file instead of a socket: clean error" 'blkio_connect failed' \
        qio --image-opts "driver=virtio-blk-vhost-user,path=$WORK_IN/$ref,cache.direct=on" -c 'read 0 512'
    expect_err "vhost-user: directory instead of a socket: clean error" 'blkio_connect failed' \
        qio --image-opts "driver=virtio-blk-vhost-user,path=$WORK_IN/dir,cache.direct=on" -c 'read 0 512'
    expect_err "vhost-user: stale socket (daemon gone): clean error" 'blkio_connect failed' \
        qio --image-opts "$vu" -c 'read 0 512'
}

# Does our library have the vhost-user driver? Ask it (blkio_create).
probe_c="$work/probe-driver.c"
cat >"$probe_c" <<'EOF'
#include <blkio.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    struct blkio *b = NULL;
    int ret = blkio_create(argc > 1 ? argv[1] : "", &b);
    if (ret < 0) {
        printf("%s\n", blkio_get_error_msg());
        return 1;
    }
    blkio_destroy(&b);
    return 0;
}
EOF
vhost_reason=""
if ! cc -Wall -Wextra -Werror -I"$repo/include" "$probe_c" -L"$scratch/lib" -l:libblkio.so.1 \
    -o "$work/probe-driver" 2>"$work/probe-cc.log"; then
    not_ok "compile the driver probe" "$(head -n 3 "$work/probe-cc.log" | tr '\n' ' ')"
    vhost_reason="driver probe did not compile"
elif ! probe_out=$(LD_LIBRARY_PATH="$scratch/lib" timeout 30 "$work/probe-driver" virtio-blk-vhost-user); then
    vhost_reason="blkio_create(\"virtio-blk-vhost-user\") fails: $probe_out"
elif ! command -v qemu-storage-daemon >/dev/null; then
    vhost_reason="qemu-storage-daemon is not installed on the host"
fi
if [ -n "$vhost_reason" ]; then
    skip "vhost-user checks: $vhost_reason"
else
    vhost_user_tests
fi

log "total time $(($(date +%s) - t0)) s"
chroot_cleanup
finish
