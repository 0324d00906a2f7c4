#!/usr/bin/env bash
# The builds users and distributions make, beside the project's own RelWithDebInfo build:
#
#   release   cmake -DCMAKE_BUILD_TYPE=Release (-O3)
#   debflags  Debian's flags from dpkg-buildflags (hardening=+all; on Debian 12: -g -O2,
#             -D_FORTIFY_SOURCE=2, -fstack-protector-strong, -Wformat -Werror=format-security,
#             PIE by GCC's default, -z relro -z now), with CMAKE_BUILD_TYPE=None as debhelper
#             configures it
#
# Each is configured with KNIT_WERROR=ON, so a warning that only appears at that optimisation
# level fails here (a plain Release or distribution build would only print it), and builds only
# the unit tests (no programs, benchmarks or test tools: the unit tests link every library),
# then runs them (ctest -L unit). Prints the time of each step.
#
# Usage: scripts/check-builds.sh [--build-only|--test-only] [--programs] [release] [debflags]
#                                                                            (default: both)
#   --build-only  configure and build (CI runs this in the background, at low priority, while the
#                 namespace tests leave the cores idle); --test-only: run the unit tests of builds
#                 made before
#   --programs    build the programs users install and the fuzz targets' seed replays instead of
#                 the unit tests, and run the replays: every library and program at the variant's
#                 optimisation, in about half the compile time (CI: the unit suite already runs
#                 in the main build and under the sanitizers)
# Environment: KNIT_VARIANT_DIR   where the builds go (default: build/variants; kept between
#                                 runs, so a second run only rebuilds what changed)
#              KNIT_JOBS          parallel jobs (default: the number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
variant_dir=${KNIT_VARIANT_DIR:-$root/build/variants}
jobs=${KNIT_JOBS:-$(nproc)}
mode=all variants=() scope=unit
for arg in "$@"; do
  case "$arg" in
    --build-only) mode=build ;;
    --test-only) mode=test ;;
    --programs) scope=programs ;;
    *) variants+=("$arg") ;;
  esac
done
((${#variants[@]})) || variants=(release debflags)

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The unit test targets, one per tests/unit/*_test.cpp (tests/CMakeLists.txt).
unit_targets=()
for src in tests/unit/*_test.cpp; do unit_targets+=("$(basename "$src" .cpp)"); done
# The fuzz targets' seed replays (fuzz/CMakeLists.txt: <name>_replay outside a fuzzing build)
# carry the label "unit" too.
replay_targets=()
for src in fuzz/*_fuzz.cpp; do replay_targets+=("$(basename "$src" _fuzz.cpp)_replay"); done
unit_targets+=("${replay_targets[@]}")
program_targets=(knitd knit knit-coordinator knit-relay "${replay_targets[@]}")
targets=("${unit_targets[@]}") tests=(-L unit)
if [[ "$scope" == programs ]]; then
  targets=("${program_targets[@]}") tests=(-R '^fuzz_seeds_')
fi

now() { date +%s; }
say() { printf 'check-builds: %s\n' "$*"; }

for variant in "${variants[@]}"; do
  dir=$variant_dir/$variant
  flags=()
  case "$variant" in
    release)
      flags=(-DCMAKE_BUILD_TYPE=Release)
      env_flags=()
      ;;
    debflags)
      command -v dpkg-buildflags >/dev/null || { say "needs dpkg-buildflags (dpkg-dev)"; exit 1; }
      export DEB_BUILD_MAINT_OPTIONS=hardening=+all
      # debhelper's cmake build passes CPPFLAGS (-D_FORTIFY_SOURCE=2) inside CFLAGS/CXXFLAGS.
      cppflags=$(dpkg-buildflags --get CPPFLAGS)
      env_flags=(CFLAGS="$(dpkg-buildflags --get CFLAGS) $cppflags"
                 CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $cppflags"
                 LDFLAGS="$(dpkg-buildflags --get LDFLAGS)")
      flags=(-DCMAKE_BUILD_TYPE=None)
      ;;
    *) say "unknown variant '$variant': release or debflags"; exit 2 ;;
  esac
  if [[ "$mode" == test ]]; then
    [[ -f "$dir/CMakeCache.txt" ]] || { say "$variant: no build in $dir (run --build-only first)"; exit 1; }
    t2=$(now)
    (cd "$dir" && ctest "${tests[@]}" -j "$jobs" --output-on-failure)
    say "$variant: tests $(($(now) - t2)) s"
    continue
  fi
  t0=$(now)
  # The flags come from the environment at the first configure only: start afresh when they
  # changed (a newer dpkg, another hardening set).
  stamp="$variant ${env_flags[*]:-} ${flags[*]}"
  if [[ -f "$dir/CMakeCache.txt" && "$(cat "$dir/.knit-variant" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$dir"
  fi
  mkdir -p "$variant_dir"
  log=$variant_dir/$variant.configure.log
  env "${env_flags[@]}" cmake -S . -B "$dir" "${generator[@]}" "${flags[@]}" -DKNIT_WERROR=ON \
    -DKNIT_BUILD_BENCH=OFF >"$log" 2>&1 || {
    cat "$log" >&2
    say "$variant: configure failed"
    exit 1
  }
  printf '%s' "$stamp" >"$dir/.knit-variant"
  grep -q '^KNIT_WERROR:BOOL=ON$' "$dir/CMakeCache.txt" || { say "$variant: KNIT_WERROR is not ON"; exit 1; }
  if [[ "$variant" == debflags ]]; then
    grep -q -- '-D_FORTIFY_SOURCE=2' "$dir/CMakeCache.txt" \
      || { say "debflags: the dpkg-buildflags did not reach CMAKE_CXX_FLAGS"; exit 1; }
  fi
  t1=$(now)
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  t2=$(now)
  if [[ "$mode" == build ]]; then
    say "$variant: configure $((t1 - t0)) s, build $((t2 - t1)) s"
    continue
  fi
  (cd "$dir" && ctest "${tests[@]}" -j "$jobs" --output-on-failure)
  t3=$(now)
  say "$variant: configure $((t1 - t0)) s, build $((t2 - t1)) s, tests $((t3 - t2)) s"
done
