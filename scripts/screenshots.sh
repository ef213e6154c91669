#!/usr/bin/env bash
# `make screenshots`: the console's browser tests with SCREENSHOTS_DIR set, so
# they save the main screens (desktop 1280x900, phone 390x844) as PNGs in
# docs/screenshots/. Starts and stops its own stand-ins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/browser.sh
scripts/stack.sh start shots "${SHOTS_DDB_PORT:-18600}" "${SHOTS_SQS_PORT:-18924}"
trap 'scripts/stack.sh stop shots' EXIT
# shellcheck disable=SC1091
source .local/shots/env
export SCREENSHOTS_DIR="$PWD/docs/screenshots"
cargo nextest run -p integration-tests -E 'test(/console::/)' --no-fail-fast
ls -1 docs/screenshots/*/
