# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Shared by the suites that run Debian trixie's unchanged QEMU binaries on
# our library (tests/qemu, tests/qemu-vm). Source it, then call
#
#   trixie_rootfs ROOTFS
#
# which makes sure ROOTFS is a minimal trixie root filesystem holding
# TRIXIE_PACKAGES (debootstrap the first time, a few minutes; later runs
# only check a stamp file). A cached root filesystem from an older package
# list is completed with apt-get inside it instead of being rebuilt.
# On return fd 9 holds a shared lock on ROOTFS.lock, so a rebuild by another
# run waits until this one is done. Progress goes to stderr; TRIXIE_MSG is
# set to one line saying what was done (or what failed); the status is
# non-zero on failure. Do not call it in a subshell (the lock would go).
#
# Needs root and a private mount namespace (the caller's unshare): the
# build mounts /proc and /dev inside ROOTFS and unmounts them again.
# BLKIO_QEMU_REBUILD=1 forces a fresh debootstrap.

TRIXIE_SUITE=trixie
# qemu-utils: qemu-img, qemu-io, qemu-storage-daemon; qemu-block-extra:
# block-blkio.so (links libblkio.so.1, so the distribution's libblkio1 comes
# along); qemu-system-x86 and seabios: the virtual machine of tests/qemu-vm.
TRIXIE_PACKAGES=(qemu-utils qemu-block-extra qemu-system-x86 seabios)
TRIXIE_LAYOUT=1

_trixie_log() { echo "# $*" >&2; }

# The Debian mirror this host's apt already uses (deb822 or one-line format).
_trixie_mirror() {
    local f uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'tolower($1) == "uris:" { print $2; exit }' "$f")
        case "$uri" in */debian | */debian/) break ;; *) uri="" ;; esac
    done
    if [ -z "$uri" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' "$f" |
                grep -E '/debian/?$' | head -n1)
            [ -n "$uri" ] && break
        done
    fi
    echo "${uri%/}"
}

_trixie_stamp() { # _trixie_stamp PACKAGE...: the stamp line for that set
    echo "suite=$TRIXIE_SUITE variant=minbase packages=$* layout=$TRIXIE_LAYOUT"
}

# _trixie_apt DIR PACKAGE...: apt-get update + install inside DIR.
_trixie_apt() {
    local dir=$1 rc=0
    shift
    mkdir -p "$dir/proc" "$dir/dev"
    mount -t proc proc "$dir/proc" || return 1
    if ! mount --bind /dev "$dir/dev"; then
        umount -l "$dir/proc"
        return 1
    fi
    cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null
    local env=(/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive)
    timeout 600 chroot "$dir" "${env[@]}" apt-get update -q >&2 &&
        timeout 1200 chroot "$dir" "${env[@]}" \
            apt-get install -y -q --no-install-recommends "$@" >&2 || rc=1
    timeout 120 chroot "$dir" apt-get clean >&2
    umount -l "$dir/dev" "$dir/proc"
    return $rc
}

_trixie_build() { # _trixie_build ROOTFS
    local rootfs=$1 mirror tmp
    mirror=$(_trixie_mirror)
    if [ -z "$mirror" ]; then
        echo "cannot find the Debian mirror in /etc/apt/sources.list*" >&2
        return 1
    fi
    if ! command -v debootstrap >/dev/null; then
        _trixie_log "installing debootstrap on the host"
        timeout 600 apt-get install -y -q debootstrap >&2 ||
            { timeout 600 apt-get update -q >&2 && timeout 600 apt-get install -y -q debootstrap >&2; } ||
            return 1
    fi
    tmp="$rootfs.partial"
    rm -rf "$tmp" "$rootfs"
    _trixie_log "debootstrap $TRIXIE_SUITE from $mirror into $rootfs (takes a few minutes)"
    timeout 1800 debootstrap --variant=minbase "$TRIXIE_SUITE" "$tmp" "$mirror" >&2 || return 1
    _trixie_apt "$tmp" "${TRIXIE_PACKAGES[@]}" || return 1
    mkdir -p "$tmp/blkio-test"
    _trixie_stamp "${TRIXIE_PACKAGES[*]}" >"$tmp/.blkio-rootfs-complete"
    mv "$tmp" "$rootfs"
}

trixie_rootfs() { # trixie_rootfs ROOTFS
    local rootfs=$1 stamp="$1/.blkio-rootfs-complete" have="" p missing=() t0
    t0=$(date +%s)
    mkdir -p "$(dirname "$rootfs")"
    # Exclusive while checking/building, shared while using.
    exec 9>"$rootfs.lock"
    if ! timeout 3600 flock 9; then
        TRIXIE_MSG="timed out waiting for the lock $rootfs.lock"
        return 1
    fi
    if [ -f "$stamp" ]; then
        have=$(sed -n "s/^suite=$TRIXIE_SUITE variant=minbase packages=\(.*\) layout=$TRIXIE_LAYOUT\$/\1/p" "$stamp")
    fi
    if [ "${BLKIO_QEMU_REBUILD:-0}" = 1 ] || [ -z "$have" ]; then
        if ! _trixie_build "$rootfs"; then
            TRIXIE_MSG="building the Debian $TRIXIE_SUITE root filesystem failed (see the log above)"
            return 1
        fi
        TRIXIE_MSG="built Debian $TRIXIE_SUITE root filesystem with ${TRIXIE_PACKAGES[*]} ($(($(date +%s) - t0)) s)"
    else
        for p in "${TRIXIE_PACKAGES[@]}"; do
            [[ " $have " == *" $p "* ]] || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            _trixie_log "adding ${missing[*]} to the cached root filesystem $rootfs"
            if ! _trixie_apt "$rootfs" "${missing[@]}"; then
                TRIXIE_MSG="installing ${missing[*]} into $rootfs failed (see the log above)"
                return 1
            fi
            _trixie_stamp "$have ${missing[*]}" >"$stamp"
            TRIXIE_MSG="added ${missing[*]} to the cached Debian $TRIXIE_SUITE root filesystem ($(($(date +%s) - t0)) s)"
        else
            TRIXIE_MSG="using the cached Debian $TRIXIE_SUITE root filesystem $rootfs"
        fi
    fi
    flock -s 9
}
