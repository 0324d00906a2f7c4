#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/) for a fixed budget and fails on any finding.
#
#   scripts/fuzz.sh                      each target 30 s (the CI budget), 2 at a time
#   scripts/fuzz.sh --minutes 10         a long local run: 10 minutes each
#   scripts/fuzz.sh --seconds 5 stun token     only these targets
#   options: --jobs N (targets at once; default: the number of cores), --build-dir DIR
#            (default build-asan, made by scripts/sanitize.sh --build-only when missing)
#
# Each target starts from its committed seeds (fuzz/corpus/NAME) and from what earlier local
# runs found (DIR/fuzz-work/NAME/corpus, kept between runs, never committed). At the end a table
# gives, per target, the executions, executions per second, edge coverage ("cov") and features
# ("ft") libFuzzer reached, and the corpus size. A crash, leak, timeout (10 s per input) or
# out-of-memory stops that target and fails the run; the input is kept as
# DIR/fuzz-work/NAME/crash-* and the table says how to replay it. Turn it into a regression test
# (tests/unit/, or a seed in fuzz/corpus/NAME) before fixing it.
# Exit status 77 when clang is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30 jobs=$(nproc) dir=build-asan targets=()
while (( $# )); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build-dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (scripts/setup.sh installs it); skipping" >&2
  exit 77
fi
if [[ ! -d "$dir/fuzz" ]]; then
  scripts/sanitize.sh --build-only
fi
if (( ${#targets[@]} == 0 )); then
  for f in fuzz/*_fuzz.cpp; do t=${f##*/}; targets+=("${t%_fuzz.cpp}"); done
fi
work="$dir/fuzz-work"
mkdir -p "$work"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# run_one NAME — fuzzes NAME for the budget; its output goes to $work/NAME/fuzz.log.
run_one() {
  local name=$1 bin="$dir/fuzz/$1_fuzz" w="$work/$1" rc=0
  mkdir -p "$w/corpus"
  rm -f "$w"/crash-* "$w"/leak-* "$w"/timeout-* "$w"/oom-*
  if [[ ! -x "$bin" ]]; then
    echo "no binary $bin" >"$w/fuzz.log"
    echo 2 >"$w/rc"
    return
  fi
  local extra=()
  case "$name" in
    # Fast-mode targets keep a world (keys, sessions, connections) from one input to the next, so
    # an input's allocations outlive it by design: per-input leak checks would only slow them
    # down (6x). Every other target keeps them.
    wg_device|relay_server) extra=(-detect_leaks=0) ;;
  esac
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 "${extra[@]}" \
    -print_final_stats=1 -artifact_prefix="$w/" "$w/corpus" "fuzz/corpus/$name" \
    >"$w/fuzz.log" 2>&1 || rc=$?
  echo "$rc" >"$w/rc"
}

echo "fuzz.sh: ${#targets[@]} targets, $seconds s each, $jobs at a time ($dir/fuzz)"
running=0
for name in "${targets[@]}"; do
  run_one "$name" &
  running=$((running + 1))
  if (( running >= jobs )); then wait -n || true; running=$((running - 1)); fi
done
wait || true

failed=0
printf '\n%-16s %12s %9s %7s %8s %7s  %s\n' target execs "exec/s" cov ft corpus result
for name in "${targets[@]}"; do
  w="$work/$name" rc=$(cat "$w/rc" 2>/dev/null || echo 2)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/fuzz.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$w/fuzz.log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$w/fuzz.log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  result=ok
  if [[ "$rc" != 0 ]]; then
    failed=$((failed + 1))
    artifact=$(ls "$w"/crash-* "$w"/leak-* "$w"/timeout-* "$w"/oom-* 2>/dev/null | head -1 || true)
    result="FAILED (status $rc)${artifact:+: replay with $dir/fuzz/${name}_fuzz $artifact}"
  fi
  printf '%-16s %12s %9s %7s %8s %7s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
if (( failed > 0 )); then
  for name in "${targets[@]}"; do
    w="$work/$name"
    [[ "$(cat "$w/rc" 2>/dev/null)" == 0 ]] && continue
    printf '\n----- %s: the end of %s -----\n' "$name" "$w/fuzz.log"
    grep -v '^#[0-9]' "$w/fuzz.log" | tail -n 60
  done
  echo "fuzz.sh: $failed of ${#targets[@]} targets found something (or did not run)" >&2
  exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran $seconds s without a finding"
