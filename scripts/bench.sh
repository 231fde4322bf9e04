#!/usr/bin/env bash
# Builds release binaries and runs a benchmark:
#   scripts/bench.sh [records]          throughput against a plain rdkafka baseline (default 200000)
#   scripts/bench.sh failover [trials]  failover and rejoin times of a three-worker fleet (default 10)
#   scripts/bench.sh s3 [records]       Kafka → S3 Parquet against a bare consumer and a Python
#                                       baseline (default 1000000)
#   scripts/bench.sh kinesis [records]  Kafka → Kinesis (kinesalite) against a bare aws-sdk-kinesis
#                                       loop and a Python boto3 loop (default 200000)
#   scripts/bench.sh kinesis-source [records]  Kinesis → Kafka against a bare GetRecords loop and a
#                                       Python boto3 loop (default 200000)
#   scripts/bench.sh lambda [records]   Kafka → Lambda (serverless-offline) → Kafka against a bare
#                                       aws-sdk-lambda invoke loop, batch 1/20 × 1/8 in flight
#                                       (default 20000)
#   scripts/bench.sh jdbc [rows]        PostgreSQL → Kafka (JDBC source) against a bare sqlx read loop
#   scripts/bench.sh cdc [changes]      PostgreSQL changes → Kafka (CDC source) against pg_recvlogical
#                                       and a Python psycopg + confluent-kafka loop (default 1000000)
#   scripts/bench.sh overflow [trials]  a datagen source diverting to Kinesis (kinesalite) while the
#                                       broker is down, then replaying (default 5 trials)
#   scripts/bench.sh s3-stages [records] the S3 sink's stages (JSON, Arrow, Parquet) on their own,
#                                       without Kafka or S3 (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release -p sluice-worker --bin sluice
cargo build --release -p sluice-bench
export SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice"
if [ "${1:-}" = s3 ]; then
  shift
  TOOLS="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice/tools}"
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    CARGO_TARGET_DIR="$TOOLS/build" cargo install s3s-fs@0.14.1 --locked --features binary --root "$TOOLS"
  fi
  VENV="$HOME/.cache/sluice/venv"
  if ! "$VENV/bin/python" -c 'import confluent_kafka, pyarrow, boto3' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet confluent-kafka pyarrow boto3
  fi
  export SLUICE_S3S_FS="$TOOLS/bin/s3s-fs" SLUICE_BENCH_PYTHON="$VENV/bin/python"
  exec "$CARGO_TARGET_DIR/release/sluice-s3-bench" "$@"
fi
if [ "${1:-}" = kinesis ] || [ "${1:-}" = kinesis-source ] || [ "${1:-}" = overflow ]; then
  bench=sluice-kinesis-bench
  [ "$1" = kinesis-source ] && bench=sluice-kinesis-source-bench
  [ "$1" = overflow ] && bench=sluice-overflow-bench
  shift
  TOOLS="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice/tools}"
  if [ ! -f "$TOOLS/kinesalite/node_modules/kinesalite/package.json" ]; then
    mkdir -p "$TOOLS/kinesalite"
    (cd "$TOOLS/kinesalite" && npm install --silent --no-audit --no-fund kinesalite@3.3.3)
  fi
  VENV="$HOME/.cache/sluice/venv"
  if ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet boto3
  fi
  export SLUICE_KINESALITE="$TOOLS/kinesalite/node_modules/kinesalite" SLUICE_BENCH_PYTHON="$VENV/bin/python"
  exec "$CARGO_TARGET_DIR/release/$bench" "$@"
fi
if [ "${1:-}" = jdbc ]; then
  shift
  VENV="$HOME/.cache/sluice/venv"
  if ! "$VENV/bin/python" -c 'import psycopg, confluent_kafka' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'psycopg[binary]' confluent-kafka
  fi
  export SLUICE_BENCH_PYTHON="$VENV/bin/python"
  exec "$CARGO_TARGET_DIR/release/sluice-jdbc-bench" "$@"
fi
if [ "${1:-}" = cdc ]; then
  shift
  VENV="$HOME/.cache/sluice/venv"
  if ! "$VENV/bin/python" -c 'import psycopg2, confluent_kafka' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet psycopg2-binary confluent-kafka
  fi
  export SLUICE_BENCH_PYTHON="$VENV/bin/python"
  exec "$CARGO_TARGET_DIR/release/sluice-cdc-bench" "$@"
fi
if [ "${1:-}" = lambda ]; then
  shift
  TOOLS="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice/tools}"
  if [ ! -f "$TOOLS/serverless/node_modules/serverless-offline/package.json" ]; then
    mkdir -p "$TOOLS/serverless"
    (cd "$TOOLS/serverless" && npm install --silent --no-audit --no-fund serverless@3.40.0 serverless-offline@13.10.1)
  fi
  export SLUICE_SERVERLESS="$TOOLS/serverless"
  exec "$CARGO_TARGET_DIR/release/sluice-lambda-bench" "$@"
fi
if [ "${1:-}" = s3-stages ]; then
  shift
  exec "$CARGO_TARGET_DIR/release/sluice-s3-stages" "$@"
fi
if [ "${1:-}" = failover ]; then
  shift
  exec "$CARGO_TARGET_DIR/release/sluice-failover-bench" "$@"
fi
exec "$CARGO_TARGET_DIR/release/sluice-bench" "$@"
