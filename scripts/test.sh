#!/usr/bin/env bash
# The test command: every Rust test (unit and integration, through the embedded broker), then the
# interoperability check with pandas and DuckDB on output the pipeline writes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --no-fail-fast
cargo build --bin pipeline
scripts/check-output.sh
