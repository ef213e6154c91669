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
# BENCH_PROFILE=profiling: the same code with symbols, for `perf record`.
PROFILE=${BENCH_PROFILE:-release}
export BENCH_PROFILE=$PROFILE
cargo build --profile "$PROFILE" -p api -p deliver -p postback-local -p postback-bench
RUST_LOG=${RUST_LOG:-error} "./target/$PROFILE/postback-bench" "$@"
# `make bench-cost` (--cost): the metered cost table alone, no probe;
# `make bench-prototype` (--prototype-outbox): its own file, no probe.
if [ -n "${1:-}" ]; then exit 0; fi
# The stand-ins' own speed, appended to the table: the ceiling under the figures above.
"$(scripts/stack.sh venv)/bin/python" bench/standin_probe.py "${BENCH_DDB_PORT:-18100}" "${BENCH_SQS_PORT:-18424}" > .local/bench/probe.md
python3 - <<'PY'
import pathlib
res = pathlib.Path("bench/results")
latest = res / "latest.md"
text = latest.read_text()
rows = pathlib.Path(".local/bench/probe.md").read_text()
marker = "\nThe stand-ins are"
text = text.replace(marker, rows.rstrip("\n") + "\n" + marker, 1)
latest.write_text(text)
newest = sorted(p for p in res.glob("20*.md"))[-1]
newest.write_text(text)
print(rows)
PY
