#!/usr/bin/env bash
# Builds release binaries and runs a benchmark:
#   scripts/bench.sh [records]          throughput against a plain rdkafka baseline (default 200000)
#   scripts/bench.sh failover [trials]  failover and rejoin times of a three-worker fleet (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release -p sluice-worker --bin sluice
cargo build --release -p sluice-bench
export SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice"
if [ "${1:-}" = failover ]; then
  shift
  exec "$CARGO_TARGET_DIR/release/sluice-failover-bench" "$@"
fi
exec "$CARGO_TARGET_DIR/release/sluice-bench" "$@"
