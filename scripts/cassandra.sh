#!/usr/bin/env bash
# Apache Cassandra from Maven Central's jars (org.apache.cassandra:cassandra-all), as a local
# process on loopback ports: no tarball, no Docker. The jars are resolved once into a cache folder;
# each node keeps its configuration, data, logs and process id in the folder it is given.
#
#   scripts/cassandra.sh start DIR     start a node (or start the stopped node of DIR again, on its data
#                                      and ports), wait until it serves CQL, print contact=127.0.0.1:PORT
#   scripts/cassandra.sh stop DIR      stop it (SIGTERM, then SIGKILL after CASSANDRA_STOP_TIMEOUT s)
#   scripts/cassandra.sh kill DIR      kill -9 it
#   scripts/cassandra.sh contact DIR   print the CQL contact point of the node of DIR
#   scripts/cassandra.sh jars          resolve the jars (nothing is downloaded a second time), print the folder
#
# One node, SimpleSnitch, Murmur3Partitioner, one token. With CASSANDRA_AUTH=1 the node requires a
# login (PasswordAuthenticator; the default superuser cassandra/cassandra).
# Environment: CASSANDRA_CACHE (jar cache, default ~/.cache/pipeline-cassandra), CASSANDRA_VERSION
# (5.0.6), CASSANDRA_HEAP_OPTS (-Xms768m -Xmx768m), CASSANDRA_START_TIMEOUT (seconds, 180),
# CASSANDRA_STOP_TIMEOUT (seconds, 30), CASSANDRA_AUTH (0).
set -euo pipefail

CASSANDRA_VERSION="${CASSANDRA_VERSION:-5.0.6}"
CASSANDRA_CACHE="${CASSANDRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-cassandra}"
CASSANDRA_HEAP_OPTS="${CASSANDRA_HEAP_OPTS:--Xms768m -Xmx768m}"
CASSANDRA_START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
CASSANDRA_STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-30}"

die() { echo "cassandra.sh: $*" >&2; exit 1; }

# Prints the folder of the runtime jars, resolving them with Maven the first time (a stamp file
# marks a complete resolution).
jars() {
  local dir="$CASSANDRA_CACHE/cassandra-$CASSANDRA_VERSION"
  if [ -f "$dir/.complete" ]; then echo "$dir/libs"; return; fi
  command -v mvn > /dev/null || die "Maven (mvn) is needed to fetch Cassandra's jars; apt-get install maven"
  mkdir -p "$dir"
  cat > "$dir/pom.xml" << EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local</groupId><artifactId>cassandra-libs</artifactId><version>1</version><packaging>pom</packaging>
<dependencies><dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
<version>$CASSANDRA_VERSION</version></dependency></dependencies></project>
EOF
  echo "cassandra.sh: resolving Cassandra $CASSANDRA_VERSION with Maven into $dir/libs" >&2
  rm -rf "$dir/libs"
  (cd "$dir" && mvn -B -q dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime >&2) \
    || die "Maven could not resolve Cassandra $CASSANDRA_VERSION (see above)"
  touch "$dir/.complete"
  echo "$dir/libs"
}

free_ports() {
  python3 - "$1" << 'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The node's configuration, written at its first start.
configure() {
  local dir="$1" ports
  ports=($(free_ports 2))
  { echo "CQL_PORT=${ports[0]}"; echo "STORAGE_PORT=${ports[1]}"; echo "AUTH=${CASSANDRA_AUTH:-0}"; } > "$dir/node.env"
  # shellcheck disable=SC1091
  . "$dir/node.env"
  mkdir -p "$dir/conf" "$dir/logs"
  cat > "$dir/conf/cassandra.yaml" << EOF
cluster_name: pipeline-test
num_tokens: 1
initial_token: -9223372036854775808
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $CQL_PORT
start_native_transport: true
data_file_directories:
  - $dir/data
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
authenticator: $([ "$AUTH" = 1 ] && echo PasswordAuthenticator || echo AllowAllAuthenticator)
EOF
  cat > "$dir/conf/logback.xml" << 'EOF'
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF
}

running() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2> /dev/null; }

start() {
  local dir libs
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
  running "$dir" && die "the node of $dir is running already"
  command -v java > /dev/null || die "Java 17 is needed (apt-get install openjdk-17-jre-headless)"
  libs="$(jars)"
  [ -f "$dir/node.env" ] || configure "$dir"
  # shellcheck disable=SC1091
  . "$dir/node.env"
  # Where a log starts this time: a restart waits for its own "listening" line.
  local from=0
  [ -f "$dir/logs/system.log" ] && from=$(wc -l < "$dir/logs/system.log")
  # Cassandra 5.0's JVM options for Java 17 (conf/jvm17-server.options: the module exports and
  # opens it needs), and those of conf/jvm-server.options that matter for a test node. No JMX.
  # The marker property lets a test harness find strays of its own.
  # shellcheck disable=SC2086
  nohup java $CASSANDRA_HEAP_OPTS -Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled \
    -XX:MaxTenuringThreshold=1 -XX:+HeapDumpOnOutOfMemoryError -XX:+ExitOnOutOfMemoryError \
    -XX:+PerfDisableSharedMem -ea -da:net.openhft... -Djava.net.preferIPv4Stack=true \
    -Dchronicle.analytics.disable=true -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    --add-opens java.base/java.nio=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true \
    -Dio.netty.allocator.maxOrder=11 \
    -javaagent:"$(ls "$libs"/jamm-*.jar | head -1)" \
    -Dcassandra.config="file://$dir/conf/cassandra.yaml" \
    -Dlogback.configurationFile="$dir/conf/logback.xml" -Dcassandra.logdir="$dir/logs" \
    -Dcassandra.storagedir="$dir" -Dcassandra-foreground=yes \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.superuser_setup_delay_ms=100 \
    -Dcassandra.unsafesystem=true \
    -Dpipeline.cassandra.dir="$dir" \
    -cp "$libs/*" org.apache.cassandra.service.CassandraDaemon > "$dir/logs/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  local deadline=$((SECONDS + CASSANDRA_START_TIMEOUT))
  local ready="Starting listening for CQL clients"
  until tail -n +"$((from + 1))" "$dir/logs/system.log" 2> /dev/null | grep -q "$ready"; do
    running "$dir" || die "Cassandra exited: $(tail -5 "$dir/logs/stdout.log" "$dir/logs/system.log" 2> /dev/null)"
    [ $SECONDS -lt $deadline ] || die "Cassandra does not serve CQL after $CASSANDRA_START_TIMEOUT s (see $dir/logs)"
    sleep 0.5
  done
  if [ "$AUTH" = 1 ]; then
    until grep -q "Created default superuser role\|superuser role" "$dir/logs/system.log" 2> /dev/null \
        || [ "$from" -gt 0 ]; do
      [ $SECONDS -lt $deadline ] || die "Cassandra has no superuser after $CASSANDRA_START_TIMEOUT s (see $dir/logs)"
      sleep 0.5
    done
  fi
  echo "contact=127.0.0.1:$CQL_PORT"
}

stop() {
  local dir="$1" signal="${2:-TERM}" pid
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  kill "-$signal" "$pid" 2> /dev/null || true
  for _ in $(seq $((CASSANDRA_STOP_TIMEOUT * 10))); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2> /dev/null || true
  while kill -0 "$pid" 2> /dev/null; do sleep 0.1; done
  rm -f "$dir/pid"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: cassandra.sh start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: cassandra.sh stop DIR"; stop "$2" ;;
  kill) [ $# -eq 2 ] || die "usage: cassandra.sh kill DIR"; stop "$2" KILL ;;
  contact) [ -f "$2/node.env" ] || die "$2 holds no node"; . "$2/node.env"; echo "127.0.0.1:$CQL_PORT" ;;
  jars) jars ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
