#!/usr/bin/env bash
# Concurrency suite (about 15 s): tests/c/test_concurrency.c (one thread
# per queue on 2, 5 and 8 queues with event-driven waits and verified
# data, a thread using properties and memory regions of the same instance
# meanwhile, threads creating and destroying instances in parallel with
# per-thread error messages) run
#   1. plainly, CONC_ROUNDS=3;
#   2. under valgrind's helgrind, which must report no data race or lock
#      misuse in the program or the library;
# and first a proof that helgrind catches a race at all: tests/threads/racy.c
# races on purpose and must be reported. (ThreadSanitizer would need the
# Rust standard library rebuilt with -Zsanitizer=thread (-Zbuild-std); not
# done here, see docs/robustness.md.)
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

if ! command -v valgrind > /dev/null; then
    echo "skip - helgrind: valgrind is not installed"
    exit "$status"
fi
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
exit "$status"
