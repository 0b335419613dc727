#!/usr/bin/env bash
# Requests per proxy CPU-second for each protocol the public port speaks,
# side by side in one run, all from h2load (nghttp2): gRPC, gRPC-Web
# (binary, over HTTP/2 and HTTP/1.1) and HTTP/JSON (over HTTP/2 and
# HTTP/1.1) for the same two calls: the Echo action's Say, and the
# event-sourced cart's GetCart (a read of one active entity).
#
# Pinning (2+ CPUs): the function and h2load share CPU 0, Massa runs one
# worker on CPU 1. Every run is bounded by its request count.
#
# usage: loadtest/fronts.sh [runs=3] [requests=100000]
# Writes loadtest/results/fronts.csv and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; n=${2:-100000}
for tool in h2load python3 curl; do
  command -v $tool >/dev/null || { echo "$tool missing (apt-get install nghttp2-client python3 curl)" >&2; exit 1; }
done
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
results=loadtest/results
source loadtest/lib.sh
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 loadtest/grpc_body.py "$work"
# GetShoppingCart{user_id: "bench"}, framed; and the JSON bodies.
printf '\x00\x00\x00\x00\x07\x0a\x05bench' >"$work/getcart.bin"
printf '{"text":"hello"}' >"$work/say.json"

pin_cpus
fn_port=18380; port=19380; admin=19390
start_fn_and_massa $fn_port $port $admin
# One item in the cart, so GetCart has something to render.
curl -sf -X POST -H 'content-type: application/json' \
  -d '{"productId":"p1","name":"Pear","quantity":2}' "http://127.0.0.1:$port/cart/bench/items/add" >/dev/null

url=http://127.0.0.1:$port
grpc=(-H 'content-type: application/grpc' -H 'te: trailers')
web=(-H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1')
json=(-H 'content-type: application/json')
# name | h2load arguments (after the common ones)
cases=(
  "grpc Say|${grpc[*]@Q} -d $work/say.bin $url/example.echo.Echo/Say"
  "grpc-web Say (h2)|${web[*]@Q} -d $work/say.bin $url/example.echo.Echo/Say"
  "grpc-web Say (HTTP/1.1)|--h1 ${web[*]@Q} -d $work/say.bin $url/example.echo.Echo/Say"
  "http-json Say (h2)|${json[*]@Q} -d $work/say.json $url/example.echo.Echo/Say"
  "http-json Say (HTTP/1.1)|--h1 ${json[*]@Q} -d $work/say.json $url/example.echo.Echo/Say"
  "grpc GetCart|${grpc[*]@Q} -d $work/getcart.bin $url/com.example.shoppingcart.ShoppingCart/GetCart"
  "http-json GetCart (h2)|$url/carts/bench"
  "http-json GetCart (HTTP/1.1)|--h1 $url/carts/bench"
)

echo "case,run,succeeded,per_cpu" >"$work/fronts.csv"
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  for run in $(seq "$runs"); do
    before=$(cpu_ns $pid)
    ok=$(eval "$pin_load h2load -n $n -c 16 -m 32 $args" | awk '/^status codes:/ {print $3}')
    after=$(cpu_ns $pid)
    per_cpu=$(awk -v n="$ok" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}')
    [ "$ok" = "$n" ] || echo "warning: $name run $run: $ok of $n got 2xx" >&2
    echo "$name,$run,$ok,$per_cpu" >>"$work/fronts.csv"
  done
done
mkdir -p "$results"
cp "$work/fronts.csv" "$results/fronts.csv"
echo "| case | req per proxy CPU-s, median (min–max) of $runs |"
echo "|---|---|"
for c in "${cases[@]}"; do
  name=${c%%|*}
  echo "| $name | $(stat $(awk -F, -v k="$name" '$1 == k {print $4}' "$work/fronts.csv")) |"
done
