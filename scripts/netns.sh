#!/usr/bin/env bash
# netns.sh: Gantry nodes on one machine, for people (and make cluster-demo).
# Each node is a network namespace with a veth to a shared bridge, a kept
# mount namespace (its own /sys, the host's cgroups) and a cgroup that
# tracks what it starts (down kills it all, containers included), as
# e2e/netns builds them for tests.
#
#   scripts/netns.sh up N          make nodes 1..N (removes nodes above N)
#   scripts/netns.sh down          remove every node, the bridge and its rule
#   scripts/netns.sh exec I CMD..  run CMD inside node I
#   scripts/netns.sh partition I   cut node I off (TCP, UDP, both ways)
#   scripts/netns.sh heal I        undo partition I
#   scripts/netns.sh status        list the nodes
#
# Names: GANTRY_NETNS_NAME (default gtyc): bridge ${NAME}0, namespaces
# ${NAME}-I, host veths ${NAME}0vI. GANTRY_NETNS_NET (default 10.99.0): the
# /24; the host is .1 on the bridge, node I is .(10+I). Every command is
# idempotent. Needs root, iproute2, iptables and util-linux.
set -euo pipefail

NAME=${GANTRY_NETNS_NAME:-gtyc}
NET=${GANTRY_NETNS_NET:-10.99.0}
BR=${NAME}0
HOST_IP=$NET.1
MNT_DIR=/run/gantry-netns
CG_DIR=/run/gantry-netns-cg # named cgroup v1 hierarchy: what each node started, containers included
LOCK=/run/lock/gantry-netns.lock
COMMENT=gantry-netns:$NAME

die() { echo "netns.sh: $*" >&2; exit 1; }
ns_of() { echo "$NAME-$1"; }
veth_of() { echo "${BR}v$1"; }
ip_of() { echo "$NET.$((10 + $1))"; }
node_up() { [ -e "/run/netns/$(ns_of "$1")" ] && [ -e "$MNT_DIR/$(ns_of "$1")" ]; }
# not_up I: the refusal for a node that is not there; most often the nodes
# are up under another name (make cluster-demo's are gtydemo-I).
not_up() {
  die "node $1 (namespace $(ns_of "$1")) is not up: run scripts/netns.sh up $1 (or more) first; nodes made under another name need the same GANTRY_NETNS_NAME and GANTRY_NETNS_NET here (make cluster-demo's: GANTRY_NETNS_NAME=gtydemo GANTRY_NETNS_NET=10.98.0)"
}

check() {
  [ "$(id -u)" = 0 ] || die "needs root (network and mount namespaces): run it with sudo"
  local b
  for b in ip iptables nsenter unshare flock; do
    command -v "$b" >/dev/null || die "$b not found: apt-get install iproute2 iptables util-linux"
  done
  [[ $NAME =~ ^[a-z]{1,8}$ ]] || die "GANTRY_NETNS_NAME=$NAME: want 1 to 8 lower-case letters (interface names are at most 15 characters)"
  [[ $NET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "GANTRY_NETNS_NET=$NET: want the first three octets of a /24, e.g. 10.99.0"
}

node_arg() {
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 35 ] || die "node '${1:-}': want a number from 1 to 35"
}

# The rules that cut node $2 off, added (-I) or deleted (-D) with op $1.
cut_rules() {
  local op=$1 ns; ns=$(ns_of "$2")
  ip netns exec "$ns" iptables -t raw "$op" PREROUTING -i eth0 -j DROP &&
    ip netns exec "$ns" iptables -t mangle "$op" POSTROUTING -o eth0 -j DROP
}
is_cut() { ip netns exec "$(ns_of "$1")" iptables -t raw -C PREROUTING -i eth0 -j DROP 2>/dev/null; }

bridge_up() {
  # The /24 must not be routed elsewhere already (inside or around it).
  local other
  other=$( { ip -4 -o route show root "$NET.0/24"; ip -4 -o route show match "$NET.0/24" | grep -v '^default'; } |
    grep -v " dev $BR " | head -1 || true)
  [ -z "$other" ] || die "$NET.0/24 overlaps a route of this machine ($other): pick another /24 with GANTRY_NETNS_NET=10.98.0"
  [ -e "/sys/class/net/$BR" ] || ip link add "$BR" type bridge
  ip -4 -o addr show dev "$BR" | grep -q " $HOST_IP/24 " || ip addr add "$HOST_IP/24" dev "$BR"
  ip link set "$BR" up
  # With br_netfilter, bridged frames cross the host's FORWARD chain.
  if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" = 1 ]; then
    local rule=(FORWARD -i "$BR" -o "$BR" -m comment --comment "$COMMENT" -j ACCEPT)
    iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}"
  fi
}

node_make() {
  local i=$1 ns veth nip
  ns=$(ns_of "$i") veth=$(veth_of "$i") nip=$(ip_of "$i")
  [ -e "/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  ip link set "$veth" master "$BR" up
  ip -n "$ns" link set lo up
  ip -n "$ns" -4 -o addr show dev eth0 | grep -q " $nip/24 " || ip -n "$ns" addr add "$nip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "$HOST_IP"
  # IPv4 only: no IPv6 link-local path around the partition rules.
  ip netns exec "$ns" sh -c 'f=/proc/sys/net/ipv6/conf/all/disable_ipv6; [ ! -e $f ] || echo 1 > $f'
  # The node's cgroup, then the kept mount namespace (which copies the
  # hierarchy's mount): the node's /sys, the host's cgroups under it.
  (
    flock 9
    mkdir -p "$CG_DIR"
    if mountpoint -q "$CG_DIR" || mount -t cgroup -o none,name=gantrynetns cgroup "$CG_DIR" 2>/dev/null; then
      mkdir -p "$CG_DIR/$ns"
    else
      rmdir "$CG_DIR" 2>/dev/null || true
      echo "netns.sh: no cgroup v1 here: processes node $i starts outside its namespace (containers) are not tracked" >&2
    fi
    mkdir -p "$MNT_DIR"
    mountpoint -q "$MNT_DIR" || { mount --bind "$MNT_DIR" "$MNT_DIR" && mount --make-private "$MNT_DIR"; }
    if ! mountpoint -q "$MNT_DIR/$ns" 2>/dev/null; then
      touch "$MNT_DIR/$ns"
      nsenter --net="/run/netns/$ns" -- unshare --mount="$MNT_DIR/$ns" --propagation slave sh -c '
        set -e
        d=$(mktemp -d /run/gantry-netns/.sys.XXXXXX)
        mount -t sysfs sysfs "$d"
        mount --rbind /sys/fs/cgroup "$d/fs/cgroup"
        mount --move "$d" /sys
        rmdir "$d"'
    fi
  ) 9>"$LOCK"
}

node_remove() {
  local ns=$1 i=${1##*-} pids
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$( { ip netns pids "$ns" 2>/dev/null; cat "$CG_DIR/$ns/cgroup.procs" 2>/dev/null; } | sort -u |
      while read -r p; do grep -qv ') Z ' "/proc/$p/stat" 2>/dev/null && echo "$p"; done | tr '\n' ' ')
    [ -z "${pids// /}" ] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  [ -z "${pids// /}" ] || die "processes $pids of $ns outlived SIGKILL"
  [ ! -e "/run/netns/$ns" ] || ip netns del "$ns"
  (
    flock 9
    [ ! -d "$CG_DIR/$ns" ] || rmdir "$CG_DIR/$ns"
    if mountpoint -q "$CG_DIR" && [ -z "$(find "$CG_DIR" -mindepth 1 -maxdepth 1 -type d)" ]; then
      umount -l "$CG_DIR" && rmdir "$CG_DIR"
    fi
    if [ -e "$MNT_DIR/$ns" ]; then
      umount -l "$MNT_DIR/$ns" 2>/dev/null || true
      rm -f "$MNT_DIR/$ns"
    fi
    if [ -d "$MNT_DIR" ] && [ -z "$(ls -A "$MNT_DIR")" ]; then
      umount -l "$MNT_DIR" 2>/dev/null || true
      rmdir "$MNT_DIR" 2>/dev/null || true
    fi
  ) 9>"$LOCK"
  ip link del "$(veth_of "$i")" 2>/dev/null || true
}

nodes() { # the indexes of existing nodes, sorted
  local f
  for f in /run/netns/"$NAME"-*; do
    [ -e "$f" ] || continue
    f=${f##*-}
    [[ $f =~ ^[0-9]+$ ]] && echo "$f"
  done | sort -n
}

cmd_up() {
  node_arg "${1:-}"
  local n=$1 i
  bridge_up
  for ((i = 1; i <= n; i++)); do node_make "$i"; done
  for i in $(nodes); do [ "$i" -le "$n" ] || node_remove "$(ns_of "$i")"; done
  cmd_status
}

cmd_down() {
  local i found=0
  for i in $(nodes); do node_remove "$(ns_of "$i")"; found=1; done
  # Mount files or veths of half-made nodes.
  for i in "$MNT_DIR/$NAME"-* "$CG_DIR/$NAME"-*; do [ -e "$i" ] && { node_remove "${i##*/}"; found=1; }; done
  if [ -e "/sys/class/net/$BR" ]; then ip link del "$BR"; found=1; fi
  local rule=(FORWARD -i "$BR" -o "$BR" -m comment --comment "$COMMENT" -j ACCEPT)
  while iptables -C "${rule[@]}" 2>/dev/null; do iptables -D "${rule[@]}"; found=1; done
  if [ $found = 1 ]; then echo "removed the nodes of $BR"; else echo "no nodes of $BR to remove"; fi
}

cmd_exec() {
  node_arg "${1:-}"
  local i=$1; shift
  [ $# -gt 0 ] || die "exec $i: give a command to run, e.g. scripts/netns.sh exec $i ip addr"
  node_up "$i" || not_up "$i"
  local ns; ns=$(ns_of "$i")
  if [ -d "$CG_DIR/$ns" ]; then
    # shellcheck disable=SC2016
    set -- sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG_DIR/$ns" "$@"
  fi
  exec nsenter --net="/run/netns/$ns" --mount="$MNT_DIR/$ns" --wd="$PWD" -- "$@"
}

cmd_partition() {
  node_arg "${1:-}"
  node_up "$1" || not_up "$1"
  is_cut "$1" || cut_rules -I "$1"
  echo "node $1 ($(ip_of "$1")) is cut off; scripts/netns.sh heal $1 undoes it"
}

cmd_heal() {
  node_arg "${1:-}"
  node_up "$1" || not_up "$1"
  while is_cut "$1"; do cut_rules -D "$1"; done
  echo "node $1 ($(ip_of "$1")) is reachable"
}

cmd_status() {
  local i any=0 state
  for i in $(nodes); do
    any=1
    state=up
    node_up "$i" || state="half-made (run up again)"
    [ "$state" = up ] && is_cut "$i" && state=partitioned
    printf 'node %s  ns %-10s  ip %-15s  %s\n' "$i" "$(ns_of "$i")" "$(ip_of "$i")" "$state"
  done
  [ $any = 1 ] || echo "no nodes (scripts/netns.sh up N makes them)"
  return 0
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    up) check; [ $# -eq 1 ] || die "usage: netns.sh up N"; cmd_up "$@" ;;
    down) check; [ $# -eq 0 ] || die "usage: netns.sh down"; cmd_down ;;
    exec) check; cmd_exec "$@" ;;
    partition) check; [ $# -eq 1 ] || die "usage: netns.sh partition I"; cmd_partition "$@" ;;
    heal) check; [ $# -eq 1 ] || die "usage: netns.sh heal I"; cmd_heal "$@" ;;
    status) check; cmd_status ;;
    *) die "usage: netns.sh up N | down | exec I CMD... | partition I | heal I | status" ;;
  esac
}

main "$@"
