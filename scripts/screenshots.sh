#!/usr/bin/env bash
# `make screenshots`: the console's browser tests with SCREENSHOTS_DIR set, so
# they save the main screens (desktop 1280x900, phone 390x844) as PNGs, into
# .local/screenshots/ to look at. The README's pictures (docs/screenshots/,
# tracked) are rewritten only when asked: `make screenshots DOCS=1`.
# Starts and stops its own stand-ins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/browser.sh
scripts/stack.sh start shots "${SHOTS_DDB_PORT:-18600}" "${SHOTS_SQS_PORT:-18924}"
trap 'scripts/stack.sh stop shots' EXIT
# shellcheck disable=SC1091
source .local/shots/env
if [ "${DOCS:-0}" = 1 ]; then
  export SCREENSHOTS_DIR="$PWD/docs/screenshots"
else
  export SCREENSHOTS_DIR="$PWD/.local/screenshots"
fi
cargo nextest run -p integration-tests -E 'test(/console::/)' --no-fail-fast
ls -1 "$SCREENSHOTS_DIR"/*/
echo "screenshots in $SCREENSHOTS_DIR (make screenshots DOCS=1 writes the README's, docs/screenshots/)"
