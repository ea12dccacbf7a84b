#!/bin/sh
# Unpacks upstream libblkio 1.5.0 (Debian trixie's libblkio1) into a cache
# directory and prints the directory holding its libblkio.so.1. It is only a
# measuring stick for benches/run.sh: never installed, never linked into or
# shipped with this project.
# Usage: benches/upstream.sh [CACHE_DIR]   (default target/upstream)
set -e
cd "$(dirname "$0")/.."
CACHE=${1:-target/upstream}
VERSION=1.5.0-2
DEB=libblkio1_${VERSION}_amd64.deb
SHA256=b9f848d8707d35b8c0f89c5766db45907d57069ed0e8394f41c51b34df6a28e3
LIBDIR=$CACHE/root/usr/lib/x86_64-linux-gnu
if [ -e "$LIBDIR/libblkio.so.1" ]; then
    echo "$LIBDIR"
    exit 0
fi
mkdir -p "$CACHE"
cd "$CACHE"
# apt-get download works when the apt sources reach trixie (or later, with
# the same version); otherwise the pinned file from the Debian pool.
if ! [ -e "$DEB" ]; then
    apt-get download "libblkio1=$VERSION" >/dev/null 2>&1 ||
        curl -sSfLO "http://deb.debian.org/debian/pool/main/libb/libblkio/$DEB" ||
        wget -q "http://deb.debian.org/debian/pool/main/libb/libblkio/$DEB"
fi
echo "$SHA256  $DEB" | sha256sum -c --quiet - >&2
rm -rf root
dpkg-deb -x "$DEB" root
cd - >/dev/null
echo "$LIBDIR"
