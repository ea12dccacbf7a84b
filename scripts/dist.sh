#!/bin/sh
# Writes the release tarball blkio-VERSION.tar.xz: the committed sources of
# HEAD (git archive; uncommitted changes are not included) plus vendor/, the
# sources of every crate Cargo.lock pins (scripts/vendor.sh). Its contents
# build on a machine without network access:
#
#   scripts/dist.sh [OUTDIR]              (default: the current directory)
#   tar xf blkio-1.5.0.tar.xz && cd blkio-1.5.0
#   meson setup build -Doffline=true && meson compile -C build
#
# Making the tarball needs the network (or a warm cargo registry cache) to
# vendor. `meson dist` gives an equivalent tarball (it runs scripts/vendor.sh
# as its dist script). tests/dist/run.sh builds the tarball offline.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(cd "${1:-.}" && pwd)
version=$(sed -n "s/^project('blkio', version : '\([^']*\)'.*/\1/p" "$top/meson.build")
[ -n "$version" ] || { echo "dist.sh: no version in meson.build" >&2; exit 1; }
name=blkio-$version

stage=$(mktemp -d "${TMPDIR:-/tmp}/blkio-dist.XXXXXX")
trap 'rm -rf "$stage"' EXIT
git -C "$top" archive --format=tar --prefix="$name/" HEAD | tar -x -C "$stage"
"$top/scripts/vendor.sh" "$stage/$name"

# Reproducible: sorted names, no owners, every file dated like HEAD.
mtime=$(git -C "$top" log -1 --format=%ct HEAD)
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$mtime" -cf - "$name" | xz -6 > "$out/$name.tar.xz"
echo "$out/$name.tar.xz: $(du -h "$out/$name.tar.xz" | cut -f1)," \
    "$(find "$stage/$name" -type f | wc -l) files"
