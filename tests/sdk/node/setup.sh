#!/usr/bin/env bash
# Installs the npm Cloudstate SDK (cloudstate@0.0.3) with the measured
# workarounds of spec §8.2: no install scripts (they download protoc from
# GitHub), grpc@1.24's native addon built from source (~5 min, cached), and
# proto2-era google/protobuf/*.proto taken from the grpcio-tools 1.48.2
# wheel (protobufjs 6 cannot parse the current descriptor.proto).
# user-function.desc is compiled from Massa's protos. Idempotent.
#
# usage: tests/sdk/node/setup.sh <python venv with grpcio-tools> [dir=/var/tmp/massa-sdk-node]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../../proto" && pwd)
py=${1:?python venv with grpcio-tools}/bin/python
dir=${2:-/var/tmp/massa-sdk-node}
mkdir -p "$dir"
cd "$dir"
if ! node -e 'require("grpc"); require("cloudstate")' 2>/dev/null; then
  [ -f package.json ] || npm init -y >/dev/null
  npm install --ignore-scripts --no-audit --no-fund cloudstate@0.0.3 @grpc/proto-loader@0.1.0 google-protobuf@3 grpc@1.24.11 >/dev/null
  npm rebuild grpc >/dev/null 2>&1
  node -e 'require("grpc"); require("cloudstate")' || { echo "building grpc's native addon failed" >&2; exit 1; }
fi
include=node_modules/cloudstate/protoc/include/google/protobuf
if [ ! -f "$include/descriptor.proto" ]; then
  tmp=$(mktemp -d)
  "$py" -m pip download -q --no-deps --only-binary :all: --python-version 3.10 \
    --platform manylinux_2_17_x86_64 grpcio-tools==1.48.2 -d "$tmp"
  mkdir -p "$include"
  "$py" - "$tmp" "$include" <<'PY'
import glob, os, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "*.whl"))[0])
prefix = "grpc_tools/_proto/google/protobuf/"
for name in wheel.namelist():
    if name.startswith(prefix) and name.endswith(".proto") and "/" not in name[len(prefix):]:
        open(os.path.join(sys.argv[2], name[len(prefix):]), "wb").write(wheel.read(name))
PY
  rm -rf "$tmp"
fi
rm -rf proto && cp -r "$proto" proto
"$py" -m grpc_tools.protoc -I proto --include_imports --descriptor_set_out=user-function.desc \
  example/shoppingcart/shoppingcart.proto example/shoppingcart/persistence/domain.proto
cp "$here/shoppingcart.js" shoppingcart.js
echo "$dir"
