# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The scaffolding shared by the suites that run Debian trixie's unchanged
# QEMU binaries on our library inside a chroot (tests/qemu, tests/qemu-vm).
# A suite defines ok, not_ok, skip, log and finish (its report lines),
# sources this file and then uses:
#
#   chroot_suite_start SELF WHAT [ARGS...]
#       without root: "skip - WHAT need root ..." and finish; otherwise
#       re-executes SELF once in a private mount namespace (every mount of
#       the run vanishes with it, even after SIGKILL) and installs the EXIT
#       trap (chroot_cleanup) and an INT/TERM trap.
#   chroot_suite_rootfs ROOTFS
#       the cached trixie root filesystem (tests/lib/trixie-rootfs.sh):
#       "ok" when it was built or completed, a log line when it was only
#       used, "not ok" and finish when it fails.
#   chroot_suite_library
#       sets lib: $BLKIO_LIB, or target/debug/libblkio.so after
#       `cargo build --lib`; "not ok" and finish when there is none.
#   chroot_mount_basics ROOTFS
#       /proc, /sys (read-only), /dev and a fresh /tmp inside ROOTFS;
#       "not ok" and finish when one fails.
#   chroot_mnt TARGET MOUNT-ARGS...
#       one more mount (TARGET created first), undone by chroot_cleanup.
#   stop_pid VAR
#       kills and reaps the process whose PID the variable VAR holds, then
#       empties VAR (nothing when VAR is empty).
#   chroot_cleanup
#       stop_pid for every variable named in CHROOT_PIDS (in order), the
#       mounts undone newest first, and the directory $scratch removed
#       (kept, and logged, when CHROOT_KEEP=1). Runs at exit; a suite may
#       call it earlier. Safe to call twice.
#
# Variables a suite sets: CHROOT_PIDS (names of its PID variables),
# scratch (its scratch directory, once made), CHROOT_KEEP.

# shellcheck source=trixie-rootfs.sh
. "$(dirname "${BASH_SOURCE[0]}")/trixie-rootfs.sh"

_chroot_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
chroot_mounts=()
CHROOT_PIDS=()
CHROOT_KEEP=${CHROOT_KEEP:-0}
scratch=${scratch:-}

chroot_suite_start() { # chroot_suite_start SELF WHAT [ARGS...]
    local self=$1 what=$2
    shift 2
    if [ "$(id -u)" -ne 0 ]; then
        skip "$what need root (debootstrap, chroot, mounts)"
        finish
    fi
    # The namespace is entered once per suite script (a suite started from
    # inside another one's namespace still gets its own).
    if [ "${BLKIO_CHROOT_NS:-}" != "$self" ]; then
        BLKIO_CHROOT_NS=$self exec unshare --mount --propagation private -- bash "$self" "$@"
    fi
    trap chroot_cleanup EXIT
    trap 'exit 130' INT TERM
}

stop_pid() { # stop_pid VAR
    local -n _pid=$1
    if [ -n "$_pid" ]; then
        kill "$_pid" 2>/dev/null
        wait "$_pid" 2>/dev/null
    fi
    _pid=""
}

chroot_cleanup() {
    local i v
    for v in "${CHROOT_PIDS[@]}"; do
        stop_pid "$v"
    done
    for ((i = ${#chroot_mounts[@]} - 1; i >= 0; i--)); do
        umount -l "${chroot_mounts[i]}" 2>/dev/null
    done
    chroot_mounts=()
    if [ -n "$scratch" ] && [ "$CHROOT_KEEP" = 1 ]; then
        log "kept $scratch"
    elif [ -n "$scratch" ]; then
        rm -rf "$scratch"
    fi
    scratch=""
}

chroot_mnt() { # chroot_mnt TARGET MOUNT-ARGS...
    local target=$1
    shift
    mkdir -p "$target"
    mount "$@" "$target" && chroot_mounts+=("$target")
}

chroot_suite_rootfs() { # chroot_suite_rootfs ROOTFS
    if trixie_rootfs "$1"; then
        case $TRIXIE_MSG in using*) log "$TRIXIE_MSG" ;; *) ok "$TRIXIE_MSG" ;; esac
    else
        not_ok "Debian trixie root filesystem" "$TRIXIE_MSG"
        finish
    fi
}

chroot_suite_library() {
    if [ -n "${BLKIO_LIB:-}" ]; then
        lib=$BLKIO_LIB
    else
        (cd "$_chroot_repo" && timeout 1800 cargo build --lib -q) || { not_ok "cargo build --lib"; finish; }
        lib="$_chroot_repo/target/debug/libblkio.so"
    fi
    [ -f "$lib" ] || { not_ok "library $lib exists"; finish; }
}

chroot_mount_basics() { # chroot_mount_basics ROOTFS
    local root=$1
    chroot_mnt "$root/proc" -t proc proc || { not_ok "mount /proc"; finish; }
    chroot_mnt "$root/sys" --bind /sys && mount -o remount,bind,ro "$root/sys"
    chroot_mnt "$root/dev" --bind /dev || { not_ok "mount /dev"; finish; }
    chroot_mnt "$root/tmp" -t tmpfs tmpfs || { not_ok "mount /tmp"; finish; }
}
