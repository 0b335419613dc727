# Helpers the load scripts share; sourced, not run.

# A process and its descendants (nginx works in a child).
tree() { echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }

# CPU time of every thread of a process and its children, in ns (schedstat
# is exact on tickless kernels, unlike /proc/PID/stat's clock ticks).
cpu_ns() { for p in $(tree "$1"); do cat /proc/"$p"/task/*/schedstat; done | awk '{s+=$1} END {printf "%.0f\n", s}'; }

# Resident memory of a process and its children, in KiB: all of it
# (VmRSS), its anonymous part (RssAnon: heap, stacks, allocator arenas)
# and its file-backed part (RssFile: code and libraries, shared with the
# page cache).
status_kib() { for p in $(tree "$2"); do awk -v f="$1:" '$1 == f {print $2}' /proc/"$p"/status; done | awk '{s+=$1} END {print s}'; }
rss_kib() { status_kib VmRSS "$1"; }
anon_kib() { status_kib RssAnon "$1"; }
file_kib() { status_kib RssFile "$1"; }

# Waits (10 s at most) until the proxy's admin port says ready; fails if not.
wait_ready() { # admin_port
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "proxy on admin port $1 never became ready" >&2
  return 1
}

# "median (min–max)" of the numbers given as arguments.
stat() { printf '%s\n' "$@" | grep . | sort -n | awk '{v[NR]=$1} END {printf "%s (%s–%s)", v[int((NR+1)/2)], v[1], v[NR]}'; }

# Pinning on 2+ CPUs: the load generator and the function on CPU 0, the
# proxy under test on CPU 1; none on one CPU. Sets pin_load and pin_proxy.
pin_cpus() {
  pin_load="taskset -c 0"; pin_proxy="taskset -c 1"
  [ "$(nproc)" -ge 2 ] || { pin_load=""; pin_proxy=""; }
}

# HAProxy as a plain h2 passthrough, one thread: the baseline proxy.
haproxy_cfg() { # file port fn_port
  cat >"$1" <<EOF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend grpc
  bind 127.0.0.1:$2 proto h2
  default_backend fn
backend fn
  server f 127.0.0.1:$3 proto h2
EOF
}

# Sets `bin`: MASSA_BIN_DIR's prebuilt massa, massa-example-fn and
# massa-load, or a release build made here.
release_bins() {
  if [ -z "${MASSA_BIN_DIR:-}" ]; then
    cargo build --release --bins -q
    MASSA_BIN_DIR=${CARGO_TARGET_DIR:-target}/release
  fi
  bin=$MASSA_BIN_DIR
}

# The example function, then Massa in front of it (one worker, memory
# store), each pinned as pin_cpus says; waits until Massa is ready and
# sets `pid` to it. Logs go to $work.
start_fn_and_massa() { # fn_port port admin_port
  $pin_load "$bin/massa-example-fn" --port "$1" >/dev/null 2>"$work/fn.log" &
  sleep 0.3
  $pin_proxy "$bin/massa" --http-port "$2" --admin-port "$3" --user-function-port "$1" \
    --http-interface 127.0.0.1 --admin-interface 127.0.0.1 --workers 1 --store memory >/dev/null 2>"$work/massa.log" &
  pid=$!
  wait_ready "$3"
}
