#!/usr/bin/env bash
# Installs the npm packages of the gRPC-Web tests (package.json, pinned by
# package-lock.json) into a cache directory and prints it; tests/run exports
# it as MASSA_GRPC_WEB and the tests put its node_modules on NODE_PATH. No
# install scripts: playwright-core fetches no browser (Debian's chromium is
# used), and esbuild's binary comes in its platform package. Idempotent.
#
# usage: tests/web/setup.sh [dir=/var/tmp/massa-grpc-web]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-/var/tmp/massa-grpc-web}
mkdir -p "$dir"
cd "$dir"
installed() {
  cmp -s "$here/package-lock.json" package-lock.json &&
    node -e 'for (const p of ["esbuild", "google-protobuf", "grpc-web", "playwright-core", "xhr2"]) require(p)' 2>/dev/null
}
if ! installed; then
  cp "$here/package.json" "$here/package-lock.json" .
  npm ci --ignore-scripts --no-audit --no-fund >/dev/null
  installed || { echo "tests/web/setup.sh: the npm packages did not install in $dir" >&2; exit 1; }
fi
echo "$dir"
