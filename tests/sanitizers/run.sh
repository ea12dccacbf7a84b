#!/usr/bin/env bash
# Sanitizer suite, three parts (about 4-8 minutes on 2 cores, most of it
# the nightly AddressSanitizer build of part 2):
#   1. every tests/c/test_*.c built with -fsanitize=address,undefined and
#      run against the normally built libblkio.so (ASan's allocator and
#      LeakSanitizer see the library's malloc/free too);
#   2. the library's unit tests built with nightly -Zsanitizer=address
#      (own target directory target/asan);
#   3. the unit tests of ring bookkeeping, property conversion, request
#      validation, config parsing and the fuzz corpora under valgrind.
# Prints ok / not ok / skip lines; a missing tool gives a "skip - " line.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
libdir=$target/debug
work=$target/sanitizers
mkdir -p "$work"
status=0

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; status=1; }

# shellcheck source=tests/lib/scratch.sh
. "$root/tests/lib/scratch.sh"

# --- 1. C tests with ASan + UBSan --------------------------------------------
if ! cargo build -q; then
    fail "cargo build"
    exit 1
fi
ln -sf libblkio.so "$libdir/libblkio.so.1"
cc=${CC:-cc}
san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g)
if ! echo 'int main(void){return 0;}' | "$cc" "${san[@]}" -x c -o "$work/probe" - 2> /dev/null; then
    echo "skip - C tests with ASan/UBSan: $cc cannot build with -fsanitize=address,undefined"
else
    export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=99
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    for src in tests/c/test_*.c; do
        name=$(basename "$src" .c)
        if ! "$cc" -std=gnu11 -Wall -Wextra -Werror -Iinclude "${san[@]}" -o "$work/$name" \
            "$src" -L"$libdir" -lblkio -lpthread; then
            fail "asan+ubsan: $name does not compile"
            continue
        fi
        log=$work/$name.log
        run_scratch "$work/$name" > "$log" 2>&1
        rc=$?
        if [ "$rc" -eq 0 ] && ! grep -q -E '^not ok - |runtime error:|ERROR: (Address|Leak)Sanitizer' "$log"; then
            pass "asan+ubsan: $name ($(grep -c '^ok - ' "$log") checks)"
        else
            grep -E '^not ok - |runtime error:|Sanitizer|^    #[0-9]' "$log" | head -20
            fail "asan+ubsan: $name exited with $rc (log: ${log#"$root"/})"
        fi
    done
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# --- 2. Rust unit tests with nightly AddressSanitizer --------------------------
if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    echo "skip - Rust unit tests with -Zsanitizer=address: no nightly toolchain"
else
    log=$work/rust-asan.log
    host=$(rustc -vV | sed -n 's/^host: //p')
    if RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
        ASAN_OPTIONS=detect_leaks=1 BLKIO_TEST_DIR=${TMPDIR:-/var/tmp} \
        cargo +nightly test -q --lib --target "$host" --target-dir "$target/asan" \
        > "$log" 2>&1; then
        pass "rust unit tests with -Zsanitizer=address: $(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log" | head -1) passed"
    else
        grep -E 'FAILED|panicked|Sanitizer|^error' "$log" | head -20
        fail "rust unit tests with -Zsanitizer=address (log: ${log#"$root"/})"
    fi
fi

# --- 3. Rust unit tests under valgrind -----------------------------------------
if ! command -v valgrind > /dev/null; then
    echo "skip - Rust unit tests under valgrind: valgrind is not installed"
else
    bin=$(cargo test -q --lib --no-run --message-format=json 2> /dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    filters=(virtqueue property core::request core::queue virtio_blk::config record nvme_io_uring fuzzing)
    log=$work/rust-valgrind.log
    if [ -z "$bin" ]; then
        fail "rust unit tests under valgrind: no test binary"
    elif valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
        "$bin" --test-threads=1 "${filters[@]}" > "$log" 2>&1; then
        pass "rust unit tests under valgrind ($(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log") tests: ${filters[*]})"
    else
        grep -E '^==[0-9]+==|FAILED|panicked' "$log" | head -30
        fail "rust unit tests under valgrind (log: ${log#"$root"/})"
    fi
fi
exit "$status"
