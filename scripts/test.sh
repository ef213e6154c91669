#!/usr/bin/env bash
# `make test`: install what is missing, start the stand-ins, lint the template
# and the code, run every test, stop the stand-ins (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

DDB_PORT=${TEST_DDB_PORT:-18000}
SQS_PORT=${TEST_SQS_PORT:-18324}

step() { printf '\n==> %s\n' "$*"; }

step "local stand-ins (DynamoDB Local :$DDB_PORT, moto SQS :$SQS_PORT)"
scripts/stack.sh start test "$DDB_PORT" "$SQS_PORT"
trap 'scripts/stack.sh stop test' EXIT
# shellcheck disable=SC1091
source .local/test/env

step "a browser for the console tests (Debian's chromium and chromium-driver)"
scripts/browser.sh

step "template.yaml: SAM translation + cfn-lint"
"$(scripts/stack.sh venv)/bin/python" scripts/lint_template.py

step "openapi.yaml: OpenAPI 3 validation (the router check is tests/openapi.rs)"
"$(scripts/stack.sh venv)/bin/openapi-spec-validator" openapi.yaml

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build the local runner (tests run it as a person does, in its own process)"
cargo build --quiet -p postback-local

step "the contract: schemathesis fuzzes the local runner from openapi.yaml (${CONTRACT_SECONDS:-100} s, fixed seed)"
scripts/contract.sh

step "the README's walk-through, run as written (docs/walkthrough.sh)"
scripts/walkthrough-check.sh

step "tests (unit, handler, integration against the stand-ins)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi
