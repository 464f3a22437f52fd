#!/usr/bin/env bash
# The test command: every Rust test (unit and integration, through the embedded broker), then the
# interoperability check with pandas and DuckDB on output the pipeline writes, then the end-to-end,
# exactly-once and restart tests again against an independent broker, tansu, when it is installed
# (REQUIRE_TANSU=1 makes its absence an error, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --no-fail-fast
cargo build --bin pipeline
scripts/check-output.sh

if command -v "${TANSU_BIN:-tansu}" > /dev/null; then
  echo "--- the same guarantees against tansu ($("${TANSU_BIN:-tansu}" --version))"
  PIPELINE_TEST_BROKER=tansu cargo nextest run -p pipeline --no-fail-fast --run-ignored all \
    -E 'test(end_to_end) | test(exactly_once) | test(tansu_)'
elif [ "${REQUIRE_TANSU:-0}" = 1 ]; then
  echo "tansu is not installed (REQUIRE_TANSU=1)" >&2
  exit 1
else
  echo "SKIPPED: tansu is not installed, so the second broker target did not run (see README, Running the tests)"
fi
