# Helpers the load scripts share; sourced, not run.

# CPU time of every thread of a process, in ns (schedstat is exact on
# tickless kernels, unlike /proc/PID/stat's clock ticks).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {printf "%.0f\n", s}'; }

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
