#!/usr/bin/env bash
# Sets up this machine (idempotently) and runs the demo: a real etcd, a real container with a
# published port, its service record written with the SkyDNS key schema, DNS and syslog checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo run --quiet --locked -p harness --example demo
