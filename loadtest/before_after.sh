#!/usr/bin/env bash
# Two Massa builds side by side in one run, interleaved (A, B, A, B, ...):
# unary passthrough (h2load, Echo/Say) and durable event-sourced commands
# (massa-load, AddItem, one event each, RocksDB, --durability sync), both
# with one worker pinned to CPU 1 and the load and function on CPU 0.
# Prints req/s and requests per proxy CPU-second, medians with min–max.
# Loopback only; every run is bounded by its request count.
#
# usage: loadtest/before_after.sh OLD_MASSA NEW_MASSA [runs=3] [requests=200000]
# The function and load tools come from target/release (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
old=$1; new=$2; runs=${3:-3}; n=${4:-200000}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 loadtest/grpc_body.py "$work"

fn_port=18280; proxy_port=19280; admin_port=19290
pin_cpus
$pin_load "$bin/massa-example-fn" --port $fn_port 2>"$work/fn.log" &
sleep 0.3


start() { # binary, extra flags...
  local b=$1; shift
  rm -rf "$work/data"
  $pin_proxy "$b" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
    --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --workers 1 --data-dir "$work/data" "$@" 2>"$work/massa.log" &
  pid=$!
  wait_ready $admin_port
}

stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; }

passthrough() { # binary -> "req/s per-cpu-s"
  start "$1"
  local before out after
  before=$(cpu_ns $pid)
  out=$($pin_load h2load -n "$n" -c 16 -m 32 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/say.bin" "http://127.0.0.1:$proxy_port/example.echo.Echo/Say" 2>&1)
  after=$(cpu_ns $pid)
  stop
  grep -q " 0 failed, 0 errored" <<<"$out" || { echo "passthrough run had errors: $out" >&2; exit 1; }
  echo "$(awk '/^finished in/ {printf "%.0f", $4}' <<<"$out") $(awk -v n="$n" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}')"
}

commands() { # binary -> "cmd/s per-cpu-s"
  start "$1" --durability sync
  local m=$((n / 2)) before after
  before=$(cpu_ns $pid)
  $pin_load "$bin/massa-load" 127.0.0.1:$proxy_port --call com.example.shoppingcart.ShoppingCart/AddItem \
    --proto example/shoppingcart/shoppingcart.proto --import-path proto \
    -d '{"user_id":"cart-{{i}}","product_id":"apple","name":"Apple","quantity":1}' \
    --keys 1000 -n "$m" -c 4 --concurrency 256 --format json >"$work/out.json"
  after=$(cpu_ns $pid)
  stop
  python3 - "$work/out.json" "$m" "$((after - before))" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["statusCodeDistribution"].get("OK", 0) == d["count"], d["statusCodeDistribution"]
print(round(d["rps"]), round(int(sys.argv[2]) / (int(sys.argv[3]) / 1e9)))
EOF
}

declare -A col
for run in $(seq "$runs"); do
  for side in old new; do
    b=$old; [ $side = new ] && b=$new
    read -r r c <<<"$(passthrough "$b")"; col[$side-pt-rps]+="$r "; col[$side-pt-cpu]+="$c "
    read -r r c <<<"$(commands "$b")"; col[$side-es-rps]+="$r "; col[$side-es-cpu]+="$c "
  done
done
echo "| workload | build | per second | per proxy CPU-second |"
echo "|---|---|---|---|"
for w in pt es; do
  label="unary passthrough (Echo/Say)"; [ $w = es ] && label="event-sourced AddItem (sync)"
  for side in old new; do
    echo "| $label | $side | $(stat ${col[$side-$w-rps]}) | $(stat ${col[$side-$w-cpu]}) |"
  done
done
