#!/usr/bin/env bash
# Licence and source audit of the workspace's dependency tree with cargo-deny
# and deny.toml: every crate's licence must be on the allowlist, no wildcard
# versions, crates only from crates.io. A second run against a copy of
# deny.toml without BSD-3-Clause must fail (vmm-sys-util is BSD-3-Clause
# only): proof that a disallowed licence is caught. Advisories need the
# RustSec database from the network; without it the check is skipped with
# the reason.
set -u
cd "$(dirname "$0")/../.." || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/blkio-audit.XXXXXX")
trap 'rm -rf "$work"' EXIT

deny=$(command -v cargo-deny || echo "$HOME/.cargo/bin/cargo-deny")
if [ ! -x "$deny" ]; then
    echo "not ok - cargo-deny is not installed (.ci/run installs it)"
    exit 1
fi

if "$deny" --log-level error check licenses bans sources > "$work/check.log" 2>&1; then
    echo "ok - cargo deny check licenses bans sources: $(tail -1 "$work/check.log")"
else
    cat "$work/check.log"
    echo "not ok - cargo deny check licenses bans sources"
fi

grep -v '"BSD-3-Clause",' deny.toml > "$work/deny-no-bsd.toml"
if "$deny" --log-level error --config "$work/deny-no-bsd.toml" check licenses \
    > "$work/bad.log" 2>&1; then
    echo "not ok - a deny.toml without BSD-3-Clause still passes the licence check"
elif grep -q 'vmm-sys-util' "$work/bad.log"; then
    echo "ok - without BSD-3-Clause in the allowlist the check fails, naming vmm-sys-util"
else
    cat "$work/bad.log" | tail -5
    echo "not ok - the check without BSD-3-Clause failed, but not on vmm-sys-util"
fi

# Advisories: the database is fetched into CARGO_HOME; a short timeout so an
# offline machine does not hang.
timeout 120 "$deny" --log-level error check advisories > "$work/adv.log" 2>&1
status=$?
if [ "$status" -eq 0 ]; then
    echo "ok - cargo deny check advisories: no advisory affects the tree"
elif grep -q -i -E 'fetch|network|resolve|connect|timed out|advisory database|git' "$work/adv.log" ||
    [ "$status" -eq 124 ]; then
    reason=$(grep -i -m1 -E 'error|fail' "$work/adv.log" | cut -c1-160)
    echo "skip - advisories (no database): ${reason:-timed out after 120 s}"
else
    tail -20 "$work/adv.log"
    echo "not ok - cargo deny check advisories"
fi
