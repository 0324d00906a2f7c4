#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run), in stages whose times are printed at the end:
#
#   setup      Debian packages (scripts/setup.sh)
#   build      GCC with Debian's packaging flags (dpkg-buildflags, hardening=+all), ./build
#              (scripts/build.sh --debian-flags --no-debug-info), warnings as errors: the suite
#              runs on what the packages ship (-g0 appended: the same code, built a third faster)
#   tests      ctest on ./build: unit tests in parallel, namespace tests (RUN_SERIAL) one at a
#              time; arguments to this script go to this ctest
#   sanitizer  clang + AddressSanitizer + UndefinedBehaviorSanitizer build of the unit tests and
#              fuzz targets in ./build-asan (libFuzzer instrumentation), then the whole unit suite and every
#              fuzz seed under the sanitizers (scripts/sanitize.sh). The build starts right after
#              the GCC build, at the lowest CPU and I/O priority, so it uses the cores the
#              namespace tests leave idle (KNIT_CI_OVERLAP=0: build it after the tests instead)
#   fuzz       every fuzz target for KNIT_CI_FUZZ_SECONDS (default 6) s (scripts/fuzz.sh;
#              longer runs: scripts/fuzz.sh --minutes N)
#   tsan       ThreadSanitizer over what runs on several threads (scripts/sanitize.sh --tsan):
#              clang -fsanitize=thread builds only the wg_ unit tests, agent_parallel_crypto
#              (the data plane's crypto workers) and the relay_ unit tests (not the coordinator
#              link's nor wg_allowed_ips: see sanitize.sh) with their libraries, in
#              ./build-tsan, in the background right after the sanitizer build (a fraction
#              of its size); any race fails the stage. KNIT_CI_TSAN=0 skips it
#   builds     the other build users make (scripts/check-builds.sh --programs release): the
#              programs and every library at Release (-O3), warnings as errors, then the fuzz
#              seeds replayed through the Release parsers. Built in the background after the
#              sanitizer build, at the same low priority. (Debian's flags are the main build; the
#              unit suite runs there and under the sanitizers.)
#
# sanitizer, fuzz and tsan need clang (setup.sh installs it); without it they are skipped, loudly.
# KNIT_CI_SANITIZE=0 skips the three, KNIT_CHECK_BUILDS=0 the builds stage. Arguments given to this
# script (a partial ctest run) leave out sanitizer, fuzz, tsan and builds. Every stage runs even when an earlier one failed (except that
# nothing runs without a build); the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${KNIT_CI_FUZZ_SECONDS:-6}
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
  failed_tests_digest
}
# What failed in the tests stage, again at the very end where a reader of the log's tail sees it:
# each failed test's name and the last lines it printed (ctest --output-on-failure put them
# right after its "Failed" line, mixed among the other tests' progress lines).
failed_tests_digest() {
  local list=build/Testing/Temporary/LastTestsFailed.log
  [[ "${tests_rc:-0}" != 0 && -s build/ctest-output.log && -s $list ]] || return 0
  echo
  echo "=== tests that failed: $(cut -d: -f2 "$list" | tr '\n' ' ')"
  local name
  while IFS=: read -r _ name; do
    echo "--- $name: the last lines it printed"
    awk -v n="$name" '
      index($0, " " n " ") && /\*\*\*|Failed|Timeout|Exception/ { on = 1; next }
      on && (/^ *Start +[0-9]+:/ || /^ *[0-9]+\/[0-9]+ Test +#/) { on = 0 }
      on { print }' build/ctest-output.log | tail -n 40
  done <"$list"
}
T0=$(now_s)

run_stage setup ./scripts/setup.sh || { summary; exit 1; }
run_stage build ./scripts/build.sh --debian-flags --no-debug-info || { summary; exit 1; }

sanitize=1 check_builds=1 tsan=1
[[ "${KNIT_CI_SANITIZE:-1}" == 0 ]] && sanitize=0 tsan=0
[[ "${KNIT_CI_TSAN:-1}" == 0 ]] && tsan=0
[[ "${KNIT_CHECK_BUILDS:-1}" == 0 ]] && check_builds=0
(($# > 0)) && sanitize=0 check_builds=0 tsan=0
if (( sanitize || tsan )) && ! command -v clang++ >/dev/null; then
  echo "=== NOTE: clang++ missing: the sanitizer, fuzz and tsan stages are skipped"
  sanitize=0 tsan=0
fi
# The background builds, one after the other at the lowest priority: the sanitizer build, the
# ThreadSanitizer build, then the Release and dpkg-buildflags builds. Each writes its status to
# build-bg/<name>.rc.
bg_pid="" bg_t0=0
rm -rf build-bg && mkdir -p build-bg
background_builds() {
  if (( sanitize )); then
    ./scripts/sanitize.sh --build-only >build-bg/sanitizer.log 2>&1
    echo $? >build-bg/sanitizer.rc
    date +%s >build-bg/sanitizer.end
  fi
  if (( tsan )); then
    ./scripts/sanitize.sh --tsan --build-only >build-bg/tsan.log 2>&1
    echo $? >build-bg/tsan.rc
    date +%s >build-bg/tsan.end
  fi
  if (( check_builds )); then
    ./scripts/check-builds.sh --build-only --programs release >build-bg/builds.log 2>&1
    echo $? >build-bg/builds.rc
    date +%s >build-bg/builds.end
  fi
}
if (( sanitize || tsan || check_builds )) && [[ "${KNIT_CI_OVERLAP:-1}" == 1 ]]; then
  echo "=== background builds (sanitizer: $sanitize, tsan: $tsan, release: $check_builds) started at low priority (build-bg/*.log)"
  bg_t0=$(now_s)
  nice -n 19 ionice -c 3 bash -c "$(declare -f background_builds); sanitize=$sanitize tsan=$tsan check_builds=$check_builds; background_builds" &
  bg_pid=$!
fi

t0=$(now_s)
echo "=== stage tests: ctest on build/ $*"
rm -f build/Testing/Temporary/LastTestsFailed.log
( cd build && ctest --output-on-failure -j "$(nproc)" "$@" ) 2>&1 | tee build/ctest-output.log
tests_rc=${PIPESTATUS[0]}
if (( tests_rc == 0 )); then record tests "$t0" ok; else record tests "$t0" failed; fi

if [[ -n "$bg_pid" ]]; then
  t0=$(now_s)
  echo "=== waiting for the background builds"
  wait "$bg_pid"
  echo "    ($(( $(now_s) - t0 )) s after the tests ended)"
elif (( sanitize || tsan || check_builds )); then
  background_builds
fi
bg_stage() {  # NAME: the background build NAME's result as a stage
  local name=$1 rc end
  rc=$(cat "build-bg/$name.rc" 2>/dev/null || echo 1)
  end=$(cat "build-bg/$name.end" 2>/dev/null || now_s)
  if [[ "$rc" == 0 ]]; then
    STAGES+=("$name-build") TIMES+=($(( end - bg_t0 ))) RESULTS+=(ok)
    echo "=== stage $name-build: ok"
  else
    tail -n 80 "build-bg/$name.log"
    STAGES+=("$name-build") TIMES+=($(( end - bg_t0 ))) RESULTS+=(failed)
    failed=$((failed + 1))
    echo "=== stage $name-build: failed"
  fi
  bg_t0=$end
  [[ "$rc" == 0 ]]
}
(( bg_t0 == 0 )) && bg_t0=$(now_s)

if (( sanitize )); then
  if bg_stage sanitizer; then
    run_stage sanitizer ./scripts/sanitize.sh --test-only
    run_stage fuzz ./scripts/fuzz.sh --seconds "$fuzz_seconds"
  fi
else
  STAGES+=(sanitizer fuzz) TIMES+=(0 0) RESULTS+=(skipped skipped)
fi
if (( tsan )); then
  bg_stage tsan && run_stage tsan ./scripts/sanitize.sh --tsan --test-only
else
  STAGES+=(tsan) TIMES+=(0) RESULTS+=(skipped)
fi
if (( check_builds )); then
  bg_stage builds && run_stage builds ./scripts/check-builds.sh --test-only --programs release
else
  STAGES+=(builds) TIMES+=(0) RESULTS+=(skipped)
fi

summary
(( failed == 0 ))
