#!/usr/bin/env bash
# CRDT commands next to event-sourced commands, in one run, against the TCK
# model user function: GCounter increments (one delta each, persisted with
# the group commit like an event) and event-sourced commands emitting one
# event, and ORSet adds of a new element each (`{{n}}`, never wrapped), each
# over 1 000 entities; then ORSet adds into 10 sets already holding 2 000
# elements each (filled before the measured part by commands of 1 000 adds;
# a fifth of the requests, as the model answers every add with the whole
# set). One worker pinned to CPU 1,
# the load and the function on CPU 0. Reports commands/s and commands per
# proxy CPU-second, medians of `runs` with min–max. Loopback only; every run
# is bounded by its request count. Each proxy binary given (default: the
# one built here) is measured in turn, so builds compare in one run.
#
# usage: loadtest/crdt.sh [runs=3] [requests=50000] [MASSA...]
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}
n=${2:-50000}
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
proxies=("${@:3}")
[ ${#proxies[@]} -gt 0 ] || proxies=("$bin/massa")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

fn_port=18680; proxy_port=19680; admin_port=19690
pin_cpus
$pin_load "$bin/massa-tck-model" --port $fn_port 2>"$work/fn.log" &
sleep 0.3


load() { # service/method, proto, JSON body, keys, requests
  $pin_load "$bin/massa-load" 127.0.0.1:$proxy_port --call "$1" --proto "$2" --import-path proto --import-path proto/tck \
    -d "$3" --keys "$4" -n "$5" -c 4 --concurrency 256 --format json >"$work/out.json"
}

measure() { # proxy, label, service/method, proto, JSON body, [keys=1000, fill body, fill requests, requests]
  local rps=() per_cpu=() keys=${6:-1000} n=${9:-$n}
  for _ in $(seq "$runs"); do
    rm -rf "$work/data"
    $pin_proxy "$1" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
      --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --workers 1 --data-dir "$work/data" 2>"$work/massa.log" &
    local pid=$!
    wait_ready $admin_port
    [ -z "${7:-}" ] || load "$3" "$4" "$7" "$keys" "$8"
    local before after
    before=$(cpu_ns $pid)
    load "$3" "$4" "$5" "$keys" "$n"
    after=$(cpu_ns $pid)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    rps+=("$(python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["statusCodeDistribution"].get("OK",0)==d["count"], d["statusCodeDistribution"]
print(round(d["rps"]))' "$work/out.json")")
    per_cpu+=("$(awk -v n="$n" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}')")
  done
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$(stat "${rps[@]}")" "$(stat "${per_cpu[@]}")"
}

crdt=(cloudstate.tck.model.crdt.CrdtTckModel/Process cloudstate/tck/model/crdt.proto)
fill=$(python3 -c 'import json; print(json.dumps({"id": "ORSet-{{i}}", "actions": [{"update": {"orset": {"add": f"f{{{{n}}}}-{j}"}}} for j in range(1000)]}))')
echo "| proxy | command (RocksDB, sync, 1 worker) | commands/s | commands per proxy CPU-s |"
echo "|---|---|---|---|"
for proxy in "${proxies[@]}"; do
  measure "$proxy" "CRDT GCounter increment" "${crdt[@]}" '{"id":"GCounter-{{i}}","actions":[{"update":{"gcounter":{"increment":1}}}]}'
  measure "$proxy" "CRDT ORSet add (new element)" "${crdt[@]}" '{"id":"ORSet-{{i}}","actions":[{"update":{"orset":{"add":"e{{n}}"}}}]}'
  measure "$proxy" "CRDT ORSet add into a 2 000-element set" "${crdt[@]}" '{"id":"ORSet-{{i}}","actions":[{"update":{"orset":{"add":"e{{n}}"}}}]}' \
    10 "$fill" 20 $((n / 5))
  measure "$proxy" "event-sourced, 1 event" cloudstate.tck.model.EventSourcedTckModel/Process cloudstate/tck/model/eventsourced.proto \
    '{"id":"es-{{i}}","actions":[{"emit":{"value":"v"}}]}'
done
