#!/usr/bin/env bash
# Apache Kafka (and ZooKeeper) from Maven Central, as local processes on loopback ports: no
# tarball, no Docker. The jars are resolved once into a cache folder; each cluster keeps its
# configuration, data, logs and process ids in the folder it is given.
#
#   scripts/kafka.sh start kraft|zk|cluster|secure DIR   start, wait until every node serves, print bootstrap=HOST:PORT
#                                                 (secure: then secure_bootstrap=HOST:PORT)
#   scripts/kafka.sh stop DIR                     stop every node (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT s)
#   scripts/kafka.sh kill DIR NODE|all            kill -9 one node (1, 2, 3, or zk) or all of them
#   scripts/kafka.sh restart DIR NODE             start a killed node again on the same data and port
#   scripts/kafka.sh bootstrap DIR                print the bootstrap address of a running cluster
#   scripts/kafka.sh secure-bootstrap DIR         print the SASL_SSL address of a secure node
#   scripts/kafka.sh leader DIR TOPIC PARTITION   print the node id that leads a partition
#   scripts/kafka.sh kafka-topics ARGS...         Kafka's own CLI tools, from the same jars
#   scripts/kafka.sh kafka-console-consumer ARGS...
#   scripts/kafka.sh kafka-console-producer ARGS...
#   scripts/kafka.sh kafka-consumer-groups ARGS...
#   scripts/kafka.sh kafka-acls ARGS...
#   scripts/kafka.sh kafka-get-offsets ARGS...    (GetOffsetShell: topic:partition:offset, e.g. --time latest)
#   scripts/kafka.sh jars [4|3.9]                 resolve the jars (nothing is downloaded a second time), print the folder
#
# Modes: kraft = one combined broker+controller node, Kafka 4.x; zk = ZooKeeper + one broker,
# Kafka 3.9 in ZooKeeper mode (the seed's topology); cluster = three combined KRaft nodes,
# Kafka 4.x, replication factor 3 and min.insync.replicas=2 by default; secure = kraft plus a
# SASL_SSL listener (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) and ACLs enforced by StandardAuthorizer.
# The PLAINTEXT listener stays open for the test harness, which is super user User:ANONYMOUS there.
# Secure mode writes DIR/tls/ca.pem (the CA that signed the broker's certificate, SAN IP:127.0.0.1
# and DNS:localhost), DIR/tls/other-ca.pem (an unrelated CA, for negative tests) and DIR/users.env
# (NAME=password lines for the users admin = super user, app and nobody = no ACLs of their own).
#
# Environment: KAFKA_CACHE (jar cache, default ~/.cache/pipeline-kafka), KAFKA_VERSION (4.1.1),
# KAFKA_ZK_VERSION (3.9.1), KAFKA_HEAP_OPTS (-Xmx512m -Xms256m), KAFKA_JVM_OPTS (extra JVM
# flags), KAFKA_EXTRA_CONFIG (server.properties lines, separated by spaces or newlines, added to
# every node), KAFKA_START_TIMEOUT (seconds, 90), KAFKA_STOP_TIMEOUT (seconds, 30),
# KAFKA_SECURE_PASSWORD_ADMIN / _APP / _NOBODY (secure mode's passwords; random by default).
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_ZK_VERSION="${KAFKA_ZK_VERSION:-3.9.1}"
KAFKA_CACHE="${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-kafka}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

# --- jars -----------------------------------------------------------------------------------------

# Prints the folder holding the runtime jars of a Kafka version, resolving them with Maven the first
# time (a stamp file marks a complete resolution, so a second run asks Maven nothing).
jars() {
  local version="$1" dir="$KAFKA_CACHE/kafka-$1"
  if [ -f "$dir/.complete" ]; then echo "$dir/libs"; return; fi
  command -v mvn > /dev/null || die "Maven (mvn) is needed to fetch Kafka's jars; apt-get install maven"
  mkdir -p "$dir"
  local deps
  case "$version" in
    3.*) # Kafka 3.9's POM brings ZooKeeper 3.8; logging through reload4j (Kafka 3 is on log4j 1).
      deps="org.apache.kafka:kafka_2.13:$version org.apache.kafka:kafka-tools:$version
            org.slf4j:slf4j-reload4j:1.7.36" ;;
    *)   # Kafka 4 logs through log4j 2, which its POM does not bring.
      deps="org.apache.kafka:kafka_2.13:$version org.apache.kafka:kafka-tools:$version
            org.apache.logging.log4j:log4j-slf4j-impl:2.24.3 org.apache.logging.log4j:log4j-core:2.24.3" ;;
  esac
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo '<groupId>local</groupId><artifactId>kafka-libs</artifactId><version>1</version><packaging>pom</packaging><dependencies>'
    for d in $deps; do
      IFS=: read -r g a v <<< "$d"
      echo "<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
    done
    echo '</dependencies></project>'
  } > "$dir/pom.xml"
  echo "kafka.sh: resolving Kafka $version with Maven into $dir/libs" >&2
  rm -rf "$dir/libs"
  (cd "$dir" && mvn -B -q dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime >&2) \
    || die "Maven could not resolve Kafka $version (see above)"
  touch "$dir/.complete"
  echo "$dir/libs"
}

# Runs a Java main class from a Kafka version's jars.
java_main() {
  local libs="$1" class="$2"; shift 2
  # shellcheck disable=SC2086
  exec java $KAFKA_HEAP_OPTS ${KAFKA_JVM_OPTS:-} -cp "$libs/*" \
    -Dlog4j2.configurationFile="$(tool_log_config "$libs")" -Dlog4j.configuration="file:$(tool_log_config "$libs")" \
    "$class" "$@"
}

# Quiet logging for the CLI tools (warnings to stderr, as Kafka's own scripts do).
tool_log_config() {
  local f="$KAFKA_CACHE/tools-log4j"
  case "$1" in *kafka-3.*) f="$f.properties" ;; *) f="$f.2.properties" ;; esac
  if [ ! -f "$f" ]; then
    mkdir -p "$KAFKA_CACHE"
    case "$f" in
      *.2.properties) printf '%s\n' 'status = error' 'appender.e.type = Console' 'appender.e.name = STDERR' \
        'appender.e.target = SYSTEM_ERR' 'appender.e.layout.type = PatternLayout' \
        'appender.e.layout.pattern = [%d] %p %m (%c)%n' 'rootLogger.level = warn' \
        'rootLogger.appenderRef.e.ref = STDERR' > "$f" ;;
      *) printf '%s\n' 'log4j.rootLogger=WARN, stderr' 'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' \
        'log4j.appender.stderr.Target=System.err' 'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
        'log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n' > "$f" ;;
    esac
  fi
  echo "$f"
}

tool() {
  local libs class; libs="$(jars "$KAFKA_VERSION")"
  case "$1" in
    kafka-topics) class=org.apache.kafka.tools.TopicCommand ;;
    kafka-console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    kafka-consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-acls) class=org.apache.kafka.tools.AclCommand ;;
    kafka-get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    *) die "unknown tool $1" ;;
  esac
  shift
  java_main "$libs" "$class" "$@"
}

# --- clusters -------------------------------------------------------------------------------------

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The state of a cluster folder: MODE, VERSION, NODES, PORT_<n>, CPORT_<n>, ZK_PORT, and SECURE_PORT
# in secure mode.
load() {
  [ -f "$1/cluster.env" ] || die "$1 holds no cluster (no cluster.env); start one with: kafka.sh start MODE $1"
  # shellcheck disable=SC1091
  . "$1/cluster.env"
}

node_log_config() {
  local dir="$1" node="$2"
  if [ "$VERSION" = "$KAFKA_ZK_VERSION" ] || [[ "$VERSION" == 3.* ]]; then
    printf '%s\n' 'log4j.rootLogger=INFO, file' 'log4j.appender.file=org.apache.log4j.FileAppender' \
      "log4j.appender.file.File=$dir/$node/server.log" 'log4j.appender.file.layout=org.apache.log4j.PatternLayout' \
      'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n' \
      'log4j.logger.kafka.request.logger=WARN' > "$dir/$node/log4j.properties"
    # A broker's ZooKeeper client is chatty; ZooKeeper's own start lines tell when it serves.
    [ "$node" = zk ] || echo 'log4j.logger.org.apache.zookeeper=WARN' >> "$dir/$node/log4j.properties"
    echo "-Dlog4j.configuration=file:$dir/$node/log4j.properties"
  else
    printf '%s\n' 'status = error' 'appender.f.type = File' 'appender.f.name = FILE' \
      "appender.f.fileName = $dir/$node/server.log" 'appender.f.layout.type = PatternLayout' \
      'appender.f.layout.pattern = [%d] %p %m (%c)%n' 'rootLogger.level = info' \
      'rootLogger.appenderRef.f.ref = FILE' 'logger.r.name = kafka.request.logger' 'logger.r.level = warn' \
      > "$dir/$node/log4j2.properties"
    echo "-Dlog4j2.configurationFile=$dir/$node/log4j2.properties"
  fi
}

# Starts one node (a broker, or zk) in the background; its pid goes to DIR/NODE/pid.
launch() {
  local dir="$1" node="$2" libs logcfg class config
  libs="$(jars "$VERSION")"
  logcfg="$(node_log_config "$dir" "$node")"
  if [ "$node" = zk ]; then
    class=org.apache.zookeeper.server.quorum.QuorumPeerMain config="$dir/zk/zoo.cfg"
  else
    class=kafka.Kafka config="$dir/$node/server.properties"
  fi
  # The marker in the command line lets a test harness find strays: -Dpipeline.kafka.dir=DIR.
  # shellcheck disable=SC2086
  nohup setsid java $KAFKA_HEAP_OPTS ${KAFKA_JVM_OPTS:-} -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dpipeline.kafka.dir=$dir" "$logcfg" -cp "$libs/*" "$class" "$config" \
    > "$dir/$node/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/$node/pid"
}

alive() { local pid; pid="$(cat "$1/$2/pid" 2>/dev/null)" && kill -0 "$pid" 2>/dev/null; }

# Waits until a node logs that it serves (and, for brokers, its port accepts connections).
wait_ready() {
  local dir="$1" node="$2" pattern port deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  if [ "$node" = zk ]; then
    pattern='binding to port|bound to port' port="$ZK_PORT"
  else
    # KRaft: "[KafkaRaftServer nodeId=1] Kafka Server started"; ZooKeeper mode: "[KafkaServer id=1] started".
    pattern='Kafka Server started|\[KafkaServer id=[0-9]+\] started' port="$(eval echo "\$PORT_$node")"
  fi
  while :; do
    if grep -qE "$pattern" "$dir/$node/server.log" 2>/dev/null && (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! alive "$dir" "$node"; then
      tail -n 40 "$dir/$node/server.log" "$dir/$node/stdout.log" >&2 2>/dev/null || true
      die "node $node of $dir exited while starting (logs above, in $dir/$node/)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$dir/$node/server.log" >&2 2>/dev/null || true
      die "node $node of $dir did not start within $KAFKA_START_TIMEOUT s (logs in $dir/$node/)"
    fi
    sleep 0.2
  done
}

bootstrap_of() {
  local n out=""
  for n in $NODES; do out="${out:+$out,}127.0.0.1:$(eval echo "\$PORT_$n")"; done
  echo "$out"
}

secure_bootstrap_of() {
  [ -n "${SECURE_PORT:-}" ] || die "$1 is not a secure cluster (start one with: kafka.sh start secure DIR)"
  echo "127.0.0.1:$SECURE_PORT"
}

extra_config() { local kv; for kv in ${KAFKA_EXTRA_CONFIG:-}; do echo "$kv"; done; }

write_kraft_config() {
  local dir="$1" node="$2" voters="$3" rf="$4" min_isr="$5" port cport listeners advertised protocols
  port="$(eval echo "\$PORT_$node")" cport="$(eval echo "\$CPORT_$node")"
  listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  advertised="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "${SECURE_PORT:-}" ]; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$SECURE_PORT"
    advertised="$advertised,SASL_SSL://127.0.0.1:$SECURE_PORT" protocols="$protocols,SASL_SSL:SASL_SSL"
  fi
  mkdir -p "$dir/$node/data"
  cat > "$dir/$node/server.properties" <<EOF
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/$node/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
$([ -z "${SECURE_PORT:-}" ] || secure_config "$dir")
$(extra_config)
EOF
}

# --- secure mode ----------------------------------------------------------------------------------

SECURE_USERS="admin app nobody"

# Writes DIR/users.env, one NAME=password line per user. A password goes unquoted into
# --add-scram's [name=...,password=...] (where "," and "]" would end it) and into a JAAS line
# (where '"', "\" and ";" would), and tests read users.env line by line: hence the narrow alphabet.
secure_users() {
  local dir="$1" user var pw
  for user in $SECURE_USERS; do
    var="KAFKA_SECURE_PASSWORD_${user^^}"
    pw="${!var:-$(openssl rand -hex 12)}"
    [[ "$pw" =~ ^[A-Za-z0-9._~@%+/:-]+$ ]] || die "$var may hold only letters, digits and ._~@%+/:-"
    echo "$user=$pw"
  done > "$dir/users.env"
}

# A CA, a broker certificate it signs (SAN IP:127.0.0.1 and DNS:localhost, which librdkafka checks
# by default: ssl.endpoint.identification.algorithm=https) and a second, unrelated CA that clients
# can trust to see verification fail. Kafka reads the broker's key and certificate straight from
# PEM (ssl.keystore.type=PEM), so no keytool or JKS is needed; the key must be unencrypted PKCS#8
# ("BEGIN PRIVATE KEY", what OpenSSL 3 writes with -nodes), as no ssl.key.password is set.
make_tls() {
  local tls="$1/tls" ca
  mkdir -p "$tls"
  ossl() { openssl "$@" 2>> "$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "openssl $1 failed"; }; }
  for ca in ca other-ca; do
    ossl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=pipeline test $ca" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$tls/$ca.key" -out "$tls/$ca.pem"
  done
  ossl req -newkey rsa:2048 -nodes -sha256 -subj /CN=localhost -keyout "$tls/broker.key" -out "$tls/broker.csr"
  printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=critical,CA:FALSE' \
    'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' > "$tls/broker.ext"
  ossl x509 -req -sha256 -days 3650 -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -extfile "$tls/broker.ext" -out "$tls/broker.pem"
  cat "$tls/broker.key" "$tls/broker.pem" > "$tls/broker-keystore.pem"
}

# The secure node's server.properties lines. Each SASL mechanism of a listener needs its own JAAS
# entry (listener.name.LISTENER.MECHANISM.sasl.jaas.config, names in lower case): SCRAM's login
# module takes no users (their credentials live in the metadata log, put there by StorageTool
# --add-scram), PLAIN's takes them as user_NAME="password". Kafka 4 checks the SCRAM nonce
# strictly (RFC 5802): librdkafka before 2.6.1 (Debian 12's kcat has 2.0.2) fails SCRAM here with
# "invalid credentials" whatever the password, while PLAIN and the Java client work.
secure_config() {
  local dir="$1" user pw plain=""
  while IFS== read -r user pw; do plain="$plain user_$user=\"$pw\""; done < "$dir/users.env"
  cat <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:admin
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/broker-keystore.pem
EOF
}

# StorageTool arguments that put every user's SCRAM-SHA-256 and SCRAM-SHA-512 credentials into
# the metadata log it bootstraps (one NUL-terminated argument each, for mapfile -d '').
scram_format_args() {
  local user pw mechanism
  while IFS== read -r user pw; do
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      printf '%s\0' --add-scram "$mechanism=[name=$user,password=$pw]"
    done
  done < "$1/users.env"
}

start() {
  local mode="$1" dir="$2" n ports
  [ ! -e "$dir/cluster.env" ] || die "$dir already holds a cluster; stop it and use a new folder"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  case "$mode" in
    kraft|secure) VERSION="$KAFKA_VERSION" NODES="1" ;;
    cluster) VERSION="$KAFKA_VERSION" NODES="1 2 3" ;;
    zk)      VERSION="$KAFKA_ZK_VERSION" NODES="1" ;;
    *) die "unknown mode $mode: use kraft, zk, cluster or secure" ;;
  esac
  # Passwords first: a bad one stops the start before the folder holds a cluster.
  [ "$mode" != secure ] || secure_users "$dir"
  jars "$VERSION" > /dev/null
  # shellcheck disable=SC2207
  ports=($(free_ports 8))
  {
    echo "MODE=$mode"; echo "VERSION=$VERSION"; echo "NODES=\"$NODES\""
    for n in $NODES; do echo "PORT_$n=${ports[$((n - 1))]}"; echo "CPORT_$n=${ports[$((n + 2))]}"; done
    echo "ZK_PORT=${ports[6]}"
    [ "$mode" != secure ] || echo "SECURE_PORT=${ports[7]}"
  } > "$dir/cluster.env"
  load "$dir"
  if [ "$mode" = zk ]; then
    mkdir -p "$dir/zk/data" "$dir/1/data"
    printf '%s\n' "dataDir=$dir/zk/data" "clientPort=$ZK_PORT" "clientPortAddress=127.0.0.1" 'tickTime=2000' \
      'maxClientCnxns=0' 'admin.enableServer=false' > "$dir/zk/zoo.cfg"
    cat > "$dir/1/server.properties" <<EOF
broker.id=1
zookeeper.connect=127.0.0.1:$ZK_PORT
zookeeper.connection.timeout.ms=30000
listeners=PLAINTEXT://127.0.0.1:$PORT_1
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT_1
log.dirs=$dir/1/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
$(extra_config)
EOF
    launch "$dir" zk
    wait_ready "$dir" zk
    launch "$dir" 1
    wait_ready "$dir" 1
  else
    local voters="" rf=1 min_isr=1 cluster_id libs scram=()
    for n in $NODES; do voters="${voters:+$voters,}$n@127.0.0.1:$(eval echo "\$CPORT_$n")"; done
    [ "$mode" = cluster ] && rf=3 min_isr=2
    # Kafka's Uuid in base64; one starting with "-" would read as an option (Kafka's own
    # random-uuid avoids those too).
    cluster_id="$(python3 -c 'import base64, uuid
while True:
    u = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not u.startswith("-"):
        print(u)
        break')"
    libs="$(jars "$VERSION")"
    if [ "$mode" = secure ]; then
      make_tls "$dir"
      mapfile -d '' scram < <(scram_format_args "$dir")
    fi
    for n in $NODES; do
      write_kraft_config "$dir" "$n" "$voters" "$rf" "$min_isr"
      node_log_config "$dir" "$n" > /dev/null
      java -Xmx256m -cp "$libs/*" "-Dlog4j2.configurationFile=$(tool_log_config "$libs")" \
        kafka.tools.StorageTool format --cluster-id="$cluster_id" --config="$dir/$n/server.properties" "${scram[@]}" \
        > "$dir/$n/format.log" 2>&1 \
        || { cat "$dir/$n/format.log" >&2; die "formatting node $n failed"; }
    done
    for n in $NODES; do launch "$dir" "$n"; done
    for n in $NODES; do wait_ready "$dir" "$n"; done
  fi
  echo "bootstrap=$(bootstrap_of)"
  [ "$mode" != secure ] || echo "secure_bootstrap=$(secure_bootstrap_of "$dir")"
}

signal_nodes() {
  local dir="$1" sig="$2" node pid
  shift 2
  for node in "$@"; do
    pid="$(cat "$dir/$node/pid" 2>/dev/null)" || continue
    kill "-$sig" "$pid" 2>/dev/null || true
  done
}

stop() {
  local dir="$1" node order deadline
  load "$dir"
  # One node at a time, brokers before ZooKeeper: a broker's controlled shutdown needs a
  # controller (or ZooKeeper) to answer, which nodes stopping all at once do not get.
  order="$NODES"; [ "$MODE" = zk ] && order="$NODES zk"
  # The last node of a KRaft cluster cannot finish a controlled shutdown (no quorum is left to
  # acknowledge it): it gets a short wait, then SIGKILL; the page cache holds its log, which it
  # recovers on its next start.
  local last="${NODES##* }" timeout
  for node in $order; do
    alive "$dir" "$node" || { rm -f "$dir/$node/pid"; continue; }
    timeout="$KAFKA_STOP_TIMEOUT"
    [ "$MODE" = cluster ] && [ "$node" = "$last" ] && [ "$timeout" -gt 5 ] && timeout=5
    deadline=$((SECONDS + timeout))
    signal_nodes "$dir" TERM "$node"
    while alive "$dir" "$node"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "kafka.sh: node $node did not stop within $timeout s; killing it" >&2
        signal_nodes "$dir" KILL "$node"
        deadline=$((SECONDS + 3600))
      fi
      sleep 0.2
    done
    rm -f "$dir/$node/pid"
  done
  echo "stopped $dir"
}

kill_node() {
  local dir="$1" node="$2" targets
  load "$dir"
  targets="$node"; [ "$node" = all ] && targets="$NODES zk"
  for node in $targets; do
    [ -f "$dir/$node/pid" ] || continue
    signal_nodes "$dir" KILL "$node"
    while alive "$dir" "$node"; do sleep 0.05; done
    rm -f "$dir/$node/pid"
  done
}

restart_node() {
  local dir="$1" node="$2"
  load "$dir"
  [ -d "$dir/$node" ] || die "$dir has no node $node (nodes: $NODES${ZK_PORT:+ zk})"
  ! alive "$dir" "$node" || die "node $node of $dir is running; kill it first"
  # Keep the old log apart, so that readiness is read from this start's lines only.
  [ -f "$dir/$node/server.log" ] && mv "$dir/$node/server.log" "$dir/$node/server.log.$(date +%s%N)"
  launch "$dir" "$node"
  wait_ready "$dir" "$node"
  echo "restarted node $node of $dir"
}

# The leader of a partition, from the metadata log of the nodes' own view (kafka-topics --describe).
leader() {
  local dir="$1" topic="$2" partition="$3"
  load "$dir"
  KAFKA_HEAP_OPTS="-Xmx256m" "$0" kafka-topics --bootstrap-server "$(bootstrap_of)" --describe --topic "$topic" \
    | awk -v p="$partition" '$0 ~ "Partition: "p"\t" || $0 ~ "Partition: "p" " {
        for (i = 1; i <= NF; i++) if ($i == "Leader:") { print $(i + 1); exit } }'
}

cmd="${1:-}"
[ -n "$cmd" ] || { sed -n '2,35p' "$0"; exit 2; }
shift
case "$cmd" in
  start)     [ $# -eq 2 ] || die "usage: kafka.sh start kraft|zk|cluster|secure DIR"; start "$1" "$2" ;;
  stop)      [ $# -eq 1 ] || die "usage: kafka.sh stop DIR"; stop "$1" ;;
  kill)      [ $# -eq 2 ] || die "usage: kafka.sh kill DIR NODE|all"; kill_node "$1" "$2" ;;
  restart)   [ $# -eq 2 ] || die "usage: kafka.sh restart DIR NODE"; restart_node "$1" "$2" ;;
  bootstrap) [ $# -eq 1 ] || die "usage: kafka.sh bootstrap DIR"; load "$1"; bootstrap_of ;;
  secure-bootstrap) [ $# -eq 1 ] || die "usage: kafka.sh secure-bootstrap DIR"; load "$1"; secure_bootstrap_of "$1" ;;
  leader)    [ $# -eq 3 ] || die "usage: kafka.sh leader DIR TOPIC PARTITION"; leader "$@" ;;
  jars)      jars "${1:-$KAFKA_VERSION}" ;;
  kafka-topics|kafka-console-consumer|kafka-console-producer|kafka-consumer-groups|kafka-acls|kafka-get-offsets) tool "$cmd" "$@" ;;
  -h|--help|help) sed -n '2,35p' "$0" ;;
  *) die "unknown command $cmd (kafka.sh --help)" ;;
esac
