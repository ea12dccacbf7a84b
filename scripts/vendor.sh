#!/bin/sh
# Copies the sources of every crate the Cargo workspace depends on (library,
# build script and the blkio tool, as pinned by Cargo.lock) into vendor/, so
# that the project builds without the network:
#
#   scripts/vendor.sh [SOURCE_DIR]        (default: the repository)
#   meson setup build -Doffline=true      (then: cargo --offline --locked)
#
# Fetching needs the network (or a CARGO_HOME whose registry cache holds the
# crates); the result does not. vendor/ is not committed (.gitignore); the
# release tarball of scripts/dist.sh carries it. Besides the crates the
# script writes vendor/cargo-config.toml, the source replacement for cargo
# users outside meson:
#
#   cargo build --offline --locked --config vendor/cargo-config.toml
#
# (cargo reads `directory` there relative to the current directory: run it
# from the top of the source tree.) meson's -Doffline=true passes the same
# settings with an absolute path.
#
# Under `meson dist` (MESON_DIST_ROOT set) it vendors into the dist tree.
set -eu
src=${1:-${MESON_DIST_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$src"
# --versioned-dirs: directory names say which version is inside, so a
# tarball's vendor/ can be checked against Cargo.lock by eye.
config=$(mktemp)
trap 'rm -f "$config"' EXIT
cargo vendor --locked --versioned-dirs vendor > "$config"
cp "$config" vendor/cargo-config.toml

# Crates for Windows only: Cargo.lock names them (cargo resolves for every
# target), so their manifests must be present, but nothing builds them on
# Linux. Their sources are 70% of vendor/ (winapi's import libraries alone
# are 100 MiB): keep the manifest and licence files, replace the code by
# empty stubs, and tell cargo's checksum file to check no files (the
# package checksum against Cargo.lock stays).
for dir in vendor/winapi-* vendor/windows-sys-* vendor/windows_*; do
    [ -d "$dir" ] || continue
    find "$dir" -mindepth 1 -maxdepth 1 ! -name Cargo.toml ! -name '.cargo-checksum.json' \
        ! -iname 'license*' -exec rm -rf {} +
    mkdir -p "$dir/src"
    : > "$dir/src/lib.rs"
    grep -q '^build = ' "$dir/Cargo.toml" && echo 'fn main() {}' > "$dir/build.rs"
    package=$(sed -n 's/.*"package":"\([0-9a-f]*\)".*/\1/p' "$dir/.cargo-checksum.json")
    printf '{"files":{},"package":"%s"}\n' "$package" > "$dir/.cargo-checksum.json"
done
echo "vendored $(find vendor -mindepth 1 -maxdepth 1 -type d | wc -l) crates into $src/vendor ($(du -sh vendor | cut -f1))"
