#!/usr/bin/env bash
# Per-message cost of the streaming shapes next to unary, in one run: the
# example function's Echo actions through Massa (one worker, memory store,
# pinned to CPU 1; function and load generator on CPU 0).
#   unary   Say:   one request, one reply per call
#   server  Split: one request, K replies per call (a text of K words)
#   bidi    Chat:  K requests, K replies per call
# Each message a proxy relays on a stream costs it a Cloudstate wrapping or
# unwrapping and an HTTP/2 DATA frame, as a unary call's does; the figure
# is proxy CPU per reply message (every thread of massa), so "as efficient
# per message as unary" reads as a ratio <= 1 against unary's per call.
# Loopback only; every run is bounded by its call count.
#
# usage: [MASSA_BIN_DIR=dir] loadtest/streaming.sh [runs=3] [messages=200000] [per_call=16]
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}; messages=${2:-200000}; k=${3:-16}
release_bins
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus
fn_port=18480; port=19480; admin=19490

start_fn_and_massa $fn_port $port $admin

words=$(for i in $(seq "$k"); do printf 'w%s ' "$i"; done)
proto=(--proto example/echo/echo.proto --import-path proto)
shape_run() { # shape -> "calls/s replies/s µs-CPU-per-reply"
  local calls args
  case $1 in
    unary) calls=$messages; args=(--call example.echo.Echo/Say -d '{"text":"hello massa"}') ;;
    server) calls=$((messages / k)); args=(--call example.echo.Echo/Split -d "{\"text\":\"$words\"}") ;;
    bidi) calls=$((messages / k)); args=(--call example.echo.Echo/Chat -d '{"text":"hello massa"}' --stream-messages "$k") ;;
  esac
  local before after
  before=$(cpu_ns $pid)
  $pin_load "$bin/massa-load" 127.0.0.1:$port "${proto[@]}" "${args[@]}" -n "$calls" -c 16 --concurrency 256 --format json >"$work/out.json"
  after=$(cpu_ns $pid)
  local per_call=1
  [ "$1" = unary ] || per_call=$k
  python3 - "$work/out.json" "$calls" "$per_call" "$((after - before))" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
calls, per_call, cpu = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok = d["statusCodeDistribution"].get("OK", 0)
assert ok == d["count"] == calls, d["statusCodeDistribution"]
replies = calls * per_call
print(round(d["rps"]), round(d["rps"] * per_call), round(cpu / replies / 1e3, 2))
EOF
}

declare -A col
for _ in $(seq "$runs"); do
  for shape in unary server bidi; do
    read -r c r u <<<"$(shape_run $shape)"
    col[$shape-calls]+="$c "; col[$shape-msgs]+="$r "; col[$shape-cpu]+="$u "
  done
done
echo "| shape (messages per call) | calls/s | reply messages/s | proxy CPU per reply message |"
echo "|---|---|---|---|"
echo "| unary Say (1) | $(stat ${col[unary-calls]}) | $(stat ${col[unary-msgs]}) | $(stat ${col[unary-cpu]}) µs |"
echo "| server-streaming Split ($k) | $(stat ${col[server-calls]}) | $(stat ${col[server-msgs]}) | $(stat ${col[server-cpu]}) µs |"
echo "| bidi Chat ($k in, $k out) | $(stat ${col[bidi-calls]}) | $(stat ${col[bidi-msgs]}) | $(stat ${col[bidi-cpu]}) µs |"
