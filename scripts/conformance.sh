#!/usr/bin/env bash
# Runs the official MCP conformance suite (npm @modelcontextprotocol/conformance,
# pinned in tests/node) against a real `gantry dev` of its own, and compares
# the results with conformance/baseline.txt (see conformance/compare.mjs):
# it fails when a scenario fails that the baseline does not list, or when a
# baseline entry starts passing.
#
# Three runs:
#   2025-11-25  conformance 0.1.16          --suite all
#   2026-07-28  conformance 0.2.0-alpha.12  --suite all --spec-version 2026-07-28
#   default     conformance 0.2.0-alpha.12  --suite all (every server scenario,
#               each at its own protocol version, optional extensions too)
#
# The suite cannot send an Authorization header, so it talks to gantry through
# hack/mcpauthproxy, a loopback-only proxy that adds the bearer token and
# passes Host and Origin through untouched.
#
# Needs root (gantry dev), Go, and npm plus the npm registry the first time
# (scripts/node-tools.sh installs Node 22 and the suite into .cache/node;
# later runs are offline). Results go to $CONFORMANCE_OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
start_s=$(date +%s)

tools="$(bash scripts/node-tools.sh)"
node="$tools/node_modules/.bin/node"
suite01="$tools/node_modules/conformance-0.1/dist/index.js"
suite02="$tools/node_modules/conformance-0.2/dist/index.js"

bridge=gconf0
subnet=10.94.0.0/24
run_dir=/run/gantry-conf
tmp="$(mktemp -d /tmp/gantry-conformance.XXXXXX)"
out="${CONFORMANCE_OUT:-$tmp/results}"
mkdir -p "$out"
dev_pid=""
proxy_pid=""

cleanup() {
  local rc=$?
  set +e
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -TERM "$dev_pid"
    for _ in $(seq 1 150); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  # What gantry dev leaves by design when it stops (containers survive it;
  # this one ran none): its iptables rules, bridge and run dir.
  for table in filter nat; do
    iptables -w -t "$table" -S 2>/dev/null | grep -E -- "-i $bridge |masquerade $bridge\"" | sed 's/^-A /-D /' |
      while read -r rule; do eval "iptables -w -t $table $rule" || true; done
  done
  [ -e "/sys/class/net/$bridge" ] && ip link del "$bridge" 2>/dev/null || true
  mountpoint -q "$run_dir/netns" 2>/dev/null && umount -l "$run_dir/netns" || true
  rm -rf "$run_dir"
  if [ $rc -ne 0 ] && [ -f "$tmp/data/gantry.log" ]; then
    echo "--- gantry dev log (last 30 lines)"; tail -n 30 "$tmp/data/gantry.log"
  fi
  [ -z "${CONFORMANCE_OUT:-}" ] && rm -rf "$tmp" || rm -rf "$tmp/data" "$tmp/bin"
  exit $rc
}
if [ -e "/sys/class/net/$bridge" ] || [ -e "$run_dir" ]; then
  echo "conformance: $bridge or $run_dir exists: another conformance run is active, or one was killed (then: ip link del $bridge; umount $run_dir/netns; rm -rf $run_dir)" >&2
  rm -rf "$tmp"
  exit 1
fi
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== conformance: building gantry and the auth proxy"
mkdir -p "$tmp/bin" "$tmp/data"
make -s init
CGO_ENABLED=0 go build -o "$tmp/bin/gantry" ./cmd/gantry
go build -o "$tmp/bin/mcpauthproxy" ./hack/mcpauthproxy

free_port() { "$node" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
addr="127.0.0.1:$(free_port)"
"$tmp/bin/gantry" dev --data-dir "$tmp/data" --listen "$addr" --bridge "$bridge" --subnet "$subnet" \
  --run-dir "$run_dir" --port-range 43000-43099 >"$tmp/data/gantry.log" 2>&1 &
dev_pid=$!
healthy() { "$node" -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "http://$addr/healthz"; }
for _ in $(seq 1 150); do
  healthy && break
  kill -0 "$dev_pid" 2>/dev/null || { echo "conformance: gantry dev exited" >&2; exit 1; }
  sleep 0.1
done
healthy || { echo "conformance: gantry dev did not become healthy on $addr" >&2; exit 1; }

GANTRY_TOKEN="$(cat "$tmp/data/admin.token")" "$tmp/bin/mcpauthproxy" --target "http://$addr" \
  --listen 127.0.0.1:0 --addr-file "$tmp/proxy.addr" >/dev/null 2>"$tmp/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/proxy.addr" ] && break; sleep 0.05; done
url="http://$(cat "$tmp/proxy.addr")/mcp"

# run LABEL SUITE [ARGS...]: one suite run over the scenarios that `list
# --server ARGS` names; its exit status is ignored (the baseline decides),
# its output kept in $out/LABEL.txt.
run() {
  local label=$1 suite=$2; shift 2
  echo "== conformance [$label]: $("$node" "$suite" --version) server --suite all $*"
  "$node" "$suite" list --server "$@" >"$out/$label.list"
  timeout 300 "$node" "$suite" server --url "$url" --suite all "$@" -o "$out/$label" >"$out/$label.txt" 2>&1 || true
}
run 2025-11-25 "$suite01"
run 2026-07-28 "$suite02" --spec-version 2026-07-28
run default "$suite02"

echo "== conformance: comparing with conformance/baseline.txt"
"$node" conformance/compare.mjs conformance/baseline.txt \
  "2025-11-25=$out/2025-11-25=$out/2025-11-25.list" \
  "2026-07-28=$out/2026-07-28=$out/2026-07-28.list" \
  "default=$out/default=$out/default.list"
echo "== conformance: done in $(($(date +%s) - start_s))s"
