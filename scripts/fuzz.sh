#!/usr/bin/env bash
# `make fuzz`: runs each cargo-fuzz target for FUZZ_SECONDS (default 30).
# cargo-fuzz wants nightly flags; RUSTC_BOOTSTRAP lets the machine's stable
# toolchain accept them. Installs cargo-fuzz on first use (~2 min).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in postback events template sqs_message; do
  echo "==> fuzz $target for ${SECONDS_EACH}s"
  (cd fuzz && cargo fuzz run --sanitizer none "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048)
done
