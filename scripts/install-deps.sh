#!/usr/bin/env bash
# Installs the Debian packages Gantry needs at run time and for its tests
# (with --test, also npm when there is none).
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail
pkgs=(runc crun containernetworking-plugins iptables docker-registry busybox-static iproute2 util-linux procps)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# --test: make test also needs npm, once, to fetch the pinned Node 22, MCP
# conformance suite and TypeScript SDK (scripts/node-tools.sh). Any npm
# will do, so one already on PATH (not from Debian) is kept.
if [ "${1:-}" = --test ] && ! command -v npm >/dev/null; then
  missing+=(npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the docker-registry package from starting its own
# service on :5000 (our scripts start registries where they need them).
had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ $had_policy -eq 0 ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
trap '[ $had_policy -eq 0 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
