#!/usr/bin/env bash
# Checks the manual pages of docs/man/:
#   - pandoc turns each Markdown source into a page that man(1) renders
#     without a single groff warning;
#   - blkio(3) names every function the library exports (the dynamic symbols
#     of the built libblkio.so and the prototypes of include/blkio.h) and
#     lists every property of every driver with its type and access, as the
#     library itself reports them through x.properties (tests/man/props.c);
#   - blkio(1) documents every command and every long option of the tool's
#     own --help;
#   - `meson install` puts man1/blkio.1 and man3/blkio.3 under the mandir
#     of a temporary prefix, where `man -w` finds them.
# The library under test is $BLKIO_LIB (tests/run.sh sets it), else
# target/debug/libblkio.so; the tool is the blkio next to it.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD

lib=${BLKIO_LIB:-$root/target/debug/libblkio.so}
libdir=$(dirname "$lib")
tool=$libdir/blkio
work=$(mktemp -d "${TMPDIR:-/tmp}/blkio-man.XXXXXX")
trap 'rm -rf "$work"' EXIT

ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1"; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2"; fi; }

for cmd in pandoc man nm cc; do
    if ! command -v "$cmd" > /dev/null; then
        not_ok "$cmd is not installed"
        exit 1
    fi
done

# render PAGE.md OUT: man(7) source; OUT.txt: plain text, one paragraph per
# line (a very wide page never wraps, so nothing is hyphenated).
render() {
    pandoc --standalone --from markdown --to man --output "$2" "$1" &&
        LC_ALL=C MANWIDTH=4000 MAN_KEEP_FORMATTING= man -l "$2" 2> /dev/null |
        col -bx > "$2.txt"
}

for page in blkio.1 blkio.3; do
    if ! render "docs/man/$page.md" "$work/$page"; then
        not_ok "pandoc renders docs/man/$page.md"
        exit 1
    fi
    warnings=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$work/$page" 2>&1 > /dev/null)
    [ -z "$warnings" ]
    check $? "$page renders with man -l --warnings without warnings${warnings:+: $(head -3 <<< "$warnings" | tr '\n' ' ')}"
done
page3=$work/blkio.3.txt
page1=$work/blkio.1.txt

# --- every exported function -------------------------------------------------
if [ ! -e "$lib" ]; then
    not_ok "library $lib not built (run cargo build)"
    exit 1
fi
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sort -u)
declared=$(grep -o -E '\bblkioq?_[a-z_]+\(' include/blkio.h | tr -d '(' | sort -u)
functions=$(sort -u <<< "$exported"$'\n'"$declared")
n=$(wc -w <<< "$functions")
missing=()
for f in $functions; do
    # In the synopsis as a prototype and in the text as a call.
    grep -q -E "\\b$f\\(" "$page3" && grep -q -E "\\b$f\\(\\)" "$page3" || missing+=("$f")
done
[ "$(wc -w <<< "$exported")" -ge 43 ]
check $? "the library exports $(wc -w <<< "$exported") functions (at least the 43 of the C API)"
[ ${#missing[@]} -eq 0 ]
check $? "blkio(3) shows all $n exported/declared functions in the synopsis and the text${missing[*]:+; missing: ${missing[*]}}"

# --- every property of every driver -----------------------------------------
if ! cc -std=gnu11 -Wall -Wextra -Werror -Iinclude -o "$work/props" tests/man/props.c \
    -L"$libdir" -lblkio; then
    not_ok "tests/man/props.c does not compile"
    exit 1
fi
if [ ! -e "$libdir/libblkio.so.1" ]; then
    ln -sf "$(realpath "$lib")" "$work/libblkio.so.1"
fi
if ! LD_LIBRARY_PATH=$work:$libdir "$work/props" > "$work/props.txt"; then
    not_ok "reading x.properties of every driver"
    exit 1
fi

# section DRIVER: the property block of DRIVER's subsection of PROPERTIES
# (its heading names the driver, e.g. "io_uring" or a list of virtio ones).
section() {
    awk -v d="$1" '
        /^   [^ ]/ { insec = 0
                     n = split($0, w, /[ ,]+/)
                     for (i = 1; i <= n; i++) if (w[i] == d) insec = 1
                     next }
        /^[^ ]/ { insec = 0 }
        insec' "$page3"
}
total=0
for driver in $(awk '{print $1}' "$work/props.txt" | sort -u); do
    sec=$(section "$driver")
    count=0
    bad=()
    while read -r d name type access; do
        [ "$d" = "$driver" ] || continue
        count=$((count + 1))
        grep -q -E "^ +$name +$type +$access\$" <<< "$sec" || bad+=("$name($type,$access)")
    done < "$work/props.txt"
    total=$((total + count))
    listed=$(grep -c -E '^ +[a-z][a-z0-9-]* +(bool|int|uint64|str) +(r|rw:created|rw:connected)$' \
        <<< "$sec")
    [ ${#bad[@]} -eq 0 ] && [ "$count" -gt 0 ]
    check $? "blkio(3) lists all $count properties of $driver with type and access${bad[*]:+; missing or different: ${bad[*]}}"
    [ "$listed" -eq "$count" ]
    check $? "blkio(3) lists no property $driver lacks ($listed listed, $count in the registry)"
done
[ "$total" -gt 0 ]
check $? "x.properties reported $total (driver, property) pairs"

# --- blkio(1): every command and long option --------------------------------
if [ -x "$tool" ]; then
    bad=()
    for cmd in info bench copy completions; do
        grep -q -E "^   $cmd\$" "$page1" || bad+=("$cmd")
        for opt in $("$tool" "$cmd" --help | grep -o -E '^ +(-[a-zA-Z], )?--[a-z-]+' |
            grep -o -E -- '--[a-z-]+' | grep -v -x -- --help); do
            grep -q -F -e "$opt" "$page1" || bad+=("$cmd $opt")
        done
    done
    [ ${#bad[@]} -eq 0 ]
    check $? "blkio(1) documents every command and long option of blkio --help${bad[*]:+; missing: ${bad[*]}}"
else
    echo "skip - blkio(1) against the tool's --help ($tool not built)"
fi

# --- meson install -----------------------------------------------------------
if ! command -v meson > /dev/null || ! command -v ninja > /dev/null; then
    not_ok "meson and ninja are needed for the install check"
    exit 1
fi
# Only the pages are built and installed (install tag "man"): the check
# needs no release build of the library.
build=$work/build prefix=$work/prefix
if meson setup -Dman=enabled --prefix "$prefix" "$build" > "$work/setup.log" 2>&1 &&
    ninja -C "$build" docs/man/blkio.1 docs/man/blkio.3 > "$work/ninja.log" 2>&1 &&
    meson install -C "$build" --no-rebuild --tags man > "$work/install.log" 2>&1; then
    ok "meson setup -Dman=enabled, build and install of the pages (tag man)"
else
    cat "$work"/setup.log "$work"/ninja.log "$work"/install.log 2> /dev/null | tail -20
    not_ok "meson setup -Dman=enabled, build and install of the pages (tag man)"
fi
mandir=$prefix/$(meson introspect --buildoptions "$build" 2> /dev/null |
    python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "mandir"][0])' 2> /dev/null)
for s in 1 3; do
    installed=$mandir/man$s/blkio.$s
    found=$(MANPATH=$mandir man -w "$s" blkio 2> /dev/null)
    [ -f "$installed" ] && [ "$found" = "$installed" ] &&
        LC_ALL=C man -l "$installed" 2> /dev/null | grep -q "^BLKIO($s)"
    check $? "installed ${installed#"$prefix"/} is what 'man $s blkio' finds and shows"
done
