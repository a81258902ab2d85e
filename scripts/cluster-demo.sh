#!/usr/bin/env bash
# make cluster-demo: 3 gantry servers and 2 workers on this machine, each in
# its own network namespace (scripts/netns.sh: a veth to a shared bridge), a
# 3-replica web service from a real registry, then worker 1 dies (SIGKILL of
# everything in its node, containers included) and its instances move to
# worker 2. Leaves nothing behind unless KEEP=1 (then: scripts/cluster-demo.sh down).
#
# The nodes are named and addressed apart from scripts/netns.sh's defaults
# and from the e2e tests' (10.200-255.x): GANTRY_NETNS_NAME=gtydemo,
# GANTRY_NETNS_NET=10.98.0 (set them to move it). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
GANTRY=$ROOT/bin/gantry
NETNS=$ROOT/scripts/netns.sh
export GANTRY_NETNS_NAME=${GANTRY_NETNS_NAME:-gtydemo}
export GANTRY_NETNS_NET=${GANTRY_NETNS_NET:-10.98.0}
NAME=$GANTRY_NETNS_NAME
NET=$GANTRY_NETNS_NET
HOST_IP=$NET.1
REG=$HOST_IP:${REGISTRY_PORT:-5000} # on the bridge: clear of make demo's 127.0.0.1:5000
DEMO=${TMPDIR:-/tmp}/gantry-cluster-demo
KEEP=${KEEP:-0}
NODES=(s1 s2 s3 w1 w2) # node i of netns.sh runs NODES[i-1]
IDS= # the instance IDs seen, to check their cgroups are gone at the end
# The CLI's own settings would point it elsewhere.
unset GANTRY_ADDR GANTRY_TOKEN GANTRY_CA_FILE GANTRY_JOIN_TOKEN

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "cluster-demo: $*" >&2; exit 1; }
ip_of() { echo "$NET.$((10 + $1))"; }
dir_of() { echo "$DEMO/${NODES[$1 - 1]}"; }
rundir_of() { echo "/run/gantry-$NAME-${NODES[$1 - 1]}"; }
bridge_of() { echo "$NAME${NODES[$1 - 1]}"; } # containers' bridge, inside worker i's namespace
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# gantry, run inside node 1 (server s1): its MCP endpoint listens on the
# node's loopback, as it does by default on a real machine; the bootstrap's
# cluster-admin.token is good on every server.
g() { "$NETNS" exec 1 "$GANTRY" --token-file "$(dir_of 1)/cluster-admin.token" "$@"; }

# Everything in node i, the gantry process and the containers it started
# (netns.sh tracks them in a cgroup of its own hierarchy), killed at once:
# the worker's machine loses power.
kill_node() {
  local ns=$NAME-$1 pids
  for _ in $(seq 1 20); do
    pids=$( { ip netns pids "$ns" 2>/dev/null; cat "/run/gantry-netns-cg/$ns/cgroup.procs" 2>/dev/null; } | sort -u | tr '\n' ' ')
    [ -z "${pids// /}" ] && return 0
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.05
  done
  die "processes $pids of node $1 outlived SIGKILL"
}

# down: removes every piece of a demo, running or left by KEEP=1 or a
# crash; safe to run when there is none.
down() {
  [ -f "$DEMO/registry.pid" ] && kill "$(cat "$DEMO/registry.pid")" 2>/dev/null || true
  # netns.sh down kills every process of the nodes (containers too) first.
  "$NETNS" down >/dev/null
  local i rd
  for i in 4 5; do
    rd=$(rundir_of "$i")
    if [ -d "$rd/runc" ]; then
      # The killed containers' runc state and cgroups, as the e2e tests do.
      for id in $(runc --root "$rd/runc" list -q 2>/dev/null); do runc --root "$rd/runc" delete --force "$id" >/dev/null 2>&1 || true; done
    fi
    umount -l "$rd/netns" 2>/dev/null || true
    rm -rf "$rd"
    rm -f "/run/gantry-bridges/$(bridge_of "$i").lock"
  done
  rm -rf "$DEMO"
}

# leftovers: prints what of the demo is still on this machine (nothing, we hope).
leftovers() {
  ip netns list | grep -E "^$NAME-" | sed 's/^/network namespace /' || true
  [ ! -e "/sys/class/net/${NAME}0" ] || echo "bridge ${NAME}0"
  ip -o link show | grep -oE "${NAME}0v[0-9]+" | sed 's/^/veth /' || true
  grep -E "$NAME-|/run/gantry-$NAME-" /proc/self/mountinfo | awk '{ print "mount " $5 }' || true
  iptables-save 2>/dev/null | grep -F "gantry-netns:$NAME" | sed 's/^/iptables rule /' || true
  local id
  for id in $(printf "%s\n" $IDS | sort -u); do # runc's cgroups of the demo's containers
    ls -d /sys/fs/cgroup/*/gantry/"$id" 2>/dev/null | sed 's/^/cgroup /' || true
  done
  [ ! -d "/run/gantry-netns-cg/$NAME-1" ] || echo "cgroups of the nodes"
  for i in 4 5; do [ ! -e "$(rundir_of "$i")" ] || echo "run dir $(rundir_of "$i")"; done
  [ ! -e "$DEMO" ] || echo "directory $DEMO"
  pgrep -f -- "--data-dir $DEMO/" | sed 's/^/process /' || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ] && [ $rc = 0 ]; then
    echo
    echo "KEEP=1: left running: servers s1-s3 and worker $S in network namespaces $NAME-1..5 (data and logs in $DEMO),"
    echo "the registry on $REG. Each server's MCP endpoint listens on 127.0.0.1:7433 inside its node (1-3); the"
    echo "cluster admin token is good on all three. As root (the variables pick the demo's nodes), try:"
    echo "  export GANTRY_NETNS_NAME=$NAME GANTRY_NETNS_NET=$NET"
    echo "  scripts/netns.sh exec 1 bin/gantry --token-file $(dir_of 1)/cluster-admin.token ps"
    echo "  (exec 2 or 3 for s2, s3; then nodes, operator raft peers, snapshot save FILE, --consistent ps, ...;"
    echo "  deploy with --pull never: the workers pull from $REG, the servers do not)"
    echo "Kill server s2 (node 2):  kill -9 \$(ip netns pids $NAME-2)"
    echo "Start it again:           scripts/netns.sh exec 2 bin/gantry server --data-dir $(dir_of 2) --name s2 --advertise $(ip_of 2) >>$(dir_of 2)/gantry.log 2>&1 &"
    echo "Bring the killed $V back (its lost instances are dropped, none run twice):"
    echo "  scripts/netns.sh exec $VICTIM bin/gantry worker --data-dir $(dir_of "$VICTIM") --name $V --advertise $(ip_of "$VICTIM") --bridge $(bridge_of "$VICTIM") --subnet 10.77.0.0/24 --run-dir $(rundir_of "$VICTIM") --insecure-registry $REG >>$(dir_of "$VICTIM")/gantry.log 2>&1 &"
    echo "Stop and remove it all: sudo scripts/cluster-demo.sh down"
    exit 0
  fi
  [ $rc = 0 ] || { echo; echo "cluster-demo failed; the last lines of each node's log:"; for n in "${NODES[@]}"; do
    [ -f "$DEMO/$n/gantry.log" ] && { echo "=== $n"; tail -n 15 "$DEMO/$n/gantry.log"; }; done; }
  say "Cleaning up: every node's processes and containers, namespaces, bridge, mounts, run dirs, $DEMO"
  down
  local left; left=$(leftovers)
  if [ -n "$left" ]; then echo "left behind:"; echo "$left"; exit 1; fi
  echo "nothing left behind: no $NAME-* namespace, no ${NAME}0 bridge or veth, no mount, no iptables rule, no container cgroup, no run dir, no process"
  exit $rc
}

case ${1:-} in
  down) [ "$(id -u)" = 0 ] || die "needs root: sudo scripts/cluster-demo.sh down"; down; left=$(leftovers)
    [ -z "$left" ] || { echo "left behind:"; echo "$left"; exit 1; }; echo "cluster demo removed"; exit 0 ;;
  "") ;;
  *) die "usage: scripts/cluster-demo.sh [down]" ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, runc): run it with sudo"
[ -x "$GANTRY" ] || die "$GANTRY not built: run make build"
if [ -e "$DEMO" ] || ip netns list | grep -qE "^$NAME-"; then
  echo "removing what an earlier cluster demo left (KEEP=1?)"
  down
fi
trap cleanup EXIT
trap 'exit 130' INT TERM
T0=$(now)
mkdir -p "$DEMO"

say "Nodes: 5 network namespaces on bridge ${NAME}0 ($NET.0/24): s1-s3 at $NET.11-13, w1-w2 at $NET.14-15"
"$NETNS" up 5

say "A registry (Debian's docker-registry) on the bridge, $REG, and the demo image pushed to it"
mkdir -p "$DEMO/registry"
cat > "$DEMO/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $DEMO/registry}, delete: {enabled: true}}
http: {addr: $REG}
YML
docker-registry serve "$DEMO/registry.yml" >"$DEMO/registry.log" 2>&1 &
echo $! > "$DEMO/registry.pid"
disown $!
for i in $(seq 1 50); do
  timeout 5 busybox wget -q -O /dev/null "http://$REG/v2/" 2>/dev/null && break
  [ "$i" = 50 ] && die "registry did not start; see $DEMO/registry.log (is $REG taken? REGISTRY_PORT=... picks another port)"
  sleep 0.2
done
IMAGE=$REG/demo/web:1
go run ./hack/mkimage -busybox /usr/bin/busybox -www examples/web/www -ref "$IMAGE" -insecure

# start I ARGS...: runs gantry ARGS in node I, logging to its data dir.
start() {
  local i=$1; shift
  local d; d=$(dir_of "$i")
  mkdir -p "$d"
  "$NETNS" exec "$i" "$GANTRY" "$@" --data-dir "$d" --name "${NODES[$i - 1]}" --advertise "$(ip_of "$i")" >>"$d/gantry.log" 2>&1 &
  disown $! # killed with its node: no job notice
}
healthz() { "$NETNS" exec "$1" timeout 2 busybox wget -q -O- http://127.0.0.1:7433/healthz 2>/dev/null; }
# wait_for WHAT SECONDS CMD...: until CMD succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

say "Server s1: gantry server --bootstrap (makes the cluster CA, the gossip key and the join tokens)"
t=$(now)
start 1 server --bootstrap
leads() { healthz 1 | grep -qx 'role: leader'; }
wait_for "s1 to lead" 30 leads
echo "s1 leads after $(since "$t") s"
STOK=$(cat "$(dir_of 1)/server-join.token") WTOK=$(cat "$(dir_of 1)/worker-join.token")
echo "server join token: ${STOK:0:24}...  worker join token: ${WTOK:0:24}...  (in $(dir_of 1))"

say "Servers s2, s3: gantry server --join $(ip_of 1) --token <server token>"
t=$(now)
for i in 2 3; do start "$i" server --join "$(ip_of 1)" --token "$STOK"; done
voters3() { [ "$(healthz 1 | grep -c '^peer: .* voter$')" = 3 ]; }
wait_for "3 Raft voters" 30 voters3
echo "3 voters after $(since "$t") s:"
healthz 1 | sed 's/^/  /'

say "Workers w1, w2: gantry worker --join $(ip_of 1) --token <worker token>"
t=$(now)
for i in 4 5; do
  start "$i" worker --join "$(ip_of 1)" --token "$WTOK" --insecure-registry "$REG" \
    --bridge "$(bridge_of "$i")" --subnet 10.77.0.0/24 --run-dir "$(rundir_of "$i")"
done
ready2() { [ "$(g nodes | awk '$3 == "ready"' | wc -l)" = 2 ]; }
wait_for "2 ready workers" 30 ready2
echo "2 workers ready after $(since "$t") s"

say "gantry nodes   (through s1's MCP endpoint, with the cluster admin token)"
g nodes

# --pull never: the workers pull the image themselves (they may use plain
# http to $REG: --insecure-registry); the servers keep no images.
say "gantry deploy -f web.yaml --pull never   (3 replicas of examples/web.yaml, image $IMAGE pulled by the workers; waits until they run and are healthy)"
sed "s#^image: .*#image: $IMAGE#" examples/web.yaml > "$DEMO/web.yaml"
t=$(now)
g deploy -f "$DEMO/web.yaml" --pull never
echo "deployed in $(since "$t") s"

say "gantry ps"
out=$(g ps)
echo "$out"
IDS=$(echo "$out" | awk '$1 == "web" { print $2 }' | tr '\n' ' ')
# Kill the worker running the most replicas (w1, unless it runs none).
on() { g ps | awk -v n="$1" '$1 == "web" && $3 == n && $4 == "running"' | wc -l; }
VICTIM=4 SURVIVOR=5
[ "$(on w1)" -gt 0 ] || { VICTIM=5 SURVIVOR=4; }
V=${NODES[$VICTIM - 1]} S=${NODES[$SURVIVOR - 1]}

say "Worker $V loses power: SIGKILL to everything in its node (gantry worker and its $(on "$V") containers)"
kill_node "$VICTIM"
KILLED=$(now)
echo "killed; polling gantry ps until all 3 replicas run on $S:"
last=
while :; do
  out=$(g ps 2>/dev/null || true)
  IDS="$IDS $(echo "$out" | awk '$1 == "web" { print $2 }' | tr '\n' ' ')"
  summary=$(echo "$out" | awk '$1 == "web" { c[$3 " " $4]++ } END { for (k in c) print c[k] " " k }' | sort -k2 | tr '\n' ',' | sed 's/,$//; s/,/, /g')
  [ "$summary" = "$last" ] || { printf '  %5s s  %s\n' "$(since "$KILLED")" "$summary"; last=$summary; }
  [ "$(echo "$out" | awk -v n="$S" '$1 == "web" && $3 == n && $4 == "running"' | wc -l)" = 3 ] && break
  awk -v a="$KILLED" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 40) }' && die "the replicas did not all run on $S within 40 s"
  sleep 0.1
done
MOVED=$(since "$KILLED")

say "Instances moved: all 3 replicas run on $S $MOVED s after $V was killed"
g ps
g nodes

say "Fetching a page from every replica on $S at its published port ($(ip_of "$SURVIVOR"):PORT, from the host)"
for p in $(g ps | awk '$1 == "web" && $4 == "running" { sub(/^http:/, "", $8); print $8 }'); do
  echo "--- http://$(ip_of "$SURVIVOR"):$p/cgi-bin/hello"
  timeout 5 busybox wget -q -O- "http://$(ip_of "$SURVIVOR"):$p/cgi-bin/hello"
done

say "Cluster demo done in $(since "$T0") s: $V died, its instances ran on $S after $MOVED s."
