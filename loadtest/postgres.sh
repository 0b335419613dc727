#!/usr/bin/env bash
# Event-sourced AddItem commands (one event each, --durability sync, one
# worker) with --store rocksdb and with --store postgres, interleaved
# (rocksdb, postgres, rocksdb, ...) in one run. PostgreSQL is a throwaway
# cluster started here (default settings: fsync and synchronous_commit on)
# on 127.0.0.1, data on the same file system as RocksDB's.
# Prints commands/s and commands per proxy CPU-second (every thread of
# massa), and for postgres the server's CPU per command separately (the
# postmaster and all its children: backends, WAL writer, checkpointer).
# Loopback only; every run is bounded by its request count.
#
# usage: [MASSA_BIN_DIR=dir] loadtest/postgres.sh [runs=3] [requests=50000] [carts=1000]
# MASSA_BIN_DIR: prebuilt massa, massa-example-fn and massa-load (default:
# build them in release).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}; n=${2:-50000}; carts=${3:-1000}
release_bins
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pgbin/postgres" ] || { echo "PostgreSQL server missing: apt-get install postgresql" >&2; exit 1; }
# The server refuses to run as root; /tmp so the postgres user can enter.
work=$(mktemp -d /tmp/massa-pg-load-XXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as_pg=(setpriv --reuid postgres --regid postgres --init-groups); fi
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${pg_pid:-}" ] && kill -INT "$pg_pid" 2>/dev/null; sleep 1; rm -rf "$work"' EXIT

fn_port=18380; proxy_port=19380; admin_port=19390; pg_port=15432
"$bin/massa-example-fn" --port $fn_port 2>"$work/fn.log" &
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg" -A trust -U postgres -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$pgbin/postgres" -D "$work/pg" -p $pg_port -k "$work" -c listen_addresses=127.0.0.1 2>"$work/pg.log" &
pg_pid=$!
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p $pg_port && break; sleep 0.1; done
"$pgbin/pg_isready" -q -h 127.0.0.1 -p $pg_port || { echo "postgres never became ready" >&2; cat "$work/pg.log" >&2; exit 1; }
url="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
# setpriv execs, so $pg_pid is the postmaster; its children are the rest.
pg_cpu() { local p s=0; for p in $pg_pid $(pgrep -P "$pg_pid"); do s=$((s + $(cpu_ns "$p" 2>/dev/null || echo 0))); done; echo $s; }

run() { # store flags... -> "cmd/s per-proxy-cpu-s pg-cpu-µs-per-cmd p99-µs"
  rm -rf "$work/data"
  "$pgbin/psql" -q -h 127.0.0.1 -p $pg_port -U postgres -c 'SET client_min_messages = warning' -c 'DROP TABLE IF EXISTS massa_kv, massa_schema, massa_leases, massa_settings, massa_tag_offset' postgres
  "$bin/massa" --http-port $proxy_port --admin-port $admin_port --user-function-port $fn_port \
    --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --workers 1 --durability sync \
    --data-dir "$work/data" "$@" 2>"$work/massa.log" &
  local pid=$!
  wait_ready $admin_port
  local before pg_before after pg_after
  before=$(cpu_ns $pid); pg_before=$(pg_cpu)
  "$bin/massa-load" 127.0.0.1:$proxy_port --call com.example.shoppingcart.ShoppingCart/AddItem \
    --proto example/shoppingcart/shoppingcart.proto --import-path proto \
    -d '{"user_id":"cart-{{i}}","product_id":"apple","name":"Apple","quantity":1}' \
    --keys "$carts" -n "$n" -c 4 --concurrency 256 --format json >"$work/out.json"
  after=$(cpu_ns $pid); pg_after=$(pg_cpu)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  python3 - "$work/out.json" "$n" "$((after - before))" "$((pg_after - pg_before))" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["statusCodeDistribution"].get("OK", 0) == d["count"], d["statusCodeDistribution"]
n, cpu, pg = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
p99 = {x["percentage"]: x["latency"] for x in d["latencyDistribution"]}[99]
print(round(d["rps"]), round(n / (cpu / 1e9)), round(pg / n / 1e3), round(p99 / 1e3))
EOF
}

declare -A col
for _ in $(seq "$runs"); do
  read -r r c p l <<<"$(run --store rocksdb)"; col[rocks-rps]+="$r "; col[rocks-cpu]+="$c "; col[rocks-p99]+="$l "
  read -r r c p l <<<"$(run --store postgres --postgres-url "$url")"; col[pg-rps]+="$r "; col[pg-cpu]+="$c "; col[pg-pg]+="$p "; col[pg-p99]+="$l "
done
echo "| store | commands/s | p99 | commands per proxy CPU-s | PostgreSQL CPU per command |"
echo "|---|---|---|---|---|"
echo "| rocksdb | $(stat ${col[rocks-rps]}) | $(stat ${col[rocks-p99]}) µs | $(stat ${col[rocks-cpu]}) | – |"
echo "| postgres | $(stat ${col[pg-rps]}) | $(stat ${col[pg-p99]}) µs | $(stat ${col[pg-cpu]}) | $(stat ${col[pg-pg]}) µs |"
