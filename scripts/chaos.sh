#!/usr/bin/env bash
# A bounded soak test under faults, on the 3-node Apache Kafka cluster of scripts/kafka.sh
# (KRaft, replication factor 3, min.insync.replicas=2): every dataset produces at a steady rate
# while broker nodes are killed with -9 and processors with SIGKILL; at the end each message the
# producers sent must be in its topic once and in its dataset's raw layer once.
#
#   scripts/chaos.sh [--minutes N] [--dir DIR]
#
#   --minutes N   how long producers run under faults (default 10; CI runs 2); the whole run takes
#                 N minutes plus about a minute (cluster start, stop, drain, check)
#   --dir DIR     a new or empty folder for everything (default: a fresh /tmp/chaos.XXXXXX); it is
#                 kept afterwards: kafka/ (the cluster), out-<dataset>/ (the layers), logs/
#                 (producers, processors, node restarts), chaos.log (every fault, timestamped),
#                 figures.txt (the final table)
#
# What runs: one producer per dataset (transactions 200 msg/s, events 50, financial 50; fixed
# seeds, 1 % malformed messages) and one processor per dataset (trigger 1 second, from the
# earliest offsets, its own output folder). Faults: every 30-60 s (random) one random node is
# killed with -9 and started again 3-7 s later on its data (the next kill waits until it serves,
# so at most one node is down and every partition keeps two in-sync replicas); every 35-55 s a
# random processor is SIGKILLed and started again at once with the same arguments.
# At the end: producers get SIGTERM (they wait for their in-flight deliveries and print
# `[producer] done: sent=N failed=F unknown=U ...`), processors get SIGTERM, then each runs once
# more with --trigger available-now to drain the topic. The check, per dataset:
#   sent (producer summary, failed = unknown = 0) == in topic (sum of the partitions' high
#   watermarks; the input producers are not transactional, so every offset is a message)
#   == rows in the raw layer == distinct messages among them (no duplicates).
# The raw layer: bronze/ (transactions) and financial_bronze/ (financial) hold every message with
# its partition and offset. The events dataset keeps no such layer: a message is either in
# events/id=<id>/ (no Kafka coordinates) or in events_quarantine/ (partition, offset). Its
# producer runs on a synthetic event clock (--event-time-start, 20 ms apart at 50 msg/s, stored
# in ms), so (id, ts) names one valid event and a duplicate shows as a repeated (id, ts).
# Exit code 0 when every figure matches and no producer or node failed; 1 otherwise. A processor
# that exits by itself, or has to be killed to stop, is restarted (as compose's restart policy
# would) and reported as a STALL: the data check decides.
#
# Environment: PIPELINE_BIN (default target/release/pipeline, built when missing),
# CHAOS_SEED (the producers' seeds and the fault schedule, default 31), CHAOS_RATE_TRANSACTIONS
# / _EVENTS / _FINANCIAL (msg/s), and scripts/kafka.sh's (KAFKA_HEAP_OPTS, KAFKA_CACHE, ...).
# Needs Java 17 and Maven (scripts/kafka.sh), and python3 with duckdb
# (tests/python/requirements.txt).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
kafka="$root/scripts/kafka.sh"
bin="${PIPELINE_BIN:-$root/target/release/pipeline}"
# The processes run in DIR: a relative PIPELINE_BIN is taken from the working folder of the call.
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
minutes=10
dir=""

die() { echo "chaos.sh: $*" >&2; exit 2; }
usage() { sed -n '2,39p' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) [ $# -ge 2 ] || die "--minutes needs a value"; minutes="$2"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir="$2"; shift 2 ;;
    --dir=*) dir="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done
[[ "$minutes" =~ ^[0-9]+$ ]] && [ "$minutes" -ge 1 ] || die "--minutes takes a whole number of minutes, 1 or more"
python3 -c 'import duckdb' 2> /dev/null \
  || die "python3 with duckdb is needed for the check: pip install -r tests/python/requirements.txt"
if [ ! -x "$bin" ]; then
  echo "chaos.sh: $bin is missing; building it" >&2
  (cd "$root" && cargo build --release --bin pipeline)
fi
if [ -z "$dir" ]; then
  dir="$(mktemp -d /tmp/chaos.XXXXXX)"
else
  # A folder with an old cluster or old layers would mix runs: the figures would mean nothing.
  [ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || die "$dir is not empty; give a new folder"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
fi
mkdir -p "$dir/logs"

datasets="transactions events financial"
declare -A topic=([transactions]=transactions [events]=events [financial]=financial_transactions)
declare -A rate=([transactions]="${CHAOS_RATE_TRANSACTIONS:-200}" [events]="${CHAOS_RATE_EVENTS:-50}"
                 [financial]="${CHAOS_RATE_FINANCIAL:-50}")
seed="${CHAOS_SEED:-31}"
declare -A producer_seed=([transactions]="$seed" [events]="$((seed + 1))" [financial]="$((seed + 2))")
# The same seed gives the same messages and the same fault schedule (not the same timing).
RANDOM="$seed"

declare -A producer_pid=() processor_pid=() processor_kills=()
for ds in $datasets; do processor_kills[$ds]=0; done
broker_kills=0
problems=0          # producers that failed, nodes that did not come back: the run fails
stalls=0            # processors that exited by themselves or had to be killed to stop: reported
                    # (a supervisor restarts them, as compose's restart policy does), the data
                    # check decides
restart_pid=""      # the background `kafka.sh restart` of the node that is down
down_node=""
cluster_started=false
finished=false

log() {
  local line
  line="[$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)] $*"
  echo "$line"
  echo "$line" >> "$dir/chaos.log"
}
problem() { log "PROBLEM: $*"; problems=$((problems + 1)); }
stall() { log "STALL: $*"; stalls=$((stalls + 1)); }

# Whatever happens (the end, an error, Ctrl-C), nothing started here outlives the script: the
# nodes run in their own sessions (setsid), so a Ctrl-C in the terminal does not reach them.
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  [ -z "$restart_pid" ] || kill "$restart_pid" 2> /dev/null || true
  for pid in "${producer_pid[@]}" "${processor_pid[@]}"; do kill -KILL "$pid" 2> /dev/null || true; done
  if $cluster_started; then
    if $finished; then
      KAFKA_STOP_TIMEOUT=15 "$kafka" stop "$dir/kafka" > "$dir/logs/kafka-stop.log" 2>&1 || "$kafka" kill "$dir/kafka" all || true
    else
      "$kafka" kill "$dir/kafka" all || true
    fi
  fi
  $finished || echo "chaos.sh: stopped early; everything is in $dir" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the cluster, the topics --------------------------------------------------------------------

run_started=$SECONDS
log "chaos run: $minutes min, folder $dir, binary $bin, seed $seed"
cluster_started=true
"$kafka" start cluster "$dir/kafka" > "$dir/logs/kafka-start.log" 2>&1 \
  || { cat "$dir/logs/kafka-start.log" >&2; die "the cluster did not start"; }
bootstrap="$("$kafka" bootstrap "$dir/kafka")"
log "cluster up at $bootstrap"
# The financial processor writes its totals and anomalies to two topics of its own (the cluster
# does not create topics on demand). One JVM per topic: about 3 s each on 2 cores.
for t in transactions events financial_transactions transaction_aggregates transaction_anomalies; do
  KAFKA_HEAP_OPTS="-Xmx256m" "$kafka" kafka-topics --bootstrap-server "$bootstrap" --create --topic "$t" \
    --partitions 3 --replication-factor 3 >> "$dir/logs/kafka-topics.log" 2>&1 \
    || { cat "$dir/logs/kafka-topics.log" >&2; die "cannot create topic $t"; }
done

# --- producers and processors -------------------------------------------------------------------

# Every process runs in $dir, which holds no .env: the repository's .env (MAX_FILES_PER_SINK=48
# would delete old files and the count would fail) must not reach them. Settings that matter to
# the check are flags anyway.
start_producer() {
  local ds="$1"
  (cd "$dir" && exec "$bin" producer --dataset "$ds" --bootstrap-servers "$bootstrap" --topic "${topic[$ds]}" \
    --msgs-per-sec "${rate[$ds]}" --seed "${producer_seed[$ds]}" --bad-ratio 0.01 --late-ratio 0 \
    --event-time-start "$event_time_start" --log-every "$((rate[$ds] * 10))") \
    >> "$dir/logs/producer-$ds.log" 2>&1 &
  producer_pid[$ds]=$!
}

# The processor's arguments but the trigger. Financial: at 50 msg/s over 100 users a user
# averages 30 transactions a minute, so the default threshold of 10 would flag every user every
# minute; 60 keeps the anomalies rare, as the default does at the default 5 msg/s.
processor_args() {
  local ds="$1"
  echo --dataset "$ds" --bootstrap-servers "$bootstrap" --topic "${topic[$ds]}" --group-id "chaos-$ds" \
    --output-path "$dir/out-$ds" --starting-offsets earliest --max-files-per-sink 0 --fail-on-data-loss true
  [ "$ds" != financial ] || echo --anomaly-txn-per-minute 60
}

# stdout holds the events' console tables (Spark's console sink); the log lines go to stderr.
start_processor() {
  local ds="$1"
  # shellcheck disable=SC2046 # the arguments hold no spaces
  (cd "$dir" && exec "$bin" processor $(processor_args "$ds") --trigger "1 second") \
    >> "$dir/logs/processor-$ds.out" 2>> "$dir/logs/processor-$ds.log" &
  processor_pid[$ds]=$!
}

# The synthetic event clock starts now, so event times stay near the wall clock.
event_time_start="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for ds in $datasets; do start_producer "$ds"; start_processor "$ds"; done
log "producers (${rate[transactions]}/${rate[events]}/${rate[financial]} msg/s) and processors started"

# --- faults -------------------------------------------------------------------------------------

# Reaps a child that ended by itself; sets exit_code.
reap() { exit_code=0; wait "$1" 2> /dev/null || exit_code=$?; }

# A process that ends by itself is a pipeline problem: a processor is started again (the faults go
# on), a producer is not (its count would start again from 0).
watch_processes() {
  local ds
  for ds in $datasets; do
    if [ -n "${producer_pid[$ds]:-}" ] && ! kill -0 "${producer_pid[$ds]}" 2> /dev/null; then
      reap "${producer_pid[$ds]}"
      problem "producer $ds exited by itself (code $exit_code; logs/producer-$ds.log: $(tail -n 1 "$dir/logs/producer-$ds.log"))"
      unset "producer_pid[$ds]"
    fi
    if ! kill -0 "${processor_pid[$ds]}" 2> /dev/null; then
      reap "${processor_pid[$ds]}"
      stall "processor $ds exited by itself (code $exit_code; logs/processor-$ds.log: $(tail -n 1 "$dir/logs/processor-$ds.log")); starting it again"
      start_processor "$ds"
    fi
  done
}

# The node that is down comes back in the background (a restart waits until it serves, 5-15 s
# here), so that processor kills keep their schedule meanwhile.
node_due_back() {
  if [ -n "$down_node" ] && [ -z "$restart_pid" ] && [ "$SECONDS" -ge "$restart_at" ]; then
    log "restarting broker node $down_node"
    "$kafka" restart "$dir/kafka" "$down_node" >> "$dir/logs/kafka-restarts.log" 2>&1 &
    restart_pid=$!
  fi
  if [ -n "$restart_pid" ] && ! kill -0 "$restart_pid" 2> /dev/null; then
    reap "$restart_pid"
    restart_pid=""
    if [ "$exit_code" -eq 0 ]; then
      log "broker node $down_node serves again"
      down_node=""
    else
      # Try again later: a cluster one node short for the rest of the run is a weaker test.
      problem "broker node $down_node did not restart (code $exit_code; logs/kafka-restarts.log)"
      restart_at=$((SECONDS + 5))
    fi
  fi
}

sig_name() { [ "$1" -gt 128 ] && kill -l "$(($1 - 128))" 2> /dev/null || echo "code $1"; }

end=$((SECONDS + minutes * 60))
next_broker_kill=$((SECONDS + 30 + RANDOM % 31))
next_processor_kill=$((SECONDS + 35 + RANDOM % 21))
while [ "$SECONDS" -lt "$end" ]; do
  watch_processes
  node_due_back
  if [ -z "$down_node" ] && [ "$SECONDS" -ge "$next_broker_kill" ]; then
    down_node=$((1 + RANDOM % 3))
    "$kafka" kill "$dir/kafka" "$down_node"
    broker_kills=$((broker_kills + 1))
    restart_at=$((SECONDS + 3 + RANDOM % 5))
    log "FAULT kill -9 broker node $down_node (back in $((restart_at - SECONDS)) s)"
    next_broker_kill=$((SECONDS + 30 + RANDOM % 31))
  fi
  if [ "$SECONDS" -ge "$next_processor_kill" ]; then
    # RANDOM is drawn here, not inside $(...): a subshell's draw does not advance the schedule.
    pick=$((1 + RANDOM % 3))
    ds=$(echo $datasets | cut -d' ' -f"$pick")
    kill -KILL "${processor_pid[$ds]}" 2> /dev/null || true
    reap "${processor_pid[$ds]}"
    echo "--- chaos.sh: SIGKILL at $(date -u +%FT%TZ), started again" >> "$dir/logs/processor-$ds.log"
    start_processor "$ds"
    processor_kills[$ds]=$((processor_kills[$ds] + 1))
    log "FAULT SIGKILL processor $ds ($(sig_name "$exit_code")), started again"
    next_processor_kill=$((SECONDS + 35 + RANDOM % 21))
  fi
  sleep 1
done

# --- stop, drain --------------------------------------------------------------------------------

# Every node serves before the producers stop: their last deliveries need two in-sync replicas.
while [ -n "$down_node" ]; do node_due_back; watch_processes; sleep 1; done
log "faults over: $broker_kills broker kills, processor kills:$(for ds in $datasets; do printf ' %s=%s' "$ds" "${processor_kills[$ds]}"; done)"
watch_processes

# Waits for a child to end, SIGKILLing it after a timeout; sets exit_code. `report` is the
# function that records a child that had to be killed (problem or stall).
wait_bounded() {
  local pid="$1" timeout="$2" what="$3" report="${4:-problem}" deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2> /dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      "$report" "$what did not stop within $timeout s; SIGKILL"
      kill -KILL "$pid" 2> /dev/null || true
      deadline=$((SECONDS + 3600))
    fi
    sleep 0.5
  done
  reap "$pid"
}

log "stopping the producers (SIGTERM: they wait for their in-flight deliveries)"
for ds in "${!producer_pid[@]}"; do kill -TERM "${producer_pid[$ds]}" 2> /dev/null || true; done
# The delivery timeout is 5 minutes: a producer may take that long, not longer.
for ds in "${!producer_pid[@]}"; do
  wait_bounded "${producer_pid[$ds]}" 330 "producer $ds"
  [ "$exit_code" -eq 0 ] || problem "producer $ds exited with code $exit_code"
  unset "producer_pid[$ds]"
done
declare -A sent=() failed=() unknown=()
for ds in $datasets; do
  summary="$(grep -o '\[producer\] done: .*' "$dir/logs/producer-$ds.log" | tail -n 1 || true)"
  [ -n "$summary" ] || problem "producer $ds printed no summary"
  log "producer $ds: ${summary:-no summary}"
  sent[$ds]="$(sed -n 's/.* sent=\([0-9]*\) .*/\1/p' <<< "$summary")"
  failed[$ds]="$(sed -n 's/.* failed=\([0-9]*\) .*/\1/p' <<< "$summary")"
  unknown[$ds]="$(sed -n 's/.* unknown=\([0-9]*\) .*/\1/p' <<< "$summary")"
done

log "stopping the processors (SIGTERM: each finishes its batch in flight)"
for ds in $datasets; do kill -TERM "${processor_pid[$ds]}" 2> /dev/null || true; done
for ds in $datasets; do
  # A batch in flight finishes first: its Kafka transaction steps may take up to a minute each.
  wait_bounded "${processor_pid[$ds]}" 150 "processor $ds" stall
  [ "$exit_code" -eq 0 ] || stall "processor $ds exited with code $exit_code after SIGTERM"
  unset "processor_pid[$ds]"
done

log "draining: each processor once more with --trigger available-now"
for ds in $datasets; do
  echo "--- chaos.sh: drain (available-now) at $(date -u +%FT%TZ)" >> "$dir/logs/processor-$ds.log"
  # shellcheck disable=SC2046
  (cd "$dir" && exec "$bin" processor $(processor_args "$ds") --trigger available-now) \
    >> "$dir/logs/processor-$ds.out" 2>> "$dir/logs/processor-$ds.log" &
  processor_pid[$ds]=$!
done
for ds in $datasets; do
  wait_bounded "${processor_pid[$ds]}" 300 "drain of $ds"
  [ "$exit_code" -eq 0 ] || problem "the drain of $ds exited with code $exit_code (logs/processor-$ds.log)"
  unset "processor_pid[$ds]"
done

# --- check --------------------------------------------------------------------------------------

# High watermarks (GetOffsetShell prints topic:partition:offset); the topics' regex in one JVM.
KAFKA_HEAP_OPTS="-Xmx256m" "$kafka" kafka-get-offsets --bootstrap-server "$bootstrap" \
  --topic '^(transactions|events|financial_transactions)$' --time latest \
  > "$dir/logs/offsets.txt" 2>> "$dir/logs/kafka-topics.log" || problem "kafka-get-offsets failed"
declare -A in_topic=()
for ds in $datasets; do
  in_topic[$ds]="$(awk -F: -v t="${topic[$ds]}" '$1 == t { n += $3; p++ } END { if (p) print n }' "$dir/logs/offsets.txt")"
done

set +e
python3 - "$dir" "$problems" "$broker_kills" "$stalls" \
  $(for ds in $datasets; do
      echo "$ds:${sent[$ds]:-}:${failed[$ds]:-}:${unknown[$ds]:-}:${in_topic[$ds]:-}:${processor_kills[$ds]}"
    done) <<'PY' | tee "$dir/figures.txt"
import pathlib, sys
import duckdb

out = pathlib.Path(sys.argv[1])
problems, broker_kills, stalls = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()

def figures(ds):
    """Rows in the dataset's raw layer, and how many distinct messages they are."""
    o = out / f"out-{ds}"
    def scan(layer, pattern="*.parquet"):
        files = sorted((o / layer).glob(pattern))
        return f"read_parquet({[str(f) for f in files]}, hive_partitioning = true)" if files else None
    if ds in ("transactions", "financial"):
        src = scan("bronze" if ds == "transactions" else "financial_bronze")
        if src is None:
            return 0, 0
        return con.sql(f'SELECT count(*), count(DISTINCT (partition, "offset")) FROM {src}').fetchall()[0]
    rows = distinct = 0
    src = scan("events", "*/*.parquet")  # valid events: (id, ts) names one (see the header)
    if src is not None:
        r, d = con.sql(f"SELECT count(*), count(DISTINCT (id, ts)) FROM {src}").fetchall()[0]
        rows, distinct = rows + r, distinct + d
    src = scan("events_quarantine")
    if src is not None:
        r, d = con.sql(f'SELECT count(*), count(DISTINCT (partition, "offset")) FROM {src}').fetchall()[0]
        rows, distinct = rows + r, distinct + d
    return rows, distinct

num = lambda s: int(s) if s.isdigit() else None
ok = problems == 0
head = ("dataset", "sent", "failed", "unknown", "in topic", "rows", "distinct", "duplicates",
        "proc kills", "broker kills", "check")
lines = [head]
for arg in sys.argv[5:]:
    ds, *fields = arg.split(":")
    sent, failed, unknown, in_topic, kills = map(num, fields)
    rows, distinct = figures(ds)
    good = (None not in (sent, in_topic) and failed == 0 and unknown == 0
            and sent == in_topic == rows == distinct)
    ok &= good
    show = lambda v: "?" if v is None else str(v)
    lines.append((ds, show(sent), show(failed), show(unknown), show(in_topic), str(rows), str(distinct),
                  str(rows - distinct), show(kills), str(broker_kills), "ok" if good else "MISMATCH"))
widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
for l in lines:
    print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(l, widths))))
print("raw layer: bronze/ (transactions), financial_bronze/ (financial), events/ + events_quarantine/ (events)")
if problems:
    print(f"{problems} process problem(s): see PROBLEM lines in chaos.log")
if stalls:
    print(f"{stalls} processor stall(s) (exited by itself, or killed to stop; restarted): see STALL lines in chaos.log")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
check=${PIPESTATUS[0]}
set -e
finished=true
log "done in $(( (SECONDS - run_started) / 60 )) min $(( (SECONDS - run_started) % 60 )) s; everything is in $dir"
exit "$check"
