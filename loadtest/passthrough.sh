#!/usr/bin/env bash
# Unary action passthrough: h2load against the example user function
# directly (the floor), then through Massa in front of the same function,
# in one run. Reports req/s, req per proxy CPU-second, latency, and the
# proxy's idle RSS after discovery. Loopback only; every run is bounded by
# its request count (-n) and h2load's own timeouts.
#
# usage: loadtest/passthrough.sh [runs=3] [requests=200000]
# env: WORKERS (default 1), PIN (1: pin as below; 0: nothing pinned), MASSA_ARGS (extra proxy flags, e.g.
#      "--io-driver epoll"), CLIENTS/STREAMS (h2load -c/-m).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}
n=${2:-200000}
clients=${CLIENTS:-16}
streams=${STREAMS:-32}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }

cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 loadtest/grpc_body.py "$work"

fn_port=18080; proxy_port=19000; admin_port=19090
# Pinning (when 2+ CPUs): client and function share CPU 0, the proxy gets
# CPU 1 to itself, so its CPU-seconds are its own.
# PIN=0 runs everything unpinned (and Massa with --pin-workers false).
pin_client="taskset -c 0"; pin_proxy="taskset -c 1"
if [ "$(nproc)" -lt 2 ] || [ "${PIN:-1}" = 0 ]; then
  pin_client=""; pin_proxy=""; MASSA_ARGS="${MASSA_ARGS:-} --pin-workers false"
fi
$pin_client "$bin/massa-example-fn" --port $fn_port 2>"$work/fn.log" &
fn_pid=$!
$pin_proxy "$bin/massa" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
  --workers "${WORKERS:-1}" ${MASSA_ARGS:-} 2>"$work/massa.log" &
massa_pid=$!
wait_ready $admin_port
sleep 0.5
idle_rss=$(rss_kib $massa_pid)


h2() { # url body
  $pin_client h2load -n "$n" -c "$clients" -m "$streams" -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$2" "$1" 2>&1
}

report() { # label output cpu_ns_used
  local rps mean p_succ
  rps=$(awk '/^finished in/ {print $4}' <<<"$2")
  mean=$(awk '/^time for request:/ {print $6}' <<<"$2")
  p_succ=$(awk '/^requests:/ {print $8}' <<<"$2")
  local per_cpu="-"
  if [ "$3" != "-" ]; then
    per_cpu=$(awk -v n="$n" -v c="$3" 'BEGIN {printf "%.0f", n / (c / 1e9)}')
  fi
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$per_cpu" "$mean" "$p_succ"
}

echo "| path | req/s | req per proxy CPU-s | mean latency | succeeded |"
echo "|---|---|---|---|---|"
for run in $(seq "$runs"); do
  out=$(h2 "http://127.0.0.1:$fn_port/cloudstate.action.ActionProtocol/handleUnary" "$work/handle_unary.bin")
  report "direct (run $run)" "$out" "-"
  before=$(cpu_ns $massa_pid)
  out=$(h2 "http://127.0.0.1:$proxy_port/example.echo.Echo/Say" "$work/say.bin")
  after=$(cpu_ns $massa_pid)
  report "massa (run $run)" "$out" "$((after - before))"
done
echo
echo "io driver: $(sed 's/\x1b\[[0-9;]*m//g' "$work/massa.log" | grep -o 'driver="[a-z_]*"' | head -1)"
echo "massa idle RSS after discovery: ${idle_rss} KiB"
echo "massa RSS after load: $(rss_kib $massa_pid) KiB"
