#!/usr/bin/env bash
# Spark Structured Streaming doing seed 000's job (bench/spark/seed000_job.py) on a Kafka topic,
# timed, for the side-by-side benchmark with the Rust processor (BENCHMARKS.md).
#
#   scripts/bench-spark.sh BOOTSTRAP OUTPUT_DIR [job options...]
#
# BOOTSTRAP is the broker (e.g. the bootstrap= line of scripts/kafka.sh start); the topic
# (`transactions`, or --topic) must be filled already. OUTPUT_DIR must be new or empty: the job's
# checkpoints go there too, and a second run on them would process nothing. Job options, e.g.
# --max-offsets-per-trigger 5000 (default 100000), are passed on; see
# `python3 bench/spark/seed000_job.py --help`.
#
# Needs pyspark 3.5 (pip install 'pyspark==3.5.7'), Java 17 and Maven. Spark's Kafka connector
# (org.apache.spark:spark-sql-kafka-0-10_<scala>, the same version as pyspark) is resolved with
# Maven once into ${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-spark/jars and passed with --jars:
# spark.jars.packages would resolve it with Ivy, which does not read Maven's settings.
#
# Prints the job's own lines, then, from /usr/bin/time -v over spark-submit (the JVM, and the
# Python driver it starts and waits for):
#   spark: N records in W s = R records/s, CPU C s (= X s per million), peak RSS M MiB
# N = rows in bronze; W = wall time including the JVM's start; C = user + system time of both
# processes; M = the largest process's peak (the JVM). A second line gives the time from the first
# query's start to the last one's end, and the peak of the JVM and Python together (sampled).
# Files: OUTPUT_DIR/_bench/{spark.log,time.txt,summary.json}.
#
# Environment: SPARK_MASTER (local[2]), SPARK_DRIVER_MEMORY (2g), SPARK_KAFKA_VERSION (the
# connector's version; default pyspark's), SPARK_BENCH_CACHE (the jar cache).
set -euo pipefail

die() { echo "bench-spark.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: scripts/bench-spark.sh BOOTSTRAP OUTPUT_DIR [job options...]"
BOOTSTRAP="$1" OUTPUT="$2"; shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JOB="$ROOT/bench/spark/seed000_job.py"
SPARK_MASTER="${SPARK_MASTER:-local[2]}"
SPARK_DRIVER_MEMORY="${SPARK_DRIVER_MEMORY:-2g}"
CACHE="${SPARK_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-spark/jars}"

# --- pyspark, and the connector that matches it ----------------------------------------------------

PYTHON="$(command -v python3)" || die "python3 is needed"
python3 -c 'import pyspark' 2> /dev/null \
  || die "pyspark is not installed: pip install 'pyspark==3.5.7' (3.5.7 is the newest 3.5 whose Kafka connector Maven Central serves here)"
PYSPARK_VERSION="$(python3 -c 'import pyspark; print(pyspark.__version__)')"
case "$PYSPARK_VERSION" in
  3.5.*) ;;
  *) die "pyspark $PYSPARK_VERSION found; the job is written for Spark 3.5: pip install 'pyspark==3.5.7'" ;;
esac
SPARK_HOME="$(python3 -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
# The connector is built per Scala version: take pyspark's own.
SCALA_LIB="$(cd "$SPARK_HOME/jars" && ls scala-library-*.jar 2> /dev/null | head -n 1)"
[ -n "$SCALA_LIB" ] || die "no scala-library jar in $SPARK_HOME/jars"
SCALA_VERSION="${SCALA_LIB#scala-library-}"; SCALA_VERSION="${SCALA_VERSION%.jar}"
SCALA_BINARY="${SCALA_VERSION%.*}"
CONNECTOR_VERSION="${SPARK_KAFKA_VERSION:-$PYSPARK_VERSION}"
[ "$CONNECTOR_VERSION" = "$PYSPARK_VERSION" ] \
  || echo "bench-spark.sh: warning: connector $CONNECTOR_VERSION with pyspark $PYSPARK_VERSION" >&2
ARTIFACT="spark-sql-kafka-0-10_$SCALA_BINARY"

# Artifact name of a jar file: the name up to the first "-" that a digit follows
# (kafka-clients-3.4.1.jar -> kafka-clients, spark-sql-kafka-0-10_2.12-3.5.7.jar -> spark-sql-kafka).
# Only used to compare two jar sets, so the odd cut of the connector's name does no harm.
artifact_of() { sed -E 's/-[0-9].*$//' <<< "$1"; }

# Prints the folder of the connector's jars, resolving them the first time (a stamp marks a
# complete resolution, so a second run asks Maven nothing).
connector_jars() {
  local dir="$CACHE/$ARTIFACT-$CONNECTOR_VERSION"
  if [ -f "$dir/.complete" ]; then echo "$dir/libs"; return; fi
  command -v mvn > /dev/null || die "Maven (mvn) is needed to fetch Spark's Kafka connector; apt-get install maven"
  mkdir -p "$dir"
  cat > "$dir/pom.xml" << EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local</groupId><artifactId>spark-kafka-libs</artifactId><version>1</version><packaging>pom</packaging>
<dependencies><dependency><groupId>org.apache.spark</groupId><artifactId>$ARTIFACT</artifactId><version>$CONNECTOR_VERSION</version></dependency></dependencies>
</project>
EOF
  echo "bench-spark.sh: resolving $ARTIFACT:$CONNECTOR_VERSION with Maven into $dir/libs" >&2
  rm -rf "$dir/libs"
  (cd "$dir" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime >&2) \
    || die "Maven could not resolve $ARTIFACT:$CONNECTOR_VERSION (see above); pyspark 3.5.7's is on Maven Central"
  # Spark's own jars already hold most of the connector's dependencies, some at other versions
  # (slf4j-api 1.7 against Spark's 2.0, snappy-java 1.1.8 against 1.1.10): keep only what Spark
  # lacks (the connector, its token provider, kafka-clients, commons-pool2), so Spark's win.
  local shipped jar
  shipped=" $(for jar in "$SPARK_HOME"/jars/*.jar; do artifact_of "$(basename "$jar")"; done | tr '\n' ' ') "
  for jar in "$dir"/libs/*.jar; do
    case "$shipped" in *" $(artifact_of "$(basename "$jar")") "*) rm "$jar" ;; esac
  done
  touch "$dir/.complete"
  echo "$dir/libs"
}

LIBS="$(connector_jars)"
JARS=""
for jar in "$LIBS"/*.jar; do [ -f "$jar" ] && JARS="${JARS:+$JARS,}$jar"; done
[ -n "$JARS" ] || die "no jars in $LIBS; remove $(dirname "$LIBS") and run again"

# --- the timed run ------------------------------------------------------------------------------

if [ ! -x /usr/bin/time ]; then
  command -v apt-get > /dev/null && [ "$(id -u)" = 0 ] || die "/usr/bin/time is needed: apt-get install time"
  echo "bench-spark.sh: installing /usr/bin/time (apt-get install -y time)" >&2
  apt-get install -y -q time > /dev/null 2>&1 || { apt-get update -q > /dev/null && apt-get install -y -q time > /dev/null; } \
    || die "could not install time"
fi

if [ -d "$OUTPUT" ] && [ -n "$(ls -A "$OUTPUT")" ]; then
  die "$OUTPUT is not empty (its checkpoints would make the job resume instead of read the topic): remove it first"
fi
mkdir -p "$OUTPUT/_bench"
OUTPUT="$(cd "$OUTPUT" && pwd)"
BENCH="$OUTPUT/_bench"

# Sum of VmRSS (KiB) over a process and all its descendants. Any of them may end while it is
# read, hence the "|| true"s (set -e and pipefail would otherwise stop the script).
tree_rss_kib() {
  local pids="$1" all="$1" next p
  while [ -n "$pids" ]; do
    next="$(for p in $pids; do cat /proc/"$p"/task/*/children 2> /dev/null || true; done)"
    # shellcheck disable=SC2086 # unquoted on purpose: collapses the lists' spaces and newlines
    pids="$(echo $next)"; all="$all $pids"
  done
  for p in $all; do awk '/^VmRSS:/ { print $2 }' /proc/"$p"/status 2> /dev/null || true; done \
    | awk '{ s += $1 } END { print s + 0 }'
}

echo "bench-spark.sh: pyspark $PYSPARK_VERSION (Scala $SCALA_VERSION), $ARTIFACT $CONNECTOR_VERSION, master $SPARK_MASTER, driver memory $SPARK_DRIVER_MEMORY" >&2
echo "bench-spark.sh: Spark's log: $BENCH/spark.log" >&2

# spark-submit runs the JVM as time's child (bash execs it), and the JVM starts the Python driver and
# waits for it: /usr/bin/time's rusage then covers both. Loopback only (SPARK_LOCAL_IP): the driver,
# its UI and the Python callback server bind to 127.0.0.1. The working folder is _bench, where any
# stray file Spark makes (spark-warehouse) lands.
(
  cd "$BENCH"
  export SPARK_HOME PYSPARK_PYTHON="$PYTHON" PYSPARK_DRIVER_PYTHON="$PYTHON" PYTHONUNBUFFERED=1 SPARK_LOCAL_IP=127.0.0.1
  exec /usr/bin/time -v -o "$BENCH/time.txt" "$SPARK_HOME/bin/spark-submit" \
    --master "$SPARK_MASTER" --driver-memory "$SPARK_DRIVER_MEMORY" --jars "$JARS" \
    "$JOB" --bootstrap "$BOOTSTRAP" --output "$OUTPUT" --summary-json "$BENCH/summary.json" "$@" \
    2> "$BENCH/spark.log"
) &
RUN=$!
PEAK_TREE=0
while kill -0 "$RUN" 2> /dev/null; do
  rss="$(tree_rss_kib "$RUN")"
  [ "$rss" -gt "$PEAK_TREE" ] && PEAK_TREE="$rss"
  sleep 0.5
done
rc=0; wait "$RUN" || rc=$?
if [ "$rc" != 0 ] || [ ! -f "$BENCH/summary.json" ]; then
  tail -n 40 "$BENCH/spark.log" >&2
  die "the Spark job failed (exit $rc); its log: $BENCH/spark.log"
fi

# --- the summary ----------------------------------------------------------------------------------

python3 - "$BENCH/time.txt" "$BENCH/summary.json" "$PEAK_TREE" << 'EOF'
import json, sys

time_file, summary_file, peak_tree_kib = sys.argv[1], sys.argv[2], int(sys.argv[3])
rusage = {}
for line in open(time_file):
    key, sep, value = line.strip().rpartition(": ")
    if sep:
        rusage[key] = value
def seconds(clock):  # "h:mm:ss" or "m:ss.ss"
    secs = 0.0
    for part in clock.split(":"):
        secs = secs * 60 + float(part)
    return secs
wall = seconds(rusage["Elapsed (wall clock) time (h:mm:ss or m:ss)"])
cpu = float(rusage["User time (seconds)"]) + float(rusage["System time (seconds)"])
rss_mib = int(rusage["Maximum resident set size (kbytes)"]) / 1024
summary = json.load(open(summary_file))
rows = summary["rows"]
n = rows["bronze"]
if rows["silver"] + rows["quarantine"] != n:
    print(f"bench-spark.sh: warning: silver {rows['silver']} + quarantine {rows['quarantine']} != bronze {n} "
          "(the five queries read the topic separately: was it still being written?)", file=sys.stderr)
per_million = cpu / n * 1e6 if n else float("nan")
processing = summary["processing_seconds"]
print(f"spark: {n} records in {wall:.2f} s = {n / wall:,.0f} records/s, CPU {cpu:.2f} s "
      f"(= {per_million:.2f} s per million), peak RSS {rss_mib:.0f} MiB")
print(f"spark: queries alone (first start to last stop, without the JVM's start and the read-back): "
      f"{processing:.2f} s = {n / processing:,.0f} records/s; JVM + Python driver together peaked at "
      f"{peak_tree_kib / 1024:.0f} MiB (sampled every 0.5 s)")
EOF
