#!/usr/bin/env bash
# Runs the whole test suite on a fresh or warm machine.
#
# Installs what is missing (system libraries for librdkafka, cargo-nextest, the s3s-fs S3 server,
# a Python virtualenv with pyarrow and DuckDB, PostgreSQL's and MariaDB's servers), builds the workspace,
# then runs every unit, integration and doc test. Integration tests start their own real broker
# processes (`sluice broker`, the embedded tansu engine) and `sluice` worker processes on free
# ports, so no external service has to be running.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need_apt=()
for pkg in libssl-dev zlib1g-dev pkg-config make g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# A real S3-compatible server for the S3 sink tests (s3s-fs checks SigV4 signatures and does real
# multipart uploads). Installed once under ~/.cache/sluice/tools; the tests find it there.
TOOLS="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice/tools}"
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  echo "installing s3s-fs 0.14.1 (about 4 minutes)"
  CARGO_TARGET_DIR="$TOOLS/build" cargo install s3s-fs@0.14.1 --locked --features binary --root "$TOOLS"
  rm -rf "$TOOLS/build"
fi
export SLUICE_S3S_FS="$TOOLS/bin/s3s-fs"

# A real Kinesis emulator for the Kinesis connector tests: kinesalite (in memory), run by node;
# the tests start it on free loopback ports.
command -v node >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
if [ ! -f "$TOOLS/kinesalite/node_modules/kinesalite/package.json" ]; then
  echo "installing kinesalite 3.3.3"
  mkdir -p "$TOOLS/kinesalite"
  (cd "$TOOLS/kinesalite" && npm install --silent --no-audit --no-fund kinesalite@3.3.3)
fi
export SLUICE_KINESALITE="$TOOLS/kinesalite/node_modules/kinesalite"

# A real Lambda runtime for the Lambda sink tests: serverless-offline serving the Invoke API for
# Node handlers the tests write; the tests start it on free loopback ports.
if [ ! -f "$TOOLS/serverless/node_modules/serverless-offline/package.json" ]; then
  echo "installing serverless 3.40.0 and serverless-offline 13.10.1"
  mkdir -p "$TOOLS/serverless"
  (cd "$TOOLS/serverless" && npm install --silent --no-audit --no-fund serverless@3.40.0 serverless-offline@13.10.1)
fi
export SLUICE_SERVERLESS="$TOOLS/serverless"

# A real PostgreSQL server for the JDBC source tests: each test runs initdb and postgres in a
# temporary directory on a free port (as the postgres user when run as root).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
# A real MariaDB server for the JDBC source tests: each test runs mariadb-install-db and mariadbd
# in a temporary directory on a free port (tests/src/mariadb.rs). The package's own service is
# not used (nor started: there is no init system here).
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing MariaDB"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server
fi

# Lake readers for the S3 fidelity test (pyarrow's dataset API and DuckDB) and moto's server (STS
# for the assumed-role tests), in a virtualenv shared with scripts/bench.sh.
VENV="$HOME/.cache/sluice/venv"
if ! "$VENV/bin/python" -c 'import pyarrow, duckdb, moto.server' 2>/dev/null; then
  echo "installing pyarrow, duckdb and moto into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet pyarrow duckdb 'moto[server]'
fi
export SLUICE_TEST_PYTHON="$VENV/bin/python"

# docker-compose.yml cannot run here (no Docker engine): check that it parses. The worker's unit
# tests check that every SLUICE_* variable it sets is a real setting.
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 -c 'import yaml, sys; d = yaml.safe_load(open("docker-compose.yml")); assert d["services"], "no services"; print("docker-compose.yml: services", ", ".join(d["services"]))'

# The worker is built with its test-only crash points (fault-injection) for the crash tests; every
# command below uses the same features, so nothing is built twice.
FEATURES=(--features sluice-worker/fault-injection)
cargo build --workspace --all-targets "${FEATURES[@]}"
# Integration tests find the worker binary here.
export SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
# Doc tests first (nextest does not run them), so the run closes with nextest's summary.
cargo test --workspace --doc "${FEATURES[@]}"
cargo nextest run --workspace --no-fail-fast --test-threads "${SLUICE_TEST_THREADS:-2}" "${FEATURES[@]}"
