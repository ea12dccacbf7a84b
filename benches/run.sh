#!/bin/sh
# Library vs raw io_uring benchmark (docs/benchmarks.md).
# Usage: benches/run.sh [--quick] [disk] [tmpfs] [multiqueue] [callgrind] [vhost-user]
set -e
cd "$(dirname "$0")/.."
exec cargo run --release --example compare -- "$@"
