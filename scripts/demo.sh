#!/usr/bin/env bash
# make demo: a real registry, a real image built from Debian's busybox-static,
# gantry dev, and a 3-replica web service reached through its published ports.
# Leaves nothing running unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
GANTRY=$ROOT/bin/gantry
DEMO=$ROOT/.demo
DATA=${GANTRY_DATA_DIR:-/var/lib/gantry}
REG_PORT=${REGISTRY_PORT:-5000}
KEEP=${KEEP:-0}
mkdir -p "$DEMO"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fetch() { timeout 5 busybox wget -q -O- "$1"; }

pids=()
cleanup() {
  local rc=$?
  if [ "$KEEP" != 1 ]; then
    if [ -n "${REUSED:-}" ] || { [ -n "${GANTRY_PID:-}" ] && kill -0 "$GANTRY_PID" 2>/dev/null; }; then
      say "Cleaning up: gantry rm web (waits until every instance is stopped and removed)"
      "$GANTRY" rm web || true
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
  else
    echo
    pid=${GANTRY_PID:-$(pgrep -f "gantry dev --data-dir $DATA" | head -1)}
    echo "KEEP=1: left running: gantry dev (pid $pid, log $DEMO/gantry.log) and the registry on 127.0.0.1:$REG_PORT."
    echo "Try: $GANTRY ps    $GANTRY status web    $GANTRY logs web"
    echo "Stop: $GANTRY rm web && kill $pid ${REG_PID:-}"
  fi
  exit $rc
}
trap cleanup EXIT

say "Starting a real registry (Debian's docker-registry) on 127.0.0.1:$REG_PORT"
if timeout 5 busybox wget -q -O /dev/null "http://127.0.0.1:$REG_PORT/v2/" 2>/dev/null; then
  echo "a registry already answers on 127.0.0.1:$REG_PORT; using it"
else
  mkdir -p "$DEMO/registry"
  cat > "$DEMO/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $DEMO/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$REG_PORT}
YML
  docker-registry serve "$DEMO/registry.yml" >"$DEMO/registry.log" 2>&1 &
  REG_PID=$!; pids+=("$REG_PID")
  for i in $(seq 1 50); do
    timeout 5 busybox wget -q -O /dev/null "http://127.0.0.1:$REG_PORT/v2/" 2>/dev/null && break
    [ "$i" = 50 ] && { echo "registry did not start; see $DEMO/registry.log"; exit 1; }
    sleep 0.2
  done
fi

IMAGE=127.0.0.1:$REG_PORT/demo/web:1
say "Building $IMAGE from /usr/bin/busybox and examples/web/www, and pushing it"
go run ./hack/mkimage -busybox /usr/bin/busybox -www examples/web/www -ref "$IMAGE" -insecure

# A gantry already on the port is reused when it is this data dir's (say,
# an earlier make demo KEEP=1); another one would pass the readiness check
# below and get this demo's calls with the wrong token, so it stops here.
if timeout 5 busybox wget -q -O /dev/null http://127.0.0.1:7433/healthz 2>/dev/null; then
  if [ -r "$DATA/admin.token" ] && GANTRY_TOKEN=$(cat "$DATA/admin.token") "$GANTRY" ps >/dev/null 2>&1; then
    say "gantry dev already runs on 127.0.0.1:7433 with data dir $DATA; using it"
    REUSED=1
  else
    echo "another server answers on 127.0.0.1:7433 and does not take $DATA/admin.token (another gantry dev?): stop it first (see: ps aux | grep 'gantry dev')"
    exit 1
  fi
else
  say "Starting gantry dev (data dir $DATA)"
  "$GANTRY" dev --data-dir "$DATA" >"$DEMO/gantry.log" 2>&1 &
  GANTRY_PID=$!; pids+=("$GANTRY_PID")
  for i in $(seq 1 100); do
    timeout 5 busybox wget -q -O /dev/null http://127.0.0.1:7433/healthz 2>/dev/null && break
    kill -0 "$GANTRY_PID" 2>/dev/null || { echo "gantry dev exited:"; cat "$DEMO/gantry.log"; exit 1; }
    [ "$i" = 100 ] && { echo "gantry dev did not start:"; cat "$DEMO/gantry.log"; exit 1; }
    sleep 0.2
  done
fi
GANTRY_TOKEN=$(cat "$DATA/admin.token"); export GANTRY_TOKEN

SPEC=examples/web.yaml
if [ "$REG_PORT" != 5000 ]; then
  sed "s#127.0.0.1:5000/#127.0.0.1:$REG_PORT/#" examples/web.yaml > "$DEMO/web.yaml"; SPEC=$DEMO/web.yaml
fi
say "gantry deploy -f $SPEC   (waits until all 3 replicas are running and healthy)"
"$GANTRY" deploy -f "$SPEC"

say "gantry ps"
"$GANTRY" ps

say "Fetching a page from every replica through its published port"
ports=$("$GANTRY" status web -o json | grep -o '"http": *[0-9]*' | grep -o '[0-9]*$')
n=0
for p in $ports; do
  echo "--- http://127.0.0.1:$p/cgi-bin/hello"
  fetch "http://127.0.0.1:$p/cgi-bin/hello"
  n=$((n+1))
done
if [ "$n" -ne 3 ]; then echo "expected 3 published ports, found $n"; exit 1; fi
echo "--- http://127.0.0.1:$(echo "$ports" | head -1)/"
fetch "http://127.0.0.1:$(echo "$ports" | head -1)/" | head -3

say "gantry logs web --tail 2   (each replica's access log)"
"$GANTRY" logs web --tail 2

say "Demo done: 3 replicas served their pages."
