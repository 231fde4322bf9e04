#!/usr/bin/env bash
# Runs one Sluice worker. With no bootstrap.servers configured it starts the embedded broker (data in
# ./data) and serves the Kafka Connect REST API on port 8083. Arguments go to `sluice` (for example a
# worker properties file).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
for pkg in libssl-dev zlib1g-dev pkg-config make g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; }
done
exec cargo run --release --quiet -p sluice-worker --bin sluice -- "$@"
