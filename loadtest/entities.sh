#!/usr/bin/env bash
# Event-sourced command throughput through Massa: AddItem (one event per
# command) spread over N carts, by durability, worker count and store, in
# one run. Loopback only; every load run is bounded by its count (-n).
#
# usage: loadtest/entities.sh [runs=3] [requests=100000] [carts=1000]
# Prints a markdown table: per config, req/s, p50, p99 (median of runs,
# min–max) and commands per proxy CPU-second.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}
n=${2:-100000}
carts=${3:-1000}
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

fn_port=18180; proxy_port=19180; admin_port=19190
"$bin/massa-example-fn" --port $fn_port 2>"$work/fn.log" &
sleep 0.3


# One configuration: label, then massa flags. Each run uses a fresh data dir.
measure() {
  local label=$1; shift
  local rps=() p50=() p99=() per_cpu=()
  for run in $(seq "$runs"); do
    rm -rf "$work/data"
    "$bin/massa" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
      --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --data-dir "$work/data" "$@" 2>"$work/massa.log" &
    local pid=$!
    wait_ready $admin_port
    local before; before=$(cpu_ns $pid)
    "$bin/massa-load" 127.0.0.1:$proxy_port --call com.example.shoppingcart.ShoppingCart/AddItem \
      --proto example/shoppingcart/shoppingcart.proto --import-path proto \
      -d '{"user_id":"cart-{{i}}","product_id":"apple","name":"Apple","quantity":1}' \
      --keys "$carts" -n "$n" -c 4 --concurrency 256 --format json >"$work/out.json"
    local after; after=$(cpu_ns $pid)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    read -r r a b <<<"$(python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["statusCodeDistribution"].get("OK",0)==d["count"], d["statusCodeDistribution"]
lat={x["percentage"]:x["latency"] for x in d["latencyDistribution"]}
print(round(d["rps"]), round(lat[50]/1e3), round(lat[99]/1e3))' "$work/out.json")"
    rps+=("$r"); p50+=("$a"); p99+=("$b")
    per_cpu+=("$(awk -v n="$n" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}')")
  done
  printf '| %s | %s | %s µs | %s µs | %s |\n' "$label" "$(stat "${rps[@]}")" "$(stat "${p50[@]}")" "$(stat "${p99[@]}")" "$(stat "${per_cpu[@]}")"
}

echo "| config | commands/s | p50 | p99 | commands per proxy CPU-s |"
echo "|---|---|---|---|---|"
measure "rocksdb, sync, 1 worker" --workers 1 --durability sync
measure "rocksdb, async, 1 worker" --workers 1 --durability async
measure "rocksdb, sync, 2 workers" --workers 2 --durability sync
measure "rocksdb, async, 2 workers" --workers 2 --durability async
measure "memory, 1 worker (ceiling)" --workers 1 --store memory
measure "memory, 2 workers (ceiling)" --workers 2 --store memory
