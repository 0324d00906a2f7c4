#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run), in stages whose times are printed at the end:
#
#   setup      Debian packages (scripts/setup.sh)
#   build      GCC, ./build (scripts/build.sh)
#   tests      ctest on ./build: unit tests in parallel, namespace tests (RUN_SERIAL) one at a
#              time; arguments to this script go to this ctest
#   sanitizer  clang + AddressSanitizer + UndefinedBehaviorSanitizer build of everything in
#              ./build-asan (with libFuzzer instrumentation), then the whole unit suite and every
#              fuzz seed under the sanitizers (scripts/sanitize.sh). The build starts right after
#              the GCC build, at the lowest CPU and I/O priority, so it uses the cores the
#              namespace tests leave idle (KNIT_CI_OVERLAP=0: build it after the tests instead)
#   fuzz       every fuzz target for KNIT_CI_FUZZ_SECONDS (default 30) s (scripts/fuzz.sh)
#
# sanitizer and fuzz need clang (setup.sh installs it); without it they are skipped, loudly.
# KNIT_CI_SANITIZE=0 skips both. Every stage runs even when an earlier one failed (except that
# nothing runs without a build); the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${KNIT_CI_FUZZ_SECONDS:-30}
declare -a STAGES=() TIMES=() RESULTS=()
failed=0

now_s() { date +%s; }
record() {  # NAME START RESULT
  STAGES+=("$1") TIMES+=($(( $(now_s) - $2 ))) RESULTS+=("$3")
  [[ "$3" == failed ]] && failed=$((failed + 1))
  echo "=== stage $1: $3 after $(( $(now_s) - $2 )) s"
}
run_stage() {  # NAME CMD...
  local name=$1 t0 rc=0
  shift
  echo "=== stage $name: $*"
  t0=$(now_s)
  "$@" || rc=$?
  if (( rc == 0 )); then record "$name" "$t0" ok
  elif (( rc == 77 )); then record "$name" "$t0" skipped
  else record "$name" "$t0" failed
  fi
  return "$rc"
}
summary() {
  local i
  echo
  echo "stage        seconds  result"
  for i in "${!STAGES[@]}"; do printf '%-12s %7s  %s\n' "${STAGES[$i]}" "${TIMES[$i]}" "${RESULTS[$i]}"; done
  printf '%-12s %7s\n' total $(( $(now_s) - T0 ))
  local passed=0 skipped=0
  for r in "${RESULTS[@]}"; do [[ "$r" == ok ]] && passed=$((passed + 1)); [[ "$r" == skipped ]] && skipped=$((skipped + 1)); done
  echo "stages: $passed passed, $failed failed, $skipped skipped"
}
T0=$(now_s)

run_stage setup ./scripts/setup.sh || { summary; exit 1; }
run_stage build ./scripts/build.sh || { summary; exit 1; }

sanitize=1
[[ "${KNIT_CI_SANITIZE:-1}" == 0 ]] && sanitize=0
if (( sanitize )) && ! command -v clang++ >/dev/null; then
  echo "=== NOTE: clang++ missing: the sanitizer and fuzz stages are skipped"
  sanitize=0
fi
asan_pid="" asan_t0=0
if (( sanitize )) && [[ "${KNIT_CI_OVERLAP:-1}" == 1 ]]; then
  echo "=== stage sanitizer-build: started in the background at low priority (build-asan/ci-build.log)"
  mkdir -p build-asan
  asan_t0=$(now_s)
  nice -n 19 ionice -c 3 ./scripts/sanitize.sh --build-only >build-asan/ci-build.log 2>&1 &
  asan_pid=$!
fi

t0=$(now_s)
echo "=== stage tests: ctest on build/ $*"
( cd build && ctest --output-on-failure -j "$(nproc)" "$@" )
if (( $? == 0 )); then record tests "$t0" ok; else record tests "$t0" failed; fi

if (( sanitize )); then
  if [[ -n "$asan_pid" ]]; then
    t0=$(now_s)
    echo "=== stage sanitizer-build: waiting for the background build"
    if wait "$asan_pid"; then
      record sanitizer-build "$asan_t0" ok
    else
      tail -n 80 build-asan/ci-build.log
      record sanitizer-build "$asan_t0" failed
    fi
    echo "    (of which $(( $(now_s) - t0 )) s after the tests ended)"
  else
    run_stage sanitizer-build ./scripts/sanitize.sh --build-only
  fi
  if [[ "${RESULTS[-1]}" == ok ]]; then
    run_stage sanitizer ./scripts/sanitize.sh --test-only
    run_stage fuzz ./scripts/fuzz.sh --seconds "$fuzz_seconds"
  fi
else
  STAGES+=(sanitizer fuzz) TIMES+=(0 0) RESULTS+=(skipped skipped)
fi

summary
(( failed == 0 ))
