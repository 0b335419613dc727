#!/usr/bin/env bash
# Installs the PyPI Cloudstate SDK (cloudstate==0.1.1) into a venv and
# generates the cart's messages from Massa's protos, as spec §8.1 measured:
# the SDK's pinned grpcio has no wheel for this Python, so it is installed
# without its pins, next to current grpcio/protobuf. Idempotent.
#
# usage: tests/sdk/python/setup.sh [dir=/var/tmp/massa-sdk-python]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../../proto" && pwd)
dir=${1:-/var/tmp/massa-sdk-python}
if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import cloudstate, grpc_tools' 2>/dev/null; then
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --no-deps cloudstate==0.1.1
  "$dir/bin/pip" install -q grpcio grpcio-tools googleapis-common-protos attrs
fi
mkdir -p "$dir/gen"
"$dir/bin/python" -m grpc_tools.protoc -I "$proto" --python_out="$dir/gen" \
  example/shoppingcart/shoppingcart.proto example/shoppingcart/persistence/domain.proto
cp "$here/shopping_cart.py" "$dir/shopping_cart.py"
echo "$dir"
