#!/usr/bin/env bash
# The sanitizer job: the whole unit suite built with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer (any finding aborts the test), in its own build folder. The same
# build carries libFuzzer's instrumentation and the fuzz targets, so scripts/fuzz.sh reuses it.
#
#   scripts/sanitize.sh                 build (build-asan/) and run `ctest -L unit`, then replay
#                                       every fuzz seed (`ctest -L fuzz`)
#   scripts/sanitize.sh --build-only    build only (CI starts it early, at low priority)
#   scripts/sanitize.sh --test-only     run the tests of an existing build
#   scripts/sanitize.sh --tsan          ThreadSanitizer instead (build-tsan/, may be combined
#                                       with --build-only / --test-only): the multi-threaded data
#                                       plane's tests — every wg_ unit test, agent_parallel_crypto
#                                       (the crypto workers sealing and opening on several
#                                       threads) and the relay_ unit tests, but the coordinator
#                                       link's and wg_allowed_ips (it replaces operator new); only
#                                       those targets and their libraries are built,
#                                       so the job stays small. Any race aborts the test.
# Exit status 77 when clang is missing (the CI flow then skips the job and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=all sanitize=address,undefined dir=build-asan fuzzers=ON filter=()
for arg in "$@"; do
  case "$arg" in
    --build-only) mode=build ;;
    --test-only) mode=test ;;
    --tsan) sanitize=thread dir=build-tsan fuzzers=OFF ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
if ! command -v clang++ >/dev/null; then
  echo "sanitize.sh: clang++ not found (scripts/setup.sh installs it); skipping" >&2
  exit 77
fi
jobs=${KNIT_JOBS:-$(nproc)}
if [[ "$mode" != test ]]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  # -O1 and line tables: readable stack traces at a fraction of -O2 -g's compile time.
  CC=clang CXX=clang++ cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_C_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
    -DKNIT_WERROR=ON -DKNIT_SANITIZE="$sanitize" -DKNIT_BUILD_FUZZERS="$fuzzers" -DKNIT_BUILD_BENCH=OFF >/dev/null
  # Only what the tests below run: the unit tests and the fuzz targets (programs, test tools
  # and benchmarks are left out; every library is compiled as a dependency).
  targets=()
  for src in tests/unit/*_test.cpp; do
    name=$(basename "$src" .cpp)
    # ThreadSanitizer: the threaded data plane's tests only (see the header).
    if [[ "$sanitize" == thread && ! "$name" =~ ^(wg_|relay_|agent_parallel_crypto_) ]]; then continue; fi
    # Not these: the coordinator link's test needs the whole coordinator, and the allowed-IPs
    # test replaces operator new (to count allocations), which ThreadSanitizer's runtime owns.
    [[ "$sanitize" == thread && "$name" =~ ^(relay_coordinator_link_test|wg_allowed_ips_test)$ ]] && continue
    targets+=("$name")
  done
  if [[ "$fuzzers" == ON ]]; then
    for src in fuzz/*_fuzz.cpp; do targets+=("$(basename "$src" .cpp)"); done
    targets+=(make_seeds)  # not run here, but it must keep compiling with the encoders
  fi
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
fi
[[ "$mode" == build ]] && exit 0
# Findings abort with a stack trace; leaks count (LeakSanitizer comes with ASan).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
cd "$dir"
labels=(-L unit)
# Targets this build left out (ThreadSanitizer's) show up as <target>_NOT_BUILT, and the fuzz
# seed replays (label fuzz) are not built there either: neither is run.
[[ "$sanitize" == thread ]] && filter=(-LE fuzz -E '_NOT_BUILT$')
[[ "$fuzzers" == ON ]] && labels=(-L 'unit|fuzz')
ctest --output-on-failure -j "$jobs" "${labels[@]}" "${filter[@]}"
