#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for RUNS executions each, one after another,
# and prints one summary line per target. See docs/fuzzing.md.
#
#   scripts/fuzz.sh                        # all targets, 10,000,000 executions each
#   RUNS=100000 scripts/fuzz.sh hubspot_payload linkedin_profile
#   scripts/fuzz.sh --build-only           # what CI runs: build the targets, run nothing
#
# Environment: RUNS (default 10000000), SLOW_SECONDS (default 1800: config_file runs whole
# configurations, a few thousand inputs a second, so it also stops after this long), TIMEOUT seconds per input before it counts as a hang
# (default 10), RSS_LIMIT_MB (default 2048), SANITIZER (default none: the crate has no unsafe
# code, and AddressSanitizer would halve the speed; "address" works too).
# Exits non-zero when a target crashes, hangs or runs out of memory; libFuzzer writes the
# input to fuzz/artifacts/<target>/, and `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none
# <target> <file>` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10000000}
SLOW_SECONDS=${SLOW_SECONDS:-1800}
TIMEOUT=${TIMEOUT:-10}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
SANITIZER=${SANITIZER:-none}
# cargo-fuzz passes nightly-only flags (-Z, sanitizer coverage); this lets stable accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

build_only=false
if [ "${1:-}" = "--build-only" ]; then
  build_only=true
  shift
fi

cargo fuzz build --sanitizer "$SANITIZER"
$build_only && exit 0
bin_dir=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p fuzz/logs
failed=0
summary=()
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  extra=()
  [ -f "fuzz/dicts/$target.dict" ] && extra+=(-dict="fuzz/dicts/$target.dict")
  [ "$target" = config_file ] && extra+=(-max_total_time="$SLOW_SECONDS")
  log=fuzz/logs/$target.log
  echo "fuzz: $target, $RUNS executions (log: $log)"
  start=$(date +%s)
  status=0
  # The binary itself, not `cargo fuzz run`: that would rebuild in the middle of a series if
  # the sources changed since the build above.
  "$bin_dir/$target" "$corpus" "${seeds[@]}" -artifact_prefix="fuzz/artifacts/$target/" \
    -runs="$RUNS" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_LIMIT_MB" \
    -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
  wall=$(($(date +%s) - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  crashes=$(find "fuzz/artifacts/$target" -type f -newermt "@$start" | wc -l)
  if [ "$status" -eq 0 ] && [ "$crashes" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status; see $log)"
    failed=1
  fi
  line="$target: executions=${runs:-?} exec/s=${speed:-?} wall=${wall}s crashes=$crashes $result"
  echo "fuzz: $line"
  summary+=("$line")
done

echo
echo "fuzz summary (RUNS=$RUNS, TIMEOUT=${TIMEOUT}s, RSS_LIMIT_MB=$RSS_LIMIT_MB, SANITIZER=$SANITIZER):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
