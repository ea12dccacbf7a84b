#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The library as a client project sees it: `meson setup` + `meson install`
# into a temporary prefix, then C programs built with nothing but
# `cc ... $(pkg-config --cflags --libs blkio)` (PKG_CONFIG_PATH pointing into
# the prefix) and run against the installed library; a meson project that
# finds it with dependency('blkio') and compares its version as QEMU's build
# does.
#
# Output: one `ok - ...` / `not ok - ...` / `skip - ...` line per check and a
# closing `N passed, M failed` line; non-zero exit if any check failed.
#
# Environment:
#   BLKIO_PKGCONFIG_BUILDDIR  meson build directory, kept between runs so that
#                             cargo rebuilds incrementally
#                             (default: <repo>/target/pkgconfig-build)

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/tests/pkgconfig"
builddir=${BLKIO_PKGCONFIG_BUILDDIR:-$repo/target/pkgconfig-build}

pass=0
fail=0
ok()     { echo "ok - $1"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $1${2:+: $2}"; fail=$((fail + 1)); }
skip()   { echo "skip - $1"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

for tool in meson ninja pkg-config cc; do
    if ! command -v "$tool" >/dev/null; then
        skip "pkg-config checks: $tool is not installed"
        finish
    fi
done
if [ ! -f "$repo/meson.build" ]; then
    skip "pkg-config checks: no meson.build"
    finish
fi

mkdir -p "$repo/target"
tmp=$(mktemp -d "$repo/target/pkgconfig-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
t0=$(date +%s)

# ---------------------------------------------------------------------------
# meson setup / install
# ---------------------------------------------------------------------------

if [ -f "$builddir/build.ninja" ]; then
    cmd=(meson configure "$builddir" "-Dprefix=$prefix")
else
    rm -rf "$builddir"
    cmd=(meson setup "$builddir" "$repo" "--prefix=$prefix")
fi
if timeout 600 "${cmd[@]}" >"$tmp/setup.log" 2>&1; then
    ok "${cmd[0]} ${cmd[1]} with prefix $prefix"
else
    not_ok "${cmd[*]}" "$(tail -n 3 "$tmp/setup.log" | tr '\n' ' ')"
    finish
fi
if timeout 3600 meson install -C "$builddir" >"$tmp/install.log" 2>&1; then
    ok "meson install ($(($(date +%s) - t0)) s)"
else
    not_ok "meson install" "$(grep -iE 'error|failed' "$tmp/install.log" | head -n 3 | tr '\n' ' ')"
    finish
fi

pc=$(find "$prefix" -name blkio.pc -path '*/pkgconfig/*' | head -n1)
if [ -z "$pc" ]; then
    not_ok "blkio.pc installed under <prefix>/<libdir>/pkgconfig"
    finish
fi
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
ok "blkio.pc installed in ${pcdir#"$prefix"/}"

# Upstream's layout: real file, SONAME link, development link, static
# archive, header.
if [ -f "$libdir/libblkio.so.1.5.0" ] && [ ! -L "$libdir/libblkio.so.1.5.0" ] &&
    [ "$(readlink "$libdir/libblkio.so.1")" = libblkio.so.1.5.0 ] &&
    [ "$(readlink "$libdir/libblkio.so")" = libblkio.so.1 ] &&
    [ -f "$libdir/libblkio.a" ] && [ -f "$prefix/include/blkio.h" ]; then
    ok "installed libblkio.so.1.5.0, libblkio.so.1 -> libblkio.so.1.5.0, libblkio.so -> libblkio.so.1, libblkio.a, include/blkio.h"
else
    not_ok "installed layout" "$(cd "$prefix" && find . \( -type f -o -type l \) -printf '%p ' )"
fi
soname=$(readelf -d "$libdir/libblkio.so.1.5.0" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" = libblkio.so.1 ]; then
    ok "installed library has SONAME libblkio.so.1"
else
    not_ok "installed library has SONAME libblkio.so.1" "'$soname'"
fi
if cmp -s "$prefix/include/blkio.h" "$repo/include/blkio.h"; then
    ok "installed blkio.h is the committed include/blkio.h"
else
    not_ok "installed blkio.h is the committed include/blkio.h"
fi

# ---------------------------------------------------------------------------
# pkg-config queries (what QEMU's meson and fio's configure ask)
# ---------------------------------------------------------------------------

export PKG_CONFIG_PATH="$pcdir"
pkgc() { pkg-config "$@" 2>&1; }

v=$(pkgc --modversion blkio)
if [ "$v" = 1.5.0 ]; then ok "pkg-config --modversion blkio = 1.5.0"; else not_ok "pkg-config --modversion blkio" "$v"; fi
# QEMU's meson enables vhost-vdpa fd passing for >= 1.3.0 and FUA on
# write-zeroes for >= 1.4.0; fio's configure only asks --exists.
if pkg-config --exists blkio && pkg-config --atleast-version=1.3.0 blkio &&
    pkg-config --atleast-version=1.4.0 blkio && ! pkg-config --atleast-version=1.6.0 blkio; then
    ok "pkg-config --exists, --atleast-version 1.3.0 and 1.4.0 (QEMU's feature checks), not 1.6.0"
else
    not_ok "pkg-config --exists / --atleast-version"
fi
cflags=$(pkgc --cflags blkio)
cflags=${cflags% }   # pkg-config ends its output with a blank
libs=$(pkgc --libs blkio)
libs=${libs% }
if [ "$cflags" = "-I$prefix/include" ] && [ "$libs" = "-L$libdir -lblkio" ]; then
    ok "pkg-config --cflags/--libs point into the prefix ($cflags $libs)"
else
    not_ok "pkg-config --cflags/--libs point into the prefix" "'$cflags' '$libs'"
fi
if pkg-config --validate "$pc" >/dev/null 2>&1; then
    ok "pkg-config --validate blkio.pc"
else
    not_ok "pkg-config --validate blkio.pc" "$(pkg-config --validate "$pc" 2>&1 | head -n 2 | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------
# C programs built only with the pkg-config flags
# ---------------------------------------------------------------------------

# build <name> <source> [extra cc args...]
build() {
    local name=$1 src=$2
    shift 2
    # shellcheck disable=SC2046 # word splitting of pkg-config output is intended
    cc -std=c99 -Wall -Wextra -Werror "$@" "$src" $(pkg-config --cflags --libs blkio) \
        -o "$tmp/$name" >"$tmp/$name.cc.log" 2>&1
}

if build api_coverage "$here/api_coverage.c"; then
    ok "api_coverage.c compiles with cc -std=c99 -Wall -Wextra -Werror \$(pkg-config --cflags --libs blkio)"
else
    not_ok "api_coverage.c compiles with pkg-config flags" "$(head -n 3 "$tmp/api_coverage.cc.log" | tr '\n' ' ')"
    finish
fi

# Every exported function is referenced by the program, every BLKIO_* name
# of the header appears in it.
exported=$(nm -D --defined-only "$libdir/libblkio.so.1.5.0" | awk '$2 == "T" { print $3 }' | sort)
used=$(nm -u "$tmp/api_coverage" | awk '{ print $2 }' | grep -E '^blkioq?_' | sort)
missing=$(comm -23 <(echo "$exported") <(echo "$used"))
if [ -z "$missing" ] && [ "$(echo "$exported" | wc -l)" -eq 43 ]; then
    ok "the program calls all 43 exported functions"
else
    not_ok "the program calls every exported function" "missing: $(echo "$missing" | tr '\n' ' ')"
fi
# the enumerators: lines "    BLKIO_NAME = value,"
names=$(sed -n 's/^[[:space:]]*\(BLKIO_[A-Z_]*\)[[:space:]]*=.*/\1/p' "$prefix/include/blkio.h" | sort -u)
missing=""
for n in $names; do
    grep -qw "$n" "$here/api_coverage.c" || missing+=" $n"
done
if [ -z "$missing" ]; then
    ok "the program uses all $(echo "$names" | wc -l) BLKIO_* flag and enum names of the header"
else
    not_ok "the program uses every BLKIO_* name of the header" "missing:$missing"
fi

# The dynamic linker must take the library from the prefix.
scratch="$tmp/disk.img"
truncate -s 1M "$scratch"
loaded=$(LD_LIBRARY_PATH="$libdir" LD_TRACE_LOADED_OBJECTS=1 "$tmp/api_coverage" | awk '/libblkio/ { print $3 }')
if [ "$(readlink -f "$loaded")" = "$(readlink -f "$libdir/libblkio.so.1.5.0")" ]; then
    ok "api_coverage resolves libblkio.so.1 to the installed copy"
else
    not_ok "api_coverage resolves libblkio.so.1 to the installed copy" "'$loaded'"
fi
out=$(LD_LIBRARY_PATH="$libdir" timeout 120 "$tmp/api_coverage" "$scratch" 2>&1)
rc=$?
echo "$out" | grep -E '^(ok|not ok) - '
pass=$((pass + $(echo "$out" | grep -c '^ok - ')))
fail=$((fail + $(echo "$out" | grep -c '^not ok - ')))
if [ "$rc" -ne 0 ] && ! echo "$out" | grep -q '^not ok - '; then
    not_ok "api_coverage exited with status $rc" "$(echo "$out" | tail -n 2 | tr '\n' ' ')"
fi

# With an rpath from the pkg-config -L directory, no LD_LIBRARY_PATH needed.
if build api_rpath "$here/api_coverage.c" "-Wl,-rpath,$libdir" &&
    [ "$(env -u LD_LIBRARY_PATH LD_TRACE_LOADED_OBJECTS=1 "$tmp/api_rpath" | awk '/libblkio/ { print $3 }')" = "$libdir/libblkio.so.1" ] &&
    env -u LD_LIBRARY_PATH timeout 120 "$tmp/api_rpath" "$scratch" >"$tmp/api_rpath.log" 2>&1; then
    ok "a build with -Wl,-rpath loads the installed library and runs without LD_LIBRARY_PATH"
else
    not_ok "a build with -Wl,-rpath runs without LD_LIBRARY_PATH" "$(grep -v '^ok' "$tmp/api_rpath.log" "$tmp/api_rpath.cc.log" 2>/dev/null | head -n 2 | tr '\n' ' ')"
fi

# C++ consumers (the header's extern "C" block).
if command -v g++ >/dev/null; then
    printf '#include <blkio.h>\nint main() { struct blkio *b = 0; int r = blkio_create("io_uring", &b); blkio_destroy(&b); return r; }\n' >"$tmp/cxx.cc"
    # shellcheck disable=SC2046
    if g++ -std=c++11 -Wall -Wextra -Werror "$tmp/cxx.cc" $(pkg-config --cflags --libs blkio) -o "$tmp/cxx" 2>"$tmp/cxx.log" &&
        LD_LIBRARY_PATH="$libdir" timeout 30 "$tmp/cxx"; then
        ok "a C++ program links and calls blkio_create through the pkg-config flags"
    else
        not_ok "a C++ program links and calls blkio_create through the pkg-config flags" "$(head -n 2 "$tmp/cxx.log" | tr '\n' ' ')"
    fi
else
    skip "C++ consumer: g++ is not installed"
fi

# ---------------------------------------------------------------------------
# A meson project consuming the library like QEMU's build
# ---------------------------------------------------------------------------

mkdir -p "$tmp/consumer"
cat >"$tmp/consumer/meson.build" <<'EOF'
project('blkio-consumer', 'c')
blkio = dependency('blkio', method : 'pkg-config')
assert(blkio.version().version_compare('>=1.4.0'), 'QEMU would disable FUA write-zeroes')
executable('consumer', 'consumer.c', dependencies : blkio)
EOF
cat >"$tmp/consumer/consumer.c" <<'EOF'
#include <blkio.h>
#include <stdio.h>
int main(void)
{
    struct blkio *b = NULL;
    char *driver = NULL;
    int ret = blkio_create("io_uring", &b);
    if (ret == 0)
        ret = blkio_get_str(b, "driver", &driver);
    printf("%s\n", ret == 0 ? driver : blkio_get_error_msg());
    blkio_destroy(&b);
    return ret != 0;
}
EOF
if timeout 600 meson setup "$tmp/consumer/build" "$tmp/consumer" >"$tmp/consumer.log" 2>&1 &&
    timeout 600 meson compile -C "$tmp/consumer/build" >>"$tmp/consumer.log" 2>&1; then
    ok "a meson project finds dependency('blkio') with version >= 1.4.0 (as QEMU's meson.build checks) and builds"
    got=$(LD_LIBRARY_PATH="$libdir" timeout 30 "$tmp/consumer/build/consumer" 2>&1)
    if [ "$got" = io_uring ]; then
        ok "the meson-built program runs against the installed library"
    else
        not_ok "the meson-built program runs against the installed library" "$got"
    fi
else
    not_ok "a meson project finds dependency('blkio') and builds" "$(grep -iE 'error|not found' "$tmp/consumer.log" | head -n 2 | tr '\n' ' ')"
fi

echo "# total time $(($(date +%s) - t0)) s" >&2
finish
