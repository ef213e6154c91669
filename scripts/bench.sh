#!/usr/bin/env bash
# `make bench`: release build, stand-ins on their own ports, the benchmark,
# results in bench/results/latest.md (and a dated copy). Bounded: about 5
# minutes of build the first time, then 2-3 minutes of measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh start bench "${BENCH_DDB_PORT:-18100}" "${BENCH_SQS_PORT:-18424}"
trap 'scripts/stack.sh stop bench' EXIT
# shellcheck disable=SC1091
source .local/bench/env
cargo build --release -p api -p deliver -p postback-local -p postback-bench
RUST_LOG=${RUST_LOG:-error} ./target/release/postback-bench
