#!/usr/bin/env bash
# An S3-compatible server as a local process on a loopback port: moto's server (PyPI:
# moto[server], tests/python/requirements.txt), for the Delta tables on object storage. No Docker.
#
#   scripts/s3.sh start DIR [BUCKET...]   start a server kept in DIR, create the buckets, print
#                                         endpoint=http://127.0.0.1:PORT
#   scripts/s3.sh stop DIR                stop it (SIGTERM, then SIGKILL)
#   scripts/s3.sh endpoint DIR            print the endpoint of a running server
#   scripts/s3.sh env DIR                 print the AWS_* lines a client needs (export them)
#
# moto accepts any access key; the server keeps its objects in memory, so a restart empties it.
# It honours S3's conditional writes (If-None-Match: *), which the Delta log's commits rely on.
# Environment: S3_PORT (default: a free port), S3_START_TIMEOUT (seconds, 30).
set -euo pipefail

die() { echo "s3.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1"; shift
  mkdir -p "$dir"
  python3 -c 'import moto.server' 2> /dev/null \
    || die "moto's server is needed: python3 -m pip install 'moto[server]' (tests/python/requirements.txt)"
  local port="${S3_PORT:-$(free_port)}"
  # A marker on the command line lets a test harness find strays of its own.
  nohup python3 -m moto.server -H 127.0.0.1 -p "$port" > "$dir/server.log" 2>&1 &
  echo $! > "$dir/pid"
  echo "http://127.0.0.1:$port" > "$dir/endpoint"
  local deadline=$((SECONDS + ${S3_START_TIMEOUT:-30}))
  until python3 - "$port" 2> /dev/null << 'EOF'
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
EOF
  do
    kill -0 "$(cat "$dir/pid")" 2> /dev/null || die "moto server exited: $(tail -5 "$dir/server.log")"
    [ $SECONDS -lt $deadline ] || die "moto server not serving on port $port after ${S3_START_TIMEOUT:-30} s"
    sleep 0.2
  done
  for bucket in "$@"; do
    python3 - "$port" "$bucket" << 'EOF'
import sys, urllib.request
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", method="PUT")
urllib.request.urlopen(request, timeout=10)
EOF
  done
  echo "endpoint=http://127.0.0.1:$port"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  kill "$pid" 2> /dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2> /dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
  start) [ $# -ge 2 ] || die "usage: s3.sh start DIR [BUCKET...]"; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || die "usage: s3.sh stop DIR"; stop "$2" ;;
  endpoint) cat "$2/endpoint" ;;
  env)
    echo "AWS_ENDPOINT_URL=$(cat "$2/endpoint")"
    echo "AWS_ALLOW_HTTP=true"
    echo "AWS_REGION=us-east-1"
    echo "AWS_ACCESS_KEY_ID=test"
    echo "AWS_SECRET_ACCESS_KEY=test" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
