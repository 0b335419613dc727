#!/usr/bin/env bash
# Side by side, in one run, on loopback: the same unary load against
#   - the example function directly (the floor, no proxy),
#   - Massa (Echo/Say, wrapped into ActionProtocol/handleUnary),
#   - HAProxy, nginx grpc_pass and Caddy (reverse_proxy h2c://, a Go
#     proxy) as plain h2 passthroughs of handleUnary to the same function
#     (so the function does identical work).
# Reports req/s, p50/p99 and added latency, requests per proxy CPU-second,
# idle RSS (and its anonymous part) and RSS after load; the same CPU figure
# with h2load (nghttp2) as an independent client; then an open-loop
# latency-vs-throughput sweep, plotted to
# loadtest/results/latency_vs_throughput.png.
#
# Pinning (2+ CPUs): the function and the load generator share CPU 0, each
# proxy runs one thread/worker on CPU 1.
# Needs: haproxy, nginx, caddy, h2load (apt-get install haproxy nginx-light
# caddy nghttp2-client), python3; the
# plot needs matplotlib (installed into a venv under /var/tmp if missing).
# Every load run is bounded by its count (-n) or duration (-z).
#
# usage: [FN_BIN=path] loadtest/compare.sh [runs=3] [requests=200000]
# FN_BIN: another build of massa-example-fn to stand behind every proxy
# (e.g. an older one), so the function is not ours-by-construction.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}
n=${2:-200000}
rates=${RATES:-"10000 30000 50000 70000 90000 110000"}
for tool in haproxy nginx caddy h2load python3 curl; do
  command -v $tool >/dev/null || { echo "$tool missing (apt-get install haproxy nginx-light caddy nghttp2-client python3 curl)" >&2; exit 1; }
done
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
results=loadtest/results
mkdir -p "$results"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 loadtest/grpc_body.py "$work"

pin_cpus
fn_port=18280; port=19280; admin=19290

$pin_load "${FN_BIN:-$bin/massa-example-fn}" --port $fn_port >/dev/null 2>"$work/fn.log" &
sleep 0.3

haproxy_cfg "$work/haproxy.cfg" $port $fn_port

cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  http2_max_requests 100000000;
  keepalive_requests 100000000;
  upstream fn { server 127.0.0.1:$fn_port; keepalive 1024; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$port http2;
    location / { grpc_pass grpc://fn; }
  }
}
EOF

cat >"$work/Caddyfile" <<EOF
{
  admin off
  auto_https off
  servers {
    protocols h1 h2c
  }
}
http://127.0.0.1:$port {
  reverse_proxy h2c://127.0.0.1:$fn_port
}
EOF

start_proxy() { # name -> pid on stdout (the proxy itself must not hold stdout)
  case $1 in
    massa) $pin_proxy "$bin/massa" --http-port $port --admin-port $admin --user-function-port $fn_port \
             --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --workers 1 --store memory >/dev/null 2>"$work/massa.log" &
           echo $!
           for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done ;;
    haproxy) $pin_proxy haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>"$work/haproxy.log" & echo $!; sleep 0.5 ;;
    nginx) $pin_proxy nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' >/dev/null 2>"$work/nginx.log" & echo $!; sleep 0.5 ;;
    caddy) GOMAXPROCS=1 $pin_proxy caddy run --adapter caddyfile --config "$work/Caddyfile" >/dev/null 2>"$work/caddy.log" & echo $!; sleep 1 ;;
  esac
}

# The same request in each case: the function's handleUnary, except Massa,
# which is called as the user's service and does the wrapping itself.
load() { # name port extra-args...
  local name=$1 p=$2; shift 2
  local call=(--call cloudstate.action.ActionProtocol/handleUnary --binary-file "$work/handle_unary.pb")
  [ "$name" = massa ] && call=(--call example.echo.Echo/Say --binary-file "$work/say.pb")
  $pin_load "$bin/massa-load" "127.0.0.1:$p" "${call[@]}" -c 16 --concurrency 512 --format json "$@"
}

# The same calls from h2load (nghttp2): 16 connections x 32 streams.
h2load_run() { # name port requests
  local path=/cloudstate.action.ActionProtocol/handleUnary body=$work/handle_unary.bin
  [ "$1" = massa ] && { path=/example.echo.Echo/Say; body=$work/say.bin; }
  $pin_load h2load -n "$3" -c 16 -m 32 -d "$body" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$2$path" | awk '/^requests:/ {print $8}'
}
summary() { python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
ok=d["statusCodeDistribution"].get("OK",0)
lat={x["percentage"]:x["latency"] for x in d["latencyDistribution"]}
print(round(d["rps"]), lat[50]/1e3, lat[99]/1e3, ok, d["count"])' "$1"; }

echo "name,run,rps,p50_us,p99_us,per_cpu,rss_kib,idle_rss_kib,idle_anon_kib" >"$results/compare.csv"
for name in direct massa haproxy nginx caddy; do
  for run in $(seq "$runs"); do
    pid=""; target=$fn_port; idle="-"; idle_anon="-"
    if [ $name != direct ]; then pid=$(start_proxy $name); target=$port; idle=$(rss_kib "$pid"); idle_anon=$(anon_kib "$pid"); fi
    before=0; [ -n "$pid" ] && before=$(cpu_ns "$pid")
    load $name $target -n "$n" >"$work/out.json"
    read -r rps p50 p99 ok count <<<"$(summary "$work/out.json")"
    per_cpu="-"; rss="-"
    if [ -n "$pid" ]; then
      after=$(cpu_ns "$pid")
      per_cpu=$(awk -v n="$n" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}')
      rss=$(rss_kib "$pid")
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    fi
    [ "$ok" = "$count" ] || echo "warning: $name run $run: $ok of $count OK" >&2
    echo "$name,$run,$rps,$p50,$p99,$per_cpu,$rss,$idle,$idle_anon" >>"$results/compare.csv"
  done
done

echo "name,run,succeeded,per_cpu" >"$results/compare_h2load.csv"
for name in massa haproxy nginx caddy; do
  for run in $(seq "$runs"); do
    pid=$(start_proxy $name)
    before=$(cpu_ns "$pid")
    ok=$(h2load_run $name $port "$n")
    after=$(cpu_ns "$pid")
    per_cpu=$(awk -v n="$ok" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}')
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    [ "$ok" = "$n" ] || echo "warning: h2load $name run $run: $ok of $n succeeded" >&2
    echo "$name,$run,$ok,$per_cpu" >>"$results/compare_h2load.csv"
  done
done

echo "name,rate,achieved,p50_us,p99_us" >"$results/sweep.csv"
for name in direct massa haproxy nginx caddy; do
  for rate in $rates; do
    pid=""; target=$fn_port
    if [ $name != direct ]; then pid=$(start_proxy $name); target=$port; fi
    load $name $target --rps "$rate" -z 3s >"$work/out.json" || true
    read -r rps p50 p99 ok count <<<"$(summary "$work/out.json")"
    echo "$name,$rate,$rps,$p50,$p99" >>"$results/sweep.csv"
    if [ -n "$pid" ]; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  done
done

python3 loadtest/report.py "$results"
