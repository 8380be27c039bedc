#!/usr/bin/env bash
# Runs the whole test suite on this machine: setup (idempotent), then every test of the
# workspace, then one summary line with the totals.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
