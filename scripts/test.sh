#!/usr/bin/env bash
# The test command (it installs cargo-nextest when missing): every Rust test (unit and
# integration, through the embedded broker), then the interoperability check with pandas, DuckDB,
# polars, deltalake and Spark (when Java is there) on output the pipeline writes, then the
# Kubernetes manifests' validation (kubeconform), then the integration tests again on Apache Kafka,
# run as local processes by scripts/kafka.sh from jars that Maven fetches once:
#   - every integration test that uses a broker, and the Apache Kafka-only tests, on a KRaft node (4.x)
#     (the Cassandra sink's test with Apache Cassandra 5.0, run by scripts/cassandra.sh from jars;
#     the Avro test with a schema registry, run by scripts/schema-registry.sh from jars);
#   - end to end and the SIGKILL exactly-once test on ZooKeeper + Kafka 3.9 and on a 3-node cluster,
#     and on the cluster scale-out's three processors of each dataset (and on Delta tables) through
#     kills, a join, a leave and a broker node's death.
# Without Java or Maven the Kafka part says SKIPPED (REQUIRE_KAFKA=1 makes that an error, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-nextest > /dev/null || cargo install --locked cargo-nextest
cargo nextest run --workspace --no-fail-fast
cargo build --bin pipeline
# DuckDB's delta extension is published (PyPI: duckdb-extension-delta) for duckdb 1.5 only, so it
# goes into a folder of its own, read by the Delta readers' test (delta_tests.rs), with httpfs
# (duckdb-extension-httpfs) for the tables on the S3 server.
duckdb_delta="$HOME/.cache/pipeline-py/duckdb-delta"
[ -d "$duckdb_delta/duckdb_extension_httpfs" ] || python3 -m pip install --quiet \
  --disable-pip-version-check --target "$duckdb_delta" duckdb==1.5.5 \
  duckdb-extension-delta==1.5.5 duckdb-extension-httpfs==1.5.5
# Spark with delta-spark, the fourth reader of the Delta tests (its Delta jars come from Maven
# Central at its first run, into ~/.ivy2).
spark_py="$HOME/.cache/pipeline-py/spark"
[ -d "$spark_py/delta" ] || python3 -m pip install --quiet --disable-pip-version-check \
  --target "$spark_py" pyspark==3.5.7 delta-spark==3.3.2
# Resolved once here, so that the tests' Spark sessions (two may start at once) find the jars.
if command -v java > /dev/null; then
  ls "$HOME"/.ivy2/jars/io.delta_delta-spark_2.12-3.3.2.jar > /dev/null 2>&1 \
    || PYTHONPATH="$spark_py:tests/python" python3 -c 'import check_delta; check_delta.spark_session().stop()'
fi
scripts/check-output.sh
# The Kubernetes manifests (deploy/k8s), strictly, by kubeconform against Kubernetes' schemas.
scripts/check-k8s.sh

if ! command -v java > /dev/null || ! command -v mvn > /dev/null; then
  if [ "${REQUIRE_KAFKA:-0}" = 1 ]; then
    echo "Java and Maven are needed for the Apache Kafka tests (REQUIRE_KAFKA=1)" >&2
    exit 1
  fi
  echo "SKIPPED: Java or Maven is missing, so the Apache Kafka tests did not run (see README, Running the tests)"
  exit 0
fi
echo "--- Apache Kafka jars: $(scripts/kafka.sh jars 4.1.1) $(scripts/kafka.sh jars 3.9.1)"
echo "--- Apache Cassandra jars: $(scripts/cassandra.sh jars)"
echo "--- Schema registry jars: $(scripts/schema-registry.sh jars)"
# Each test kills its brokers and Cassandra nodes when it ends; a test killed on a timeout
# cannot, so strays go here.
scratch="$(dirname "$(mktemp -u)")/pipeline-it-"
trap "pkill -9 -f -- '-Dpipeline.kafka.dir=$scratch' || true; pkill -9 -f -- '-Dpipeline.cassandra.dir=$scratch' || true; pkill -9 -f -- '-Dpipeline.schema_registry.dir=$scratch' || true; pkill -9 -f -- 'nginx -p $scratch' || true" EXIT
# Tests that use no broker, or only the mock's fault injection, ran above already.
# Scale-out's three-processor tests run on the 3-node cluster below instead.
not_broker='not (test(/^outage_tests::/) | test(/^local_stack_tests::/) | test(/^config_tests::/) | test(/^compose_tests::/) | test(three_processors_share) | test(a_stop_during_the_wait_for_kafka))'
echo "--- every integration test on Apache Kafka 4.x, one KRaft node"
PIPELINE_TEST_BROKER=kafka cargo nextest run -p pipeline --no-fail-fast --run-ignored all -E "$not_broker"
for broker in kafka-zk kafka-cluster; do
  echo "--- end to end and exactly once on $broker"
  filter='test(end_to_end) | test(exactly_once)'
  # Scale-out's three processors through kills, a join, a leave and a node's death: on the
  # cluster only.
  if [ "$broker" = kafka-cluster ]; then filter="$filter | test(three_processors_share)"; fi
  PIPELINE_TEST_BROKER=$broker cargo nextest run -p pipeline --no-fail-fast \
    --run-ignored all -E "$filter"
done
