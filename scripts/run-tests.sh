#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs unit and network-namespace tests,
# then checks the builds users and distributions make (scripts/check-builds.sh: Release and
# dpkg-buildflags, unit tests only). Arguments go to ctest, and then the build check is left
# out (a partial run); KNIT_CHECK_BUILDS=0 leaves it out too.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
t0=$SECONDS
# One run, one summary: unit tests in parallel; namespace tests (RUN_SERIAL) one at a time.
(cd build && ctest --output-on-failure -j "$(nproc)" "$@")
echo "run-tests: ctest took $((SECONDS - t0)) s"
if (($# == 0)) && [[ "${KNIT_CHECK_BUILDS:-1}" != 0 ]]; then
  t0=$SECONDS
  ./scripts/check-builds.sh
  echo "run-tests: check-builds (Release, dpkg-buildflags) took $((SECONDS - t0)) s"
fi
