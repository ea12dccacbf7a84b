#!/usr/bin/env bash
# Concurrency suite (about 15 s, plus about 60 s for a fresh ThreadSanitizer
# build of the library): tests/c/test_concurrency.c (one thread
# per queue on 2, 5 and 8 queues with event-driven waits and verified
# data, a thread using properties and memory regions of the same instance
# meanwhile, threads creating and destroying instances in parallel with
# per-thread error messages) run
#   1. plainly, CONC_ROUNDS=3;
#   2. under valgrind's helgrind, which must report no data race or lock
#      misuse in the program or the library;
#   3. built with the C compiler's -fsanitize=thread against the library
#      built with nightly -Zsanitizer=thread (target dir $target/tsan).
# Each detector first has to report the deliberate race of
# tests/threads/racy.c, and the TSan library has to carry TSan's
# instrumentation, so no part can pass with a detector that sees nothing.
# A missing valgrind or nightly toolchain gives a "skip - " line.
# Prints ok / not ok / skip lines.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
libdir=$target/debug
work=$target/threads
mkdir -p "$work"
status=0
pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; status=1; }

# shellcheck source=tests/lib/scratch.sh
. "$root/tests/lib/scratch.sh"

if ! cargo build -q; then
    fail "cargo build"
    exit 1
fi
ln -sf libblkio.so "$libdir/libblkio.so.1"
cc=${CC:-cc}
if ! "$cc" -std=gnu11 -Wall -Wextra -Werror -Iinclude -g -o "$work/test_concurrency" \
    tests/c/test_concurrency.c -L"$libdir" -lblkio -lpthread; then
    fail "test_concurrency does not compile"
    exit 1
fi

log=$work/plain.log
CONC_ROUNDS=3 run_scratch "$work/test_concurrency" > "$log" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && ! grep -q '^not ok' "$log"; then
    pass "test_concurrency, CONC_ROUNDS=3: $(grep -c '^ok - ' "$log") checks"
else
    grep '^not ok' "$log" | head
    fail "test_concurrency exited with $rc (log: ${log#"$root"/})"
fi

helgrind() {
"$cc" -g -O0 -o "$work/racy" tests/threads/racy.c -lpthread || fail "racy.c does not compile"
valgrind -q --tool=helgrind --error-exitcode=99 "$work/racy" > "$work/racy.log" 2>&1
rc=$?
if [ "$rc" -eq 99 ] && grep -q "Possible data race" "$work/racy.log"; then
    pass "helgrind reports the deliberate race of racy.c (exit 99)"
else
    fail "helgrind did not report the race of racy.c (exit $rc): the detector is not working"
fi

log=$work/helgrind.log
run_scratch valgrind -q --tool=helgrind --error-exitcode=99 "$work/test_concurrency" > "$log" 2>&1
rc=$?
races=$(grep -c -E "Possible data race|lock order|unlocked a|Thread #[0-9]+ unlocked" "$log")
if [ "$rc" -eq 0 ] && [ "$races" -eq 0 ] && ! grep -q '^not ok' "$log"; then
    pass "helgrind: test_concurrency clean ($(grep -c '^ok - ' "$log") checks, no race or lock misuse reported)"
else
    grep -E -A12 "Possible data race|lock order" "$log" | head -40
    fail "helgrind: test_concurrency exit $rc, $races reports (log: ${log#"$root"/})"
fi
}

# ThreadSanitizer. Without rust-src (-Zbuild-std) Rust's standard library
# stays uninstrumented, so the ABI check that refuses mixing is waived; the
# library's own code is instrumented (checked below). The C compiler's
# libtsan is the runtime; tests/threads/tsan_shim.c supplies the three
# entry points nightly's LLVM calls that this older runtime lacks.
tsan() {
    local host tsandir n
    host=$(rustc -vV | sed -n 's/^host: //p')
    tsandir=$target/tsan/$host/debug
    if ! RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" \
        cargo +nightly build -q --lib --target "$host" --target-dir "$target/tsan" \
        > "$work/tsan-build.log" 2>&1; then
        tail -20 "$work/tsan-build.log"
        fail "nightly -Zsanitizer=thread build of the library (log: ${work#"$root"/}/tsan-build.log)"
        return
    fi
    ln -sf libblkio.so "$tsandir/libblkio.so.1"
    n=$(objdump -d --no-show-raw-insn "$tsandir/libblkio.so" |
        grep -c -E 'call.*<__tsan_(read|write)[0-9]')
    if [ "$n" -gt 1000 ]; then
        pass "the TSan library is instrumented ($n calls of __tsan_read/__tsan_write)"
    else
        fail "the TSan library has $n calls of __tsan_read/__tsan_write: not instrumented"
    fi
    "$cc" -O0 -g -fsanitize=thread -o "$work/racy.tsan" tests/threads/racy.c -lpthread
    TSAN_OPTIONS="halt_on_error=0 exitcode=66" "$work/racy.tsan" > "$work/racy.tsan.log" 2>&1
    rc=$?
    if [ "$rc" -eq 66 ] && grep -q 'WARNING: ThreadSanitizer: data race' "$work/racy.tsan.log"; then
        pass "ThreadSanitizer reports the deliberate race of racy.c (exit 66)"
    else
        fail "ThreadSanitizer did not report the race of racy.c (exit $rc): the detector is not working"
    fi
    log=$work/tsan.log
    if ! "$cc" -std=gnu11 -Wall -Wextra -Werror -Iinclude -g -fsanitize=thread \
        -o "$work/test_concurrency.tsan" tests/c/test_concurrency.c tests/threads/tsan_shim.c \
        -L"$tsandir" -lblkio -lpthread; then
        fail "test_concurrency does not compile with -fsanitize=thread"
        return
    fi
    libdir=$tsandir TSAN_OPTIONS="halt_on_error=0 exitcode=66" CONC_ROUNDS=2 \
        run_scratch "$work/test_concurrency.tsan" > "$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && ! grep -q -E 'WARNING: ThreadSanitizer|^not ok' "$log"; then
        pass "ThreadSanitizer: test_concurrency clean ($(grep -c '^ok - ' "$log") checks)"
    else
        grep -E -A12 'WARNING: ThreadSanitizer|^not ok' "$log" | head -60
        fail "ThreadSanitizer: test_concurrency exit $rc (log: ${log#"$root"/})"
    fi
}

if command -v valgrind > /dev/null; then
    helgrind
else
    echo "skip - helgrind: valgrind is not installed"
fi
if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    echo "skip - ThreadSanitizer: no nightly toolchain"
elif ! echo 'int main(void){return 0;}' | "$cc" -fsanitize=thread -x c -o "$work/probe" - 2> /dev/null; then
    echo "skip - ThreadSanitizer: $cc cannot build with -fsanitize=thread"
else
    tsan
fi
exit "$status"
