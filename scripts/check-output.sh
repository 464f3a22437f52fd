#!/usr/bin/env bash
# Writes real output through the pipeline's own processes (embedded broker, producer, processor)
# and checks it the way users read it: pandas and DuckDB (tests/python/check_layers.py), then the
# README's Python snippets, run against that output.
# Needs: a built `pipeline` binary (PIPELINE_BIN, default target/debug/pipeline) and the Python
# packages of tests/python/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${PIPELINE_BIN:-$root/target/debug/pipeline}
work=$(mktemp -d /tmp/pipeline-check.XXXXXX)
broker_pid=
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Starts an embedded broker (`pipeline broker` with the given arguments), its output in
# $1-broker.out; sets broker_pid and bootstrap.
start_broker() {
    local out=$1; shift
    "$bin" broker "$@" > "$out-broker.out" 2> "$out-broker.err" &
    broker_pid=$!
    for _ in $(seq 50); do grep -q '^bootstrap=' "$out-broker.out" 2>/dev/null && break; sleep 0.1; done
    bootstrap=$(sed -n 's/^bootstrap=//p' "$out-broker.out")
}

# One run: its own embedded broker, the producer, the processor, then the pandas/DuckDB check.
# The mixed run has rejects in every batch; in the clean run no batch has one, so silver copies
# bronze's encoded `value` chunk as its `json_str` (the other write path). The large run is one
# batch of 70,000 rows: its bronze and silver files are one row group per core, encoded in
# parallel, silver's `json_str` copied from bronze group by group.
check_run() {
    local dir=$1 count=$2 bad_ratio=$3 late_ratio=$4 per_trigger=${5:-1500} partitions=${6:-3}
    mkdir -p "$dir"
    start_broker "$dir/run" --partitions "$partitions"
    echo "--- $(basename "$dir") run: embedded broker at $bootstrap"
    (cd "$dir" && "$bin" producer --bootstrap-servers "$bootstrap" --count "$count" --msgs-per-sec 0 \
        --seed 17 --bad-ratio "$bad_ratio" --late-ratio "$late_ratio" --log-every 2000) 2> "$dir/producer.log"
    tail -n 1 "$dir/producer.log"
    local bad
    bad=$(sed -n 's/.*\[producer\] done: .* bad=\([0-9]*\) .*/\1/p' "$dir/producer.log")
    local out=$dir/data/output/parquet
    (cd "$dir" && "$bin" processor --bootstrap-servers "$bootstrap" --output-path "$out" \
        --trigger available-now --starting-offsets earliest --max-offsets-per-trigger "$per_trigger") 2> "$dir/processor.log"
    grep -c 'batch [0-9]*:' "$dir/processor.log" | sed 's/^/batches: /'
    python3 tests/python/check_layers.py "$out" "$count" "$bad"
    kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}

check_run "$work/clean" 4000 0 0
check_run "$work/mixed" 6000 0.04 0.1
check_run "$work/large" 70000 0 0 70000 12
python3 - "$work/large/data/output/parquet" "$(nproc)" <<'PY'
import pathlib, sys
import pyarrow.parquet as pq
out, cores = pathlib.Path(sys.argv[1]), int(sys.argv[2])
for layer in ("bronze", "silver"):
    (path,) = sorted((out / layer).glob("*.parquet"))
    groups = [g.num_rows for g in (pq.ParquetFile(path).metadata.row_group(i)
              for i in range(pq.ParquetFile(path).metadata.num_row_groups))]
    assert sum(groups) == 70000 and len(groups) == min(cores, 2), (layer, groups)
    print(f"{layer}: one file of {len(groups)} row groups {groups}")
PY

# The events dataset (seed 001) into the mixed run's output folder (its folders and checkpoint are
# its own): 60,000 events over 60 s of event time, rejects but no late rows, checked with DuckDB.
events_run() {
    local dir=$1 count=60000
    start_broker "$dir/events" --topic events --partitions 3
    echo "--- events run: embedded broker at $bootstrap"
    (cd "$dir" && DATASET=events "$bin" producer --bootstrap-servers "$bootstrap" --count "$count" \
        --msgs-per-sec 0 --seed 23 --bad-ratio 0.02 --event-time-start 2025-11-06T07:00:00Z \
        --log-every 20000) 2> "$dir/events-producer.log"
    tail -n 1 "$dir/events-producer.log"
    local bad
    bad=$(sed -n 's/.*\[producer\] done: .* bad=\([0-9]*\) .*/\1/p' "$dir/events-producer.log")
    (cd "$dir" && DATASET=events "$bin" processor --bootstrap-servers "$bootstrap" \
        --output-path "$dir/data/output/parquet" --trigger available-now \
        --max-offsets-per-trigger 15000) > "$dir/events-processor.out" 2> "$dir/events-processor.log"
    grep -c 'batch [0-9]*:' "$dir/events-processor.log" | sed 's/^/events batches: /'
    grep -q '^Batch: 0$' "$dir/events-processor.out" || { echo "no console table"; exit 1; }
    python3 tests/python/check_events.py "$dir/data/output/parquet" "$((count - bad))"
    kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}
events_run "$work/mixed"

# The financial dataset (seeds 003/004) into the same folder: 20,000 transactions with rejects
# and unusual amounts; the embedded broker also holds the two output topics.
financial_run() {
    local dir=$1 count=20000
    start_broker "$dir/financial" --topic financial_transactions --partitions 5 \
        --extra-topic transaction_aggregates:3 --extra-topic transaction_anomalies:3
    echo "--- financial run: embedded broker at $bootstrap"
    (cd "$dir" && DATASET=financial "$bin" producer --bootstrap-servers "$bootstrap" --count "$count" \
        --msgs-per-sec 0 --seed 29 --bad-ratio 0.02 --fraud-ratio 0.01 \
        --event-time-start 2025-11-07T08:00:00Z --log-every 10000) 2> "$dir/financial-producer.log"
    tail -n 1 "$dir/financial-producer.log"
    local bad
    bad=$(sed -n 's/.*\[producer\] done: .* bad=\([0-9]*\) .*/\1/p' "$dir/financial-producer.log")
    (cd "$dir" && DATASET=financial "$bin" processor --bootstrap-servers "$bootstrap" \
        --output-path "$dir/data/output/parquet" --trigger available-now \
        --max-offsets-per-trigger 5000) 2> "$dir/financial-processor.log"
    grep -c 'batch [0-9]*:' "$dir/financial-processor.log" | sed 's/^/financial batches: /'
    python3 - "$dir/data/output/parquet" "$count" "$bad" <<'PY'
import sys
import duckdb
out, count, bad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = lambda layer: duckdb.sql(f"SELECT count(*) FROM '{out}/{layer}/*.parquet'").fetchall()[0][0]
assert n("financial_bronze") == count, n("financial_bronze")
assert n("financial_silver") == count - bad and n("financial_quarantine") == bad
kinds = dict(duckdb.sql(f"SELECT anomalyType, count(*) FROM '{out}/financial_anomalies/*.parquet' GROUP BY ALL").fetchall())
assert set(kinds) == {"HIGH_FREQUENCY", "UNUSUAL_AMOUNT"}, kinds
print(f"financial: bronze {count}, silver {count - bad}, quarantine {bad}, anomalies {kinds}")
PY
    kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}
financial_run "$work/mixed"

# The transactions dataset as Delta Lake tables (OUTPUT_FORMAT=delta), for the README's Delta
# snippet; delta_tests.rs checks the tables' contents with three readers.
delta_run() {
    local dir=$1
    mkdir -p "$dir"
    start_broker "$dir/run" --partitions 3
    echo "--- delta run: embedded broker at $bootstrap"
    (cd "$dir" && "$bin" producer --bootstrap-servers "$bootstrap" --count 5000 --msgs-per-sec 0 \
        --seed 31 --bad-ratio 0.04 --event-time-start 2025-11-07T23:59:58Z --log-every 5000) 2> "$dir/producer.log"
    (cd "$dir" && "$bin" processor --bootstrap-servers "$bootstrap" --output-path "$dir/data/output/parquet" \
        --output-format delta --trigger available-now --starting-offsets earliest \
        --max-offsets-per-trigger 1000) 2> "$dir/processor.log"
    grep -c 'batch [0-9]*:' "$dir/processor.log" | sed 's/^/delta batches: /'
    kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}
delta_run "$work/delta"

# The README's Python snippets, run from a folder holding data/output/parquet as users have it
# (the transactions, events and financial layers; the Delta snippets, whose first line says so,
# in the Delta run's folder).
python3 - "$root/README.md" "$work/mixed" "$work/delta" <<'PY'
import os, re, shutil, subprocess, sys
readme, work, delta = sys.argv[1], sys.argv[2], sys.argv[3]
blocks = re.findall(r"```python\n(.*?)```", open(readme).read(), re.S)
assert len(blocks) >= 2, "the README has pandas and DuckDB snippets"
assert any(b.startswith("# Delta") for b in blocks), "the README has a Delta snippet"
for i, code in enumerate(blocks, 1):
    if code.startswith("# On S3"):
        # Reads compose's S3 server: delta_tests.rs reads the same way from a moto server.
        print(f"README snippet {i} skipped (it reads an S3 server)")
        continue
    if code.startswith("# On Cassandra"):
        # Reads compose's Cassandra: cassandra_tests.rs reads the table with the same driver
        # and calls (tests/python/check_cassandra.py) from a node of scripts/cassandra.sh.
        print(f"README snippet {i} skipped (it reads a Cassandra server)")
        continue
    cwd = delta if code.startswith("# Delta") else work
    env = dict(os.environ)
    if code.startswith("# Delta, Spark") and not shutil.which("java"):
        print(f"README snippet {i} skipped (Spark needs Java)")
        continue
    if code.startswith("# Delta, Spark"):
        # pyspark and delta-spark, installed in a folder of their own (scripts/test.sh).
        env["PYTHONPATH"] = os.path.expanduser("~/.cache/pipeline-py/spark")
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"README snippet {i} failed:\n{code}\n{result.stderr}")
    print(f"README snippet {i} ran; its last line: {result.stdout.strip().splitlines()[-1][:150]}")
PY
