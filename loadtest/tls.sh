#!/usr/bin/env bash
# TLS against plaintext (h2c) on the public port, one build, in one run,
# interleaved (plaintext, TLS, plaintext, TLS, ...): unary passthrough
# (h2load, Echo/Say, 16 connections x 32 streams, so handshakes are a
# negligible share and the figure is the per-request record cost), one
# worker pinned to CPU 1, the load and the function on CPU 0. Prints req/s
# and requests per proxy CPU-second, medians with min–max, and the cipher
# h2load negotiated. The certificate is a self-signed P-256 one made here.
# Loopback only; every run is bounded by its request count.
#
# usage: loadtest/tls.sh [runs=3] [requests=200000]
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}; n=${2:-200000}
for tool in h2load openssl; do
  command -v $tool >/dev/null || { echo "$tool missing: apt-get install nghttp2-client openssl" >&2; exit 1; }
done
cargo build --release --bins -q
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 loadtest/grpc_body.py "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

fn_port=18280; proxy_port=19280; admin_port=19290
pin_cpus
$pin_load "$bin/massa-example-fn" --port $fn_port 2>"$work/fn.log" &
sleep 0.3

passthrough() { # scheme [massa flags...] -> "req/s per-cpu-s cipher"
  local scheme=$1; shift
  rm -rf "$work/data"
  $pin_proxy "$bin/massa" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
    --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --workers 1 --data-dir "$work/data" "$@" 2>"$work/massa.log" &
  local pid=$! before out after
  wait_ready $admin_port
  before=$(cpu_ns $pid)
  out=$($pin_load h2load -n "$n" -c 16 -m 32 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$work/say.bin" "$scheme://127.0.0.1:$proxy_port/example.echo.Echo/Say" 2>&1)
  after=$(cpu_ns $pid)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  grep -q " 0 failed, 0 errored" <<<"$out" || { echo "$scheme run had errors: $out" >&2; exit 1; }
  local cipher
  cipher=$(awk '/^Cipher:/ {print $2}' <<<"$out")
  echo "$(awk '/^finished in/ {printf "%.0f", $4}' <<<"$out") $(awk -v n="$n" -v c="$((after - before))" 'BEGIN {printf "%.0f", n / (c / 1e9)}') ${cipher:-none}"
}

declare -A col
for _ in $(seq "$runs"); do
  read -r r c _ <<<"$(passthrough http)"; col[h2c-rps]+="$r "; col[h2c-cpu]+="$c "
  read -r r c cipher <<<"$(passthrough https --tls-cert "$work/cert.pem" --tls-key "$work/key.pem")"
  col[tls-rps]+="$r "; col[tls-cpu]+="$c "
done
echo "| unary passthrough (Echo/Say) | per second | per proxy CPU-second |"
echo "|---|---|---|"
echo "| plaintext h2c | $(stat ${col[h2c-rps]}) | $(stat ${col[h2c-cpu]}) |"
echo "| TLS ($cipher) | $(stat ${col[tls-rps]}) | $(stat ${col[tls-cpu]}) |"
