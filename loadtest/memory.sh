#!/usr/bin/env bash
# Idle memory and memory after load, in one run, on loopback: each Massa
# build given (one worker, pinned to CPU 1) with the memory and the RocksDB
# store, and HAProxy (one thread, h2 passthrough to the same function) when
# installed. Idle is read right after /health/ready; "after load" after
# `requests` unary calls from massa-load (16 connections, 512 in flight, as
# compare.sh), Echo/Say for Massa and the function's handleUnary for HAProxy.
# Prints medians (min–max) of VmRSS, RssAnon and RssFile, then where each
# build's idle anonymous memory lies (its largest mappings).
# Every load run is bounded by its request count.
#
# usage: loadtest/memory.sh [runs=3] [requests=100000] [MASSA...]
# MASSA: builds to measure (default: the one built here).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}; n=${2:-100000}; shift $(($# < 2 ? $# : 2))
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
builds=("$@"); [ ${#builds[@]} -gt 0 ] || builds=("$bin/massa")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 loadtest/grpc_body.py "$work"

pin_cpus
fn_port=18280; port=19280; admin=19290
$pin_load "$bin/massa-example-fn" --port $fn_port >/dev/null 2>"$work/fn.log" &
sleep 0.3

haproxy_cfg "$work/haproxy.cfg" $port $fn_port

start() { # massa-binary store | haproxy -> sets pid
  rm -rf "$work/data"
  if [ "$1" = haproxy ]; then
    $pin_proxy haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>"$work/haproxy.log" &
    pid=$!; sleep 0.5
  else
    $pin_proxy "$1" --http-port $port --admin-port $admin --user-function-port $fn_port --http-interface 127.0.0.1 \
      --admin-interface 127.0.0.1 --workers 1 --store "$2" --data-dir "$work/data" >/dev/null 2>"$work/massa.log" &
    pid=$!; wait_ready $admin
  fi
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
load() { # massa | haproxy
  local call=(--call cloudstate.action.ActionProtocol/handleUnary --binary-file "$work/handle_unary.pb")
  [ "$1" = massa ] && call=(--call example.echo.Echo/Say --binary-file "$work/say.pb")
  $pin_load "$bin/massa-load" "127.0.0.1:$port" "${call[@]}" -c 16 --concurrency 512 -n "$n" >/dev/null
}
# The largest mappings by anonymous memory: size, resident, anonymous (KiB), name.
top_anon() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anonymous " $1 "]" : $6)} /^Size:/ {size = $2} /^Rss:/ {rss = $2}
       /^Anonymous:/ {if ($2 > 0) printf "%10d %8d %8d  %s\n", size, rss, $2, name}' /proc/"$1"/smaps | sort -k3 -n -r | awk 'NR <= 8'
}

echo "| proxy | store | idle RSS (MiB) | idle anonymous | idle file-backed | RSS after $n calls |"
echo "|---|---|---|---|---|---|"
declare -A smaps
for b in "${builds[@]}" haproxy; do
  [ "$b" != haproxy ] || command -v haproxy >/dev/null || continue
  stores="memory rocksdb"; [ "$b" = haproxy ] && stores="-"
  for store in $stores; do
    rss=(); anon=(); file=(); after=()
    for _ in $(seq "$runs"); do
      start "$b" "$store"
      rss+=("$(mib "$(rss_kib $pid)")"); anon+=("$(mib "$(anon_kib $pid)")"); file+=("$(mib "$(file_kib $pid)")")
      [ "$store" = rocksdb ] && smaps[$b]=$(top_anon $pid)
      if [ "$store" != rocksdb ]; then
        load "$([ "$b" = haproxy ] && echo haproxy || echo massa)"
        after+=("$(mib "$(rss_kib $pid)")")
      fi
      stop
    done
    echo "| $b | $store | $(stat "${rss[@]}") | $(stat "${anon[@]}") | $(stat "${file[@]}") | $([ ${#after[@]} -gt 0 ] && stat "${after[@]}" || echo -) |"
  done
done
for b in "${builds[@]}"; do
  echo; echo "$b, idle with --store rocksdb: largest anonymous mappings (KiB: size, resident, anonymous)"
  echo "${smaps[$b]}"
done
