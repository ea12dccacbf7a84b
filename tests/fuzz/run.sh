#!/usr/bin/env bash
# Fuzz suite: builds the cargo-fuzz targets of fuzz/ and runs each one for
# a bounded time from its committed seed corpus (fuzz/corpus/<target>/).
# One "ok - " / "not ok - " line per target, with the executions done; a
# crash leaves its input under fuzz/artifacts/<target>/. Needs the nightly
# toolchain and cargo-fuzz; without them it prints "skip - " lines.
#
# env: FUZZ_SECONDS   seconds per target (default 30; 10 targets plus the
#                     build, about 7 minutes on 2 cores)
#      FUZZ_TARGETS   space-separated subset of targets (default: all)
set -u
cd "$(dirname "$0")/../../fuzz" || exit 1

seconds=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"split_ring packed_ring virtio_status blk_config nvme_status nvme_identify nvme_zone_report c_api vhost_user_reply virtio_pci_caps"}

if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    echo "skip - fuzz: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
    echo "skip - fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz)"
    exit 0
fi

log=$(mktemp -d "${TMPDIR:-/tmp}/blkio-fuzz.XXXXXX")
trap 'rm -rf "$log"' EXIT
# The c_api target keeps its scratch file in $TMPDIR.
export TMPDIR=$log

if ! cargo +nightly fuzz build -O > "$log/build" 2>&1; then
    tail -30 "$log/build"
    echo "not ok - fuzz: cargo fuzz build failed"
    exit 1
fi

status=0
for t in $targets; do
    # A scratch copy of the seeds: new inputs libFuzzer finds stay out of
    # the committed corpus.
    work=$log/corpus-$t
    mkdir -p "$work" "artifacts/$t"
    cp corpus/"$t"/* "$work"/ 2> /dev/null
    cargo +nightly fuzz run -O "$t" "$work" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "$log/$t" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log/$t" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log/$t" | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "ok - fuzz $t: ${execs:-?} executions in ${seconds}s, ${cov:-cov: ?}, no crash"
    else
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log/$t" | head -8
        echo "not ok - fuzz $t: exit $rc after ${execs:-?} executions (input in fuzz/artifacts/$t/)"
        status=1
    fi
done
exit "$status"
