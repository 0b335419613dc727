#!/usr/bin/env bash
# Event-log eventing throughput: massa-load appends to the example
# function's `ledger-a` (event-sourced, durable) while its two consumers of
# that log (groups Auditor and mirror) receive every event. Reports the
# append rate, the consumers' delivery rate, the peak lag and how long after
# the last append every event was delivered. Loopback only; bounded by the
# request count and a drain deadline. Each proxy binary given (default: the
# one built here) gets a fresh data directory and function, one after the
# other, so two builds compare in one run. With RATE set, appends arrive at
# that steady rate (open loop) instead of as fast as the proxy takes them.
#
# usage: [RATE=appends/s] loadtest/eventing.sh [appends=100000] [ledgers=1000] [MASSA...]
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
n=${1:-100000}
ledgers=${2:-1000}
rate=(); [ -z "${RATE:-}" ] || rate=(--rps "$RATE")
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
proxies=("${@:3}")
[ ${#proxies[@]} -gt 0 ] || proxies=("$bin/massa")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

fn_port=18580; proxy_port=19580; admin_port=19590

# Sum of a metric over its label sets (delivered), or the max (lag).
metric() { curl -sf "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" -v op="$2" '
  index($1, m) == 1 { v = $NF + 0; if (op == "max") { if (v > r) r = v } else r += v }
  END { printf "%d\n", r }'; }

measure() { # massa binary
  rm -rf "$work/data"
  "$bin/massa-example-fn" --port $fn_port --eventing 2>"$work/fn.log" &
  local fn=$!
  sleep 0.3
  "$1" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
    --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --data-dir "$work/data" 2>"$work/massa.log" &
  local proxy=$!
  wait_ready $admin_port
  python3 - "$work/peak" "$admin_port" <<'EOF' &
import re, sys, time, urllib.request
peak, start = 0, time.time()
while time.time() - start < 600:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/metrics", timeout=2).read().decode()
    except OSError:
        break
    lags = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("massa_eventing_lag_events")]
    peak = max([peak] + lags)
    open(sys.argv[1], "w").write(str(int(peak)))
    time.sleep(0.1)
EOF
  local monitor=$!
  start=$(date +%s.%N)
  "$bin/massa-load" 127.0.0.1:$proxy_port --call example.eventing.LedgerA/Append \
    --proto example/eventing/ledger.proto --import-path proto \
    -d '{"ledger_id":"l-{{i}}","text":"entry {{i}}"}' --keys "$ledgers" -n "$n" -c 4 --concurrency 256 "${rate[@]}" --format json >"$work/out.json"
  appended=$(date +%s.%N)
  deadline=$(( $(date +%s) + 300 ))
  while [ "$(metric massa_eventing_delivered_total sum)" -lt $((2 * n)) ]; do
    [ "$(date +%s)" -lt $deadline ] || { echo "consumers did not catch up within 300 s" >&2; exit 1; }
    sleep 0.1
  done
  done_at=$(date +%s.%N)
  python3 - "$work/out.json" "$n" "$start" "$appended" "$done_at" "$(cat "$work/peak")" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["statusCodeDistribution"].get("OK", 0) == d["count"], d["statusCodeDistribution"]
n, start, appended, done, peak = int(sys.argv[2]), *map(float, sys.argv[3:6]), sys.argv[6]
print(f"| {sys.argv[7]} | {n} | {round(d['rps'])}/s | {round(n / (done - start))}/s | {peak} events | {done - appended:.1f} s |")
EOF
  kill $monitor 2>/dev/null || true
  kill -TERM $proxy; wait $proxy 2>/dev/null || true
  kill $fn; wait $fn 2>/dev/null || true
}

echo "| proxy | appends | append rate | per consumer: delivered/s | peak lag | all delivered after the last append |"
echo "|---|---|---|---|---|---|"
for proxy in "${proxies[@]}"; do measure "$proxy"; done
