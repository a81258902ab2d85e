#!/usr/bin/env bash
# make bench: measure gantry dev against raw runc on this machine (needs
# root), print the figures and append them, dated, to docs/benchmarks.md.
# The measurements are in hack/bench; it cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DOC=docs/benchmarks.md

if [ "$(id -u)" != 0 ]; then
  echo "make bench needs root (runc, mounts, network namespaces): run it with sudo" >&2
  exit 1
fi
[ -x bin/gantry ] || { echo "bin/gantry is missing: run make build" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench" ./hack/bench
# The bench bounds its own run (4 min) and cleanup (2 min); this is a backstop.
timeout --foreground --signal=INT --kill-after=60 420 "$tmp/bench" -gantry bin/gantry "$@" | tee "$tmp/figures.md"
# MCP tool-call latency (a read, a dry-run plan) on a store of 1,000
# services, over HTTP with auth and audit on; no containers (hack/bench/mcp.go).
{ echo; timeout --foreground --signal=INT 300 "$tmp/bench" -mcp; } | tee -a "$tmp/figures.md"
# A cluster of 3 servers and 2 workers, each in its own network namespace:
# leader failover, worker death, writes/s through MCP against one gantry
# dev, memory (hack/bench/cluster.go; about 45 s, it cleans up after itself).
{ echo; timeout --foreground --signal=INT --kill-after=60 240 "$tmp/bench" -cluster -gantry bin/gantry; } | tee -a "$tmp/figures.md"

if [ ! -s "$DOC" ]; then
  cat > "$DOC" <<'EOF'
# Benchmarks

`make bench` (as root) appends one section per run. Every figure of a section
comes from the same run, on the same machine, with the same image (a one-layer
busybox image served by an in-process registry and pulled before timing), so
the ratios compare like with like. Absolute times depend on the machine and on
what else it runs: read the ratios, and the load average printed with each run.

The bench starts its own `gantry dev` (own `--data-dir` and `--run-dir`,
bridge `gbench0`, subnet 10.92.0.0/24, `--log-level debug`) and talks to it
over MCP like any client.

**Submit-to-running, one instance.** Time from sending the `deploy` tool call
(one replica, `command: [/bin/sleep, "100000"]`, no health check, no ports) to
the first `get_service` reply, polled every 5 ms, in which the instance's state
is `running`. One warm-up run is discarded; then at least 10 runs, each with a
new service name; between runs the service is removed and the bench waits
until its container, directory and network namespace are gone. Median and p90
(nearest rank).

**Baseline: `runc run -d`.** The `config.json` Gantry generated for the
warm-up instance, copied into a fresh bundle: root is an overlay of the same
unpacked image layer (own upper and work dirs), the network namespace is a
fresh unconfigured one instead of Gantry's CNI-attached one, the cgroup is
`/gantry-bench/<id>`. Timed: `runc --root /run/gantry-bench run -d` with stdio
on /dev/null (the container is deleted between runs, untimed). The ratio and
overhead compare medians; the goal is an orchestration overhead below 25% of
raw runc. `runc create` + `runc start` (the two commands Gantry runs) are timed
the same way for reference.

**Where the time goes.** Each single-instance run split into steps, using the
instance's events (`Deployed`, `Scheduled`, `Started`: nanosecond times) and
gantry dev's debug log (`mounted image`, `network attached`, `CNI plugin`:
millisecond times). Some steps are also measured apart with plain runc on the
baseline bundle: the `runc kill` + `runc delete` the worker runs before each
start, and how long gantry-init takes to be ready after `runc start`.

**50 instances.** One service with `replicas: 50`, from `deploy` to the first
`get_service` reply (polled every 20 ms) with `running == 50`, divided by 50
for the per-instance figure and compared with 50 × the `runc run -d` median.
CPU per instance is read from `/proc/<pid>/stat` of gantry dev (its own time,
and the time of the children it reaped: runc, CNI plugins, iptables).

**Memory.** VmRSS (`/proc/<pid>/status`) and PSS (`/proc/<pid>/smaps_rollup`)
of the gantry dev process: idle 3 s after start (no services, before the image
pull), again just before the 50-instance deploy, and with the 50 instances
running after a 5 s settle. Per instance = (with 50 − idle) / 50; the goal is
below 1 MiB of Gantry memory per running instance. PSS shares the binary's
pages with other processes running the same binary, so it varies with what
else runs. gantry-init (the small PID 1 in each container) is charged to the
container's cgroup, not to gantry dev; its mean VmRSS and PSS over the 50
containers are given so the whole cost is visible.
EOF
fi

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — commit $(git describe --always --dirty 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, Linux $(uname -r), $(runc --version | head -1)."
  echo
  cat "$tmp/figures.md"
} >> "$DOC"
echo "appended to $DOC"
