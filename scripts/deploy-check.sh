#!/usr/bin/env bash
# `make deploy-check`: the deploy path, exercised without an AWS account.
# Installs the AWS SAM CLI and cargo-lambda (with zig, its cross-linker) into
# the project's tool cache, adds Rust's arm64 Linux target, then runs
# `sam validate --lint` and `sam build` (samconfig.toml as shipped) from a
# clean cargo target, and prints each function's arm64 binary size and the
# time taken. Not part of `make test` (a clean arm64 release build takes
# minutes); run it before a release.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${POSTBACK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postback-service}
PACKAGES=("aws-sam-cli==1.170.0" "cargo-lambda==1.9.2")
VENV="$TOOLS/deploy-venv-$(printf '%s ' "${PACKAGES[@]}" | sha1sum | cut -c1-8)"
TARGET=aarch64-unknown-linux-gnu
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }

step "the SAM CLI and cargo-lambda in $VENV"
if [ ! -x "$VENV/bin/sam" ] || [ ! -x "$VENV/bin/cargo-lambda" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
fi
export PATH="$VENV/bin:$PATH"
# Offline: no telemetry, no update check; a region for the lint only.
export SAM_CLI_TELEMETRY=0 SAM_CLI_CONTAINER_CONNECTION_TIMEOUT=1
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_REGION=${AWS_REGION:-us-east-1}
sam --version
cargo lambda --version

step "Rust's $TARGET target, before any build (four builds adding it at once race)"
rustup target add "$TARGET"

step "sam validate --lint"
sam validate --lint

step "sam build from a clean target (samconfig.toml as shipped)"
rm -rf .aws-sam .local/deploy-target
export CARGO_TARGET_DIR="$PWD/.local/deploy-target"
build_started=$SECONDS
sam build
build_seconds=$((SECONDS - build_started))

step "arm64 binaries"
for f in .aws-sam/build/*/bootstrap; do
  name=$(basename "$(dirname "$f")")
  bytes=$(stat -c %s "$f")
  arch=$(od -An -t x2 -j 18 -N 2 "$f" | tr -d ' ')
  [ "$arch" = "00b7" ] || { echo "$name: not an arm64 binary (e_machine $arch)" >&2; exit 1; }
  awk -v n="$name" -v b="$bytes" 'BEGIN { printf "  %-24s %6.1f MiB (%d bytes)\n", n, b / 1048576, b }'
done
echo "sam build: ${build_seconds} s; deploy-check: $((SECONDS - started)) s in all"
