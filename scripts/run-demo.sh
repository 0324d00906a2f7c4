#!/usr/bin/env bash
# The main job: installs dependencies, builds, and runs the demo mesh (see scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
exec ./scripts/demo.sh "$@"
