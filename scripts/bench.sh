#!/usr/bin/env bash
# Builds release binaries and runs the benchmark (records count as the first argument, default 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release -p sluice-worker --bin sluice
cargo build --release -p sluice-bench
SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice" "$CARGO_TARGET_DIR/release/sluice-bench" "$@"
