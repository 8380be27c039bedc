#!/usr/bin/env bash
# Runs the whole test suite on this machine: setup (idempotent), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo test --workspace --locked
