#!/usr/bin/env bash
# make test: the whole suite with real parts. Pure and concurrent packages
# run under the race detector; the ones that drive runc, CNI and network
# namespaces run once without it (the race build is slow on 2 cores and
# those packages' concurrency is covered by the race runs of their callers).
set -euo pipefail
cd "$(dirname "$0")/.."
race_pkgs=(./api/... ./spec/... ./state/... ./scheduler/... ./controller/... ./health/... ./logs/... ./mcp/... ./cli/... ./errdefs/... ./pki/... ./membership/... ./rpc/... ./policy/... ./intent/...)
mapfile -t all < <(go list ./...)
mapfile -t race_list < <(go list "${race_pkgs[@]}")
rest=()
for p in "${all[@]}"; do
  skip=0
  for r in "${race_list[@]}"; do [ "$p" = "$r" ] && skip=1 && break; done
  [ $skip = 0 ] && rest+=("$p")
done
echo "== race-tested packages"
go test -race -count=1 -timeout 10m "${race_list[@]}"
echo "== packages with real runc, CNI, registries and namespaces"
go test -count=1 -timeout 15m -p 1 "${rest[@]}"
echo "== MCP conformance suite against a real gantry dev (scripts/conformance.sh)"
bash scripts/conformance.sh
