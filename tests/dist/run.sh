#!/usr/bin/env bash
# The release tarball builds offline: scripts/dist.sh makes it (this step
# needs the network or a warm cargo cache, to vendor), then in a temporary
# directory it is unpacked and built with meson -Doffline=true, with an empty
# CARGO_HOME, CARGO_NET_OFFLINE=true and, where user namespaces allow it,
# inside `unshare -rn` (no network interface but loopback). The library it
# built then runs examples/demo.c (write a pattern through io_uring, read it
# back) and the tool it built runs `blkio info`.
# To keep the suite short the release profile is built without LTO and with
# parallel codegen (CARGO_PROFILE_RELEASE_*): that changes code generation
# only, not what is fetched or compiled.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/blkio-dist.XXXXXX")
trap 'rm -rf "$work"' EXIT

ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1"; }

start=$(date +%s)
if ! scripts/dist.sh "$work" > "$work/dist.log" 2>&1; then
    tail -20 "$work/dist.log"
    not_ok "scripts/dist.sh makes a tarball"
    exit 1
fi
tarball=$(ls "$work"/blkio-*.tar.xz)
size=$(stat -c %s "$tarball")
ok "scripts/dist.sh: $(basename "$tarball"), $((size / 1024)) KiB in $(($(date +%s) - start)) s"

mkdir "$work/clean"
tar -C "$work/clean" -xf "$tarball"
src=$(echo "$work"/clean/blkio-*)
if [ -f "$src/vendor/cargo-config.toml" ] && [ -f "$src/Cargo.lock" ] && [ ! -e "$src/.git" ]; then
    ok "the tarball holds the sources, Cargo.lock and vendor/ ($(find "$src/vendor" -mindepth 1 -maxdepth 1 -type d | wc -l) crates), no .git"
else
    not_ok "the tarball lacks vendor/cargo-config.toml or Cargo.lock, or has .git"
fi

isolate=()
if unshare -rn true 2> /dev/null; then
    isolate=(unshare -rn)
    net="no network (unshare -rn)"
else
    echo "skip - unshare -rn (no user namespaces here): only CARGO_NET_OFFLINE=true"
    net="CARGO_NET_OFFLINE=true only"
fi
mkdir "$work/cargo-home"
cargo=$(command -v cargo)
start=$(date +%s)
if (cd "$src" && env CARGO_HOME="$work/cargo-home" CARGO_NET_OFFLINE=true \
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_DEBUG=0 PATH="$(dirname "$cargo"):$PATH" \
    "${isolate[@]}" sh -c 'meson setup -Doffline=true --prefix "$1/prefix" build &&
        meson compile -C build && meson install -C build --no-rebuild' sh "$work") \
    > "$work/build.log" 2>&1; then
    ok "meson -Doffline=true builds and installs the unpacked tarball with an empty CARGO_HOME, $net ($(($(date +%s) - start)) s)"
else
    tail -30 "$work/build.log"
    not_ok "meson -Doffline=true build of the unpacked tarball ($net)"
    exit 1
fi
if grep -q -i 'Downloading\|Updating crates.io' "$work/build.log" ||
    [ -n "$(ls -A "$work/cargo-home/registry" 2> /dev/null)" ]; then
    not_ok "cargo fetched crates during the offline build"
else
    ok "cargo fetched nothing: CARGO_HOME has no registry afterwards"
fi

prefix=$work/prefix
lib=$(find "$prefix" -name libblkio.so.1 | head -1)
inc=$prefix/include
if [ -n "$lib" ] && cc -std=gnu11 -Wall -Werror -I"$inc" -o "$work/demo" "$root/examples/demo.c" \
    -L"$(dirname "$lib")" -l:libblkio.so.1 -Wl,-rpath,"$(dirname "$lib")" &&
    out=$(TMPDIR=$work "$work/demo" 2>&1) && grep -q '^demo: success' <<< "$out"; then
    ok "examples/demo.c on the offline-built library: pattern written and read back"
else
    echo "$out"
    not_ok "examples/demo.c on the offline-built library"
fi
img=$work/disk.img
truncate -s 1M "$img"
if info=$(LD_LIBRARY_PATH=$(dirname "$lib") "$prefix/bin/blkio" info io_uring path="$img" 2>&1) &&
    grep -q -E '^capacity +uint64 +r +1048576$' <<< "$info"; then
    ok "the offline-built blkio tool reports capacity 1048576 of a 1 MiB image"
else
    echo "$info" | head
    not_ok "the offline-built blkio tool: blkio info io_uring"
fi
