#!/usr/bin/env bash
# The project's test command. Builds the workspace (debug: the library and
# the blkio tool), then runs:
#   1. cargo test --workspace
#   2. the ABI checks: exported symbols and dynamic section of libblkio.so,
#      tests/c/abi_layout.c, tests/c/header_compile.{c,cpp}
#   3. every tests/c/test_*.c, then each again under valgrind (if installed)
#   4. the suites: every executable tests/*/run.sh (vhost-user, vm, qemu,
#      pkgconfig, ...), each printing ok/not ok lines
# and prints one line per failure and a final "N passed, M failed" line.
# Exits non-zero when anything failed.
#
# usage: tests/run.sh [--quick]
#   --quick   skip valgrind and the suites of step 4
#
# Counting: each "ok - " / "not ok - " line of a C test or suite is one check
# ("skip - " lines are counted apart); a program that exits non-zero without
# a "not ok" line (a crash, a timeout) is one failure; cargo test contributes
# the numbers of its "test result:" lines. Each program gets a fresh scratch
# directory in $BLKIO_TEST_DIR (on disk) and, when /dev/shm is a tmpfs, one in
# $BLKIO_TEST_TMPFS.
set -u

cd "$(dirname "$0")/.." || exit 1
root=$PWD

quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "tests/run.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

# Tests that valgrind makes unreliable (signal timing), by name, e.g.
# (test_interrupt). Empty: the tests using signals pass under valgrind.
valgrind_skip=()

target=${CARGO_TARGET_DIR:-$root/target}
libdir=$target/debug
work=$target/tests          # compiled C programs and their logs
test_limit=600     # seconds per C program: only a guard against hangs
suite_limit=3600   # seconds per suite

passed=0
failed=0
skipped=0
failures=()

pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "not ok - $1"; }
section() { printf '\n=== %s\n' "$1"; }

summary() {
    section "summary"
    if [ ${#failures[@]} -gt 0 ]; then
        echo "failures:"
        printf '  %s\n' "${failures[@]}"
    fi
    [ "$skipped" -eq 0 ] || echo "$skipped skipped"
    echo "$passed passed, $failed failed"
    if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}

# in_scratch TIMEOUT COMMAND...: runs COMMAND with the library on
# LD_LIBRARY_PATH, fresh scratch directories and a time limit; returns its
# exit status.
in_scratch() {
    local limit=$1 status scratch tmpfs=""
    shift
    scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/blkio-test.XXXXXX")
    if [ "$(stat -f -c %T /dev/shm 2> /dev/null)" = tmpfs ]; then
        tmpfs=$(mktemp -d /dev/shm/blkio-test.XXXXXX)
    fi
    BLKIO_TEST_DIR=$scratch BLKIO_TEST_TMPFS=$tmpfs LD_LIBRARY_PATH=$libdir \
        timeout -k 10 "$limit" "$@"
    status=$?
    rm -rf "$scratch" ${tmpfs:+"$tmpfs"}
    return "$status"
}

# run_program NAME LOG TIMEOUT COMMAND...: runs COMMAND in_scratch, shows its
# output and adds its ok/not ok/skip lines to the totals. A non-zero exit
# without any "not ok" line, or no result line at all, is one failure.
run_program() {
    local name=$1 log=$2 limit=$3 status line nok=0
    shift 3
    in_scratch "$limit" "$@" > "$log" 2>&1
    status=$?
    cat "$log"
    while IFS= read -r line; do
        case $line in
            "ok - "*) passed=$((passed + 1)) ;;
            "not ok - "*)
                failed=$((failed + 1))
                nok=$((nok + 1))
                failures+=("$name: ${line#not ok - }")
                ;;
            "skip - "*) skipped=$((skipped + 1)) ;;
        esac
    done < "$log"
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        fail "$name: killed after the ${limit}s time limit"
    elif [ "$status" -gt 128 ]; then
        fail "$name: died of signal $((status - 128))"
    elif [ "$status" -ne 0 ] && [ "$nok" -eq 0 ]; then
        fail "$name: exited with status $status"
    elif ! grep -q -E '^(ok|not ok|skip) - ' "$log"; then
        fail "$name: printed no results"
    fi
}

# ---------------------------------------------------------------------------
section "checks: cargo fmt, clippy, doc"
# The discipline the compiler and tools enforce (CONTRIBUTING.md): each a
# failure of the test command.
if cargo fmt --all -- --check; then
    pass "cargo fmt --all -- --check"
else
    fail "cargo fmt --all -- --check (run cargo fmt --all)"
fi
if cargo clippy --workspace --all-targets -- -D warnings; then
    pass "cargo clippy --workspace --all-targets -- -D warnings"
else
    fail "cargo clippy --workspace --all-targets -- -D warnings"
fi
if RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace; then
    pass "RUSTDOCFLAGS=-D warnings cargo doc --no-deps --workspace"
else
    fail "RUSTDOCFLAGS=-D warnings cargo doc --no-deps --workspace"
fi

# ---------------------------------------------------------------------------
section "build"
if ! cargo build; then
    fail "cargo build"
    summary
fi
ln -sf libblkio.so "$libdir/libblkio.so.1"
mkdir -p "$work"

# ---------------------------------------------------------------------------
section "cargo test --workspace"
cargo test --workspace 2>&1 | tee "$work/cargo-test.log"
cargo_status=${PIPESTATUS[0]}
cargo_failed=0
# "test result: ok. 12 passed; 0 failed; ..." once per test binary
while read -r p f; do
    passed=$((passed + p))
    cargo_failed=$((cargo_failed + f))
done < <(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed;.*/\1 \2/p' "$work/cargo-test.log")
failed=$((failed + cargo_failed))
while IFS= read -r t; do
    failures+=("cargo test: $t")
done < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$work/cargo-test.log")
if [ "$cargo_status" -ne 0 ] && [ "$cargo_failed" -eq 0 ]; then
    fail "cargo test exited with status $cargo_status"
fi

# ---------------------------------------------------------------------------
section "ABI: exported symbols and dynamic section (docs/contract/abi.md §1)"
so=$libdir/libblkio.so
expected_exports=(
    blkio_get_error_msg
    blkio_create blkio_connect blkio_start blkio_destroy
    blkio_get_bool blkio_get_int blkio_get_uint64 blkio_get_str
    blkio_set_bool blkio_set_int blkio_set_uint64 blkio_set_str
    blkio_alloc_mem_region blkio_free_mem_region blkio_map_mem_region blkio_unmap_mem_region
    blkio_get_queue blkio_get_poll_queue blkio_add_queue blkio_add_poll_queue
    blkio_remove_queue blkio_remove_poll_queue
    blkioq_read blkioq_write blkioq_readv blkioq_writev blkioq_write_zeroes blkioq_discard blkioq_flush
    blkioq_report_zones blkioq_open_zone blkioq_close_zone blkioq_finish_zone blkioq_reset_zone
    blkioq_open_all_zones blkioq_close_all_zones blkioq_finish_all_zones blkioq_reset_all_zones
    blkioq_do_io blkioq_do_io_interruptible blkioq_get_completion_fd blkioq_set_completion_fd_enabled
)
# nm prints "T name" per function; a versioned symbol would read "T name@@VER".
actual=$(nm -D --defined-only "$so" | awk '{print $2, $3}' | sort)
expected=$(printf 'T %s\n' "${expected_exports[@]}" | sort)
if [ "$actual" = "$expected" ]; then
    pass "libblkio.so exports exactly the ${#expected_exports[@]} functions of docs/contract/abi.md §1.2, unversioned"
else
    missing=$(comm -23 <(echo "$expected") <(echo "$actual") | tr '\n' ' ')
    unexpected=$(comm -13 <(echo "$expected") <(echo "$actual") | tr '\n' ' ')
    fail "libblkio.so exports differ from docs/contract/abi.md §1.2: missing ${missing:-nothing}; extra ${unexpected:-nothing}"
fi

dynamic=$(readelf -d "$so")
soname=$(sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p' <<< "$dynamic")
if [ "$soname" = libblkio.so.1 ]; then
    pass "SONAME is libblkio.so.1"
else
    fail "SONAME is '$soname', expected libblkio.so.1"
fi
needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<< "$dynamic")
runtime='libgcc_s\.so\.1|libc\.so\.6|ld-linux-x86-64\.so\.2|libm\.so\.6|libpthread\.so\.0'
extra=$(grep -v -x -E "$runtime" <<< "$needed")
if [ -z "$extra" ]; then
    pass "NEEDED only the C runtime: ${needed//$'\n'/ }"
else
    fail "NEEDED more than libgcc_s/libc/ld-linux (libm/libpthread tolerated): ${extra//$'\n'/ }"
fi

# ---------------------------------------------------------------------------
section "ABI: struct layouts and constants (docs/contract/abi.md §2.2, §2.3)"
cflags=(-std=gnu11 -Wall -Wextra -Werror -Iinclude)
ldflags=(-L"$libdir" -lblkio -lpthread)
if cc "${cflags[@]}" -o "$work/abi_layout" tests/c/abi_layout.c "${ldflags[@]}"; then
    run_program abi_layout "$work/abi_layout.log" "$test_limit" "$work/abi_layout"
else
    fail "abi_layout: does not compile"
fi

section "ABI: blkio.h alone as strict C99 and as C++11"
if cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -o "$work/header_compile_c" \
    tests/c/header_compile.c "${ldflags[@]}"; then
    pass "blkio.h compiles alone with cc -std=c99 -Wall -Wextra -Werror -pedantic"
    run_program header_compile_c "$work/header_compile_c.log" "$test_limit" \
        "$work/header_compile_c"
else
    fail "blkio.h does not compile with cc -std=c99 -Wall -Wextra -Werror -pedantic"
fi
if ! command -v g++ > /dev/null; then
    fail "g++ is not installed: cannot check blkio.h as C++"
elif g++ -std=c++11 -Wall -Wextra -Werror -pedantic -Iinclude -o "$work/header_compile_cpp" \
    tests/c/header_compile.cpp "${ldflags[@]}"; then
    pass "blkio.h compiles alone with g++ -std=c++11 -Wall -Wextra -Werror -pedantic"
    run_program header_compile_cpp "$work/header_compile_cpp.log" "$test_limit" \
        "$work/header_compile_cpp"
else
    fail "blkio.h does not compile with g++ -std=c++11 -Wall -Wextra -Werror -pedantic"
fi

# ---------------------------------------------------------------------------
section "C tests (tests/c/test_*.c)"
ctests=()
for src in tests/c/test_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    if cc "${cflags[@]}" -o "$work/$name" "$src" "${ldflags[@]}"; then
        ctests+=("$name")
    else
        fail "$name: does not compile"
    fi
done
for name in "${ctests[@]}"; do
    echo "--- $name"
    run_program "$name" "$work/$name.log" "$test_limit" "$work/$name"
done

if [ "$quick" -eq 1 ]; then
    echo "skipping valgrind and the suites (--quick)"
    summary
fi

# ---------------------------------------------------------------------------
section "C tests under valgrind"
# Valgrind does not see the kernel writing into buffers through io_uring: a
# read into never-initialised memory (malloc, stack) looks uninitialised to
# it, so tests initialise their read buffers.
if ! command -v valgrind > /dev/null; then
    echo "valgrind is not installed; skipped"
    skipped=$((skipped + 1))
else
    for name in "${ctests[@]}"; do
        if [[ " ${valgrind_skip[*]} " == *" $name "* ]]; then
            echo "skip - valgrind: $name (in valgrind_skip)"
            skipped=$((skipped + 1))
            continue
        fi
        log=$work/$name.valgrind.log
        in_scratch "$test_limit" valgrind -q --leak-check=full \
            --errors-for-leak-kinds=definite --error-exitcode=99 "$work/$name" > "$log" 2>&1
        status=$?
        if [ "$status" -eq 0 ]; then
            pass "valgrind: $name"
        else
            grep -E '^==[0-9]+==|^not ok - ' "$log" | head -40
            fail "valgrind: $name exited with status $status (log: ${log#"$root"/})"
        fi
    done
fi

# ---------------------------------------------------------------------------
export BLKIO_LIB=$so   # the library under test, for suites that look for it
for script in tests/*/run.sh; do
    [ -x "$script" ] || continue
    suite=$(basename "$(dirname "$script")")
    section "suite $suite ($script)"
    run_program "$suite" "$work/suite-$suite.log" "$suite_limit" "$script"
done

summary
