#!/bin/sh
# Used by meson.build: builds the cargo workspace's default members (the
# library and the blkio tool) in release mode (into $CARGO_TARGET_DIR, which
# meson points inside its build directory) and copies the artifacts to the
# file names meson installs. With BLKIO_VENDOR_DIR set it builds offline from
# the vendored crates there.
#
# usage: meson-cargo-build.sh CARGO MANIFEST OUT_SO OUT_A OUT_BIN
#   OUT_SO   receives target/release/libblkio.so   (e.g. libblkio.so.1.5.0)
#   OUT_A    receives target/release/libblkio.a
#   OUT_BIN  receives target/release/blkio         (the CLI, package blkio-cli)
set -eu
[ $# -eq 5 ] || { echo "usage: $0 CARGO MANIFEST OUT_SO OUT_A OUT_BIN" >&2; exit 2; }
cargo=$1 manifest=$2 out_so=$3 out_a=$4 out_bin=$5
release=${CARGO_TARGET_DIR:?CARGO_TARGET_DIR must be set}/release

# BLKIO_VENDOR_DIR (meson -Doffline=true): the crates come from that
# directory instead of crates.io, and cargo must not use the network.
if [ -n "${BLKIO_VENDOR_DIR:-}" ]; then
    set -- --offline \
        --config 'source.crates-io.replace-with="vendored-sources"' \
        --config "source.vendored-sources.directory=\"$BLKIO_VENDOR_DIR\""
else
    set --
fi
"$cargo" build --release --locked --manifest-path "$manifest" "$@"
cp -f "$release/libblkio.so" "$out_so"
cp -f "$release/libblkio.a" "$out_a"
cp -f "$release/blkio" "$out_bin"
