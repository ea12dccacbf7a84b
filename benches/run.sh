#!/bin/bash
# This library vs upstream libblkio 1.5.0 vs a raw io_uring loop, measured by
# one C program (benches/bench.c) run against each libblkio.so.1 through
# LD_LIBRARY_PATH. Prints IOPS (median of interleaved repetitions) and
# callgrind instructions per I/O (whole process, and the libblkio object
# alone), with ratios. See docs/benchmarks.md.
#
# Usage: benches/run.sh [--quick] [iops] [callgrind] [vhost-user] [multiqueue]
#        (no section named: all of them)
# Environment: BENCH_REPS (IOPS repetitions, default 5, --quick 3),
#              BENCH_SECS (seconds per repetition, default 1),
#              BENCH_IOS (callgrind I/O difference, default 20000).
set -e
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench
mkdir -p "$OUT/ours"

REPS=${BENCH_REPS:-5}
SECS=${BENCH_SECS:-1}
IOS=${BENCH_IOS:-20000}
SECTIONS=
for a in "$@"; do
    case $a in
    --quick) REPS=${BENCH_REPS:-3}; SECS=${BENCH_SECS:-0.5}; IOS=${BENCH_IOS:-5000} ;;
    iops | callgrind | vhost-user | multiqueue) SECTIONS="$SECTIONS $a" ;;
    *) echo "usage: $0 [--quick] [iops] [callgrind] [vhost-user] [multiqueue]" >&2; exit 2 ;;
    esac
done
[ -n "$SECTIONS" ] || SECTIONS=" iops callgrind vhost-user multiqueue"
want() { case "$SECTIONS" in *" $1"*) return 0 ;; esac; return 1; }

# --- the three columns ------------------------------------------------------
cargo build -q --release -p blkio --lib
ln -sf ../../release/libblkio.so "$OUT/ours/libblkio.so.1"
UPSTREAM=$ROOT/$(benches/upstream.sh)
cc -O2 -Wall -Werror -Iinclude benches/bench.c -o "$OUT/bench" \
    -L"$OUT/ours" -l:libblkio.so.1 -ldl -lpthread

# runs the program against one column: ours | upstream | raw | rawfixed
# bench_run COLUMN DRIVER PATH MODE QD BS OP COUNT SECONDS QUEUES
bench_run() {
    local col=$1 driver=$2 path=$3
    shift 3
    case $col in
    ours) LD_LIBRARY_PATH=$OUT/ours "$OUT/bench" "lib:$driver:$path" "$@" ;;
    upstream) LD_LIBRARY_PATH=$UPSTREAM "$OUT/bench" "lib:$driver:$path" "$@" ;;
    raw) LD_LIBRARY_PATH=$OUT/ours "$OUT/bench" "raw:$path" "$@" ;;
    rawfixed) LD_LIBRARY_PATH=$OUT/ours "$OUT/bench" "rawfixed:$path" "$@" ;;
    esac
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}'; }

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs, kernel $(uname -r)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- targets ------------------------------------------------------------------
TMPFS_FILE=/dev/shm/blkio-bench-$$.img
DISK_FILE=$OUT/page-cache.img
cleanup() {
    rm -f "$TMPFS_FILE"
    [ -z "$QSD_PID" ] || { kill "$QSD_PID" 2>/dev/null; wait "$QSD_PID" 2>/dev/null || true; }
    rm -f "$OUT/vhost-user.sock"
}
trap cleanup EXIT
head -c $((256 << 20)) /dev/urandom >"$TMPFS_FILE"
[ -s "$DISK_FILE" ] || cp "$TMPFS_FILE" "$DISK_FILE"
cat "$DISK_FILE" >/dev/null

# proof of which object each column loads (dladdr inside the program)
for col in ours upstream; do
    got=$(bench_run "$col" io_uring "$TMPFS_FILE" block 1 4096 randread 64 0 1 | field lib)
    echo "column $col loads $(readlink -f "$got") ($got)"
done

# rows: NAME MODE QD BS OP
IO_URING_ROWS="event-QD1:event:1:4096:randread
block-QD1:block:1:4096:randread
block-QD32:block:32:4096:randread
batch-QD32-randread:batch:32:4096:randread
batch-QD32-randwrite:batch:32:4096:randwrite
batch-QD8-read64k:batch:8:65536:read"
VHOST_ROWS="event-QD1:event:1:4096:randread
block-QD1:block:1:4096:randread
batch-QD32:batch:32:4096:randread"

# iops_rows DRIVER PATH ROWS COLUMNS...: interleaved repetitions, medians
iops_rows() {
    local driver=$1 path=$2 rows=$3
    shift 3
    local cols="$*"
    printf '  %-22s' row
    for c in $cols; do printf ' %12s' "$c"; done
    printf ' %10s' ours/up
    case $cols in *rawfixed*) printf ' %11s' ours/fixed ;; esac
    echo
    echo "$rows" | while IFS=: read -r name mode qd bs op; do
        rm -f "$OUT"/iops.*
        for _ in $(seq "$REPS"); do
            for c in $cols; do
                [ "$mode" = event ] && case $c in raw*) continue ;; esac
                bench_run "$c" "$driver" "$path" "$mode" "$qd" "$bs" "$op" 0 "$SECS" 1 |
                    field iops >>"$OUT/iops.$c"
            done
        done
        printf '  %-22s' "$name"
        for c in $cols; do
            if [ -s "$OUT/iops.$c" ]; then
                eval "m_$c=$(median <"$OUT/iops.$c")"
            else
                eval "m_$c=0"
            fi
            eval "printf ' %12.0f' \$m_$c"
        done
        printf ' %10s' "$(ratio "$m_ours" "$m_upstream")"
        case $cols in *rawfixed*) printf ' %11s' "$(ratio "$m_ours" "$m_rawfixed")" ;; esac
        echo
    done
}

# total Ir of a callgrind run; and Ir of the objects named like libblkio
cg_run() {
    local out=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1
}
cg_total() { sed -n 's/^\(totals\|summary\): \([0-9]*\).*/\2/p' "$1" | head -1; }
# self Ir of the objects whose path matches libblkio, summed straight from the
# profile (callgrind_annotate names an object only on some lines once
# inlined functions carry file names of their own)
cg_lib() {
    awk '
    function name(s,   id, rest) {
        if (match(s, /^\([0-9]+\)/)) {
            id = substr(s, 1, RLENGTH); rest = substr(s, RLENGTH + 2)
            if (rest != "") names[id] = rest
            return names[id]
        }
        return s
    }
    /^ob=/ { ob = name(substr($0, 4)); next }
    /^cob=/ { name(substr($0, 5)); next }
    /^calls=/ { skip = 1; next }
    /^[0-9+*-]/ { if (skip) { skip = 0; next } if (ob ~ /libblkio/) s += $2; next }
    END { print s + 0 }' "$1"
}

# cg_rows DRIVER PATH ROWS: Ir/IO = (run of N2 I/Os - run of N1) / (N2 - N1)
cg_rows() {
    local driver=$1 path=$2 rows=$3 n1=1000 n2=$((1000 + IOS))
    printf '  %-22s %10s %10s %6s %10s %10s %6s\n' row ours upstream ratio "ours-lib" "up-lib" ratio
    echo "$rows" | while IFS=: read -r name mode qd bs op; do
        for c in ours upstream; do
            for n in $n1 $n2; do
                f=$OUT/callgrind/$driver-$name-$c-$n.out
                case $c in
                ours) lp=$OUT/ours ;;
                upstream) lp=$UPSTREAM ;;
                esac
                LD_LIBRARY_PATH=$lp cg_run "$f" "$OUT/bench" "lib:$driver:$path" \
                    "$mode" "$qd" "$bs" "$op" "$n" 0 1
            done
            a=$OUT/callgrind/$driver-$name-$c-$n1.out b=$OUT/callgrind/$driver-$name-$c-$n2.out
            eval "t_$c=$(awk -v a="$(cg_total "$a")" -v b="$(cg_total "$b")" -v n="$IOS" 'BEGIN {printf "%.0f", (b - a) / n}')"
            eval "l_$c=$(awk -v a="$(cg_lib "$a")" -v b="$(cg_lib "$b")" -v n="$IOS" 'BEGIN {printf "%.0f", (b - a) / n}')"
        done
        printf '  %-22s %10s %10s %6s %10s %10s %6s\n' "$name" "$t_ours" "$t_upstream" \
            "$(ratio "$t_ours" "$t_upstream")" "$l_ours" "$l_upstream" "$(ratio "$l_ours" "$l_upstream")"
    done
}

if want iops; then
    echo
    echo "== IOPS, io_uring, tmpfs (median of $REPS interleaved ${SECS}s runs) =="
    iops_rows io_uring "$TMPFS_FILE" "$IO_URING_ROWS" ours upstream raw rawfixed
    echo
    echo "== IOPS, io_uring, page-cache file on $(stat -f -c %T "$DISK_FILE") =="
    iops_rows io_uring "$DISK_FILE" "block-QD1:block:1:4096:randread
batch-QD32-randread:batch:32:4096:randread" ours upstream raw rawfixed
fi

if want callgrind; then
    mkdir -p "$OUT/callgrind"
    echo
    echo "== callgrind Ir/IO, io_uring, tmpfs ($IOS I/Os difference; whole process, then the libblkio object) =="
    cg_rows io_uring "$TMPFS_FILE" "$IO_URING_ROWS"
    echo "  profiles: $OUT/callgrind/ (callgrind_annotate FILE)"
fi

if want vhost-user; then
    echo
    echo "== vhost-user (qemu-storage-daemon, null-co) =="
    SOCK=$OUT/vhost-user.sock
    rm -f "$SOCK"
    if command -v qemu-storage-daemon >/dev/null; then
        qemu-storage-daemon \
            --blockdev driver=null-co,node-name=null,size=1073741824,read-zeroes=on \
            --export "type=vhost-user-blk,id=exp,node-name=null,addr.type=unix,addr.path=$SOCK,writable=on,num-queues=2" \
            >/dev/null 2>&1 &
        QSD_PID=$!
        for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
        iops_rows virtio-blk-vhost-user "$SOCK" "$VHOST_ROWS" ours upstream
        if want callgrind; then
            cg_rows virtio-blk-vhost-user "$SOCK" "$VHOST_ROWS"
        fi
    else
        echo "skip - qemu-storage-daemon not found (apt-get install qemu-system-x86)"
    fi
fi

if want multiqueue; then
    echo
    echo "== two queues vs one (io_uring, page-cache file, block QD1, one thread per queue) =="
    for c in ours upstream rawfixed; do
        rm -f "$OUT"/mq.*
        for _ in $(seq "$REPS"); do
            for q in 1 2; do
                bench_run "$c" io_uring "$DISK_FILE" block 1 4096 randread 0 "$SECS" "$q" |
                    field iops >>"$OUT/mq.$q"
            done
        done
        one=$(median <"$OUT/mq.1") two=$(median <"$OUT/mq.2")
        printf '  %-10s 1 queue %10.0f  2 queues %10.0f  scaling %s\n' "$c" "$one" "$two" "$(ratio "$two" "$one")"
    done
fi
