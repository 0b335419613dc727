#!/usr/bin/env bash
# Three proxies on one PostgreSQL (gossip membership, shard leases, proxy-to-
# proxy forwarding), measured in one run:
#
# 1. Forward cost: the same AddItem load on carts that proxy B owns, sent
#    (a) to B itself and (b) to A, which forwards every call to B. Calls/s,
#    p50/p99 latency, and the CPU per call of A and of B separately.
# 2. Throughput, 3 proxies vs 1: three clients at once, each one third of
#    the commands over the same 1000 carts, one client per proxy; then the
#    same three clients all at one proxy alone (fresh tables). Commands/s,
#    proxy CPU per command (every massa process summed), PostgreSQL CPU per
#    command, and every status code the clients saw.
# 3. Recovery after kill -9: carts owned by one proxy, that proxy killed,
#    and the time until a command to every one of its carts succeeds again
#    through a surviving proxy; the killed proxy restarted between runs
#    (the victim rotates over the three).
#
# Every proxy: --workers 1 (not pinned: three proxies share 2 CPUs),
# --durability sync, --lease-duration 2s, its own massa-example-fn. The
# proxies listen on 127.0.0.2-4 (loopback, no setup on Linux) so each
# advertises a distinct host; admin ports and PostgreSQL are on 127.0.0.1.
# PostgreSQL is a throwaway cluster started here (default settings); every
# massa_* table is dropped before each cluster start. Closed-loop load,
# fixed request counts; every wait below is bounded in count and time.
#
# usage: [MASSA_BIN_DIR=dir] loadtest/cluster.sh [runs=3] [requests=20000]
# MASSA_BIN_DIR: prebuilt massa, massa-example-fn and massa-load (default:
# build them in release).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
runs=${1:-3}; n=${2:-20000}
release_bins
for b in massa massa-example-fn massa-load; do [ -x "$bin/$b" ] || { echo "$bin/$b missing" >&2; exit 1; }; done
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pgbin/postgres" ] || { echo "PostgreSQL server missing: apt-get install postgresql" >&2; exit 1; }

# The server refuses to run as root; /tmp so the postgres user can enter.
work=$(mktemp -d /tmp/massa-cluster-load-XXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as_pg=(setpriv --reuid postgres --regid postgres --init-groups); fi

hosts=(127.0.0.2 127.0.0.3 127.0.0.4)
http=(19481 19482 19483); admin=(19491 19492 19493); gossip=(19471 19472 19473); fnp=(18481 18482 18483)
pg_port=15442
ids=(); for i in 0 1 2; do ids[i]=${hosts[i]}:${http[i]}; done
seeds="${hosts[0]}:${gossip[0]},${hosts[1]}:${gossip[1]},${hosts[2]}:${gossip[2]}"
pid=("" "" ""); fn_pid=("" "" ""); pg_pid=""
cart_call=(--call com.example.shoppingcart.ShoppingCart/AddItem --proto example/shoppingcart/shoppingcart.proto --import-path proto)

alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $s != Z* ]]; }
# SIGTERM, then SIGKILL if it has not exited within 20 s; reaps it.
stop_pid() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 200); do alive "$1" || break; sleep 0.1; done
  alive "$1" && kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  for p in "${pid[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done
  for p in "${fn_pid[@]}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
  for p in $(jobs -p); do [ "$p" != "$pg_pid" ] && kill "$p" 2>/dev/null; done
  if [ -n "$pg_pid" ]; then
    kill -INT "$pg_pid" 2>/dev/null
    for _ in $(seq 100); do alive "$pg_pid" || break; sleep 0.1; done
  fi
  for p in $(jobs -p); do alive "$p" || wait "$p" 2>/dev/null; done
  if [ "$rc" != 0 ]; then
    for f in "$work"/massa*.log "$work"/pg.log; do [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# JSON helpers: cluster views, massa-load reports.
cat >"$work/h.py" <<'EOF'
import json, sys, urllib.request
from collections import Counter

def view(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster", timeout=2) as r:
        return json.load(r)

cmd = sys.argv[1]
if cmd == "view":  # admin_port -> "id:state:shards ..." sorted by id
    v = view(sys.argv[2])
    print(" ".join(sorted(f'{m["id"]}:{m["state"]}:{m["shards"]}' for m in v["members"])))
elif cmd == "owner":  # admin_port -> the one member holding every shard
    v = view(sys.argv[2])
    holders = [m["id"] for m in v["members"] if m["shards"] > 0]
    assert len(holders) == 1 and v["shards"] == 1, v
    print(holders[0])
elif cmd == "load":  # report.json... -> count ok ok/s p50_ms p99_ms codes
    count = ok = 0; longest = 0.0; codes = Counter(); p50 = p99 = 0.0
    for f in sys.argv[2:]:
        d = json.load(open(f))
        count += d["count"]; longest = max(longest, d["total"] / 1e9)
        codes.update(d["statusCodeDistribution"])
        lat = {str(x["percentage"]): x["latency"] / 1e6 for x in d["latencyDistribution"]}
        p50, p99 = max(p50, lat["50"]), max(p99, lat["99"])
    ok = codes.get("OK", 0)
    print(count, ok, round(ok / longest), f"{p50:.2f}", f"{p99:.2f}",
          ",".join(f"{k}={v}" for k, v in sorted(codes.items())))
elif cmd == "errors":  # report.json... -> non-OK codes and messages, summed
    codes, errors = Counter(), Counter()
    for f in sys.argv[2:]:
        for line in open(f):
            if not line.strip():
                continue
            d = json.loads(line)
            codes.update({k: v for k, v in d["statusCodeDistribution"].items() if k != "OK"})
            errors.update(d.get("errorDistribution") or {})
    if not codes:
        print("none")
    else:
        print("; ".join(f"{k} ×{v}" for k, v in sorted(codes.items())))
        for e, c in errors.most_common():
            print(f"  - {c} × {e}", file=sys.stderr)
elif cmd == "addline":  # dir user... -> dir/<user>.pb, an AddLineItem each
    def s(field, text):
        b = text.encode()
        return bytes([field << 3 | 2, len(b)]) + b
    for user in sys.argv[3:]:
        with open(f"{sys.argv[2]}/{user}.pb", "wb") as f:
            f.write(s(1, user) + s(2, "apple") + s(3, "Apple") + bytes([4 << 3, 1]))
EOF
py() { python3 "$work/h.py" "$@"; }

"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg" -A trust -U postgres -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$pgbin/postgres" -D "$work/pg" -p $pg_port -k "$work" -c listen_addresses=127.0.0.1 2>"$work/pg.log" &
pg_pid=$!
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p $pg_port && break; sleep 0.1; done
"$pgbin/pg_isready" -q -h 127.0.0.1 -p $pg_port || { echo "postgres never became ready" >&2; exit 1; }
url="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
psql() { "$pgbin/psql" -X -q -At -h 127.0.0.1 -p $pg_port -U postgres -d postgres "$@"; }
# setpriv execs, so $pg_pid is the postmaster; its children are the rest.
pg_cpu() { local p s=0; for p in $pg_pid $(pgrep -P "$pg_pid"); do s=$((s + $(cpu_ns "$p" 2>/dev/null || echo 0))); done; echo $s; }
# Every massa_* table, whatever this or an earlier version created.
drop_tables() {
  psql -c 'SET client_min_messages = warning' -c "DO \$\$ DECLARE t text; BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'massa\\_%' LOOP
      EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t);
    END LOOP; END \$\$"
  [ "$(psql -c "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'massa\\_%'")" = 0 ] || { echo "massa_* tables left" >&2; exit 1; }
}

for i in 0 1 2; do
  "$bin/massa-example-fn" --port "${fnp[i]}" 2>"$work/fn$i.log" &
  fn_pid[i]=$!
done

start_proxy() { # index shards
  local i=$1
  "$bin/massa" --http-interface "${hosts[i]}" --http-port "${http[i]}" \
    --admin-interface 127.0.0.1 --admin-port "${admin[i]}" --user-function-port "${fnp[i]}" \
    --workers 1 --pin-workers false --durability sync --data-dir "$work/data$i" \
    --store postgres --postgres-url "$url" --shards "$2" --lease-duration 2s \
    --advertise-address "${hosts[i]}" --cluster-port "${gossip[i]}" --cluster-seeds "$seeds" \
    2>>"$work/massa$i.log" &
  pid[i]=$!
  wait_ready "${admin[i]}"
}
stop_proxy() { stop_pid "${pid[$1]}"; pid[$1]=""; }
# Waits (30 s at most) until every proxy given sees exactly those proxies,
# all serving, with the same shard counts: gossip settled, placement agreed.
settle() { # index...
  local want="" i v views
  for i in $(printf '%s\n' "$@" | sort); do want+="${ids[i]} "; done
  for _ in $(seq 150); do
    views=()
    for i in "$@"; do views+=("$(py view "${admin[i]}" 2>/dev/null || echo down)"); done
    local ok=1 members
    for v in "${views[@]}"; do
      [ "$v" = "${views[0]}" ] || ok=0
      members=$(tr ' ' '\n' <<<"$v" | grep ':serving:' | cut -d: -f1-2 | sort | tr '\n' ' ' || true)
      [ "$members" = "$want" ] && [ "$(wc -w <<<"$v")" = "$#" ] || ok=0
    done
    [ $ok = 1 ] && return 0
    sleep 0.2
  done
  echo "no agreement on [$want]: ${views[*]}" >&2
  return 1
}
# CPU in ns / calls, in µs with one decimal.
per_call() { awk -v ns="$1" -v n="$2" 'BEGIN {printf "%.1f", ns / n / 1000}'; }
fwd() { curl -sf --max-time 2 "http://127.0.0.1:${admin[$1]}/metrics" | awk '$1 == "massa_forwarded_calls_total" {print $2}'; }
# massa-load against proxy i: AddItem over `keys` carts named prefix<i>.
# Exit 2 (some calls failed) is reported, not fatal; anything else is
# (a run cut off after 10 minutes too).
load() { # out index prefix keys requests concurrency
  local rc=0
  timeout 600 "$bin/massa-load" "${hosts[$2]}:${http[$2]}" "${cart_call[@]}" \
    -d "{\"user_id\":\"$3{{i}}\",\"product_id\":\"apple\",\"name\":\"Apple\",\"quantity\":1}" \
    --keys "$4" -n "$5" -c 2 --concurrency "$6" --format json >"$1" || rc=$?
  [ $rc = 0 ] || [ $rc = 2 ] || { echo "massa-load failed ($rc) at ${ids[$2]}" >&2; return 1; }
}

# ---------------------------------------------------------------------------
# 1. Forward cost.
# Finding B's carts: massa-load spreads calls over the keys prefix0..K-1, so
# B must own every key of that range. One way is a cluster of a single
# lease shard (--shards 1): placement (rendezvous hashing over the serving
# members) gives that shard to exactly one member, all members agree once
# settled, and /cluster shows it (shards: 1). That member is B, whichever
# it is; A is another. This is then checked rather than trusted: after a
# warm-up at B, massa_leases has one row whose owner is B, and B forwarded
# nothing; after each measured run, B's forwarded-call count did not move
# (else the script stops), and A's forwards are shown next to the calls.
# Forwarding and the write path are the same per call whatever the shard
# count; only lease renewal (one row instead of ~341) is cheaper.
echo "== forward cost (--shards 1)" >&2
drop_tables
for i in 0 1 2; do start_proxy $i 1; done
settle 0 1 2
owner=$(py owner "${admin[0]}")
b=""; for i in 0 1 2; do [ "${ids[i]}" = "$owner" ] && b=$i; done
[ -n "$b" ] || { echo "owner $owner is none of ${ids[*]}" >&2; exit 1; }
a=$(( (b + 1) % 3 ))
echo "B = ${ids[b]} (owns the one shard), A = ${ids[a]}" >&2
fkeys=64; fconc=16
f0=$(fwd $b)
load "$work/warm-b.json" $b fwd- $fkeys 2000 $fconc
load "$work/warm-a.json" $a fwd- $fkeys 2000 $fconc
leases=$(psql -c "SELECT string_agg(shard || '=' || owner, ',') FROM massa_leases")
[ "$leases" = "0=${ids[b]}" ] || { echo "massa_leases: $leases, expected 0=${ids[b]}" >&2; exit 1; }
[ "$(fwd $b)" = "$f0" ] || { echo "B forwarded calls: ownership is not what /cluster said" >&2; exit 1; }
echo "warm-up: B $(py load "$work/warm-b.json"); A $(py load "$work/warm-a.json")" >&2
declare -A col
# The order alternates per run: the journals grow run by run (and
# PostgreSQL checkpoints with them), which would otherwise favour one side.
for r in $(seq "$runs"); do
  order="direct forwarded"; [ $((r % 2)) = 0 ] && order="forwarded direct"
  for via in $order; do
    at=$b; [ $via = forwarded ] && at=$a
    fa0=$(fwd $a); fb0=$(fwd $b); ca0=$(cpu_ns "${pid[a]}"); cb0=$(cpu_ns "${pid[b]}")
    load "$work/f-$via-$r.json" $at fwd- $fkeys "$n" $fconc
    ca1=$(cpu_ns "${pid[a]}"); cb1=$(cpu_ns "${pid[b]}"); fa1=$(fwd $a); fb1=$(fwd $b)
    read -r count ok rps p50 p99 codes <<<"$(py load "$work/f-$via-$r.json")"
    # B forwarding anything means it did not own them all: the figures are void.
    [ $((fb1 - fb0)) = 0 ] || { echo "B forwarded $((fb1 - fb0)) calls: it does not own every cart" >&2; exit 1; }
    col[$via-fwd]+="$((fa1 - fa0))/$count "
    col[$via-rps]+="$rps "; col[$via-p50]+="$p50 "; col[$via-p99]+="$p99 "
    col[$via-cpua]+="$(per_call $((ca1 - ca0)) "$count") "; col[$via-cpub]+="$(per_call $((cb1 - cb0)) "$count") "
    col[$via-codes]+="$codes "
    echo "run $r $via: $rps calls/s p50 $p50 ms p99 $p99 ms, $codes" >&2
  done
done
for i in 0 1 2; do stop_proxy $i; done

# ---------------------------------------------------------------------------
# 2. Throughput, 3 proxies vs 1: three clients at once, n/3 commands each
# over the same 1000 carts, at one proxy each or all at proxy 0 alone.
# Commands/s = OK commands / the longest client's time; CPU per command =
# CPU over the measured load / every command answered (OK or not).
tkeys=1000; tconc=64; per=$((n / 3))
through() { # label proxy-index...  (one client per index, in that order)
  local label=$1; shift
  local up; up=$(printf '%s\n' "$@" | sort -u)
  drop_tables
  for i in $up; do start_proxy "$i" 1024; done
  # shellcheck disable=SC2086
  settle $up
  local j=0 i
  for i in "$@"; do load "$work/warm-$label-$j.json" "$i" cart- $tkeys $tkeys $tconc; j=$((j + 1)); done
  local cpu0=0 cpu1=0 pg0 pg1 loads=()
  for i in $up; do cpu0=$((cpu0 + $(cpu_ns "${pid[i]}"))); done; pg0=$(pg_cpu)
  j=0
  for i in "$@"; do load "$work/t-$label-$r-$j.json" "$i" cart- $tkeys $per $tconc & loads+=($!); j=$((j + 1)); done
  for p in "${loads[@]}"; do wait "$p"; done
  for i in $up; do cpu1=$((cpu1 + $(cpu_ns "${pid[i]}"))); done; pg1=$(pg_cpu)
  read -r count ok rps p50 p99 codes <<<"$(py load "$work"/t-"$label-$r"-*.json)"
  col[$label-codes]+="$codes "
  col[$label-rps]+="$rps "; col[$label-cpu]+="$(per_call $((cpu1 - cpu0)) "$count") "; col[$label-pg]+="$(per_call $((pg1 - pg0)) "$count") "
  echo "run $r $label: $rps OK commands/s, $codes" >&2
  for i in $up; do stop_proxy "$i"; done
}
echo "== throughput" >&2
for r in $(seq "$runs"); do
  through three 0 1 2
  through one 0 0 0
done

# ---------------------------------------------------------------------------
# 3. Recovery after kill -9. The victim's carts are found by asking it: one
# AddItem per candidate cart sent to the victim; a cart whose call succeeded
# while the victim's forwarded-call count stayed put ran there, so the
# victim owns it (nothing else sends it calls meanwhile). Then kill -9, and
# per cart a poller sends single AddItems through a survivor (the two
# survivors alternate over the carts), 50 ms apart, until one succeeds
# (30 s and 400 tries at most). The time is from the kill to the last
# cart's first success; every failed attempt's status is kept. Resolution:
# one attempt is a massa-load process plus the pause, ~0.1-0.15 s here.
echo "== recovery after kill -9" >&2
drop_tables
for i in 0 1 2; do start_proxy $i 1024; done
settle 0 1 2
for i in 0 1 2; do load "$work/warm-rec-$i.json" $i cart- $tkeys $tkeys $tconc; done
rec_times=(); rec_rows=()
poll() { # cart via-index t0 -> writes $work/back-<cart> (ms after t0)
  local cart=$1 via=$2 t0=$3 tries=0 rc
  while [ $tries -lt 400 ] && [ $(( $(date +%s%N) - t0 )) -lt 30000000000 ]; do
    tries=$((tries + 1)); rc=0
    timeout 10 "$bin/massa-load" "${hosts[via]}:${http[via]}" --call com.example.shoppingcart.ShoppingCart/AddItem \
      --binary-file "$work/pb/$cart.pb" -n 1 --concurrency 1 --timeout 3s --format json \
      >>"$work/attempts-$cart.jsonl" 2>>"$work/poll.log" || rc=$?
    if [ $rc = 0 ]; then echo $(( ($(date +%s%N) - t0) / 1000000 )) >"$work/back-$cart"; return 0; fi
    sleep 0.05
  done
}
mkdir -p "$work/pb"
for r in $(seq "$runs"); do
  v=$(( (r + 1) % 3 ))
  cands=(); for j in $(seq 0 59); do cands+=("rec$r-$j"); done
  py addline "$work/pb" "${cands[@]}"
  mine=()
  for c in "${cands[@]}"; do
    f0=$(fwd $v); rc=0
    timeout 10 "$bin/massa-load" "${hosts[v]}:${http[v]}" --call com.example.shoppingcart.ShoppingCart/AddItem \
      --binary-file "$work/pb/$c.pb" -n 1 --concurrency 1 --format json >"$work/probe.json" || rc=$?
    [ $rc = 0 ] && [ "$(fwd $v)" = "$f0" ] && mine+=("$c")
    [ ${#mine[@]} -ge 8 ] && break
  done
  [ ${#mine[@]} -ge 1 ] || { echo "no cart of ${ids[v]} found among ${#cands[@]}" >&2; exit 1; }
  t0=$(date +%s%N)
  kill -KILL "${pid[v]}"; wait "${pid[v]}" 2>/dev/null || true; pid[v]=""
  pollers=(); k=0
  for c in "${mine[@]}"; do
    via=$(( (v + 1 + k % 2) % 3 )); k=$((k + 1))
    poll "$c" $via "$t0" & pollers+=($!)
  done
  for p in "${pollers[@]}"; do wait "$p" || true; done
  back=(); missing=0
  for c in "${mine[@]}"; do
    if [ -f "$work/back-$c" ]; then back+=("$(cat "$work/back-$c")"); else missing=$((missing + 1)); fi
  done
  errs=$(cd "$work" && py errors $(printf 'attempts-%s.jsonl ' "${mine[@]}") 2>>"$work/rec-errors-$r.txt" || echo "unreadable reports")
  if [ $missing -gt 0 ]; then
    last="not back within 30 s ($missing of ${#mine[@]} carts)"
  else
    last=$(printf '%s\n' "${back[@]}" | sort -n | tail -1); rec_times+=("$last")
  fi
  first=$(printf '%s\n' "${back[@]}" | grep . | sort -n | head -1 || true)
  rec_rows+=("| $r | ${ids[v]} | ${#mine[@]} | $last | ${first:-–} | $errs |")
  echo "run $r: killed ${ids[v]}, ${#mine[@]} carts, all back after $last ms (first ${first:-–} ms); failed attempts: $errs" >&2
  # Back to three: the same name takes its leases back.
  start_proxy $v 1024
  settle 0 1 2
  sleep 3
done
for i in 0 1 2; do stop_proxy $i; done

# ---------------------------------------------------------------------------
codes_sum() { tr ' ' '\n' <<<"$1" | tr ',' '\n' | grep . | awk -F= '{s[$1]+=$2} END {for (k in s) printf "%s %s×%d", (n++ ? "," : ""), k, s[k]}'; }
echo
echo "Forward cost: AddItem on $fkeys carts owned by B, $n calls per run, $fconc in flight; median (min–max) of $runs runs"
echo
echo "| sent to | calls/s | p50 | p99 | A CPU per call | B CPU per call | forwarded by A, per run | status codes (all runs) |"
echo "|---|---|---|---|---|---|---|---|"
echo "| B (owner, direct) | $(stat ${col[direct-rps]}) | $(stat ${col[direct-p50]}) ms | $(stat ${col[direct-p99]}) ms | $(stat ${col[direct-cpua]}) µs | $(stat ${col[direct-cpub]}) µs | ${col[direct-fwd]}|$(codes_sum "${col[direct-codes]}") |"
echo "| A (forwarded A→B) | $(stat ${col[forwarded-rps]}) | $(stat ${col[forwarded-p50]}) ms | $(stat ${col[forwarded-p99]}) ms | $(stat ${col[forwarded-cpua]}) µs | $(stat ${col[forwarded-cpub]}) µs | ${col[forwarded-fwd]}|$(codes_sum "${col[forwarded-codes]}") |"
echo
echo "Throughput: $((per * 3)) AddItem per run over $tkeys carts, three clients of $tconc in flight each; median (min–max) of $runs runs"
echo
echo "| proxies | commands/s (OK) | proxy CPU per command (all proxies) | PostgreSQL CPU per command | status codes (all runs) |"
echo "|---|---|---|---|---|"
for label in three one; do
  echo "| $([ $label = three ] && echo "3 (one client each)" || echo "1 (all three clients)") | $(stat ${col[$label-rps]}) | $(stat ${col[$label-cpu]}) µs | $(stat ${col[$label-pg]}) µs |$(codes_sum "${col[$label-codes]}") |"
done
errors=$(cd "$work" && py errors t-*.json 2>&1 >/dev/null || true)
[ -n "$errors" ] && { echo; echo "Non-OK messages (throughput):"; echo "$errors"; }
echo
echo "Recovery after kill -9 (--lease-duration 2s): time from the kill until an AddItem to every cart of the killed proxy succeeded through a survivor"
echo
echo "| run | killed | its carts polled | all back after (ms) | first back (ms) | failed attempts meanwhile |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rec_rows[@]}"
echo
if [ ${#rec_times[@]} -gt 0 ]; then echo "median: $(stat "${rec_times[@]}") ms"; else echo "median: none (no run recovered)"; fi
[ -s "$work/poll.log" ] && { echo "poller errors (no report):"; sort "$work/poll.log" | uniq -c; }
for r in $(seq "$runs"); do
  [ -s "$work/rec-errors-$r.txt" ] && { echo "run $r messages:"; cat "$work/rec-errors-$r.txt"; }
done
exit 0
