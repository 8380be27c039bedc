#!/usr/bin/env bash
# Sets up this machine (idempotently), builds the three components and runs the seed's scenario
# with them: etcd, skydns, registrator, logspout and two elasticsearch containers; it shows the
# etcd records, DNS answers (A with round robin, SRV), a shipped log line, and a container leaving.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo build --quiet --locked -p registrator -p skydns -p logspout --bins
cargo run --quiet --locked -p harness --example demo
