#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs unit and network-namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
cd build
# One run, one summary: unit tests in parallel; namespace tests (RUN_SERIAL) one at a time.
ctest --output-on-failure -j "$(nproc)" "$@"
