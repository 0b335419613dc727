#!/usr/bin/env bash
# Builds every fuzz target, then runs each for a bounded time from its
# committed seeds. Exits non-zero if any target crashes, fails an assertion,
# hangs or runs out of memory; prints executions per target.
#
#   MASSA_FUZZ_SECONDS    seconds per target (default 60)
#   MASSA_FUZZ_SANITIZER  address (default) or none (libFuzzer only)
#   MASSA_FUZZ_TARGETS    space-separated subset (default: all)
#   MASSA_FUZZ_TARGET_DIR build directory (default fuzz/target; never the
#                         main build's: everything is built instrumented)
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked) and a C++ compiler;
# nightly flags come from RUSTC_BOOTSTRAP on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${MASSA_FUZZ_SECONDS:-60}
sanitizer=${MASSA_FUZZ_SANITIZER:-address}
target_dir=${MASSA_FUZZ_TARGET_DIR:-$PWD/target}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 2
fi
cargo fuzz build -s "$sanitizer" --target-dir "$target_dir"
targets=${MASSA_FUZZ_TARGETS:-$(cargo fuzz list)}

# New inputs go to a scratch corpus so the committed seeds stay seeds.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
printf '%-12s %12s %10s  %s\n' target execs exec/s result
for target in $targets; do
    mkdir -p "$scratch/$target"
    log=$scratch/$target.log
    result=ok
    cargo fuzz run -s "$sanitizer" --target-dir "$target_dir" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || result=FAILED
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    printf '%-12s %12s %10s  %s\n' "$target" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" "$result"
    if [[ $result != ok ]]; then
        failed+=("$target")
        # The panic or sanitizer report, then cargo-fuzz's replay hints.
        grep -A3 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log" | head -n 20 >&2 || true
        tail -n 25 "$log" >&2
    fi
done
if ((${#failed[@]})); then
    echo "run.sh: failing targets: ${failed[*]} (inputs saved under fuzz/artifacts/)" >&2
    exit 1
fi
