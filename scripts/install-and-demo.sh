#!/usr/bin/env bash
# From a fresh Debian bookworm machine (Rust toolchain, gcc, git) to an
# installed libblkio and a real I/O demo, in one command:
#
#   scripts/install-and-demo.sh [PREFIX]        (default: $PREFIX or /usr/local)
#
# 1. installs meson, ninja-build, pkg-config, pandoc (manual pages) and man-db
#    with apt when they are missing
# 2. builds the library with meson (cargo build --release) in ./build
# 3. installs it into PREFIX (with sudo when PREFIX is not writable)
# 4. compiles examples/demo.c with `cc demo.c $(pkg-config --cflags --libs blkio)`
#    and runs it on a temporary image file: it writes a pattern through the
#    io_uring driver and reads it back
# 5. shows the installed `blkio` tool on the same image (info, copy --verify)
#    and its installed bash completion
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=$(realpath -m "${1:-${PREFIX:-/usr/local}}")
build=build
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)

step() { printf '\n==> %s\n' "$*"; }

step "build tools"
missing=()
for pair in meson:meson ninja:ninja-build pkg-config:pkg-config pandoc:pandoc man:man-db; do
    command -v "${pair%%:*}" > /dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "meson $(meson --version), ninja $(ninja --version), pkg-config $(pkg-config --version)"
fi

step "meson setup + compile (prefix $prefix)"
if [ -d "$build/meson-private" ]; then
    meson configure "$build" -Dprefix="$prefix"
else
    meson setup "$build" --prefix "$prefix"
fi
meson compile -C "$build"

step "install into $prefix"
mkdir -p "$prefix" 2> /dev/null || true
if [ -w "$prefix" ]; then
    meson install -C "$build" --no-rebuild
else
    "${as_root[@]}" meson install -C "$build" --no-rebuild
fi
libdir=$(meson introspect "$build" --buildoptions |
    python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
libdir=$(realpath -m "$prefix/$libdir")
# A system library directory needs the loader cache refreshed.
if [ -e /etc/ld.so.conf ] && grep -qrx "$libdir" /etc/ld.so.conf /etc/ld.so.conf.d 2> /dev/null; then
    "${as_root[@]}" ldconfig
fi

step "pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
echo "PKG_CONFIG_PATH=$PKG_CONFIG_PATH"
echo "pkg-config --modversion blkio: $(pkg-config --modversion blkio)"
echo "pkg-config --cflags --libs blkio: $(pkg-config --cflags --libs blkio)"

step "demo: examples/demo.c against the installed library"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The rpath lets the demo find libblkio.so.1 in a non-system PREFIX.
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
cc -Wall -Wextra -Werror -o "$tmp/demo" examples/demo.c \
    $(pkg-config --cflags --libs blkio) -Wl,-rpath,"$(pkg-config --variable=libdir blkio)"
echo "demo uses: $(ldd "$tmp/demo" | awk '/libblkio/ {print $1, $2, $3}')"
image=$tmp/disk.img
truncate -s 1M "$image"
"$tmp/demo" "$image"

step "the blkio tool: $prefix/bin/blkio"
blkio=$prefix/bin/blkio
echo "\$ blkio info io_uring path=$image"
"$blkio" info io_uring path="$image" | sed -n '1p; /^\(driver\|capacity\|request-alignment\|max-queues\) /p'
echo "\$ blkio copy $image $tmp/copy.img --verify"
"$blkio" copy "$image" "$tmp/copy.img" --verify
completion=$prefix/share/bash-completion/completions/blkio
echo "\$ bash -c 'source $completion; complete -p blkio'"
bash -c 'source "$1" && complete -p blkio' _ "$completion"
