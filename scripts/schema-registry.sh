#!/usr/bin/env bash
# A real Confluent-compatible schema registry as a local process on a loopback port, from Maven
# Central's jars: Hortonworks (Cloudera) Schema Registry 0.9.1, whose RewriteUriFilter serves
# Confluent's REST API (/subjects, /schemas/ids) beside its own. No Docker, no tarball. (Apicurio
# Registry 3 is not assemblable from this machine's Maven Central: most of its modules are absent;
# Confluent's own registry is not on Maven Central.) Compose runs confluentinc/cp-schema-registry.
#
#   scripts/schema-registry.sh start DIR    start a registry, wait until it answers, print url=http://127.0.0.1:PORT
#   scripts/schema-registry.sh stop DIR     stop it (SIGTERM, then SIGKILL after 20 s)
#   scripts/schema-registry.sh pause DIR    SIGSTOP it: the port stays open, nothing answers (an outage)
#   scripts/schema-registry.sh resume DIR   SIGCONT it
#   scripts/schema-registry.sh url DIR      print the url of the registry of DIR
#   scripts/schema-registry.sh jars         resolve the jars (nothing is downloaded a second time), print the folder
#
# With SCHEMA_REGISTRY_TLS=1 at the first start, the registry serves https only, with a
# certificate (for 127.0.0.1 and localhost) signed by a CA made for it: start prints
# url=https://127.0.0.1:PORT and ca=DIR/tls/ca.pem (SCHEMA_REGISTRY_SSL_CA_LOCATION).
# With SCHEMA_REGISTRY_BASIC_AUTH=user:password at the first start, nginx (Debian's nginx-light)
# listens on the printed port and requires that login (HTTP basic auth), in front of the registry
# on a port of its own: Confluent's registry enforces basic auth itself; this one cannot.
# Schemas are kept in memory (the registry's InMemoryStorageManager): a registry started again is
# empty, as a Confluent registry that lost its _schemas topic. A test that needs an outage without
# losing the schemas pauses the registry. Environment: SCHEMA_REGISTRY_CACHE (jar cache, default
# ~/.cache/pipeline-schema-registry), SCHEMA_REGISTRY_HEAP_OPTS (-Xms64m -Xmx256m),
# SCHEMA_REGISTRY_START_TIMEOUT (seconds, 90).
set -euo pipefail

VERSION=0.9.1
CACHE="${SCHEMA_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-schema-registry}"
HEAP_OPTS="${SCHEMA_REGISTRY_HEAP_OPTS:--Xms64m -Xmx256m}"
START_TIMEOUT="${SCHEMA_REGISTRY_START_TIMEOUT:-90}"

die() { echo "schema-registry.sh: $*" >&2; exit 1; }

# Prints the folder of the runtime jars, resolving them with Maven the first time (a stamp file
# marks a complete resolution).
jars() {
  local dir="$CACHE/registry-$VERSION"
  if [ -f "$dir/.complete" ]; then echo "$dir/libs"; return; fi
  command -v mvn > /dev/null || die "Maven (mvn) is needed to fetch the registry's jars; apt-get install maven"
  mkdir -p "$dir"
  cat > "$dir/pom.xml" << EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local</groupId><artifactId>schema-registry-libs</artifactId><version>1</version><packaging>pom</packaging>
<dependencies>
<dependency><groupId>com.hortonworks.registries</groupId><artifactId>registry-webservice</artifactId><version>$VERSION</version></dependency>
<dependency><groupId>com.hortonworks.registries</groupId><artifactId>schema-registry-webservice</artifactId><version>$VERSION</version></dependency>
</dependencies></project>
EOF
  echo "schema-registry.sh: resolving Schema Registry $VERSION with Maven into $dir/libs" >&2
  rm -rf "$dir/libs"
  (cd "$dir" && mvn -B -q dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime >&2) \
    || die "Maven could not resolve Schema Registry $VERSION (see above)"
  # JAX-RS 1 (a Hadoop client's) beside Jersey 2's JAX-RS 2 breaks the web service: the
  # distribution's tarball leaves them out too.
  rm -f "$dir"/libs/jsr311-api-*.jar "$dir"/libs/jersey-core-1.*.jar
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

# A CA and a server certificate for 127.0.0.1 and localhost, in a PKCS12 keystore for Jetty.
make_tls() {
  local tls="$1/tls"
  command -v openssl > /dev/null || die "openssl is needed for SCHEMA_REGISTRY_TLS=1"
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
      -subj "/CN=pipeline-test-registry-ca" 2> /dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2> /dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 30 -extfile ext.cnf 2> /dev/null
    openssl pkcs12 -export -in server.pem -inkey server.key -out server.p12 -passout pass:changeit -name server
  ) || die "could not make the registry's certificates"
}

configure() {
  local dir="$1" ports scheme=http auth="${SCHEMA_REGISTRY_BASIC_AUTH:-}"
  ports=($(free_ports 3))
  [ "${SCHEMA_REGISTRY_TLS:-0}" = 1 ] && scheme=https
  if [ -n "$auth" ] && [ "$scheme" = https ]; then
    die "SCHEMA_REGISTRY_BASIC_AUTH and SCHEMA_REGISTRY_TLS together are not supported"
  fi
  # PORT: where clients connect; REGISTRY_PORT: the registry's own (nginx's upstream with auth).
  {
    echo "PORT=${ports[0]}"
    echo "ADMIN_PORT=${ports[1]}"
    echo "SCHEME=$scheme"
    if [ -n "$auth" ]; then echo "REGISTRY_PORT=${ports[2]}"; else echo "REGISTRY_PORT=${ports[0]}"; fi
    echo "AUTH=$([ -n "$auth" ] && echo 1 || echo 0)"
  } > "$dir/registry.env"
  # shellcheck disable=SC1091
  . "$dir/registry.env"
  if [ "$AUTH" = 1 ]; then
    command -v nginx > /dev/null || die "nginx is needed for SCHEMA_REGISTRY_BASIC_AUTH (apt-get install nginx-light)"
    mkdir -p "$dir/nginx"
    local hash
    # From stdin: a password starting with "-" is not an option, and stays out of `ps`.
    hash="$(printf '%s\n' "${auth#*:}" | openssl passwd -apr1 -stdin)" || die "openssl passwd failed"
    printf '%s:%s\n' "${auth%%:*}" "$hash" > "$dir/htpasswd"
    cat > "$dir/nginx.conf" << EOF
daemon off;
# One process (no workers to outlive it): stop kills exactly what start started.
master_process off;
pid $dir/nginx/nginx.pid;
error_log $dir/logs/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / {
      auth_basic "schema registry";
      auth_basic_user_file $dir/htpasswd;
      proxy_pass http://127.0.0.1:$REGISTRY_PORT;
      proxy_read_timeout 60s;
    }
  }
}
EOF
  fi
  mkdir -p "$dir/logs" "$dir/jars"
  local tls_lines=""
  if [ "$scheme" = https ]; then
    make_tls "$dir"
    tls_lines="      keyStorePath: $dir/tls/server.p12
      keyStorePassword: changeit
      keyStoreType: PKCS12
      validateCerts: false"
  fi
  cat > "$dir/registry.yaml" << EOF
modules:
  - name: schema-registry
    className: com.hortonworks.registries.schemaregistry.webservice.SchemaRegistryModule
    config:
      schemaProviders:
        - providerClass: "com.hortonworks.registries.schemaregistry.avro.AvroSchemaProvider"
          defaultSerializerClass: "com.hortonworks.registries.schemaregistry.serdes.avro.AvroSnapshotSerializer"
          defaultDeserializerClass: "com.hortonworks.registries.schemaregistry.serdes.avro.AvroSnapshotDeserializer"
      schemaCacheSize: 10000
      schemaCacheExpiryInterval: 3600
servletFilters:
  - className: "com.hortonworks.registries.schemaregistry.webservice.RewriteUriFilter"
    params:
      forwardPaths: "/api/v1/confluent,/subjects/*,/schemas/ids/*"
      redirectPaths: "/ui/,/"
fileStorageConfiguration:
  className: "com.hortonworks.registries.common.util.LocalFileSystemStorage"
  properties:
    directory: "$dir/jars"
storageProviderConfiguration:
  providerClass: "com.hortonworks.registries.storage.impl.memory.InMemoryStorageManager"
swagger:
  resourcePackage: com.hortonworks.registries.schemaregistry.webservice
enableCors: false
server:
  applicationConnectors:
    - type: $scheme
      bindHost: 127.0.0.1
      port: $REGISTRY_PORT
$tls_lines
  adminConnectors:
    - type: http
      bindHost: 127.0.0.1
      port: $ADMIN_PORT
logging:
  level: WARN
  loggers:
    com.hortonworks.registries: INFO
  appenders:
    - type: file
      currentLogFilename: $dir/logs/registry.log
      archive: false
EOF
}

running() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2> /dev/null; }

start() {
  local dir libs
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
  running "$dir" && die "the registry of $dir is running already"
  command -v java > /dev/null || die "Java 17 is needed (apt-get install openjdk-17-jre-headless)"
  command -v curl > /dev/null || die "curl is needed to wait for the registry (apt-get install curl)"
  libs="$(jars)"
  [ -f "$dir/registry.env" ] || configure "$dir"
  # shellcheck disable=SC1091
  . "$dir/registry.env"
  # The marker property lets a test harness find strays of its own.
  # shellcheck disable=SC2086
  nohup java $HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true \
    -Dpipeline.schema_registry.dir="$dir" \
    -cp "$libs/*" com.hortonworks.registries.webservice.RegistryApplication server "$dir/registry.yaml" \
    > "$dir/logs/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  if [ "$AUTH" = 1 ]; then
    mkdir -p "$dir/logs"
    nohup nginx -p "$dir/nginx" -c "$dir/nginx.conf" > "$dir/logs/nginx-stdout.log" 2>&1 &
    echo $! > "$dir/nginx.pid"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  local curl_tls=()
  [ "$SCHEME" = https ] && curl_tls=(--cacert "$dir/tls/ca.pem")
  # The registry itself answers first, then (with auth) nginx in front of it asks for the login.
  until curl -fsS "${curl_tls[@]}" -o /dev/null "$SCHEME://127.0.0.1:$REGISTRY_PORT/subjects" 2> /dev/null \
      && { [ "$AUTH" = 0 ] || [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/subjects")" = 401 ]; }; do
    if ! running "$dir"; then
      stop "$dir"
      die "the registry exited: $(tail -5 "$dir/logs/stdout.log" "$dir/logs/registry.log" 2> /dev/null)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      stop "$dir"
      die "the registry does not answer after $START_TIMEOUT s (see $dir/logs)"
    fi
    sleep 0.3
  done
  echo "url=$SCHEME://127.0.0.1:$PORT"
  if [ "$SCHEME" = https ]; then echo "ca=$dir/tls/ca.pem"; fi
}

stop() {
  local dir="$1" pid
  if [ -f "$dir/nginx.pid" ]; then
    kill -9 "$(cat "$dir/nginx.pid")" 2> /dev/null || true
    rm -f "$dir/nginx.pid"
  fi
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  kill -CONT "$pid" 2> /dev/null || true
  kill -TERM "$pid" 2> /dev/null || true
  for _ in $(seq 200); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2> /dev/null || true
  while kill -0 "$pid" 2> /dev/null; do sleep 0.1; done
  rm -f "$dir/pid"
}

signal() {
  running "$1" || die "no registry runs in $1"
  kill "-$2" "$(cat "$1/pid")"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: schema-registry.sh start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: schema-registry.sh stop DIR"; stop "$2" ;;
  pause) [ $# -eq 2 ] || die "usage: schema-registry.sh pause DIR"; signal "$2" STOP ;;
  resume) [ $# -eq 2 ] || die "usage: schema-registry.sh resume DIR"; signal "$2" CONT ;;
  url) [ -f "${2:-}/registry.env" ] || die "${2:-} holds no registry"; . "$2/registry.env"; echo "$SCHEME://127.0.0.1:$PORT" ;;
  jars) jars ;;
  *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
